"""Fine-tuning runs on real slices of BBBP and ESOL: outputs, selection, stopping, resume."""

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bbmn.data.descriptors import read_descriptors
from bbmn.data.graph import featurize_smiles
from bbmn.data.labelled import ColumnScaler
from bbmn.data.splits import load_split
from bbmn.errors import BbmnError
from bbmn.eval.metrics import score
from bbmn.io import sha256_file
from bbmn.models.finetune import BatmanNetFinetune
from bbmn.train.checkpoint import load_checkpoint
from bbmn.train.finetune import FinetuneConfig, finetune, resolve_model_config
from tests.data.test_labelled import bbbp, esol, write_split  # noqa: F401
from tests.models.test_finetune import SMALL, make_pretrained

BBMN = str(Path(sys.executable).with_name("bbmn"))
SCHEMA = {"dataset", "seed", "model", "init", "row", "label", "metric", "task_type", "tasks", "split",
          "best_epoch", "epochs_run", "stopped", "selection", "val", "test", "checkpoint", "seconds",
          "molecules_per_s", "peak_rss_mb", "health", "variant"}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return make_pretrained(tmp_path_factory.mktemp("pretrain"))


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def tracking_store(monkeypatch, mlflow_uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)


def small(**overrides) -> FinetuneConfig:
    base = dict(dataset="bbbp", metric="roc_auc", epochs=3, threads=1, model=dict(SMALL))
    return FinetuneConfig(**{**base, **overrides})


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def read_predictions(run: Path) -> list[dict]:
    with open(run / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_pretrained_run_writes_what_the_table_and_predict_need(tmp_path, bbbp, pretrained, mlflow_uri):
    run = tmp_path / "run"
    cfg = small(seed=1, model={"dropout": 0.1})  # sizes come from the checkpoint
    metrics = finetune(bbbp["cache"], bbbp["descriptors"], bbbp["split1"], run, cfg, checkpoint=pretrained)
    assert json.loads((run / "metrics.json").read_text()) == metrics
    assert set(metrics) == SCHEMA
    assert metrics | {"split": None, "val": None, "test": None, "seconds": None, "molecules_per_s": None,
                      "peak_rss_mb": None, "best_epoch": None, "health": None} == {
        "dataset": "bbbp", "seed": 1, "model": "batmannet", "init": "pretrained",
        "row": "batmannet_pretrained", "label": "BatmanNet (pre-trained)", "metric": "roc_auc",
        "task_type": "classification", "tasks": ["p_np"], "split": None, "best_epoch": None,
        "epochs_run": 3, "stopped": "epochs", "selection": "val_metric", "val": None, "test": None,
        "checkpoint": {"path": str(pretrained), "sha256": sha256_file(pretrained), "loaded": 60,
                       "fresh": 18}, "seconds": None,
        "molecules_per_s": None, "peak_rss_mb": None, "health": None, "variant": None}
    # representation health of both views, at the start and at the kept epoch
    for when in ("start", "best_epoch"):
        for view in ("atom", "bond"):
            h = metrics["health"][when][view]
            assert h["spread"] > 0 and 1 <= h["effective_rank"] <= 100 and 0 < h["input_share"] < 1
    assert metrics["split"] == {"path": str(bbbp["split1"]), "method": "balanced_scaffold", "seed": 1,
                                "train": 120, "val": 15, "test": 15}
    assert 0 < metrics["test"]["value"] <= 1 and 0 < metrics["val"]["value"] <= 1
    assert metrics["seconds"] > 0 and metrics["molecules_per_s"] > 0 and metrics["peak_rss_mb"] > 0

    # the kept epoch is the first with the best validation ROC-AUC, and val is its score
    epochs = history(run)
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and epochs[-1]["step"] == 3 * 4
    values = [e["val_roc_auc"] for e in epochs]
    assert metrics["best_epoch"] == 1 + int(np.argmax(values))
    assert metrics["val"]["value"] == pytest.approx(max(values))
    assert all(math.isfinite(e["train_loss"]) and e["lr"] > 0 for e in epochs)

    # predictions.csv: the test part, labels and probabilities; it gives the reported test score
    rows = read_predictions(run)
    assert list(rows[0]) == ["row", "smiles", "p_np", "p_np_pred"]
    assert [int(r["row"]) for r in rows] == load_split(bbbp["split1"])["test"].tolist()
    y = np.array([float(r["p_np"]) for r in rows])
    p = np.array([float(r["p_np_pred"]) for r in rows])
    assert set(y) == {0.0, 1.0} and ((p > 0) & (p < 1)).all()
    assert score("roc_auc", y[:, None], p[:, None]).value == metrics["test"]["value"]  # written in full

    # model.pt alone (with the raw descriptors) scores new molecules exactly as the test part was
    saved = load_checkpoint(run / "model.pt")
    assert saved["kind"] == "batmannet-finetuned" and saved["tasks"] == ["p_np"]
    assert saved["task_type"] == "classification" and saved["target_scaler"] is None
    model = BatmanNetFinetune.from_config(saved["model_config"])
    model.load_state_dict(saved["model"])
    model.eval()
    scaler = ColumnScaler.from_dict(saved["descriptor_scaler"])
    desc = scaler.transform(read_descriptors(bbbp["descriptors"], np.array([int(r["row"]) for r in rows])))
    with torch.no_grad():
        batch = featurize_smiles([r["smiles"] for r in rows]).to_batch()
        again = model.predict(batch, torch.from_numpy(desc))
    assert np.allclose(again[:, 0].numpy(), p, atol=1e-6)

    config = json.loads((run / "config.json").read_text())
    assert config["model"]["hidden"] == 32 and config["warmup_steps"] == 8 and config["total_steps"] == 12
    assert "edge_encoder.atom_readout.norm.weight" in config["pretrained_weights"]["fresh"]
    assert not (run / "checkpoints").exists()  # nothing left to resume

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    found = client.search_runs([client.get_experiment_by_name("bbmn").experiment_id],
                               "tags.stage = 'finetune' and tags.init = 'pretrained'")
    assert len(found) == 1 and found[0].data.tags["dataset"] == "bbbp" and found[0].data.tags["seed"] == "1"
    assert len(client.get_metric_history(found[0].info.run_id, "val_roc_auc")) == 3
    artifacts = {a.path for a in client.list_artifacts(found[0].info.run_id)}
    assert artifacts >= {"metrics.json", "predictions.csv"}


def test_regression_is_trained_standardized_and_reported_in_label_units(tmp_path, esol):
    run = tmp_path / "run"
    metrics = finetune(esol["cache"], esol["descriptors"], esol["split0"], run,
                       small(dataset="esol", metric="rmse", epochs=2))
    assert metrics["init"] == "scratch" and metrics["checkpoint"] is None
    assert metrics["row"] == "batmannet_scratch" and metrics["label"] == "BatmanNet (scratch)"
    assert metrics["task_type"] == "regression" and math.isfinite(metrics["test"]["value"])
    rows = read_predictions(run)
    y = np.array([float(r["logSolubility"]) for r in rows])
    p = np.array([float(r["logSolubility_pred"]) for r in rows])
    assert np.sqrt(np.mean((y - p) ** 2)) == pytest.approx(metrics["test"]["value"])
    saved = load_checkpoint(run / "model.pt")
    train_labels = np.array(load_split(esol["split0"])["train"])  # rows; labels come from the cache
    assert len(saved["target_scaler"]["mean"]) == 1 and len(train_labels) == 80
    # de-standardized: predictions live around the training labels' mean, not around 0
    assert abs(p.mean() - saved["target_scaler"]["mean"][0]) < 2 * saved["target_scaler"]["std"][0]
    assert abs(saved["target_scaler"]["mean"][0]) > 1


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path, bbbp):
    """With a learning rate too small to move a float32 weight, no epoch can beat the first."""
    metrics = finetune(bbbp["cache"], bbbp["descriptors"], bbbp["split1"], tmp_path / "run",
                       small(epochs=10, patience=2, init_lr=1e-12, max_lr=1e-12, final_lr=1e-12))
    assert (metrics["stopped"], metrics["epochs_run"], metrics["best_epoch"]) == ("patience", 3, 1)
    assert [e["improved"] for e in history(tmp_path / "run")] == [True, False, False]


