"""The report's figures, from the files in ``results/`` (matplotlib, Agg backend, PNG and SVG).

- :func:`plot_pretrain`: pre-training loss (train every logged step, train and validation per
  epoch) and the validation reconstruction accuracy of each masked field beside the accuracy of
  always predicting its most common class (``history.jsonl``, ``steps.jsonl`` of a run directory).
- :func:`plot_comparison`: one panel per dataset, a bar per model with the population std over
  seeds as error bar, beside the published reference rows (spec section 11); read from the same
  ``metrics.json`` files as the tables, with :func:`bbmn.eval.tables.load_results`.
- :func:`plot_roc`: ROC curves of the test predictions of one classification dataset, one line
  per model and seed (``predictions.csv`` beside each ``metrics.json``).
- :func:`plot_health`: representation health of probe and fine-tuning runs;
  :func:`plot_ablation`: test score against the pre-training mask ratio.

Every figure is written as ``<out>.png`` and ``<out>.svg``, each atomically. The report's HTML
pages (tables, and the overview with every figure inlined) are built in :mod:`bbmn.eval.pages`.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bbmn.errors import BbmnError
from bbmn.eval.reference import DISPLAY_NAMES, REFERENCE_ROWS, in_table_order
from bbmn.eval.tables import Cell, RunResult, load_results
from bbmn.io import atomic_path
from bbmn.kinds import BY_KEY, colour_of, label_of, row_order

FORMATS = ("png", "svg")
UNITS = {"roc_auc": "ROC-AUC (higher is better)", "rmse": "RMSE (lower is better)",
         "mae": "MAE (lower is better)"}
REFERENCE_COLOURS = ("0.45", "0.7")


def _pyplot():
    """pyplot on the Agg backend (no display needed), with a small, readable style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "font.size": 9,
                         "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "bbmn", "svg.fonttype": "none"})
    return plt


def figure_paths(out: str | Path) -> dict[str, Path]:
    """``{"png": out.png, "svg": out.svg}`` for ``out`` given with or without a suffix."""
    out = Path(out)
    base = out.with_suffix("") if out.suffix.lower() in (".png", ".svg") else out
    return {fmt: base.with_name(f"{base.name}.{fmt}") for fmt in FORMATS}


def save_figure(fig, out: str | Path) -> dict[str, str]:
    """Write ``fig`` as PNG and SVG (atomically, no timestamps in the SVG); close it."""
    import matplotlib.pyplot as plt

    written = {}
    for fmt, path in figure_paths(out).items():
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        written[fmt] = str(path)
    plt.close(fig)
    return written


# ---------------------------------------------------------------------------------------------
# Pre-training curves


