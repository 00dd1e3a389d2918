"""A fine-tuned run as an MLflow model (``mlflow.pyfunc``) that scores SMILES like ``bbmn predict``.

:class:`BbmnPyfunc` wraps :class:`bbmn.inference.predict.Predictor`, so ``mlflow models predict``,
``mlflow models serve`` and ``mlflow.pyfunc.load_model(...).predict`` go through the same
standardization, featurization, descriptors, scalers and model as ``bbmn predict``. Input: a table
with a ``smiles`` column (or a list of SMILES); output: ``bbmn predict``'s columns (``row``,
``input``, ``smiles``, ``status``, ``detail``, one column per task), one row per input row, failed
rows included with their reason.

:func:`save_pyfunc` writes the model into a run directory (``<run>/mlflow_model``, usable without
a tracking store: ``mlflow models serve -m <run>/mlflow_model --env-manager local``), with a
signature and an input example; the fine-tuning run then logs that directory to MLflow as the
run's logged model (:meth:`bbmn.train.tracking.Tracker.log_model`).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from bbmn.errors import BbmnError
from bbmn.io import atomic_path

log = logging.getLogger(__name__)

#: where a fine-tuning run keeps its packaged model
PYFUNC_DIR = "mlflow_model"
#: the input column
SMILES = "smiles"
#: what the model needs at run time besides bbmn itself (pinned to the versions that trained it)
REQUIREMENTS = ("torch", "torch-geometric", "rdkit", "descriptastorus", "numpy", "pandas",
                "pyarrow", "mlflow")


class BbmnPyfunc(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc`` model around one fine-tuned ``model.pt`` (artifact ``model``)."""

    def load_context(self, context) -> None:
        from bbmn.inference.predict import Predictor, load_member

        self.predictor = Predictor([load_member(context.artifacts["model"])])

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


def signature(tasks: Sequence[str]) -> ModelSignature:
    """Input: a string column ``smiles``; output: bbmn predict's columns."""
    outputs = [ColSpec("long", "row"), ColSpec("string", "input"), ColSpec("string", "smiles"),
               ColSpec("string", "status"), ColSpec("string", "detail")]
    outputs += [ColSpec("double", t, required=False) for t in tasks]
    return ModelSignature(inputs=Schema([ColSpec("string", SMILES)]), outputs=Schema(outputs))


def requirements() -> list[str]:
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def remove_pyfunc(run_dir: str | Path) -> None:
    """Remove a run directory's packaged model (a new run starts without the old one)."""
    shutil.rmtree(Path(run_dir) / PYFUNC_DIR, ignore_errors=True)


def save_pyfunc(run_dir: str | Path, examples: Sequence[str]) -> Path:
    """Save ``<run_dir>/model.pt`` as an MLflow pyfunc model in ``<run_dir>/mlflow_model``.

    Written to a temporary directory first and renamed, so a half-written model never appears.
    ``examples`` (a few SMILES) become the input example. Returns the model directory.
    """
    from bbmn.train.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    started = time.perf_counter()
    saved = load_checkpoint(run_dir / "model.pt")
    final = run_dir / PYFUNC_DIR
    with atomic_path(final) as tmp:
        mlflow.pyfunc.save_model(
            path=str(tmp), python_model=BbmnPyfunc(), artifacts={"model": str(run_dir / "model.pt")},
            signature=signature(saved["tasks"]),
            input_example=pd.DataFrame({SMILES: list(examples)[:3]}),
            pip_requirements=requirements(),
            metadata={"bbmn": {k: saved.get(k) for k in ("dataset", "seed", "init", "metric",
                                                           "task_type", "tasks", "best_epoch")}})
    log.info("packaged the model as an MLflow pyfunc model in %s (%.1f s)", final,
             time.perf_counter() - started)
    return final
