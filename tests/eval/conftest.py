"""Shared by the evaluation tests: torch runs one thread (the tests are small; the machine has 2
cores), and run directories of fine-tuning / baseline runs for the figures and report pages."""

import numpy as np
import pytest
import torch

from bbmn.eval.records import write_metrics, write_predictions

ROWS = {"batmannet_pretrained": "BatmanNet (pre-trained)", "batmannet_scratch": "BatmanNet (scratch)",
        "ecfp_rf": "ECFP4 + RF"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(root, dataset, row, seed, tasks, task_type, metric, rng, n=40):
    """A run directory as fine-tuning, the baselines and the probe write it (their one writer of
    each file): metrics.json + predictions.csv."""
    out = root / dataset / row / f"seed{seed}"
    if task_type == "classification":
        labels = rng.integers(0, 2, size=(n, len(tasks))).astype(float)
        labels[0, -1] = np.nan  # a missing label
        scores = np.clip(0.3 * labels + rng.random((n, len(tasks))) * 0.7, 0, 1)
    else:
        labels = rng.normal(size=(n, len(tasks)))
        scores = labels + rng.normal(scale=0.5, size=labels.shape)
    write_predictions(out / "predictions.csv", np.arange(n), ["C" * (i % 5 + 1) for i in range(n)], labels,
                      scores, tasks, task_type)
    value = float(rng.uniform(0.6, 0.9)) if metric == "roc_auc" else float(rng.uniform(0.5, 1.5))
    write_metrics(out / "metrics.json", {
        "dataset": dataset, "seed": seed, "row": row, "label": ROWS[row], "metric": metric,
        "task_type": task_type, "tasks": tasks, "split": {"method": "balanced_scaffold"},
        "test": {"metric": metric, "value": value, "per_task": [value] * len(tasks)}})
    return out / "metrics.json"


@pytest.fixture
def runs(tmp_path):
    """``{"clintox": [metrics.json, ...], "esol": [...]}``: three rows x two seeds of a two-task
    classification set and a regression set."""
    rng = np.random.default_rng(0)
    files = {"clintox": [], "esol": []}
    for row in ROWS:
        for seed in (0, 1):
            files["clintox"].append(_run(tmp_path / "r", "clintox", row, seed, ["FDA", "TOX"],
                                         "classification", "roc_auc", rng))
            files["esol"].append(_run(tmp_path / "r", "esol", row, seed, ["logS"], "regression", "rmse", rng))
    return files
