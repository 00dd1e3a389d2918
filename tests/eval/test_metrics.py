"""Metrics against scikit-learn on hand-made cases: missing labels and one-class tasks."""

import math

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score

from bbmn.eval.metrics import is_better, score

NAN = float("nan")


def test_roc_auc_with_missing_labels_and_a_one_class_task():
    y = np.array([[1, 0, NAN], [0, 0, 1], [1, NAN, 1], [0, 0, 1], [NAN, 0, 1]])
    p = np.array([[0.9, 0.2, 0.5], [0.3, 0.1, 0.9], [0.6, 0.5, 0.4], [0.4, 0.3, 0.8], [0.1, 0.9, 0.7]])
    s = score("roc_auc", y, p, ["a", "b", "c"])
    expected_a = roc_auc_score([1, 0, 1, 0], [0.9, 0.3, 0.6, 0.4])
    assert s.per_task[0] == pytest.approx(expected_a)
    assert s.per_task[1] is None and s.skipped["b"] == "one class only (0)"
    assert s.per_task[2] is None and "one class" in s.skipped["c"]
    assert s.value == pytest.approx(expected_a) and s.n == [4, 4, 4]


def test_mean_over_tasks():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.8, 0.3], [0.2, 0.6], [0.7, 0.4], [0.4, 0.2]])
    s = score("roc_auc", y, p)
    assert s.value == pytest.approx(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in range(2)]))


@pytest.mark.parametrize("metric,fn", [("rmse", lambda t, p: math.sqrt(mean_squared_error(t, p))),
                                       ("mae", mean_absolute_error)])
def test_regression_ignores_missing(metric, fn):
    y = np.array([[1.0, 2.0], [NAN, 3.0], [2.5, NAN], [0.0, 1.0]])
    p = np.array([[1.5, 2.0], [9.9, 2.0], [2.0, 9.9], [0.5, 2.0]])
    s = score(metric, y, p)
    assert s.per_task[0] == pytest.approx(fn([1.0, 2.5, 0.0], [1.5, 2.0, 0.5]))
    assert s.per_task[1] == pytest.approx(fn([2.0, 3.0, 1.0], [2.0, 2.0, 2.0]))
    assert s.value == pytest.approx(np.mean(s.per_task))


def test_nothing_scorable_is_nan_not_an_error():
    s = score("roc_auc", np.array([[1.0], [1.0]]), np.array([[0.2], [0.4]]))
    assert math.isnan(s.value) and s.skipped == {"task0": "one class only (1)"}


def test_is_better():
    assert is_better("roc_auc", 0.8, 0.7) and not is_better("roc_auc", 0.6, 0.7)
    assert is_better("rmse", 0.5, 0.7) and is_better("mae", 1.0, None)
    assert not is_better("rmse", NAN, 1.0) and is_better("rmse", 1.0, NAN)