def _read_jsonl(path: Path) -> list[dict]:
    """Lines of a JSON-lines file, one per step (a resumed run may repeat a step: the last wins)."""
    if not path.is_file():
        return []
    records: dict[float, dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records[float(record["step"])] = record
        except (ValueError, KeyError, TypeError) as exc:
            raise BbmnError(f"{path}, line {number}: not a history record ({exc})") from None
    return [records[k] for k in sorted(records)]


def read_pretrain_history(run_dir: str | Path) -> tuple[list[dict], list[dict]]:
    """``(epochs, steps)`` of a pre-training run directory: ``history.jsonl`` (validation per
    epoch) and ``steps.jsonl`` (training loss every logged step; absent in older runs)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BbmnError(f"pre-training run directory {run_dir} does not exist")
    epochs = _read_jsonl(run_dir / "history.jsonl")
    steps = _read_jsonl(run_dir / "steps.jsonl")
    if not epochs and not steps:
        raise BbmnError(f"{run_dir} has no history.jsonl or steps.jsonl (has `bbmn pretrain` run there?)")
    return epochs, steps


def plot_pretrain(run_dir: str | Path, out: str | Path, title: str | None = None) -> dict[str, str]:
    """Loss and validation accuracy curves of a pre-training run; returns the files written."""
    epochs, steps = read_pretrain_history(run_dir)
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    if steps:
        ax_loss.plot([r["step"] for r in steps], [r["train_loss"] for r in steps], color="tab:blue",
                     lw=1, marker="." if len(steps) < 30 else None, label="train (logged steps)")
    if epochs:
        x = [r["step"] for r in epochs]
        ax_loss.plot(x, [r.get("train_loss", math.nan) for r in epochs], "s--", color="tab:blue",
                     ms=5, alpha=0.6, label="train (epoch mean)")
        ax_loss.plot(x, [r.get("val_loss", math.nan) for r in epochs], "o-", color="tab:red", ms=5,
                     label="validation")
    ax_loss.set(xlabel="optimizer step", ylabel="reconstruction loss (sum of cross-entropies)",
                title="Loss")
    ax_loss.legend(frameon=False)
    fields = sorted({k[len("val_acc."):] for r in epochs for k in r if k.startswith("val_acc.")})
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(fields):
        x = [r["step"] for r in epochs if f"val_acc.{name}" in r]
        ax_acc.plot(x, [r[f"val_acc.{name}"] for r in epochs if f"val_acc.{name}" in r], "o-",
                    color=cmap(i % 10), ms=5, label=name)
        majority = [r.get(f"val_majority.{name}", math.nan) for r in epochs if f"val_acc.{name}" in r]
        ax_acc.plot(x, majority, ":", marker="_", color=cmap(i % 10), ms=10, alpha=0.8)
    ax_acc.set(xlabel="optimizer step", ylabel="accuracy on masked items", ylim=(0, 1.02),
               title="Validation reconstruction (dotted: most common class)")
    if fields:
        ax_acc.legend(frameon=False, fontsize=7, ncol=2, loc="lower right")
    else:
        ax_acc.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=ax_acc.transAxes)
    fig.suptitle(title or f"Pre-training: {Path(run_dir).name}")
    fig.tight_layout()
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# Per-dataset comparison


def comparison_cells(results: Sequence[RunResult]) -> dict[str, dict[str, Cell]]:
    """``{dataset: {row: Cell}}``: each model's test scores over seeds, per dataset."""
    cells: dict[str, dict[str, Cell]] = defaultdict(dict)
    for r in results:
        cell = cells[r.dataset].setdefault(r.row, Cell([]))
        cell.values.append(r.value)
        cell.seeds.append(r.seed)
    return cells


@dataclass(frozen=True)
class Bar:
    """One bar of a comparison panel: a model's mean test score over seeds, or a published row.

    Attributes:
        key: the row id (a run kind's key, or the published row's name); one legend entry each.
        label: the legend's text.
        mean: the bar's height; NaN when no seed was scored (the bar reads "n/a").
        std: the error bar; NaN for none.
        colour: a matplotlib colour.
        hatch: a matplotlib hatch; published rows are hatched.
        scored: how many seeds gave a score, of ``seeds`` run (None for a published row): a bar
            with fewer says so, as its mean is over fewer seeds than its neighbours'.
        seeds: how many seeds ran (None for a published row).
    """

    key: str
    label: str
    mean: float
    std: float
    colour: str
    hatch: str | None = None
    scored: int | None = None
    seeds: int | None = None

    @property
    def bottom(self) -> float:
        """The lowest point the bar reaches: its mean less its error bar."""
        return self.mean - (0 if math.isnan(self.std) else self.std)


def comparison_bars(cells: dict[str, Cell], labels: dict[str, str], dataset: str) -> list[Bar]:
    """A dataset's bars: our rows in the registry's order, then the published rows it has."""
    bars = [Bar(row, labels[row], cell.mean, cell.std, colour_of(row), scored=len(cell.scored),
                seeds=len(cell.values))
            for row, cell in sorted(cells.items(), key=lambda item: row_order(item[0]))]
    for i, (ref, numbers) in enumerate(REFERENCE_ROWS.items()):
        if dataset in numbers:
            mean, std = numbers[dataset]
            bars.append(Bar(ref, f"{ref} (published)", mean, std, REFERENCE_COLOURS[i % 2], hatch="//"))
    return bars


def comparison_panels(results: Sequence[RunResult], datasets: Sequence[str] = ()) -> dict[str, list[Bar]]:
    """``{dataset: its bars}``, one panel per dataset the metric files score (a user's own too),
    in the tables' column order; ``datasets`` is the run's order (``run.datasets``), as for
    :func:`bbmn.eval.tables.write_tables`."""
    cells = comparison_cells(results)
    labels = {r.row: r.label or label_of(r.row) for r in results}
    return {dataset: comparison_bars(cells[dataset], labels, dataset)
            for dataset in in_table_order(cells, datasets)}


def plot_comparison(metric_files: Sequence[str | Path], out: str | Path,
                    datasets: Sequence[str] = ()) -> dict[str, str]:
    """Bars of mean test score with population-std error bars, one panel per dataset: our rows
    (pre-trained, scratch, baselines) and the published reference rows (hatched), panels as
    :func:`comparison_panels` orders them."""
    results = load_results(metric_files)
    if not results:
        raise BbmnError("no metric files given")
    metric_of = {r.dataset: r.metric for r in results}
    panels = comparison_panels(results, datasets)
    plt = _pyplot()
    ncols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 0.5, 3.4 * nrows), squeeze=False)
    handles = {}
    for ax, (dataset, bars) in zip(axes.flat, panels.items()):
        for xi, bar in enumerate(bars):
            h = ax.bar(xi, 0 if math.isnan(bar.mean) else bar.mean,
                       yerr=None if math.isnan(bar.std) else bar.std, color=bar.colour, hatch=bar.hatch,
                       edgecolor="white" if bar.hatch else None, capsize=3, width=0.75, label=bar.label)
            handles.setdefault(bar.key, h)
            if math.isnan(bar.mean):
                ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
            elif bar.scored != bar.seeds:
                ax.text(xi, bar.mean, f"[{bar.scored}/{bar.seeds}]", ha="center", va="bottom", fontsize=6)
        ax.set_xticks([])
        metric = metric_of[dataset]
        ax.set_title(f"{DISPLAY_NAMES.get(dataset, dataset)}", fontsize=10)
        ax.set_ylabel(UNITS.get(metric, metric), fontsize=8)
        if metric == "roc_auc":
            low = min([b.bottom for b in bars if not math.isnan(b.mean)] + [1.0])
            ax.set_ylim(max(0.0, math.floor(low * 10) / 10 - 0.05), 1.0)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    order = sorted(handles, key=lambda k: (k not in BY_KEY, row_order(k)))
    fig.legend([handles[k] for k in order], [handles[k].get_label() for k in order],
               loc="lower center", ncol=min(len(order), 3), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    seeds = sorted({r.seed for r in results})
    fig.suptitle(f"Test scores per dataset: mean and population std over seeds {', '.join(map(str, seeds))}")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * math.ceil(len(order) / 3), 1, 1))
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# Representation health


