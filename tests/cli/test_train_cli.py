"""`bbmn train` end to end on ESOL's 100-molecule slice (a checkpoint, one seed, one epoch, the
ensemble registered in the run's MLflow Model Registry), then `bbmn predict` with the command it
prints, and the registered model giving the same predictions."""

import json
import shlex

import mlflow
import numpy as np
import pandas as pd
import pytest

from bbmn.cli.main import main
from tests.conftest import TEST_DATA
from tests.models.test_finetune import make_pretrained


@pytest.mark.slow
def test_train_one_csv_then_predict_with_the_printed_command(tmp_path, capsys, mlflow_uri):
    checkpoint = make_pretrained(tmp_path / "pretrain")  # hidden 32: train reads the sizes from it
    out = tmp_path / "run"
    assert main(["train", str(TEST_DATA / "esol_100.csv"), "--labels", "logSolubility", "--task", "regression",
                 "--checkpoint", str(checkpoint), "--seeds", "0", "--epochs", "1", "--cores", "2",
                 "--register", "esol-batmannet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[ 6/12] finetune esol_100 kind=pretrained seed=0: " in printed
    assert f"registered as models:/esol-batmannet/1 in {mlflow_uri}" in printed  # $MLFLOW_TRACKING_URI
    metrics = json.loads((out / "results/finetune/esol_100/pretrained/seed0/metrics.json").read_text())
    assert metrics["checkpoint"]["path"] == str(checkpoint) and metrics["epochs_run"] == 1
    assert "esol_100 (RMSE)" in (out / "results/tables/regression.md").read_text()
    # only what was asked: no pre-training, baselines, probes or leakage check
    assert sorted(p.name for p in (out / "results").iterdir()) == [
        "data", "figures", "finetune", "logs", "registered", "tables", "tracking"]

    command = shlex.split(printed.strip().splitlines()[-1])
    assert command[:3] == ["bbmn", "predict", "NEW_MOLECULES.csv"]
    new = tmp_path / "new.csv"
    new.write_text("smiles\nCCO\nc1ccccc1O\nnot a smiles\n")
    predictions = tmp_path / "predictions.csv"
    args = [str(new) if a == "NEW_MOLECULES.csv" else str(predictions) if a == "predictions.csv" else a
            for a in command[1:]]
    assert main(args) == 0
    table = pd.read_csv(predictions)
    assert list(table.status) == ["ok", "ok", "invalid_smiles"] and table.logSolubility[:2].notna().all()

    mlflow.set_tracking_uri(mlflow_uri)
    try:
        registered = mlflow.pyfunc.load_model("models:/esol-batmannet/1")
    finally:
        mlflow.set_tracking_uri(None)
    got = registered.predict(pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "not a smiles"]}))
    assert list(got.status) == list(table.status)
    assert np.allclose(got.logSolubility.to_numpy(float), table.logSolubility.to_numpy(float), equal_nan=True)


def test_train_help_names_every_choice(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for words in ("--checkpoint MODEL.pt", "--seeds SEED [SEED ...]", "bbmn predict", "never pre-trains",
                  "--register NAME"):
        assert words in " ".join(text.split()), words
