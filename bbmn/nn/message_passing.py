"""Neighbour sums of the two branches, on the full graph or on a masked subgraph.

Both rules are built once per forward pass from the batch (and the mask) and then called by every
message-passing round of every block, so the index work is paid once, not once per round.

* :class:`AtomNeighbourSum` (node branch): each atom receives the sum of its neighbour atoms'
  messages. On a masked batch the graph is the subgraph induced by the visible atoms, re-indexed
  so that visible atom ``i`` is row ``i`` of the message tensor.
* :class:`EdgeNeighbourSum` (edge branch, chemprop's directed rule): edge ``u -> v`` receives the
  sum of the edges entering ``u`` minus its reverse edge ``v -> u``. On a masked batch only the
  visible directed edges exist (all atoms are kept as junctions): a masked edge is absent from
  every sum, and a visible edge whose reverse is masked has no reverse term.

Messages are ``(..., n, width)``: the item axis is the second to last, so that several message
nets can be summed at once as ``(nets, n, width)``. Sums are ``index_select`` + ``index_add_``
along the item axis, with no Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def _compact_ids(keep: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the kept items, and each item's row among the kept ones (-1 when dropped)."""
    kept = keep.nonzero().squeeze(1)
    new_id = torch.full(keep.shape, -1, dtype=torch.long, device=keep.device)
    new_id[kept] = torch.arange(kept.numel(), device=keep.device)
    return kept, new_id


@dataclass(frozen=True)
class AtomNeighbourSum:
    """Sum over neighbour atoms, for messages with one row per (visible) atom.

    Attributes:
        num_atoms: number of atoms in the graph (message rows).
        source: ``(M,)`` row whose message travels along each directed edge.
        target: ``(M,)`` row that receives it.
    """

    num_atoms: int
    source: Tensor
    target: Tensor

    @classmethod
    def full(cls, edge_index: Tensor, num_atoms: int) -> AtomNeighbourSum:
        """All atoms and all bonds (both directions are present in ``edge_index``)."""
        return cls(num_atoms, edge_index[0], edge_index[1])

    @classmethod
    def induced(cls, edge_index: Tensor, keep_atom: Tensor) -> tuple[AtomNeighbourSum, Tensor]:
        """The subgraph induced by the atoms with ``keep_atom`` true.

        Returns:
            The neighbour sum on the subgraph, and the original indices of the kept atoms (row
            ``i`` of the subgraph's messages is atom ``kept[i]``).
        """
        kept, new_id = _compact_ids(keep_atom)
        source, target = new_id[edge_index[0]], new_id[edge_index[1]]
        inside = (source >= 0) & (target >= 0)
        return cls(kept.numel(), source[inside], target[inside]), kept

    def __call__(self, messages: Tensor) -> Tensor:
        out = messages.new_zeros(messages.shape[:-2] + (self.num_atoms, messages.shape[-1]))
        return out.index_add_(-2, self.target, messages.index_select(-2, self.source))


@dataclass(frozen=True)
class EdgeNeighbourSum:
    """Chemprop's directed-edge rule, for messages with one row per (visible) directed edge.

    Attributes:
        num_atoms: number of atoms (junctions; all atoms are kept even on a masked batch).
        source: ``(M,)`` source atom of each edge row.
        target: ``(M,)`` target atom of each edge row.
        reverse_of: row of each edge's reverse edge, for the rows listed in ``reverse_rows``.
        reverse_rows: rows whose reverse edge is present, or ``None`` when every row has one (the
            full graph), in which case ``reverse_of`` covers all rows.
    """

    num_atoms: int
    source: Tensor
    target: Tensor
    reverse_of: Tensor
    reverse_rows: Tensor | None = None

    @classmethod
    def full(cls, edge_index: Tensor, rev_edge: Tensor, num_atoms: int) -> EdgeNeighbourSum:
        """All directed edges of the batch."""
        return cls(num_atoms, edge_index[0], edge_index[1], rev_edge)

    @classmethod
    def visible(cls, edge_index: Tensor, rev_edge: Tensor, num_atoms: int,
                keep_edge: Tensor) -> tuple[EdgeNeighbourSum, Tensor]:
        """Only the directed edges with ``keep_edge`` true.

        Returns:
            The neighbour sum on the kept edges, and their original indices (row ``i`` of the
            messages is edge ``kept[i]``).
        """
        kept, new_id = _compact_ids(keep_edge)
        reverse = new_id[rev_edge[kept]]
        has_reverse = reverse >= 0
        rule = cls(num_atoms, edge_index[0, kept], edge_index[1, kept], reverse[has_reverse],
                   has_reverse.nonzero().squeeze(1))
        return rule, kept

    def __call__(self, messages: Tensor) -> Tensor:
        into_atom = messages.new_zeros(messages.shape[:-2] + (self.num_atoms, messages.shape[-1]))
        into_atom.index_add_(-2, self.target, messages)
        out = into_atom.index_select(-2, self.source)
        reverse = messages.index_select(-2, self.reverse_of)
        if self.reverse_rows is None:
            return out.sub_(reverse)
        return out.index_add_(-2, self.reverse_rows, reverse, alpha=-1)
