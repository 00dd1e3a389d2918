"""Linear probe of a frozen encoder: what pre-training put into the representation, read with the
simplest model that can read it.

Features: the two pooled views of the encoders' last blocks (:func:`bbmn.models.views.block_views`,
atom view then bond view, ``2h`` wide), computed once per invocation on the full, unmasked graphs of
the dataset's graph cache (the molecules fine-tuning reads, featurized the same way) and shared by
every split. The encoder comes from

* a checkpoint: ``bbmn pretrain``'s ``model.pt`` or one of its ``snapshots/step-N.pt`` (kind
  ``batmannet-pretrained``), or ``bbmn finetune``'s ``model.pt`` (``batmannet-finetuned``);
* a random initialisation of the given sizes, seeded (the control: what the architecture alone
  gives);
* or nowhere: precomputed embeddings from a ``.npy`` file of shape ``(n, d)`` whose row ``i`` is
  the molecule of **source data row** ``i`` of the dataset's file (the ``row`` of the cleaned
  table and of the cache; ``bbmn embed`` and most external tools write one line per input line).
  Rows of molecules that failed may be NaN; the file may have more rows than the cache (molecules
  bbmn rejected), never fewer than the largest source row it needs. This is how another encoder
  (e.g. the authors' code) is probed on the same splits.

The probe: features standardized with the training part's mean and std (a zero-variance column
becomes 0, not NaN); then per task, on the training molecules that have its label, an L2 logistic
regression (classification; Newton steps or lbfgs, :meth:`ProbeConfig.solver_for`) or a ridge
regression on the training part's standardized targets (regression; predictions are mapped back to
label units). One regularization value for the
whole dataset (``C`` or ``alpha`` from a fixed grid) is chosen by the mean validation metric over
tasks (first in grid order on ties); the test part is scored once, at that value, and never looked
at before. A task whose training labels are all one class predicts that class's train prior (a
constant, as :mod:`bbmn.baselines.ecfp_rf` does); one without training labels predicts 0.5
(classification) or NaN (regression, which the score skips and names).

Molecules whose features are not finite (an external encoder that failed on them) are an error
naming them, unless ``drop_missing`` leaves them out of every part of every split (then the test
part, its predictions and the recorded part sizes are smaller, and ``split.dropped_rows`` names
them).

Speed (ToxCast: 8,576 molecules, 617 tasks, 6,860 training molecules, a random encoder of the
spec's sizes, one thread on a machine whose two cores were busy with training runs): the features
and their health take 69 s of CPU, 2-2.5 min wall (the views alone 40 s of CPU); the 617 x 6
logistic fits take 89 s of CPU (3 min wall) with Newton steps, warm-started along the ascending C
grid, against ~5 min wall with lbfgs, which also stalls at 1000 iterations in 28 fits on these
nearly collinear features. Both solvers gave the same validation scores to four decimals.

Outputs (each atomically, ``metrics.json`` last): ``<out>/config.json`` and ``<out>/health.json``
once per invocation (health on all molecules of the cache: an encoder's
:func:`~bbmn.eval.health.encoder_health` plus ``features``, the
:func:`~bbmn.eval.health.matrix_health` of what the probe reads; external embeddings have only
``features``), and
per split ``<out>/seed<S>/``: ``predictions.csv`` of the test part, ``details.json`` (constant
tasks, label counts, unconverged fits, timings) and ``metrics.json`` in the schema of
:func:`bbmn.baselines.common.metrics_record` (what the table step reads) plus the encoder, the
representation, ``add_positions`` and the health numbers. Its ``seconds`` is the split's own work
(fit, selection and scoring); ``encode_seconds`` the feature computation shared by all splits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bbmn.data.splits import PARTS
from bbmn.errors import BbmnError
from bbmn.eval.health import encode_graphs, health_of, matrix_health
from bbmn.io import sha256_file, write_json
from bbmn.kinds import PROBE_KINDS, RunKind
from bbmn.models.options import ENCODER_SIZES
from bbmn.options import DEVICE_HELP, option

if TYPE_CHECKING:  # scikit-learn and pandas load in seconds, and `bbmn --help` imports this module
    from bbmn.baselines.common import Dataset
    from bbmn.data.graph import GraphArrays
    from bbmn.eval.metrics import Score

log = logging.getLogger(__name__)

MODEL = "linear_probe"
#: checkpoint kinds a probe reads an encoder from
CHECKPOINT_KINDS = ("batmannet-pretrained", "batmannet-finetuned")
#: the row of a probe of precomputed embeddings; its label names the encoder
EXTERNAL_ROW = "probe_external"
#: the logistic regressions' solvers (:meth:`ProbeConfig.solver_for`)
SOLVERS = ("auto", "lbfgs", "newton-cholesky")
#: widest features ``auto`` solves with Newton steps
NEWTON_MAX_FEATURES = 512


@dataclass(frozen=True)
class ProbeConfig:
    """Probe settings: ``bbmn probe``'s flags and the workflow's ``probe`` section are these
    fields (:mod:`bbmn.options`)."""

    c_grid: tuple[float, ...] = option((1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2), "inverse L2 strengths of "
                                       "the logistic regressions (classification), tried in ascending "
                                       "order with warm starts")
    alpha_grid: tuple[float, ...] = option((1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4), "L2 strengths of the "
                                           "ridge regressions (regression, on standardized targets)")
    solver: str = option("auto", f"the logistic regressions' solver (both minimize the same "
                         f"L2-penalized log-loss); auto: newton-cholesky up to {NEWTON_MAX_FEATURES} "
                         "features, else lbfgs", choices=SOLVERS)
    max_iter: int = option(1000, "solver iterations at most per logistic fit (fits that stop there are "
                           "counted in details.json)")
    batch_size: int = option(256, "molecules per encoder forward pass")
    add_positions: bool = option(False, "add the per-molecule positional code to the encoders' input "
                                 "stage, as pre-training does (fine-tuning does not)")
    drop_missing: bool = option(False, "leave molecules with non-finite features out of every part "
                                "instead of failing (external embeddings of molecules the other tool "
                                "could not read)")
    threads: int = option(0, "threads of torch and of the BLAS / OpenMP pools (0 = their defaults)")
    device: str = option("auto", f"where the encoder runs: {DEVICE_HELP}; the regressions run on the CPU")

    def grid(self, task_type: str) -> tuple[str, list[float]]:
        """The regularization parameter's name and its values, ascending."""
        name, values = ("C", self.c_grid) if task_type == "classification" else ("alpha", self.alpha_grid)
        values = sorted(float(v) for v in values)
        if not values or any(not (math.isfinite(v) and v > 0) for v in values):
            raise BbmnError(f"the {name} grid must hold positive numbers, got {list(values)}")
        return name, values

    def solver_for(self, n_features: int) -> str:
        """``auto``: Newton steps (``newton-cholesky``) up to :data:`NEWTON_MAX_FEATURES` features,
        else ``lbfgs``. On ToxCast's 200 views of a random encoder (nearly collinear: effective
        rank ~14) lbfgs needs hundreds of iterations at large C and stalls at 1000 in some tasks,
        while a few Newton steps of cost ``n d^2`` solve each fit exactly, 2.4x faster in all; a
        Newton step costs ``d^3`` too, so wide external embeddings keep lbfgs."""
        if self.solver not in SOLVERS:
            raise BbmnError(f"unknown solver {self.solver!r}; use one of {', '.join(SOLVERS)}")
        if self.solver != "auto":
            return self.solver
        return "newton-cholesky" if n_features <= NEWTON_MAX_FEATURES else "lbfgs"


