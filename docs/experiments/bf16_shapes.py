"""Why bf16 autocast does not speed up pre-training at batch 32 on a CPU with native bf16 (issue 13).

Three measurements (2 threads unless ``--threads``):

* ``products``: fp32 against bf16 matrix products at the shapes of a step of 32, with bf16
  operands and with autocast's cast of fp32 operands;
* ``varying``: 400 products whose row count changes every time (as a batch's atoms and edges do),
  in fp32 and bf16, and the same with the rows padded to a multiple of 128;
* ``compiled``: the varying products in bf16 through ``torch.compile`` (dynamic shapes, inductor's
  ``max_autotune`` with its C++ GEMM backend asked for), against eager;
* ``steps``: pre-training steps of 32 in fp32 and under bf16 autocast, on one batch repeated
  (every product's shape repeats) and on varying batches.

oneDNN, which runs CPU bf16 products, builds a kernel per shape and keeps up to
``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` of them (bbmn caps it at 32 when it autocasts; set it to 1024
to let every shape of a step stay cached):

    python docs/experiments/bf16_shapes.py products varying
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024 python docs/experiments/bf16_shapes.py steps
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=1024 python docs/experiments/bf16_shapes.py steps --threads 1 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_model import DEFAULT_SMILES, make_batches, read_smiles, train_steps  # noqa: E402

from bbmn.models.batmannet import BatmanNet  # noqa: E402
from bbmn.train.device import bound_onednn_cache  # noqa: E402
from bbmn.train.runtime import MALLOC_TUNABLES  # noqa: E402

#: (what, rows, inner, outer) of the step's products at batch 32 (rows: visible or all items)
STEP_SHAPES = [("1024^3", 1024, 1024, 1024), ("encoder atoms, first round", 300, 100, 600),
               ("encoder edges, first round", 640, 100, 600), ("decoder atoms", 740, 100, 600),
               ("decoder edges", 1600, 100, 600), ("one net's later round", 640, 100, 100)]


def best_seconds(fn, reps: int = 50) -> float:
    for _ in range(5):
        fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def autocast_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return a @ b


def products() -> None:
    print("shape | fp32 GFLOP/s | bf16 operands (x fp32) | autocast: cast + bf16 product (x fp32)")
    for label, n, k, m in STEP_SHAPES:
        a, b = torch.randn(n, k), torch.randn(k, m)
        a16, b16 = a.bfloat16(), b.bfloat16()
        flop = 2 * n * k * m
        fp32 = flop / best_seconds(lambda: a @ b) / 1e9
        bf16 = flop / best_seconds(lambda: a16 @ b16) / 1e9
        cast = flop / best_seconds(lambda: autocast_product(a, b)) / 1e9
        print(f"{label} ({n}x{k}x{m}) | {fp32:.0f} | {bf16:.0f} ({bf16 / fp32:.2f}x) | {cast:.0f} ({cast / fp32:.2f}x)")


def varying_rows() -> list[int]:
    generator = random.Random(0)
    return [generator.randint(300, 1600) for _ in range(400)]


def varying() -> None:
    weight = torch.randn(100, 600)
    rows = varying_rows()
    for label, counts in [("one shape (640 rows)", [640] * 400), ("rows 300 to 1,600", rows),
                          ("rows padded to a multiple of 128", [-(-n // 128) * 128 for n in rows])]:
        inputs = [torch.randn(n, 100) for n in counts]
        for bf16 in (False, True):
            product = (lambda x: autocast_product(x, weight)) if bf16 else (lambda x: x @ weight)
            for x in inputs[:3]:
                product(x)
            start = time.perf_counter()
            for x in inputs:
                product(x)
            seconds = time.perf_counter() - start
            flop = sum(2 * n * 100 * 600 for n in counts)
            print(f"{label:34s} {'bf16' if bf16 else 'fp32'}: {flop / seconds / 1e9:5.0f} GFLOP/s")


def compiled() -> None:
    import torch._inductor.config as inductor

    inductor.max_autotune, inductor.max_autotune_gemm_backends = True, "CPP,ATEN"
    weight = torch.randn(100, 600).bfloat16()

    def product(x: torch.Tensor) -> torch.Tensor:
        return x @ weight

    rows = varying_rows()
    inputs = [torch.randn(n, 100).bfloat16() for n in rows]
    flop = sum(2 * n * 100 * 600 for n in rows)
    for label, fn in [("compiled", torch.compile(product, dynamic=True)), ("eager", product)]:
        for turn in (1, 2):  # the second pass over the same shapes may find their kernels cached
            start = time.perf_counter()
            for x in inputs:
                fn(x)
            print(f"bf16 {label:8s} pass {turn}: {flop / (time.perf_counter() - start) / 1e9:5.0f} GFLOP/s")


def steps(batch_size: int) -> None:
    batches = make_batches(read_smiles(DEFAULT_SMILES), batch_size, 20)
    for label, part in [("one batch repeated", [batches[0]] * 20), ("varying batches", batches)]:
        for bf16 in (False, True, False, True):
            torch.manual_seed(0)
            model = BatmanNet(residual=True)
            model.train()
            optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, fused=True)
            train_steps(model, optimizer, part[:3], bf16)
            start = time.perf_counter()
            train_steps(model, optimizer, part, bf16)
            seconds = time.perf_counter() - start
            print(f"{label:18s} {'bf16' if bf16 else 'fp32'}: {batch_size * len(part) / seconds:6.1f} mol/s",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="+", choices=("products", "varying", "compiled", "steps"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="of the steps (a rank of two: 16)")
    args = parser.parse_args()
    if "GLIBC_TUNABLES" not in os.environ:  # the allocator bbmn pretrain and bench_model.py use
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES})
    torch.set_num_threads(args.threads)
    bound_onednn_cache()  # 32 unless the environment says otherwise, as bbmn's commands
    parts = {"products": products, "varying": varying, "compiled": compiled,
             "steps": lambda: steps(args.batch_size)}
    for part in args.parts:
        parts[part]()


if __name__ == "__main__":
    main()
