"""The two files every scored run leaves, each with one writer: ``predictions.csv`` and
``metrics.json``.

Fine-tuning, the baselines and the probe all write them here, so their files read the same
whoever made them: the table step reads ``metrics.json`` (:func:`bbmn.eval.tables.load_results`),
ROC figures read ``predictions.csv`` beside it (:func:`bbmn.eval.plots.read_predictions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bbmn.errors import BbmnError
from bbmn.eval.tables import REQUIRED
from bbmn.io import atomic_path, write_json


def write_predictions(path: str | Path, rows: Sequence[int] | np.ndarray, smiles: Sequence[str],
                      labels: np.ndarray, predictions: np.ndarray, tasks: Sequence[str],
                      task_type: str) -> None:
    """One line per molecule, atomically: ``row``, ``smiles``, then per task ``<task>`` (the
    label, empty if missing) and ``<task>_pred`` (probability, or value in the label's units).

    Floats are written in full (Python's ``repr``: the shortest text that reads back as the same
    float64), so a score recomputed from the file is the one in ``metrics.json``; a shorter format
    could merge close predictions into ties and move a ROC curve. Classification labels are
    written as integers. Lines end in CRLF, as the csv module writes them.

    Args:
        rows: each molecule's source data row.
        smiles: each molecule's SMILES.
        labels: ``(n, T)`` labels, NaN where missing.
        predictions: ``(n, T)`` predictions (a single task's may be ``(n,)``).
        tasks: the task names, in label-column order.
        task_type: ``classification`` or ``regression``.
    """
    header = ["row", "smiles", *(c for task in tasks for c in (task, f"{task}_pred"))]
    if len(set(header)) < len(header):
        raise BbmnError(f"task names {list(tasks)} collide with each other's columns in predictions.csv "
                        f"(row, smiles, <task>, <task>_pred)")
    shape = (len(rows), len(tasks))
    labels = np.asarray(labels, dtype=np.float64).reshape(shape)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(shape)
    columns: dict[str, object] = {"row": np.asarray(rows, dtype=np.int64), "smiles": list(smiles)}
    for j, task in enumerate(tasks):
        columns[task] = pd.array(labels[:, j], dtype="Int64") if task_type == "classification" else labels[:, j]
        columns[f"{task}_pred"] = predictions[:, j]
    with atomic_path(path) as tmp:
        pd.DataFrame(columns, columns=header).to_csv(tmp, index=False, na_rep="", lineterminator="\r\n")


def write_metrics(path: str | Path, record: dict) -> dict:
    """Write a run's result atomically (a ``metrics.json`` that exists marks a finished run);
    refuse one that lacks what the table step reads, so no run writes a file the tables reject.
    Returns the record."""
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise BbmnError(f"metrics for {path} lack {missing}, which the table step reads")
    write_json(path, record)
    return record
