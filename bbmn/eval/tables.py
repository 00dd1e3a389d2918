"""The paper's tables from the metric files in ``results/`` (never from MLflow).

Every fine-tuning, probe or baseline run writes a ``metrics.json`` (dataset, seed, row id and
label, metric, test score per task). This module groups them by table row and dataset, reports
mean (population std) over seeds, adds the published reference rows of spec section 11 and the
differences to them, and writes each table as CSV, Markdown and LaTeX, plus a per-task file.
A table (one per task type) has every dataset the files score for it: the paper's in the
paper's order, then a user's own in the run's order (``bbmn table --datasets``).

Paired rows (:data:`bbmn.kinds.PAIRS`, e.g. pre-trained − scratch) compare two rows seed by seed
on the same split files: the mean difference, its spread, and on how many seeds the first row is
better. Over all datasets x seeds of a table, a Wilcoxon signed-rank test says whether the first
row is better more than chance allows (the pairwise comparison of Sun, Dai and Yu, NeurIPS 2022);
``paired.csv`` holds the tests.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bbmn.errors import BbmnError
from bbmn.eval.reference import (BATMANNET_PAPER_CLASSIFICATION_MEAN, DISPLAY_NAMES, REFERENCE_ROWS,
                                 SPEC_BUDGET, in_table_order)
from bbmn.eval.metrics import HIGHER_IS_BETTER, METRICS_FOR, check_metric, task_type_of
from bbmn.io import atomic_path
from bbmn.kinds import PAIRS, row_order

REQUIRED = ("dataset", "seed", "row", "label", "metric", "test")


@dataclass
class RunResult:
    """One run's test score, as read from its metrics.json."""

    dataset: str
    seed: int
    row: str
    label: str
    metric: str
    task_type: str
    value: float
    tasks: list[str]
    per_task: list[float | None]
    split_method: str
    path: str


@dataclass
class Cell:
    """Mean (population std) of one row on one dataset, over its seeds."""

    values: list[float]
    seeds: list[int] = field(default_factory=list)

    @property
    def scored(self) -> list[float]:
        """The seeds' finite scores (a test part with one class only cannot be scored)."""
        return [v for v in self.values if not math.isnan(v)]

    @property
    def mean(self) -> float:
        return float(np.mean(self.scored)) if self.scored else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.scored)) if self.scored else math.nan  # population std (ddof 0)


def load_results(paths: Iterable[str | Path]) -> list[RunResult]:
    """Read metric files; a malformed one is a clear error naming the file."""
    results = []
    for path in paths:
        try:
            m = json.loads(Path(path).read_text())
            missing = [k for k in REQUIRED if k not in m]
            if missing:
                raise ValueError(f"missing keys {missing}")
            test = m["test"]
            results.append(RunResult(
                dataset=m["dataset"], seed=int(m["seed"]), row=m["row"], label=m["label"],
                metric=m["metric"], task_type=_task_type(m), value=float(test["value"]),
                tasks=list(m.get("tasks", [])), per_task=list(test.get("per_task", [])),
                split_method=(m.get("split") or {}).get("method", "unknown"), path=str(path)))
        except (OSError, ValueError, KeyError, TypeError, BbmnError) as exc:
            raise BbmnError(f"cannot read metric file {path}: {exc}") from None
    return results


def _task_type(record: dict) -> str:
    """A metric file's task type, which picks its table; a file without one (older runs) gets
    its metric's. Checked against the metric: a type neither table shows would drop the dataset."""
    task_type = record.get("task_type") or task_type_of(record["metric"])
    if task_type not in METRICS_FOR:
        raise ValueError(f"task_type {task_type!r} is not one of {', '.join(METRICS_FOR)}")
    check_metric(record["metric"], task_type)
    return task_type


def _check_consistent(results: Sequence[RunResult]) -> tuple[str, list[int]]:
    methods = {r.split_method for r in results}
    if len(methods) > 1:
        raise BbmnError(f"metric files mix split protocols {sorted(methods)}; tables compare one protocol")
    for dataset in {r.dataset for r in results}:
        metrics = {r.metric for r in results if r.dataset == dataset}
        if len(metrics) > 1:
            raise BbmnError(f"dataset {dataset} is scored with several metrics: {sorted(metrics)}")
    seen: set = set()
    for r in results:
        key = (r.row, r.dataset, r.seed)
        if key in seen:
            raise BbmnError(f"two metric files for {r.row} on {r.dataset} seed {r.seed}")
        seen.add(key)
    return methods.pop(), sorted({r.seed for r in results})


