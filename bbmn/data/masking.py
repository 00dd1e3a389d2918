"""Pre-training masks (spec section 2), drawn for a whole batch at once.

Per molecule, ``ceil(r * n_atoms)`` atoms and, independently, ``ceil(r * n_directed_edges)``
directed edges are masked (at least one of each whenever the molecule has any). Every item gets
a uniform random key; within each molecule the items with the smallest keys are masked. One sort
of ``molecule + key`` ranks all molecules at once, so there is no loop per molecule.

Where the keys come from decides the mode:

* dynamic (default), no epoch given: keys from a seeded ``torch.Generator``, so each call gives new
  masks and a run is reproducible from its seed;
* dynamic with ``epoch`` given: keys hashed from ``(seed, epoch, molecule row, item)``; new masks
  every epoch, independent of batch composition, DataLoader workers and resumption. Prefer this
  inside DataLoader workers (each worker holds a copy of the generator's state);
* static: keys hashed from ``(seed, molecule row, item)``; a molecule has the same mask in every
  epoch and in any batch, like the reference's masks drawn once at preprocessing.

``r * n`` is computed in float64 and rounded up, exactly as Python's ``math.ceil(n * r)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch

_ATOMS, _EDGES = 1, 2  # hash domains, so that an atom's and an edge's keys are unrelated
_STATIC_STREAM = 0


def masked_counts(sizes: Tensor, ratio: float) -> Tensor:
    """``ceil(ratio * n)`` for every group size ``n`` (so at least 1 when ``n >= 1`` and ratio > 0)."""
    return torch.ceil(sizes.to(torch.float64) * ratio).to(torch.long)


def _groups(ptr: Tensor) -> tuple[Tensor, Tensor]:
    """Group id and position inside the group of every item laid out by offsets ``ptr``."""
    sizes = ptr[1:] - ptr[:-1]
    total = int(ptr[-1])
    group = torch.repeat_interleave(torch.arange(sizes.numel(), device=ptr.device), sizes,
                                    output_size=total)
    return group, torch.arange(total, device=ptr.device) - ptr[group]


def mask_smallest_keys(keys: Tensor, ptr: Tensor, ratio: float) -> Tensor:
    """Boolean mask of the ``ceil(ratio * n)`` smallest keys of every group.

    Args:
        keys: ``(n_items,)`` float64 keys in ``[0, 1)``.
        ptr: ``(B + 1,)`` offsets of the groups (molecules).
        ratio: fraction to mask.
    """
    group, _ = _groups(ptr)
    order = torch.argsort(group.to(torch.float64) + keys)  # by group, then by key
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=keys.device)
    rank -= ptr[group]
    return rank < masked_counts(ptr[1:] - ptr[:-1], ratio)[group]


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective, well-mixing map of uint64 values."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hashed_keys(seed: int, stream: int, domain: int, rows: Tensor, items: Tensor) -> Tensor:
    """Uniform float64 keys in ``[0, 1)``, a pure function of ``(seed, stream, domain, row, item)``."""
    with np.errstate(over="ignore"):
        base = _mix64(np.array([seed & (2**64 - 1)], dtype=np.uint64) + _GOLDEN)
        base = _mix64(base ^ np.uint64((stream * 4 + domain) & (2**64 - 1)))
        h = _mix64(base ^ rows.cpu().numpy().astype(np.uint64))
        h = _mix64(h ^ (items.cpu().numpy().astype(np.uint64) * _GOLDEN))
    return torch.from_numpy((h >> np.uint64(11)).astype(np.float64) * 2.0**-53).to(rows.device)


def random_masks(batch: Batch, ratio: float = 0.6,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Fresh atom and edge masks (True = masked) from a generator (torch's global one if None)."""
    atom_keys = torch.rand(batch.num_nodes, generator=generator, dtype=torch.float64)
    edge_keys = torch.rand(batch.edge_index.shape[1], generator=generator, dtype=torch.float64)
    return (mask_smallest_keys(atom_keys.to(batch.ptr.device), batch.ptr, ratio),
            mask_smallest_keys(edge_keys.to(batch.ptr.device), batch.edge_ptr, ratio))


def hashed_masks(batch: Batch, ratio: float, seed: int, stream: int) -> tuple[Tensor, Tensor]:
    """Atom and edge masks that depend only on ``(seed, stream)`` and each molecule's ``row``."""
    atom_mol, atom_item = _groups(batch.ptr)
    edge_mol, edge_item = _groups(batch.edge_ptr)
    atom_keys = hashed_keys(seed, stream, _ATOMS, batch.row[atom_mol], atom_item)
    edge_keys = hashed_keys(seed, stream, _EDGES, batch.row[edge_mol], edge_item)
    return (mask_smallest_keys(atom_keys, batch.ptr, ratio),
            mask_smallest_keys(edge_keys, batch.edge_ptr, ratio))


class Masking:
    """Adds ``atom_mask`` (N,) and ``edge_mask`` (E,) boolean attributes (True = masked) to a batch.

    Args:
        ratio (float): fraction of each molecule's atoms, and of its directed edges, to mask.
            Default 0.6.
        dynamic (bool): new masks every call/epoch (default True) or the same mask for a molecule
            every epoch (False).
        seed (int): seed of the generator (dynamic) or of the hash (static / epoch-keyed). Default 0.
    """

    def __init__(self, ratio: float = 0.6, dynamic: bool = True, seed: int = 0) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"mask ratio must be in (0, 1], got {ratio}")
        self.ratio, self.dynamic, self.seed = ratio, dynamic, seed
        self.generator = torch.Generator().manual_seed(seed)

    def masks(self, batch: Batch, epoch: int | None = None) -> tuple[Tensor, Tensor]:
        """The atom and edge masks of ``batch``; ``epoch`` keys dynamic masks by epoch (see module)."""
        if not self.dynamic:
            return hashed_masks(batch, self.ratio, self.seed, _STATIC_STREAM)
        if epoch is not None:
            return hashed_masks(batch, self.ratio, self.seed, 1 + epoch)
        return random_masks(batch, self.ratio, self.generator)

    def __call__(self, batch: Batch, epoch: int | None = None) -> Batch:
        """Sets ``batch.atom_mask`` and ``batch.edge_mask`` in place and returns the batch."""
        batch.atom_mask, batch.edge_mask = self.masks(batch, epoch)
        return batch

    def __repr__(self) -> str:
        return f"Masking(ratio={self.ratio}, dynamic={self.dynamic}, seed={self.seed})"
