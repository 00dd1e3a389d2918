"""Masked pre-training of BatmanNet on a graph cache (spec sections 2, 8).

One call of :func:`pretrain` trains for the configured epochs (or step / time budget), writing
into ``out``:

- ``checkpoints/latest.pt``: the full training state, replaced atomically every
  ``checkpoint_every`` steps and at every epoch end. Running the same command again resumes from
  it (a checkpoint of a different configuration is set aside, not resumed);
- ``model.pt``: the final model (hyper-parameters + weights + card, :mod:`bbmn.train.card`),
  what fine-tuning loads;
- ``history.jsonl``: one line of metrics per epoch; ``summary.json``: the final figures;
- ``steps.jsonl``: the training loss every ``log_every`` steps (the report's loss curve);
- ``config.json``: the effective configuration.

Validation reports each masked field's reconstruction accuracy beside the accuracy of always
predicting the field's most common class, so a reader sees what the model learned.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bbmn.data.cache import GraphCache
from bbmn.data.loader import CacheBatches
from bbmn.data.masking import Masking
from bbmn.errors import BbmnError
from bbmn.io import write_json
from bbmn.models.batmannet import BatmanNet, count_parameters, reconstruction_loss
from bbmn.train import distributed
from bbmn.train.card import data_files, make_card
from bbmn.train.checkpoint import save_checkpoint
from bbmn.train.config import PretrainConfig
from bbmn.train.determinism import deterministic, seed_everything
from bbmn.train.device import autocast, to_device, use_bf16
from bbmn.train.loop import Clock, RunFiles, Throughput, Training, adam, noam_schedule, training_fingerprint
from bbmn.train.runtime import peak_rss_mb
from bbmn.train.tracking import Tracker

log = logging.getLogger(__name__)


class _StopFlag:
    """Set by SIGTERM / SIGINT (a cluster's time limit, Ctrl-C): finish the step, checkpoint, stop."""

    def __init__(self) -> None:
        self.stop = False
        self._previous = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        log.warning("signal %d: stopping after this step, with a checkpoint", signum)
        self.stop = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def validate(model: torch.nn.Module, batches: CacheBatches, masking: Masking,
             ctx: distributed.Context, max_batches: int = 0, bf16: bool = False) -> dict[str, float]:
    """Mean loss terms and per-field accuracy of masked reconstruction on held-out molecules.

    Masks are static (hashed from each molecule's row), so epochs are compared on the same task.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    correct: dict[str, torch.Tensor] = {}
    count: dict[str, torch.Tensor] = {}
    classes: dict[str, torch.Tensor] = {}
    n_batches = 0
    with torch.no_grad():
        for i, arrays in enumerate(batches.epoch(0)):
            if max_batches and i >= max_batches:
                break
            batch = to_device(masking(arrays.to_batch()), ctx.device)
            with autocast(bf16, ctx.device):
                loss = reconstruction_loss(model(batch), batch)
            n_batches += 1
            sums["loss"] += float(loss.total)
            sums["node_loss"] += float(loss.node)
            sums["edge_loss"] += float(loss.edge)
            for name in loss.correct:
                correct[name] = correct.get(name, 0) + loss.correct[name].cpu()
                count[name] = count.get(name, 0) + loss.count[name].cpu()
                hist = loss.class_counts[name].cpu()
                classes[name] = classes[name] + hist if name in classes else hist
    model.train(was_training)
    totals = torch.tensor([n_batches] + [sums[k] for k in ("loss", "node_loss", "edge_loss")],
                          dtype=torch.float64)
    totals = distributed.all_reduce_sum(totals, ctx)
    metrics = {k: float(totals[i + 1] / max(float(totals[0]), 1.0))
               for i, k in enumerate(("loss", "node_loss", "edge_loss"))}
    for name in sorted(correct):
        stats = distributed.all_reduce_sum(
            torch.cat([torch.stack([correct[name], count[name]]).double(), classes[name].double()]), ctx)
        n = max(float(stats[1]), 1.0)
        metrics[f"acc.{name}"] = float(stats[0]) / n
        metrics[f"majority.{name}"] = float(stats[2:].max()) / n
    return metrics


def pretrain(cache_path: str | Path, out: str | Path, cfg: PretrainConfig = PretrainConfig(),
             tracking_parent: str | Path | None = None, tracking_required: bool = False) -> dict:
    """Pre-train on ``cache_path`` into ``out``; return (and write) the summary.

    Works alike in one process or under ``torchrun`` (data-parallel, every rank reading its share
    of each global batch order); only rank 0 writes files and tracks.
    """
    with deterministic(cfg.deterministic):
        return _pretrain(cache_path, out, cfg, tracking_parent, tracking_required)


def _pretrain(cache_path: str | Path, out: str | Path, cfg: PretrainConfig,
              tracking_parent: str | Path | None, tracking_required: bool) -> dict:
    run = _Pretraining(cache_path, Path(out), cfg)
    tracker = run.tracker(tracking_parent, tracking_required)
    with tracker, _StopFlag() as stop:
        run.train(tracker, stop)
        summary = run.finish()
    distributed.barrier(run.ctx)
    return summary


class _Pretraining:
    """One invocation of a pre-training run: its data, model and training state, where it stands
    (``epoch``, ``skip`` steps done in it, global ``step``, ``history``), and what it writes.

    The steps are methods over this shared state, in the order a run takes them: set up (the
    order that fixes the seeded draws: data, then weights), resume, train epoch by epoch,
    finish. A step's outputs (checkpoints, snapshots, records) are written on rank 0 only.
    """

    def __init__(self, cache_path: str | Path, out: Path, cfg: PretrainConfig):
        self.cache_path, self.out, self.cfg = cache_path, out, cfg
        self.ctx = distributed.setup(cfg.device)
        self.bf16 = use_bf16(cfg.bf16, self.ctx.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self._read_corpus()
        self._build_model()
        self.checkpoint = out / "checkpoints" / "latest.pt"
        self.kept = out / "checkpoints" / "snapshots"  # snapshots, hard-linked (see _restore_snapshots)
        self._resume()
        self.files = RunFiles(out)
        if self.ctx.is_main:
            self.files.start(self._params(), self.history, self.step)
        self.corpus = self._corpus_files() if self.ctx.is_main else {}  # hashed once per run
        self.meter = Throughput()
        self.clock = Clock(cfg.max_minutes)  # this invocation's time: a restarted job gets its budget anew
        self.out_of_time = False

    # ------------------------------------------------------------------------------------ set-up

    def _read_corpus(self) -> None:
        """The training and validation batches, and the run's length in steps.

        Raises:
            BbmnError: for an empty cache, too few molecules for one batch, or snapshot steps
                outside the run.
        """
        cfg, ctx = self.cfg, self.ctx
        self.cache = GraphCache(self.cache_path)
        if self.cache.tasks and len(self.cache) == 0:
            raise BbmnError(f"{self.cache_path} holds no molecules")
        common = dict(val_fraction=cfg.val_fraction, seed=cfg.seed, window=cfg.window,
                      rank=ctx.rank, world_size=ctx.world_size)
        self.train_batches = CacheBatches(self.cache, cfg.batch_size, part="train", drop_last=ctx.distributed,
                                          **common)
        self.val_batches = CacheBatches(self.cache, cfg.batch_size, part="val", shuffle=False, **common)
        self.steps_per_epoch = len(self.train_batches)
        if self.steps_per_epoch == 0:
            raise BbmnError(f"{self.cache_path}: too few molecules ({self.train_batches.num_molecules} in "
                            f"the training part) for batches of {cfg.batch_size}")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        # the spec's 1 of 16 epochs; a step budget shrinks the warm-up in proportion
        self.warmup = min(int(round(self.total_steps * cfg.warmup_epochs / cfg.epochs)), self.total_steps)
        beyond = [n for n in cfg.snapshot_steps if n > self.total_steps or n < 0]
        if beyond:
            raise BbmnError(f"snapshot steps {beyond} are outside this run's 0..{self.total_steps} steps "
                            f"({self.steps_per_epoch} per epoch)")

    def _build_model(self) -> None:
        """The seeded model, its optimizer and schedule, the data-parallel wrapper that trains it,
        and the training (per epoch) and validation (fixed) masks."""
        cfg, ctx = self.cfg, self.ctx
        self.model = BatmanNet(**{"mask_ratio": cfg.mask_ratio, **cfg.model}).to(ctx.device)
        if cfg.compile:
            self.model.enable_compile()
        self.n_params = count_parameters(self.model)
        optimizer = adam(self.model.parameters(), cfg)
        self.training = Training(self.model, optimizer,
                                 noam_schedule(optimizer, cfg, self.warmup, self.total_steps))
        self.train_model = self.model
        if ctx.distributed:
            self.train_model = distributed.data_parallel(self.model, ctx, cfg.shared_memory_average)
        self.masking = Masking(cfg.mask_ratio, dynamic=cfg.dynamic_mask, seed=cfg.seed)
        self.val_masking = Masking(cfg.mask_ratio, dynamic=False, seed=cfg.seed + 1)

    def _resume(self) -> None:
        """Continue from ``checkpoints/latest.pt`` when it is this configuration's, on this data
        and this number of ranks; else start at step 0.

        A resumed run keeps the initialization for the step-0 snapshot when that file is gone:
        it can be rebuilt from the seed, and the model holds it until the state is loaded.
        """
        cfg = self.cfg
        fingerprint = training_fingerprint(cfg, cache_sha=self.cache.meta.get("source_sha256"),
                                           world_size=self.ctx.world_size)
        self.fingerprint = fingerprint
        initial = None
        if (0 in cfg.snapshot_steps and self.checkpoint.is_file()
                and not (self.out / "snapshots" / "step-0.pt").exists()):
            initial = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        state = self.training.resume(self.checkpoint, fingerprint, self.ctx.rank, set_aside=self.ctx.is_main)
        self.initial = initial if state is not None else None
        self.epoch, self.skip, self.step = 0, 0, 0
        self.history: list[dict] = []
        if state is not None:
            self.epoch, self.skip, self.step = state["epoch"], state["step_in_epoch"], state["step"]
            self.history = state.get("history", [])
            log.info("resuming from %s: epoch %d, step %d", self.checkpoint, self.epoch, self.step)

    def _params(self) -> dict:
        """The effective configuration (config.json, the tracked run's parameters)."""
        return {**asdict(self.cfg), "model": self.model.config, "cache": str(self.cache_path),
                "molecules": len(self.cache), "train_molecules": self.train_batches.num_molecules,
                "val_molecules": self.val_batches.num_molecules, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "warmup_steps": self.warmup,
                "world_size": self.ctx.world_size, "parameters": self.n_params}

    def _corpus_files(self) -> dict:
        """The corpus file and its sha256, with its molecule counts, for the model cards."""
        corpus = data_files(corpus=self.cache_path)
        corpus["corpus"].update(molecules=len(self.cache), train_molecules=self.train_batches.num_molecules,
                                val_molecules=self.val_batches.num_molecules)
        return corpus

    def tracker(self, parent: str | Path | None, required: bool) -> Tracker:
        """The run's MLflow run (rank 0 only), named after the corpus and the variant."""
        cfg = self.cfg
        variant_tags = ({"variant": cfg.variant,
                         "variant_overrides": json.dumps(cfg.variant_overrides, sort_keys=True)}
                        if cfg.variant else {})
        return Tracker(f"pretrain-{Path(self.cache_path).stem}" + (f"-{cfg.variant}" if cfg.variant else ""),
                       tags={"stage": "pretrain", "seed": cfg.seed, **variant_tags},
                       params=self._params(), parent=parent, required=required, enabled=self.ctx.is_main)

    # ---------------------------------------------------------------------------------- training

    def train(self, tracker: Tracker, stop: _StopFlag) -> None:
        """Train until the epochs or the step budget are done, the time budget runs out or a
        signal asks to stop; a checkpoint at every epoch's end (or where it stopped)."""
        self.tracker, self.stop = tracker, stop
        self._restore_snapshots()
        self._snapshot()  # step 0: the initialization (when asked for); on resume, the resumed step
        if self.cfg.validate_every and self.step == 0:
            self._validation_record(0.0, [])
        self.model.train()
        while (self.epoch < self.cfg.epochs and self.step < self.total_steps
               and not (stop.stop or self.out_of_time)):
            self._end_epoch(self._train_epoch())

    def _train_epoch(self) -> list[float]:
        """Train the current epoch from step ``skip`` until its end or a stop; its step losses."""
        cfg = self.cfg
        losses: list[float] = []
        self.step_in_epoch = self.skip
        progress = _progress(self.ctx, self.steps_per_epoch, self.skip, f"epoch {self.epoch + 1}/{cfg.epochs}")
        self.meter.restart()
        for arrays in self.train_batches.epoch(self.epoch, skip=self.skip):
            losses.append(self._train_step(arrays))
            progress.update(1)
            if self.step % cfg.log_every == 0:
                self._log_step(losses[-cfg.log_every:], progress)
            self._check_stop()
            self._snapshot()
            if self.step >= self.total_steps or self.stop.stop or self.out_of_time:
                break
            self._between_steps(losses)
            self.meter.restart()  # validation and checkpoints are not training time
        progress.close()
        return losses

    def _train_step(self, arrays) -> float:
        """One optimizer step on a batch masked for this epoch; its loss."""
        batch = to_device(self.masking(arrays.to_batch(), epoch=self.epoch), self.ctx.device)
        with autocast(self.bf16, self.ctx.device):
            loss = reconstruction_loss(self.train_model(batch), batch, counts=False)
        self.training.step(loss.total)
        self.step += 1
        self.step_in_epoch += 1
        value = loss.total.detach().item()
        self.meter.count(len(arrays) * self.ctx.world_size)
        return value

    def _log_step(self, losses: list[float], progress) -> None:
        """The mean loss of the last logged steps: on the bar (or in the log in batch jobs) and,
        as rank 0's, in steps.jsonl (the report's loss curve)."""
        rate = self.meter.rate
        progress.set_postfix(loss=f"{np.mean(losses):.3f}", mol_s=f"{rate:.0f}")
        if not self.ctx.is_main:
            return
        if not progress.enabled_display:
            log.info("epoch %d step %d loss %.4f lr %.2e %.0f mol/s", self.epoch + 1, self.step,
                     np.mean(losses), self.training.lr, rate)
        self.files.add_step({"step": self.step, "epoch": self._epochs_done(), "train_loss": float(np.mean(losses)),
                             "lr": self.training.lr})

    def _check_stop(self) -> None:
        """Look at the time budget; data-parallel ranks agree on a stop, or they would deadlock."""
        self.out_of_time = self.clock.out_of_time()
        if self.ctx.distributed:
            flags = distributed.all_reduce_sum(
                torch.tensor([self.stop.stop, self.out_of_time], dtype=torch.int32), self.ctx)
            self.stop.stop, self.out_of_time = bool(flags[0]), bool(flags[1])

    def _between_steps(self, losses: list[float]) -> None:
        """Validate and checkpoint on the steps they are due (not at an epoch's end: see _end_epoch)."""
        cfg = self.cfg
        if cfg.validate_every and self.step % cfg.validate_every == 0:
            self._validation_record(self._epochs_done(), losses[-cfg.validate_every:])
            self.model.train()
        if self.step % cfg.checkpoint_every == 0:
            self._save(self.epoch, self.step_in_epoch)

    def _end_epoch(self, losses: list[float]) -> None:
        """Validate (unless done at this step already, or a signal asks to stop fast: a time
        limit is near) and checkpoint where the next invocation or epoch starts."""
        finished = self.step_in_epoch >= self.steps_per_epoch
        validated = self.history and self.history[-1]["step"] == self.step
        if not (self.stop.stop or validated):
            self._validation_record(self.epoch + (1 if finished else self.step_in_epoch / self.steps_per_epoch),
                                    losses)
        self.epoch, self.skip = (self.epoch + 1, 0) if finished else (self.epoch, self.step_in_epoch)
        self._save(self.epoch, self.skip)

    def _epochs_done(self) -> float:
        return round(self.epoch + self.step_in_epoch / self.steps_per_epoch, 4)

    def _validation_record(self, epoch_done: float, train_losses: list[float]) -> None:
        """Validate, and record it with the training loss since the last record: in the history
        (of the checkpoint, history.jsonl, the tracked run)."""
        metrics = validate(self.model, self.val_batches, self.val_masking, self.ctx, self.cfg.val_batches,
                           self.bf16)
        record = {"epoch": epoch_done, "step": self.step,
                  "train_loss": float(np.mean(train_losses)) if train_losses else math.nan,
                  "lr": self.training.lr, "molecules_per_s": self.meter.rate,
                  **{f"val_{k}": v for k, v in metrics.items()}}
        self.history.append(record)
        self.tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=self.step)
        if self.ctx.is_main:
            log.info("epoch %.2f: train loss %.4f, val loss %.4f, %s", record["epoch"],
                     record["train_loss"], record["val_loss"], _accuracy_line(metrics))
            self.files.add_record(record)

    def _save(self, epoch: int, step_in_epoch: int) -> None:
        """Checkpoint: the next invocation starts at ``step_in_epoch`` of ``epoch``."""
        self.training.save(self.checkpoint, self.fingerprint, self.ctx, epoch=epoch,
                           step_in_epoch=step_in_epoch, step=self.step, history=self.history,
                           model_config=self.model.config)

    # --------------------------------------------------------------------------------- snapshots

    def _card(self, epochs_done: float, **extra: Any) -> dict:
        """What the model files say of themselves (:mod:`bbmn.train.card`)."""
        return make_card("batmannet-pretrained", self.model.config, asdict(self.cfg), self.corpus, self.step,
                         epochs_done, self.history[-1] if self.history else {}, parameters=self.n_params,
                         **extra)

    def _snapshot(self, at: int | None = None, weights: dict | None = None) -> None:
        """The model after ``at`` steps (default: now), when a snapshot is asked for there, as a
        model.pt of its own, hard-linked under checkpoints/ too.

        Snakemake removes a job's outputs when it restarts it, snapshots included; the link is
        what :meth:`_restore_snapshots` puts back."""
        at = self.step if at is None else at
        if not (self.ctx.is_main and at in self.cfg.snapshot_steps):
            return
        path = self.out / "snapshots" / f"step-{at}.pt"
        epochs = round(at / self.steps_per_epoch, 4)
        save_checkpoint(path, model_config=self.model.config,
                        model=weights if weights is not None else self.model.state_dict(),
                        kind="batmannet-pretrained", summary={"steps": at, "epochs_done": epochs},
                        card=self._card(epochs))
        self.kept.mkdir(parents=True, exist_ok=True)
        (self.kept / path.name).unlink(missing_ok=True)
        os.link(path, self.kept / path.name)

    def _restore_snapshots(self) -> None:
        """Put back the snapshots of steps already done that a restart removed."""
        for at in self.cfg.snapshot_steps if self.ctx.is_main else ():
            path = self.out / "snapshots" / f"step-{at}.pt"
            if at >= self.step or path.exists():  # step `self.step` itself is written next
                continue
            if (self.kept / path.name).exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.link(self.kept / path.name, path)
            elif at == 0 and self.initial is not None:
                self._snapshot(0, self.initial)
            else:
                log.warning("snapshot %s of an earlier invocation is gone and cannot be rebuilt", path)

    # ----------------------------------------------------------------------------------- the end

    def finish(self) -> dict:
        """The summary (every rank); on rank 0 the final model (unless a signal stopped the run:
        it resumes later) and summary.json, written and tracked."""
        ended = "signal" if self.stop.stop else ("time_budget" if self.out_of_time else "done")
        summary = self._summary(ended)
        if self.ctx.is_main:
            if ended != "signal":
                self._write_model(summary, ended)
            write_json(self.out / "summary.json", summary)
            self.tracker.log_artifact(self.out / "summary.json")
            self.tracker.log_metrics({"peak_rss_mb": summary["peak_rss_mb"],
                                      "final_molecules_per_s": summary["molecules_per_s"]}, step=self.step)
        return summary

    def _summary(self, ended: str) -> dict:
        """The run's final figures, with every rank's weights digest (equal when healthy)."""
        digests = [weights_digest(self.model)]
        if self.ctx.distributed:
            digests = [None] * self.ctx.world_size
            torch.distributed.all_gather_object(digests, weights_digest(self.model))
        return {
            "params": self.n_params, "steps": self.step,
            "epochs_done": round(self.epoch + self.skip / self.steps_per_epoch, 4),
            "total_steps": self.total_steps, "batch_size": self.cfg.batch_size,
            "world_size": self.ctx.world_size, "molecules_per_s": round(self.meter.rate, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "device": str(self.ctx.device), "ended": ended,
            "rank": self.ctx.rank, "weights_digests": digests,
            "final": self.history[-1] if self.history else {},
        }

    def _write_model(self, summary: dict, ended: str) -> None:
        """model.pt with its card; tracked as an artifact, or as a new version of the registered
        model (``cfg.register``)."""
        final = self._card(summary["epochs_done"], ended=ended)
        save_checkpoint(self.out / "model.pt", model_config=self.model.config, model=self.model.state_dict(),
                        kind="batmannet-pretrained", summary=summary, card=final)
        if self.cfg.register:
            self.tracker.register_model(self.cfg.register, self.tracker.log_model(self.out / "model.pt"),
                                        tags={"card": final})
        else:
            self.tracker.log_artifact(self.out / "model.pt")


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of all parameters: equal on every rank of a healthy data-parallel run."""
    import hashlib

    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _accuracy_line(metrics: dict[str, float]) -> str:
    parts = []
    for key in sorted(k for k in metrics if k.startswith("acc.")):
        name = key[4:]
        parts.append(f"{name} {metrics[key]:.3f} (majority {metrics['majority.' + name]:.3f})")
    return "; ".join(parts)


class _NoProgress:
    enabled_display = False

    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(ctx: distributed.Context, total: int, initial: int, desc: str):
    """A tqdm bar on rank 0 in a terminal; log lines instead in batch jobs."""
    if not ctx.is_main:
        return _NoProgress()
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="step", disable=None)
    bar.enabled_display = not bar.disable
    return bar
