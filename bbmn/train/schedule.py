"""The Noam-style learning-rate schedule of spec sections 8 and 10, stepped every batch.

lr(t) = init + (max - init) * t / W            for t < W
lr(t) = max * (final / max) ** ((t - W) / (T - W))  for W <= t <= T

with W warm-up steps and T total steps. The reference counted "batches of batches" and so
finished decaying in half an epoch; here W and T are the real numbers of optimizer steps.
"""

from __future__ import annotations

import torch


def noam_lr(step: int, warmup_steps: int, total_steps: int, init_lr: float, max_lr: float,
            final_lr: float) -> float:
    """The learning rate at optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return init_lr + (max_lr - init_lr) * step / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return max_lr * (final_lr / max_lr) ** progress


class NoamSchedule(torch.optim.lr_scheduler.LRScheduler):
    """:func:`noam_lr` for every parameter group of ``optimizer``; ``step()`` once per batch.

    A group with an ``lr_scale`` entry gets that multiple of the schedule's rate (for example the
    encoder's learning-rate multiplier of fine-tuning, GROVER's ``fine_tune_coff``).

    Args:
        optimizer: the optimizer whose learning rate is set.
        warmup_steps: steps of linear warm-up from ``init_lr`` to ``max_lr``.
        total_steps: steps of the whole run (warm-up included).
        init_lr: learning rate at step 0.
        max_lr: learning rate at the end of warm-up.
        final_lr: learning rate at ``total_steps``.

    Not ``torch.optim.lr_scheduler.LambdaLR`` over :func:`noam_lr`: LambdaLR scales each group's
    initial rate by the function's factor, and ``init_lr * (noam_lr / init_lr)`` misses
    ``noam_lr`` in the last bit at some steps (131 of 1000 in a fine-tuning run with 100 warm-up
    steps), nor can it load the schedule state that existing checkpoints hold.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                 init_lr: float, max_lr: float, final_lr: float, last_epoch: int = -1):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.init_lr, self.max_lr, self.final_lr = float(init_lr), float(max_lr), float(final_lr)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        lr = noam_lr(self.last_epoch, self.warmup_steps, self.total_steps, self.init_lr,
                     self.max_lr, self.final_lr)
        return [lr * group.get("lr_scale", 1.0) for group in self.optimizer.param_groups]
