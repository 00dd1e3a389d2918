"""The kinds of run a table compares, in one registry: key, label, order and colour.

Every run writes its kind's ``key`` as ``row`` and its ``label`` into ``metrics.json``; tables list
rows in registry order, figures colour them with the registry's colour. Fine-tuning kinds also
say what fine-tuning starts from (``init``) and what the heads read (``inputs``, see
:class:`bbmn.models.finetune.BatmanNetFinetune`).

The controls answer "what does pre-training add?" on the identical split files:

* descriptors only: the same two heads on the 200 descriptors, no graph at all;
* graph only: the heads on the pooled views alone, pre-trained and from scratch;
* linear probes: logistic / ridge regression on the frozen encoder's pooled views, for the
  pre-trained encoder and for a randomly initialised one (``bbmn probe``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class RunKind:
    """One row of the tables.

    Attributes:
        key: the row id (``metrics.json``'s ``row``).
        label: what tables and figures print.
        colour: matplotlib colour of the row in every figure.
        init: fine-tuning kinds: ``"pretrained"``, ``"scratch"`` or ``"none"`` (no encoder);
            None for other kinds.
        inputs: fine-tuning kinds: what the heads read (``both``, ``graph``, ``descriptors``).
    """

    key: str
    label: str
    colour: str
    init: str | None = None
    inputs: str | None = None


#: Fine-tuning kinds, by the name the workflow's ``finetune.kinds`` and run directories use.
FINETUNE_KINDS: dict[str, RunKind] = {
    "pretrained": RunKind("batmannet_pretrained", "BatmanNet (pre-trained)", "tab:blue", "pretrained", "both"),
    "scratch": RunKind("batmannet_scratch", "BatmanNet (scratch)", "tab:orange", "scratch", "both"),
    "graph_pretrained": RunKind("batmannet_graph_pretrained", "BatmanNet, graph only (pre-trained)",
                                "tab:cyan", "pretrained", "graph"),
    "graph_scratch": RunKind("batmannet_graph_scratch", "BatmanNet, graph only (scratch)",
                             "tab:olive", "scratch", "graph"),
    "descriptors_only": RunKind("batmannet_descriptors_only", "Same heads, descriptors only",
                                "tab:gray", "none", "descriptors"),
}

#: Linear-probe kinds, by encoder (``bbmn probe``).
PROBE_KINDS: dict[str, RunKind] = {
    "pretrained": RunKind("probe_pretrained", "Linear probe (pre-trained encoder)", "tab:purple"),
    "random": RunKind("probe_random", "Linear probe (random encoder)", "tab:pink"),
    "finetuned": RunKind("probe_finetuned", "Linear probe (fine-tuned encoder)", "tab:brown"),
}

#: Baselines trained on the same split files (``bbmn baseline``).
BASELINE_KINDS: dict[str, RunKind] = {
    "ecfp_rf": RunKind("ecfp_rf", "ECFP4 + RF", "tab:green"),
    "chemprop": RunKind("chemprop", "chemprop D-MPNN", "tab:red"),
}

#: Every row, in table order.
ROWS: tuple[RunKind, ...] = (*FINETUNE_KINDS.values(), *PROBE_KINDS.values(), *BASELINE_KINDS.values())
BY_KEY: dict[str, RunKind] = {kind.key: kind for kind in ROWS}

#: Paired comparisons the tables report (same dataset and seed): (better-if-positive row, baseline
#: row, label).
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("batmannet_pretrained", "batmannet_scratch", "pre-trained − scratch"),
    ("batmannet_graph_pretrained", "batmannet_graph_scratch", "graph only: pre-trained − scratch"),
    ("batmannet_pretrained", "batmannet_descriptors_only", "pre-trained − descriptors only"),
    ("probe_pretrained", "probe_random", "probe: pre-trained − random encoder"),
)


def _natural(text: str) -> tuple:
    """``step500`` before ``step1500``: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def row_order(key: str) -> tuple:
    """Sort key of a row: registry order; a tagged row (``probe_pretrained_step500``, see
    :func:`bbmn.eval.probe.tagged`) right after its kind, tags in natural order; unknown rows
    last, in natural order."""
    keys = [kind.key for kind in ROWS]
    if key in keys:
        return (keys.index(key), ())
    tagged = [k for k in keys if key.startswith(k + "_")]
    if tagged:
        base = max(tagged, key=len)
        return (keys.index(base), _natural(key[len(base) + 1:]))
    return (len(keys), _natural(key))


def label_of(key: str) -> str:
    return BY_KEY[key].label if key in BY_KEY else key


def colour_of(key: str, default: str = "tab:purple") -> str:
    return BY_KEY[key].colour if key in BY_KEY else default
