"""An estimate of the `paper` preset's GPU-hours, from counted FLOPs and kernels of real steps.

For one pre-training step and one fine-tuning step (batch 32, ZINC molecules), torch counts the
matrix-product FLOPs of forward + backward (torch.utils.flop_counter) and the aten operators
dispatched (each one a kernel launch on a GPU). A GPU step then takes at least the larger of
FLOPs / sustained rate and operators x time per small kernel; the DAG's job counts and the
datasets' sizes turn steps into hours. The GPU figures are ASSUMPTIONS (printed), not
measurements: no GPU was available. The CPU throughput printed beside them is measured here.

    python docs/experiments/gpu_hours.py            # about a minute on 2 cores
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from bbmn.data.graph import featurize_smiles
from bbmn.data.masking import Masking
from bbmn.models.batmannet import BatmanNet
from bbmn.models.finetune import BatmanNetFinetune

REPO = Path(__file__).resolve().parents[2]
SMILES = [line.split()[0] for line in (REPO / "tests" / "data" / "zinc_200.smi").read_text().splitlines()]
BATCH = 32

#: molecules per MoleculeNet dataset (the registry's files), and the paper preset's budget
DATASETS = {"bbbp": 2039, "sider": 1427, "clintox": 1478, "bace": 1513, "tox21": 7831,
            "toxcast": 8575, "freesolv": 642, "esol": 1128, "lipo": 4200, "qm7": 6830, "qm8": 21786}
ZINC_TRAIN = 224_433  # ZINC250K after cleaning, 90% for training
PRETRAIN_EPOCHS, FINETUNE_EPOCHS, SEEDS = 16, 100, 3
#: jobs of `snakemake -n --config preset=paper` (docs/gpu_plan.md): pre-trainings (main + 10
#: variants); fine-tuning runs that train an encoder per dataset and seed: 4 graph kinds of the
#: main run (descriptors-only runs no encoder) + 10 variants
PRETRAININGS = 11
ENCODER_FINETUNES_PER_DATASET_SEED = 4 + 10

#: ASSUMED GPU (an A100-40GB): fp32 peak, the share of it these h=100 products sustain, and the
#: time of one small kernel including eager PyTorch's launch overhead
GPU_FP32_PEAK = 19.5e12
SUSTAINED = 0.30
SECONDS_PER_KERNEL = 10e-6


class CountOps(TorchDispatchMode):
    """Counts the aten operators dispatched (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def step_costs(model, loss_of, batch) -> tuple[float, int, float]:
    """FLOPs and operators of one training step (forward + backward), and its CPU seconds."""
    with FlopCounterMode(display=False) as flops:
        loss_of(model, batch).backward()
    with CountOps() as ops:
        loss_of(model, batch).backward()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        loss_of(model, batch).backward()
        best = min(best, time.perf_counter() - start)
    return flops.get_total_flops(), ops.count, best


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    arrays = featurize_smiles(SMILES[:BATCH])
    masked = Masking(0.6, dynamic=True, seed=0)(arrays.to_batch())
    pretrain = step_costs(BatmanNet(), lambda m, b: m.pretrain_loss(b).total, masked)
    tasks = 1
    finetune_model = BatmanNetFinetune(tasks, "classification", descriptor_dim=200, residual=True,
                                       view_norm="batchnorm")
    descriptors, targets = torch.randn(BATCH, 200), torch.randint(0, 2, (BATCH, tasks)).float()
    finetune = step_costs(finetune_model, lambda m, b: m.loss(m(b, descriptors), targets).total,
                          arrays.to_batch())

    def gpu_seconds(flops: float, ops: int) -> float:
        return max(flops / (GPU_FP32_PEAK * SUSTAINED), ops * SECONDS_PER_KERNEL)

    print(f"assumed GPU: {GPU_FP32_PEAK / 1e12:.1f} TFLOP/s fp32 x {SUSTAINED:.0%} sustained, "
          f"{SECONDS_PER_KERNEL * 1e6:.0f} us per small kernel")
    rows = []
    for name, (flops, ops, cpu) in (("pretrain", pretrain), ("finetune", finetune)):
        gpu = gpu_seconds(flops, ops)
        rows.append((name, gpu))
        print(f"{name} step (batch {BATCH}): {flops / 1e9:.1f} GFLOP forward+backward, {ops} operators; "
              f"CPU (2 threads, measured) {cpu * 1e3:.0f} ms = {BATCH / cpu:.0f} mol/s; GPU (assumed) "
              f"{gpu * 1e3:.1f} ms = {BATCH / gpu:.0f} mol/s, bound by "
              f"{'FLOPs' if flops / (GPU_FP32_PEAK * SUSTAINED) > ops * SECONDS_PER_KERNEL else 'kernel launches'}")
    gpu_step = dict(rows)
    pretrain_steps = PRETRAIN_EPOCHS * ZINC_TRAIN / BATCH
    pretrain_hours = PRETRAININGS * pretrain_steps * gpu_step["pretrain"] / 3600
    # training part 80%, plus one forward pass over validation (10%) per epoch at ~1/3 of a step
    finetune_steps = sum(FINETUNE_EPOCHS * (0.8 * n / BATCH + 0.1 * n / BATCH / 3) for n in DATASETS.values())
    finetune_hours = SEEDS * ENCODER_FINETUNES_PER_DATASET_SEED * finetune_steps * gpu_step["finetune"] / 3600
    print(f"pre-training: {PRETRAININGS} runs x {pretrain_steps:,.0f} steps = {pretrain_hours:.1f} GPU-hours")
    print(f"fine-tuning: {SEEDS} seeds x {ENCODER_FINETUNES_PER_DATASET_SEED} encoder runs x "
          f"{finetune_steps:,.0f} steps over the 11 datasets ({FINETUNE_EPOCHS} epochs, no early stop) = "
          f"{finetune_hours:.1f} GPU-hours")
    print(f"total (upper bound without early stopping): {pretrain_hours + finetune_hours:.0f} GPU-hours")


if __name__ == "__main__":
    main()
