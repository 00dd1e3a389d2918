"""Averaging CPU ranks' gradients through shared memory gives what gloo's all-reduce gives."""

import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bbmn.train import distributed, shared_memory_average
from bbmn.train.shared_memory_average import SHARED_MEMORY_DIR
from tests.conftest import free_port

WORLD_SIZE = 2



def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 64), torch.nn.PReLU(), torch.nn.Linear(64, 64),
                               torch.nn.PReLU(), torch.nn.Linear(64, 3))


def _steps(wrapped: torch.nn.Module, model: torch.nn.Module, rank: int) -> list[torch.Tensor]:
    """Three SGD steps on this rank's own data; every gradient as it was averaged."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(100 + rank)  # the ranks see different molecules
    grads = []
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        x = torch.randn(16 + 5 * rank, 12, generator=generator)
        wrapped(x).square().mean().backward()
        grads += [p.grad.detach().clone() for p in model.parameters()]
        optimizer.step()
    return grads


def _worker(rank: int, port: int, out: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    context = distributed.Context(rank=rank, world_size=WORLD_SIZE, local_rank=rank)
    results = {}
    # as bbmn pretrain trains (one bucket), gloo's all-reduce, and the hook over several buckets,
    # which alternate between the region's two sets of slots
    shm_model, gloo_model, buckets_model = _model(), _model(), _model()
    results["shm"] = _steps(distributed.data_parallel(shm_model, context), shm_model, rank)
    results["gloo"] = _steps(distributed.data_parallel(gloo_model, context, shared_memory=False), gloo_model, rank)
    several = torch.nn.parallel.DistributedDataParallel(buckets_model, bucket_cap_mb=0.005,
                                                        gradient_as_bucket_view=True)
    state = shared_memory_average.SharedMemoryAverage.open(buckets_model)
    several.register_comm_hook(state, shared_memory_average.hook)
    results["buckets"] = _steps(several, buckets_model, rank)
    results["hook_calls"] = state.calls
    out[rank] = results
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.skipif(not SHARED_MEMORY_DIR.is_dir(), reason="no /dev/shm")
def test_shared_memory_average_equals_gloo_and_leaves_nothing_behind():
    before = set(SHARED_MEMORY_DIR.glob("bbmn-gradients-*"))
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(free_port(), out), nprocs=WORLD_SIZE)
        results = dict(out)
    for rank in range(WORLD_SIZE):
        for got, want in zip(results[rank]["shm"], results[rank]["gloo"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
        for got, want in zip(results[rank]["buckets"], results[rank]["gloo"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    # every rank holds the same average, bit for bit, as after an all-reduce (the ranks' data
    # differ: equal gradients on both ranks are the averaging's doing)
    for kind in ("shm", "buckets"):
        for a, b in zip(results[0][kind], results[1][kind], strict=True):
            assert torch.equal(a, b)
    assert results[0]["hook_calls"] > 3  # more than one bucket in a step: smaller views, both sets
    assert set(SHARED_MEMORY_DIR.glob("bbmn-gradients-*")) == before  # the region's file is unlinked


def _failing_worker(rank: int, port: int, out: dict, missing_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    results = {}
    # rank 0 cannot make the region (no such directory): no rank gets one
    real_dir, shared_memory_average.SHARED_MEMORY_DIR = shared_memory_average.SHARED_MEMORY_DIR, Path(missing_dir)
    results["no_directory"] = shared_memory_average.SharedMemoryAverage.open(_model()) is None
    shared_memory_average.SHARED_MEMORY_DIR = real_dir
    # rank 1 cannot map it: no rank uses it, and rank 0 removes the file all the same
    real_from_file = torch.from_file
    if rank == 1:
        def refuse(*args, **kwargs):
            raise RuntimeError("mapping refused (test)")
        torch.from_file = refuse
    results["rank_1_cannot_map"] = shared_memory_average.SharedMemoryAverage.open(_model()) is None
    torch.from_file = real_from_file
    out[rank] = results
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.skipif(not SHARED_MEMORY_DIR.is_dir(), reason="no /dev/shm")
def test_every_rank_falls_back_when_any_rank_cannot_share(tmp_path):
    before = set(SHARED_MEMORY_DIR.glob("bbmn-gradients-*"))
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_failing_worker, args=(free_port(), out, str(tmp_path / "missing")), nprocs=WORLD_SIZE)
        results = dict(out)
    assert all(results[rank] == {"no_directory": True, "rank_1_cannot_map": True} for rank in range(WORLD_SIZE))
    assert set(SHARED_MEMORY_DIR.glob("bbmn-gradients-*")) == before


def test_applies_to_cpu_ranks_of_one_machine_with_room_in_dev_shm(monkeypatch):
    cpu, model = torch.device("cpu"), _model()
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert shared_memory_average.available(2, cpu, model) == SHARED_MEMORY_DIR.is_dir()
    assert not shared_memory_average.available(1, cpu, model)
    assert not shared_memory_average.available(2, torch.device("cuda", 0), model)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert not shared_memory_average.available(4, cpu, model)  # two machines of two ranks: gloo
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    full = shutil.disk_usage(SHARED_MEMORY_DIR)._replace(free=shared_memory_average.region_bytes(2, model))
    monkeypatch.setattr(shared_memory_average.shutil, "disk_usage", lambda path: full)
    assert not shared_memory_average.available(2, cpu, model)  # a small /dev/shm: gloo


def test_region_slots_are_whole_cache_lines():
    model = _model()  # 5,189 float32 gradients = 20,756 bytes
    assert shared_memory_average.gradient_bytes(model) == 4 * sum(p.numel() for p in model.parameters())
    assert shared_memory_average.slot_bytes(model) == 20_800
    assert shared_memory_average.region_bytes(2, model) == 4 * 20_800
