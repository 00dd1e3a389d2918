"""Config mistakes stop `snakemake` while it parses, with one line naming the key or the file,
before any job starts (nothing is written under results/)."""

import shutil

import pytest

from tests.conftest import REPO
from tests.workflow.test_workflow import snakemake

BAD = "b" * 64


@pytest.mark.parametrize("overrides,message", [
    (["splt={method: random}"], "config key (top level): 'splt' was unexpected"),
    (["finetune={epochs: many}"], "config key finetune.epochs: 'many' is not of type 'integer'"),
    (["datasets={bbbp: {file: no_such_file.csv}}"],
     "config key datasets.bbbp.file: 'no_such_file.csv' is in none of the mirrors"),
    ([f"datasets={{esol: {{sha256: {BAD}}}}}"], "config key datasets.esol.sha256: the mirror copy "),
    (["datasets={mine: {path: nope.csv, labels: [y], task: regression, metric: rmse}}", "run={datasets: [mine]}"],
     "config key datasets.mine.path: nope.csv not found (relative to the working directory "),
], ids=["unknown-key", "wrong-type", "missing-file", "checksum", "missing-local-path"])
def test_config_errors_are_one_line_before_any_job(tmp_path, overrides, message):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    done = snakemake(tmp_path, "-n", "--config", "preset=tiny", *overrides, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    lines = [line for line in output.splitlines() if "config key" in line]
    assert len(lines) == 1 and message in lines[0], output[-2000:]
    assert "Traceback" not in output
    assert not (tmp_path / "results").exists()
