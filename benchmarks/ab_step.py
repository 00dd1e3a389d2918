"""Training-step speed of this checkout against bbmn at another commit, interleaved.

On a shared virtual machine the speed of the same code drifts by 10 to 40% within minutes, so two
benchmark runs minutes apart cannot tell a 20% change from the drift. Here two worker processes,
one per version (``git archive`` of the base commit's ``bbmn/`` on its ``PYTHONPATH``), hold their
model and batches and take turns: each round runs ``--steps`` steps in one, then in the other
(alternating who goes first), so both see the same machine. Prints each version's median
molecules/s and the median of the per-round ratios.

    python benchmarks/ab_step.py --base HEAD~1 --what finetune --threads 1
    python benchmarks/ab_step.py --base c7d3b83 --what pretrain --threads 2 --rounds 8

The steps are ``bench_model.py``'s (forward, backward, fused Adam; batch of ZINC molecules; the
fine-tuning step with random descriptors and labels), with glibc's allocator tuned as training
runs it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(what: str, batch_size: int, threads: int) -> None:
    """Build a model and batches with the bbmn on ``sys.path``; run steps on request."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_model as bench

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    smiles = bench.read_smiles(bench.DEFAULT_SMILES)
    if what == "pretrain":
        from bbmn.models.batmannet import BatmanNet

        model = BatmanNet(residual=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, fused=True)
        batches = bench.make_batches(smiles, batch_size, len(smiles) // batch_size)

        def step(batch):
            optimizer.zero_grad(set_to_none=True)
            model.pretrain_loss(batch).total.backward()
            optimizer.step()
    else:
        from bbmn.data.graph import featurize_smiles
        from bbmn.models.finetune import BatmanNetFinetune

        model = BatmanNetFinetune(1, "classification", residual=True, view_norm="batchnorm")
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
        arrays = featurize_smiles(smiles)
        batches = [(arrays.take(list(range(i, i + batch_size))).to_batch(), torch.randn(batch_size, 200),
                    (torch.rand(batch_size, 1) < 0.5).float())
                   for i in range(0, len(smiles) - batch_size + 1, batch_size)]

        def step(batch):
            graphs, descriptors, labels = batch
            optimizer.zero_grad(set_to_none=True)
            model.loss(model(graphs, descriptors), labels).total.backward()
            optimizer.step()
    model.train()
    done = 0
    for line in sys.stdin:
        count = int(line)
        start = time.perf_counter()
        for i in range(count):
            step(batches[(done + i) % len(batches)])
        done += count
        print(f"{time.perf_counter() - start:.6f}", flush=True)


def base_tree(revision: str, into: Path) -> Path:
    """``bbmn/`` as it is at ``revision``, extracted under ``into``."""
    done = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "bbmn"], capture_output=True)
    if done.returncode:
        sys.exit(f"ab_step: no bbmn/ at {revision!r}: {done.stderr.decode().strip()}")
    archive = done.stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="commit to compare with (default HEAD)")
    parser.add_argument("--what", choices=("pretrain", "finetune"), default="finetune")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="steps per turn")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.what, args.batch_size, args.threads)
        return
    sys.path.insert(0, str(ROOT))
    from bbmn.train.runtime import MALLOC_TUNABLES

    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": base_tree(args.base, Path(tmp)), "this checkout": ROOT}
        command = [sys.executable, __file__, "--worker", "--what", args.what, "--threads",
                   str(args.threads), "--batch-size", str(args.batch_size)]
        workers = {name: subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                          env={**os.environ, "PYTHONPATH": str(tree),
                                               "GLIBC_TUNABLES": MALLOC_TUNABLES})
                   for name, tree in trees.items()}

        def turn(name: str, steps: int) -> float:
            workers[name].stdin.write(f"{steps}\n")
            workers[name].stdin.flush()
            answer = workers[name].stdout.readline()
            if not answer:  # its traceback is on stderr, above
                sys.exit(f"ab_step: the worker for {name} ({trees[name]}) stopped")
            return args.batch_size * steps / float(answer)

        for name in workers:
            turn(name, 2)  # warm-up
        rates = {name: [] for name in workers}
        for r in range(args.rounds):
            for name in (list(workers) if r % 2 == 0 else list(workers)[::-1]):
                rates[name].append(turn(name, args.steps))
        for w in workers.values():
            w.stdin.close()
            w.wait()
    ratios = [new / old for new, old in zip(rates["this checkout"], rates["base"])]
    print(f"{args.what}, batch {args.batch_size}, {args.threads} thread(s), {args.rounds} rounds of "
          f"{args.steps} steps; base {args.base}")
    for name, values in rates.items():
        print(f"  {name:>13}: median {statistics.median(values):6.1f} mol/s  "
              f"(rounds: {' '.join(f'{v:.1f}' for v in values)})")
    print(f"  ratio this checkout / base: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")


if __name__ == "__main__":
    main()
