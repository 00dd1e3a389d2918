"""Fine-tuning on a labelled dataset with GROVER's protocol (spec section 10).

One call of :func:`finetune` trains :class:`~bbmn.models.finetune.BatmanNetFinetune` on the
training part of a split, keeps the epoch with the best validation metric, stops after
``patience`` epochs without improvement (or at ``epochs``, or when the time budget runs out),
and scores that epoch on the test part. It writes into ``out``:

- ``model.pt``: the selected epoch's model with everything needed to score new molecules the way
  the test part was scored (model config, weights, tasks, task type, descriptor and target
  scalers) and its card (:mod:`bbmn.train.card`);
- ``metrics.json``: the run's result (the table step reads it; schema in :func:`finetune`);
- ``predictions.csv``: test part, ``row``, ``smiles``, then per task ``<task>`` (label, empty if
  missing) and ``<task>_pred`` (probability, or value in the label's units);
- ``history.jsonl``: one line per epoch; ``config.json``: the effective configuration and what
  was loaded from the pre-trained checkpoint.

``checkpoints/latest.pt`` is written atomically after every epoch; running the same command
again after a kill resumes from the last finished epoch and ends with the same result as an
uninterrupted run (on CPU: batch order, dropout and weights are restored bit for bit). It is
removed once the outputs are written. A run starts by removing an earlier run's ``metrics.json``,
``predictions.csv`` and ``model.pt``, so a run that fails leaves no stale result.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bbmn.data.labelled import LabelledData, LabelledPart, load_labelled
from bbmn.errors import BbmnError
from bbmn.eval.health import effective_rank, variance_share, view_spread
from bbmn.eval.metrics import check_metric, is_better, score
from bbmn.eval.records import write_metrics, write_predictions
from bbmn.inference.prepare import cleaning_of
from bbmn.inference.pyfunc import remove_pyfunc, save_pyfunc
from bbmn.io import atomic_path, sha256_file, write_json
from bbmn.kinds import FINETUNE_KINDS, RunKind
from bbmn.models.batmannet import count_parameters
from bbmn.models.options import ENCODER_SIZES
from bbmn.models.finetune import LOADABLE_KINDS, BatmanNetFinetune, LoadReport, combine_heads
from bbmn.train.card import check_model, data_files, make_card, plain
from bbmn.train.checkpoint import (load_checkpoint, load_optimizer_state, optimizer_state, resumable_state,
                                   rng_state, save_checkpoint, set_rng_state)
from bbmn.train.config import FinetuneConfig
from bbmn.train.determinism import deterministic, seed_everything
from bbmn.train.device import autocast, device_of, resolve_device, to_device, use_bf16
from bbmn.train.runtime import peak_rss_mb
from bbmn.train.schedule import NoamSchedule
from bbmn.train.tracking import Tracker, config_hash, flat_metrics

log = logging.getLogger(__name__)

#: the files a finished run leaves (removed when a run starts)
RESULTS = ("metrics.json", "predictions.csv", "model.pt")


def resolve_model_config(model: dict, pretrained: dict | None) -> dict:
    """The fine-tuning model's sizes: ``model``, with the encoder sizes of ``pretrained``.

    Raises:
        BbmnError: if ``model`` sets an encoder size that differs from the checkpoint's.
    """
    if pretrained is None:
        return dict(model)
    conflicts = {k: (model[k], pretrained[k]) for k in ENCODER_SIZES
                 if k in model and k in pretrained and model[k] != pretrained[k]}
    if conflicts:
        text = ", ".join(f"{k}={a} (checkpoint: {b})" for k, (a, b) in conflicts.items())
        raise BbmnError(f"model sizes conflict with the pre-trained checkpoint: {text}; the "
                        f"encoder sizes come from the checkpoint, leave them out")
    return {**model, **{k: pretrained[k] for k in ENCODER_SIZES if k in pretrained}}


def run_kind(inputs: str, pretrained: bool) -> RunKind:
    """The table row of a fine-tuning run: what its heads read and where its encoder starts.

    Raises:
        BbmnError: for a descriptors-only run given a pre-trained checkpoint (it has no encoder).
    """
    if inputs == "descriptors":
        if pretrained:
            raise BbmnError("a descriptors-only run has no encoder: leave out --checkpoint")
        return FINETUNE_KINDS["descriptors_only"]
    init = "pretrained" if pretrained else "scratch"
    if inputs == "graph":
        return FINETUNE_KINDS[f"graph_{init}"]
    if inputs == "both":
        return FINETUNE_KINDS[init]
    raise BbmnError(f"unknown inputs {inputs!r}; use both, graph or descriptors")


def make_optimizer(model: BatmanNetFinetune, cfg: FinetuneConfig) -> torch.optim.Optimizer:
    """Adam over the model; the encoders' input stages and blocks at ``encoder_lr`` times the
    schedule's rate, or, with ``encoder_lr`` 0, left out and frozen."""
    if cfg.encoder_lr < 0:
        raise BbmnError(f"encoder_lr must be >= 0, got {cfg.encoder_lr}")
    encoder = model.encoder_parameters() if model.uses_graph else []
    in_encoder = {id(p) for p in encoder}
    groups = [{"params": [p for p in model.parameters() if id(p) not in in_encoder]}]
    if cfg.encoder_lr > 0:
        groups.append({"params": encoder, "lr_scale": cfg.encoder_lr})
    else:
        for p in encoder:
            p.requires_grad_(False)
    return torch.optim.Adam(groups, lr=cfg.init_lr, weight_decay=cfg.weight_decay, fused=True)