def test_one_class_validation_selects_by_loss_and_one_class_test_task_is_reported(tmp_path, bbbp, caplog):
    """Split seed 0 of this slice has an all-positive test part; here the validation part is
    made all-positive too (its negatives go to training)."""
    split = load_split(bbbp["split0"])
    from bbmn.data.labelled import load_labelled

    labels = load_labelled(bbbp["cache"], bbbp["descriptors"], bbbp["split0"]).val.labels[:, 0]
    one_class = write_split(tmp_path / "split.json", list(split["train"]) + list(split["val"][labels == 0]),
                            split["val"][labels == 1], split["test"], like=bbbp["split0"])
    metrics = finetune(bbbp["cache"], bbbp["descriptors"], one_class, tmp_path / "run", small(epochs=3))
    assert metrics["selection"] == "val_loss"
    assert "selected by validation loss" in caplog.text
    losses = [e["val_loss"] for e in history(tmp_path / "run")]
    assert metrics["best_epoch"] == 1 + int(np.argmin(losses))
    assert metrics["test"]["skipped"] == {"p_np": "one class only (1)"}
    assert math.isnan(metrics["test"]["value"]) and metrics["test"]["per_task"] == [None]
    assert metrics["val"]["skipped"] == {"p_np": "one class only (1)"}
    assert "test part: task p_np not scored (one class only (1))" in caplog.text
    assert len(read_predictions(tmp_path / "run")) == 15  # still predicted, just not scored