# ------------------------------------------------------------------------------- the molecules

@dataclass
class LabelledCache:
    """A graph cache's molecules and labels, in cache order.

    Attributes:
        path: the cache file.
        graphs: every molecule's codes (``graphs.row``: source data rows; ``graphs.y``: labels).
        smiles: canonical SMILES, in cache order.
        tasks: label columns.
        task_type: ``classification`` or ``regression``.
    """

    path: Path
    graphs: GraphArrays
    smiles: list[str]
    tasks: list[str]
    task_type: str

    @property
    def rows(self) -> np.ndarray:
        return self.graphs.row


def read_labelled_cache(path: str | Path) -> LabelledCache:
    """Read a labelled graph cache (``bbmn featurize`` of a cleaned labelled table)."""
    import pandas as pd

    from bbmn.data.cache import GraphCache

    cache = GraphCache(path)
    if not cache.tasks:
        raise BbmnError(f"{path} has no labels: a probe needs a labelled dataset")
    if cache.task_type not in ("classification", "regression"):
        raise BbmnError(f"{path} has no task type (classification or regression) in its metadata")
    graphs = cache.read()
    rows, smiles = cache.read_smiles()
    if not np.array_equal(rows, graphs.row):
        raise BbmnError(f"{path}: the row column reads differently twice; is the file being rewritten?")
    if not pd.Index(rows).is_unique:
        raise BbmnError(f"{path} lists a source row twice; it is not a bbmn graph cache")
    return LabelledCache(Path(path), graphs, smiles, list(cache.tasks), cache.task_type)


