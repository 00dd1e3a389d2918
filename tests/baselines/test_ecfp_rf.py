"""ECFP4 + RF: the split's molecules and nothing else, gaps in labels, one-class tasks, seeds, tables."""

import json

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.metrics import mean_squared_error, roc_auc_score

from bbmn.baselines.ecfp_rf import EcfpRfConfig, morgan_matrix, parse_max_features, run_ecfp_rf
from bbmn.errors import BbmnError
from bbmn.eval.metrics import score
from bbmn.eval.tables import write_tables
from bbmn.io import read_json
from tests.baselines.helpers import TEST_DATA, part_frame, prepare

TINY = EcfpRfConfig(n_estimators=15, max_features=("sqrt", 0.2), min_samples_leaf=(1,), threads=2)


def ecfp(smiles):
    """Morgan radius 2 / 2048 bits, straight from RDKit (not through bbmn), dense."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return np.array([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles])


def reference_forest(train, task, params, seed, cfg, task_type="classification"):
    """A forest fit by hand, densely, on the train molecules that have ``task``'s label."""
    train = train[train[task].notna()]
    kind = RandomForestClassifier if task_type == "classification" else RandomForestRegressor
    return kind(n_estimators=cfg.n_estimators, random_state=seed, **params).fit(
        ecfp(train["smiles"]), train[task].to_numpy())


@pytest.fixture(scope="module")
def bbbp(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bbbp")
    clean, split = prepare(tmp, "bbbp_150", seed=1)  # seed 1: both classes in validation and test
    record = run_ecfp_rf(clean, split, tmp / "run", "bbbp", "roc_auc", seed=1, cfg=TINY)
    return clean, split, tmp / "run", record


def test_test_part_is_the_split_files_and_the_forest_saw_exactly_the_train_rows(bbbp):
    clean, split, run, record = bbbp
    preds = pd.read_csv(run / "predictions.csv")
    test = part_frame(clean, split, "test")
    assert preds["row"].tolist() == read_json(split)["test"] == test["row"].tolist()
    assert preds["smiles"].tolist() == test["smiles"].tolist()
    assert preds["p_np"].tolist() == test["p_np"].tolist()
    # the same forest, fit by hand on the split file's train rows, predicts the same numbers
    train = part_frame(clean, split, "train")
    forest = reference_forest(train, "p_np", record["selected"], 1, TINY)
    expected = forest.predict_proba(ecfp(test["smiles"]))[:, 1]
    np.testing.assert_allclose(preds["p_np_pred"], expected, atol=1e-9)
    # ... and one train row fewer gives other numbers: the comparison can tell
    fewer = reference_forest(train.iloc[1:], "p_np", record["selected"], 1, TINY)
    assert not np.allclose(fewer.predict_proba(ecfp(test["smiles"]))[:, 1], expected)
    assert record["test"]["value"] == pytest.approx(roc_auc_score(test["p_np"], expected))
    # predictions.csv holds the numbers in full: scored again, it gives the recorded score exactly
    assert score("roc_auc", preds[["p_np"]].to_numpy(), preds[["p_np_pred"]].to_numpy()).value == \
        record["test"]["value"]
    assert record["split"] == {"path": str(split), "method": "balanced_scaffold", "seed": 1,
                               "train": 120, "val": 15, "test": 15}


def test_grid_point_is_chosen_on_validation(bbbp):
    clean, split, run, record = bbbp
    details = read_json(run / "details.json")
    assert [g["params"] for g in details["grid"]] == TINY.grid()
    best = max(details["grid"], key=lambda g: g["val"])
    assert record["selected"] == best["params"] and record["val"]["value"] == best["val"]
    val = part_frame(clean, split, "val")
    forest = reference_forest(part_frame(clean, split, "train"), "p_np", record["selected"], 1, TINY)
    assert record["val"]["value"] == pytest.approx(
        roc_auc_score(val["p_np"], forest.predict_proba(ecfp(val["smiles"]))[:, 1]))


def test_metrics_file_schema_and_table(bbbp, tmp_path):
    _, _, run, record = bbbp
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == record
    assert list(on_disk) == ["dataset", "seed", "model", "init", "row", "label", "metric", "task_type",
                             "tasks", "split", "selected", "val", "test", "seconds"]
    assert (on_disk["row"], on_disk["label"], on_disk["init"]) == ("ecfp_rf", "ECFP4 + RF", None)
    assert set(on_disk["test"]) == {"metric", "value", "per_task", "skipped", "n"}
    pretrained = tmp_path / "pretrained.json"  # a fine-tuning run's file, beside the baseline's
    pretrained.write_text(json.dumps({
        "dataset": "bbbp", "seed": 1, "row": "batmannet_pretrained", "label": "BatmanNet (pre-trained)",
        "metric": "roc_auc", "tasks": ["p_np"], "split": {"method": "balanced_scaffold", "seed": 1},
        "test": {"metric": "roc_auc", "value": 0.9, "per_task": [0.9], "skipped": {}}}))
    written = write_tables([pretrained, run / "metrics.json"], tmp_path / "tables")
    table = pd.read_csv(written["classification.csv"])
    ours = table[(table.kind == "result") & (table.dataset == "bbbp")].set_index("row")
    assert ours.loc["ecfp_rf", "mean"] == pytest.approx(record["test"]["value"])
    assert ours.loc["ecfp_rf", "label"] == "ECFP4 + RF" and ours.loc["batmannet_pretrained", "mean"] == 0.9
    assert "| ECFP4 + RF |" in (tmp_path / "tables" / "classification.md").read_text()


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path, bbbp):
    clean, split, run, record = bbbp
    again = run_ecfp_rf(clean, split, tmp_path / "again", "bbbp", "roc_auc", seed=1, cfg=TINY)
    assert (tmp_path / "again" / "predictions.csv").read_bytes() == (run / "predictions.csv").read_bytes()
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in record.items() if k != "seconds"}
    run_ecfp_rf(clean, split, tmp_path / "other", "bbbp", "roc_auc", seed=2, cfg=TINY)
    assert not pd.read_csv(tmp_path / "other" / "predictions.csv")["p_np_pred"].equals(
        pd.read_csv(run / "predictions.csv")["p_np_pred"])


