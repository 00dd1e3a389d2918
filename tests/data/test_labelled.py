"""Labelled parts for fine-tuning: the join of cache, descriptors and split, scalers fitted on train."""

from pathlib import Path

import numpy as np
import pytest

from bbmn.chem.standardize import profile
from bbmn.data.cache import featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.descriptors import read_descriptors, write_descriptors
from bbmn.data.labelled import ColumnScaler, load_labelled
from bbmn.data.splits import load_split, split_table
from bbmn.errors import BbmnError
from bbmn.io import read_json, write_json
from tests.conftest import TEST_DATA

#: test slices of real MoleculeNet files: file, label columns, task type
DATASETS = {"bbbp": ("bbbp_150.csv", ["p_np"], "classification"),
            "esol": ("esol_100.csv", ["logSolubility"], "regression"),
            "tox21": ("tox21_65.csv", ["*"], "classification")}
_BUILT: dict = {}


def labelled_files(tmp_path_factory, name: str) -> dict[str, Path]:
    """Clean (as given) -> featurize -> descriptors -> balanced scaffold splits of seeds 0 and 1,
    built once per test session (other test modules use it too)."""
    key = (str(tmp_path_factory.getbasetemp()), name)
    if key not in _BUILT:
        d = tmp_path_factory.mktemp(name)
        file, labels, task = DATASETS[name]
        clean(TEST_DATA / file, d / "clean.parquet", d / "rejects.csv", None,
              CleanConfig(label_cols=labels, task=task, standardize=profile("as_given")))
        featurize(d / "clean.parquet", d / "cache.parquet")
        write_descriptors(d / "clean.parquet", d / "descriptors.parquet")
        files = {"dir": d, "clean": d / "clean.parquet", "cache": d / "cache.parquet",
                 "descriptors": d / "descriptors.parquet"}
        for seed in (0, 1):
            split_table(d / "clean.parquet", d / f"split{seed}.json", "balanced_scaffold", seed)
            files[f"split{seed}"] = d / f"split{seed}.json"
        _BUILT[key] = files
    return _BUILT[key]


@pytest.fixture(scope="module")
def bbbp(tmp_path_factory):
    return labelled_files(tmp_path_factory, "bbbp")


@pytest.fixture(scope="module")
def esol(tmp_path_factory):
    return labelled_files(tmp_path_factory, "esol")


def write_split(path, train, val, test, like=None):
    record = dict(read_json(like)) if like else {"method": "custom", "seed": 0}
    record.update(train=[int(r) for r in train], val=[int(r) for r in val], test=[int(r) for r in test])
    write_json(path, record)
    return path


def test_parts_follow_the_split_and_carry_their_own_rows(bbbp):
    data = load_labelled(bbbp["cache"], bbbp["descriptors"], bbbp["split1"])
    split = load_split(bbbp["split1"])
    assert data.tasks == ["p_np"] and data.task_type == "classification"
    assert data.split == {"path": str(bbbp["split1"]), "method": "balanced_scaffold", "seed": 1,
                          "train": 120, "val": 15, "test": 15}
    raw = read_descriptors(bbbp["descriptors"])
    import pyarrow.parquet as pq

    clean = pq.read_table(bbbp["clean"]).to_pandas().set_index("row")
    for name in ("train", "val", "test"):
        part = data.part(name)
        assert part.rows.tolist() == split[name].tolist()
        assert np.array_equal(part.labels[:, 0], clean.loc[split[name], "p_np"].to_numpy())
        assert part.smiles == clean.loc[split[name], "smiles"].tolist()
        assert np.array_equal(part.targets, part.labels)  # classification: targets are the labels
        # descriptors are those of the same rows, standardized with the training part's scaler
        expected = data.descriptor_scaler.transform(raw[split[name]])
        assert np.allclose(part.descriptors, expected)
        assert part.graphs.take([0]).to_batch().num_graphs == 1
    assert data.target_scaler is None


def test_descriptors_are_standardized_on_train_and_constant_columns_stay_finite(bbbp):
    data = load_labelled(bbbp["cache"], bbbp["descriptors"], bbbp["split1"])
    train = data.train.descriptors.astype(np.float64)
    raw_train = read_descriptors(bbbp["descriptors"], data.train.rows).astype(np.float64)
    constant = raw_train.std(0) < 1e-8
    assert constant.any()  # RDKit2D has counts that are 0 for every molecule of a small set
    assert np.allclose(train[:, ~constant].mean(0), 0, atol=1e-5)
    assert np.allclose(train[:, ~constant].std(0), 1, atol=1e-4)
    assert np.all(train[:, constant] == 0) and np.all(data.descriptor_scaler.std[constant] == 1)
    for part in (data.val, data.test):
        assert np.isfinite(part.descriptors).all()
    # the val and test parts use the training mean and scale, not their own
    assert not np.allclose(data.val.descriptors[:, ~constant].mean(0), 0, atol=1e-3)


