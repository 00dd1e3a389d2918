"""Test metrics of the paper's tables (spec section 10), on multi-task labels with gaps.

Each task is scored on the molecules that have its label (NaN = missing). The dataset's score is
the mean over tasks; ROC-AUC skips a task whose labels in the scored part are all one class (as
chemprop / GROVER do) and says which tasks it skipped. Scores come from scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score

from bbmn.errors import BbmnError

METRICS = ("roc_auc", "rmse", "mae")
#: The metrics that make sense for each task type (ROC-AUC needs 0/1 labels).
METRICS_FOR = {"classification": ("roc_auc",), "regression": ("rmse", "mae")}
#: True where a larger value is better (for picking the best validation epoch).
HIGHER_IS_BETTER = {"roc_auc": True, "rmse": False, "mae": False}


def task_type_of(metric: str) -> str:
    """The task type a metric scores (each metric fits one type, :data:`METRICS_FOR`): what a
    metric file without a ``task_type`` was made for."""
    for task_type, metrics in METRICS_FOR.items():
        if metric in metrics:
            return task_type
    raise BbmnError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")


@dataclass
class Score:
    """A dataset-level score and what it is made of.

    Attributes:
        metric: ``roc_auc``, ``rmse`` or ``mae``.
        value: mean over the scored tasks (NaN when no task could be scored).
        per_task: each task's score, None where it was skipped.
        skipped: ``{task: reason}`` for tasks that were not scored.
        n: number of labels scored, per task.
    """

    metric: str
    value: float
    per_task: list[float | None]
    skipped: dict[str, str] = field(default_factory=dict)
    n: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def check_metric(metric: str, task_type: str) -> None:
    """Refuse a metric that does not fit the task type (e.g. RMSE of 0/1 labels, AUC of values)."""
    if metric not in METRICS:
        raise BbmnError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if metric not in METRICS_FOR[task_type]:
        raise BbmnError(f"metric {metric} does not fit a {task_type} dataset; "
                        f"use {' or '.join(METRICS_FOR[task_type])}")


def score(metric: str, y_true: np.ndarray, y_pred: np.ndarray,
          tasks: Sequence[str] | None = None) -> Score:
    """Score predictions against labels, task by task.

    Args:
        metric: one of :data:`METRICS`.
        y_true: ``(n, T)`` labels, NaN where missing.
        y_pred: ``(n, T)`` predictions (probabilities or scores for ROC-AUC; values otherwise).
        tasks: task names, for the ``skipped`` report (default ``task0``, ``task1``...).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRICS}")
    y_true = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels {y_true.shape} and predictions {y_pred.shape} differ in shape")
    names = list(tasks) if tasks is not None else [f"task{i}" for i in range(y_true.shape[1])]
    per_task: list[float | None] = []
    skipped: dict[str, str] = {}
    counts: list[int] = []
    for j, name in enumerate(names):
        known = ~np.isnan(y_true[:, j])
        t, p = y_true[known, j], y_pred[known, j]
        counts.append(int(known.sum()))
        if len(t) == 0:
            skipped[name] = "no labels"
            per_task.append(None)
        elif metric == "roc_auc" and len(np.unique(t)) < 2:
            skipped[name] = f"one class only ({int(t[0])})"
            per_task.append(None)
        elif not np.isfinite(p).all():
            skipped[name] = "non-finite predictions"
            per_task.append(None)
        elif metric == "roc_auc":
            per_task.append(float(roc_auc_score(t, p)))
        elif metric == "rmse":
            per_task.append(float(np.sqrt(mean_squared_error(t, p))))
        else:
            per_task.append(float(mean_absolute_error(t, p)))
    scored = [v for v in per_task if v is not None]
    value = float(np.mean(scored)) if scored else float("nan")
    return Score(metric=metric, value=value, per_task=per_task, skipped=skipped, n=counts)


def is_better(metric: str, new: float, best: float | None) -> bool:
    """Whether ``new`` improves on ``best`` (None = nothing yet; NaN never improves)."""
    if np.isnan(new):
        return False
    if best is None or np.isnan(best):
        return True
    return new > best if HIGHER_IS_BETTER[metric] else new < best