def test_time_budget_ends_training_and_still_scores_the_best_epoch(tmp_path, bbbp):
    metrics = finetune(bbbp["cache"], bbbp["descriptors"], bbbp["split1"], tmp_path / "run",
                       small(epochs=50, max_minutes=0.0005))
    assert (metrics["stopped"], metrics["epochs_run"], metrics["best_epoch"]) == ("time_budget", 1, 1)
    (epoch,) = history(tmp_path / "run")
    assert epoch["partial"] and epoch["step"] == 1
    assert 0 < metrics["test"]["value"] <= 1 and (tmp_path / "run" / "model.pt").is_file()


def test_settings_that_cannot_work_are_refused_before_training(tmp_path, bbbp, pretrained):
    stale = tmp_path / "old" / "metrics.json"
    stale.parent.mkdir()
    stale.write_text("{}")
    with pytest.raises(BbmnError, match=r"hidden=64 \(checkpoint: 32\)"):
        finetune(bbbp["cache"], bbbp["descriptors"], bbbp["split1"], stale.parent,
                 small(model={"hidden": 64}), checkpoint=pretrained)
    assert not stale.exists()  # a failed run leaves no earlier result behind
    with pytest.raises(BbmnError, match="metric rmse does not fit a classification dataset"):
        finetune(bbbp["cache"], bbbp["descriptors"], bbbp["split1"], tmp_path / "b", small(metric="rmse"))
    assert not (tmp_path / "b").exists()
    resolved = resolve_model_config({"dropout": 0.2, "hidden": 32},
                                    {"hidden": 32, "heads": 4, "mask_ratio": 0.6})
    assert resolved == {"dropout": 0.2, "hidden": 32, "heads": 4}


def run_cli(out: Path, files: dict, pretrained: Path) -> subprocess.Popen:
    cmd = [BBMN, "finetune", str(files["cache"]), "--descriptors", str(files["descriptors"]),
           "--split", str(files["split1"]), "--out", str(out), "--dataset", "bbbp", "--metric", "roc_auc",
           "--checkpoint", str(pretrained), "--epochs", "8", "--threads", "1"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path, bbbp, pretrained):
    reference = run_cli(tmp_path / "ref", bbbp, pretrained)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]
    interrupted = run_cli(tmp_path / "run", bbbp, pretrained)
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    deadline = time.time() + 300
    while time.time() < deadline and interrupted.poll() is None:
        try:
            if latest.is_file() and load_checkpoint(latest)["progress"]["epoch"] >= 3:
                break
        except BbmnError:  # replaced while being read
            pass
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    assert not (tmp_path / "run" / "metrics.json").exists()
    done = load_checkpoint(latest)["progress"]["epoch"]
    assert 3 <= done < 8
    resumed = run_cli(tmp_path / "run", bbbp, pretrained)
    assert resumed.wait(timeout=600) == 0
    assert f"resuming from {latest}: {done} epochs done" in resumed.stderr.read()
    ref = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    got = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in ("val", "test", "best_epoch", "epochs_run", "stopped"):
        assert got[key] == ref[key], key
    predictions = [(tmp_path / name / "predictions.csv").read_text() for name in ("ref", "run")]
    assert predictions[0] == predictions[1]
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in history(tmp_path / "ref")]
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in history(tmp_path / "run")] == strip
