"""The pre-training ablation (the paper's mask-ratio sweep and design ablations) as a table and a
figure: one row per pre-training variant, each fine-tuned on the same split files.

A fine-tuning run of a variant says so in its ``metrics.json`` (``variant``, from ``bbmn finetune
--variant``); the main run's pre-trained rows have none and are the ``default`` row. What each
variant changed is read from the pre-training run it was fine-tuned from (``config.json`` next to
its ``model.pt``), not from the workflow's config, so the table shows what was actually run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bbmn.errors import BbmnError
from bbmn.eval.metrics import HIGHER_IS_BETTER
from bbmn.eval.reference import in_table_order
from bbmn.io import atomic_path

#: the row of the main run (fine-tuned without ``--variant``)
DEFAULT = "default"
#: pre-training settings an ablation varies: (key, column header, where in config.json)
SETTINGS = (("mask_ratio", "mask ratio", ("mask_ratio",)),
            ("decoder_blocks", "decoder blocks", ("model", "decoder_blocks")),
            ("branches", "branches", ("model", "branches")),
            ("masking", "masking", ("dynamic_mask",)))


@dataclass
class VariantRuns:
    """A variant's pre-training settings and its test scores per dataset (one per seed)."""

    name: str
    settings: dict
    scores: dict[str, dict[int, float]] = field(default_factory=dict)
    metric_of: dict[str, str] = field(default_factory=dict)

    def cell(self, dataset: str) -> tuple[float, float, int]:
        """Mean, population std and number of the finite seed scores on ``dataset``."""
        values = [v for v in self.scores.get(dataset, {}).values() if not math.isnan(v)]
        if not values:
            return math.nan, math.nan, 0
        return float(np.mean(values)), float(np.std(values)), len(values)


def pretraining_settings(checkpoint: str | Path) -> dict:
    """The ablated settings of the pre-training run that wrote ``checkpoint``: its run's
    config.json, or, for a model file without its run (``pretrain.use_model``), the file's card."""
    path = Path(checkpoint).parent / "config.json"
    if path.is_file():
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise BbmnError(f"cannot read the pre-training config {path}: {exc}") from None
    else:
        config = _config_from_model_file(checkpoint)
    settings = {}
    for key, _, where in SETTINGS:
        value = config
        for part in where:
            value = value.get(part) if isinstance(value, dict) else None
        settings[key] = value
    if settings["branches"] is None:  # written before single-branch pre-training existed
        settings["branches"] = "both"
    settings["masking"] = {True: "dynamic", False: "static"}.get(settings["masking"])
    return settings


def _config_from_model_file(path: str | Path) -> dict:
    """The training config in a model file's card; the model config alone for an older file."""
    from bbmn.train.checkpoint import load_checkpoint

    saved = load_checkpoint(path, what="pre-trained model")
    card = saved.get("card") if isinstance(saved.get("card"), dict) else {}
    if isinstance(card.get("training_config"), dict):
        return card["training_config"]
    model = saved.get("model_config") or {}
    return {"mask_ratio": model.get("mask_ratio"), "model": model}


def load_variants(metric_files: Iterable[str | Path]) -> list[VariantRuns]:
    """Group pre-trained fine-tuning runs by variant (the default first, then as given)."""
    variants: dict[str, VariantRuns] = {}
    for path in metric_files:
        try:
            m = json.loads(Path(path).read_text())
            name = m.get("variant") or DEFAULT
            checkpoint = (m.get("checkpoint") or {}).get("path")
            if checkpoint is None:
                raise ValueError("it is not a run fine-tuned from a pre-trained model")
            dataset, seed, value = m["dataset"], int(m["seed"]), float(m["test"]["value"])
            metric = m["metric"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BbmnError(f"cannot read metric file {path}: {exc}") from None
        if name not in variants:
            variants[name] = VariantRuns(name, pretraining_settings(checkpoint))
        runs = variants[name]
        if seed in runs.scores.setdefault(dataset, {}):
            raise BbmnError(f"two metric files for variant {name} on {dataset} seed {seed}")
        runs.scores[dataset][seed] = value
        runs.metric_of[dataset] = metric
    order = sorted(variants, key=lambda n: n != DEFAULT)  # stable: the default, then as given
    return [variants[n] for n in order]


def ablation_frame(variants: Sequence[VariantRuns]) -> pd.DataFrame:
    """One line per variant and dataset: settings, mean, std, seeds, and the cell's text."""
    datasets = in_table_order({d for v in variants for d in v.scores})
    lines = []
    for v in variants:
        for d in datasets:
            mean, std, n = v.cell(d)
            runs = len(v.scores.get(d, {}))
            metric = next((x.metric_of[d] for x in variants if d in x.metric_of), "")
            text = f"{mean:.3f} ({std:.3f})" if n else "–"
            if 0 < n < runs:
                text += f" [{n}/{runs} seeds]"  # a seed whose test part could not be scored
            lines.append({"variant": v.name, **v.settings, "dataset": d, "metric": metric,
                          "mean": mean, "std": std, "n_seeds": n, "text": text})
    return pd.DataFrame(lines)


def render_ablation_markdown(frame: pd.DataFrame, seeds: Sequence[int]) -> str:
    """The table: variants as rows, their settings, then each dataset's mean (std) over seeds."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    metrics = frame.drop_duplicates("dataset").set_index("dataset")["metric"]
    headers = ["Variant", *(h for _, h, _ in SETTINGS),
               *(f"{d} ({metrics[d].upper().replace('_', '-')} {'↑' if HIGHER_IS_BETTER.get(metrics[d]) else '↓'})"
                 for d in datasets)]
    lines = [f"**Pre-training ablation: each variant pre-trained, then fine-tuned on the same split "
             f"files (seeds {', '.join(map(str, seeds))}); test mean (std over seeds).**", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * (1 + len(SETTINGS))
                                                             + [":-:"] * len(datasets)) + "|"]
    for name, rows in frame.groupby("variant", sort=False):
        first = rows.iloc[0]
        settings = ["–" if first[k] is None or (isinstance(first[k], float) and math.isnan(first[k]))
                    else str(first[k]) for k, _, _ in SETTINGS]
        texts = rows.set_index("dataset")["text"]
        lines.append("| " + " | ".join([name, *settings, *(texts[d] for d in datasets)]) + " |")
    return "\n".join(lines) + "\n"


def mask_ratio_family(variants: Sequence[VariantRuns]) -> list[VariantRuns]:
    """The variants that differ from the default only in the mask ratio (and the default), by
    mask ratio: the points of the paper's mask-ratio curve."""
    base = next((v for v in variants if v.name == DEFAULT), None)
    if base is None:
        return []
    others = {k: base.settings[k] for k, _, _ in SETTINGS if k != "mask_ratio"}
    family = [v for v in variants if all(v.settings[k] == x for k, x in others.items())]
    return sorted(family, key=lambda v: v.settings["mask_ratio"])


def write_ablation(metric_files: Iterable[str | Path], out_dir: str | Path) -> dict[str, str]:
    """Write ``ablation.md`` and ``ablation.csv`` into ``out_dir``; return ``{name: path}``."""
    variants = load_variants(metric_files)
    if not variants:
        raise BbmnError("no metric files given")
    frame = ablation_frame(variants)
    seeds = sorted({s for v in variants for by_seed in v.scores.values() for s in by_seed})
    out_dir = Path(out_dir)
    written = {}
    for name, content in (("ablation.csv", frame.to_csv(index=False)),
                          ("ablation.md", render_ablation_markdown(frame, seeds))):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(content)
        written[name] = str(out_dir / name)
    return written
