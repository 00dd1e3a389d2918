"""The fine-tuning model (spec section 9): BatmanNet's two encoders, two atom views, two heads.

GROVER's fine-tuning model, which BatmanNet keeps:

1. Both pre-trained branch encoders run on the full, unmasked graph with no positional code.
2. Two atom-level readouts, each ``aggregate -> concat RAW atom features (h + 39) ->
   FFN(h + 39 -> 4h -> h) -> Dropout(LayerNorm(.))``:

   * atom-from-atom: node-branch outputs summed over each atom's neighbour atoms;
   * atom-from-bond: edge-branch outputs summed over each atom's incoming directed edges.

   The reference also computes bond-from-atom and bond-from-bond (edge-level) readouts, which no
   head reads; they are left out here.
3. Each view is mean-pooled per molecule, concatenated with the molecule's 200 standardized
   descriptors and sent through its own head: Dropout, Linear(h + 200 -> 200), PReLU, Dropout,
   Linear(200 -> tasks).
4. Loss = loss(head A) + loss(head B) + c * MSE(A, B) (:func:`finetune_loss`); prediction = mean
   of the two heads (mean of the two sigmoids for classification).

Where the weights live, and why: the modules carry the pre-training model's names, so
:meth:`BatmanNetFinetune.load_pretrained` transfers every weight whose name and shape match, as
the reference's loader does. The node branch's aggregate-to-self of pre-training and the
atom-from-atom readout are the same module in the reference (``ffn_atom_from_atom``); only the
width of the features it concatenates differs (pre-training: the h-wide projected input;
fine-tuning: the 39 raw features). Here too it is ``node_encoder.readout``, so its second
Linear, PReLU and LayerNorm transfer and its first Linear starts fresh. The edge branch's
aggregate-to-self of pre-training reads out edges (bond-from-bond), which fine-tuning does not
use: it is not part of this model, and the atom-from-bond readout (``edge_encoder.atom_readout``)
starts fresh, as in the reference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Batch

from bbmn.chem.features import ATOM_DIM, EDGE_DIM
from bbmn.errors import BbmnError
from bbmn.models.batmannet import BranchEncoder
from bbmn.models.views import GraphInputs, graph_inputs
from bbmn.nn.blocks import ActivationDropout, Dropout, PositionwiseFFN
from bbmn.models.options import INPUTS, VIEW_NORMS

log = logging.getLogger(__name__)

TASK_TYPES = ("classification", "regression")
#: checkpoint kinds whose weights :meth:`BatmanNetFinetune.load_pretrained` accepts
LOADABLE_KINDS = ("batmannet-pretrained", "batmannet-finetuned")
#: BatmanNet constructor arguments that only matter for pre-training (accepted and ignored, so a
#: pre-trained checkpoint's ``model_config`` can be passed as it is)
PRETRAINING_ONLY = ("decoder_blocks", "mask_ratio", "positions", "mask_token", "branches")
#: the weights a pre-trained checkpoint must provide: both encoders' input stages and blocks
ENCODER_PREFIXES = tuple(f"{branch}_encoder.{part}." for branch in ("node", "edge")
                         for part in ("embed", "blocks"))


class AtomReadout(nn.Module):
    """An atom-level readout: concat(raw atom features, aggregated states), FFN, Dropout(LayerNorm).

    The submodules are named like :class:`bbmn.nn.blocks.AggregateToSelf`'s (``ffn.expand``,
    ``ffn.act``, ``ffn.contract``, ``norm``), so weights of equal shape transfer by name from a
    pre-trained branch readout.

    Args:
        hidden (int): width ``h`` of the aggregated states and of the output.
        raw_dim (int): width of the raw atom features. Default 39.
        dropout (float): dropout inside the FFN and after the LayerNorm. Default 0.1.
        activation (str): FFN activation. Default ``"prelu"``.
    """

    def __init__(self, hidden: int, raw_dim: int = ATOM_DIM, dropout: float = 0.1,
                 activation: str = "prelu") -> None:
        super().__init__()
        self.ffn = PositionwiseFFN(hidden + raw_dim, 4 * hidden, hidden, dropout, activation)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = Dropout(dropout)

    def forward(self, aggregated: Tensor, raw: Tensor) -> Tensor:
        """``(N, h)`` aggregated states and ``(N, raw_dim)`` raw features -> ``(N, h)``."""
        return self.dropout(self.norm(self.ffn(torch.cat([raw, aggregated], dim=1))))


def prediction_head(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1,
                    activation: str = "prelu") -> nn.Sequential:
    """GROVER's two-layer head: Dropout, Linear(in -> hidden), act, Dropout, Linear(hidden -> out)."""
    return nn.Sequential(Dropout(dropout), nn.Linear(in_dim, hidden),
                         ActivationDropout(activation, dropout), nn.Linear(hidden, out_dim))


