"""Experiment tracking with MLflow, and what happens when the tracking store is unreachable.

The store is ``$MLFLOW_TRACKING_URI`` when set, else ``sqlite:///mlflow.db`` in the working
directory (MLflow 3's default kind of store). The workflow creates the store, the experiment and
one parent run per invocation (:func:`init_store`) before parallel jobs write to it; every
training step is a child run tagged with its stage, dataset, seed, config hash and git commit.

Tracking never decides a result: every step writes its outputs to ``results/`` first. If the
store cannot be reached, a :class:`Tracker` logs one warning, says ``tracking skipped`` and goes
on, unless ``required=True`` (the workflow's ``tracking.required``), when it fails at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bbmn.errors import BbmnError
from bbmn.io import read_json, write_json

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "bbmn"
#: tag values are cut to this length (MLflow stores limit them; a card's values are short)
MAX_TAG_CHARS = 5000


def tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the embedded SQLite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def config_hash(params: Mapping[str, Any]) -> str:
    """A short, stable hash of a run's parameters (tag ``config_hash``)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def git_commit() -> str:
    """The commit of the bbmn checkout, with ``-dirty`` if it has local changes; else unknown."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{commit}-dirty" if dirty else commit
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _client(uri: str):
    """An MlflowClient; a tracking server is probed first, so that an unreachable one fails in
    seconds instead of after MLflow's minutes of HTTP retries."""
    if uri.startswith(("http://", "https://")):
        import urllib.request

        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=5).close()
        except OSError as exc:
            raise ConnectionError(f"no MLflow server answers at {uri} ({exc})") from None
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database, not in ./mlruns
        db = Path(uri[len("sqlite:///"):]).resolve()
        artifact_location = (db.parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def init_store(out: str | Path, uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
               run_name: str = "workflow", tags: Mapping[str, str] | None = None,
               required: bool = False) -> dict:
    """Create the store and experiment if needed, start the workflow's parent run, and write
    ``{"uri", "experiment", "parent_run_id"}`` to ``out`` for the child runs to read.

    If the store is unreachable (and not ``required``), ``parent_run_id`` is None and children
    skip tracking.
    """
    uri = tracking_uri(uri)
    record = {"uri": uri, "experiment": experiment, "parent_run_id": None}
    try:
        client = _client(uri)
        experiment_id = _experiment_id(client, experiment, uri)
        run = client.create_run(experiment_id, run_name=run_name,
                                tags={"stage": "workflow", "git_commit": git_commit(), **(tags or {})})
        record["parent_run_id"] = run.info.run_id
        record["experiment_id"] = experiment_id
    except Exception as exc:  # any store failure: unreachable server, locked or corrupt db
        if required:
            raise BbmnError(f"MLflow tracking store {uri} cannot be used: {exc}") from None
        log.warning("tracking skipped: MLflow store %s cannot be used (%s)", uri, exc)
        record["error"] = str(exc)
    write_json(out, record)
    return record


def finish_parent(record_path: str | Path, status: str = "FINISHED") -> None:
    """Mark the workflow's parent run finished (best effort)."""
    record = read_json(record_path)
    if not record.get("parent_run_id"):
        return
    try:
        _client(record["uri"]).set_terminated(record["parent_run_id"], status=status)
    except Exception as exc:
        log.warning("could not close the parent MLflow run: %s", exc)


class Tracker:
    """One MLflow run (a child of the workflow's parent run when there is one).

    Every call is best effort unless ``required``: the first failure logs ``tracking skipped``
    and turns the tracker off; training goes on and its results still land in ``results/``.

    Args:
        run_name: the run's name in the MLflow UI.
        tags: tags such as ``stage``, ``dataset``, ``seed``.
        params: parameters, logged once; their hash becomes the ``config_hash`` tag.
        parent: path of :func:`init_store`'s record, to nest the run under the workflow's run.
        uri: tracking URI (default: :func:`tracking_uri`).
        experiment: experiment name.
        required: raise :class:`BbmnError` instead of skipping when the store fails.
        enabled: False turns tracking off entirely (e.g. on non-zero distributed ranks).
    """

    def __init__(self, run_name: str, tags: Mapping[str, Any] | None = None,
                 params: Mapping[str, Any] | None = None, parent: str | Path | None = None,
                 uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT,
                 required: bool = False, enabled: bool = True):
        self.required = required
        self.enabled = enabled
        self.run_id: str | None = None
        self._client = None
        self._params = dict(params or {})
        self._tags = {k: str(v) for k, v in (tags or {}).items()}
        self._run_name = run_name
        self._parent_run_id = None
        self._uri = tracking_uri(uri)
        self._experiment = experiment
        if parent is not None and enabled:
            try:
                record = read_json(parent)
            except (OSError, ValueError) as exc:
                self._fail(f"cannot read the parent run record {parent}: {exc}")
                return
            self._uri = record.get("uri", self._uri)
            self._experiment = record.get("experiment", experiment)
            self._parent_run_id = record.get("parent_run_id")
            if self._parent_run_id is None:
                self._fail(f"the workflow's tracking store was unusable ({record.get('error')})")

    @property
    def uri(self) -> str:
        """The tracking store this run writes to (the parent record's, when nested)."""
        return self._uri

    def _fail(self, why: str) -> None:
        if self.required:
            raise BbmnError(f"MLflow tracking failed: {why}")
        if self.enabled:
            log.warning("tracking skipped: %s; results are still written to their files", why)
        self.enabled = False

    def _call(self, what: str, method: str, *args, **kwargs) -> Any:
        """``self._client.<method>(run_id, ...)``, or nothing once tracking is off."""
        if not self.enabled or self._client is None:
            return None
        try:
            return getattr(self._client, method)(self.run_id, *args, **kwargs)
        except Exception as exc:
            self._fail(f"{what} failed ({exc})")
            return None

    def __enter__(self) -> Tracker:
        if not self.enabled:
            return self
        try:
            self._client = _client(self._uri)
            experiment_id = _experiment_id(self._client, self._experiment, self._uri)
            tags = {"git_commit": git_commit(), "config_hash": config_hash(self._params), **self._tags}
            if self._parent_run_id:
                tags["mlflow.parentRunId"] = self._parent_run_id
            run = self._client.create_run(experiment_id, run_name=self._run_name, tags=tags)
            self.run_id = run.info.run_id
            self._experiment_id = experiment_id
        except Exception as exc:
            self._client = None
            self._fail(f"cannot start a run in {self._uri} ({exc})")
            return self
        self.log_params(self._params)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "FINISHED" if exc_type is None else ("KILLED" if exc_type is KeyboardInterrupt else "FAILED")
        self._call("closing the run", "set_terminated", status=status)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self._call("logging params", "log_batch", params=items[start:start + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None]
        self._call("logging metrics", "log_batch", metrics=items)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self._call("setting a tag", "set_tag", key, str(value))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("logging an artifact", "log_artifact", str(path), artifact_path)

    def log_model(self, model_dir: str | Path, name: str = "model") -> str | None:
        """Log a saved MLflow model directory (e.g. ``mlflow.pyfunc.save_model``'s), or a single
        model file, as a logged model of this run (MLflow 3); its model id, or None when tracking
        is off or fails."""
        if not self.enabled or self._client is None:
            return None
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        try:
            model = self._client.create_logged_model(self._experiment_id, name=name,
                                                     source_run_id=self.run_id)
            upload = (self._client.log_model_artifacts if Path(model_dir).is_dir()
                      else self._client.log_model_artifact)
            upload(model.model_id, str(model_dir))
            self._client.log_outputs(self.run_id, [LoggedModelOutput(model.model_id, step=0)])
            self._client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        except Exception as exc:
            self._fail(f"logging the model failed ({exc})")
            return None
        return model.model_id

    def register_model(self, name: str, model_id: str | None,
                       tags: Mapping[str, Any] | None = None) -> int | None:
        """Register the logged model ``model_id`` (:meth:`log_model`) as a new version of ``name``
        in the MLflow Model Registry, with ``tags`` (nested keys joined by dots, values as strings,
        e.g. a model card) on the version; the version number, or None when tracking is off or
        fails (logged: the model files in ``results/`` are the record, the registry an index)."""
        if not self.enabled or self._client is None or model_id is None:
            log.warning("model not registered as %r: MLflow tracking is off", name)
            return None
        from mlflow.exceptions import MlflowException

        try:
            try:
                self._client.get_registered_model(name)
            except MlflowException:
                self._client.create_registered_model(name)
            source = self._client.get_logged_model(model_id).artifact_location
            version = self._client.create_model_version(
                name, source=source, run_id=self.run_id, model_id=model_id,
                tags={k: str(v)[:MAX_TAG_CHARS] for k, v in flatten(tags or {}).items()})
        except Exception as exc:
            self._fail(f"registering the model as {name!r} failed ({exc})")
            return None
        log.info("registered the model as version %s of %r in %s", version.version, name, self._uri)
        return int(version.version)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level, keys joined by dots (``{"a": {"b": 1}}`` -> ``{"a.b": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def flat_metrics(prefix: str, nested: Mapping | Sequence) -> dict[str, float]:
    """``{"atom": {"spread": 0.1}, "stage_cosine": {"atom": [.9, .8]}}`` -> ``{"<prefix>.atom.spread":
    0.1, "<prefix>.stage_cosine.atom.0": 0.9, ...}``: nested finite numbers as MLflow metric names."""
    flat: dict[str, float] = {}
    items = nested.items() if isinstance(nested, Mapping) else enumerate(nested)
    for key, value in items:
        name = f"{prefix}.{key}"
        if isinstance(value, (Mapping, list, tuple)):
            flat.update(flat_metrics(name, value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            flat[name] = float(value)
    return flat
