"""Pre-training throughput of BatmanNet on CPU: forward + backward + Adam step.

Prints, per batch size: molecules/s, analytic FLOPs per molecule (the multiply-adds of every
matrix product the implementation performs, from the batch's real item counts), the achieved
FLOP/s and its fraction of a plain torch matmul rate measured in the same run (at its start and
its end, the better of the two); then the peak RSS. Results print at the end, progress on stderr.

    python benchmarks/bench_model.py                     # batch 32 and 128, 2 threads
    python benchmarks/bench_model.py --profile 32        # torch.profiler table of one batch size
    python benchmarks/bench_model.py --modes fp32 ddp    # one process of 2 threads, 2 of 1 thread
    python benchmarks/bench_model.py --modes ddp ranks   # ... and the same ranks without all-reduce

The step is the one a training loop should run: fused Adam, and glibc's allocator told to keep
freed memory and to back it with huge pages (``GLIBC_TUNABLES``, set by re-executing this script
unless ``--plain-malloc``). Without that, every large activation is a fresh ``mmap`` whose
page faults cost as much as the arithmetic on it (about 25% of a step here).

The machine may be shared: every figure is the best of ``--repeats`` timed runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bbmn.chem.features import ATOM_DIM, EDGE_DIM
from bbmn.data.graph import featurize_smiles
from bbmn.data.loader import deal_by_size
from bbmn.data.masking import Masking
from bbmn.models.batmannet import BatmanNet, reconstruction_loss
from bbmn.train import distributed
from bbmn.train.device import bound_onednn_cache
from bbmn.train.runtime import MALLOC_TUNABLES, peak_rss_mb

DEFAULT_SMILES = Path(__file__).resolve().parents[1] / "tests" / "data" / "zinc_200.smi"


def read_smiles(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def make_batches(smiles: list[str], batch_size: int, count: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> list:
    """``count`` masked batches of ``batch_size`` molecules, cycling through ``smiles``; with
    ``world_size`` ranks, this rank's share of each global batch, dealt by size as ``bbmn
    pretrain``'s loader deals it (masks seeded by ``seed + rank``)."""
    arrays = featurize_smiles(smiles)
    masking = Masking(ratio=0.6, dynamic=True, seed=seed + rank)
    order = torch.randperm(len(smiles), generator=torch.Generator().manual_seed(seed)).numpy()
    together = batch_size * world_size
    batches = []
    for i in range(count):
        step = arrays.take(order[(i * together + np.arange(together)) % len(order)])
        batches.append(masking(step.take(np.flatnonzero(deal_by_size(step, world_size) == rank)).to_batch()))
    return batches


def forward_macs(batch, config: dict) -> int:
    """Multiply-adds of the matrix products of one forward pass on ``batch``."""
    h, heads, depth = config["hidden"], config["heads"], config["depth"]
    block = (depth - 1) * 3 * heads * h * h  # message nets
    block += 3 * heads * h * h  # Q, K, V projections over the heads axis
    block += heads * h * h  # output projection fused with W_o
    block += 2 * heads * heads * h  # attention scores and weighted values
    ffn = 2 * h * 4 * h + 4 * h * h
    n_atoms, n_edges = batch.num_nodes, batch.edge_index.shape[1]
    masked_atoms, masked_edges = int(batch.atom_mask.sum()), int(batch.edge_mask.sum())
    total = 0
    for n_all, n_masked, in_dim in ((n_atoms, masked_atoms, ATOM_DIM), (n_edges, masked_edges, EDGE_DIM)):
        n_vis = n_all - n_masked
        total += n_vis * (in_dim * h + config["encoder_blocks"] * block + ffn)
        total += n_all * config["decoder_blocks"] * block + n_masked * (ffn + h * in_dim)
    return total


