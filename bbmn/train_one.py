"""``bbmn train``: fine-tuned models from one labelled file, by the workflow and nothing else.

The workflow is the one source of truth for how a dataset is cleaned, featurized, split and
fine-tuned; a second code path for "just my CSV" would drift from it. :func:`train_one` therefore
writes a workflow config for the file (:mod:`bbmn.workflow_config`) into the output directory,
checks it as the workflow will, and runs the workflow there (:mod:`bbmn.workflow_run`). Running
it again redoes only what changed, as any workflow run does (an edited CSV: everything).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from bbmn import layout
from bbmn.config import prepare_config
from bbmn.errors import BbmnError
from bbmn.io import read_json
from bbmn.workflow_config import OneDataset, TrainChoices, one_dataset_config, schema, snakefile
from bbmn.workflow_run import run_workflow


@dataclass(frozen=True)
class Trained:
    """What a :func:`train_one` run made.

    Attributes:
        out: the run's directory (its ``config.yaml``, ``results/``, ``mlflow.db``).
        results: its results directory (``out/results``).
        name: the dataset's registry name.
        kinds: fine-tuning kinds trained; ``results/finetune/<name>/<kind>/seed<N>/`` each.
        seconds: wall time.
        registration: the Model Registry entry of the first kind's ensemble (``bbmn register``'s
            record: name, version, model id...), or None when not asked for.
    """

    out: Path
    results: Path
    name: str
    kinds: tuple[str, ...]
    seconds: float
    registration: dict | None = None

    def model_dir(self, kind: str) -> Path:
        """The seed runs of one kind: ``bbmn predict --model`` takes it as an ensemble."""
        return Path(layout.kind_dir(str(self.results), self.name, kind))

    def predict_command(self, smiles_column: str) -> str:
        return shlex.join(["bbmn", "predict", "NEW_MOLECULES.csv", "--smiles-col", smiles_column,
                           "--model", str(self.model_dir(self.kinds[0])),
                           "--out", "predictions.csv"])


def write_config(data: OneDataset, choices: TrainChoices, out: Path) -> dict:
    """Check the run's config as the workflow will, write it to ``out/config.yaml``; return it
    as the workflow will see it."""
    config = one_dataset_config(data, choices)
    prepared = prepare_config(config, schema())
    out.mkdir(parents=True, exist_ok=True)
    header = (f"# Written by bbmn train; to rerun or change a setting, edit this file and run\n"
              f"#   snakemake --snakefile {snakefile()} --directory {out} --cores 2\n")
    (out / "config.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    return prepared


def train_one(data: OneDataset, choices: TrainChoices, out: str | Path, cores: int = 2,
              show: Callable[[str], None] = print) -> Trained:
    """Clean, featurize, compute descriptors, split and fine-tune ``data`` into ``out`` by
    running the workflow on a generated config.

    Raises:
        BbmnError: one line: a missing file, a config the workflow refuses, or the failed step.
    """
    from bbmn.train.checkpoint import encoder_sizes

    start = time.monotonic()
    out = Path(out).resolve()
    if not Path(data.csv).is_file():
        raise BbmnError(f"{data.csv}: not found")
    if choices.checkpoint is not None and not choices.model_sizes:
        choices = replace(choices, model_sizes=encoder_sizes(choices.checkpoint))
    config = write_config(data, choices, out)
    kinds = tuple(config["finetune"]["kinds"])
    show(f"bbmn train: {data.key} -> {out} (kinds {', '.join(kinds)}; seeds "
         f"{', '.join(map(str, config['split']['seeds']))}; {config['finetune']['epochs']} epochs)")
    report = run_workflow(out, snakefile(), cores, show=show)
    if report.nothing_to_do:
        show("nothing to do: every step is up to date")
    results = out / config["results"]
    registration = None
    if config["register"]:
        name = config["register"][0]["name"]
        registration = read_json(layout.registration_record(str(results), name))
    return Trained(out, results, data.key, kinds, time.monotonic() - start, registration)