def split_dataset(cache: LabelledCache, split_path: str | Path, name: str) -> Dataset:
    """The baselines' :class:`~bbmn.baselines.common.Dataset` of one split of the cache's molecules.

    The checks of :func:`bbmn.baselines.common.load_dataset`, against the cache instead of the
    cleaned table: every split row must be in the cache, parts must be disjoint, and no part may
    be empty (validation chooses the regularization).
    """
    from bbmn.baselines.common import Dataset, split_positions

    positions, split = split_positions(cache.rows, split_path, f"the cache {cache.path}")
    for part, found in positions.items():
        if len(found) == 0:
            raise BbmnError(f"the {part} part of split file {split_path} is empty")
    return Dataset(name=name, tasks=list(cache.tasks), task_type=cache.task_type, rows=cache.rows,
                   smiles=cache.smiles, y=cache.graphs.y.astype(np.float64), parts=positions, split=split)


def finite_parts(X: np.ndarray, data: Dataset, drop_missing: bool = False) -> Dataset:
    """``data`` itself when every molecule of its parts has finite features; else an error naming
    them, or with ``drop_missing`` a copy without them in any part (``split.dropped_rows``)."""
    finite = np.isfinite(X).all(axis=1)
    used = np.concatenate([data.parts[p] for p in PARTS])
    bad = np.sort(data.rows[used[~finite[used]]])
    if len(bad) == 0:
        return data
    shown = ", ".join(str(r) for r in bad[:20]) + (f" and {len(bad) - 20} more" if len(bad) > 20 else "")
    if not drop_missing:
        raise BbmnError(f"{len(bad)} molecules of split {data.split['path']} have non-finite (NaN) features: "
                        f"source rows {shown}; give --drop-missing to leave them out of every part")
    parts = {p: pos[finite[pos]] for p, pos in data.parts.items()}
    for part, pos in parts.items():
        if len(pos) == 0:
            raise BbmnError(f"no {part} molecule of split {data.split['path']} has finite features")
    log.warning("probe: %d molecules without finite features left out of split %s (source rows %s)",
                len(bad), data.split["path"], shown)
    split = {**data.split, **{p: int(len(parts[p])) for p in PARTS}, "dropped_rows": bad.tolist()}
    return dataclasses.replace(data, parts=parts, split=split)


# ------------------------------------------------------------------------------------ encoders