def finetune_macs(batch, config: dict, descriptor_dim: int = 200, head_hidden: int = 200) -> int:
    """Multiply-adds of the matrix products of one fine-tuning forward pass on ``batch``: both
    encoders on the full graph, the two atom readouts and the two heads."""
    h, heads, depth = config["hidden"], config["heads"], config["depth"]
    block = (depth - 1) * 3 * heads * h * h + 3 * heads * h * h + heads * h * h + 2 * heads * heads * h
    n_atoms, n_edges = batch.num_nodes, batch.edge_index.shape[1]
    encoders = (n_atoms * (ATOM_DIM * h + config["encoder_blocks"] * block)
                + n_edges * (EDGE_DIM * h + config["encoder_blocks"] * block))
    readouts = 2 * n_atoms * ((h + ATOM_DIM) * 4 * h + 4 * h * h)
    heads_macs = 2 * batch.num_graphs * ((h + descriptor_dim) * head_hidden + head_hidden)
    return encoders + readouts + heads_macs


def matmul_rate(n: int, k: int, m: int, repeats: int = 20) -> float:
    """FLOP/s of a torch matmul of the given shape (best of ``repeats``)."""
    a, b = torch.randn(n, k), torch.randn(k, m)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n * k * m / best


#: fp32 eager; compiled; bf16 autocast; compiled + autocast; bf16 weights (the model cast to
#: bfloat16, under autocast so that the fp32 inputs are cast too: no weight is cast at a product);
#: data-parallel over ``--threads`` processes of one thread each (DistributedDataParallel
#: averaging through shared memory, as ``torchrun --nproc_per_node N bbmn pretrain --threads 1``
#: trains), fp32 or bf16, at the
#: same global batch; and the same ranks training apart, no gradient averaged ("ranks"): the
#: most any data-parallel scheme could make of these cores with this step
MODES = ("fp32", "compiled", "bf16", "compiled-bf16", "bf16-weights", "ddp", "ddp-bf16", "ranks")
RANK_MODES = ("ddp", "ddp-bf16", "ranks")


def train_steps(model, optimizer, batches, bf16: bool = False) -> None:
    """Pre-training steps; ``model`` is a :class:`BatmanNet` or its DistributedDataParallel wrapper."""
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = reconstruction_loss(model(batch), batch, counts=False)  # as training steps
        loss.total.backward()
        optimizer.step()