@dataclass
class LoadReport:
    """What :meth:`BatmanNetFinetune.load_pretrained` did with a checkpoint.

    Attributes:
        loaded: model weights set from the checkpoint (name and shape matched).
        fresh: model weights the checkpoint did not provide (they keep their initialization).
        mismatched: names present in both whose shapes differ (they stay fresh too).
        unused: checkpoint weights with no counterpart in this model (e.g. the decoders).
    """

    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.as_dict().items()}

    def as_dict(self) -> dict[str, list[str]]:
        return {"loaded": self.loaded, "fresh": self.fresh, "mismatched": self.mismatched,
                "unused": self.unused}


class ViewNorm(nn.Module):
    """Scales a pooled view before its head, so that between-molecule differences are not drowned
    by 200 unit-variance descriptors (a view's between-molecule std is ~0.1 at initialisation).

    * ``"none"``: the view as it is (the reference);
    * ``"batchnorm"``: non-affine batch normalization (batch statistics in training, running
      statistics in evaluation);
    * ``"standardize"``: a fixed per-dimension standardization whose mean and std are set once,
      from the training part, by :meth:`set_statistics` (then saved with the model's weights).

    Args:
        width (int): view width.
        kind (str): one of :data:`VIEW_NORMS`. Default ``"none"``.
    """

    def __init__(self, width: int, kind: str = "none") -> None:
        super().__init__()
        if kind not in VIEW_NORMS:
            raise ValueError(f"unknown view normalization {kind!r}; expected one of {VIEW_NORMS}")
        self.kind = kind
        self.norm = nn.BatchNorm1d(width, affine=False) if kind != "none" else None

    def set_statistics(self, views: Tensor) -> None:
        """Fix ``"standardize"``'s mean and variance to those of ``views`` ``(n, width)``."""
        if self.kind != "standardize":
            raise ValueError(f"set_statistics is for 'standardize', not {self.kind!r}")
        self.norm.running_mean.copy_(views.mean(0))
        self.norm.running_var.copy_(views.var(0, unbiased=False))

    def forward(self, x: Tensor) -> Tensor:
        if self.norm is None:
            return x
        if self.kind == "standardize" or x.shape[0] < 2:
            # fixed statistics, or a batch of one molecule (no batch statistics; e.g. the last
            # training batch of 513 molecules in 32s): the running statistics
            return nn.functional.batch_norm(x, self.norm.running_mean, self.norm.running_var,
                                            training=False, eps=self.norm.eps)
        return self.norm(x)


