"""Registering an ensemble of seed runs as one version in the MLflow Model Registry.

A dataset's fine-tuning runs over seeds (``results/finetune/<dataset>/<kind>/seed*/``) are what
``bbmn predict`` scores with; :func:`register_ensemble` packages the same ensemble as one MLflow
pyfunc model (:func:`bbmn.inference.pyfunc.save_ensemble_pyfunc`: mean and std over the members),
logs it in a tracking run of its own (stage ``register``) and registers it as a new version of a
registered model, so that ``mlflow.pyfunc.load_model("models:/<name>/<version>")`` and ``mlflow
models serve -m models:/<name>/<version>`` give ``bbmn predict``'s output for those runs.

The version's tags say what the ensemble is: its members (paths, seeds), the dataset, kind, tasks
and metric, each member's validation and test score with their mean and spread, and every card
entry the members share (software, featurizer, model and training settings but the seed).
Registering is the point of this step, so a store that cannot be used is an error, not a warning.
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bbmn.errors import BbmnError
from bbmn.inference.predict import Member, load_member, model_files
from bbmn.inference.pyfunc import PYFUNC_DIR, SMILES, save_ensemble_pyfunc
from bbmn.io import read_json, write_json

log = logging.getLogger(__name__)

#: SMILES of the input example when no member has a predictions.csv
FALLBACK_EXAMPLES = ("CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O")


@dataclass
class Registration:
    """What :func:`register_ensemble` did (written as JSON by ``bbmn register --record``)."""

    name: str
    version: int
    model_id: str
    run_id: str
    uri: str
    model_dir: str
    members: list[str]
    tags: dict[str, str]

    def as_dict(self) -> dict:
        return asdict(self)


def default_model_dir(files: Sequence[Path]) -> Path:
    """``<parent>/mlflow_model`` for members that are runs of one parent directory (a dataset's
    kind: ``.../<kind>/seed*/model.pt``).

    Raises:
        BbmnError: if the members' run directories have no common parent.
    """
    parents = {f.resolve().parent.parent for f in files}
    if len(parents) != 1:
        raise BbmnError("the models are runs of different directories: pass --out for the "
                        "packaged ensemble")
    return parents.pop() / PYFUNC_DIR


def ensemble_tags(members: Sequence[Member]) -> dict[str, str]:
    """The version's tags: the ensemble (members, seeds, dataset, kind, tasks), each member's
    validation and test score with mean and population std, and the card entries all members
    share (their differing ones, like the seed and the metrics, are left out)."""
    first = members[0]
    tags: dict[str, object] = {
        "ensemble.members": len(members),
        "ensemble.models": ",".join(str(m.path) for m in members),
        "ensemble.seeds": ",".join(str(m.info.get("seed")) for m in members),
        "ensemble.dataset": first.info.get("dataset"), "ensemble.kind": first.info.get("init"),
        "ensemble.task_type": first.task_type, "ensemble.tasks": ",".join(first.tasks),
        "ensemble.metric": first.info.get("metric"),
    }
    for part in ("val", "test"):
        values = [_member_score(m, part) for m in members]
        for m, value in zip(members, values):
            tags[f"metrics.{part}.seed{m.info.get('seed')}"] = value
        known = [v for v in values if v is not None]
        if known:
            tags[f"metrics.{part}.mean"] = statistics.fmean(known)
            tags[f"metrics.{part}.std"] = statistics.pstdev(known)
        tags[f"metrics.{part}.n"] = len(known)  # members with a finite score
    from bbmn.train.tracking import flatten

    shared = _shared_entries([flatten(m.card or {}) for m in members])
    tags.update({f"card.{k}": v for k, v in shared.items() if not k.startswith("metrics.")})
    return {k: str(v) for k, v in tags.items() if v is not None}


def _member_score(member: Member, part: str) -> float | None:
    """A member's ``val`` or ``test`` score: its run's metrics.json, else its card's metrics."""
    metrics_file = member.path.parent / "metrics.json"
    metrics = read_json(metrics_file) if metrics_file.is_file() else (member.card or {}).get("metrics", {})
    value = (metrics.get(part) or {}).get("value")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _shared_entries(cards: Sequence[dict[str, object]]) -> dict[str, object]:
    first, rest = cards[0], cards[1:]
    return {k: v for k, v in first.items() if all(k in c and c[k] == v for c in rest)}


def input_examples(members: Sequence[Member], n: int = 3) -> list[str]:
    """A few SMILES for the model's input example: the first member's test molecules."""
    predictions = members[0].path.parent / "predictions.csv"
    if predictions.is_file():
        with open(predictions, newline="") as fh:
            smiles = [row[SMILES] for _, row in zip(range(n), csv.DictReader(fh)) if row.get(SMILES)]
        if smiles:
            return smiles
    return list(FALLBACK_EXAMPLES[:n])


def register_ensemble(models: Sequence[str | Path], name: str, out: str | Path | None = None,
                      uri: str | None = None, experiment: str | None = None,
                      parent: str | Path | None = None, record: str | Path | None = None) -> Registration:
    """Package ``models`` (``model.pt`` files, run directories, or a directory of seed runs, as
    ``bbmn predict --model`` takes them) as one pyfunc model in ``out`` (default:
    :func:`default_model_dir`), log it and register it as a new version of ``name``.

    Args:
        uri, experiment: the tracking store and experiment (defaults: :mod:`bbmn.train.tracking`'s).
        parent: the workflow's parent-run record, to nest the registering run under it.
        record: where to write the :class:`Registration` as JSON.

    Raises:
        BbmnError: if the models do not make an ensemble (other tasks, other standardization), or
            the store cannot be used.
    """
    from bbmn.train.tracking import DEFAULT_EXPERIMENT, Tracker

    files = model_files(models)
    members = [load_member(f) for f in files]
    model_dir = Path(out) if out is not None else default_model_dir(files)
    save_ensemble_pyfunc(members, model_dir, input_examples(members))
    tags = ensemble_tags(members)
    run_tags = {"stage": "register", "registered_model": name,
                "dataset": tags.get("ensemble.dataset", ""), "kind": tags.get("ensemble.kind", "")}
    params = {"name": name, "model_dir": str(model_dir), "members": tags["ensemble.models"]}
    with Tracker(f"register {name}", tags=run_tags, params=params, parent=parent, uri=uri,
                 experiment=experiment or DEFAULT_EXPERIMENT, required=True) as tracker:
        model_id = tracker.log_model(model_dir)
        version = tracker.register_model(name, model_id, tags=tags)
        tracker.log_metrics({k: float(v) for k, v in tags.items() if k.startswith("metrics.")})
    if version is None or model_id is None or tracker.run_id is None:  # required=True raised before
        raise BbmnError(f"the ensemble was not registered as {name!r}")
    registration = Registration(name=name, version=version, model_id=model_id, run_id=tracker.run_id,
                                uri=tracker.uri, model_dir=str(model_dir),
                                members=[str(f) for f in files], tags=tags)
    if record is not None:
        write_json(record, registration.as_dict())
    log.info("registered the ensemble of %d runs as version %d of %r (models:/%s/%d)", len(files),
             version, name, name, version)
    return registration
