"""A local file is a dataset: the README's own example dry-runs clean, and an edited file reruns
what depends on it."""

import re

import pytest
import yaml

from bbmn.config import deep_merge
from tests.conftest import REPO, TEST_DATA
from tests.workflow.test_workflow import snakemake


def readme_dataset_example() -> dict:
    """The README's fenced YAML block: how it tells a user to add a dataset."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "the README should hold one YAML example, the dataset one"
    return yaml.safe_load(blocks[0])


def job_stats(output: str) -> dict[str, int]:
    """``{rule: jobs}`` from the first 'Job stats' table of a dry run."""
    table = output.split("Job stats:")[1].split("total")[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


def write_config(workdir, example: dict) -> None:
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    (workdir / "config.yaml").write_text(yaml.safe_dump(deep_merge(base, example)))


def write_assay(path, smiles_column: str, label: str) -> None:
    """ESOL's 100-molecule slice under the column names a user's file has."""
    lines = (TEST_DATA / "esol_100.csv").read_text().splitlines()
    path.write_text("\n".join([f"{smiles_column},{label}", *lines[1:]]) + "\n")


@pytest.mark.slow
def test_the_readme_example_of_adding_a_dataset_dry_runs(tmp_path):
    example = readme_dataset_example()
    (name, entry), = example["datasets"].items()
    write_config(tmp_path, example)
    write_assay(tmp_path / entry["path"], entry["smiles_column"], entry["labels"][0])
    plan = snakemake(tmp_path, "-n", "--config", "preset=default", check=False)
    assert plan.returncode == 0, plan.stderr[-3000:]
    stats = job_stats(plan.stdout)
    # only the run's dataset and the corpus are fetched and cleaned; every kind x seed fine-tunes
    assert stats["fetch"] == stats["clean"] == 2 and stats["finetune"] == 5 * 3
    assert "bbbp" not in plan.stdout and f"finetune/{name}/pretrained/seed2" in plan.stdout


@pytest.mark.slow
def test_an_edited_local_file_reruns_fetch_clean_and_what_follows(tmp_path):
    assay = tmp_path / "assay.csv"
    write_assay(assay, "smiles", "y")
    entry = {"path": "assay.csv", "labels": ["y"], "task": "regression", "metric": "rmse"}
    write_config(tmp_path, {"datasets": {"assay": entry}})
    target = "results/data/cache/assay.parquet"
    args = (target, "--config", "preset=tiny", "run={datasets: [assay]}")
    done = snakemake(tmp_path, *args, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "results" / "data" / "raw" / "assay" / "assay.csv").read_bytes() == assay.read_bytes()
    assert "Nothing to be done" in snakemake(tmp_path, "-n", *args).stdout

    # fetch has no input files: the new sha256 in its params is what reruns it
    assay.write_text(assay.read_text().replace("-0.77", "-0.78"))
    plan = snakemake(tmp_path, "-n", *args)
    assert job_stats(plan.stdout) == {"fetch": 1, "clean": 1, "featurize": 1}
    assert "Params have changed" in plan.stdout
