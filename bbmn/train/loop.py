"""What pre-training and fine-tuning share: the optimizer and its schedule, one optimizer step,
resuming from and writing ``checkpoints/latest.pt``, the time budget, the throughput and the
run directory's files.

The two trainers differ in what a step reads and when they validate, checkpoint and stop; the
parts here are the ones that must behave alike in both, so that a checkpoint of either resumes the
same way (weights, Adam moments matched by parameter name, schedule, RNG streams) and a run's
directory looks the same while it trains.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bbmn.io import atomic_path, write_json
from bbmn.train import distributed
from bbmn.train.checkpoint import (load_optimizer_state, optimizer_state, resumable_state, rng_state,
                                   save_checkpoint, set_rng_state)
from bbmn.train.config import FinetuneConfig, PretrainConfig
from bbmn.train.schedule import NoamSchedule
from bbmn.train.tracking import config_hash

TrainConfig = PretrainConfig | FinetuneConfig


def adam(params: Iterable, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over ``params`` (tensors or parameter groups), starting at the schedule's first rate;
    fused, one kernel for all parameters instead of one per tensor."""
    return torch.optim.Adam(params, lr=cfg.init_lr, weight_decay=cfg.weight_decay, fused=True)


def noam_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, warmup_steps: int,
                  total_steps: int) -> NoamSchedule:
    """The Noam schedule over this run's real optimizer steps, at ``cfg``'s three rates."""
    return NoamSchedule(optimizer, warmup_steps, total_steps, cfg.init_lr, cfg.max_lr, cfg.final_lr)


def training_fingerprint(cfg: TrainConfig, **facts: Any) -> str:
    """The hash a checkpoint must carry to be resumed: the settings that change the weights
    (``cfg.training_keys()``) and the ``facts`` of the data they are trained on."""
    return config_hash({**cfg.training_keys(), **facts})


@dataclass
class Throughput:
    """Molecules per second of the optimizer steps alone: the time between :meth:`restart` and
    :meth:`count` is counted, so validation and checkpoints do not lower the rate."""

    seconds: float = 0.0
    molecules: int = 0
    _tick: float = field(default_factory=time.perf_counter, repr=False)

    def restart(self) -> None:
        """Start counting time from now (at an epoch's start, after non-training work)."""
        self._tick = time.perf_counter()

    def count(self, molecules: int) -> None:
        """A step over ``molecules`` ended now."""
        now = time.perf_counter()
        self.seconds += now - self._tick
        self.molecules += molecules
        self._tick = now

    @property
    def rate(self) -> float:
        return self.molecules / max(self.seconds, 1e-9)


class Clock:
    """A run's wall time, over earlier invocations too (``earlier_seconds``), against its time
    budget: ``max_minutes`` (0: none) is what a cluster job may take, whatever the restarts."""

    def __init__(self, max_minutes: float, earlier_seconds: float = 0.0):
        self.max_minutes = max_minutes
        self.earlier_seconds = earlier_seconds
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.earlier_seconds + time.perf_counter() - self.started

    def out_of_time(self) -> bool:
        return bool(self.max_minutes) and self.seconds() / 60 >= self.max_minutes


@dataclass
class Training:
    """The objects a checkpoint restores (with the RNG streams): the model, its optimizer and
    its learning-rate schedule, and the one optimizer step both trainers take."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: NoamSchedule

    def step(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``; the schedule moves on with every batch."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()

    def resume(self, checkpoint: Path, fingerprint: str, rank: int = 0, set_aside: bool = True) -> dict | None:
        """Load ``checkpoint`` if it is of this configuration (``fingerprint``) and return it for
        the trainer's own progress; None to start fresh (a foreign one is set aside, with
        ``set_aside``). ``rank`` picks this process's RNG streams from a data-parallel run's."""
        state = resumable_state(checkpoint, fingerprint, set_aside=set_aside)
        if state is None:
            return None
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, self.model, state["optimizer"], checkpoint)
        self.schedule.load_state_dict(state["schedule"])
        rng = state["rng"]
        set_rng_state(rng[rank] if isinstance(rng, list) else rng)
        return state

    def save(self, checkpoint: Path, fingerprint: str, ctx: distributed.Context | None = None,
             **progress: Any) -> None:
        """Write the training state and the trainer's ``progress`` to ``checkpoint`` atomically.

        In a data-parallel run (``ctx``) every rank must call it: each rank's RNG streams are
        gathered so that a resumed rank continues its own, and rank 0 writes.
        """
        states = rng_state()
        if ctx is not None and ctx.distributed:
            gathered = [None] * ctx.world_size
            torch.distributed.all_gather_object(gathered, states)
            states = gathered
        if ctx is None or ctx.is_main:
            save_checkpoint(checkpoint, model=self.model.state_dict(),
                            optimizer=optimizer_state(self.optimizer, self.model),
                            schedule=self.schedule.state_dict(), rng=states, **progress,
                            fingerprint=fingerprint)

    @property
    def lr(self) -> float:
        """The schedule's current rate (of the first parameter group)."""
        return self.schedule.get_last_lr()[0]


@dataclass(frozen=True)
class RunFiles:
    """The files of a run directory that grow while it trains: ``config.json``, ``history.jsonl``
    (one record per evaluation) and ``steps.jsonl`` (the logged steps).

    A resumed run redoes what came after its checkpoint, so it starts the files over from what
    the checkpoint covers; lines of a killed invocation beyond that would otherwise repeat.
    """

    out: Path

    def remove(self, names: Iterable[str]) -> None:
        """Remove an earlier run's results, so that a run that fails leaves none behind."""
        for name in names:
            (self.out / name).unlink(missing_ok=True)

    def start(self, params: Mapping, history: list[dict], step: int | None = None) -> None:
        """Write the effective configuration, the checkpoint's ``history`` and (given the
        checkpoint's ``step``) the logged steps up to it."""
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", params)
        with atomic_path(self.out / "history.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
        if step is not None:
            with atomic_path(self.out / "steps.jsonl") as tmp:
                tmp.write_text(_steps_up_to(self.out / "steps.jsonl", step))

    def add_record(self, record: Mapping) -> None:
        """Append an evaluation's record to ``history.jsonl``."""
        _append_line(self.out / "history.jsonl", record)

    def add_step(self, record: Mapping) -> None:
        """Append a logged step to ``steps.jsonl``."""
        _append_line(self.out / "steps.jsonl", record)


def _append_line(path: Path, record: Mapping) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _steps_up_to(path: Path, step: int) -> str:
    """The lines of ``steps.jsonl`` up to ``step`` (a fresh run, step 0, starts an empty file)."""
    if not path.is_file():
        return ""
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill
    return "".join(kept)
