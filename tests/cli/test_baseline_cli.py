"""`bbmn baseline`, in-process: run directory, JSON summary line, tables, tracking, one-line errors."""

import json
import sys

import pandas as pd
import pytest

from bbmn.cli.main import main
from bbmn.io import read_json
from tests.baselines.helpers import prepare

TINY = ["--n-estimators", "10", "--max-features", "sqrt", "--min-samples-leaf", "1", "2"]


def test_ecfp_rf_run_summary_and_table(tmp_path, capsys):
    clean, split = prepare(tmp_path, "esol_100", seed=1)
    run = tmp_path / "runs" / "esol" / "ecfp_rf" / "seed1"
    assert main(["baseline", "ecfp-rf", str(clean), "--split", str(split), "--out", str(run), "--dataset", "esol",
                 "--metric", "rmse", "--seed", "1", "--threads", "2", *TINY]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    metrics = read_json(run / "metrics.json")
    assert summary["test"] == metrics["test"]["value"] > 0 and summary["seconds"] == metrics["seconds"] > 0
    assert summary["model"] == "ecfp_rf" and summary["selected"] == metrics["selected"]
    assert metrics["selected"]["min_samples_leaf"] in (1, 2) and metrics["split"]["seed"] == 1
    config = read_json(run / "config.json")
    assert config["n_estimators"] == 10 and config["max_features"] == ["sqrt"] and config["threads"] == 2
    preds = pd.read_csv(run / "predictions.csv")
    assert preds["row"].tolist() == read_json(split)["test"]
    assert main(["table", str(run / "metrics.json"), "--out-dir", str(tmp_path / "tables")]) == 0
    table = pd.read_csv(tmp_path / "tables" / "regression.csv")
    assert table[table.row == "ecfp_rf"]["mean"].iloc[0] == pytest.approx(metrics["test"]["value"])


def test_baseline_is_a_child_run_of_the_workflow(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from bbmn.train.tracking import init_store

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    parent = init_store(tmp_path / "parent.json", uri=uri, experiment="t")
    clean, split = prepare(tmp_path, "bbbp_150", seed=1)
    assert main(["baseline", "ecfp-rf", str(clean), "--split", str(split), "--out", str(tmp_path / "run"),
                 "--dataset", "bbbp", "--metric", "roc_auc", "--seed", "1", *TINY,
                 "--tracking-parent", str(tmp_path / "parent.json")]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([parent["experiment_id"]], "tags.stage = 'baseline'")
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert tags["mlflow.parentRunId"] == parent["parent_run_id"]
    assert (tags["model"], tags["dataset"], tags["seed"]) == ("ecfp_rf", "bbbp", "1")
    test = read_json(tmp_path / "run" / "metrics.json")["test"]["value"]
    assert runs[0].data.metrics["test_roc_auc"] == pytest.approx(test)
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id, "baseline")} >= {
        "baseline/metrics.json", "baseline/predictions.csv"}


def test_user_errors_are_one_line(tmp_path, capsys, monkeypatch):
    clean, split = prepare(tmp_path, "bbbp_150")
    capsys.readouterr()  # whatever logging printed while preparing
    common = [str(clean), "--split", str(split), "--out", str(tmp_path / "r"), "--dataset", "bbbp"]
    assert main(["baseline", "ecfp-rf", *common, "--metric", "mae", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbmn baseline: error: metric mae does not fit a classification dataset")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["baseline", "ecfp-rf", *common, "--metric", "roc_auc", "--max-features", "half"]) == 2
    assert "max_features must be sqrt, log2" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "chemprop", None)  # as where the extra is not installed
    assert main(["baseline", "chemprop", *common, "--metric", "roc_auc", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbmn baseline: error:") and "pip install '.[baselines]'" in err
    assert not (tmp_path / "r" / "metrics.json").exists()
