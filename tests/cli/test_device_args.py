"""``--device`` on every command that runs a model: in the help, checked at the start with a
one-line error, and, on the CPU, the same numbers as before devices were a choice."""

import json

import pytest
import torch

from bbmn.cli.main import main
from bbmn.train import device
from tests.data.test_labelled import labelled_files

CUDA = torch.cuda.is_available()
NO_GPU = ("this machine has no CUDA GPU (torch.cuda.is_available() is False); "
          "use --device cpu or auto")


@pytest.fixture(scope="module")
def bbbp(tmp_path_factory):
    return labelled_files(tmp_path_factory, "bbbp")


def finetune_args(files, out, *extra):
    return ["finetune", str(files["cache"]), "--descriptors", str(files["descriptors"]),
            "--split", str(files["split1"]), "--out", str(out), "--dataset", "bbbp", "--metric", "roc_auc",
            "--epochs", "1", "--threads", "1", "--hidden", "32", "--encoder-blocks", "2", *extra]


@pytest.fixture(scope="module")
def auto_run(bbbp, tmp_path_factory):
    """A fine-tuning run with the default device (the CPU on a machine without a GPU)."""
    out = tmp_path_factory.mktemp("auto") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BBMN_PLAIN_MALLOC", "1")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out.parent / 'mlflow.db'}")
        assert main(finetune_args(bbbp, out)) == 0
    return out


def one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith(f"bbmn {command}: error: ")]
    assert len(errors) == 1, err
    return errors[0].removeprefix(f"bbmn {command}: error: ")


@pytest.mark.parametrize("command", ["pretrain", "finetune", "probe", "predict", "embed"])
def test_help_shows_device(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--device DEVICE" in text and "cuda:N" in text
    assert ("--bf16" in text) == (command in ("pretrain", "finetune"))


def test_finetune_on_the_cpu_gives_the_default_runs_numbers(bbbp, auto_run, tmp_path, capsys):
    assert main(finetune_args(bbbp, tmp_path / "cpu", "--device", "cpu")) == 0
    auto, cpu = (json.loads((d / "metrics.json").read_text()) for d in (auto_run, tmp_path / "cpu"))
    if not CUDA:  # auto is the CPU here: the same numbers, bit for bit
        assert (cpu["val"], cpu["test"], cpu["best_epoch"]) == (auto["val"], auto["test"], auto["best_epoch"])
        assert (tmp_path / "cpu" / "predictions.csv").read_bytes() == (auto_run / "predictions.csv").read_bytes()
    config = json.loads((tmp_path / "cpu" / "config.json").read_text())
    assert config["device"] == "cpu" and config["bf16"] is False


def test_bf16_on_a_cpu_without_native_bf16_warns_and_runs_float32(bbbp, auto_run, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert main(finetune_args(bbbp, tmp_path / "bf16", "--device", "cpu", "--bf16")) == 0
    assert "--bf16 needs a GPU or a CPU with native bf16" in capsys.readouterr().err
    if not CUDA:
        assert (tmp_path / "bf16" / "predictions.csv").read_bytes() == (auto_run / "predictions.csv").read_bytes()


def test_bf16_on_a_cpu_with_native_bf16_autocasts(bbbp, tmp_path, monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)  # use_bf16 sets it; restored
    assert main(finetune_args(bbbp, tmp_path / "bf16", "--device", "cpu", "--bf16")) == 0
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["bf16"] is True


@pytest.mark.skipif(CUDA, reason="checks the message of a machine without a CUDA GPU")
def test_finetune_on_cuda_without_a_gpu_is_one_line(bbbp, tmp_path, capsys):
    assert main(finetune_args(bbbp, tmp_path / "run", "--device", "cuda")) == 2
    assert one_line_error(capsys, "finetune") == f"--device cuda asked, but {NO_GPU}"
    assert not (tmp_path / "run" / "config.json").exists()


def test_predict_and_embed_on_the_cpu_match_the_default(auto_run, tmp_path, capsys):
    inputs = tmp_path / "mols.csv"
    inputs.write_text("smiles\nCCO\nc1ccccc1O\nnot-a-smiles\nCC(=O)Nc1ccc(O)cc1\n")
    for command, model, suffix in (("predict", ["--model", str(auto_run)], "csv"),
                                   ("embed", ["--checkpoint", str(auto_run / "model.pt")], "parquet")):
        outputs = []
        for device in ([], ["--device", "cpu"]):
            out = tmp_path / f"{command}{len(outputs)}.{suffix}"
            assert main([command, str(inputs), *model, "--out", str(out), "--threads", "1", *device]) == 0
            outputs.append(out)
        if not CUDA and command == "predict":
            assert outputs[0].read_bytes() == outputs[1].read_bytes()
        if not CUDA and command == "embed":
            import pyarrow.parquet as pq

            a, b = (pq.read_table(p).column("embedding").to_pylist() for p in outputs)
            assert json.dumps(a) == json.dumps(b)


@pytest.mark.parametrize("command", ["predict", "embed", "probe"])
def test_a_bad_device_is_one_line_before_any_work(command, bbbp, auto_run, tmp_path, capsys):
    inputs = tmp_path / "mols.csv"
    inputs.write_text("smiles\nCCO\n")
    argv = {"predict": ["predict", str(inputs), "--model", str(auto_run), "--out", str(tmp_path / "p.csv")],
            "embed": ["embed", str(inputs), "--checkpoint", str(auto_run / "model.pt"),
                      "--out", str(tmp_path / "e.parquet")],
            "probe": ["probe", str(bbbp["cache"]), "--splits", str(bbbp["split0"]), "--out", str(tmp_path / "probe"),
                      "--dataset", "bbbp", "--metric", "roc_auc", "--checkpoint", str(auto_run / "model.pt")]}[command]
    assert main([*argv, "--device", "tpu"]) == 2
    assert one_line_error(capsys, command) == "--device 'tpu' is not a device; use one of auto, cpu, cuda, cuda:N"
    assert not (tmp_path / "probe").exists()


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_finetune_on_a_gpu_with_bf16(bbbp, tmp_path, capsys):
    assert main(finetune_args(bbbp, tmp_path / "gpu", "--device", "cuda", "--bf16")) == 0
    metrics = json.loads((tmp_path / "gpu" / "metrics.json").read_text())
    assert 0 <= metrics["test"]["value"] <= 1
    config = json.loads((tmp_path / "gpu" / "config.json").read_text())
    assert config["device"].startswith("cuda") and config["bf16"] is True