class BatmanNetFinetune(nn.Module):
    """BatmanNet's encoders with GROVER's two-view prediction heads (spec section 9).

    Args:
        num_tasks (int): number of outputs per head (one per task).
        task_type (str): ``"classification"`` (outputs are logits) or ``"regression"`` (outputs
            are standardized values).
        hidden (int): encoder width ``h``. Default 100.
        heads (int): attention heads per encoder block. Default 2.
        depth (int): message-passing depth. Default 3.
        encoder_blocks (int): blocks per encoder branch. Default 6.
        dropout (float): dropout in the encoders and readouts. Default 0.1.
        activation (str): activation everywhere. Default ``"prelu"``.
        descriptor_dim (int): width of the molecule descriptors concatenated to each view
            (0 = none). Default 200.
        head_hidden (int): hidden width of each head. Default 200.
        head_dropout (float): dropout in the heads. Default 0.1.
        disagreement (float): weight ``c`` of the MSE between the two heads in
            :meth:`loss`. Default 0.1 (the reference's intended value; it silently ran with 0).
        inputs (str): what the heads read: ``"both"`` (default: each view + the descriptors),
            ``"graph"`` (the views alone) or ``"descriptors"`` (the descriptors alone: no encoder
            is built; a control that shows what the graph adds).
        view_norm (str): :class:`ViewNorm` of each pooled view. Default ``"none"`` (the spec).
        add_positions (bool): add the per-molecule positional code to the encoders' input
            projection, as pre-training does. Default False (the spec, section 9).
        residual (bool): the encoders' blocks add their input back (as the pre-trained model's).
            Default False.
        frozen_encoder (bool): the encoders' input stages and blocks stay in evaluation mode
            (no dropout) when the model trains; the trainer keeps their weights fixed. Default False.
        **ignored: pre-training-only arguments (:data:`PRETRAINING_ONLY`), accepted so that a
            pre-trained ``model_config`` can be passed unchanged.
    """

    def __init__(self, num_tasks: int, task_type: str, hidden: int = 100, heads: int = 2,
                 depth: int = 3, encoder_blocks: int = 6, dropout: float = 0.1,
                 activation: str = "prelu", descriptor_dim: int = 200, head_hidden: int = 200,
                 head_dropout: float = 0.1, disagreement: float = 0.1, inputs: str = "both",
                 view_norm: str = "none", add_positions: bool = False, residual: bool = False,
                 frozen_encoder: bool = False, **ignored: Any) -> None:
        super().__init__()
        unknown = set(ignored) - set(PRETRAINING_ONLY)
        if unknown:
            raise TypeError(f"unexpected arguments {sorted(unknown)}")
        if task_type not in TASK_TYPES:
            raise ValueError(f"unknown task type {task_type!r}; expected one of {TASK_TYPES}")
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be at least 1, got {num_tasks}")
        if inputs not in INPUTS:
            raise ValueError(f"unknown inputs {inputs!r}; expected one of {INPUTS}")
        if inputs == "graph":
            descriptor_dim = 0
        if inputs == "descriptors" and descriptor_dim < 1:
            raise ValueError("inputs='descriptors' needs descriptor_dim >= 1")
        self._config = dict(num_tasks=num_tasks, task_type=task_type, hidden=hidden, heads=heads,
                            depth=depth, encoder_blocks=encoder_blocks, dropout=dropout,
                            activation=activation, descriptor_dim=descriptor_dim,
                            head_hidden=head_hidden, head_dropout=head_dropout,
                            disagreement=disagreement, inputs=inputs, view_norm=view_norm,
                            add_positions=add_positions, residual=residual,
                            frozen_encoder=frozen_encoder)
        self.task_type, self.disagreement, self.descriptor_dim = task_type, disagreement, descriptor_dim
        self.inputs, self.add_positions, self.frozen_encoder = inputs, add_positions, frozen_encoder
        self.uses_graph = inputs != "descriptors"
        if self.uses_graph:
            shared = dict(hidden=hidden, heads=heads, depth=depth, blocks=encoder_blocks,
                          dropout=dropout, activation=activation, residual=residual)
            self.node_encoder = BranchEncoder(ATOM_DIM, **shared)
            self.edge_encoder = BranchEncoder(EDGE_DIM, **shared)
            # atom-from-atom takes the place of the node branch's pre-training aggregate-to-self
            # (the reference's ffn_atom_from_atom in both); the edge branch's pre-training
            # aggregate-to-self is an edge (bond-from-bond) readout that no head reads, so it is
            # dropped, and atom-from-bond is new (module docstring)
            self.node_encoder.readout = AtomReadout(hidden, ATOM_DIM, dropout, activation)
            del self.edge_encoder.readout
            self.edge_encoder.atom_readout = AtomReadout(hidden, ATOM_DIM, dropout, activation)
            self.atom_view_norm = ViewNorm(hidden, view_norm)
            self.bond_view_norm = ViewNorm(hidden, view_norm)
        head_in = (hidden if self.uses_graph else 0) + descriptor_dim
        self.atom_view_head = prediction_head(head_in, head_hidden, num_tasks, head_dropout, activation)
        self.bond_view_head = prediction_head(head_in, head_hidden, num_tasks, head_dropout, activation)

    @property
    def config(self) -> dict:
        """The constructor arguments (plain values): what a checkpoint stores to rebuild the model."""
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict) -> BatmanNetFinetune:
        return cls(**config)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The weights pre-training provides whole: both encoders' input stages and blocks."""
        return [p for name, p in self.named_parameters() if name.startswith(ENCODER_PREFIXES)]

    def train(self, mode: bool = True) -> BatmanNetFinetune:
        """As ``nn.Module.train``; a frozen encoder stays in evaluation mode (no dropout)."""
        super().train(mode)
        if self.frozen_encoder and self.uses_graph:
            for encoder in (self.node_encoder, self.edge_encoder):
                encoder.embed.eval()
                encoder.blocks.eval()
        return self

    # ---------------------------------------------------------------------------------- forward

    def raw_views(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The two molecule embeddings ``(B, h)`` before :class:`ViewNorm`: mean-pooled
        atom-from-atom and atom-from-bond readouts."""
        if not self.uses_graph:
            raise ValueError("a descriptors-only model has no graph views")
        return self._views_of(graph_inputs(self, batch, self.add_positions))

    def views_of(self, inputs: GraphInputs) -> tuple[Tensor, Tensor]:
        """:meth:`raw_views` from the batch's :class:`~bbmn.models.views.GraphInputs`: tensor
        arithmetic only, what :meth:`enable_compile` compiles."""
        atoms, _ = self.node_encoder.hidden_states(inputs.atoms, inputs.atom_sum, inputs.atom_code)
        edges, _ = self.edge_encoder.hidden_states(inputs.edges, inputs.edge_sum, inputs.edge_code)
        atom_view = self.node_encoder.readout(inputs.atom_sum(atoms), inputs.atoms)
        bond_view = self.edge_encoder.atom_readout(inputs.atoms_from_edges(edges), inputs.atoms)
        return inputs.pool(atom_view), inputs.pool(bond_view)

    def enable_compile(self, fullgraph: bool = True) -> BatmanNetFinetune:
        """Run the encoders and readouts (:meth:`views_of`) through ``torch.compile`` (dynamic
        shapes; with ``fullgraph``, a graph break is an error). The state dict is unchanged."""
        if self.uses_graph:
            self._views_of = torch.compile(self.views_of, dynamic=True, fullgraph=fullgraph)
        return self

    def _views_of(self, inputs: GraphInputs) -> tuple[Tensor, Tensor]:
        return self.views_of(inputs)

    def views(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The two molecule embeddings ``(B, h)`` the heads read (after :class:`ViewNorm`)."""
        atom_view, bond_view = self.raw_views(batch)
        return self.atom_view_norm(atom_view), self.bond_view_norm(bond_view)

    def head_inputs(self, batch: Batch, descriptors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """What each head reads, ``(B, head input width)``: view, descriptors, or both."""
        parts_a, parts_b = [], []
        if self.uses_graph:
            atom_view, bond_view = self.views(batch)
            parts_a.append(atom_view)
            parts_b.append(bond_view)
        if self.descriptor_dim:
            if descriptors is None:
                descriptors = getattr(batch, "descriptors", None)
            if descriptors is None or descriptors.shape != (batch.num_graphs, self.descriptor_dim):
                got = None if descriptors is None else tuple(descriptors.shape)
                raise ValueError(f"expected descriptors of shape ({batch.num_graphs}, "
                                 f"{self.descriptor_dim}), got {got}")
            dtype = parts_a[0].dtype if parts_a else self.atom_view_head[1].weight.dtype
            parts_a.append(descriptors.to(dtype))
            parts_b.append(descriptors.to(dtype))
        return torch.cat(parts_a, dim=1), torch.cat(parts_b, dim=1)

    def forward(self, batch: Batch, descriptors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Both heads' raw outputs ``(B, tasks)``: logits (classification) or standardized values.

        Args:
            batch: a batch following :mod:`bbmn.data.graph`'s contract.
            descriptors: ``(B, descriptor_dim)`` standardized descriptors (default:
                ``batch.descriptors``); ignored when ``descriptor_dim`` is 0.
        """
        input_a, input_b = self.head_inputs(batch, descriptors)
        return self.atom_view_head(input_a), self.bond_view_head(input_b)

    def predict(self, batch: Batch, descriptors: Tensor | None = None) -> Tensor:
        """Mean of the two heads: probabilities (classification) or standardized values."""
        return combine_heads(self(batch, descriptors), self.task_type)

    def loss(self, outputs: tuple[Tensor, Tensor], targets: Tensor) -> FinetuneLoss:
        """:func:`finetune_loss` with this model's task type and disagreement weight."""
        return finetune_loss(outputs, targets, self.task_type, self.disagreement)

    # --------------------------------------------------------------------------------- weights

    def load_pretrained(self, source: str | Path | dict) -> LoadReport:
        """Copy every checkpoint weight whose name and shape match one of this model's.

        Args:
            source: a checkpoint path, a loaded checkpoint dict (``bbmn pretrain``'s ``model.pt``
                or a fine-tuned ``model.pt``), or a bare state dict.

        Returns:
            The :class:`LoadReport` (also logged: counts, and the names of what starts fresh).

        Raises:
            BbmnError: if the checkpoint is of another kind, or does not provide every weight of
                the encoders' input stages and blocks (e.g. it has another hidden size).
        """
        state = _state_dict_of(source)
        own = self.state_dict()
        report = LoadReport()
        matched = {}
        for name, tensor in state.items():
            if name not in own:
                report.unused.append(name)
            elif own[name].shape != tensor.shape:
                report.mismatched.append(name)
            else:
                matched[name] = tensor
        report.loaded = [n for n in own if n in matched]
        report.fresh = [n for n in own if n not in matched]
        # the encoders proper (input stage and blocks) must come whole from the checkpoint;
        # a missing or reshaped one means a checkpoint of other sizes. A single-branch
        # pre-training (BatmanNet's `branches`) provides one encoder; the other starts fresh.
        branches = {name.split(".", 1)[0] for name in state} & {"node_encoder", "edge_encoder"}
        if not branches:
            raise BbmnError("the checkpoint holds no encoder weights (node_encoder or edge_encoder); "
                            "give bbmn pretrain's model.pt")
        missing = [n for n in report.fresh if n.startswith(ENCODER_PREFIXES) and n.split(".", 1)[0] in branches]
        if missing:
            raise BbmnError(f"the checkpoint's weights do not fit this model: {len(missing)} encoder "
                            f"weights are missing or have another shape (e.g. {missing[0]}); was it "
                            f"made with other sizes?")
        self.load_state_dict(matched, strict=False)
        counts = report.counts()
        log.info("pre-trained weights: %d tensors loaded, %d fresh (%s), %d of the checkpoint "
                 "unused, %d with another shape (%s)", counts["loaded"], counts["fresh"],
                 ", ".join(report.fresh), counts["unused"], counts["mismatched"],
                 ", ".join(report.mismatched))
        return report


def _state_dict_of(source: str | Path | dict) -> dict[str, Tensor]:
    if isinstance(source, (str, Path)):
        from bbmn.train.checkpoint import load_checkpoint  # train layer helper, no cycle at import

        source = load_checkpoint(source)
    if "model" in source and isinstance(source["model"], dict):
        kind = source.get("kind")
        if kind is not None and kind not in LOADABLE_KINDS:
            raise BbmnError(f"cannot fine-tune from a checkpoint of kind {kind!r}; expected "
                            f"{' or '.join(LOADABLE_KINDS)} (bbmn pretrain's model.pt)")
        return source["model"]
    if all(isinstance(v, Tensor) for v in source.values()):
        return source
    raise BbmnError("not a model checkpoint: it has neither a 'model' state dict nor tensors")


# ------------------------------------------------------------------------------------------ loss

@dataclass
class FinetuneLoss:
    """The fine-tuning loss of a batch and its parts (means over the present labels).

    Attributes:
        total: ``head_a + head_b + c * disagreement`` (differentiable).
        head_a: atom-from-atom head's BCE-with-logits or MSE.
        head_b: atom-from-bond head's.
        disagreement: MSE between the two heads' raw outputs.
        count: number of present labels the means run over.
    """

    total: Tensor
    head_a: Tensor
    head_b: Tensor
    disagreement: Tensor
    count: int


def finetune_loss(outputs: tuple[Tensor, Tensor], targets: Tensor, task_type: str,
                  disagreement: float = 0.1) -> FinetuneLoss:
    """Loss(A) + loss(B) + c * MSE(A, B) over the present labels (spec section 9).

    Each term is a mean over the (molecule, task) entries whose label is present (NaN =
    missing). As in GROVER's loss, the disagreement is averaged over the same entries: it is
    formed element-wise beside the label terms and masked with them.

    Args:
        outputs: both heads' raw outputs ``(B, T)``: logits or standardized values.
        targets: ``(B, T)`` labels (0/1) or standardized targets, NaN where missing.
        task_type: ``"classification"`` (BCE with logits) or ``"regression"`` (MSE).
        disagreement: weight ``c``.
    """
    a, b = outputs
    present = ~torch.isnan(targets)
    count = int(present.sum())
    y = torch.where(present, targets, torch.zeros_like(targets)).to(a.dtype)
    if task_type == "classification":
        term_a = F.binary_cross_entropy_with_logits(a, y, reduction="none")
        term_b = F.binary_cross_entropy_with_logits(b, y, reduction="none")
    elif task_type == "regression":
        term_a, term_b = (a - y).square(), (b - y).square()
    else:
        raise ValueError(f"unknown task type {task_type!r}; expected one of {TASK_TYPES}")
    weight = present.to(a.dtype) / max(count, 1)
    head_a = (term_a * weight).sum()
    head_b = (term_b * weight).sum()
    dist = ((a - b).square() * weight).sum()
    return FinetuneLoss(total=head_a + head_b + disagreement * dist, head_a=head_a, head_b=head_b,
                        disagreement=dist, count=count)


def combine_heads(outputs: tuple[Tensor, Tensor], task_type: str) -> Tensor:
    """The prediction: mean of the two heads (of their sigmoids for classification)."""
    a, b = outputs
    if task_type == "classification":
        return (torch.sigmoid(a) + torch.sigmoid(b)) / 2
    return (a + b) / 2
