"""Model cards: every model file carries one, as data; a model this bbmn cannot use is refused in
one line by every command that reads models; a file written before cards still loads; `bbmn
pretrain --register` puts the model and its card in the MLflow Model Registry."""

import csv
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

import bbmn
from bbmn.chem.features import ATOM_DIM, EDGE_DIM, FEATURIZER_VERSION
from bbmn.chem.standardize import profile
from bbmn.cli.main import main
from bbmn.data.cache import featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.errors import BbmnError
from bbmn.eval.probe import checkpoint_encoder
from bbmn.inference.predict import Predictor
from bbmn.io import sha256_file
from bbmn.train.finetune import FinetuneConfig, finetune
from tests.conftest import TEST_DATA
from tests.data.test_labelled import labelled_files

_BUILT: dict = {}


def tiny_pretrained(tmp_path_factory) -> dict:
    """``bbmn pretrain`` in-process (small sizes, two steps, a snapshot after one, registered as
    ``tiny`` in a temporary MLflow store), once per test session."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _BUILT:
        d = tmp_path_factory.mktemp("carded")
        clean(TEST_DATA / "zinc_200.smi", d / "c.parquet", d / "r.csv", None,
              CleanConfig(standardize=profile("standard"), dedupe=True))
        featurize(d / "c.parquet", d / "cache.parquet")
        uri = f"sqlite:///{d / 'mlflow.db'}"
        mp = pytest.MonkeyPatch()
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("BBMN_PLAIN_MALLOC", "1")  # in-process: no re-exec of the test process
        try:
            assert main(["pretrain", str(d / "cache.parquet"), "--out", str(d / "run"), "--batch-size", "8",
                         "--epochs", "1", "--max-steps", "2", "--threads", "1", "--hidden", "32",
                         "--encoder-blocks", "2", "--decoder-blocks", "1", "--snapshot-steps", "1",
                         "--register", "tiny"]) == 0
        finally:
            mp.undo()
        _BUILT[key] = {"cache": d / "cache.parquet", "model": d / "run" / "model.pt",
                       "snapshot": d / "run" / "snapshots" / "step-1.pt", "uri": uri}
    return _BUILT[key]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return tiny_pretrained(tmp_path_factory)


@pytest.fixture(scope="module")
def bbbp(tmp_path_factory):
    return labelled_files(tmp_path_factory, "bbbp")


@pytest.fixture(autouse=True)
def quiet_env(monkeypatch, tmp_path):
    monkeypatch.setenv("BBMN_PLAIN_MALLOC", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def assert_plain(value):
    """Only what loads with ``weights_only=True`` and prints as JSON."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain(v)
    else:
        assert value is None or type(value) in (bool, int, float, str), repr(value)


def test_every_pretrained_model_file_carries_a_card_that_loads_as_data(pretrained):
    for path, steps in ((pretrained["model"], 2), (pretrained["snapshot"], 1)):
        saved = torch.load(path, weights_only=True)
        card = saved["card"]
        assert_plain(card)
        assert card["kind"] == saved["kind"] == "batmannet-pretrained" and card["card_version"] == 1
        assert card["model_config"] == saved["model_config"] and card["model_config"]["hidden"] == 32
        assert card["training_config"]["batch_size"] == 8 and card["training_config"]["register"] == "tiny"
        assert card["data"]["corpus"]["sha256"] == sha256_file(pretrained["cache"])
        assert card["data"]["corpus"]["molecules"] > card["data"]["corpus"]["val_molecules"] > 0
        assert card["progress"]["steps"] == steps
        assert card["featurizer"] == {"version": FEATURIZER_VERSION, "atom_dim": ATOM_DIM, "edge_dim": EDGE_DIM}
        software = card["software"]
        assert software["bbmn"] == bbmn.__version__ and software["torch"] == str(torch.__version__)
        assert software["git_commit"] is None or len(software["git_commit"]) >= 40
        assert datetime.fromisoformat(card["created"]).tzinfo is not None
    final = torch.load(pretrained["model"], weights_only=True)["card"]
    assert math.isfinite(final["metrics"]["val_loss"]) and final["metrics"]["step"] == 2
    assert final["ended"] == "done" and final["parameters"] > 0


def test_pretrain_registers_its_model_with_the_card_as_tags(pretrained):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pretrained["uri"])
    (version,) = client.search_model_versions("name='tiny'")
    card = torch.load(pretrained["model"], weights_only=True)["card"]
    assert version.tags["card.kind"] == "batmannet-pretrained"
    assert version.tags["card.data.corpus.sha256"] == card["data"]["corpus"]["sha256"]
    assert version.tags["card.model_config.hidden"] == "32"
    stored = Path(version.source.removeprefix("file://"))  # the run's logged model
    assert sha256_file(stored / "model.pt") == sha256_file(pretrained["model"])


