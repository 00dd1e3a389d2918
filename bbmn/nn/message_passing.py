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

Messages are ``(n, width)`` or ``(nets, n, width)``: the item axis is the second to last, so that
several message nets can be summed at once. Each rule is a square 0/1 matrix ``S`` with
``sum(messages) = S @ messages``, computed as a sparse product with no Python loop over items. The
CSR index of ``S`` and of its transpose (for the backward) is built eagerly when the rule is made:

* eagerly, the CSR matrices are kept per dtype and multiplied in a plain autograd function: on a
  32-molecule batch, forward + backward of the atom rule took 0.50 ms against 0.87 by
  ``index_select`` + ``index_add_``, the edge rule 1.3 ms against 1.6 to 3.5;
* under ``torch.compile`` the product is the custom operator ``bbmn::sparse_sum``, opaque to the
  compiler: its own scatter-adds (the ``index_add_`` form) were the dearest kernels of a compiled
  step (docs/benchmarks.md). Eagerly the operator's dispatch would cost 4% of a step, hence the
  plain function there.

CPU sparse products exist for float32 and float64 only: other dtypes (bf16 under autocast) are
summed in float32 and cast back. :meth:`by_index` keeps the ``index_add_`` form as the reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

# Sparse CSR products are stable for what is used here (float CSR times dense); torch still warns
# on every process's first CSR tensor that the layout is "beta", which would land in every log.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
_SPARSE_DTYPES = (torch.float32, torch.float64)