def best_time(run, batches: list, repeats: int, sync=lambda: None) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``run(batches)``, after a warm-up on two
    batches (and the compile); ``sync`` lines the ranks up around each timed call."""
    run(batches[:2])
    best = float("inf")
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        run(batches)
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def measure(batch_size: int, smiles: list[str], steps: int, repeats: int, mode: str = "fp32") -> dict:
    """Molecules/s and FLOP/s of training steps in ``mode`` (one of :data:`MODES`)."""
    torch.manual_seed(0)
    model = BatmanNet(residual=True)  # the workflow's model
    if mode.startswith("compiled"):
        model.enable_compile()
    if mode == "bf16-weights":
        model = model.to(torch.bfloat16)
    bf16 = "bf16" in mode
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-7, fused=True)
    batches = make_batches(smiles, batch_size, steps)
    best = best_time(lambda part: train_steps(model, optimizer, part, bf16), batches, repeats)
    molecules = batch_size * steps
    macs = sum(forward_macs(b, model.config) for b in batches)
    return {"mol_per_s": molecules / best, "fwd_flop_per_mol": 2 * macs / molecules,
            "train_flop_per_s": 3 * 2 * macs / best}


def _ddp_worker(rank: int, world_size: int, port: int, batch_size: int, smiles: list[str], steps: int,
                repeats: int, bf16: bool, average: bool, results) -> None:
    """One rank of :func:`measure_ddp`: ``batch_size // world_size`` molecules per step; without
    ``average`` the model is not wrapped, so the ranks meet only around each timed run."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    if bf16:
        bound_onednn_cache()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = BatmanNet(residual=True)
    context = distributed.Context(rank=rank, world_size=world_size, local_rank=rank)
    train_model = distributed.data_parallel(model, context) if average else model  # as bbmn pretrain
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-7, fused=True)
    batches = make_batches(smiles, batch_size // world_size, steps, rank=rank, world_size=world_size)
    best = best_time(lambda part: train_steps(train_model, optimizer, part, bf16), batches, repeats,
                     sync=dist.barrier)
    macs = torch.tensor([float(sum(forward_macs(b, model.config) for b in batches))])
    dist.all_reduce(macs)
    peak_rss = torch.tensor([peak_rss_mb()])
    dist.all_reduce(peak_rss, op=dist.ReduceOp.MAX)
    equal = replicas_equal(model)
    if rank == 0:
        results.put((best, float(macs), float(peak_rss), equal))
    # Leave without tearing the process group down: destroying it (or letting the interpreter
    # collect DDP's reducer) deadlocked here now and then, the main thread holding the GIL while
    # joining a gloo thread that waited for the GIL. The results are out; nothing is left to flush.
    os._exit(0)


def replicas_equal(model: torch.nn.Module) -> bool:
    """Whether every rank holds rank 0's weights: the check that data-parallel gradients were
    averaged (DDP's ``static_graph=True`` averaged nothing here, and said nothing)."""
    import torch.distributed as dist

    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    first = weights.clone()
    dist.broadcast(first, src=0)
    differ = torch.tensor([float(not torch.equal(weights, first))])
    dist.all_reduce(differ, op=dist.ReduceOp.MAX)
    return not differ.item()


def measure_ddp(batch_size: int, smiles: list[str], steps: int, repeats: int, processes: int,
                bf16: bool = False, average: bool = True) -> dict:
    """Molecules/s and FLOP/s of data-parallel training steps at a global batch of ``batch_size``
    (``average=False``: the same ranks with no gradient averaged)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port for the process group's rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.spawn(_ddp_worker, args=(processes, port, batch_size, smiles, steps, repeats, bf16, average, results),
             nprocs=processes)
    best, macs, rank_rss, equal_weights = results.get()
    return {"mol_per_s": batch_size * steps / best, "fwd_flop_per_mol": 2 * macs / (batch_size * steps),
            "train_flop_per_s": 3 * 2 * macs / best, "rank_peak_rss_mib": rank_rss,
            "equal_weights": equal_weights}


def measure_finetune(batch_size: int, smiles: list[str], steps: int, repeats: int,
                     mode: str = "fp32") -> dict:
    """Molecules/s of fine-tuning steps (both views and the 200 descriptors, one task) in ``mode``."""
    from bbmn.models.finetune import BatmanNetFinetune

    torch.manual_seed(0)
    model = BatmanNetFinetune(1, "classification", residual=True, view_norm="batchnorm")
    if mode.startswith("compiled"):
        model.enable_compile()
    bf16 = mode.endswith("bf16")
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    arrays = featurize_smiles(smiles)
    batches = []
    for i in range(steps):
        batch = arrays.take([(i * batch_size + j) % len(smiles) for j in range(batch_size)]).to_batch()
        batches.append((batch, torch.randn(batch_size, 200), (torch.rand(batch_size, 1) < 0.5).float()))

    def run(part):
        for batch, descriptors, labels in part:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = model(batch, descriptors)
            model.loss(outputs, labels).total.backward()
            optimizer.step()

    best = best_time(run, batches, repeats)
    macs = sum(finetune_macs(batch, model.config) for batch, _, _ in batches)
    return {"mol_per_s": batch_size * steps / best, "fwd_flop_per_mol": 2 * macs / (batch_size * steps),
            "train_flop_per_s": 3 * 2 * macs / best}


def profile(batch_size: int, smiles: list[str], steps: int) -> None:
    from torch.profiler import ProfilerActivity, profile as torch_profile

    torch.manual_seed(0)
    model = BatmanNet(residual=True)  # the model measure() times
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, fused=True)
    batches = make_batches(smiles, batch_size, steps)
    train_steps(model, optimizer, batches[:2])
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train_steps(model, optimizer, batches)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def result_line(label: str, batch_size: int, mode: str, r: dict, peak_big: float, peak_model: float) -> str:
    """One measurement: molecules/s, FLOP per molecule, and the fraction of both matmul rates."""
    line = (f"{label} {batch_size:4d} {mode:>13}: {r['mol_per_s']:7.1f} mol/s | "
            f"{r['fwd_flop_per_mol'] / 1e6:.0f} MFLOP/mol forward, x3 for training | "
            f"{r['train_flop_per_s'] / 1e9:.1f} GFLOP/s = {r['train_flop_per_s'] / peak_big:.1%} of "
            f"1024^3 matmul, {r['train_flop_per_s'] / peak_model:.1%} of the message-net shape")
    if "rank_peak_rss_mib" in r:
        line += (f" | largest rank's peak RSS {r['rank_peak_rss_mib']:.0f} MiB, ranks' weights "
                 f"{'equal' if r['equal_weights'] else 'differ'}")
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["fp32", "compiled"],
                        help="fp32 eager, torch.compile, bf16 autocast, compile + autocast, or bf16 "
                             "weights under autocast (pre-training only)")
    parser.add_argument("--molecules", type=int, default=1024, help="molecules per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smiles", type=Path, default=DEFAULT_SMILES)
    parser.add_argument("--finetune", action="store_true", help="also time fine-tuning steps")
    parser.add_argument("--profile", type=int, metavar="BATCH_SIZE")
    parser.add_argument("--plain-malloc", action="store_true", help="leave glibc's allocator as is")
    args = parser.parse_args(argv)
    if any(m in RANK_MODES for m in args.modes):
        uneven = [b for b in args.batch_sizes if b % args.threads]
        if args.threads < 2 or uneven:
            parser.error(f"the ddp and ranks modes run --threads one-thread ranks (at least 2), each with an "
                         f"equal share of the batch; {args.threads} ranks cannot share batch sizes "
                         f"{uneven or args.batch_sizes}")
    if not args.plain_malloc and "GLIBC_TUNABLES" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES})
    torch.set_num_threads(args.threads)
    if any("bf16" in mode for mode in args.modes):
        bound_onednn_cache()  # as bbmn's commands do when they autocast on a CPU
    smiles = read_smiles(args.smiles)
    if args.profile:
        profile(args.profile, smiles, max(1, args.molecules // args.profile))
        return
    h = BatmanNet().config["hidden"]
    shapes = {"big": (1024, 1024, 1024), "model": (2048, h, 6 * h)}
    before = {name: matmul_rate(*shape) for name, shape in shapes.items()}
    results = []
    for batch_size, mode in [(b, m) for b in args.batch_sizes for m in args.modes]:
        steps = max(1, args.molecules // batch_size)
        if mode in RANK_MODES:
            r = measure_ddp(batch_size, smiles, steps, args.repeats, args.threads, bf16=mode.endswith("bf16"),
                            average=mode != "ranks")
        else:
            r = measure(batch_size, smiles, steps, args.repeats, mode)
        results.append(("batch", batch_size, mode, r))
        print(f"measured batch {batch_size} {mode}: {r['mol_per_s']:.1f} mol/s", file=sys.stderr, flush=True)
    if args.finetune:
        for batch_size, mode in [(b, m) for b in args.batch_sizes for m in args.modes
                                 if m != "bf16-weights" and m not in RANK_MODES]:  # pre-training only
            r = measure_finetune(batch_size, smiles, max(1, args.molecules // batch_size), args.repeats, mode)
            results.append(("fine-tuning batch", batch_size, mode, r))
    # The matmul rates again at the end, and the fractions against the better of the two: one
    # slow moment at the start (152 instead of 220 GFLOP/s once) must not inflate every fraction.
    after = {name: matmul_rate(*shape) for name, shape in shapes.items()}
    peak_big, peak_model = (max(before[name], after[name]) for name in shapes)
    print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}")
    print(f"threads {torch.get_num_threads()}; torch matmul, GFLOP/s at the start and the end (the "
          f"better one is the rate): {before['big'] / 1e9:.1f}, {after['big'] / 1e9:.1f} at 1024^3; "
          f"{before['model'] / 1e9:.1f}, {after['model'] / 1e9:.1f} at 2048x{h}x{6 * h} (a message-net product)")
    for label, batch_size, mode, r in results:
        print(result_line(label, batch_size, mode, r, peak_big, peak_model))
    peak_rss = peak_rss_mb()
    print(f"peak RSS {peak_rss:.0f} MiB (this process; data-parallel ranks report theirs above)")


if __name__ == "__main__":
    main()
