"""A fine-tuned run as an MLflow model (``mlflow.pyfunc``) that scores SMILES like ``bbmn predict``.

:class:`BbmnPyfunc` wraps :class:`bbmn.inference.predict.Predictor`, so ``mlflow models predict``,
``mlflow models serve`` and ``mlflow.pyfunc.load_model(...).predict`` go through the same
standardization, featurization, descriptors, scalers and model as ``bbmn predict``. Input: a table
with a ``smiles`` column (or a list of SMILES); output: ``bbmn predict``'s columns (``row``,
``input``, ``smiles``, ``status``, ``detail``, one column per task), one row per input row, failed
rows included with their reason.

:func:`save_pyfunc` writes the model into a run directory (``<run>/mlflow_model``, usable without
a tracking store), with a signature and an input example; the fine-tuning run then logs that
directory to MLflow as the run's logged model (:meth:`bbmn.train.tracking.Tracker.log_model`).
:func:`save_ensemble_pyfunc` packages several seed runs as one model (``bbmn register``).
The model carries bbmn itself as a wheel (``wheels/``, named in its ``requirements.txt``), so an
environment MLflow builds for it (``mlflow models serve`` without ``--env-manager local``) needs
only PyPI or a mirror of it, not this repository.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
import shutil
import time
import zipfile
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from packaging.requirements import Requirement

import bbmn
from bbmn.errors import BbmnError
from bbmn.io import atomic_path

log = logging.getLogger(__name__)

#: where a fine-tuning run keeps its packaged model
PYFUNC_DIR = "mlflow_model"
#: the input column
SMILES = "smiles"
#: where the model keeps the bbmn wheel its requirements.txt installs (the folder MLflow's own
#: ``mlflow.models.add_libraries_to_model`` uses; pip resolves the path inside the model directory)
WHEELS = "wheels"


class BbmnPyfunc(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc`` model around one fine-tuned ``model.pt`` (artifact ``model``) or an
    ensemble of them (artifacts ``member_000``, ``member_001``, ...: the mean and std over the
    members, as ``bbmn predict`` gives for several models)."""

    def load_context(self, context) -> None:
        from bbmn.inference.predict import Predictor, load_member

        self.predictor = Predictor([load_member(context.artifacts[k]) for k in sorted(context.artifacts)])

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
                ) -> pd.DataFrame:
        return predict_frame(self.predictor, model_input)


def predict_frame(predictor, model_input) -> pd.DataFrame:
    """``bbmn predict``'s output table (pandas) for a DataFrame with a ``smiles`` column, a Series
    or a list of SMILES."""
    from bbmn.inference.predict import predictions_table

    if isinstance(model_input, pd.DataFrame):
        if SMILES not in model_input.columns:
            raise BbmnError(f"the input needs a {SMILES!r} column; it has {list(model_input.columns)}")
        smiles = model_input[SMILES]
    else:
        smiles = pd.Series(model_input)
    smiles = ["" if s is None or (isinstance(s, float) and s != s) else str(s) for s in smiles.tolist()]
    prepared, values = predictor.predict_smiles(smiles)
    return predictions_table(prepared, values, predictor.columns).to_pandas()


def signature(columns: Sequence[str]) -> ModelSignature:
    """Input: a string column ``smiles``; output: bbmn predict's columns (``columns``: the
    prediction columns, the tasks and, for an ensemble, their ``_std``)."""
    outputs = [ColSpec("long", "row"), ColSpec("string", "input"), ColSpec("string", "smiles"),
               ColSpec("string", "status"), ColSpec("string", "detail")]
    outputs += [ColSpec("double", c, required=False) for c in columns]
    return ModelSignature(inputs=Schema([ColSpec("string", SMILES)]), outputs=Schema(outputs))


def requirements(wheel: str) -> list[str]:
    """bbmn's own dependencies and cloudpickle (which unpickles the model object), pinned to the
    versions that trained the model, then the bbmn wheel at ``wheel`` (relative to the model)."""
    needed = [Requirement(r).name for r in distribution("bbmn").requires or []
              if "extra" not in str(Requirement(r).marker or "")]
    pins = []
    for name in [*needed, "cloudpickle"]:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return [*pins, wheel]