def _compact_ids(keep: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the kept items, and each item's row among the kept ones (-1 when dropped)."""
    kept = keep.nonzero().squeeze(1)
    new_id = torch.full(keep.shape, -1, dtype=torch.long, device=keep.device)
    new_id[kept] = torch.arange(kept.numel(), device=keep.device)
    return kept, new_id


@dataclass(frozen=True)
class SparseIndex:
    """CSR row pointers and column indices of a square 0/1 matrix and of its transpose."""

    crow: Tensor
    col: Tensor
    crow_t: Tensor
    col_t: Tensor
    _matrices: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, rows: Tensor, cols: Tensor, size: int) -> SparseIndex:
        """The matrix with ones at ``(rows[i], cols[i])`` (pairs distinct), ``size`` x ``size``."""
        return cls(*_csr_index(rows, cols, size), *_csr_index(cols, rows, size))

    def matrices(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The matrix and its transpose as CSR tensors of ``dtype``, made once per dtype."""
        if dtype not in self._matrices:
            self._matrices[dtype] = (_csr_matrix(self.crow, self.col, dtype),
                                     _csr_matrix(self.crow_t, self.col_t, dtype))
        return self._matrices[dtype]

    def times(self, messages: Tensor) -> Tensor:
        """``S @ messages``, differentiable, eagerly or under ``torch.compile``."""
        if torch.compiler.is_compiling():
            return sparse_sum(messages, self.crow, self.col, self.crow_t, self.col_t)
        dtype = _sparse_dtype(messages)
        return _SparseSum.apply(messages.to(dtype), *self.matrices(dtype)).to(messages.dtype)


def _sparse_dtype(messages: Tensor) -> torch.dtype:
    return messages.dtype if messages.dtype in _SPARSE_DTYPES else torch.float32


def _csr_matrix(crow: Tensor, col: Tensor, dtype: torch.dtype) -> Tensor:
    ones = torch.ones(col.numel(), dtype=dtype, device=col.device)
    size = crow.numel() - 1
    return torch.sparse_csr_tensor(crow, col, ones, (size, size), check_invariants=False)


def _csr_index(rows: Tensor, cols: Tensor, size: int) -> tuple[Tensor, Tensor]:
    order = torch.argsort(rows * size + cols)
    crow = torch.zeros(size + 1, dtype=torch.long, device=rows.device)
    torch.cumsum(torch.bincount(rows, minlength=size), 0, out=crow[1:])
    return crow, cols[order]


@torch.library.custom_op("bbmn::sparse_sum", mutates_args=())
def sparse_sum(messages: Tensor, crow: Tensor, col: Tensor, crow_t: Tensor, col_t: Tensor) -> Tensor:
    """``S @ messages`` for the square 0/1 matrix ``S`` with CSR index ``(crow, col)``; messages
    ``(n, w)`` or ``(nets, n, w)``, one product per net. ``(crow_t, col_t)`` index ``S``'s
    transpose, which the backward multiplies by (torch's own backward of a sparse product would
    re-derive it, a sort, on every call)."""
    dense = messages.to(_sparse_dtype(messages))
    return _sparse_times(_csr_matrix(crow, col, dense.dtype), dense).to(messages.dtype)


@sparse_sum.register_fake
def _sparse_sum_shape(messages: Tensor, crow: Tensor, col: Tensor, crow_t: Tensor, col_t: Tensor) -> Tensor:
    return messages.new_empty(messages.shape)


def _sparse_sum_context(ctx, inputs: tuple, output: Tensor) -> None:
    ctx.index = inputs[1:]


def _sparse_sum_backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
    crow, col, crow_t, col_t = ctx.index
    return sparse_sum(grad, crow_t, col_t, crow, col), None, None, None, None


sparse_sum.register_autograd(_sparse_sum_backward, setup_context=_sparse_sum_context)


def _sparse_times(matrix: Tensor, dense: Tensor) -> Tensor:
    """``matrix @ dense`` for ``dense`` of ``(n, w)`` or ``(nets, n, w)``: one product per net."""
    dense = dense.contiguous()
    if torch.is_autocast_enabled(dense.device.type):  # it would cast to bf16, which CPU sparse lacks
        with torch.autocast(dense.device.type, enabled=False):
            return _sparse_times(matrix, dense)
    if dense.dim() == 2:
        return torch.sparse.mm(matrix, dense)
    out = dense.new_empty(dense.shape[:-2] + (matrix.shape[0], dense.shape[-1]))
    for net in range(dense.shape[0]):
        torch.mm(matrix, dense[net], out=out[net])
    return out


class _SparseSum(torch.autograd.Function):
    """``S @ x`` with the gradient ``S^T @ g`` from a kept transpose (eager; see the module's
    docstring for why not the custom operator)."""

    @staticmethod
    def forward(ctx, x: Tensor, matrix: Tensor, transposed: Tensor) -> Tensor:
        ctx.transposed = transposed
        return _sparse_times(matrix, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return _sparse_times(ctx.transposed, grad), None, None


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
    index: SparseIndex = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", self._sparse_index())

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
        return self.index.times(messages)

    def by_index(self, messages: Tensor) -> Tensor:
        out = messages.new_zeros(messages.shape[:-2] + (self.num_atoms, messages.shape[-1]))
        return out.index_add_(-2, self.target, messages.index_select(-2, self.source))

    def _sparse_index(self) -> SparseIndex:
        """``S[v, u] = 1`` for each directed edge ``u -> v``."""
        return SparseIndex.of(self.target, self.source, self.num_atoms)


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
    index: SparseIndex = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", self._sparse_index())

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
        return self.index.times(messages)

    def by_index(self, messages: Tensor) -> Tensor:
        into_atom = messages.new_zeros(messages.shape[:-2] + (self.num_atoms, messages.shape[-1]))
        into_atom.index_add_(-2, self.target, messages)
        out = into_atom.index_select(-2, self.source)
        reverse = messages.index_select(-2, self.reverse_of)
        if self.reverse_rows is None:
            return out.sub_(reverse)
        return out.index_add_(-2, self.reverse_rows, reverse, alpha=-1)

    def _sparse_index(self) -> SparseIndex:
        """``S[e, f] = 1`` when edge ``f`` enters ``e``'s source atom and is not ``e``'s reverse."""
        rows_count = self.source.numel()
        by_target = torch.argsort(self.target, stable=True)
        starts = torch.zeros(self.num_atoms + 1, dtype=torch.long, device=self.target.device)
        torch.cumsum(torch.bincount(self.target, minlength=self.num_atoms), 0, out=starts[1:])
        entering = starts[self.source + 1] - starts[self.source]  # candidates f of each row e
        rows = torch.repeat_interleave(torch.arange(rows_count, device=self.source.device), entering)
        first = torch.repeat_interleave(starts[self.source], entering)
        within = torch.arange(rows.numel(), device=rows.device) - torch.repeat_interleave(
            torch.cumsum(entering, 0) - entering, entering)
        cols = by_target[first + within]
        reverse = torch.full((rows_count,), -1, dtype=torch.long, device=rows.device)
        rows_with_reverse = (torch.arange(rows_count, device=rows.device)
                             if self.reverse_rows is None else self.reverse_rows)
        reverse[rows_with_reverse] = self.reverse_of
        keep = cols != reverse[rows]
        return SparseIndex.of(rows[keep], cols[keep], rows_count)
