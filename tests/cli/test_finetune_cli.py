"""``bbmn finetune`` in-process: the summary line, sizes from a checkpoint, one-line user errors."""

import json

import pytest

from bbmn.cli.main import main
from tests.data.test_labelled import bbbp  # noqa: F401
# mlflow_uri: the module's runs share one tracking store (tests/cli/conftest.py's is one per test)
from tests.train.test_finetune import mlflow_uri, pretrained  # noqa: F401


def args(files, out, *extra):
    return ["finetune", str(files["cache"]), "--descriptors", str(files["descriptors"]),
            "--split", str(files["split1"]), "--out", str(out), "--dataset", "bbbp",
            "--metric", "roc_auc", "--epochs", "1", "--threads", "1", *extra]


def test_scratch_run_prints_its_summary_last(tmp_path, bbbp, capsys):
    code = main(args(bbbp, tmp_path / "run", "--hidden", "32", "--encoder-blocks", "2", "--seed", "3",
                     "--disagreement", "0.5"))
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(summary) == ["dataset", "seed", "init", "row", "metric", "test", "val", "best_epoch",
                             "epochs_run", "seconds", "peak_rss_mb"]
    assert summary["init"] == "scratch" and summary["seed"] == 3 and summary["epochs_run"] == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["test"] == metrics["test"]["value"] and summary["val"] == metrics["val"]["value"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["hidden"] == 32 and config["model"]["encoder_blocks"] == 2
    assert config["model"]["disagreement"] == 0.5 and config["disagreement"] == 0.5


def test_pretrained_run_takes_the_encoder_sizes_from_the_checkpoint(tmp_path, bbbp, pretrained, capsys):
    assert main(args(bbbp, tmp_path / "run", "--checkpoint", str(pretrained))) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["init"] == "pretrained"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["model"]["hidden"], config["model"]["encoder_blocks"]) == (32, 2)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["checkpoint"]["path"] == str(pretrained) and metrics["checkpoint"]["loaded"] > 0


def test_a_size_flag_that_contradicts_the_checkpoint_is_an_error(tmp_path, bbbp, pretrained, capsys):
    code = main(args(bbbp, tmp_path / "run", "--checkpoint", str(pretrained), "--hidden", "64"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("bbmn finetune: error: model sizes conflict with the pre-trained checkpoint")


def test_a_metric_that_does_not_fit_the_task_is_an_error(tmp_path, bbbp, capsys):
    code = main([a if a != "roc_auc" else "mae" for a in args(bbbp, tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "metric mae does not fit a classification dataset" in err


def test_finetune_is_listed_after_pretrain(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "finetune" in text and text.index("pretrain") < text.index("finetune")
