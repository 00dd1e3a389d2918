"""``bbmn probe`` in-process: help, a run end to end with its summary line, tracking, one-line errors."""

import json

import pytest
import torch

from bbmn.cli.main import main
from bbmn.io import read_json
from tests.eval.test_probe import probe_files

SMALL = ["--random-init", "--hidden", "16", "--heads", "2", "--depth", "2", "--encoder-blocks", "2",
         "--threads", "1"]


@pytest.fixture(scope="module")
def bbbp(tmp_path_factory):
    return probe_files(tmp_path_factory, "bbbp_150")


def args(files, out, *extra, metric="roc_auc"):
    return ["probe", str(files["cache"]), "--splits", *map(str, files["splits"]), "--out", str(out),
            "--dataset", "bbbp", "--metric", metric, *extra]


def test_help_names_the_encoders_and_options(capsys):
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    text = capsys.readouterr().out
    for option in ("--splits", "--checkpoint", "--random-init", "--init-seed", "--encoder-blocks",
                   "--embeddings", "--name", "--add-positions", "--drop-missing", "--c-grid", "--alpha-grid",
                   "--solver", "--batch-size", "--threads", "--tracking-parent", "--tracking-required"):
        assert option in text
    assert "source data row" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    commands = capsys.readouterr().out
    assert commands.index("finetune") < commands.index("probe") < commands.index("predict")


def test_random_probe_runs_every_split_and_prints_its_summary_last(tmp_path, bbbp, capsys):
    out = tmp_path / "probe"
    assert main(args(bbbp, out, *SMALL, "--init-seed", "3", "--c-grid", "0.1", "1")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["row"] == "probe_random" and summary["metric"] == "roc_auc"
    assert [r["seed"] for r in summary["runs"]] == bbbp["seeds"]
    for run in summary["runs"]:
        metrics = read_json(out / f"seed{run['seed']}" / "metrics.json")
        assert run["test"] == metrics["test"]["value"] and run["C"] == metrics["selected"]["C"] in (0.1, 1.0)
        assert metrics["encoder"]["init_seed"] == 3 and metrics["encoder"]["config"]["encoder_blocks"] == 2
    assert read_json(out / "health.json")["health"]["stage_cosine"]["edge"][-1] <= 1.0


def test_each_split_is_a_child_run_with_the_health_numbers(tmp_path, bbbp, monkeypatch):
    from mlflow.tracking import MlflowClient

    from bbmn.train.tracking import init_store

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/track.db"
    parent = init_store(tmp_path / "parent.json", uri=uri, experiment="t")
    assert main(args(bbbp, tmp_path / "probe", *SMALL, "--tracking-parent", str(tmp_path / "parent.json"))) == 0
    runs = MlflowClient(uri).search_runs([parent["experiment_id"]], "tags.stage = 'probe'")
    assert sorted(int(r.data.tags["seed"]) for r in runs) == bbbp["seeds"]
    for run in runs:
        assert run.data.tags["mlflow.parentRunId"] == parent["parent_run_id"]
        assert run.data.tags["row"] == "probe_random"
        metrics = read_json(tmp_path / "probe" / f"seed{run.data.tags['seed']}" / "metrics.json")
        assert run.data.metrics["test_roc_auc"] == pytest.approx(metrics["test"]["value"])
        assert run.data.metrics["health.atom.spread"] == pytest.approx(metrics["health"]["atom"]["spread"])
        assert "health.stage_cosine.atom.2" in run.data.metrics  # the last of two blocks


def test_user_errors_are_one_line(tmp_path, bbbp, capsys):
    torch.save({"kind": "chemprop", "model": {}}, tmp_path / "other.pt")
    assert main(args(bbbp, tmp_path / "p", "--checkpoint", str(tmp_path / "other.pt"))) == 2
    err = capsys.readouterr().err
    assert err.startswith("bbmn probe: error:") and "kind 'chemprop', not a BatmanNet model" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(args(bbbp, tmp_path / "p", "--embeddings", str(tmp_path / "e.npy"))) == 2
    assert "--embeddings needs --name" in capsys.readouterr().err
    assert main(args(bbbp, tmp_path / "p", "--checkpoint", "m.pt", "--hidden", "32", "--init-seed", "1")) == 2
    assert "--hidden, --init-seed set up a random encoder: they go with --random-init" in capsys.readouterr().err
    assert main(args(bbbp, tmp_path / "p", *SMALL, "--name", "x")) == 2
    assert "--name names an external encoder" in capsys.readouterr().err
    assert main(args(bbbp, tmp_path / "p", *SMALL, metric="mae")) == 2
    assert "metric mae does not fit a classification dataset" in capsys.readouterr().err
    assert main(args(bbbp, tmp_path / "p", *SMALL, "--c-grid", "0")) == 2
    assert "the C grid must hold positive numbers" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
