"""MLflow on a cluster: a real `mlflow server` (loopback, free port, SQLite in tmp_path), the
workflow's parent run and a tiny `bbmn finetune` sending to it through $MLFLOW_TRACKING_URI."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bbmn.cli.main import main
from tests.conftest import free_port
from tests.data.test_labelled import labelled_files
from tests.processes import stop_process_group

MLFLOW = Path(sys.executable).with_name("mlflow")



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite store and an artifact directory in tmp; its whole
    process group is killed at teardown."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start:\n{(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "root": root}
    finally:
        stop_process_group(proc)
        log.close()


@pytest.mark.slow
def test_finetune_logs_to_a_tracking_server(server, tmp_path, tmp_path_factory, monkeypatch):
    files = labelled_files(tmp_path_factory, "bbbp")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server["url"])  # what the head node exports to jobs
    monkeypatch.setenv("BBMN_PLAIN_MALLOC", "1")
    record = tmp_path / "parent_run.json"
    assert main(["track", "init", "--out", str(record), "--experiment", "cluster", "--required",
                 "--tag", "preset=test"]) == 0
    run_dir = tmp_path / "run"
    assert main(["finetune", str(files["cache"]), "--descriptors", str(files["descriptors"]),
                 "--split", str(files["split1"]), "--out", str(run_dir), "--dataset", "bbbp",
                 "--metric", "roc_auc", "--epochs", "2", "--threads", "1", "--hidden", "16",
                 "--encoder-blocks", "1", "--seed", "0", "--tracking-parent", str(record),
                 "--tracking-required"]) == 0
    assert main(["track", "finish", str(record)]) == 0

    from mlflow.tracking import MlflowClient

    parent_record = json.loads(record.read_text())
    assert parent_record["uri"] == server["url"]
    client = MlflowClient(server["url"])
    experiment = client.get_experiment_by_name("cluster")
    parent = client.get_run(parent_record["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["preset"] == "test"
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 1
    child = children[0]
    assert child.info.status == "FINISHED"
    assert child.data.tags["stage"] == "finetune" and child.data.tags["dataset"] == "bbbp"
    assert child.data.params["epochs"] == "2" and child.data.params["metric"] == "roc_auc"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert child.data.metrics["best_val_roc_auc"] == pytest.approx(metrics["val"]["value"])
    history = client.get_metric_history(child.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"metrics.json", "predictions.csv"} <= artifacts
    # the server stored them in its own artifact directory, not in the job's working directory
    assert list((server["root"] / "artifacts").rglob("predictions.csv"))
    assert not (tmp_path / "mlruns").exists() and not Path("mlruns").exists()
