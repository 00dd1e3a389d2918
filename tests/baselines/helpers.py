"""Cleaned fixtures and their splits, as the workflow makes them (bbmn clean as_given + bbmn split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bbmn.chem.standardize import profile
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.splits import split_table
from bbmn.io import read_json

TEST_DATA = Path(__file__).resolve().parents[1] / "data"
#: fixture -> (label columns, task type, metric)
FIXTURES = {"bbbp_150": (["p_np"], "classification", "roc_auc"),
            "esol_100": (["logSolubility"], "regression", "rmse"),
            "tox21_65": (["*"], "classification", "roc_auc")}


def prepare(tmp_path: Path, name: str, seed: int = 0, csv: Path | None = None) -> tuple[Path, Path]:
    """Clean a fixture (or ``csv``, a variant of it) and split it; return (Parquet, split file)."""
    labels, task, _ = FIXTURES[name]
    out = tmp_path / f"{name}.parquet"
    clean(csv or TEST_DATA / f"{name}.csv", out, tmp_path / f"{name}.rejects.csv",
          cfg=CleanConfig(label_cols=labels, task=task, standardize=profile("as_given")))
    split = tmp_path / f"{name}.seed{seed}.json"
    split_table(out, split, "balanced_scaffold", seed)
    return out, split


def part_frame(clean_path: Path, split_path: Path, part: str) -> pd.DataFrame:
    """The cleaned table's lines of one split part, in the split file's order."""
    table = pd.read_parquet(clean_path).set_index("row", drop=False)
    return table.loc[np.asarray(read_json(split_path)[part], dtype=np.int64)].reset_index(drop=True)