def test_regression_targets_are_standardized_with_the_training_labels(esol):
    data = load_labelled(esol["cache"], esol["descriptors"], esol["split0"])
    assert data.task_type == "regression"
    train_labels = data.train.labels[:, 0].astype(np.float64)
    assert data.target_scaler.mean[0] == pytest.approx(train_labels.mean())
    assert data.target_scaler.std[0] == pytest.approx(train_labels.std())
    assert data.train.targets.mean() == pytest.approx(0, abs=1e-5)
    assert data.train.targets.std() == pytest.approx(1, abs=1e-4)
    expected = (data.test.labels - data.target_scaler.mean) / data.target_scaler.std
    assert np.allclose(data.test.targets, expected, atol=1e-5)
    assert np.allclose(data.to_label_units(data.test.targets), data.test.labels, atol=1e-4)


def test_scaler_ignores_missing_labels_and_round_trips():
    values = np.array([[1.0, np.nan, 5.0], [3.0, 2.0, 5.0], [np.nan, 4.0, 5.0]])
    scaler = ColumnScaler.fit(values, ignore_nan=True)
    assert scaler.mean.tolist() == [2.0, 3.0, 5.0] and scaler.std.tolist() == [1.0, 1.0, 1.0]
    standardized = scaler.transform(values)
    assert np.isnan(standardized[0, 1]) and standardized[1, 0] == 1.0 and standardized[2, 2] == 0.0
    again = ColumnScaler.from_dict(scaler.as_dict())
    assert np.allclose(again.inverse(standardized), values, equal_nan=True)


def test_split_rows_missing_from_the_cache(bbbp, tmp_path):
    split = load_split(bbbp["split1"])
    bad = write_split(tmp_path / "s.json", list(split["train"]) + [9999], split["val"], split["test"])
    with pytest.raises(BbmnError, match=r"1 source rows of the train part are not in the cache .*\[9999\]"):
        load_labelled(bbbp["cache"], bbbp["descriptors"], bad)


def test_empty_or_overlapping_parts(bbbp, tmp_path):
    split = load_split(bbbp["split1"])
    empty = write_split(tmp_path / "e.json", split["train"], [], split["test"])
    with pytest.raises(BbmnError, match="the val part of split .* is empty"):
        load_labelled(bbbp["cache"], bbbp["descriptors"], empty)
    overlap = write_split(tmp_path / "o.json", split["train"], split["val"],
                          list(split["test"]) + [int(split["val"][0])])
    with pytest.raises(BbmnError, match="overlap"):
        load_labelled(bbbp["cache"], bbbp["descriptors"], overlap)


def test_a_task_without_training_labels(tmp_path_factory, tmp_path):
    tox21 = labelled_files(tmp_path_factory, "tox21")
    import pyarrow.parquet as pq

    table = pq.read_table(tox21["clean"]).to_pandas()
    unlabelled = table.loc[table["NR-Aromatase"].isna(), "row"].to_numpy()
    labelled = table.loc[table["NR-Aromatase"].notna(), "row"].to_numpy()
    split = write_split(tmp_path / "s.json", unlabelled, labelled[:20], labelled[20:])
    with pytest.raises(BbmnError, match=r"tasks \['NR-Aromatase'\] have no label in the training part"):
        load_labelled(tox21["cache"], tox21["descriptors"], split)
    # with a few labelled molecules in train, multi-task data with gaps loads, NaN kept as NaN
    split = write_split(tmp_path / "t.json", list(unlabelled) + list(labelled[:5]), labelled[5:20],
                        labelled[20:])
    data = load_labelled(tox21["cache"], tox21["descriptors"], split)
    assert len(data.tasks) == 12 and np.isnan(data.train.targets).any()


def test_descriptor_rows_missing(bbbp, esol):
    """esol's descriptors cover source rows 0..99 only; bbbp's split reaches row 149."""
    with pytest.raises(BbmnError, match="no descriptors for source rows .*same cleaned table"):
        load_labelled(bbbp["cache"], esol["descriptors"], bbbp["split1"])


def test_an_unlabelled_cache_is_refused(tmp_path):
    clean(TEST_DATA / "zinc_200.smi", tmp_path / "c.parquet", tmp_path / "r.csv", None, CleanConfig())
    featurize(tmp_path / "c.parquet", tmp_path / "cache.parquet")
    with pytest.raises(BbmnError, match="has no labels"):
        load_labelled(tmp_path / "cache.parquet", tmp_path / "d.parquet", tmp_path / "s.json")
