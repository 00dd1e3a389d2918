"""``--device``: one rule for every command; a GPU that is not there is a one-line error."""

import logging
import os

import pytest
import torch

from bbmn.errors import BbmnError
from bbmn.train import device
from bbmn.train.device import autocast, device_of, resolve_device, to_device, use_bf16

CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
no_gpu = pytest.mark.skipif(CUDA, reason="checks the message of a machine without a CUDA GPU")


def test_auto_is_the_gpu_when_there_is_one_else_the_cpu():
    assert resolve_device("auto") == (torch.device("cuda", 0) if CUDA else torch.device("cpu"))
    assert resolve_device() == resolve_device("auto")


@pytest.mark.parametrize("text", ["cpu", "CPU", " cpu "])
def test_cpu(text):
    assert resolve_device(text) == torch.device("cpu")


@no_gpu
@pytest.mark.parametrize("text", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_gpu_is_one_clear_line(text):
    with pytest.raises(BbmnError) as info:
        resolve_device(text)
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"--device {text} asked, but this machine has no CUDA GPU "
                       f"(torch.cuda.is_available() is False); use --device cpu or auto")


@pytest.mark.parametrize("text", ["tpu", "gpu", "mps", "cuda:", "cuda:x", "cuda0", "cpu:0", ""])
def test_anything_else_is_not_a_device(text):
    with pytest.raises(BbmnError, match=r"^--device .* is not a device; use one of auto, cpu, cuda, cuda:N$"):
        resolve_device(text)


def test_bf16_on_a_cpu_without_native_bf16_is_dropped_with_a_warning(caplog, monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="bbmn.train.device"):
        assert use_bf16(True, cpu) is False
    assert len(caplog.records) == 1 and "float32" in caplog.records[0].getMessage()
    caplog.clear()
    assert use_bf16(False, cpu) is False and not caplog.records


def test_bf16_on_a_cpu_with_native_bf16_autocasts(caplog, monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)  # restored afterwards
    cpu = torch.device("cpu")
    with caplog.at_level(logging.WARNING, logger="bbmn.train.device"):
        assert use_bf16(True, cpu) is True and use_bf16(False, cpu) is False
    assert not caplog.records
    with autocast(True, cpu):
        assert torch.nn.Linear(4, 2)(torch.randn(3, 4)).dtype == torch.bfloat16


def test_bf16_on_a_cpu_caps_onednn_primitive_cache_unless_the_user_did(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    cpu = torch.device("cpu")
    use_bf16(False, cpu)
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ  # float32 runs are left alone
    use_bf16(True, cpu)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(device.ONEDNN_CACHE_CAPACITY) == "32"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")
    use_bf16(True, cpu)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "8"


def test_native_bf16_is_what_torch_reports():
    assert device.cpu_has_native_bf16() == (torch.cpu._is_avx512_bf16_supported()
                                            or torch.cpu._is_amx_tile_supported())


def test_on_the_cpu_nothing_is_copied_or_cast():
    x = torch.randn(3, 4)
    assert to_device(x, torch.device("cpu")) is x
    layer = torch.nn.Linear(4, 2)
    assert device_of(layer) == torch.device("cpu") and device_of(torch.nn.Identity()) == torch.device("cpu")
    with autocast(False, torch.device("cpu")):
        assert layer(x).dtype == torch.float32


@needs_gpu
def test_a_gpu_index_the_machine_lacks_is_one_line():
    count = torch.cuda.device_count()
    with pytest.raises(BbmnError) as info:
        resolve_device(f"cuda:{count}")
    assert str(info.value) == (f"--device cuda:{count} asked, but this machine has {count} CUDA GPU(s): "
                               f"cuda:0 to cuda:{count - 1}")
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda", local_rank=count) == torch.device("cuda", 0)


@needs_gpu
def test_batches_reach_the_gpu_from_pinned_memory():
    from tests.models.test_batmannet import masked_batch

    gpu = torch.device("cuda", 0)
    batch = to_device(masked_batch(), gpu)
    assert batch.x.device == gpu and batch.edge_index.device == gpu
    x = to_device(torch.arange(5.0), gpu)
    assert x.device == gpu and torch.equal(x.cpu(), torch.arange(5.0))
    with autocast(use_bf16(True, gpu), gpu):
        assert torch.nn.Linear(4, 2).to(gpu)(torch.randn(3, 4, device=gpu)).dtype == torch.bfloat16
