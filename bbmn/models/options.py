"""BatmanNet's options, without torch: the commands' flags and the workflow's ``pretrain.model``
section are these fields (:mod:`bbmn.options`)."""

from __future__ import annotations

from dataclasses import dataclass

from bbmn.nn.choices import ACTIVATIONS, POSITION_MODES
from bbmn.options import option

MASK_TOKENS = ("zero", "learned")
#: which branches pre-train: both (the paper), or one alone (the paper's single-branch ablation)
BRANCHES = ("both", "atoms", "bonds")
#: what the fine-tuning heads read: both views and the descriptors (spec), the views alone, the
#: descriptors alone (a control without encoder)
INPUTS = ("both", "graph", "descriptors")
#: normalization of each pooled view before its head (:class:`bbmn.models.finetune.ViewNorm`)
VIEW_NORMS = ("none", "batchnorm", "standardize")


@dataclass(frozen=True)
class ModelOptions:
    """BatmanNet's sizes and options as commands and the workflow's ``pretrain.model`` give them
    (the spec's defaults, section 7; ``dataclasses.asdict`` gives :class:`BatmanNet`'s keyword
    arguments). The mask ratio is pre-training's setting, not the model's."""

    hidden: int = option(100, "hidden size h")
    heads: int = option(2, "attention heads per block")
    depth: int = option(3, "message-passing depth")
    encoder_blocks: int = option(6, "blocks per encoder branch")
    decoder_blocks: int = option(2, "blocks per decoder branch")
    dropout: float = option(0.1, "dropout rate in the blocks and readouts")
    activation: str = option("prelu", "activation of the blocks and readouts", choices=ACTIVATIONS)
    positions: str = option("molecule", "positional code index: within the molecule, or the reference's "
                            "batch-wide one", choices=POSITION_MODES)
    mask_token: str = option("zero", "what masked items carry into the decoder besides the positional "
                             "code", choices=MASK_TOKENS)
    residual: bool = option(False, "every block adds its input back (GROVER's res_connection; the "
                            "reference: no, whose blocks collapse in pre-training, docs/evidence.md)")
    branches: str = option("both", "which branches pre-train (one alone: the single-branch ablation; "
                           "fine-tuning then starts the other encoder fresh)", choices=BRANCHES)

#: the encoder sizes a pre-trained checkpoint fixes for fine-tuning, probing and embedding
ENCODER_SIZES = ("hidden", "heads", "depth", "encoder_blocks", "activation", "residual")


@dataclass(frozen=True)
class HeadOptions:
    """The fine-tuning heads' sizes (spec section 9), beside the encoders' :class:`ModelOptions`."""

    head_hidden: int = option(200, "hidden width of each head")
    head_dropout: float = option(0.1, "dropout in the heads")
