"""The determinism switch: two seeded runs give the same numbers, and the switch is scoped."""

import pytest
import torch

from bbmn.train.determinism import deterministic
from bbmn.train.finetune import FinetuneConfig, finetune
from bbmn.train.pretrain import PretrainConfig, pretrain
from tests.models.test_finetune import SMALL
from tests.train.test_tracking_faults import bbbp, zinc_cache  # noqa: F401 (module fixtures)


@pytest.fixture(autouse=True)
def no_tracking(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")


def test_the_switch_turns_torch_deterministic_mode_on_and_back_off():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic(True):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic(False):
        assert torch.are_deterministic_algorithms_enabled() == before


def test_two_deterministic_pretraining_runs_give_the_same_weights(tmp_path, zinc_cache):  # noqa: F811
    cfg = PretrainConfig(batch_size=16, epochs=1, max_steps=4, val_batches=1, threads=1,
                         deterministic=True, model={**SMALL, "decoder_blocks": 1})
    a = pretrain(zinc_cache, tmp_path / "a", cfg)
    b = pretrain(zinc_cache, tmp_path / "b", cfg)
    assert a["weights_digests"] == b["weights_digests"]
    timing = {"molecules_per_s"}
    assert {k: v for k, v in a["final"].items() if k not in timing} == {
        k: v for k, v in b["final"].items() if k not in timing}
    assert not torch.are_deterministic_algorithms_enabled()


def test_two_deterministic_finetuning_runs_give_the_same_predictions(tmp_path, bbbp):  # noqa: F811
    cfg = FinetuneConfig(dataset="bbbp", metric="roc_auc", epochs=2, threads=1, deterministic=True,
                         model=dict(SMALL))
    runs = [finetune(bbbp["cache"], bbbp["descriptors"], bbbp["split1"], tmp_path / name, cfg)
            for name in ("a", "b")]
    assert runs[0]["val"] == runs[1]["val"] and runs[0]["test"] == runs[1]["test"]
    assert (tmp_path / "a" / "predictions.csv").read_bytes() == (tmp_path / "b" / "predictions.csv").read_bytes()
    a, b = (torch.load(tmp_path / n / "model.pt", weights_only=True)["model"] for n in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
