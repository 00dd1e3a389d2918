"""The descriptors step: one row per cleaned molecule, readable back by source row."""

import numpy as np
import pytest

from bbmn.chem.standardize import profile
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.descriptors import read_descriptors, write_descriptors
from bbmn.errors import BbmnError


def test_write_and_read_back_by_row(tmp_path, test_data):
    clean(test_data / "esol_100.csv", tmp_path / "c.parquet", tmp_path / "r.csv", None,
          CleanConfig(label_cols=["logSolubility"], task="regression", standardize=profile("as_given")))
    summary = write_descriptors(tmp_path / "c.parquet", tmp_path / "d.parquet", workers=2, chunk_rows=16)
    assert summary == {**summary, "molecules": 100, "failed": 0, "descriptors": 200}
    everything = read_descriptors(tmp_path / "d.parquet")
    assert everything.shape == (100, 200) and everything.dtype == np.float32
    picked = read_descriptors(tmp_path / "d.parquet", np.array([7, 3, 99]))
    np.testing.assert_array_equal(picked, everything[[7, 3, 99]])
    with pytest.raises(BbmnError, match="no descriptors for source rows"):
        read_descriptors(tmp_path / "d.parquet", np.array([100]))