def checkpoint_encoder(path: str | Path):
    """The encoder of a checkpoint (module docstring), in evaluation mode, and what the metrics
    record of it: path, sha256, kind, pre-training steps (when its summary has them), config.

    Raises:
        BbmnError: for another kind of file, a descriptors-only model (no encoder), or weights
            that do not fit the recorded sizes.
    """
    from bbmn.models.embedding import model_from_saved
    from bbmn.train.card import check_model
    from bbmn.train.checkpoint import load_checkpoint

    saved = load_checkpoint(path)
    check_model(saved, path, CHECKPOINT_KINDS, "bbmn probe")  # kind, featurizer, settings, weights
    kind = saved["kind"]
    config = saved["model_config"]
    if config.get("inputs") == "descriptors":
        raise BbmnError(f"{path} is a descriptors-only model: it has no encoder to probe")
    if config.get("branches", "both") != "both":
        raise BbmnError(f"{path} pre-trained only the {config['branches']} branch: the probe reads "
                        f"both branches' views")
    try:
        net = model_from_saved(saved)
    except (TypeError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BbmnError(f"cannot rebuild the model of {path}: {first}") from None
    summary = saved.get("summary") if isinstance(saved.get("summary"), dict) else {}
    info = {"path": str(path), "sha256": sha256_file(path), "kind": kind,
            "pretraining_steps": summary.get("steps"), "config": dict(config)}
    return net, info


def random_encoder(seed: int = 0, **options):
    """A BatmanNet initialised from ``torch.manual_seed(seed)`` (torch's global generator is left
    as it was), in evaluation mode. ``options``: any of its encoder sizes
    (:data:`~bbmn.models.options.ENCODER_SIZES`: hidden, heads, depth, encoder_blocks, activation,
    residual); the others take BatmanNet's defaults (the spec's)."""
    import torch

    from bbmn.models.batmannet import BatmanNet

    unknown = set(options) - set(ENCODER_SIZES)
    if unknown:
        raise BbmnError(f"a random encoder takes {', '.join(ENCODER_SIZES)}, not {sorted(unknown)}")
    counts = {k: v for k, v in options.items() if k in ("hidden", "heads", "depth", "encoder_blocks")}
    if any(int(v) < 1 for v in counts.values()):
        raise BbmnError(f"encoder sizes must be at least 1, got {counts}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            net = BatmanNet(**options)
        except (ValueError, RuntimeError) as exc:
            raise BbmnError(f"cannot build a BatmanNet of sizes {options}: {exc}") from None
    return net.eval()


def encoder_embeddings(net, graphs: GraphArrays, batch_size: int = 256,
                       add_positions: bool = False) -> np.ndarray:
    """``(n, 2h)`` float32: the atom view then the bond view of
    :func:`bbmn.models.views.block_views`, per molecule in ``graphs``' order (evaluation mode,
    inference mode, ``batch_size`` molecules at a time)."""
    atom, bond, _ = encode_graphs(net, graphs, batch_size, add_positions)
    return np.concatenate([atom, bond], axis=1)


def external_embeddings(path: str | Path, rows: np.ndarray) -> np.ndarray:
    """The molecules ``rows`` (source data rows) of a ``.npy`` whose row ``i`` is source row ``i``."""
    try:
        table = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise BbmnError(f"cannot read embeddings {path}: {exc}") from None
    if table.ndim != 2 or table.shape[1] == 0 or not np.issubdtype(table.dtype, np.number):
        raise BbmnError(f"embeddings {path} must be a numeric (rows, dims) array, got {table.dtype} "
                        f"{table.shape}")
    needed = int(rows.max()) + 1 if len(rows) else 0
    if table.shape[0] < needed:
        raise BbmnError(f"embeddings {path} have {table.shape[0]} rows, but the dataset's molecules come from "
                        f"source rows up to {needed - 1}: row i of the file must be source data row i")
    return np.asarray(table[rows], dtype=np.float32)


@dataclass
class Features:
    """What the probe reads, for every molecule of the cache (cache order), and where it came from.

    Attributes:
        X: ``(n, d)`` float32 features (NaN rows possible for external embeddings).
        init: ``pretrained``, ``finetuned``, ``random`` or ``external``.
        kind: the run kind (row key and label of metrics.json).
        encoder: what metrics.json records of the encoder.
        representation: ``blocks`` (pooled last-block views) or ``external``.
        health: :mod:`bbmn.eval.health` numbers on all molecules.
        seconds: time taken to compute the features and their health.
    """

    X: np.ndarray
    init: str
    kind: RunKind
    encoder: dict
    representation: str
    health: dict
    seconds: float


def _encoder_features(net, cache: LabelledCache, cfg: ProbeConfig) -> tuple[np.ndarray, dict]:
    from bbmn.train.device import resolve_device

    net.to(resolve_device(cfg.device))
    atom, bond, stages = encode_graphs(net, cache.graphs, cfg.batch_size, cfg.add_positions, stages=True)
    X = np.concatenate([atom, bond], axis=1)
    return X, {**health_of(atom, bond, stages), "features": matrix_health(X)}


def tagged(kind: RunKind, tag: str | None) -> RunKind:
    """``kind`` with ``tag`` in its row key and label (``probe_pretrained_step500``, "Linear probe
    (pre-trained encoder, step500)"), so that probes of several snapshots are rows of their own."""
    if not tag:
        return kind
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", tag):
        raise BbmnError(f"tag {tag!r}: use letters, digits, '_' and '-' only (it becomes part of a row key)")
    label = f"{kind.label[:-1]}, {tag})" if kind.label.endswith(")") else f"{kind.label} ({tag})"
    return RunKind(f"{kind.key}_{tag}", label, kind.colour)


def probe_features(cache: LabelledCache, cfg: ProbeConfig, *, checkpoint: str | Path | None = None,
                   random_init: Mapping[str, int] | None = None, embeddings: str | Path | None = None,
                   name: str | None = None, tag: str | None = None) -> Features:
    """Features from exactly one source: a ``checkpoint``, a ``random_init`` (``seed`` and any of
    ``hidden``, ``heads``, ``depth``, ``encoder_blocks``: :func:`random_encoder`; ``{}`` = seed 0,
    the spec's sizes) or ``embeddings`` (a ``.npy``, with the encoder's ``name`` for the label).
    ``tag`` makes the row its own (:func:`tagged`), e.g. for a pre-training snapshot."""
    given = [k for k, v in (("checkpoint", checkpoint), ("random_init", random_init),
                            ("embeddings", embeddings)) if v is not None]
    if len(given) != 1:
        raise BbmnError(f"give exactly one of a checkpoint, a random initialisation or embeddings "
                        f"(got {', '.join(given) or 'none'})")
    start = time.perf_counter()
    if embeddings is not None:
        if not name:
            raise BbmnError("probing external embeddings needs a name for the encoder (--name)")
        X = external_embeddings(embeddings, cache.rows)
        finite = np.isfinite(X).all(axis=1)
        encoder = {"path": str(embeddings), "sha256": sha256_file(embeddings), "kind": "external",
                   "name": name, "dim": int(X.shape[1]), "non_finite_rows": int((~finite).sum())}
        return Features(X, "external", tagged(RunKind(EXTERNAL_ROW, f"Linear probe ({name})", "black"), tag), encoder,
                        "external", {"features": matrix_health(X[finite])}, time.perf_counter() - start)
    if checkpoint is not None:
        net, encoder = checkpoint_encoder(checkpoint)
        init = "pretrained" if encoder["kind"] == "batmannet-pretrained" else "finetuned"
    else:
        sizes = dict(random_init)
        seed = int(sizes.pop("seed", 0))
        net = random_encoder(seed, **sizes)
        init = "random"
        encoder = {"kind": "random", "init_seed": seed, "config": net.config}
    kind = tagged(PROBE_KINDS[init], tag)
    X, health = _encoder_features(net, cache, cfg)
    return Features(X, init, kind, encoder, "blocks", health, time.perf_counter() - start)


# --------------------------------------------------------------------------------------- probe

@dataclass
class ProbeFit:
    """The probe of one split.

    Attributes:
        param: ``C`` or ``alpha``.
        value: the chosen value.
        grid: ``[{param: value, "val": mean validation metric}, ...]`` in grid order.
        val: validation score at the chosen value; test: test score at it.
        test_pred: ``(n_test, T)`` test predictions at it (probabilities or label units).
        constants: ``{task: why}`` for tasks that predict a constant.
        not_converged: logistic fits that reached ``max_iter``.
        selection: how the value was chosen.
        solver: the logistic regressions' solver (None for ridge regressions).
    """

    param: str
    value: float
    grid: list[dict]
    val: Score
    test: Score
    test_pred: np.ndarray
    constants: dict[str, str] = field(default_factory=dict)
    not_converged: int = 0
    selection: str = "best mean validation metric"
    solver: str | None = None

    def selected(self) -> dict:
        return {self.param: self.value, "grid": self.grid, "selection": self.selection}


def _standardize(X: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Features scaled with the training part's mean and std; a zero-variance column becomes 0."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(X[train], dtype=np.float64))
    return scaler.transform(np.asarray(X, dtype=np.float64))


def _constant(task_type: str, targets: np.ndarray) -> tuple[float | None, str]:
    """A task's constant prediction and why, or ``(None, "")`` when a model can be fit."""
    if len(targets) == 0:
        return (0.5 if task_type == "classification" else float("nan")), "no train labels"
    if task_type == "classification" and len(np.unique(targets)) < 2:
        return float(targets[0]), f"one class in train ({int(targets[0])})"
    return None, ""


def _fit_logistic(Z: np.ndarray, y: np.ndarray, train: np.ndarray, evaluate: Sequence[np.ndarray],
                  grid: Sequence[float], solver: str, max_iter: int) -> tuple[list[np.ndarray], int]:
    """One task's logistic regressions along the ascending C grid (warm starts): per array of
    positions in ``evaluate``, a ``(G, n)`` array of P(label = 1); and the unconverged fits."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(solver=solver, max_iter=max_iter, warm_start=True)
    out = [np.empty((len(grid), len(idx))) for idx in evaluate]
    stalled = 0
    X_train, y_train = Z[train], y[train]
    for g, c in enumerate(grid):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.set_params(C=c).fit(X_train, y_train)
        stalled += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        for o, idx in zip(out, evaluate):
            o[g] = model.predict_proba(Z[idx])[:, 1] if len(idx) else np.zeros(0)
    return out, stalled


def _fit_ridge(Z: np.ndarray, y: np.ndarray, train: np.ndarray, evaluate: Sequence[np.ndarray],
               grid: Sequence[float]) -> list[np.ndarray]:
    """One task's ridge regressions on train-standardized targets, per alpha; predictions in
    label units, ``(G, n)`` per array of positions in ``evaluate``."""
    from sklearn.linear_model import Ridge

    targets = y[train]
    mean, std = float(targets.mean()), float(targets.std())
    std = std if std >= 1e-8 else 1.0
    out = [np.empty((len(grid), len(idx))) for idx in evaluate]
    X_train, z = Z[train], (targets - mean) / std
    for g, alpha in enumerate(grid):
        model = Ridge(alpha=alpha).fit(X_train, z)
        for o, idx in zip(out, evaluate):
            o[g] = model.predict(Z[idx]) * std + mean if len(idx) else np.zeros(0)
    return out


def fit_probe(X: np.ndarray, data: Dataset, metric: str, cfg: ProbeConfig = ProbeConfig()) -> ProbeFit:
    """Fit the probe on ``data``'s training part, choose the regularization on validation, score
    the test part at it (module docstring). ``X``: ``(len(data.rows), d)`` features in the
    order of ``data.rows``, finite on every molecule of the parts (:func:`finite_parts`)."""
    from bbmn.eval.metrics import check_metric, is_better, score

    check_metric(metric, data.task_type)
    param, grid = cfg.grid(data.task_type)
    solver = cfg.solver_for(X.shape[1])
    parts = data.parts
    Z = _standardize(X, parts["train"])
    n_val, n_test, n_tasks = len(parts["val"]), len(parts["test"]), len(data.tasks)
    val = np.empty((len(grid), n_val, n_tasks))
    test = np.empty((len(grid), n_test, n_tasks))
    constants: dict[str, str] = {}
    stalled = 0
    for j, task in enumerate(data.tasks):
        labelled = parts["train"][np.isfinite(data.y[parts["train"], j])]
        value, why = _constant(data.task_type, data.y[labelled, j])
        if why:
            constants[task] = why
            val[:, :, j], test[:, :, j] = value, value
            continue
        evaluate = (parts["val"], parts["test"])
        if data.task_type == "classification":
            (val[:, :, j], test[:, :, j]), n = _fit_logistic(Z, data.y[:, j], labelled, evaluate, grid, solver,
                                                             cfg.max_iter)
            stalled += n
        else:
            val[:, :, j], test[:, :, j] = _fit_ridge(Z, data.y[:, j], labelled, evaluate, grid)
    y_val, y_test = data.y[parts["val"]], data.y[parts["test"]]
    scores = [score(metric, y_val, val[g], data.tasks) for g in range(len(grid))]
    best, selection = None, "best mean validation metric"
    for g, s in enumerate(scores):
        if is_better(metric, s.value, None if best is None else scores[best].value):
            best = g
    if best is None:  # no task could be scored on validation: the grid value nearest 1
        best = int(np.argmin(np.abs(np.log(grid))))
        selection = f"no finite validation {metric}: the grid value nearest 1"
    return ProbeFit(param=param, value=grid[best],
                    grid=[{param: v, "val": s.value} for v, s in zip(grid, scores)],
                    val=scores[best], test=score(metric, y_test, test[best], data.tasks),
                    test_pred=test[best], constants=constants, not_converged=stalled, selection=selection,
                    solver=solver if data.task_type == "classification" else None)


# ------------------------------------------------------------------------------------- running

def metrics_record(data: Dataset, fit: ProbeFit, features: Features, cfg: ProbeConfig, metric: str,
                   seconds: float) -> dict:
    """The split's metrics.json: the baselines' schema plus what the probe read."""
    from bbmn.baselines.common import metrics_record as baseline_record

    return baseline_record(
        data, seed=int(data.split.get("seed")), model=MODEL, label=features.kind.label, metric=metric,
        selected=fit.selected(), val=fit.val, test=fit.test, seconds=seconds, init=features.init,
        row=features.kind.key, encode_seconds=round(features.seconds, 3), encoder=features.encoder,
        representation=features.representation,
        add_positions=cfg.add_positions if features.representation == "blocks" else None,
        health=features.health)


def _versions() -> dict:
    import sklearn
    import torch

    return {"scikit-learn": sklearn.__version__, "torch": torch.__version__, "numpy": np.__version__}


def run_probe(cache_path: str | Path, splits: Sequence[str | Path], out: str | Path, dataset: str,
              metric: str, cfg: ProbeConfig = ProbeConfig(), *, checkpoint: str | Path | None = None,
              random_init: Mapping[str, int] | None = None, embeddings: str | Path | None = None,
              name: str | None = None, tag: str | None = None,
              tracking_parent: str | Path | None = None, tracking_required: bool = False) -> list[dict]:
    """Probe one encoder on every split file of one dataset; write ``out`` (module docstring).

    Args:
        cache_path: the dataset's graph cache (``bbmn featurize``).
        splits: split files (``bbmn split``) of the table the cache was made from; each is written
            to ``out/seed<S>`` with ``S`` its recorded seed.
        out: output directory.
        dataset: dataset name for the tables.
        metric: ``roc_auc`` (classification), ``rmse`` or ``mae`` (regression).
        cfg: probe settings.
        checkpoint, random_init, embeddings, name: the encoder (:func:`probe_features`).
        tag: a row of its own for this encoder (:func:`tagged`).
        tracking_parent: parent run record (``bbmn track init``); each split is a child run.
        tracking_required: fail when the MLflow store cannot be used.

    Returns:
        The metrics records, in the order of ``splits``.
    """
    from bbmn.baselines.common import start_run
    from bbmn.eval.metrics import check_metric

    if cfg.threads > 0:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(cfg.threads)
        threadpool_limits(cfg.threads)  # numpy's and scikit-learn's BLAS / OpenMP pools too
    cache = read_labelled_cache(cache_path)
    check_metric(metric, cache.task_type)
    cfg.grid(cache.task_type)  # a bad grid, solver or device fails before the encoder runs
    cfg.solver_for(0)
    if embeddings is None:
        from bbmn.train.device import resolve_device

        resolve_device(cfg.device)
    datasets = [split_dataset(cache, s, dataset) for s in splits]
    seeds = [d.split.get("seed") for d in datasets]
    if any(s is None for s in seeds):
        raise BbmnError(f"split file {splits[seeds.index(None)]} records no seed; runs are written to seed<S>")
    if len(set(seeds)) != len(seeds):
        raise BbmnError(f"split files {[str(s) for s in splits]} have seeds {seeds}: each seed's run "
                        f"needs its own split")
    out = Path(out)
    runs = [start_run(out / f"seed{s}") for s in seeds]
    features = probe_features(cache, cfg, checkpoint=checkpoint, random_init=random_init,
                              embeddings=embeddings, name=name, tag=tag)
    log.info("probe %s %s: %d x %d features in %.1f s", dataset, features.kind.key, *features.X.shape,
             features.seconds)
    write_json(out / "config.json", {"model": MODEL, "dataset": dataset, "metric": metric,
                                     "cache": str(cache_path), "splits": [str(s) for s in splits],
                                     "row": features.kind.key, "init": features.init,
                                     "encoder": features.encoder, **asdict(cfg),
                                     "versions": _versions()})
    write_json(out / "health.json", {"dataset": dataset, "row": features.kind.key,
                                     "molecules": len(cache.rows), "encoder": features.encoder,
                                     "representation": features.representation,
                                     "add_positions": cfg.add_positions, "health": features.health})
    records = []
    for data, run in zip(datasets, runs):
        records.append(_probe_split(data, features, run, metric, cfg, tracking_parent, tracking_required))
    return records


def _probe_split(data: Dataset, features: Features, run: Path, metric: str, cfg: ProbeConfig,
                 tracking_parent: str | Path | None, tracking_required: bool) -> dict:
    """One split: fit, write predictions, details and metrics; track it as a child run."""
    from bbmn.baselines.common import task_summary, write_part_predictions
    from bbmn.eval.records import write_metrics
    from bbmn.train.tracking import Tracker, flat_metrics

    seed = int(data.split["seed"])
    params = {"dataset": data.name, "seed": seed, "metric": metric, "row": features.kind.key,
              "init": features.init, "split": data.split["path"], "representation": features.representation,
              "encoder": {k: v for k, v in features.encoder.items() if k != "config"},
              **{k: v for k, v in asdict(cfg).items() if k != "threads"}}
    with Tracker(f"probe {features.kind.key} {data.name} seed{seed}", parent=tracking_parent,
                     tags={"stage": "probe", "model": MODEL, "row": features.kind.key, "init": features.init,
                           "dataset": data.name, "seed": seed},
                     params=params, required=tracking_required, enabled=bool(tracking_parent)) as tracker:
        start = time.perf_counter()
        data = finite_parts(features.X, data, cfg.drop_missing)
        fit = fit_probe(features.X, data, metric, cfg)
        seconds = time.perf_counter() - start
        log.info("probe %s %s seed %d: %s = %g, validation %s %.4f, test %.4f (%.1f s)", data.name,
                 features.kind.key, seed, fit.param, fit.value, metric, fit.val.value, fit.test.value, seconds)
        write_part_predictions(run / "predictions.csv", data, "test", fit.test_pred)
        write_json(run / "details.json", {"grid": fit.grid, "selected": {fit.param: fit.value},
                                          "constant_tasks": fit.constants, "solver": fit.solver,
                                          "not_converged": fit.not_converged,
                                          "labels": task_summary(data), "seconds": round(seconds, 3),
                                          "encode_seconds": round(features.seconds, 3)})
        record = write_metrics(run / "metrics.json", metrics_record(data, fit, features, cfg, metric, seconds))
        if tracker.enabled:
            tracker.log_metrics({f"val_{metric}": fit.val.value, f"test_{metric}": fit.test.value,
                                 f"selected_{fit.param}": fit.value, "seconds": seconds,
                                 "encode_seconds": features.seconds,
                                 **flat_metrics("health", features.health)})
            for file in ("metrics.json", "predictions.csv", "details.json"):
                tracker.log_artifact(run / file, "probe")
    return record

