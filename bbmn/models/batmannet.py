"""BatmanNet: the bi-branch masked graph transformer autoencoder (spec sections 2-7).

Two branches that share no weights:

* node branch: atoms, neighbour sums over atoms; reconstructs each masked atom's 39 one-hot dims;
* edge branch: directed edges (input = source atom's 39 dims + bond's 11), chemprop's directed
  rule; reconstructs each masked edge's 50 dims.

Each branch has an encoder (input stage + 6 blocks + aggregate-to-self, on the visible part only)
and a light decoder (2 blocks + aggregate-to-self + Linear(h -> 39 / 50), on the full graph). In
the decoder's input, visible items carry encoder output + positional code and masked items the
positional code only (plus a learned mask token if asked).

Parameters: this model has no dead weight, see :func:`parameter_budget` for the count and for the
reference's 2,575,709, term by term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch

from bbmn.chem.features import (ATOM_DIM, ATOM_FIELD_OFFSETS, ATOM_FIELD_SIZES, ATOM_FIELDS,
                                BOND_FIELD_OFFSETS, BOND_TYPE_OTHER, EDGE_DIM)
from bbmn.data.masking import random_masks
from bbmn.models.options import BRANCHES, MASK_TOKENS
from bbmn.nn.blocks import Aggregate, AggregateToSelf, InputEmbedding, MTBlock
from bbmn.nn.message_passing import AtomNeighbourSum, EdgeNeighbourSum
from bbmn.nn.positional import POSITION_MODES, positional_code


def directed_edge_inputs(x: Tensor, sources: Tensor, bonds: Tensor) -> Tensor:
    """``(n, 50)`` directed-edge input: the source atom's one-hot (row ``sources`` of ``x``), then
    the bond's (``bonds``, one row per edge)."""
    return torch.cat([x.index_select(0, sources), bonds], dim=1)


def edge_inputs(batch: Batch) -> Tensor:
    """``(E, 50)`` directed-edge inputs of every edge of ``batch``."""
    return directed_edge_inputs(batch.x, batch.edge_index[0], batch.edge_attr)


