"""What a BatmanNet encoder says about whole molecules, without any head: pooled views and the
state of its items through the blocks.

Pre-training hands fine-tuning the encoders' input stages and blocks (``node_encoder`` and
``edge_encoder`` of both :class:`~bbmn.models.batmannet.BatmanNet` and
:class:`~bbmn.models.finetune.BatmanNetFinetune`); the readouts after them start (mostly) fresh.
So what pre-training put into the representation is read here from the last block's outputs on the
full, unmasked graph, as fine-tuning runs the encoders:

* :func:`block_views`: per molecule, the mean of the node branch's atom states (atom view) and the
  mean over atoms of the edge branch's states summed onto each atom's incoming edges (bond view,
  the aggregation fine-tuning's atom-from-bond readout starts from). A linear probe reads these.
* :func:`stage_cosines`: the mean cosine between the states of two distinct items of the same
  molecule, after the input stage and after every block: 1 means every atom (edge) of a molecule
  carries the same vector, i.e. the blocks over-smooth.

``add_positions`` adds the per-molecule positional code to the input projection, as pre-training
does (spec section 5) and fine-tuning does not (spec section 9): the switch that closes that gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from bbmn.models.batmannet import edge_inputs
from bbmn.nn.message_passing import AtomNeighbourSum, EdgeNeighbourSum
from bbmn.nn.positional import positional_code


def mean_pool(x: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """Mean of the rows of ``x`` per group (``index`` gives each row's group); empty groups get 0.

    Counts by ``index_add`` rather than ``bincount``, whose output size depends on the data and
    would break a compiled graph.
    """
    sums = x.new_zeros(num_groups, x.shape[1]).index_add_(0, index, x)
    counts = x.new_zeros(num_groups).index_add_(0, index, x.new_ones(index.shape[0])).clamp_(min=1)
    return sums / counts.unsqueeze(1)


@dataclass(frozen=True)
class GraphInputs:
    """What the encoders read of a batch, as tensors and neighbour sums.

    Built eagerly (:meth:`of`: the positional code needs the data's sizes); everything computed
    from it is tensor arithmetic that ``torch.compile`` takes whole.

    Attributes:
        atoms: ``(N, 39)`` atom inputs; edges: ``(E, 50)`` directed-edge inputs.
        atom_sum, edge_sum: the full graph's neighbour sums.
        edge_target: ``(E,)`` atom each directed edge enters.
        molecule: ``(N,)`` molecule of each atom; num_molecules: ``B``.
        atom_code, edge_code: per-molecule positional codes, or None.
    """

    atoms: Tensor
    edges: Tensor
    atom_sum: AtomNeighbourSum
    edge_sum: EdgeNeighbourSum
    edge_target: Tensor
    molecule: Tensor
    num_molecules: int
    atom_code: Tensor | None = None
    edge_code: Tensor | None = None

    @classmethod
    def of(cls, batch: Batch, hidden: int = 0, add_positions: bool = False) -> GraphInputs:
        atom_sum, edge_sum = full_graph_sums(batch)
        atom_code, edge_code = position_codes(batch, hidden, add_positions)
        return cls(batch.x, edge_inputs(batch), atom_sum, edge_sum, batch.edge_index[1], batch.batch,
                   batch.num_graphs, atom_code, edge_code)

    def atoms_from_edges(self, edge_states: Tensor) -> Tensor:
        """``(N, h)``: each atom's sum of the states of the directed edges entering it."""
        return edge_states.new_zeros(self.atoms.shape[0], edge_states.shape[1]).index_add_(
            0, self.edge_target, edge_states)

    def pool(self, atom_states: Tensor) -> Tensor:
        """``(B, h)``: the mean over each molecule's atoms."""
        return mean_pool(atom_states, self.molecule, self.num_molecules)


def position_codes(batch: Batch, hidden: int, add_positions: bool) -> tuple[Tensor | None, Tensor | None]:
    """The atoms' and edges' per-molecule positional code, or ``(None, None)`` without positions."""
    if not add_positions:
        return None, None
    return positional_code(batch.ptr, hidden), positional_code(batch.edge_ptr, hidden)


def full_graph_sums(batch: Batch) -> tuple[AtomNeighbourSum, EdgeNeighbourSum]:
    """The node and edge branches' neighbour sums on the full, unmasked graph."""
    return (AtomNeighbourSum.full(batch.edge_index, batch.num_nodes),
            EdgeNeighbourSum.full(batch.edge_index, batch.rev_edge, batch.num_nodes))


def graph_inputs(net: nn.Module, batch: Batch, add_positions: bool = False) -> GraphInputs:
    """:meth:`GraphInputs.of` at ``net``'s width."""
    return GraphInputs.of(batch, net.node_encoder.embed.project.out_features, add_positions)


def block_views(net: nn.Module, batch: Batch, add_positions: bool = False) -> tuple[Tensor, Tensor]:
    """The two pooled views of the encoders' block outputs, ``(B, h)`` each (module docstring)."""
    inputs = graph_inputs(net, batch, add_positions)
    atoms, _ = net.node_encoder.hidden_states(inputs.atoms, inputs.atom_sum, inputs.atom_code)
    edges, _ = net.edge_encoder.hidden_states(inputs.edges, inputs.edge_sum, inputs.edge_code)
    return inputs.pool(atoms), inputs.pool(inputs.atoms_from_edges(edges))


def pretrained_views_of(net: nn.Module, inputs: GraphInputs) -> tuple[Tensor, Tensor]:
    """``bbmn embed``'s two views of a pre-trained BatmanNet, ``(B, h)`` each: the mean over atoms
    of the node encoder's output (its aggregate-to-self included), and of the edge encoder's
    outputs summed onto each atom's incoming edges. Tensor arithmetic only (``torch.compile``
    takes it whole)."""
    atoms = net.node_encoder(inputs.atoms, inputs.atom_sum)
    edges = net.edge_encoder(inputs.edges, inputs.edge_sum)
    return inputs.pool(atoms), inputs.pool(inputs.atoms_from_edges(edges))


def within_group_cosine(states: Tensor, group: Tensor, num_groups: int) -> tuple[Tensor, Tensor]:
    """Mean cosine over the distinct pairs of rows of each group, and each group's pair count.

    With unit rows ``u_i`` of a group of ``n``, the sum over ordered pairs ``i != j`` of
    ``u_i . u_j`` is ``|sum_i u_i|^2 - n``: exact and linear in the items, no pair is formed.
    Groups of fewer than two rows get NaN and a count of 0.
    """
    unit = torch.nn.functional.normalize(states.double(), dim=1)
    sums = unit.new_zeros(num_groups, unit.shape[1]).index_add_(0, group, unit)
    n = torch.bincount(group, minlength=num_groups).double()
    pairs = n * (n - 1)
    cosine = (sums.square().sum(1) - n) / pairs
    return torch.where(pairs > 0, cosine, torch.full_like(cosine, float("nan"))), pairs / 2


def views_and_stage_cosines(net: nn.Module, batch: Batch, add_positions: bool = False
                            ) -> tuple[Tensor, Tensor, dict[str, list[tuple[float, float]]]]:
    """:func:`block_views` and, from the same forward pass, per branch and stage (input stage,
    block 1, ...) the sum over molecules of the within-molecule mean cosine and the number of
    molecules it covers, to be averaged over batches."""
    inputs = graph_inputs(net, batch, add_positions)
    edge_group = batch.batch.index_select(0, batch.edge_index[0])
    atom_states = net.node_encoder.stage_states(inputs.atoms, inputs.atom_sum, inputs.atom_code)
    edge_states = net.edge_encoder.stage_states(inputs.edges, inputs.edge_sum, inputs.edge_code)
    cosines = {}
    for branch, states, group in (("atom", atom_states, batch.batch), ("edge", edge_states, edge_group)):
        rows = []
        for x in states:
            cosine, _ = within_group_cosine(x, group, batch.num_graphs)
            valid = ~torch.isnan(cosine)
            rows.append((float(cosine[valid].sum()), float(valid.sum())))
        cosines[branch] = rows
    return inputs.pool(atom_states[-1]), inputs.pool(inputs.atoms_from_edges(edge_states[-1])), cosines


def stage_cosines(net: nn.Module, batch: Batch, add_positions: bool = False) -> dict[str, list[tuple[float, float]]]:
    """The stage cosines of :func:`views_and_stage_cosines`."""
    return views_and_stage_cosines(net, batch, add_positions)[2]
