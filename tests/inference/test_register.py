"""`bbmn register`: a dataset's seed runs become one version in the MLflow Model Registry that
predicts what `bbmn predict` gives for the same runs, with tags that say what the ensemble is."""

import json
import math
import statistics

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bbmn.cli.main import main
from bbmn.inference.predict import predict_file
from bbmn.inference.pyfunc import PYFUNC_DIR
from bbmn.io import read_json
from tests.inference.runs import finetuned_runs

SMILES = ["CCO", "c1ccccc1O", "not_a_smiles", "CC(=O)Oc1ccccc1C(=O)O"]
NAME = "bbbp-ensemble"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return finetuned_runs(tmp_path_factory)


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path / 'registry.db'}"


def registered_predictions(uri: str, name: str, version: int) -> pd.DataFrame:
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    finally:
        mlflow.set_tracking_uri(None)
    return model.predict(pd.DataFrame({"smiles": SMILES}))


def test_the_registered_ensemble_predicts_like_bbmn_predict_on_the_same_runs(runs, store, tmp_path, capsys):
    ensemble = runs["root"] / "bbbp" / "pretrained"
    record = tmp_path / "registration.json"
    assert main(["register", str(ensemble), "--name", NAME, "--tracking-uri", store,
                 "--record", str(record)]) == 0
    assert f"models:/{NAME}/1" in capsys.readouterr().out
    registration = read_json(record)
    assert registration["version"] == 1 and registration["model_dir"] == str(ensemble / PYFUNC_DIR)
    assert registration["members"] == [str(ensemble / f"seed{s}" / "model.pt") for s in (0, 1)]

    (tmp_path / "in.csv").write_text("smiles\n" + "".join(f"{s}\n" for s in SMILES))
    predict_file([ensemble], tmp_path / "in.csv", tmp_path / "want.csv")
    want = pd.read_csv(tmp_path / "want.csv", keep_default_na=False, na_values=[""])
    got = registered_predictions(store, NAME, 1)
    assert list(got.columns) == list(want.columns) == ["row", "input", "smiles", "status", "detail",
                                                       "p_np", "p_np_std"]
    assert got["status"].tolist() == want["status"].tolist() == ["ok", "ok", "invalid_smiles", "ok"]
    for column in ("p_np", "p_np_std"):
        assert np.allclose(got[column].to_numpy(float), want[column].to_numpy(float), equal_nan=True)
    assert (got["p_np_std"].dropna() > 0).all()  # two different members, not one twice


def test_the_versions_tags_name_the_members_their_scores_and_what_they_share(runs, store):
    ensemble = runs["root"] / "bbbp" / "pretrained"
    for expected_version in (1, 2):  # registering again adds a version
        assert main(["register", str(ensemble), "--name", NAME, "--tracking-uri", store]) == 0
    client = MlflowClient(store)
    versions = sorted(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))
    assert [int(v.version) for v in versions] == [1, 2]
    tags = versions[-1].tags
    test_scores = [read_json(ensemble / f"seed{s}" / "metrics.json")["test"]["value"] for s in (0, 1)]
    assert tags["ensemble.members"] == "2" and tags["ensemble.seeds"] == "0,1"
    assert tags["ensemble.dataset"] == "bbbp" and tags["ensemble.kind"] == "pretrained"
    assert tags["ensemble.tasks"] == "p_np" and tags["ensemble.metric"] == "roc_auc"
    scored = {s: v for s, v in enumerate(test_scores) if math.isfinite(v)}  # a tiny test part may
    assert scored and tags["metrics.test.n"] == str(len(scored))       # hold one class only
    for seed, value in scored.items():
        assert float(tags[f"metrics.test.seed{seed}"]) == pytest.approx(value)
    assert float(tags["metrics.test.mean"]) == pytest.approx(statistics.fmean(scored.values()))
    assert float(tags["metrics.test.std"]) == pytest.approx(statistics.pstdev(scored.values()))
    assert tags["card.kind"] == "batmannet-finetuned"
    assert "card.training_config.epochs" in tags
    assert "card.training_config.seed" not in tags  # differs between members
    run = client.get_run(versions[-1].run_id)
    assert run.data.tags["stage"] == "register" and run.data.tags["registered_model"] == NAME
    assert run.data.metrics["metrics.test.mean"] == pytest.approx(statistics.fmean(scored.values()))


def test_runs_of_other_tasks_are_refused_before_anything_is_registered(runs, store, tmp_path, capsys):
    assert main(["register", str(runs["bbbp0"]), str(runs["esol0"]), "--name", "mixed",
                 "--tracking-uri", store, "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert "an ensemble needs the same tasks" in err and "Traceback" not in err
    assert not (tmp_path / "model").exists()
    assert MlflowClient(store).search_registered_models() == []


def test_an_unusable_store_is_an_error_not_a_warning(runs, tmp_path, capsys):
    code = main(["register", str(runs["bbbp0"]), "--name", NAME, "--out", str(tmp_path / "model"),
                 "--tracking-uri", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "MLflow tracking failed" in err and "127.0.0.1:9" in err


def test_the_registering_run_nests_under_the_workflows_parent_run(runs, store, tmp_path):
    from bbmn.train.tracking import init_store

    parent = init_store(tmp_path / "parent.json", store)
    assert main(["register", str(runs["bbbp0"]), "--name", "single", "--out", str(tmp_path / "m"),
                 "--tracking-parent", str(tmp_path / "parent.json")]) == 0
    version = MlflowClient(store).get_model_version("single", "1")
    run = MlflowClient(store).get_run(version.run_id)
    assert run.data.tags["mlflow.parentRunId"] == parent["parent_run_id"]
    assert json.loads(json.dumps(version.tags))["ensemble.members"] == "1"