class BranchEncoder(nn.Module):
    """One branch's encoder: input stage, ``blocks`` MTBlocks, aggregate-to-self.

    Args:
        in_dim (int): input width (39 atoms, 50 directed edges).
        hidden (int): model width. Default 100.
        heads (int): heads per block. Default 2.
        depth (int): message-passing depth. Default 3.
        blocks (int): number of blocks. Default 6.
        dropout (float): dropout rate. Default 0.1.
        activation (str): activation name. Default ``"prelu"``.
        residual (bool): blocks add their input back (:class:`~bbmn.nn.blocks.MTBlock`). Default False.
    """

    def __init__(self, in_dim: int, hidden: int = 100, heads: int = 2, depth: int = 3,
                 blocks: int = 6, dropout: float = 0.1, activation: str = "prelu",
                 residual: bool = False) -> None:
        super().__init__()
        self.embed = InputEmbedding(in_dim, hidden, dropout, activation)
        self.blocks = nn.ModuleList(MTBlock(hidden, heads, depth, dropout, activation, residual)
                                    for _ in range(blocks))
        self.readout = AggregateToSelf(hidden, dropout, activation)

    def hidden_states(self, features: Tensor, aggregate: Aggregate,
                      position_code: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Last block's output and the original features (input projection + position), ``(n, h)``.

        This is what fine-tuning reads (spec section 9), on the full graph with no position code.
        """
        x, original = self.embed(features, position_code)
        for block in self.blocks:
            x = block(x, aggregate)
        return x, original

    def stage_states(self, features: Tensor, aggregate: Aggregate,
                     position_code: Tensor | None = None) -> list[Tensor]:
        """Item states after the input stage and after each block (``blocks + 1`` tensors ``(n, h)``).

        For diagnostics (over-smoothing through the blocks); the last one is
        :meth:`hidden_states`' first output.
        """
        x, _ = self.embed(features, position_code)
        states = [x]
        for block in self.blocks:
            x = block(x, aggregate)
            states.append(x)
        return states

    def forward(self, features: Tensor, aggregate: Aggregate,
                position_code: Tensor | None = None) -> Tensor:
        """``(n, in_dim)`` inputs of the items ``aggregate`` is built on -> ``(n, h)`` outputs."""
        x, original = self.hidden_states(features, aggregate, position_code)
        return self.readout(x, original, aggregate)


class BranchDecoder(nn.Module):
    """One branch's decoder: ``blocks`` MTBlocks (no input stage), aggregate-to-self, Linear.

    Args:
        out_dim (int): reconstruction width (39 atoms, 50 directed edges).
        hidden (int): model width. Default 100.
        heads (int): heads per block. Default 2.
        depth (int): message-passing depth. Default 3.
        blocks (int): number of blocks. Default 2.
        dropout (float): dropout rate. Default 0.1.
        activation (str): activation name. Default ``"prelu"``.
        mask_token (str): what a masked item adds to its positional code: ``"zero"`` (default,
            the reference) or ``"learned"`` (one trained h-vector).
        residual (bool): blocks add their input back. Default False.
    """

    def __init__(self, out_dim: int, hidden: int = 100, heads: int = 2, depth: int = 3,
                 blocks: int = 2, dropout: float = 0.1, activation: str = "prelu",
                 mask_token: str = "zero", residual: bool = False) -> None:
        super().__init__()
        if mask_token not in MASK_TOKENS:
            raise ValueError(f"unknown mask token {mask_token!r}; expected one of {MASK_TOKENS}")
        self.blocks = nn.ModuleList(MTBlock(hidden, heads, depth, dropout, activation, residual)
                                    for _ in range(blocks))
        self.readout = AggregateToSelf(hidden, dropout, activation)
        self.predict = nn.Linear(hidden, out_dim)
        self.mask_token = (nn.Parameter(torch.randn(hidden) * 0.02) if mask_token == "learned"
                           else None)

    def forward(self, encoded: Tensor, visible: Tensor, masked: Tensor, position_code: Tensor,
                aggregate: Aggregate) -> Tensor:
        """Logits of the masked items.

        Args:
            encoded: ``(n_visible, h)`` encoder output of the visible items.
            visible: ``(n_visible,)`` their indices among all items.
            masked: ``(n_masked,)`` indices of the masked items, whose logits are returned.
            position_code: ``(n_items, h)`` positional code of all items.
            aggregate: neighbour sum over all items.
        """
        x = position_code
        if self.mask_token is not None:
            x = x.index_add(0, masked, self.mask_token.expand(masked.numel(), -1))
        x = x.index_add(0, visible, encoded.to(x.dtype))  # encoded may be autocast bf16
        original = x
        for block in self.blocks:
            x = block(x, aggregate)
        # only the masked items are reconstructed: the final FFN runs on them alone
        return self.predict(self.readout(x, original, aggregate, rows=masked))


@dataclass
class Reconstruction:
    """Decoder logits of the masked items.

    Attributes:
        atom_logits: ``(n_masked_atoms, 39)``, laid out like the atom one-hot (None when the node
            branch is not trained, ``branches="bonds"``).
        edge_logits: ``(n_masked_edges, 50)``, laid out like the directed-edge input (None with
            ``branches="atoms"``).
        masked_atoms: ``(n_masked_atoms,)`` their atom indices in the batch.
        masked_edges: ``(n_masked_edges,)`` their directed-edge indices in the batch.
    """

    atom_logits: Tensor | None
    edge_logits: Tensor | None
    masked_atoms: Tensor
    masked_edges: Tensor


@dataclass(frozen=True)
class MaskPlan:
    """The index work of one masked batch: what depends on the data's sizes (``nonzero``, positions).

    Built eagerly by :meth:`BatmanNet.plan`; the rest of the forward pass (:meth:`BatmanNet.reconstruct`)
    is tensor arithmetic on these, which ``torch.compile`` takes whole.

    Attributes:
        atom_code, edge_code: ``(N, h)`` / ``(E, h)`` positional codes of all atoms / directed edges.
        masked_atoms, masked_edges: indices of the masked items.
        visible_atoms, visible_edges: indices of the visible items (row ``i`` of the encoder's input).
        visible_edge_sources: source atom of each visible edge.
        visible_atom_sum, visible_edge_sum: neighbour sums on the visible part (the encoders').
        atom_sum, edge_sum: neighbour sums on the full graph (the decoders').
    """

    atom_code: Tensor
    edge_code: Tensor
    masked_atoms: Tensor
    masked_edges: Tensor
    visible_atoms: Tensor
    visible_edges: Tensor
    visible_edge_sources: Tensor
    visible_atom_sum: AtomNeighbourSum
    visible_edge_sum: EdgeNeighbourSum
    atom_sum: AtomNeighbourSum
    edge_sum: EdgeNeighbourSum


class BatmanNet(nn.Module):
    """Bi-branch masked graph autoencoder for pre-training (spec sections 2-7).

    Args:
        hidden (int): model width ``h``. Default 100.
        heads (int): heads per block (also the attention's sequence length). Default 2.
        depth (int): message-passing depth (``depth - 1`` rounds per message net). Default 3.
        encoder_blocks (int): blocks per encoder branch. Default 6.
        decoder_blocks (int): blocks per decoder branch. Default 2.
        dropout (float): dropout rate everywhere. Default 0.1.
        mask_ratio (float): fraction of atoms and of directed edges masked per molecule when
            :meth:`forward` draws its own masks (a :class:`bbmn.data.masking.Masking` transform
            normally sets them). Default 0.6.
        activation (str): activation name. Default ``"prelu"``.
        positions (str): positional code index, ``"molecule"`` (default: position inside the
            molecule) or ``"batch"`` (the reference: position in the batch).
        mask_token (str): ``"zero"`` (default, masked items get the positional code only) or
            ``"learned"``.
        residual (bool): every block adds its input back (GROVER's ``res_connection``). Default
            False (the reference: without it the blocks' atom states converge).
        branches (str): ``"both"`` (default, the paper's model), or ``"atoms"`` / ``"bonds"``: only
            that branch's encoder and decoder exist and are trained (the single-branch ablation;
            fine-tuning then starts the other encoder fresh).
    """

    def __init__(self, hidden: int = 100, heads: int = 2, depth: int = 3, encoder_blocks: int = 6,
                 decoder_blocks: int = 2, dropout: float = 0.1, mask_ratio: float = 0.6,
                 activation: str = "prelu", positions: str = "molecule",
                 mask_token: str = "zero", residual: bool = False, branches: str = "both") -> None:
        super().__init__()
        if positions not in POSITION_MODES:
            raise ValueError(f"unknown positions {positions!r}; expected one of {POSITION_MODES}")
        if branches not in BRANCHES:
            raise ValueError(f"unknown branches {branches!r}; expected one of {BRANCHES}")
        self._config = dict(hidden=hidden, heads=heads, depth=depth, encoder_blocks=encoder_blocks,
                            decoder_blocks=decoder_blocks, dropout=dropout, mask_ratio=mask_ratio,
                            activation=activation, positions=positions, mask_token=mask_token,
                            residual=residual, branches=branches)
        self.trains_atoms, self.trains_bonds = branches in ("both", "atoms"), branches in ("both", "bonds")
        self.hidden, self.positions, self.mask_ratio = hidden, positions, mask_ratio
        shared = dict(hidden=hidden, heads=heads, depth=depth, dropout=dropout, activation=activation,
                      residual=residual)
        # The reference's GTransEncoder and GTransDecoder each also own a "branch" PReLU per branch
        # (act_func_node / act_func_edge) that their forward passes never apply; like the rest of
        # its dead weight they are left out here and counted back in parameter_budget().
        if self.trains_atoms:
            self.node_encoder = BranchEncoder(ATOM_DIM, blocks=encoder_blocks, **shared)
            self.node_decoder = BranchDecoder(ATOM_DIM, blocks=decoder_blocks, mask_token=mask_token,
                                              **shared)
        if self.trains_bonds:
            self.edge_encoder = BranchEncoder(EDGE_DIM, blocks=encoder_blocks, **shared)
            self.edge_decoder = BranchDecoder(EDGE_DIM, blocks=decoder_blocks, mask_token=mask_token,
                                              **shared)

    @property
    def config(self) -> dict:
        """The constructor arguments (plain values): what a checkpoint stores to rebuild the model."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> BatmanNet:
        """Rebuild a model from :attr:`config` (e.g. stored in a checkpoint)."""
        return cls(**config)

    def forward(self, batch: Batch, atom_mask: Tensor | None = None,
                edge_mask: Tensor | None = None) -> Reconstruction:
        """Encode the visible part, decode the full graph, return the masked items' logits.

        Args:
            batch: a batch following :mod:`bbmn.data.graph`'s contract.
            atom_mask: ``(N,)`` bool, True = masked; default ``batch.atom_mask`` if set, else drawn
                with ``mask_ratio`` from torch's global generator (likewise ``edge_mask``).
            edge_mask: ``(E,)`` bool, True = masked.
        """
        plan = self.plan(batch, *self._masks(batch, atom_mask, edge_mask))
        atom_logits, edge_logits = self._reconstruct(batch.x, batch.edge_attr, plan)
        return Reconstruction(atom_logits, edge_logits, plan.masked_atoms, plan.masked_edges)

    def plan(self, batch: Batch, atom_mask: Tensor, edge_mask: Tensor) -> MaskPlan:
        """The index work of one masked batch, whose sizes depend on the data (see :class:`MaskPlan`)."""
        num_atoms = batch.num_nodes
        masked_atoms, masked_edges = atom_mask.nonzero().squeeze(1), edge_mask.nonzero().squeeze(1)
        visible_atom_sum, visible_atoms = AtomNeighbourSum.induced(batch.edge_index, ~atom_mask)
        visible_edge_sum, visible_edges = EdgeNeighbourSum.visible(
            batch.edge_index, batch.rev_edge, num_atoms, ~edge_mask)
        return MaskPlan(
            atom_code=positional_code(batch.ptr, self.hidden, self.positions),
            edge_code=positional_code(batch.edge_ptr, self.hidden, self.positions),
            masked_atoms=masked_atoms, masked_edges=masked_edges,
            visible_atoms=visible_atoms, visible_edges=visible_edges,
            visible_edge_sources=batch.edge_index[0].index_select(0, visible_edges),
            visible_atom_sum=visible_atom_sum, visible_edge_sum=visible_edge_sum,
            atom_sum=AtomNeighbourSum.full(batch.edge_index, num_atoms),
            edge_sum=EdgeNeighbourSum.full(batch.edge_index, batch.rev_edge, num_atoms))

    def reconstruct(self, x: Tensor, edge_attr: Tensor, plan: MaskPlan) -> tuple[Tensor | None, Tensor | None]:
        """The masked atoms' and edges' logits from the batch's features and its :meth:`plan`.

        Only tensor arithmetic on shapes known from the inputs: what :meth:`enable_compile` compiles.
        """
        atom_logits = edge_logits = None
        if self.trains_atoms:
            encoded_atoms = self.node_encoder(x.index_select(0, plan.visible_atoms), plan.visible_atom_sum,
                                              plan.atom_code.index_select(0, plan.visible_atoms))
            atom_logits = self.node_decoder(encoded_atoms, plan.visible_atoms, plan.masked_atoms,
                                            plan.atom_code, plan.atom_sum)
        if self.trains_bonds:
            inputs = directed_edge_inputs(x, plan.visible_edge_sources,
                                          edge_attr.index_select(0, plan.visible_edges))
            encoded_edges = self.edge_encoder(inputs, plan.visible_edge_sum,
                                              plan.edge_code.index_select(0, plan.visible_edges))
            edge_logits = self.edge_decoder(encoded_edges, plan.visible_edges, plan.masked_edges,
                                            plan.edge_code, plan.edge_sum)
        return atom_logits, edge_logits

    def enable_compile(self, fullgraph: bool = True) -> BatmanNet:
        """Run :meth:`reconstruct` through ``torch.compile`` (dynamic shapes; with ``fullgraph``, a
        graph break is an error, not a silent fallback). The weights and the state dict are unchanged.
        """
        self._reconstruct = torch.compile(self.reconstruct, dynamic=True, fullgraph=fullgraph)
        return self

    def _reconstruct(self, x: Tensor, edge_attr: Tensor, plan: MaskPlan) -> tuple[Tensor | None, Tensor | None]:
        return self.reconstruct(x, edge_attr, plan)

    def _masks(self, batch: Batch, atom_mask: Tensor | None,
               edge_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        if atom_mask is None and edge_mask is None:
            if "atom_mask" in batch and "edge_mask" in batch:
                return batch.atom_mask, batch.edge_mask
            return random_masks(batch, self.mask_ratio)
        if atom_mask is None or edge_mask is None:
            raise ValueError("give both atom_mask and edge_mask, or neither")
        return atom_mask, edge_mask

    def pretrain_loss(self, batch: Batch, atom_mask: Tensor | None = None,
                      edge_mask: Tensor | None = None) -> ReconstructionLoss:
        """:meth:`forward` followed by :func:`reconstruction_loss`."""
        return reconstruction_loss(self(batch, atom_mask, edge_mask), batch)

    def encode(self, batch: Batch) -> dict[str, Tensor]:
        """Both encoders' block outputs on the full, unmasked graph, without positional code.

        Returns ``{"atom": (N, h), "edge": (E, h)}`` (the trained branches): the inputs of fine-tuning's readouts
        (spec section 9), which aggregate them and add the raw input features themselves.
        """
        states = {}
        if self.trains_atoms:
            states["atom"], _ = self.node_encoder.hidden_states(
                batch.x, AtomNeighbourSum.full(batch.edge_index, batch.num_nodes))
        if self.trains_bonds:
            states["edge"], _ = self.edge_encoder.hidden_states(
                edge_inputs(batch), EdgeNeighbourSum.full(batch.edge_index, batch.rev_edge,
                                                          batch.num_nodes))
        return states


# ----------------------------------------------------------------------------------------- loss

#: The reconstruction targets, as (name, logit slice, kind). Atom fields come first in both
#: branches; the edge branch adds the bond's type and stereo (in-ring is no target, spec 6).
_ATOM_TARGETS = tuple((name, ATOM_FIELD_OFFSETS[i], ATOM_FIELD_SIZES[i]) for i, name in enumerate(ATOM_FIELDS))
_BOND_TYPE_SLICE = (ATOM_DIM + BOND_FIELD_OFFSETS[0], BOND_TYPE_OTHER)
_STEREO_SLICE = (ATOM_DIM + BOND_FIELD_OFFSETS[2], EDGE_DIM - ATOM_DIM - BOND_FIELD_OFFSETS[2])


@dataclass
class ReconstructionLoss:
    """Masked-reconstruction loss of a batch and what validation needs to report.

    Attributes:
        total: node loss + edge loss (scalar, differentiable).
        node: sum of the five atom-field terms.
        edge: sum of the seven edge terms.
        terms: every term, ``"atom.element"`` ... ``"edge.stereo"``; each a mean over its masked
            items (0 when there are none).
        correct: per term, number of masked items whose field is predicted right (argmax; logit > 0
            for aromatic), detached long scalars (empty when not asked for, as in training steps).
        count: per term, number of masked items that carry a target (bond type "other" carries none).
        class_counts: per term, histogram of the masked items' targets (majority-class baseline;
            empty when not asked for).
    """

    total: Tensor
    node: Tensor
    edge: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    correct: dict[str, Tensor] = field(default_factory=dict)
    count: dict[str, Tensor] = field(default_factory=dict)
    class_counts: dict[str, Tensor] = field(default_factory=dict)


def _categorical_term(logits: Tensor, target: Tensor, valid: Tensor | None = None, counts: bool = True
                      ) -> tuple[Tensor, Tensor | None, Tensor]:
    """Mean cross-entropy over the valid items, their number right (with ``counts``) and their number."""
    if valid is not None:
        logits, target = logits[valid], target[valid]
    count = torch.tensor(target.numel(), device=logits.device)
    loss = F.cross_entropy(logits, target, reduction="sum") / count.clamp(min=1)
    correct = (logits.detach().argmax(1) == target).sum() if counts else None
    return loss, correct, count


def _binary_term(logit: Tensor, target: Tensor, counts: bool = True) -> tuple[Tensor, Tensor | None, Tensor]:
    """Mean binary cross-entropy with logits, number right (with ``counts``) and number of items."""
    count = torch.tensor(target.numel(), device=logit.device)
    loss = F.binary_cross_entropy_with_logits(logit, target.float(), reduction="sum") / count.clamp(min=1)
    correct = ((logit.detach() > 0) == target.bool()).sum() if counts else None
    return loss, correct, count


def reconstruction_loss(recon: Reconstruction, batch: Batch, counts: bool = True) -> ReconstructionLoss:
    """Spec section 6: per-field cross-entropy (BCE for aromatic) over masked items only.

    Targets are the batch's integer codes: the masked atoms' own codes for the node branch; for the
    edge branch the masked edges' source-atom codes, bond type (4 exclusive classes; code 4,
    "other", is skipped) and stereo. Terms are summed unweighted; total = node + edge.
    Without ``counts`` the result holds the losses only (``correct`` and ``class_counts`` empty):
    a training step reads nothing else, and validation, which does, asks for them.
    """
    zero = torch.zeros((), device=recon.masked_atoms.device)
    result = ReconstructionLoss(total=zero, node=zero, edge=zero)

    def add(name: str, term: tuple[Tensor, Tensor, Tensor], target: Tensor, classes: int) -> Tensor:
        result.terms[name], correct, result.count[name] = term
        if counts:
            result.correct[name] = correct
            result.class_counts[name] = torch.bincount(target.detach(), minlength=classes)
        return term[0]

    def atom_fields(prefix: str, logits: Tensor, codes: Tensor) -> Tensor:
        loss = logits.new_zeros(())
        for i, (name, start, size) in enumerate(_ATOM_TARGETS):
            if size == 1:  # aromatic bit
                term = _binary_term(logits[:, start], codes[:, i], counts)
                loss = loss + add(f"{prefix}.{name}", term, codes[:, i], 2)
            else:
                term = _categorical_term(logits[:, start:start + size], codes[:, i], counts=counts)
                loss = loss + add(f"{prefix}.{name}", term, codes[:, i], size)
        return loss

    if recon.atom_logits is not None:
        atom_codes = batch.atom_codes.index_select(0, recon.masked_atoms)
        result.node = atom_fields("atom", recon.atom_logits, atom_codes)
    if recon.edge_logits is not None:
        result.edge = _edge_terms(recon, batch, atom_fields, add, counts)
    result.total = result.node + result.edge
    return result


def _edge_terms(recon: Reconstruction, batch: Batch, atom_fields: Callable, add: Callable, counts: bool) -> Tensor:
    """The edge branch's terms: the masked edges' source-atom fields, bond type and stereo."""
    source = batch.edge_index[0].index_select(0, recon.masked_edges)
    bond_codes = batch.bond_codes.index_select(0, recon.masked_edges)
    edge = atom_fields("edge", recon.edge_logits, batch.atom_codes.index_select(0, source))
    start, size = _BOND_TYPE_SLICE
    is_typed = bond_codes[:, 0] != BOND_TYPE_OTHER
    term = _categorical_term(recon.edge_logits[:, start:start + size], bond_codes[:, 0], is_typed, counts)
    edge = edge + add("edge.bond_type", term, bond_codes[is_typed, 0], size)
    start, size = _STEREO_SLICE
    term = _categorical_term(recon.edge_logits[:, start:start + size], bond_codes[:, 2], counts=counts)
    return edge + add("edge.stereo", term, bond_codes[:, 2], size)


# ----------------------------------------------------------------------------- parameter count

def parameter_budget(config: dict | None = None) -> dict[str, dict[str, int]]:
    """Parameter counts of this model and of the reference, term by term (spec section 7).

    Counted analytically from the sizes, so that a difference between our model and the
    reference's 2,575,709 is explained line by line. Reading the reference code shows more dead
    weight than the spec lists: besides the unused input projections (10,100 in every later block,
    39/50 -> h in the decoder's first blocks) and two of four encoder output LayerNorms, every block
    owns an input PReLU and LayerNorm (201) that only the first encoder block applies (its input
    stage), and each encoder and decoder owns two branch PReLUs (``act_func_node`` /
    ``act_func_edge``) that its forward never calls.

    Returns:
        ``{"ours": {...}, "dead": {...}, "reference": {...}}``; ``"ours"`` and ``"reference"`` hold
        ``encoder``, ``decoder`` and ``total``; ``"dead"`` names each kind of unused weight.
    """
    c = BatmanNet().config | (config or {})
    h, heads, n_enc, n_dec = c["hidden"], c["heads"], c["encoder_blocks"], c["decoder_blocks"]
    prelu = 1 if c["activation"].lower() == "prelu" else 0

    def linear(a: int, b: int) -> int:
        return a * b + b

    norm = 2 * h
    block = 3 * heads * (linear(h, h) + prelu) + 4 * linear(h, h) + linear(heads * h, h) + norm
    ffn = linear(2 * h, 4 * h) + prelu + linear(4 * h, h)
    input_stage = {ATOM_DIM: linear(ATOM_DIM, h) + prelu + norm, EDGE_DIM: linear(EDGE_DIM, h) + prelu + norm}
    mask_token = h if c["mask_token"] == "learned" else 0
    encoder = sum(input_stage[d] + n_enc * block + ffn + norm for d in (ATOM_DIM, EDGE_DIM))
    decoder = sum(n_dec * block + ffn + norm + linear(h, d) + mask_token for d in (ATOM_DIM, EDGE_DIM))

    unused_stage = linear(h, h) + prelu + norm  # a later block's input stage
    dead_encoder = {
        "input stages of later encoder blocks": 2 * (n_enc - 1) * unused_stage,
        "encoder output LayerNorms unused in pre-training": 2 * norm,
        "encoder branch PReLUs": 2 * prelu,
    }
    dead_decoder = {
        "input stages of decoder blocks": sum(input_stage[d] + (n_dec - 1) * unused_stage
                                              for d in (ATOM_DIM, EDGE_DIM)),
        "decoder branch PReLUs": 2 * prelu,
    }
    ref_encoder = encoder + sum(dead_encoder.values())
    ref_decoder = decoder - 2 * mask_token + sum(dead_decoder.values())
    return {
        "ours": {"encoder": encoder, "decoder": decoder, "total": encoder + decoder},
        "dead": dead_encoder | dead_decoder,
        "reference": {"encoder": ref_encoder, "decoder": ref_decoder, "total": ref_encoder + ref_decoder},
    }


def reference_parameter_count(config: dict | None = None) -> dict[str, int]:
    """The reference implementation's parameter count (encoder, decoder, total) at ``config``."""
    return parameter_budget(config)["reference"]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())
