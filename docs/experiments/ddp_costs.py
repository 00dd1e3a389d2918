"""What two data-parallel CPU ranks lose to each other: waiting, and the gradient all-reduce (issue 13).

Two one-thread ranks over gloo, 16 molecules each per step (a global batch of 32), the batches
and masks ``benchmarks/bench_model.py`` uses, in one of these variants:

* ``apart``: no DDP and no barrier; the ranks meet only around each timed run (the bound);
* ``barrier``: no DDP, a barrier after every backward pass: the cost of waiting for the slower rank;
* ``ddp``: DistributedDataParallel over gloo, each global batch of 32 dealt to the ranks by size,
  the gradients views into DDP's buckets (``torchrun ... bbmn pretrain --no-shared-memory-average``);
* ``ddp-copy``: the same with gradients copied into and out of the buckets (DDP's default);
* ``ddp-in-order``: DDP with each global batch halved in order (how the loader dealt before);
* ``ddp-same``: DDP with both ranks given the same batches: the all-reduce without the waiting;
* ``ddp-fp16``: DDP averaging gradients in fp16 (``fp16_compress_hook``): half the bytes;
* ``ddp-static``: DDP with ``static_graph=True``;
* ``ddp-shm``: DDP averaging through shared memory in one bucket, as ``torchrun ... bbmn pretrain``
  trains (``bbmn.train.distributed.data_parallel``);
* ``ddp-shm-buckets``: the same hook with DDP's default buckets (a first one of 1 MB).

    python docs/experiments/ddp_costs.py apart barrier ddp ddp-same [--steps 24] [--repeats 3]

Prints molecules/s per variant and whether the ranks end with equal weights (they must, for DDP:
``ddp-static`` is the variant where they did not, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_model import DEFAULT_SMILES, best_time, make_batches, read_smiles, replicas_equal  # noqa: E402

from bbmn.data.graph import featurize_smiles  # noqa: E402
from bbmn.data.masking import Masking  # noqa: E402
from bbmn.models.batmannet import BatmanNet, reconstruction_loss  # noqa: E402
from bbmn.train.runtime import MALLOC_TUNABLES  # noqa: E402
from bbmn.train import distributed, shared_memory_average  # noqa: E402

VARIANTS = ("apart", "barrier", "ddp", "ddp-copy", "ddp-in-order", "ddp-same", "ddp-fp16", "ddp-static", "ddp-shm", "ddp-shm-buckets")
PER_RANK = 16


def in_order_batches(smiles: list[str], rank: int, steps: int) -> list:
    """This rank's half of each global batch of ``2 * PER_RANK`` molecules, taken in order
    (``bench_model.make_batches`` with ``world_size=2`` deals them by size instead)."""
    arrays = featurize_smiles(smiles)
    order = torch.randperm(len(smiles), generator=torch.Generator().manual_seed(0)).numpy()
    masking = Masking(ratio=0.6, dynamic=True, seed=rank)
    first = rank * PER_RANK
    return [masking(arrays.take(order[(step_start + np.arange(PER_RANK)) % len(order)]).to_batch())
            for step_start in range(first, first + steps * 2 * PER_RANK, 2 * PER_RANK)]


def worker(rank: int, port: int, variant: str, steps: int, repeats: int, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = BatmanNet(residual=True)
    train_model = model
    if variant == "ddp-shm":
        train_model = distributed.data_parallel(model, distributed.Context(rank=rank, world_size=2, local_rank=rank))
    elif variant.startswith("ddp"):
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, static_graph=variant == "ddp-static", gradient_as_bucket_view=variant != "ddp-copy")
    if variant == "ddp-fp16":
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import fp16_compress_hook
        train_model.register_comm_hook(None, fp16_compress_hook)
    if variant == "ddp-shm-buckets":
        train_model.register_comm_hook(shared_memory_average.SharedMemoryAverage.open(model), shared_memory_average.hook)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-7, fused=True)
    smiles = read_smiles(DEFAULT_SMILES)
    if variant == "ddp-in-order":
        batches = in_order_batches(smiles, rank, steps)
    elif variant == "ddp-same":
        batches = make_batches(smiles, PER_RANK, steps)
    else:
        batches = make_batches(smiles, PER_RANK, steps, rank=rank, world_size=2)

    def run(part: list) -> None:
        for batch in part:
            optimizer.zero_grad(set_to_none=True)
            reconstruction_loss(train_model(batch), batch, counts=False).total.backward()
            if variant == "barrier":
                dist.barrier()
            optimizer.step()

    best = best_time(run, batches, repeats, sync=dist.barrier)
    equal = replicas_equal(model)
    if rank == 0:
        results.put((2 * PER_RANK * steps / best, equal))
    os._exit(0)  # as in bench_model.py: tearing gloo down could deadlock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if "GLIBC_TUNABLES" not in os.environ:  # the allocator bbmn pretrain and bench_model.py use
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES})
    context = mp.get_context("spawn")
    for variant in args.variants:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        results = context.SimpleQueue()
        mp.spawn(worker, args=(port, variant, args.steps, args.repeats, results), nprocs=2)
        mol_per_s, equal = results.get()
        print(f"{variant:>10}: {mol_per_s:6.1f} mol/s | ranks' weights {'equal' if equal else 'differ'}")


if __name__ == "__main__":
    main()