def read_health(metric_files: Sequence[str | Path]) -> tuple[dict, dict]:
    """Health records of probe and fine-tuning runs, from their metrics.json.

    Returns:
        ``probes``: ``{(dataset, row): health}`` (one per dataset and encoder: the probe's health
        is the encoder's, the same for every seed); ``finetunes``: ``{(dataset, row): [health at
        the kept epoch, one per seed]}``.
    """
    probes: dict[tuple[str, str], dict] = {}
    finetunes: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for path in metric_files:
        try:
            m = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise BbmnError(f"cannot read metric file {path}: {exc}") from None
        health = m.get("health")
        if not health:
            continue
        if "stage_cosine" in health:
            if m["row"] in BY_KEY:  # the run's pre-trained and random encoders, not snapshots
                probes.setdefault((m["dataset"], m["row"]), health)
        elif health.get("best_epoch"):
            finetunes[(m["dataset"], m["row"])].append(health["best_epoch"])
    return probes, dict(finetunes)


def plot_health(metric_files: Sequence[str | Path], out: str | Path,
                datasets: Sequence[str] = ()) -> dict[str, str]:
    """Do the graph views count? Four panels from probe and fine-tuning runs' health records:
    within-molecule cosine of the atom and edge states after each block (over-smoothing), each
    encoder's between-molecule spread and effective rank of the pooled views per dataset, and the
    views' share of the heads' input variance at the kept fine-tuning epoch. Datasets in the
    tables' column order (``datasets``: the run's order, as for :func:`plot_comparison`)."""
    probes, finetunes = read_health(metric_files)
    if not probes and not finetunes:
        raise BbmnError("no health records in the given metric files (probe or fine-tuning runs)")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 5, figsize=(21, 3.9))
    rows = sorted({row for _, row in probes}, key=row_order)
    datasets = in_table_order({d for d, _ in probes} | {d for d, _ in finetunes}, datasets)
    for branch, ax in zip(("atom", "edge"), axes[:2]):
        for row in rows:
            curves = np.array([probes[(d, row)]["stage_cosine"][branch] for d in datasets
                               if (d, row) in probes], dtype=float)
            ax.plot(np.arange(curves.shape[1]), curves.T, color=colour_of(row), alpha=0.25, lw=0.8)
            ax.plot(np.arange(curves.shape[1]), np.nanmean(curves, axis=0), "o-", color=colour_of(row),
                    lw=2, ms=4, label=f"{label_of(row)}, mean over datasets")
        ax.set(xlabel="stage (0 = input stage, k = after block k)",
               ylabel=f"mean cosine of two {branch}s' states", ylim=(0, 1.02),
               title=f"{branch.capitalize()} states of a molecule: over-smoothing")
    x = np.arange(len(datasets))
    ticks = [DISPLAY_NAMES.get(d, d) for d in datasets]

    def bars(ax, series: dict[str, list[float]], title: str, ylabel: str) -> None:
        width = 0.8 / max(len(series), 1)
        for k, (row, values) in enumerate(series.items()):
            ax.bar(x + k * width, values, width, color=colour_of(row), label=label_of(row))
        ax.set_xticks(x + 0.4 - width / 2, ticks, rotation=45, fontsize=7)
        ax.set(title=title, ylabel=ylabel)

    def both_views(row: str, key: str) -> list[float]:  # mean of the atom and the bond view
        return [float(np.mean([probes[(d, row)][v][key] for v in ("atom", "bond")]))
                if (d, row) in probes else math.nan for d in datasets]

    bars(axes[2], {row: both_views(row, "spread") for row in rows},
         "Pooled views: between-molecule spread", "std across molecules (mean of both views)")
    bars(axes[3], {row: both_views(row, "effective_rank") for row in rows},
         "Pooled views: effective rank", "effective rank (mean of both views)")
    kinds = sorted({row for _, row in finetunes}, key=row_order)
    bars(axes[4], {row: [float(np.mean([h["atom"]["input_share"] for h in finetunes[(d, row)]]))
                         if (d, row) in finetunes else math.nan for d in datasets] for row in kinds},
         "Fine-tuning: what the heads read", "atom view's share of head input variance")
    axes[4].set_ylim(0, 1.02)
    for ax in axes:
        if ax.has_data():
            ax.legend(frameon=False, fontsize=6)
    fig.tight_layout()
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# ROC curves


