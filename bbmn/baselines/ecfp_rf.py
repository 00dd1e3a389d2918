"""ECFP4 + random forest, the classical baseline, on the split fine-tuning uses.

Fingerprints: RDKit Morgan bits, radius 2 (ECFP4), 2048 bits, of the cleaned canonical SMILES;
one uint8 matrix per dataset, computed once and shared by every task and grid point (a caller
running several seeds passes it in through ``fingerprints=``).

Models: one scikit-learn random forest per task, fit on the train molecules that have that
task's label (Tox21, ToxCast, SIDER have gaps); classifiers predict P(label = 1). A task whose
train labels are all one class predicts that class's train prior, a constant, which scores
ROC-AUC 0.5 where its test labels have both classes; a task without any train label predicts 0.5
(classification) or NaN (regression, which the score skips and names). ``details.json`` lists
such tasks.

Selection: every point of a small fixed grid (``max_features`` x ``min_samples_leaf``, seeded
with the run's seed) is fit on train and scored on validation with the dataset's metric (mean over
tasks); the best point (first in grid order on ties) gives the test predictions. Nothing is refit
on train + validation: fine-tuning does not learn from validation labels either.

Speed: the forests are fit on a sparse (CSC) copy of the fingerprints. About 2% of the bits are
set, and scikit-learn's sparse splitter grows the same trees (same predictions, tested) about 5x
faster than the dense one at ``max_features=0.2``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import rdFingerprintGenerator

from bbmn.baselines.common import (Dataset, load_dataset, metrics_record, part_labels, start_run,
                                   task_summary, write_part_predictions)
from bbmn.errors import BbmnError
from bbmn.eval.metrics import Score, check_metric, is_better, score
from bbmn.eval.records import write_metrics
from bbmn.io import write_json
from bbmn.kinds import BASELINE_KINDS

RDLogger.DisableLog("rdApp.*")  # cleaned SMILES parse; RDKit's H-removal notes are noise here
log = logging.getLogger(__name__)

ROW, LABEL = BASELINE_KINDS["ecfp_rf"].key, BASELINE_KINDS["ecfp_rf"].label


@dataclass(frozen=True)
class EcfpRfConfig:
    """Fingerprint and forest settings; the grid is ``max_features`` x ``min_samples_leaf``.

    Attributes:
        n_estimators: trees per forest.
        max_features: candidate features per split: ``"sqrt"``, ``"log2"``, a fraction (float)
            or a count (int), one grid axis.
        min_samples_leaf: minimum molecules per leaf, the other grid axis.
        radius: Morgan radius (2 = ECFP4).
        n_bits: fingerprint length.
        threads: forest fitting threads (scikit-learn ``n_jobs``).
    """

    n_estimators: int = 500
    max_features: tuple = ("sqrt", 0.2)
    min_samples_leaf: tuple = (1, 3)
    radius: int = 2
    n_bits: int = 2048
    threads: int = 1

    def grid(self) -> list[dict]:
        return [{"max_features": f, "min_samples_leaf": int(m)}
                for f, m in itertools.product(self.max_features, self.min_samples_leaf)]


def parse_max_features(text: str) -> str | float | int:
    """A ``max_features`` value from the command line: sqrt, log2, a fraction in (0, 1] or a count."""
    if text in ("sqrt", "log2"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise BbmnError(f"max_features must be sqrt, log2, a fraction or a count, not {text!r}") from None
    if "." in text or "e" in text.lower():
        if not 0 < value <= 1:
            raise BbmnError(f"a max_features fraction must be in (0, 1], not {text}")
        return value
    if value < 1:
        raise BbmnError(f"a max_features count must be at least 1, not {text}")
    return int(value)


def morgan_matrix(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """``(n, n_bits)`` uint8 Morgan bit vectors; a SMILES RDKit cannot parse is an error (cleaned
    tables hold only parseable ones)."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        if mol is None:
            raise BbmnError(f"RDKit cannot parse SMILES {text!r} (molecule {i}); is the table cleaned?")
        out[i] = generator.GetFingerprintAsNumPy(mol)
    return out


def _sparse(X: np.ndarray, fmt: str):
    from scipy import sparse

    return (sparse.csc_matrix if fmt == "csc" else sparse.csr_matrix)(X.astype(np.float32))