def test_multitask_gaps_and_a_task_with_one_class_in_train(tmp_path):
    base, split = prepare(tmp_path / "a", "tox21_65")
    # a made-up task: 0 on every train molecule, 0/1 elsewhere (the molecules keep their rows)
    parts = read_json(split)
    source = pd.read_csv(TEST_DATA / "tox21_65.csv", keep_default_na=False, dtype=str)
    made_up = np.zeros(len(source))
    made_up[parts["val"][::2] + parts["test"][::2]] = 1
    source["made_up"] = made_up.astype(int).astype(str)
    source.to_csv(tmp_path / "tox21_plus.csv", index=False)
    clean, split2 = prepare(tmp_path / "b", "tox21_65", csv=tmp_path / "tox21_plus.csv")
    assert {k: read_json(split2)[k] for k in ("train", "val", "test")} == {k: parts[k] for k in ("train", "val", "test")}
    record = run_ecfp_rf(clean, split2, tmp_path / "run", "tox21", "roc_auc", seed=0, cfg=TINY)
    details = read_json(tmp_path / "run" / "details.json")
    assert details["constant_tasks"]["made_up"] == "one class in train (0)"
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert (preds["made_up_pred"] == 0.0).all()  # the train prior
    j = record["tasks"].index("made_up")
    assert record["test"]["per_task"][j] == 0.5 and "made_up" not in record["test"]["skipped"]
    # gaps: missing labels stay empty, and each task's forest learnt from its labelled train rows only
    test, train = part_frame(clean, split2, "test"), part_frame(clean, split2, "train")
    gappy = max((t for t in record["tasks"] if t != "made_up"), key=lambda t: train[t].isna().sum())
    assert train[gappy].isna().any() and train[gappy].notna().sum() >= 2
    assert preds[gappy].isna().tolist() == test[gappy].isna().tolist()
    assert details["labels"][gappy]["train"] == int(train[gappy].notna().sum())
    assert gappy not in details["constant_tasks"]
    forest = reference_forest(train, gappy, record["selected"], 0, TINY)
    np.testing.assert_allclose(preds[f"{gappy}_pred"], forest.predict_proba(ecfp(test["smiles"]))[:, 1],
                               atol=1e-9)
    scored = [v for v in record["test"]["per_task"] if v is not None]
    assert record["test"]["value"] == pytest.approx(np.mean(scored))


def test_regression(tmp_path):
    clean, split = prepare(tmp_path, "esol_100")
    cfg = EcfpRfConfig(n_estimators=15, max_features=(0.2,), min_samples_leaf=(3,))
    record = run_ecfp_rf(clean, split, tmp_path / "run", "esol", "rmse", seed=0, cfg=cfg)
    test = part_frame(clean, split, "test")
    forest = reference_forest(part_frame(clean, split, "train"), "logSolubility", record["selected"], 0, cfg,
                              "regression")
    expected = forest.predict(ecfp(test["smiles"]))
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv")
    np.testing.assert_allclose(preds["logSolubility_pred"], expected, atol=1e-9)
    assert record["test"]["value"] == pytest.approx(np.sqrt(mean_squared_error(test["logSolubility"], expected)))


def test_fingerprints_are_rdkit_morgan_bits():
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    X = morgan_matrix(smiles)
    assert X.dtype == np.uint8 and X.shape == (3, 2048)
    np.testing.assert_array_equal(X, ecfp(smiles))


def test_refusals(tmp_path, bbbp):
    clean, split, _, _ = bbbp
    with pytest.raises(BbmnError, match="does not fit a classification"):
        run_ecfp_rf(clean, split, tmp_path / "r", "bbbp", "rmse", cfg=TINY)
    other_clean, other_split = prepare(tmp_path, "esol_100")
    with pytest.raises(BbmnError, match="another source file"):
        run_ecfp_rf(clean, other_split, tmp_path / "r", "bbbp", "roc_auc", cfg=TINY)
    record = read_json(split)
    record["test"] = record["test"] + [10_000]
    record.pop("source_sha256")
    (tmp_path / "bad.json").write_text(json.dumps(record))
    with pytest.raises(BbmnError, match="1 test rows that"):
        run_ecfp_rf(clean, tmp_path / "bad.json", tmp_path / "r", "bbbp", "roc_auc", cfg=TINY)
    assert not (tmp_path / "r" / "metrics.json").exists()
    assert parse_max_features("0.2") == 0.2 and parse_max_features("sqrt") == "sqrt"
    assert parse_max_features("64") == 64
    with pytest.raises(BbmnError):
        parse_max_features("1.5")


def test_a_failed_rerun_leaves_no_old_result(tmp_path, bbbp):
    clean, split, run, _ = bbbp
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_bytes((run / "metrics.json").read_bytes())
    with pytest.raises(BbmnError, match="do not fit"):
        run_ecfp_rf(clean, split, tmp_path / "r", "bbbp", "roc_auc", cfg=TINY, fingerprints=np.zeros((3, 2048)))
    assert not (tmp_path / "r" / "metrics.json").exists()
