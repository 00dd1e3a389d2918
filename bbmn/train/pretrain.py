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
import time
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
from bbmn.io import atomic_path, write_json
from bbmn.models.batmannet import BatmanNet, count_parameters, reconstruction_loss
from bbmn.train import distributed
from bbmn.train.card import data_files, make_card
from bbmn.train.config import PretrainConfig
from bbmn.train.checkpoint import (load_optimizer_state, optimizer_state, resumable_state, rng_state,
                                   save_checkpoint, set_rng_state)
from bbmn.train.determinism import deterministic, seed_everything
from bbmn.train.device import autocast, to_device, use_bf16
from bbmn.train.runtime import peak_rss_mb
from bbmn.train.schedule import NoamSchedule
from bbmn.train.tracking import Tracker, config_hash

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
    out = Path(out)
    ctx = distributed.setup(cfg.device)
    bf16 = use_bf16(cfg.bf16, ctx.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    cache = GraphCache(cache_path)
    if cache.tasks and len(cache) == 0:
        raise BbmnError(f"{cache_path} holds no molecules")
    common = dict(val_fraction=cfg.val_fraction, seed=cfg.seed, window=cfg.window,
                  rank=ctx.rank, world_size=ctx.world_size)
    train_batches = CacheBatches(cache, cfg.batch_size, part="train", drop_last=ctx.distributed, **common)
    val_batches = CacheBatches(cache, cfg.batch_size, part="val", shuffle=False, **common)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise BbmnError(f"{cache_path}: too few molecules ({train_batches.num_molecules} in the "
                        f"training part) for batches of {cfg.batch_size}")
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    # the spec's 1 of 16 epochs; a step budget shrinks the warm-up in proportion
    warmup = min(int(round(total_steps * cfg.warmup_epochs / cfg.epochs)), total_steps)

    beyond = [n for n in cfg.snapshot_steps if n > total_steps or n < 0]
    if beyond:
        raise BbmnError(f"snapshot steps {beyond} are outside this run's 0..{total_steps} steps "
                        f"({steps_per_epoch} per epoch)")
    model = BatmanNet(**{"mask_ratio": cfg.mask_ratio, **cfg.model}).to(ctx.device)
    if cfg.compile:
        model.enable_compile()
    n_params = count_parameters(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.init_lr, weight_decay=cfg.weight_decay,
                                 fused=True)
    schedule = NoamSchedule(optimizer, warmup, total_steps, cfg.init_lr, cfg.max_lr, cfg.final_lr)
    train_model = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    masking = Masking(cfg.mask_ratio, dynamic=cfg.dynamic_mask, seed=cfg.seed)
    val_masking = Masking(cfg.mask_ratio, dynamic=False, seed=cfg.seed + 1)

    params = {**asdict(cfg), "model": model.config, "cache": str(cache_path),
              "molecules": len(cache), "train_molecules": train_batches.num_molecules,
              "val_molecules": val_batches.num_molecules, "steps_per_epoch": steps_per_epoch,
              "total_steps": total_steps, "warmup_steps": warmup, "world_size": ctx.world_size,
              "parameters": n_params}
    fingerprint = config_hash({**cfg.training_keys(), "cache_sha": cache.meta.get("source_sha256"),
                               "world_size": ctx.world_size})
    checkpoint = out / "checkpoints" / "latest.pt"
    epoch, skip, step = 0, 0, 0
    history: list[dict] = []
    state = resumable_state(checkpoint, fingerprint, set_aside=ctx.is_main)
    # Snakemake removes a job's outputs when it restarts it, snapshots included: each snapshot is
    # also hard-linked under checkpoints/ (restored from there), and the initialization (step 0)
    # can be rebuilt from the seed, which is what the model holds before the state is loaded.
    kept = out / "checkpoints" / "snapshots"
    initial = None
    if state is not None and 0 in cfg.snapshot_steps and not (out / "snapshots" / "step-0.pt").exists():
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if state is not None:
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, model, state["optimizer"], checkpoint)
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"][ctx.rank] if isinstance(state["rng"], list) else state["rng"])
        epoch, skip, step = state["epoch"], state["step_in_epoch"], state["step"]
        history = state.get("history", [])
        log.info("resuming from %s: epoch %d, step %d", checkpoint, epoch, step)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", params)
        with atomic_path(out / "history.jsonl") as tmp:  # the checkpoint's epochs, no more
            tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
        with atomic_path(out / "steps.jsonl") as tmp:  # the logged steps the checkpoint covers
            tmp.write_text(_steps_up_to(out / "steps.jsonl", step))

    def save(epoch_now: int, step_in_epoch: int) -> None:
        states = rng_state()
        if ctx.distributed:  # every rank's RNG, so a resumed rank continues its own stream
            gathered = [None] * ctx.world_size
            torch.distributed.all_gather_object(gathered, states)
            states = gathered
        if ctx.is_main:
            save_checkpoint(checkpoint, model=model.state_dict(), optimizer=optimizer_state(optimizer, model),
                            schedule=schedule.state_dict(), rng=states, epoch=epoch_now,
                            step_in_epoch=step_in_epoch, step=step, history=history,
                            fingerprint=fingerprint, model_config=model.config)

    corpus = data_files(corpus=cache_path) if ctx.is_main else {}  # hashed once per run
    if corpus:
        corpus["corpus"].update(molecules=len(cache), train_molecules=train_batches.num_molecules,
                                val_molecules=val_batches.num_molecules)

    def card(epochs_done: float, **extra: Any) -> dict:  # what the model files say of themselves
        return make_card("batmannet-pretrained", model.config, asdict(cfg), corpus, step, epochs_done,
                         history[-1] if history else {}, parameters=n_params, **extra)

    def snapshot(at: int | None = None, weights: dict | None = None) -> None:
        """The model after ``at`` steps (default: now) as a model.pt of its own, hard-linked under
        checkpoints/ too."""
        at = step if at is None else at
        if ctx.is_main and at in cfg.snapshot_steps:
            path = out / "snapshots" / f"step-{at}.pt"
            save_checkpoint(path, model_config=model.config,
                            model=weights if weights is not None else model.state_dict(),
                            kind="batmannet-pretrained",
                            summary={"steps": at, "epochs_done": round(at / steps_per_epoch, 4)},
                            card=card(round(at / steps_per_epoch, 4)))
            kept.mkdir(parents=True, exist_ok=True)
            (kept / path.name).unlink(missing_ok=True)
            os.link(path, kept / path.name)

    def restore_snapshots() -> None:
        """Put back the snapshots of steps already done that a restart removed."""
        for at in cfg.snapshot_steps if ctx.is_main else ():
            path = out / "snapshots" / f"step-{at}.pt"
            if at > step or path.exists():
                continue
            if (kept / path.name).exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                os.link(kept / path.name, path)
            elif at == 0 and initial is not None:
                snapshot(0, initial)
            else:
                log.warning("snapshot %s of an earlier invocation is gone and cannot be rebuilt", path)

    def validation_record(epoch_done: float, train_losses: list[float]) -> dict:
        metrics = validate(model, val_batches, val_masking, ctx, cfg.val_batches, bf16)
        record = {"epoch": epoch_done, "step": step,
                  "train_loss": float(np.mean(train_losses)) if train_losses else math.nan,
                  "lr": schedule.get_last_lr()[0],
                  "molecules_per_s": train_molecules / max(train_seconds, 1e-9),
                  **{f"val_{k}": v for k, v in metrics.items()}}
        history.append(record)
        tracker.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=step)
        if ctx.is_main:
            log.info("epoch %.2f: train loss %.4f, val loss %.4f, %s", record["epoch"],
                     record["train_loss"], record["val_loss"], _accuracy_line(metrics))
            with open(out / "history.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record

    variant_tags = ({"variant": cfg.variant, "variant_overrides": json.dumps(cfg.variant_overrides, sort_keys=True)}
                    if cfg.variant else {})
    tracker = Tracker(f"pretrain-{Path(cache_path).stem}" + (f"-{cfg.variant}" if cfg.variant else ""),
                      tags={"stage": "pretrain", "seed": cfg.seed, **variant_tags},
                      params=params, parent=tracking_parent, required=tracking_required,
                      enabled=ctx.is_main)
    train_seconds, train_molecules = 0.0, 0
    started = time.perf_counter()
    out_of_time = False
    with tracker, _StopFlag() as stop:
        restore_snapshots()
        snapshot()  # step 0: the initialization (when asked for); on resume, the resumed step
        if cfg.validate_every and step == 0:
            validation_record(0.0, [])
        model.train()
        while epoch < cfg.epochs and step < total_steps and not (stop.stop or out_of_time):
            losses = []
            step_in_epoch = skip
            progress = _progress(ctx, steps_per_epoch, skip, f"epoch {epoch + 1}/{cfg.epochs}")
            tick = time.perf_counter()
            for arrays in train_batches.epoch(epoch, skip=skip):
                batch = to_device(masking(arrays.to_batch(), epoch=epoch), ctx.device)
                with autocast(bf16, ctx.device):
                    loss = reconstruction_loss(train_model(batch), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.total.backward()
                optimizer.step()
                schedule.step()
                step += 1
                step_in_epoch += 1
                losses.append(loss.total.detach().item())
                now = time.perf_counter()
                train_seconds += now - tick
                train_molecules += len(arrays) * ctx.world_size
                tick = now
                progress.update(1)
                if step % cfg.log_every == 0:
                    rate = train_molecules / max(train_seconds, 1e-9)
                    progress.set_postfix(loss=f"{np.mean(losses[-cfg.log_every:]):.3f}", mol_s=f"{rate:.0f}")
                    if ctx.is_main and not progress.enabled_display:
                        log.info("epoch %d step %d loss %.4f lr %.2e %.0f mol/s", epoch + 1, step,
                                 np.mean(losses[-cfg.log_every:]), schedule.get_last_lr()[0], rate)
                    if ctx.is_main:  # rank 0's mean training loss over the last interval
                        with open(out / "steps.jsonl", "a") as fh:
                            fh.write(json.dumps({
                                "step": step, "epoch": round(epoch + step_in_epoch / steps_per_epoch, 4),
                                "train_loss": float(np.mean(losses[-cfg.log_every:])),
                                "lr": schedule.get_last_lr()[0]}) + "\n")
                out_of_time = bool(cfg.max_minutes) and (now - started) / 60 >= cfg.max_minutes
                if ctx.distributed:  # ranks must stop at the same step, or they deadlock
                    flags = distributed.all_reduce_sum(torch.tensor([stop.stop, out_of_time], dtype=torch.int32), ctx)
                    stop.stop, out_of_time = bool(flags[0]), bool(flags[1])
                snapshot()
                if step >= total_steps or stop.stop or out_of_time:
                    break
                if cfg.validate_every and step % cfg.validate_every == 0:
                    validation_record(round(epoch + step_in_epoch / steps_per_epoch, 4),
                                      losses[-cfg.validate_every:])
                    model.train()
                if step % cfg.checkpoint_every == 0:
                    save(epoch, step_in_epoch)
                tick = time.perf_counter()
            progress.close()
            finished_epoch = step_in_epoch >= steps_per_epoch
            if stop.stop:  # a time limit is near: checkpoint now, no validation
                epoch, skip = (epoch + 1, 0) if finished_epoch else (epoch, step_in_epoch)
                save(epoch, skip)
                break
            if not (history and history[-1]["step"] == step):  # not validated at this step yet
                validation_record(epoch + (1 if finished_epoch else step_in_epoch / steps_per_epoch),
                                  losses)
            if finished_epoch:
                epoch, skip = epoch + 1, 0
            else:
                skip = step_in_epoch
            save(epoch, skip)
        # finished, or stopped by the time budget: a usable model; stopped by a signal: resume later
        ended = "signal" if stop.stop else ("time_budget" if out_of_time else "done")
        digests = [weights_digest(model)]
        if ctx.distributed:
            digests = [None] * ctx.world_size
            torch.distributed.all_gather_object(digests, weights_digest(model))
        summary = {
            "params": n_params, "steps": step, "epochs_done": round(epoch + skip / steps_per_epoch, 4),
            "total_steps": total_steps, "batch_size": cfg.batch_size, "world_size": ctx.world_size,
            "molecules_per_s": round(train_molecules / max(train_seconds, 1e-9), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "device": str(ctx.device), "ended": ended,
            "rank": ctx.rank,
            "weights_digests": digests, "final": history[-1] if history else {},
        }
        if ctx.is_main:
            if ended != "signal":
                final = card(summary["epochs_done"], ended=ended)
                save_checkpoint(out / "model.pt", model_config=model.config, model=model.state_dict(),
                                kind="batmannet-pretrained", summary=summary, card=final)
                if cfg.register:  # as the run's logged model, a new version of the registered one
                    tracker.register_model(cfg.register, tracker.log_model(out / "model.pt"),
                                           tags={"card": final})
                else:
                    tracker.log_artifact(out / "model.pt")
            write_json(out / "summary.json", summary)
            tracker.log_artifact(out / "summary.json")
            tracker.log_metrics({"peak_rss_mb": summary["peak_rss_mb"],
                                 "final_molecules_per_s": summary["molecules_per_s"]}, step=step)
    distributed.barrier(ctx)
    return summary


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of all parameters: equal on every rank of a healthy data-parallel run."""
    import hashlib

    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _steps_up_to(path: Path, step: int) -> str:
    """The lines of ``steps.jsonl`` up to ``step``: a resumed run redoes the steps after its
    checkpoint, and a fresh run (step 0) starts an empty file."""
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