def _fmt(value: float, dataset: str | None = None) -> str:
    """Three decimals, as the paper prints; QM7's MAE (tens) one, QM8's (hundredths) four."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    decimals = {"qm7": 1, "qm8": 4}.get(dataset or "", 3)
    return f"{value:.{decimals}f}"


def _signed(value: float, dataset: str | None) -> str:
    text = _fmt(value, dataset)
    return text if text.startswith(("-", "–")) else f"+{text}"


@dataclass
class Paired:
    """Row ``a`` against row ``b`` on the same dataset, seed by seed.

    Attributes:
        differences: ``a - b`` per shared seed (in the metric's units).
        better: per seed, whether ``a`` is better (higher ROC-AUC, lower RMSE / MAE).
    """

    differences: list[float]
    better: list[bool]

    @classmethod
    def of(cls, a: Cell, b: Cell, metric: str) -> Paired:
        by_seed = dict(zip(b.seeds, b.values))
        diffs = [va - by_seed[s] for s, va in zip(a.seeds, a.values)
                 if s in by_seed and not (math.isnan(va) or math.isnan(by_seed[s]))]
        sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
        return cls(diffs, [sign * d > 0 for d in diffs])

    def text(self, dataset: str | None) -> str:
        if not self.differences:
            return "–"
        return (f"{_signed(float(np.mean(self.differences)), dataset)} "
                f"({_fmt(float(np.std(self.differences)), dataset)}) {sum(self.better)}/{len(self.better)}")


def paired_test(improvements: Sequence[float]) -> dict:
    """Wilcoxon signed-rank test of direction-adjusted improvements (positive = first row better)
    over datasets x seeds; a p-value is NaN with fewer than 2 non-zero pairs."""
    from scipy.stats import wilcoxon

    values = np.asarray(improvements, dtype=np.float64)
    nonzero = values[values != 0]
    p = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 2 else math.nan
    return {"pairs": int(len(values)), "better": int((values > 0).sum()),
            "worse": int((values < 0).sum()), "median_improvement": float(np.median(values)) if len(values) else math.nan,
            "wilcoxon_p": p}


def paired_tests(results: Sequence[RunResult], order: Sequence[str]) -> list[dict]:
    """One line per pair of :data:`bbmn.kinds.PAIRS` present in ``results`` on the datasets of
    ``order``: the test over all their (dataset, seed) pairs, improvements in each metric's units
    made positive-is-better."""
    values = {(r.row, r.dataset, r.seed): r.value for r in results if r.dataset in order}
    metric_of = {r.dataset: r.metric for r in results}
    lines = []
    for a, b, label in PAIRS:
        improvements = []
        for (row, dataset, seed), va in values.items():
            vb = values.get((b, dataset, seed))
            if row != a or vb is None or math.isnan(va) or math.isnan(vb):
                continue
            improvements.append((va - vb) * (1.0 if HIGHER_IS_BETTER[metric_of[dataset]] else -1.0))
        if improvements:
            lines.append({"pair": f"{a}-vs-{b}", "label": label, **paired_test(improvements)})
    return lines


def build_table(results: Sequence[RunResult], order: Sequence[str], with_mean: bool) -> pd.DataFrame:
    """One table (classification or regression) as a tidy frame, one line per row and dataset.

    Columns: kind (result / reference / difference), row, label, dataset, metric, mean, std,
    n_seeds, text (what the rendered cell shows).
    """
    datasets = [d for d in order if any(r.dataset == d for r in results)]
    if not datasets:
        return pd.DataFrame()
    cells: dict[tuple[str, str], Cell] = defaultdict(lambda: Cell([]))
    labels: dict[str, str] = {}
    metric_of: dict[str, str] = {}
    for r in results:
        if r.dataset in datasets:
            cells[(r.row, r.dataset)].values.append(r.value)
            cells[(r.row, r.dataset)].seeds.append(r.seed)
            labels[r.row] = r.label
            metric_of[r.dataset] = r.metric
    ours = sorted(labels, key=row_order)
    lines = []

    def add(kind: str, row: str, label: str, values: dict[str, tuple[float, float, int]],
            runs: dict[str, int] | None = None) -> None:
        for d in datasets:
            mean, std, n = values.get(d, (math.nan, math.nan, 0))
            text = (_signed(mean, d) if kind == "difference" else
                    (f"{_fmt(mean, d)} ({_fmt(std, d)})" if n else "–"))
            if runs and 0 < n < runs.get(d, 0):
                text += f" [{n}/{runs[d]} seeds]"  # a seed whose test part could not be scored
            lines.append(dict(kind=kind, row=row, label=label, dataset=d, metric=metric_of[d],
                              mean=mean, std=std, n_seeds=n, text=text))
        if with_mean:
            means = [values[d][0] for d in datasets if d in values and not math.isnan(values[d][0])]
            mean = float(np.mean(means)) if len(means) == len(datasets) else math.nan
            text = _signed(mean, None) if kind == "difference" else _fmt(mean, None)
            lines.append(dict(kind=kind, row=row, label=label, dataset="mean", metric="mean",
                              mean=mean, std=math.nan, n_seeds=0, text=text))

    ours_values = {row: {d: (cells[(row, d)].mean, cells[(row, d)].std, len(cells[(row, d)].scored))
                         for d in datasets if (row, d) in cells} for row in ours}
    seeds_run = {row: {d: len(cells[(row, d)].values) for d in datasets if (row, d) in cells}
                 for row in ours}
    for row in ours:
        add("result", row, labels[row], ours_values[row], seeds_run[row])
    # published rows only where they have numbers: a user's own datasets have none
    for ref, numbers in REFERENCE_ROWS.items():
        published = {d: (*numbers[d], 3) for d in datasets if d in numbers}
        if published:
            add("reference", ref, ref, published)
    for row in ours:
        for ref, numbers in REFERENCE_ROWS.items():
            diff = {d: (ours_values[row][d][0] - numbers[d][0], math.nan, 1)
                    for d in datasets if d in ours_values[row] and d in numbers}
            if diff:
                add("difference", f"{row}-vs-{ref.split(' ')[0]}", f"{labels[row]} − {ref.split(' ')[0]}", diff)
    tests = {line["pair"]: line for line in paired_tests(results, datasets)}
    for a, b, label in PAIRS:
        pairs = {d: Paired.of(cells[(a, d)], cells[(b, d)], metric_of[d]) for d in datasets
                 if (a, d) in cells and (b, d) in cells}
        if not any(p.differences for p in pairs.values()):
            continue
        for d in datasets:
            pair = pairs.get(d, Paired([], []))
            mean = float(np.mean(pair.differences)) if pair.differences else math.nan
            std = float(np.std(pair.differences)) if pair.differences else math.nan
            lines.append(dict(kind="paired", row=f"{a}-vs-{b}", label=f"{label} (paired)", dataset=d,
                              metric=metric_of[d], mean=mean, std=std, n_seeds=len(pair.differences),
                              text=pair.text(d)))
        if with_mean:
            test = tests[f"{a}-vs-{b}"]
            lines.append(dict(kind="paired", row=f"{a}-vs-{b}", label=f"{label} (paired)",
                              dataset="mean", metric="mean", mean=test["wilcoxon_p"], std=math.nan,
                              n_seeds=test["pairs"],
                              text=f"p = {test['wilcoxon_p']:.3g} ({test['better']}/{test['pairs']} better)"))
    return pd.DataFrame(lines)


#: The kinds of rows, in table order, and the heading of their group.
GROUP_HEADINGS = {"result": "results", "paired": "paired differences", "reference": "references",
                  "difference": "differences"}


def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    wide = frame.pivot_table(index=["kind", "row", "label"], columns="dataset", values="text",
                             aggfunc="first", sort=False)
    columns = list(dict.fromkeys(frame["dataset"]))  # build_table's order: datasets, then the mean
    wide = wide[columns].reset_index()
    wide["_k"] = wide["kind"].map({kind: i for i, kind in enumerate(GROUP_HEADINGS)})
    return wide.sort_values("_k", kind="stable").drop(columns="_k")


def _headers(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    metric = frame.drop_duplicates("dataset").set_index("dataset")["metric"]
    names = []
    for c in columns:
        if c == "mean":
            names.append("Mean")
        else:
            unit = {"roc_auc": "ROC-AUC", "rmse": "RMSE", "mae": "MAE"}[metric[c]]
            names.append(f"{DISPLAY_NAMES.get(c, c)} ({unit})")
    return names


def render_markdown(frame: pd.DataFrame, caption: str) -> str:
    """The table in Markdown, a caption line above it. Written by hand rather than with
    ``DataFrame.to_markdown`` (tabulate) or ``Styler.to_latex`` below: the tables need a group
    row (Markdown) or a rule (LaTeX) between kinds of rows, and unpadded cells keep the files
    diffable between runs."""
    wide = _wide(frame)
    columns = [c for c in wide.columns if c not in ("kind", "row", "label")]
    headers = ["Model", *_headers(frame, columns)]
    lines = [f"**{caption}**", "", "| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] + [":-:"] * len(columns)) + "|"]
    previous = None
    for _, r in wide.iterrows():
        if previous is not None and r["kind"] != previous:
            lines.append("| " + " | ".join([f"*{GROUP_HEADINGS[r['kind']]}*"] + [""] * len(columns)) + " |")
        previous = r["kind"]
        lines.append("| " + " | ".join([r["label"]] + [str(r[c]) for c in columns]) + " |")
    return "\n".join(lines) + "\n"


def render_html(frame: pd.DataFrame, caption: str) -> str:
    """The table as an HTML ``<table>`` (caption below it), for the workflow's report."""
    from html import escape

    wide = _wide(frame)
    columns = [c for c in wide.columns if c not in ("kind", "row", "label")]
    headers = ["Model", *_headers(frame, columns)]
    lines = ["<table>", "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>",
             "<tbody>"]
    previous = None
    for _, r in wide.iterrows():
        if previous is not None and r["kind"] != previous:
            lines.append(f"<tr class=\"kind\"><td colspan=\"{len(headers)}\">{escape(GROUP_HEADINGS[r['kind']])}</td></tr>")
        previous = r["kind"]
        cells = [r["label"]] + ["–" if pd.isna(r[c]) else str(r[c]) for c in columns]
        lines.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    lines += ["</tbody>", "</table>", f"<p class=\"caption\">{escape(caption)}</p>"]
    return "\n".join(lines) + "\n"


def render_latex(frame: pd.DataFrame, caption: str) -> str:
    wide = _wide(frame)
    columns = [c for c in wide.columns if c not in ("kind", "row", "label")]
    headers = ["Model", *_headers(frame, columns)]

    def esc(text: str) -> str:
        return (str(text).replace("\\", "\\textbackslash{}").replace("&", "\\&").replace("%", "\\%")
                .replace("_", "\\_").replace("−", "$-$").replace("–", "--"))

    lines = ["\\begin{table}[ht]", "\\centering", f"\\caption{{{esc(caption)}}}",
             "\\begin{tabular}{l" + "c" * len(columns) + "}", "\\toprule",
             " & ".join(esc(h) for h in headers) + " \\\\", "\\midrule"]
    previous = None
    for _, r in wide.iterrows():
        if previous is not None and r["kind"] != previous:
            lines.append("\\midrule")
        previous = r["kind"]
        lines.append(" & ".join([esc(r["label"])] + [esc(r[c]) for c in columns]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def per_task_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """Every task's score: one line per (dataset, row, task) with mean, std and each seed's value."""
    values: dict[tuple[str, str, str], dict[int, float | None]] = defaultdict(dict)
    for r in results:
        for task, v in zip(r.tasks, r.per_task):
            values[(r.dataset, r.row, task)][r.seed] = v
    lines = []
    for (dataset, row, task), by_seed in sorted(values.items()):
        scored = [v for v in by_seed.values() if v is not None]
        lines.append({"dataset": dataset, "row": row, "task": task,
                      "mean": float(np.mean(scored)) if scored else math.nan,
                      "std": float(np.std(scored)) if scored else math.nan,
                      "n_seeds": len(scored), "skipped_seeds": len(by_seed) - len(scored),
                      **{f"seed{s}": v for s, v in sorted(by_seed.items())}})
    return pd.DataFrame(lines)


def caption(kind: str, protocol: str, seeds: Sequence[int], selection: str | None = None) -> str:
    split = {"balanced_scaffold": "balanced scaffold split (GROVER's, 8:1:1)",
             "scaffold": "deterministic scaffold split (Hu et al., 8:1:1)",
             "random": "random split (8:1:1)"}.get(protocol, protocol)
    metric = "ROC-AUC, higher is better" if kind == "classification" else "RMSE / MAE, lower is better"
    text = (f"{kind.capitalize()} ({metric}) on the {split}; mean (population std) over seeds "
            f"{', '.join(map(str, seeds))}, each seed its own split and training; test score of the "
            f"epoch with the best validation score ({selection or SPEC_BUDGET}). "
            f"Reference rows are published numbers (spec section 11); differences are "
            f"our mean minus the reference mean; means are over the datasets shown. "
            f"[k/n seeds]: only k of n seeds could be scored (a test part with one class only). "
            f"Paired rows: mean (population std) of the per-seed difference on the same split, then "
            f"on how many seeds the first row is better; their Mean column is a two-sided Wilcoxon "
            f"signed-rank test over all datasets x seeds (paired.csv).")
    if kind == "classification":
        text += (f" The BatmanNet paper reports a mean of about {BATMANNET_PAPER_CLASSIFICATION_MEAN}"
                 " over all six classification sets.")
    return text


#: The tables, one per task type, and whether each has a Mean column.
TABLES = (("classification", True), ("regression", False))


def table_datasets(results: Sequence[RunResult], task_type: str, run_order: Sequence[str] = ()) -> list[str]:
    """The datasets of ``task_type``'s table, every one the metric files score for it (a
    user's own too), in column order (:func:`bbmn.eval.reference.in_table_order`)."""
    return in_table_order({r.dataset for r in results if r.task_type == task_type}, run_order)


def write_tables(metric_files: Iterable[str | Path], out_dir: str | Path,
                 selection: str | None = None, datasets: Sequence[str] = ()) -> dict[str, str]:
    """Build and write every table; return ``{name: path}`` of the files written.

    ``selection`` describes the training budget and early stopping for the caption
    (:func:`bbmn.eval.reference.budget_text`; default the spec's, ``SPEC_BUDGET``). ``datasets`` is the run's dataset
    order (``run.datasets``): the paper's datasets come first in the paper's order, then the
    others in this order (by name if it leaves them out).
    """
    results = load_results(metric_files)
    if not results:
        raise BbmnError("no metric files given")
    protocol, seeds = _check_consistent(results)
    out_dir = Path(out_dir)
    written: dict[str, str] = {}
    for kind, with_mean in TABLES:
        frame = build_table(results, table_datasets(results, kind, datasets), with_mean)
        text = caption(kind, protocol, seeds, selection)
        for suffix, content in (("csv", frame.to_csv(index=False) if not frame.empty else ""),
                                ("md", render_markdown(frame, text) if not frame.empty else
                                 f"**{text}**\n\nNo {kind} datasets in this run.\n"),
                                ("tex", render_latex(frame, text) if not frame.empty else "")):
            path = out_dir / f"{kind}.{suffix}"
            with atomic_path(path) as tmp:
                tmp.write_text(content)
            written[f"{kind}.{suffix}"] = str(path)
    # one test per table: ROC-AUC and RMSE differences have different units and are not ranked together
    paired = pd.DataFrame([{"table": kind, **line} for kind, _ in TABLES
                           for line in paired_tests(results, table_datasets(results, kind))])
    with atomic_path(out_dir / "paired.csv") as tmp:
        paired.to_csv(tmp, index=False)
    written["paired.csv"] = str(out_dir / "paired.csv")
    per_task = per_task_table(results)
    with atomic_path(out_dir / "per_task.csv") as tmp:
        per_task.to_csv(tmp, index=False)
    written["per_task.csv"] = str(out_dir / "per_task.csv")
    return written