def read_predictions(metrics_path: str | Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(metrics, labels, scores)`` of a run: its metrics.json and the ``predictions.csv`` beside
    it, labels and scores ``(n, T)`` with NaN for a missing label."""
    metrics_path = Path(metrics_path)
    try:
        metrics = json.loads(metrics_path.read_text())
        tasks = list(metrics["tasks"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BbmnError(f"cannot read metric file {metrics_path}: {exc}") from None
    path = metrics_path.with_name("predictions.csv")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise BbmnError(f"cannot read {path}: {exc}") from None
    missing = [c for t in tasks for c in (t, f"{t}_pred") if c not in frame.columns]
    if missing:
        raise BbmnError(f"{path} lacks the columns {missing} of the tasks in {metrics_path.name}")
    try:
        labels = frame[tasks].to_numpy(dtype=np.float64)
        scores = frame[[f"{t}_pred" for t in tasks]].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise BbmnError(f"{path}: labels and predictions must be numbers ({exc})") from None
    return metrics, labels, scores


def pooled_roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """ROC over every labelled (molecule, task) pair, tasks pooled (micro average); None when
    the labels are one class."""
    from sklearn.metrics import roc_auc_score, roc_curve

    present = ~np.isnan(labels) & ~np.isnan(scores)
    y, s = labels[present], scores[present]
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, s)
    return fpr, tpr, float(roc_auc_score(y, s))


def plot_roc(metric_files: Sequence[str | Path], out: str | Path) -> dict[str, str]:
    """ROC curves of the test predictions of one classification dataset: a panel per model, a
    line per seed; the legend gives each seed's ROC-AUC as the tables score it (mean over tasks)."""
    runs = defaultdict(list)
    datasets = set()
    for path in metric_files:
        metrics, labels, scores = read_predictions(path)
        if metrics.get("task_type") != "classification":
            raise BbmnError(f"{path}: ROC curves need a classification dataset, "
                            f"not {metrics.get('task_type')}")
        datasets.add(metrics["dataset"])
        runs[metrics["row"]].append((int(metrics["seed"]), metrics, labels, scores))
    if not runs:
        raise BbmnError("no metric files given")
    if len(datasets) > 1:
        raise BbmnError(f"ROC curves of one dataset at a time, got {sorted(datasets)}")
    dataset = datasets.pop()
    rows = sorted(runs, key=row_order)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.8), squeeze=False)
    n_tasks = 0
    for ax, row in zip(axes.flat, rows):
        colour = colour_of(row)
        for k, (seed, metrics, labels, scores) in enumerate(sorted(runs[row], key=lambda r: r[0])):
            n_tasks = labels.shape[1]
            curve = pooled_roc(labels, scores)
            value = metrics.get("test", {}).get("value")
            auc_text = "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
            if curve is None:
                ax.plot([], [], label=f"seed {seed}: one class only")
                continue
            fpr, tpr, _ = curve
            ax.plot(fpr, tpr, color=colour, alpha=1.0 - 0.25 * k, lw=1.3,
                    ls=("-", "--", ":", "-.")[k % 4], label=f"seed {seed}: AUC {auc_text}")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", aspect="equal",
               title=runs[row][0][1].get("label") or label_of(row))
        ax.legend(frameon=False, fontsize=7, loc="lower right")
    axes.flat[0].set_ylabel("true positive rate")
    pooled = f", {n_tasks} tasks pooled" if n_tasks > 1 else ""
    fig.suptitle(f"{DISPLAY_NAMES.get(dataset, dataset)}: ROC of the test predictions{pooled}")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save_figure(fig, out)


