"""Packaged models: the run's MLflow pyfunc model scores SMILES like bbmn predict, in process,
from the tracking store and the Model Registry, in a process whose bbmn is the model's own wheel,
and over HTTP with `mlflow models serve`."""

import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.artifacts import download_artifacts
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from bbmn.inference.predict import predict_file
from bbmn.inference.pyfunc import PYFUNC_DIR, WHEELS, bbmn_wheel
from bbmn.train.checkpoint import load_checkpoint
from bbmn.train.tracking import Tracker
from tests.conftest import free_port
from tests.inference.runs import REGISTERED, finetuned_runs
from tests.processes import stop_process_group

MLFLOW = Path(sys.executable).with_name("mlflow")
SMILES = ["CCO", "c1ccccc1O", "not_a_smiles", "CC(=O)Oc1ccccc1C(=O)O", "[Na+].[O-]C(=O)c1ccccc1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return finetuned_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def expected(runs, tmp_path_factory):
    """bbmn predict's output for SMILES, per run."""
    d = tmp_path_factory.mktemp("expected")
    (d / "in.csv").write_text("smiles\n" + "".join(f"{s}\n" for s in SMILES))
    out = {}
    for run in ("bbbp0", "esol0"):
        predict_file([runs[run]], d / "in.csv", d / f"{run}.csv")
        out[run] = pd.read_csv(d / f"{run}.csv", keep_default_na=False, na_values=[""])
    return out


@pytest.mark.parametrize("run, task", [("bbbp0", "p_np"), ("esol0", "logSolubility")])
def test_the_run_directory_holds_a_pyfunc_model_that_predicts_like_bbmn_predict(runs, expected, run, task):
    model = mlflow.pyfunc.load_model(str(runs[run] / PYFUNC_DIR))
    inputs = model.metadata.get_input_schema().input_names()
    outputs = model.metadata.get_output_schema().input_names()
    assert inputs == ["smiles"] and outputs == ["row", "input", "smiles", "status", "detail", task]
    assert (runs[run] / PYFUNC_DIR / "input_example.json").is_file()
    got = model.predict(pd.DataFrame({"smiles": SMILES}))
    want = expected[run]
    assert list(got.columns) == list(want.columns) and len(got) == len(SMILES)
    assert got["status"].tolist() == want["status"].tolist() == ["ok", "ok", "invalid_smiles", "ok", "ok"]
    assert np.allclose(got[task].to_numpy(float), want[task].to_numpy(float), equal_nan=True)


def test_each_finetuning_run_logs_its_model_to_the_tracking_store(runs):
    client = MlflowClient(runs["mlflow_uri"])
    experiment = client.get_experiment_by_name("bbmn").experiment_id
    finetunes = client.search_runs([experiment], "tags.stage = 'finetune'")
    models = client.search_logged_models([experiment])
    assert len(finetunes) == 3 and len(models) == 3
    assert {m.source_run_id for m in models} == {r.info.run_id for r in finetunes}
    assert all(m.status == LoggedModelStatus.READY for m in models)
    bbbp = next(r for r in finetunes if r.data.tags["dataset"] == "bbbp" and r.data.tags["seed"] == "0")
    model_id = next(m.model_id for m in models if m.source_run_id == bbbp.info.run_id)
    mlflow.set_tracking_uri(runs["mlflow_uri"])
    try:
        got = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(pd.DataFrame({"smiles": SMILES}))
    finally:
        mlflow.set_tracking_uri(None)
    local = mlflow.pyfunc.load_model(str(runs["bbbp0"] / PYFUNC_DIR)).predict(pd.DataFrame({"smiles": SMILES}))
    assert np.allclose(got["p_np"].to_numpy(float), local["p_np"].to_numpy(float), equal_nan=True)


def test_the_model_carries_bbmn_as_a_wheel_and_pins_the_training_environment(runs):
    model_dir = runs["bbbp0"] / PYFUNC_DIR
    [name] = [p.name for p in (model_dir / WHEELS).iterdir()]
    assert name.startswith(f"bbmn-{version('bbmn')}+sha") and name.endswith("-py3-none-any.whl")
    wheel = f"{WHEELS}/{name}"
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert requirements[-1] == wheel
    for library in ("torch", "torch-geometric", "rdkit", "descriptastorus", "numpy", "mlflow", "cloudpickle"):
        assert f"{library}=={version(library).split('+')[0]}" in requirements
    conda = yaml.safe_load((model_dir / "conda.yaml").read_text())
    assert wheel in next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    with zipfile.ZipFile(model_dir / wheel) as whl:
        names = whl.namelist()
    release = name.split("-")[1]
    assert "bbmn/inference/pyfunc.py" in names and f"bbmn-{release}.dist-info/RECORD" in names
    assert bbmn_wheel() == bbmn_wheel()  # the same code, the same bytes


@pytest.mark.slow
def test_a_process_whose_bbmn_is_the_models_wheel_loads_and_predicts(runs, expected, tmp_path):
    """The wheel installs offline (pip, no index) and is all of bbmn the model needs."""
    model_dir = runs["bbbp0"] / PYFUNC_DIR
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(site), *map(str, (model_dir / WHEELS).glob("*.whl"))], check=True)
    script = ("import json, sys, bbmn, mlflow.pyfunc, pandas as pd\n"
              "from importlib.metadata import version\n"
              "got = mlflow.pyfunc.load_model(sys.argv[1]).predict(pd.DataFrame({'smiles': json.loads(sys.argv[2])}))\n"
              "print(json.dumps({'bbmn': bbmn.__file__, 'version': version('bbmn'),\n"
              "                  'status': got['status'].tolist(), 'p_np': got['p_np'].tolist()}))")
    # PYTHONPATH comes before the venv's editable bbmn; the working directory holds no bbmn
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(model_dir), json.dumps(SMILES)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.splitlines()[-1])
    assert Path(got["bbmn"]).is_relative_to(site) and "+sha" in got["version"]
    want = expected["bbbp0"]
    assert got["status"] == want["status"].tolist()
    assert np.allclose(np.array(got["p_np"], float), want["p_np"].to_numpy(float), equal_nan=True)