def bbmn_wheel() -> tuple[str, bytes]:
    """A wheel of the running bbmn (its package's modules, its installed metadata): file name, bytes.

    Zipped here rather than built with ``pip wheel``: an installed bbmn may have no source tree,
    and a build per fine-tuning run takes seconds and writes ``build/`` into a checkout that
    parallel jobs share. The version gets the code's hash as a local label (``0.1.0+sha<12 hex>``):
    MLflow reuses a model environment whose requirements read the same, so two models with other
    code must not name the same wheel. Fixed timestamps: the same code gives the same bytes.
    """
    dist = distribution("bbmn")
    package = Path(bbmn.__file__).parent
    files = {f"bbmn/{p.relative_to(package).as_posix()}": p.read_bytes()
             for p in sorted(package.rglob("*.py"))}
    code = hashlib.sha256()
    for name, data in files.items():
        code.update(f"{name}\0{len(data)}\0".encode() + data)
    release = f"{dist.version.split('+')[0]}+sha{code.hexdigest()[:12]}"
    info = f"bbmn-{release}.dist-info"
    metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    files[f"{info}/METADATA"] = re.sub(r"(?m)^Version: .*$", f"Version: {release}", metadata, count=1).encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: bbmn\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    files[f"{info}/top_level.txt"] = b"bbmn\n"
    record = [f"{name},sha256={_sha256(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = "".join(f"{line}\n" for line in [*record, f"{info}/RECORD,,"]).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as whl:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
            whl.writestr(entry, data)
    return f"bbmn-{release}-py3-none-any.whl", buffer.getvalue()


def _sha256(data: bytes) -> str:
    """A RECORD line's hash: urlsafe base64 of the sha256, unpadded (the wheel spec's form)."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def remove_pyfunc(run_dir: str | Path) -> None:
    """Remove a run directory's packaged model (a new run starts without the old one)."""
    shutil.rmtree(Path(run_dir) / PYFUNC_DIR, ignore_errors=True)


def save_pyfunc(run_dir: str | Path, examples: Sequence[str]) -> Path:
    """Save ``<run_dir>/model.pt`` as an MLflow pyfunc model in ``<run_dir>/mlflow_model``.

    ``examples`` (a few SMILES) become the input example. Returns the model directory.
    """
    from bbmn.train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    saved = load_checkpoint(run_dir / "model.pt")
    return _save(run_dir / PYFUNC_DIR, {"model": run_dir / "model.pt"}, saved["tasks"], examples,
                 {k: saved.get(k) for k in ("dataset", "seed", "init", "metric", "task_type", "tasks",
                                            "best_epoch")})


def save_ensemble_pyfunc(members: Sequence, out: str | Path, examples: Sequence[str]) -> Path:
    """Save fine-tuned runs (:class:`bbmn.inference.predict.Member`, loaded and checked to predict
    the same tasks alike) as one MLflow pyfunc model in ``out``: it predicts their mean and, per
    task, ``<task>_std`` over them. Returns ``out``."""
    from bbmn.inference.predict import Predictor

    columns = Predictor(members).columns  # refuses members that do not make an ensemble
    first = members[0]
    metadata = {"ensemble": len(members), "tasks": first.tasks, "task_type": first.task_type,
                "members": [{"model": str(m.path), **m.info} for m in members]}
    return _save(Path(out), {f"member_{k:03d}": m.path for k, m in enumerate(members)}, columns,
                 examples, metadata)


def _save(final: Path, artifacts: dict[str, Path], columns: Sequence[str], examples: Sequence[str],
          metadata: dict) -> Path:
    """The pyfunc model of ``artifacts`` (model.pt files) in ``final``, with bbmn's wheel.

    Written to a temporary directory first and renamed, so a half-written model never appears.
    ``wheels/`` holds bbmn (:func:`bbmn_wheel`).
    """
    started = time.perf_counter()
    name, wheel_bytes = bbmn_wheel()
    wheel = f"{WHEELS}/{name}"
    with atomic_path(final) as tmp:
        mlflow.pyfunc.save_model(
            path=str(tmp), python_model=BbmnPyfunc(),
            artifacts={key: str(path) for key, path in artifacts.items()},
            signature=signature(columns),
            input_example=pd.DataFrame({SMILES: list(examples)[:3]}),
            pip_requirements=requirements(wheel), metadata={"bbmn": metadata})
        (tmp / WHEELS).mkdir()
        (tmp / wheel).write_bytes(wheel_bytes)
    log.info("packaged %s as an MLflow pyfunc model in %s (%.1f s)",
             "the model" if len(artifacts) == 1 else f"an ensemble of {len(artifacts)} models", final,
             time.perf_counter() - started)
    return final
