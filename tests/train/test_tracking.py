"""MLflow tracking: parent and child runs in a real SQLite store, and unreachable stores."""

import pytest

from bbmn.errors import BbmnError
from bbmn.io import read_json
from bbmn.train.tracking import Tracker, config_hash, init_store


def test_parent_and_child_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    record = init_store(tmp_path / "parent.json", uri=uri, experiment="t")
    assert record["parent_run_id"] and read_json(tmp_path / "parent.json") == record
    artifact = tmp_path / "metrics.json"
    artifact.write_text("{}")
    with Tracker("child", tags={"stage": "pretrain", "seed": 0}, params={"lr": 1e-3, "model": {"hidden": 100}},
                 parent=tmp_path / "parent.json") as tracker:
        tracker.log_metrics({"loss": 1.5}, step=1)
        tracker.log_metrics({"loss": 1.0}, step=2)
        tracker.log_artifact(artifact)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(tracker.run_id)
    assert run.data.tags["mlflow.parentRunId"] == record["parent_run_id"]
    assert run.data.tags["stage"] == "pretrain" and run.data.tags["seed"] == "0"
    assert run.data.tags["config_hash"] == config_hash({"lr": 1e-3, "model": {"hidden": 100}})
    assert run.data.params["model.hidden"] == "100"
    assert [m.value for m in client.get_metric_history(tracker.run_id, "loss")] == [1.5, 1.0]
    assert run.info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["metrics.json"]
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()


def test_unreachable_store_is_skipped_or_fatal(tmp_path, caplog):
    bad = "http://127.0.0.1:9/"  # nothing listens on the discard port
    record = init_store(tmp_path / "parent.json", uri=bad)
    assert record["parent_run_id"] is None and "error" in record
    with Tracker("child", parent=tmp_path / "parent.json") as tracker:
        tracker.log_metrics({"loss": 1.0})  # no exception: tracking is off
    assert not tracker.enabled and "tracking skipped" in caplog.text
    with pytest.raises(BbmnError, match="MLflow"):
        init_store(tmp_path / "p2.json", uri=bad, required=True)


def test_a_logged_model_file_is_registered_with_flattened_tags(tmp_path, caplog):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    card = {"kind": "batmannet-pretrained", "model_config": {"hidden": 32}, "steps": [1, 2]}
    with Tracker("pretrain", uri=uri) as tracker:
        versions = [tracker.register_model("tiny", tracker.log_model(model), tags={"card": card})
                    for _ in range(2)]
    assert versions == [1, 2]
    from mlflow.tracking import MlflowClient

    version = MlflowClient(uri).get_model_version("tiny", "2")
    assert version.tags == {"card.kind": "batmannet-pretrained", "card.model_config.hidden": "32",
                            "card.steps": "[1, 2]"}
    assert version.run_id == tracker.run_id
    off = Tracker("x", enabled=False)
    assert off.register_model("tiny", off.log_model(model)) is None and "not registered" in caplog.text
