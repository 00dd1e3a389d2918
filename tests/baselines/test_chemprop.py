"""chemprop on bbmn's split: its files hold the split's molecules, the model it kept is the one
scored, scores are bbmn's. Skipped where chemprop (the `baselines` extra) is not installed."""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_squared_error

from bbmn.baselines.chemprop_run import run_chemprop
from bbmn.errors import BbmnError
from bbmn.eval.tables import write_tables
from bbmn.io import read_json
from tests.baselines.helpers import part_frame, prepare

needs_chemprop = pytest.mark.skipif(importlib.util.find_spec("chemprop") is None,
                                    reason="chemprop is not installed (pip install '.[baselines]')")


@pytest.fixture(scope="module")
def esol(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chemprop")
    clean, split = prepare(tmp, "esol_100")
    record = run_chemprop(clean, split, tmp / "run", "esol", "rmse", seed=0, epochs=3, device="cpu", threads=2)
    return clean, split, tmp / "run", record


@needs_chemprop
def test_chemprop_reads_the_split_files_molecules(esol):
    clean, split, run, _ = esol
    for part in ("train", "val", "test"):
        given = pd.read_csv(run / "chemprop" / f"{part}.csv")
        expected = part_frame(clean, split, part)
        assert given["smiles"].tolist() == expected["smiles"].tolist()
        np.testing.assert_array_equal(given["t0"], expected["logSolubility"])
    preds = pd.read_csv(run / "predictions.csv")
    assert preds["row"].tolist() == read_json(split)["test"]
    assert preds["smiles"].tolist() == part_frame(clean, split, "test")["smiles"].tolist()


@needs_chemprop
def test_scored_model_is_the_one_chemprop_kept_and_scores_are_bbmns(esol):
    clean, split, run, record = esol
    preds = pd.read_csv(run / "predictions.csv")
    own = pd.read_csv(run / "chemprop" / "train" / "model_0" / "test_predictions.csv")  # chemprop's own
    assert own["smiles"].tolist() == preds["smiles"].tolist()
    np.testing.assert_allclose(preds["logSolubility_pred"], own["t0"], rtol=1e-5)
    rmse = np.sqrt(mean_squared_error(preds["logSolubility"], preds["logSolubility_pred"]))
    assert record["test"]["value"] == pytest.approx(rmse, rel=1e-6)
    assert record["selected"]["epochs"] == 3 and record["selected"]["best_epoch"] in (0, 1, 2)


@needs_chemprop
def test_chemprop_metrics_feed_the_tables(esol, tmp_path):
    _, _, run, record = esol
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == record and (on_disk["row"], on_disk["label"]) == ("chemprop", "chemprop D-MPNN")
    pretrained = tmp_path / "pretrained.json"
    pretrained.write_text(json.dumps({
        "dataset": "esol", "seed": 0, "row": "batmannet_pretrained", "label": "BatmanNet (pre-trained)",
        "metric": "rmse", "tasks": ["logSolubility"], "split": {"method": "balanced_scaffold", "seed": 0},
        "test": {"metric": "rmse", "value": 1.0, "per_task": [1.0], "skipped": {}}}))
    table = pd.read_csv(write_tables([pretrained, run / "metrics.json"], tmp_path / "t")["regression.csv"])
    row = table[(table.kind == "result") & (table.row == "chemprop")].iloc[0]
    assert row["mean"] == pytest.approx(record["test"]["value"]) and row["dataset"] == "esol"


@needs_chemprop
def test_chemprop_refuses_fewer_epochs_than_its_warmup(esol, tmp_path):
    clean, split, _, _ = esol
    with pytest.raises(BbmnError, match="warm-up"):
        run_chemprop(clean, split, tmp_path / "r", "esol", "rmse", epochs=2)


def test_missing_chemprop_is_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "chemprop", None)  # as if it were not installed
    with pytest.raises(BbmnError, match=r"pip install '\.\[baselines\]'"):
        run_chemprop(tmp_path / "c.parquet", tmp_path / "s.json", tmp_path / "r", "esol", "rmse")
