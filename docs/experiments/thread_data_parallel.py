"""Data parallel over threads instead of processes: was it worth building? (issue 13; it was not)

One model, one optimizer; each pre-training step splits its batch of 32 into two halves of 16,
and two Python threads of one intra-op thread each run forward + backward on one half, their
gradients adding up in the shared parameters (autograd's accumulation is thread-safe). No gloo,
no second copy of the model. Torch releases the GIL inside every operator, so the halves overlap
except where both threads run Python. Compared with one thread doing the two halves in turn, in
the same process, on the batches and masks ``benchmarks/bench_model.py`` uses:

    python docs/experiments/thread_data_parallel.py [--steps 24] [--repeats 3]

Prints molecules/s of both layouts and, per half step, wall and CPU milliseconds and voluntary
context switches (a thread waiting for the GIL). Dropout draws from torch's global generator in
whatever order the threads reach it, so the threaded run is not reproducible: one reason this
stayed an experiment (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_model import DEFAULT_SMILES, make_batches, read_smiles  # noqa: E402

from bbmn.models.batmannet import BatmanNet, reconstruction_loss  # noqa: E402
from bbmn.train.runtime import MALLOC_TUNABLES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if "GLIBC_TUNABLES" not in os.environ:  # the allocator bbmn pretrain and bench_model.py use
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES})
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = BatmanNet(residual=True).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-7, fused=True)
    smiles = read_smiles(DEFAULT_SMILES)
    halves = [make_batches(smiles, 16, args.steps, seed=half) for half in (0, 1)]
    records: list[tuple[float, float, int]] = []

    def half_step(batch) -> None:
        before, wall, cpu = resource.getrusage(resource.RUSAGE_THREAD), time.perf_counter(), time.thread_time()
        (reconstruction_loss(model(batch), batch).total / 2).backward()
        after = resource.getrusage(resource.RUSAGE_THREAD)
        records.append((time.perf_counter() - wall, time.thread_time() - cpu, after.ru_nvcsw - before.ru_nvcsw))

    pool = ThreadPoolExecutor(2, initializer=torch.set_num_threads, initargs=(1,))

    def run(threaded: bool, steps: range) -> None:
        for i in steps:
            optimizer.zero_grad(set_to_none=True)
            pair = (halves[0][i], halves[1][i])
            if threaded:
                list(pool.map(half_step, pair))
            else:
                for batch in pair:
                    half_step(batch)
            optimizer.step()

    for threaded in (False, True):
        run(threaded, range(2))
        best = float("inf")
        for _ in range(args.repeats):
            records.clear()
            start = time.perf_counter()
            run(threaded, range(args.steps))
            best = min(best, time.perf_counter() - start)
        wall, cpu, switches = (statistics.mean(r[k] for r in records) for k in range(3))
        print(f"{'two threads' if threaded else 'one thread, halves in turn':>26}: "
              f"{32 * args.steps / best:6.1f} mol/s | per half: {wall * 1e3:.1f} ms wall, {cpu * 1e3:.1f} ms CPU, "
              f"{switches:.0f} voluntary context switches | {threading.active_count()} threads alive")


if __name__ == "__main__":
    main()
