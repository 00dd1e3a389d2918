"""The one writer of predictions.csv and of metrics.json: the readers get back what was written,
bit for bit, so a score recomputed from predictions.csv is the one metrics.json records."""

import numpy as np
import pytest

from bbmn.errors import BbmnError
from bbmn.eval.metrics import score
from bbmn.eval.plots import read_predictions
from bbmn.eval.records import write_metrics, write_predictions
from bbmn.eval.tables import load_results

TASKS = ["a", "b"]


def _labels_and_predictions(task_type: str, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if task_type == "classification":
        labels = rng.integers(0, 2, size=(n, len(TASKS))).astype(float)
        predictions = rng.random((n, len(TASKS)))
    else:
        labels = rng.normal(size=(n, len(TASKS))) * 10.0 ** rng.integers(-6, 6, size=(n, len(TASKS)))
        predictions = labels + rng.normal(size=labels.shape)
    labels[[0, 3], [1, 0]] = np.nan  # missing labels
    predictions[1] = predictions[2] * (1 + 1e-13)  # apart in full, equal at ten digits: no tie
    return labels, predictions


@pytest.mark.parametrize("task_type, metric", [("classification", "roc_auc"), ("regression", "rmse")])
def test_round_trip_gives_back_every_bit_and_the_recorded_score(tmp_path, task_type, metric):
    labels, predictions = _labels_and_predictions(task_type)
    test = score(metric, labels, predictions, TASKS)
    write_predictions(tmp_path / "predictions.csv", np.arange(100, 100 + len(labels)),
                      ["C" * (i % 4 + 1) for i in range(len(labels))], labels, predictions, TASKS, task_type)
    record = write_metrics(tmp_path / "metrics.json", {
        "dataset": "d", "seed": 0, "row": "ecfp_rf", "label": "ECFP4 + RF", "metric": metric,
        "task_type": task_type, "tasks": TASKS, "split": {"method": "balanced_scaffold"},
        "test": test.as_dict()})

    metrics, got_labels, got_predictions = read_predictions(tmp_path / "metrics.json")
    assert metrics == record
    np.testing.assert_array_equal(got_labels, labels)  # NaN where missing
    assert got_predictions.tobytes() == predictions.tobytes()
    assert score(metric, got_labels, got_predictions, TASKS).value == test.value
    [result] = load_results([tmp_path / "metrics.json"])
    assert (result.value, result.row, result.tasks) == (test.value, "ecfp_rf", TASKS)


def test_predictions_file_format(tmp_path):
    path = tmp_path / "predictions.csv"
    write_predictions(path, [7, 3], ["CCO", "C,C"], np.array([[1.0], [np.nan]]), np.array([0.1, 1 / 3]),
                      ["p_np"], "classification")
    assert path.read_bytes() == b'row,smiles,p_np,p_np_pred\r\n7,CCO,1,0.1\r\n3,"C,C",,0.3333333333333333\r\n'
    write_predictions(path, [7], ["CCO"], np.array([[-0.77]]), np.array([[1e-20]]), ["logS"], "regression")
    assert path.read_bytes() == b"row,smiles,logS,logS_pred\r\n7,CCO,-0.77,1e-20\r\n"


@pytest.mark.parametrize("tasks", [["a", "a_pred"], ["row"], ["smiles", "x"]])
def test_task_names_that_collide_with_a_column_are_refused(tmp_path, tasks):
    n = len(tasks)
    with pytest.raises(BbmnError, match="collide"):
        write_predictions(tmp_path / "p.csv", [1], ["C"], np.zeros((1, n)), np.zeros((1, n)), tasks, "regression")
    assert not (tmp_path / "p.csv").exists()


def test_metrics_without_what_the_tables_read_are_not_written(tmp_path):
    with pytest.raises(BbmnError, match=r"\['label', 'test'\]"):
        write_metrics(tmp_path / "metrics.json", {"dataset": "d", "seed": 0, "row": "r", "metric": "rmse"})
    assert not (tmp_path / "metrics.json").exists()
