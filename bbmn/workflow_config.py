"""A workflow config for one CSV: what ``bbmn train`` runs, written out instead of re-implemented.

``bbmn train`` drives the workflow itself (clean, featurize, descriptors, split, fine-tune per
seed), so a model trained by one command is made by exactly the code and settings of a workflow
run. This module builds that run's config: the checkout's ``config.yaml`` (the workflow's values),
with the CSV registered by its local ``path`` as the only dataset, the seeds and epochs asked for,
and nothing the user did not ask for (no pre-training, baselines, probes or leakage check).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bbmn.errors import BbmnError
from bbmn.kinds import FINETUNE_KINDS

#: the metric a task type is scored with unless asked otherwise (the paper's)
DEFAULT_METRIC = {"classification": "roc_auc", "regression": "rmse"}


def checkout() -> Path:
    """The bbmn checkout whose workflow the package belongs to (``pip install -e`` keeps it)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "workflow" / "Snakefile").is_file() or not (root / "config.yaml").is_file():
        raise BbmnError(f"the workflow is not beside the bbmn package ({root}/workflow/Snakefile); "
                        "install bbmn from its checkout with `pip install -e .`")
    return root


def snakefile() -> Path:
    return checkout() / "workflow" / "Snakefile"


def schema() -> Path:
    return checkout() / "workflow" / "schemas" / "config.schema.yaml"


def base_config() -> dict:
    """The checkout's ``config.yaml``: the workflow's values for every step."""
    return yaml.safe_load((checkout() / "config.yaml").read_text())


def dataset_name(csv: str | Path) -> str:
    """A registry name from a file name: ``my assay.csv.gz`` -> ``my_assay``."""
    name = Path(csv).name
    for suffix in (".gz", ".csv", ".smi"):
        name = name.removesuffix(suffix)
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")
    return name or "dataset"


@dataclass(frozen=True)
class OneDataset:
    """A user's labelled file and how to read it (a ``datasets:`` registry entry).

    Attributes:
        csv: the file (CSV or SMI, gzipped or not).
        labels: label columns, or ``["*"]`` for every column but the SMILES one.
        task: ``classification`` (0/1 labels) or ``regression``.
        smiles_column: the SMILES column.
        metric: test metric; None = the task's default (:data:`DEFAULT_METRIC`).
        name: registry name; None = from the file name.
        standardize: ``standard`` (users' data) or ``as_given``.
    """

    csv: Path
    labels: tuple[str, ...]
    task: str
    smiles_column: str = "smiles"
    metric: str | None = None
    name: str | None = None
    standardize: str = "standard"

    @property
    def key(self) -> str:
        return self.name or dataset_name(self.csv)

    def entry(self) -> dict:
        labels = "*" if list(self.labels) == ["*"] else list(self.labels)
        return {"path": str(Path(self.csv).resolve()), "smiles_column": self.smiles_column,
                "labels": labels, "task": self.task,
                "metric": self.metric or DEFAULT_METRIC[self.task], "standardize": self.standardize}


@dataclass(frozen=True)
class TrainChoices:
    """What to train on the dataset.

    Attributes:
        checkpoint: a pre-trained ``model.pt`` to fine-tune (``pretrain.use_model.path``); None =
            no pre-trained model, so scratch kinds only.
        model_sizes: the checkpoint's encoder sizes (``pretrain.model``), so that scratch rows
            and the random probe encoder match it.
        seeds: split and training seeds (one fine-tuned model each); empty = the workflow's.
        epochs: fine-tuning epochs; None = the workflow's.
        kinds: fine-tuning kinds; empty = ``pretrained`` with a checkpoint, else ``scratch``.
        baselines: also train ECFP + RF on the same splits.
        probes: also run the linear probes (pre-trained encoder with a checkpoint, random encoder).
        register: a Model Registry name for the ensemble of the first kind's seed runs (the models
            ``bbmn predict`` is pointed at); None = no registration.
    """

    checkpoint: Path | None = None
    model_sizes: dict = field(default_factory=dict)
    seeds: tuple[int, ...] = ()
    epochs: int | None = None
    kinds: tuple[str, ...] = ()
    baselines: bool = False
    probes: bool = False
    register: str | None = None

    def finetune_kinds(self) -> list[str]:
        default = ("pretrained",) if self.checkpoint is not None else ("scratch",)
        kinds = list(self.kinds or default)
        needs_model = [k for k in kinds if FINETUNE_KINDS[k].init == "pretrained"]
        if needs_model and self.checkpoint is None:
            raise BbmnError(f"kind {needs_model[0]} fine-tunes a pre-trained model: give --checkpoint "
                            "MODEL.pt, or choose scratch kinds")
        return kinds


def one_dataset_config(data: OneDataset, choices: TrainChoices, base: dict | None = None) -> dict:
    """The workflow config that trains ``choices`` on ``data`` alone (results under ``results/``
    of the working directory).

    Args:
        data: the file and how to read it.
        choices: checkpoint, seeds, epochs, kinds, extras.
        base: the config to start from; None = the checkout's ``config.yaml``.
    """
    config = copy.deepcopy(base if base is not None else base_config())
    config.pop("presets", None)
    config["preset"] = "default"
    config["results"] = "results"
    config["data"] = {"mirrors": [], "download": False}  # nothing is read but the user's file
    config["datasets"] = {data.key: data.entry()}
    config["run"] = {**config.get("run", {}), "datasets": [data.key], "prepare": "run"}
    if choices.seeds:
        config["split"] = {**config.get("split", {}), "seeds": list(choices.seeds)}
    finetune = config.setdefault("finetune", {})
    finetune["kinds"] = choices.finetune_kinds()
    if choices.epochs is not None:
        finetune["epochs"] = choices.epochs
    pretrain = config.setdefault("pretrain", {})
    pretrain["variants"] = []
    pretrain["snapshot_steps"] = []
    pretrain["use_model"] = {"path": str(Path(choices.checkpoint).resolve()) if choices.checkpoint else None,
                             "url": None, "sha256": None}
    pretrain["model"] = {**pretrain.get("model", {}), **choices.model_sizes}
    encoders = ["pretrained", "random"] if choices.checkpoint else ["random"]
    config["probe"] = {**config.get("probe", {}), "encoders": encoders if choices.probes else [],
                       "datasets": "all", "snapshots": False}
    config["baselines"] = {**config.get("baselines", {}),
                           "models": ["ecfp_rf"] if choices.baselines else []}
    config["leakage"] = {**config.get("leakage", {}), "check": False}
    config["predict"], config["embed"] = [], []
    config["register"] = ([{"name": choices.register, "dataset": data.key, "init": finetune["kinds"][0]}]
                          if choices.register else [])
    return config