def fit_task(X: np.ndarray, y: np.ndarray, train: np.ndarray, evaluate: Sequence[np.ndarray],
             task_type: str, params: dict, n_estimators: int, seed: int,
             threads: int) -> tuple[list[np.ndarray], str | None]:
    """Fit one task's forest on the ``train`` positions that have a label; predict ``evaluate``.

    Returns the predictions for each array of positions in ``evaluate``, and why the task
    predicts a constant (None when a forest was fit).
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    labelled = train[np.isfinite(y[train])]
    targets = y[labelled]
    constant = None
    if len(labelled) == 0:
        constant, why = (0.5 if task_type == "classification" else np.nan), "no train labels"
    elif task_type == "classification" and len(np.unique(targets)) < 2:
        constant, why = float(targets[0]), f"one class in train ({int(targets[0])})"
    if constant is not None:
        return [np.full(len(idx), constant) for idx in evaluate], why
    kind = RandomForestClassifier if task_type == "classification" else RandomForestRegressor
    forest = kind(n_estimators=n_estimators, random_state=seed, n_jobs=threads, **params)
    forest.fit(_sparse(X[labelled], "csc"), targets)
    # Predict in one thread: scikit-learn sums the trees' outputs in the order its threads finish,
    # so with n_jobs > 1 the last bits of a prediction vary from run to run; one thread sums them
    # in tree order. (Fitting stays parallel: each tree has its own seed.)
    forest.set_params(n_jobs=1)
    predictions = []
    for idx in evaluate:
        if len(idx) == 0:
            predictions.append(np.zeros(0))
        elif task_type == "classification":
            predictions.append(forest.predict_proba(_sparse(X[idx], "csr"))[:, 1])
        else:
            predictions.append(forest.predict(_sparse(X[idx], "csr")))
    return predictions, None


def fit_grid_point(data: Dataset, X: np.ndarray, params: dict, cfg: EcfpRfConfig,
                   seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """Every task's forest at one grid point: ``(val predictions, test predictions, constants)``."""
    parts = data.parts
    val = np.full((len(parts["val"]), len(data.tasks)), np.nan)
    test = np.full((len(parts["test"]), len(data.tasks)), np.nan)
    constants: dict[str, str] = {}
    for j, task in enumerate(data.tasks):
        (val[:, j], test[:, j]), why = fit_task(X, data.y[:, j], parts["train"], (parts["val"], parts["test"]),
                                                data.task_type, params, cfg.n_estimators, seed, cfg.threads)
        if why:
            constants[task] = why
    return val, test, constants


def run_ecfp_rf(clean: str | Path, split: str | Path, out: str | Path, dataset: str, metric: str,
                seed: int = 0, cfg: EcfpRfConfig = EcfpRfConfig(),
                fingerprints: np.ndarray | None = None) -> dict:
    """Train, select and test ECFP4 + RF on one split; write the run directory ``out``.

    Writes ``predictions.csv`` (test part), ``config.json`` (the effective settings and library
    versions), ``details.json`` (validation score of every grid point, constant tasks, label
    counts, timings) and last ``metrics.json``, each atomically. Returns the metrics record.

    Args:
        clean: cleaned Parquet (``bbmn clean``).
        split: split file (``bbmn split``) of that table.
        out: run directory.
        dataset: dataset name for the tables.
        metric: ``roc_auc`` (classification), ``rmse`` or ``mae`` (regression).
        seed: forest seed (``random_state``).
        cfg: fingerprint, forest and grid settings.
        fingerprints: the dataset's :func:`morgan_matrix` in table order, if already computed.
    """
    start = time.perf_counter()
    data = load_dataset(clean, split, dataset)
    check_metric(metric, data.task_type)
    grid = cfg.grid()
    if not grid:
        raise BbmnError("the ECFP-RF grid is empty: give at least one max_features and min_samples_leaf")
    out = start_run(out)
    if fingerprints is None:
        X = morgan_matrix(data.smiles, cfg.radius, cfg.n_bits)
    elif fingerprints.shape != (len(data.smiles), cfg.n_bits):
        raise BbmnError(f"fingerprints of shape {fingerprints.shape} do not fit {len(data.smiles)} "
                        f"molecules x {cfg.n_bits} bits")
    else:
        X = fingerprints
    fp_seconds = time.perf_counter() - start
    y_val, y_test = part_labels(data, "val"), part_labels(data, "test")
    best, tried = None, []
    for params in grid:
        t0 = time.perf_counter()
        val_pred, test_pred, constants = fit_grid_point(data, X, params, cfg, seed)
        val_score = score(metric, y_val, val_pred, data.tasks)
        tried.append({"params": params, "val": val_score.value, "seconds": round(time.perf_counter() - t0, 3)})
        log.info("ECFP-RF %s seed %d %s: validation %s %.4f (%.1f s)", dataset, seed, params, metric,
                 val_score.value, time.perf_counter() - t0)
        if best is None or is_better(metric, val_score.value, best[1].value):
            best = (params, val_score, test_pred, constants)
    params, val_score, test_pred, constants = best
    test_score: Score = score(metric, y_test, test_pred, data.tasks)
    seconds = time.perf_counter() - start
    write_part_predictions(out / "predictions.csv", data, "test", test_pred)
    write_json(out / "config.json", {"model": ROW, "dataset": dataset, "metric": metric, "seed": seed,
                                     "clean": str(clean), "split": str(split), **asdict(cfg),
                                     "versions": _versions()})
    write_json(out / "details.json", {"grid": tried, "selected": params, "constant_tasks": constants,
                                      "labels": task_summary(data), "fingerprint_seconds": round(fp_seconds, 3),
                                      "seconds": round(seconds, 3)})
    record = metrics_record(data, seed=seed, model=ROW, label=LABEL, metric=metric, selected=params,
                            val=val_score, test=test_score, seconds=seconds)
    return write_metrics(out / "metrics.json", record)


def _versions() -> dict:
    import rdkit
    import sklearn

    return {"rdkit": rdkit.__version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__}