def test_a_file_from_before_cards_still_fine_tunes_and_predicts(pretrained, bbbp, tmp_path, caplog):
    saved = torch.load(pretrained["model"], weights_only=True)
    del saved["card"]
    torch.save(saved, tmp_path / "old.pt")
    metrics = finetune(bbbp["cache"], bbbp["descriptors"], bbbp["split1"], tmp_path / "ft",
                       FinetuneConfig(dataset="bbbp", epochs=1, threads=1), checkpoint=tmp_path / "old.pt")
    assert "old.pt has no model card" in caplog.text
    tuned = torch.load(tmp_path / "ft" / "model.pt", weights_only=True)
    card = tuned["card"]  # the fine-tuned model has one of its own
    assert_plain(card)
    assert card["kind"] == "batmannet-finetuned" and card["model_config"] == tuned["model_config"]
    assert card["metrics"]["test"]["value"] == metrics["test"]["value"]
    assert card["metrics"]["val"]["value"] == metrics["val"]["value"]
    assert card["data"]["checkpoint"]["sha256"] == sha256_file(tmp_path / "old.pt")
    assert card["data"]["split"]["sha256"] == sha256_file(bbbp["split1"])
    assert card["progress"]["epochs"] == 1 and card["best_epoch"] == 1
    assert card["task"] == {"dataset": "bbbp", "tasks": ["p_np"], "task_type": "classification",
                            "metric": "roc_auc"}
    del tuned["card"]
    torch.save(tuned, tmp_path / "old-tuned.pt")
    _, values = Predictor.from_paths([tmp_path / "old-tuned.pt"]).predict_smiles(["CCO", "c1ccccc1O"])
    assert values.shape == (2, 1) and np.isfinite(values).all()


def _drop_edge_blocks(saved):
    for name in [n for n in saved["model"] if n.startswith("edge_encoder.blocks.")]:
        del saved["model"][name]


REFUSALS = [
    (lambda s: s.update(kind="chemprop"), "is a checkpoint of kind 'chemprop', not a BatmanNet model"),
    (lambda s: s["card"]["featurizer"].update(version=2), "was made for featurizer version 2"),
    (lambda s: s["card"]["featurizer"].update(atom_dim=40),
     r"featurizer version 1 \(40 atom, 50 edge features\); this bbmn featurizes with version 1 \(39 atom"),
    (lambda s: (s.pop("card"), s.update(featurizer_version=3)), "was made for featurizer version 3"),
    (lambda s: s["model_config"].update(gated=True), r"model_config keys gated are unknown to this bbmn"),
    (_drop_edge_blocks, r"has no encoder weights edge_encoder\.blocks\.\*"),
]


@pytest.mark.parametrize("change, reason", REFUSALS)
def test_a_model_this_bbmn_cannot_use_is_refused_in_one_line(pretrained, bbbp, tmp_path, capsys,
                                                             change, reason):
    saved = torch.load(pretrained["model"], weights_only=True)
    change(saved)
    bad = tmp_path / "bad.pt"
    torch.save(saved, bad)
    inputs = tmp_path / "in.csv"
    inputs.write_text("smiles\nCCO\n")
    commands = {
        "finetune": ["finetune", str(bbbp["cache"]), "--descriptors", str(bbbp["descriptors"]), "--split",
                     str(bbbp["split1"]), "--out", str(tmp_path / "ft"), "--dataset", "bbbp", "--metric",
                     "roc_auc", "--checkpoint", str(bad), "--threads", "1"],
        "embed": ["embed", str(inputs), "--checkpoint", str(bad), "--out", str(tmp_path / "e.parquet")],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"bbmn {name}: error: {bad}") and len(err.strip().splitlines()) == 1, err
        assert re.search(reason, err), err
    with pytest.raises(BbmnError, match=reason):
        checkpoint_encoder(bad)  # bbmn probe --checkpoint
    assert not (tmp_path / "ft" / "model.pt").exists() and not (tmp_path / "e.parquet").exists()


def test_predict_refuses_a_pretrained_model_in_one_line(pretrained, tmp_path, capsys):
    inputs = tmp_path / "in.csv"
    with open(inputs, "w", newline="") as fh:
        csv.writer(fh).writerows([["smiles"], ["CCO"]])
    assert main(["predict", str(inputs), "--model", str(pretrained["model"]), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert err == (f"bbmn predict: error: {pretrained['model']} is a pre-trained model, not a fine-tuned "
                   f"model: bbmn predict needs bbmn finetune's model.pt\n")