def part_views(model: BatmanNetFinetune, part: LabelledPart, batch_size: int,
               raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The two pooled views ``(n, h)`` of a part's molecules (evaluation mode); with ``raw``,
    before the view normalization."""
    was_training = model.training
    model.eval()
    atom, bond = [], []
    with torch.no_grad():
        for batch, _, _ in _batches(part, np.arange(len(part)), batch_size, device_of(model)):
            a, b = model.raw_views(batch) if raw else model.views(batch)
            atom.append(a.cpu().numpy())
            bond.append(b.cpu().numpy())
    model.train(was_training)
    return np.concatenate(atom).astype(np.float64), np.concatenate(bond).astype(np.float64)


def view_health(model: BatmanNetFinetune, part: LabelledPart, batch_size: int) -> dict:
    """Do the graph views count? Per view, over a part's molecules: the between-molecule spread
    of the pooled view as the encoder gives it, and, of what its head reads, the effective rank and
    the share of the input variance (view against descriptors). Empty without graph views."""
    if not model.uses_graph:
        return {}
    raw = part_views(model, part, batch_size, raw=True)
    normed = part_views(model, part, batch_size) if model.config["view_norm"] != "none" else raw
    descriptors = (part.descriptors.astype(np.float64) if model.descriptor_dim
                   else np.zeros((len(part), 0)))
    return {name: {"spread": view_spread(r), "effective_rank": effective_rank(v),
                   "input_share": variance_share(v, descriptors)}
            for name, r, v in zip(("atom", "bond"), raw, normed)}


def _batches(part: LabelledPart, order: np.ndarray, size: int,
             device: torch.device = torch.device("cpu")) -> Iterator[tuple[Any, torch.Tensor, torch.Tensor]]:
    """(Batch, descriptors, targets) of the molecules ``order``, ``size`` at a time, on ``device``."""
    for start in range(0, len(order), size):
        idx = order[start:start + size]
        yield (to_device(part.graphs.take(idx).to_batch(), device),
               to_device(torch.from_numpy(part.descriptors[idx]), device),
               to_device(torch.from_numpy(part.targets[idx]), device))


def _float(outputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Heads' outputs in float32: the loss and the predictions are not computed in bfloat16."""
    return outputs[0].float(), outputs[1].float()


def predict_part(model: BatmanNetFinetune, batches: list, bf16: bool = False) -> tuple[np.ndarray, float]:
    """Model-space predictions ``(n, T)`` and the mean loss (over present labels) of a part
    (``batches`` on the model's device; ``bf16``: autocast the forward passes)."""
    was_training = model.training
    model.eval()
    preds, loss_sum, count = [], 0.0, 0
    with torch.no_grad():
        for batch, descriptors, targets in batches:
            with autocast(bf16, device_of(model)):
                outputs = model(batch, descriptors)
            outputs = _float(outputs)
            loss = model.loss(outputs, targets)
            loss_sum += float(loss.total) * loss.count
            count += loss.count
            preds.append(combine_heads(outputs, model.task_type).cpu().numpy())
    model.train(was_training)
    return np.concatenate(preds).astype(np.float64), (loss_sum / count if count else math.nan)


@dataclass
class _State:
    """Progress of a run: what a checkpoint restores besides weights and optimizer."""

    epoch: int = 0  # epochs finished
    step: int = 0
    best_epoch: int = 0
    best_value: float | None = None
    best_state: dict | None = None
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    stopped: str | None = None
    seconds: float = 0.0  # wall time of earlier invocations
    train_seconds: float = 0.0
    train_molecules: int = 0


def _fingerprint(cfg: FinetuneConfig, model_config: dict, files: list[Path | None]) -> str:
    return config_hash({**cfg.training_keys(), "model": model_config,
                        "files": [sha256_file(f) if f is not None else None for f in files]})


def _selection(metric: str, data: LabelledData) -> str:
    """``val_metric``, or ``val_loss`` when the validation labels cannot give a metric value."""
    labels = data.val.labels
    if math.isnan(score(metric, labels, np.zeros_like(labels), data.tasks).value):
        log.warning("the validation part cannot be scored with %s (every task is one-class or "
                    "unlabelled there): epochs are selected by validation loss instead", metric)
        return "val_loss"
    return "val_metric"


def finetune(cache: str | Path, descriptors: str | Path, split: str | Path, out: str | Path,
             cfg: FinetuneConfig = FinetuneConfig(), checkpoint: str | Path | None = None,
             tracking_parent: str | Path | None = None, tracking_required: bool = False) -> dict:
    """Fine-tune on ``cache`` (+ ``descriptors``, ``split``) into ``out``; return the metrics dict.

    Args:
        cache: graph cache of a labelled dataset (``bbmn featurize``); its metadata gives the
            tasks and the task type.
        descriptors: the dataset's descriptors (``bbmn descriptors``).
        split: a split file (``bbmn split``).
        out: run directory.
        cfg: settings.
        checkpoint: a pre-trained ``model.pt`` (``bbmn pretrain``); None trains from scratch.
        tracking_parent: the workflow's MLflow parent-run record (``bbmn track init``).
        tracking_required: fail instead of skipping tracking when the store is unusable.

    Returns:
        The content of ``metrics.json``: ``dataset``, ``seed``, ``model``, ``init``, ``row``,
        ``label``, ``metric``, ``task_type``, ``tasks``, ``split`` (path, method, seed, sizes),
        ``best_epoch``, ``epochs_run``, ``stopped`` (``patience``, ``epochs`` or
        ``time_budget``), ``selection`` (``val_metric`` or ``val_loss``), ``val`` and ``test``
        (:class:`~bbmn.eval.metrics.Score` dicts), ``checkpoint`` (path and loaded / fresh
        tensor counts, None from scratch), ``seconds``, ``molecules_per_s``, ``peak_rss_mb``.
    """
    with deterministic(cfg.deterministic):
        return _finetune(cache, descriptors, split, out, cfg, checkpoint, tracking_parent,
                         tracking_required)


def _finetune(cache: str | Path, descriptors: str | Path, split: str | Path, out: str | Path,
              cfg: FinetuneConfig, checkpoint: str | Path | None, tracking_parent: str | Path | None,
              tracking_required: bool) -> dict:
    started = time.perf_counter()
    out = Path(out)
    for name in RESULTS:  # a run that fails must not leave an earlier run's result behind
        (out / name).unlink(missing_ok=True)
    remove_pyfunc(out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)  # a bad --device fails before the data is read
    bf16 = use_bf16(cfg.bf16, device)
    data = load_labelled(cache, descriptors, split, cfg.descriptor_scaling)
    check_metric(cfg.metric, data.task_type)
    kind = run_kind(cfg.inputs, checkpoint is not None)
    init = kind.init
    pretrained = load_checkpoint(checkpoint) if checkpoint is not None else None
    if pretrained is not None:  # a training checkpoint (no kind) loads as it did before cards
        check_model(pretrained, checkpoint, (*LOADABLE_KINDS, None), "bbmn finetune --checkpoint")
    model_config = resolve_model_config(cfg.model, pretrained.get("model_config") if pretrained else None)
    model_config.update(descriptor_dim=data.train.descriptors.shape[1], disagreement=cfg.disagreement,
                        inputs=cfg.inputs, view_norm=cfg.view_norm, add_positions=cfg.add_positions,
                        frozen_encoder=cfg.encoder_lr == 0)

    seed_everything(cfg.seed)  # fresh weights: the same draws for scratch and pre-trained runs
    model = BatmanNetFinetune(len(data.tasks), data.task_type, **model_config)
    report: LoadReport | None = model.load_pretrained(pretrained) if pretrained is not None else None
    del pretrained
    model.to(device)
    if cfg.compile:
        model.enable_compile()
    if cfg.view_norm == "standardize":  # fixed statistics: the initial encoder's on the training part
        views = part_views(model, data.train, cfg.eval_batch_size, raw=True)
        model.atom_view_norm.set_statistics(torch.from_numpy(views[0]))
        model.bond_view_norm.set_statistics(torch.from_numpy(views[1]))
    health_at_start = view_health(model, data.train, cfg.eval_batch_size)

    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps)
    optimizer = make_optimizer(model, cfg)
    schedule = NoamSchedule(optimizer, warmup, total_steps, cfg.init_lr, cfg.max_lr, cfg.final_lr)
    selection = _selection(cfg.metric, data)

    latest = out / "checkpoints" / "latest.pt"
    fingerprint = _fingerprint(cfg, model.config, [Path(cache), Path(descriptors), Path(split),
                                                    Path(checkpoint) if checkpoint else None])
    st = _State()
    saved = resumable_state(latest, fingerprint)
    if saved is not None:
        model.load_state_dict(saved["model"])
        load_optimizer_state(optimizer, model, saved["optimizer"], latest)
        schedule.load_state_dict(saved["schedule"])
        set_rng_state(saved["rng"])
        st = _State(**saved["progress"])
        log.info("resuming from %s: %d epochs done", latest, st.epoch)
    out.mkdir(parents=True, exist_ok=True)
    params = {**asdict(cfg), "device": str(device), "bf16": bf16, "model": model.config, "init": init, "kind": kind.key, "cache": str(cache),
              "descriptors": str(descriptors), "split": data.split,
              "checkpoint": str(checkpoint) if checkpoint else None, "selection": selection,
              "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
              "warmup_steps": warmup, "parameters": count_parameters(model),
              "pretrained_weights": report.as_dict() if report else None}
    write_json(out / "config.json", params)
    with atomic_path(out / "history.jsonl") as tmp:  # drop lines of an epoch the checkpoint lacks
        tmp.write_text("".join(json.dumps(r) + "\n" for r in st.history))

    def used_minutes() -> float:  # over all invocations of this run
        return (st.seconds + time.perf_counter() - resumed_at) / 60

    def out_of_time() -> bool:
        return bool(cfg.max_minutes) and used_minutes() >= cfg.max_minutes

    val_batches = list(_batches(data.val, np.arange(len(data.val)), cfg.eval_batch_size, device))
    tracker = Tracker(f"finetune-{cfg.dataset}-{kind.key}-seed{cfg.seed}",
                      tags={"stage": "finetune", "dataset": cfg.dataset, "seed": cfg.seed,
                            "init": init, "kind": kind.key, "metric": cfg.metric,
                            **({"variant": cfg.variant} if cfg.variant else {})},
                      params={k: v for k, v in params.items() if k != "pretrained_weights"},
                      parent=tracking_parent, required=tracking_required)
    resumed_at = started
    with tracker:
        while st.stopped is None:
            epoch_started = time.perf_counter()
            losses, partial = _train_epoch(model, optimizer, schedule, data.train, cfg, st, out_of_time,
                                           device, bf16)
            record = _validate(model, val_batches, data, cfg, selection, st, bf16)
            record.update(train_loss=float(np.mean(losses)) if losses else math.nan,
                          lr=schedule.get_last_lr()[0], partial=partial,
                          seconds=round(time.perf_counter() - epoch_started, 3))
            st.history.append(record)
            with open(out / "history.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            tracker.log_metrics({k: v for k, v in record.items() if isinstance(v, float)
                                 and math.isfinite(v)}, step=st.epoch)
            log.info("epoch %d/%d: train loss %.4f, val %s %.4f, val loss %.4f, lr %.2e, %.1f s%s",
                     st.epoch, cfg.epochs, record["train_loss"], cfg.metric,
                     record[f"val_{cfg.metric}"], record["val_loss"], record["lr"],
                     record["seconds"], " (best)" if record["improved"] else "")
            if partial or out_of_time():
                st.stopped = "time_budget"
            elif st.bad_epochs >= cfg.patience:
                st.stopped = "patience"
            elif st.epoch >= cfg.epochs:
                st.stopped = "epochs"
            st.seconds += time.perf_counter() - resumed_at
            resumed_at = time.perf_counter()
            save_checkpoint(latest, model=model.state_dict(), optimizer=optimizer_state(optimizer, model),
                            schedule=schedule.state_dict(), rng=rng_state(), progress=dict(vars(st)),
                            fingerprint=fingerprint)
        log.info("stopped (%s) after %d epochs; best epoch %d", st.stopped, st.epoch, st.best_epoch)

        if st.best_state is None:
            log.warning("no epoch gave a finite validation value (%s): scoring the last epoch", selection)
            st.best_epoch, st.best_state = st.epoch, model.state_dict()
        model.load_state_dict(st.best_state)
        card = make_card("batmannet-finetuned", model.config, asdict(cfg),
                         data_files(cache=cache, descriptors=descriptors, split=split, checkpoint=checkpoint),
                         st.step, st.epoch, {}, best_epoch=st.best_epoch, stopped=st.stopped, init=init,
                         row=kind.key, task={"dataset": cfg.dataset, "tasks": data.tasks,
                                             "task_type": data.task_type, "metric": cfg.metric})
        health = {"start": health_at_start, "best_epoch": view_health(model, data.train, cfg.eval_batch_size)}
        metrics = {
            "dataset": cfg.dataset, "seed": cfg.seed, "model": "batmannet", "init": init,
            "row": kind.key, "label": kind.label, "metric": cfg.metric, "variant": cfg.variant,
            "task_type": data.task_type, "tasks": data.tasks, "split": data.split,
            "best_epoch": st.best_epoch, "epochs_run": st.epoch, "stopped": st.stopped,
            "selection": selection,
            **_score_and_save(model, data, cfg, out, bf16, extra=dict(best_epoch=st.best_epoch, init=init,
                                                                     **cleaning_of(cache)), card=card),
            "checkpoint": ({"path": str(checkpoint), "loaded": len(report.loaded),
                            "fresh": len(report.fresh)} if report is not None else None),
            "seconds": round(used_minutes() * 60, 2),
            "molecules_per_s": round(st.train_molecules / max(st.train_seconds, 1e-9), 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "health": health,
        }
        # the same model as an MLflow pyfunc model (bbmn predict's code path), in the run
        # directory and, when tracking works, as the run's logged model
        tracker.log_model(save_pyfunc(out, data.test.smiles[:3]))
        write_metrics(out / "metrics.json", metrics)
        tracker.log_metrics({f"test_{cfg.metric}": metrics["test"]["value"],
                             f"best_val_{cfg.metric}": metrics["val"]["value"],
                             "best_epoch": st.best_epoch, "molecules_per_s": metrics["molecules_per_s"],
                             "peak_rss_mb": metrics["peak_rss_mb"], **flat_metrics("health", health)},
                            step=st.epoch)
        tracker.set_tags({"stopped": st.stopped, "selection": selection})
        tracker.log_artifact(out / "metrics.json")
        tracker.log_artifact(out / "predictions.csv")
    latest.unlink(missing_ok=True)  # the outputs are complete: nothing left to resume
    if latest.parent.is_dir() and not any(latest.parent.iterdir()):
        latest.parent.rmdir()
    return metrics


def _train_epoch(model: BatmanNetFinetune, optimizer: torch.optim.Optimizer, schedule: NoamSchedule,
                 train: LabelledPart, cfg: FinetuneConfig, st: _State, out_of_time: Callable[[], bool],
                 device: torch.device = torch.device("cpu"), bf16: bool = False) -> tuple[list[float], bool]:
    """One pass over the training part in the epoch's seeded order; the batch losses, and whether
    the time budget cut the epoch short. The losses are read off the device at the end, so a GPU
    is not made to wait for each step before the next batch is prepared."""
    model.train()
    order = np.random.default_rng([cfg.seed, st.epoch]).permutation(len(train))
    losses, tick, partial = [], time.perf_counter(), False
    for batch, descriptors, targets in _batches(train, order, cfg.batch_size, device):
        with autocast(bf16, device):
            outputs = model(batch, descriptors)
        loss = model.loss(_float(outputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        schedule.step()
        st.step += 1
        losses.append(loss.total.detach())
        now = time.perf_counter()
        st.train_seconds += now - tick
        st.train_molecules += len(targets)
        tick = now
        if out_of_time():
            partial = True
            break
    st.epoch += 1
    return (torch.stack(losses).tolist() if losses else []), partial


def _validate(model: BatmanNetFinetune, val_batches: list, data: LabelledData, cfg: FinetuneConfig,
              selection: str, st: _State, bf16: bool = False) -> dict:
    """Score the validation part, keep the weights if they are the best so far; the epoch's record."""
    pred, loss = predict_part(model, val_batches, bf16)
    val = score(cfg.metric, data.val.labels, data.to_label_units(pred), data.tasks)
    if selection == "val_metric":
        improved = is_better(cfg.metric, val.value, st.best_value)
        value = val.value
    else:
        improved = not math.isnan(loss) and (st.best_value is None or loss < st.best_value)
        value = loss
    if improved:
        st.best_epoch, st.best_value, st.bad_epochs = st.epoch, value, 0
        st.best_state = copy.deepcopy(model.state_dict())
    else:
        st.bad_epochs += 1
    return {"epoch": st.epoch, "step": st.step, f"val_{cfg.metric}": val.value, "val_loss": loss,
            "improved": improved}


def _score_and_save(model: BatmanNetFinetune, data: LabelledData, cfg: FinetuneConfig, out: Path,
                    bf16: bool, extra: dict, card: dict) -> dict:
    """Score the validation and test parts, write ``predictions.csv`` and ``model.pt``; return
    ``{"val": ..., "test": ...}`` as Score dicts. ``card`` is saved with the scores as its metrics."""
    scores = {}
    for name in ("val", "test"):
        part = data.part(name)
        batches = list(_batches(part, np.arange(len(part)), cfg.eval_batch_size, device_of(model)))
        pred, _ = predict_part(model, batches, bf16)
        pred = data.to_label_units(pred)
        scores[name] = score(cfg.metric, part.labels, pred, data.tasks)
        for task, why in scores[name].skipped.items():
            log.warning("%s part: task %s not scored (%s)", name, task, why)
    write_predictions(out / "predictions.csv", data.test.rows, data.test.smiles, data.test.labels, pred,
                      data.tasks, data.task_type)
    save_checkpoint(out / "model.pt", kind="batmannet-finetuned", model_config=model.config,
                    model=model.state_dict(), tasks=data.tasks, task_type=data.task_type,
                    metric=cfg.metric, descriptor_scaler=data.descriptor_scaler.as_dict(),
                    target_scaler=data.target_scaler.as_dict() if data.target_scaler else None,
                    descriptors="RDKit2DNormalized", dataset=cfg.dataset, seed=cfg.seed,
                    card={**card, "metrics": plain({n: s.as_dict() for n, s in scores.items()})}, **extra)
    return {name: s.as_dict() for name, s in scores.items()}
