"""A `bbmn featurize` process killed mid-write leaves nothing under the output's name; the rerun
(what snakemake does for a missing output) rebuilds it whole and clears the killed temporary."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bbmn.chem.standardize import profile
from bbmn.data.clean import CleanConfig, clean
from tests.conftest import TEST_DATA

BBMN = str(Path(sys.executable).with_name("bbmn"))
ROWS = 10_000


@pytest.fixture(scope="module")
def big_clean(tmp_path_factory):
    """10,000 molecules (ZINC slice x 50): featurizing them takes seconds, in 40 row groups."""
    d = tmp_path_factory.mktemp("big")
    smiles = (TEST_DATA / "zinc_200.smi").read_text().split()
    (d / "big.smi").write_text("\n".join(smiles * (ROWS // len(smiles))) + "\n")
    clean(d / "big.smi", d / "clean.parquet", d / "rejects.csv", None, CleanConfig(standardize=profile("as_given")))
    return d / "clean.parquet"


def featurize_cmd(src, out):
    return [BBMN, "featurize", str(src), "--out", str(out), "--chunk-rows", "256", "--workers", "1"]


@pytest.mark.slow
def test_featurize_killed_mid_write_leaves_no_output_and_the_rerun_rebuilds_it(tmp_path, big_clean):
    out = tmp_path / "cache" / "big.parquet"
    job = subprocess.Popen(featurize_cmd(big_clean, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    temporaries: list[Path] = []
    while time.time() < deadline and job.poll() is None:  # kill once a few row groups are on disk
        temporaries = list(out.parent.glob(".big.parquet.*.tmp")) if out.parent.is_dir() else []
        if temporaries and temporaries[0].stat().st_size > 50_000:
            break
        time.sleep(0.02)
    assert job.poll() is None, "featurize finished before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert not out.exists()  # nothing that looks complete
    assert [p.name for p in out.parent.iterdir()] == [temporaries[0].name]  # only the hidden partial file
    done = subprocess.run(featurize_cmd(big_clean, out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert pq.read_metadata(out).num_rows == ROWS and pq.ParquetFile(out).num_row_groups == ROWS // 256 + 1
    assert [p.name for p in out.parent.iterdir()] == ["big.parquet"]  # the killed temporary is gone
