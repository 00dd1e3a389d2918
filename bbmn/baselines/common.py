"""What every baseline shares: the molecules and split it reads, and the run files it writes.

A baseline is comparable with fine-tuning only if it sees the same molecules in the same parts.
So the split file is read here, once for all baselines, and checked against the cleaned table:
every source row it names must be in the table, the parts must be disjoint, and when both files
record their source file's sha256 the two must agree (a split of another version of the dataset
is refused). The outputs have one schema for all baselines: ``metrics.json`` as
:mod:`bbmn.eval.tables` reads it, and ``predictions.csv`` of the test part, both written by
:mod:`bbmn.eval.records` as fine-tuning writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bbmn.data.clean import read_meta
from bbmn.data.splits import PARTS, load_split
from bbmn.errors import BbmnError
from bbmn.eval.metrics import METRICS_FOR, Score
from bbmn.eval.records import write_predictions
from bbmn.io import read_json


@dataclass
class Dataset:
    """A cleaned labelled table and one split of it, as positions into the table.

    Attributes:
        name: dataset name (written to metrics.json; the table step groups by it).
        tasks: label columns, in the file's order.
        task_type: ``classification`` or ``regression``.
        rows: each molecule's source data row (the ids splits are written in).
        smiles: each molecule's canonical SMILES.
        y: ``(n, T)`` labels, NaN where missing.
        parts: ``{"train", "val", "test"}`` -> positions into ``rows`` / ``smiles`` / ``y``, in the
            split file's order.
        split: what metrics.json records of the split (path, method, seed, part sizes).
    """

    name: str
    tasks: list[str]
    task_type: str
    rows: np.ndarray
    smiles: list[str]
    y: np.ndarray
    parts: dict[str, np.ndarray]
    split: dict


def load_dataset(clean_path: str | Path, split_path: str | Path, name: str) -> Dataset:
    """Read a cleaned Parquet and a split file, and map the split's source rows to positions."""
    meta = read_meta(clean_path)
    tasks = list(meta.get("tasks") or [])
    task_type = meta.get("task_type")
    if not tasks or task_type not in METRICS_FOR:
        raise BbmnError(f"{clean_path} is not a labelled dataset (tasks {tasks}, task type {task_type})")
    frame = pd.read_parquet(clean_path, columns=["row", "smiles", *tasks])
    record = read_json(split_path)
    if record.get("source_sha256") and meta.get("source_sha256") and \
            record["source_sha256"] != meta["source_sha256"]:
        raise BbmnError(f"split file {split_path} was made from another source file than {clean_path} "
                        f"(sha256 {record['source_sha256'][:12]}... vs {meta['source_sha256'][:12]}...)")
    rows = frame["row"].to_numpy(np.int64)
    if not pd.Index(rows).is_unique:
        raise BbmnError(f"{clean_path} lists a source row twice; it is not a bbmn clean output")
    positions, split = split_positions(rows, split_path, str(clean_path))
    if len(positions["train"]) == 0 or len(positions["test"]) == 0:
        raise BbmnError(f"split file {split_path} has an empty train or test part")
    return Dataset(name=name, tasks=tasks, task_type=task_type, rows=rows,
                   smiles=frame["smiles"].tolist(), y=frame[tasks].to_numpy(np.float64),
                   parts=positions, split=split)


def split_positions(rows: np.ndarray, split_path: str | Path, source: str
                    ) -> tuple[dict[str, np.ndarray], dict]:
    """Positions in ``rows`` (source data rows, unique) of each part of a split file, and what
    metrics.json records of the split (path, method, seed, part sizes).

    Raises:
        BbmnError: if the split names a row that ``source`` (the table or cache ``rows`` come from)
            lacks, or puts a molecule into two parts.
    """
    parts = load_split(split_path)
    record = read_json(split_path)
    index = pd.Index(rows)
    positions: dict[str, np.ndarray] = {}
    for part in PARTS:
        found = index.get_indexer(parts[part])
        if (found < 0).any():
            missing = parts[part][found < 0][:5].tolist()
            raise BbmnError(f"split file {split_path} names {int((found < 0).sum())} {part} rows that "
                            f"{source} does not have (e.g. {missing}); was it made from this table?")
        positions[part] = found.astype(np.int64)
    seen = np.concatenate(list(positions.values()))
    if len(np.unique(seen)) != len(seen):
        raise BbmnError(f"split file {split_path} puts a molecule into more than one part")
    split = {"path": str(split_path), "method": record.get("method", "unknown"), "seed": record.get("seed"),
             **{part: int(len(positions[part])) for part in PARTS}}
    return positions, split


def write_part_predictions(path: str | Path, data: Dataset, part: str, pred: np.ndarray) -> None:
    """``predictions.csv`` of one part (:func:`bbmn.eval.records.write_predictions`)."""
    where = data.parts[part]
    write_predictions(path, data.rows[where], [data.smiles[i] for i in where], data.y[where], pred,
                      data.tasks, data.task_type)


def metrics_record(data: Dataset, *, seed: int, model: str, label: str, metric: str, selected: Mapping,
                   val: Score, test: Score, seconds: float, init: str | None = None,
                   row: str | None = None, **extra) -> dict:
    """A run's metrics.json content (for :func:`bbmn.eval.records.write_metrics`), in the schema
    fine-tuning runs write and the table step reads; ``row`` defaults to ``model``, ``extra`` keys
    follow the schema's."""
    return {"dataset": data.name, "seed": int(seed), "model": model, "init": init, "row": row or model,
            "label": label, "metric": metric, "task_type": data.task_type, "tasks": list(data.tasks),
            "split": dict(data.split), "selected": dict(selected), "val": val.as_dict(),
            "test": test.as_dict(), "seconds": round(float(seconds), 3), **extra}


def start_run(out: str | Path) -> Path:
    """The run directory, without a metrics.json left by an earlier run: a rerun that fails must
    not leave an old result looking like its own (metrics.json is written last)."""
    out = Path(out)
    (out / "metrics.json").unlink(missing_ok=True)
    return out


def part_labels(data: Dataset, part: str) -> np.ndarray:
    """``(n_part, T)`` labels of one part."""
    return data.y[data.parts[part]]


def task_summary(data: Dataset, parts: Sequence[str] = PARTS) -> dict:
    """Labels per task and part (for the run's details file): how much each model had to learn from."""
    return {task: {part: int(np.isfinite(data.y[data.parts[part], j]).sum()) for part in parts}
            for j, task in enumerate(data.tasks)}