# ---------------------------------------------------------------------------------------------
# Pre-training ablation


def plot_ablation(metric_files: Sequence[str | Path], out: str | Path) -> dict[str, str]:
    """The paper's mask-ratio curve: per dataset, the test score against the mask ratio of the
    variants that differ from the main run only in it (mean, population-std error bars); every
    other variant is a marker at its own mask ratio, labelled with its name."""
    from bbmn.eval.ablation import DEFAULT, load_variants, mask_ratio_family

    variants = load_variants(metric_files)
    if not variants:
        raise BbmnError("no metric files given")
    family = mask_ratio_family(variants)
    others = [v for v in variants if v not in family]
    datasets = in_table_order({d for v in variants for d in v.scores})
    plt = _pyplot()
    ncols = min(len(datasets), 4)
    nrows = math.ceil(len(datasets) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 0.5, 3.0 * nrows), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        metric = next(v.metric_of[dataset] for v in variants if dataset in v.metric_of)
        points = [(v.settings["mask_ratio"], *v.cell(dataset)) for v in family if dataset in v.scores]
        if points:
            x, mean, std, _ = map(np.array, zip(*points))
            ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, color="C0", label="mask ratio sweep")
        for i, v in enumerate(others):
            mean, std, n = v.cell(dataset)
            if n:
                ax.errorbar([v.settings["mask_ratio"]], [mean], yerr=[std], marker="s", capsize=3,
                            linestyle="none", color=f"C{i + 1}", label=v.name)
        base = next((v for v in variants if v.name == DEFAULT), None)
        if base is not None:
            ax.axvline(base.settings["mask_ratio"], color="0.8", linewidth=0.8, zorder=0)
        ax.set_title(DISPLAY_NAMES.get(dataset, dataset), fontsize=10)
        ax.set_xlabel("mask ratio", fontsize=8)
        ax.set_ylabel(UNITS.get(metric, metric), fontsize=8)
    for ax in list(axes.flat)[len(datasets):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    seeds = sorted({s for v in variants for by_seed in v.scores.values() for s in by_seed})
    fig.suptitle(f"Pre-training ablation: test score per variant (mean, std over seeds "
                 f"{', '.join(map(str, seeds))})")
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 1))
    return save_figure(fig, out)