def test_finetuning_registers_its_packaged_model_with_its_card(runs, tmp_path):
    client = MlflowClient(runs["mlflow_uri"])
    versions = sorted(client.search_model_versions(f"name = '{REGISTERED}'"), key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2]
    for seed, registered in enumerate(versions):
        card = load_checkpoint(runs[f"bbbp{seed}"] / "model.pt")["card"]
        assert registered.tags["card.kind"] == "batmannet-finetuned"
        assert registered.tags["card.training_config.seed"] == str(seed)
        assert registered.tags["card.metrics.test.value"] == str(card["metrics"]["test"]["value"])
        assert client.get_run(registered.run_id).data.tags["seed"] == str(seed)
    mlflow.set_tracking_uri(runs["mlflow_uri"])
    try:
        local = Path(download_artifacts(f"models:/{REGISTERED}/2", dst_path=str(tmp_path)))
    finally:
        mlflow.set_tracking_uri(None)
    assert list((local / WHEELS).glob("bbmn-*.whl"))
    got = mlflow.pyfunc.load_model(str(local)).predict(pd.DataFrame({"smiles": SMILES}))
    want = mlflow.pyfunc.load_model(str(runs["bbbp1"] / PYFUNC_DIR)).predict(pd.DataFrame({"smiles": SMILES}))
    assert np.allclose(got["p_np"].to_numpy(float), want["p_np"].to_numpy(float), equal_nan=True)


def test_logging_a_model_respects_skipped_tracking(tmp_path):
    tracker = Tracker("x", enabled=False)
    with tracker:
        assert tracker.log_model(tmp_path) is None
    unreachable = Tracker("x", uri="http://127.0.0.1:9", required=False)
    with unreachable:
        assert unreachable.log_model(tmp_path) is None and not unreachable.enabled



def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def serve(model: str, env_manager: str, env: dict, start_seconds: float) -> list[dict]:
    """Start `mlflow models serve`, post SMILES to it, stop it; the predictions."""
    port = free_port()
    env = {**os.environ, "PATH": os.pathsep.join([str(MLFLOW.parent), os.environ.get("PATH", "")]),
           "OMP_NUM_THREADS": "1", **env}
    server = subprocess.Popen([str(MLFLOW), "models", "serve", "-m", model, "--env-manager", env_manager,
                               "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"mlflow models serve did not start in {start_seconds} s"
            time.sleep(0.5)
        answer = post(f"http://127.0.0.1:{port}/invocations",
                      {"dataframe_split": {"columns": ["smiles"], "data": [[s] for s in SMILES]}})
    finally:
        stop_process_group(server)
    return answer["predictions"]


@pytest.mark.slow
def test_mlflow_models_serve_scores_smiles_over_http(runs, expected):
    got = pd.DataFrame(serve(str(runs["bbbp0"] / PYFUNC_DIR), "local", {}, start_seconds=120))
    want = expected["bbbp0"]
    assert got["status"].tolist() == want["status"].tolist()
    assert got["row"].tolist() == list(range(len(SMILES)))
    assert np.allclose(got["p_np"].to_numpy(float), want["p_np"].to_numpy(float), equal_nan=True)


#: opt-in: MLflow builds the model's own environment from a package index (about 2 GB, 7 minutes)
ENV_MANAGER = os.environ.get("BBMN_TEST_SERVE_ENV_MANAGER")


@pytest.mark.slow
@pytest.mark.skipif(not ENV_MANAGER, reason="set BBMN_TEST_SERVE_ENV_MANAGER=virtualenv (or uv) to let "
                    "MLflow build the model's environment from PyPI: it downloads about 2 GB, and "
                    "tests do not download by default")
def test_the_registered_ensemble_serves_from_an_environment_mlflow_builds(runs, tmp_path):
    """The packaged model needs nothing of this checkout: MLflow installs its requirements and the
    bbmn wheel it carries into a new environment and serves models:/<name>/<version> from there."""
    from bbmn.cli.main import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensemble = runs["root"] / "bbbp" / "pretrained"
    assert main(["register", str(ensemble), "--name", "served", "--out", str(tmp_path / "model"),
                 "--tracking-uri", uri]) == 0
    envs = Path(os.environ.get("MLFLOW_ENV_ROOT", tmp_path / "envs"))  # a set root is reused
    got = pd.DataFrame(serve("models:/served/1", ENV_MANAGER,
                             {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ENV_ROOT": str(envs)}, start_seconds=3600))
    (tmp_path / "in.csv").write_text("smiles\n" + "".join(f"{s}\n" for s in SMILES))
    predict_file([ensemble], tmp_path / "in.csv", tmp_path / "want.csv")
    want = pd.read_csv(tmp_path / "want.csv", keep_default_na=False, na_values=[""])
    assert got["status"].tolist() == want["status"].tolist()
    for column in ("p_np", "p_np_std"):
        assert np.allclose(got[column].to_numpy(float), want[column].to_numpy(float), equal_nan=True)
    release = bbmn_wheel()[0].split("-")[1]  # 0.1.0+sha<code hash>: the environment has this code
    assert list(envs.glob(f"*/lib/python*/site-packages/bbmn-{release}.dist-info"))
