"""Sinusoidal positional code (spec section 5), computed on the fly for any position.

The reference builds a table whose row 0 is all zeros (its padding row) and whose row ``p >= 1``
is the usual transformer sinusoid of position ``p - 1``; it indexes the table with chemprop's
1-based item numbers. We keep exactly that table, so a real item at 0-based position ``q`` gets
row ``q + 1``; only the meaning of ``q`` is a choice:

* ``"molecule"`` (default): ``q`` is the item's position inside its own molecule, so a molecule's
  code does not depend on which other molecules share its batch;
* ``"batch"``: ``q`` is the item's position in the whole batch, as in the reference.

The table is computed as far as a batch needs it and kept, so there is no limit on molecule or
batch size.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bbmn.nn.choices import POSITION_MODES



def sinusoidal_code(index: Tensor, width: int) -> Tensor:
    """Rows ``index`` of the reference's positional table, as a ``(len(index), width)`` float tensor.

    Args:
        index: ``(n,)`` integer table rows; row 0 is all zeros, row ``p >= 1`` is the sinusoid of
            position ``p - 1``: dims ``2i`` and ``2i + 1`` hold ``sin`` and ``cos`` of
            ``(p - 1) / 10000 ** (2i / width)``.
        width: code width (the model's hidden size).
    """
    return _table(int(index.max()) + 1 if index.numel() else 1, width, index.device).index_select(0, index)


#: the table's rows computed so far, per (width, device); grown (at least doubled) when a larger
#: row is asked for, so that a training step reads rows instead of computing float64 sines and
#: cosines of every item (2% of a pre-training step of 16 molecules on one thread, docs/benchmarks.md)
_TABLES: dict[tuple[int, torch.device], Tensor] = {}


def _table(rows: int, width: int, device: torch.device) -> Tensor:
    table = _TABLES.get((width, device))
    if table is None or len(table) < rows:
        size = max(rows, 256, 2 * len(table) if table is not None else 0)
        table = _TABLES[(width, device)] = _sinusoid_rows(torch.arange(size, device=device), width)
    return table


def _sinusoid_rows(index: Tensor, width: int) -> Tensor:
    position = (index - 1).to(torch.float64).unsqueeze(1)
    pair = torch.arange(width, device=index.device) // 2
    inverse_frequency = torch.exp(pair.to(torch.float64) * (-2.0 * math.log(10000.0) / width))
    angle = position * inverse_frequency
    code = torch.where(torch.arange(width, device=index.device) % 2 == 0, angle.sin(), angle.cos())
    return code.masked_fill_((index == 0).unsqueeze(1), 0.0).to(torch.float32)


def positions_in_groups(ptr: Tensor) -> Tensor:
    """0-based position of every item inside its group, for groups laid out by offsets ``ptr``."""
    counts = ptr[1:] - ptr[:-1]
    total = int(ptr[-1])
    return torch.arange(total, device=ptr.device) - torch.repeat_interleave(ptr[:-1], counts,
                                                                            output_size=total)


def table_index(ptr: Tensor, mode: str = "molecule") -> Tensor:
    """Positional-table row of every item (atoms with ``batch.ptr``, edges with ``batch.edge_ptr``).

    Args:
        ptr: ``(B + 1,)`` offsets of the molecules' items.
        mode: ``"molecule"`` (position inside the molecule) or ``"batch"`` (position in the batch,
            the reference's choice).
    """
    if mode == "molecule":
        return positions_in_groups(ptr) + 1
    if mode == "batch":
        return torch.arange(1, int(ptr[-1]) + 1, device=ptr.device)
    raise ValueError(f"unknown position mode {mode!r}; expected one of {POSITION_MODES}")


def positional_code(ptr: Tensor, width: int, mode: str = "molecule") -> Tensor:
    """``(n_items, width)`` positional code of all items of a batch (see :func:`table_index`)."""
    return sinusoidal_code(table_index(ptr, mode), width)
