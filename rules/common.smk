# Helpers shared by the rules: the validated config, registry lookups, target lists.
import shlex
from pathlib import Path

from bbmn.config import prepare_config
from bbmn.errors import BbmnError

try:
    _prepared = prepare_config(
        config,
        Path(workflow.basedir) / "schemas" / "config.schema.yaml",
        overrides=workflow.config_settings.overwrite_config,
    )
except BbmnError as _error:
    raise WorkflowError(f"bbmn: {_error}") from None
config.clear()
config.update(_prepared)

RESULTS = config["results"]
DATA = f"{RESULTS}/data"
LOGS = f"{RESULTS}/logs"
SPLIT = config["split"]
SEEDS = SPLIT["seeds"]


wildcard_constraints:
    name="[A-Za-z0-9][A-Za-z0-9_-]*",
    seed=r"\d+",
    method="balanced_scaffold|scaffold|random",


def registry_entry(name):
    """The registry entry of a labelled dataset or a corpus."""
    if name in config["datasets"]:
        return config["datasets"][name]
    if name in config["corpora"]:
        return config["corpora"][name]
    raise WorkflowError(
        f"bbmn: {name!r} is in neither the datasets nor the corpora registry"
    )


def raw_path(name):
    """Where the fetch rule puts a registered file (its file name is kept)."""
    return f"{DATA}/raw/{name}/{Path(registry_entry(name)['file']).name}"


def fetch_args(name):
    entry = registry_entry(name)
    args = ["--sha256", entry["sha256"], "--path", entry["file"]]
    for mirror in config["data"]["mirrors"]:
        args += ["--mirror", mirror]
    if entry.get("url"):
        args += ["--url", entry["url"]]
    if entry.get("member"):
        args += ["--member", entry["member"]]
    if not config["data"]["download"]:
        args.append("--no-download")
    return shlex.join(args)


def clean_args(name):
    """bbmn clean options from the registry: labelled sets keep duplicates, corpora drop them."""
    entry = registry_entry(name)
    args = [
        "--smiles-col",
        entry["smiles_column"],
        "--standardize",
        entry["standardize"],
        "--encoding",
        entry["encoding"],
    ]
    if entry.get("format"):
        args += ["--format", entry["format"]]
    if name in config["datasets"]:
        labels = entry["labels"]
        args += [
            "--labels",
            *(["*"] if labels == "*" else labels),
            "--task",
            entry["task"],
        ]
    else:
        args.append("--dedupe")
    return shlex.join(args)


def split_path(name, seed, method=None):
    return f"{DATA}/splits/{name}/{method or SPLIT['method']}/seed{seed}.json"


def all_targets():
    """Caches and splits of the datasets to prepare, descriptors of the ones this run trains
    on, and the cache of the pre-training corpus."""
    run = config["run"]
    prepare = config["datasets"] if run["prepare"] == "all" else run["datasets"]
    targets = []
    for name in prepare:
        targets.append(f"{DATA}/cache/{name}.parquet")
        targets += [split_path(name, seed) for seed in SEEDS]
    targets += [f"{DATA}/descriptors/{name}.parquet" for name in run["datasets"]]
    targets.append(f"{DATA}/cache/{run['corpus']}.parquet")
    return targets
