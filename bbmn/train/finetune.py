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
  was loaded from the pre-trained checkpoint;
- ``mlflow_model/``: the model as an MLflow pyfunc model that carries bbmn
  (:mod:`bbmn.inference.pyfunc`), logged to the run and, with ``register``, a new version of
  that registered model.

``checkpoints/latest.pt`` is written atomically after every epoch; running the same command
again after a kill resumes from the last finished epoch and ends with the same result as an
uninterrupted run (on CPU: batch order, dropout and weights are restored bit for bit). It is
removed once the outputs are written. A run starts by removing an earlier run's ``metrics.json``,
``predictions.csv`` and ``model.pt``, so a run that fails leaves no stale result.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
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
from bbmn.io import sha256_file
from bbmn.kinds import FINETUNE_KINDS, RunKind
from bbmn.models.batmannet import count_parameters
from bbmn.models.options import ENCODER_SIZES
from bbmn.models.finetune import LOADABLE_KINDS, BatmanNetFinetune, LoadReport, combine_heads
from bbmn.train.card import check_model, data_files, make_card, plain
from bbmn.train.checkpoint import load_checkpoint, save_checkpoint
from bbmn.train.config import FinetuneConfig
from bbmn.train.determinism import deterministic, seed_everything
from bbmn.train.device import autocast, device_of, resolve_device, to_device, use_bf16
from bbmn.train.loop import Clock, RunFiles, Throughput, Training, adam, noam_schedule, training_fingerprint
from bbmn.train.runtime import peak_rss_mb
from bbmn.train.tracking import Tracker, flat_metrics

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
    return adam(groups, cfg)


def part_views(model: BatmanNetFinetune, part: LabelledPart, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The two pooled views ``(n, h)`` of a part's molecules (evaluation mode), before the view
    normalization (:func:`normalized_views` gives what the heads read)."""
    was_training = model.training
    model.eval()
    atom, bond = [], []
    with torch.no_grad():
        for batch, _, _ in _batches(part, np.arange(len(part)), batch_size, device_of(model)):
            a, b = model.raw_views(batch)
            atom.append(a.cpu().numpy())
            bond.append(b.cpu().numpy())
    model.train(was_training)
    return np.concatenate(atom).astype(np.float64), np.concatenate(bond).astype(np.float64)


def normalized_views(model: BatmanNetFinetune, raw: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """What the heads read (evaluation mode) from raw pooled views: the view normalization is
    per molecule there, so it is applied to the whole part at once instead of a second pass of
    the encoder (which took half of a BACE run's health time)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        normed = tuple(norm(torch.from_numpy(view).float().to(device_of(model))).cpu().numpy().astype(np.float64)
                       for norm, view in zip((model.atom_view_norm, model.bond_view_norm), raw))
    model.train(was_training)
    return normed


def view_health(model: BatmanNetFinetune, part: LabelledPart, batch_size: int) -> dict:
    """Do the graph views count? Per view, over a part's molecules: the between-molecule spread
    of the pooled view as the encoder gives it, and, of what its head reads, the effective rank and
    the share of the input variance (view against descriptors). Empty without graph views."""
    if not model.uses_graph:
        return {}
    raw = part_views(model, part, batch_size)
    normed = normalized_views(model, raw)
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
    run = _Finetuning(cache, descriptors, split, Path(out), cfg, checkpoint)
    with run.tracker(tracking_parent, tracking_required) as tracker:
        run.train(tracker)
        metrics = run.finish()
    run.remove_checkpoint()  # the outputs are complete: nothing left to resume
    return metrics


@dataclass
class _State:
    """Progress of a run: what a checkpoint restores besides weights, optimizer and the
    throughput (saved beside these fields as ``train_seconds`` and ``train_molecules``)."""

    epoch: int = 0  # epochs finished
    step: int = 0
    best_epoch: int = 0
    best_value: float | None = None
    best_state: dict | None = None
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    stopped: str | None = None
    seconds: float = 0.0  # wall time of earlier invocations


class _Finetuning:
    """One invocation of a fine-tuning run: its labelled data, model and training state, its
    progress (:class:`_State`), and what it writes.

    The steps are methods over this shared state, in the order a run takes them: set up (an
    earlier run's results are removed first; the weights are seeded after the data is read),
    resume, train epoch by epoch, finish by scoring the kept epoch.
    """

    def __init__(self, cache: str | Path, descriptors: str | Path, split: str | Path, out: Path,
                 cfg: FinetuneConfig, checkpoint: str | Path | None):
        self.clock = Clock(cfg.max_minutes)  # the earlier invocations' time is added on resume
        self.inputs = {"cache": cache, "descriptors": descriptors, "split": split, "checkpoint": checkpoint}
        self.out, self.cfg = out, cfg
        self.files = RunFiles(out)
        self.files.remove(RESULTS)  # a run that fails must not leave an earlier run's result behind
        remove_pyfunc(out)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)  # a bad --device fails before the data is read
        self.bf16 = use_bf16(cfg.bf16, self.device)
        self.data = load_labelled(cache, descriptors, split, cfg.descriptor_scaling)
        check_metric(cfg.metric, self.data.task_type)
        self.kind = run_kind(cfg.inputs, checkpoint is not None)
        self._build_model(checkpoint)
        self.health_at_start = view_health(self.model, self.data.train, cfg.eval_batch_size)
        self._build_training()
        self.selection = _selection(cfg.metric, self.data)
        self.latest = out / "checkpoints" / "latest.pt"
        self.fingerprint = self._fingerprint()
        self._resume()
        self.params = self._params()
        self.files.start(self.params, self.st.history)  # drops lines of an epoch the checkpoint lacks
        self.val_batches = list(_batches(self.data.val, np.arange(len(self.data.val)), cfg.eval_batch_size,
                                         self.device))

    # ------------------------------------------------------------------------------------ set-up

    def _build_model(self, checkpoint: str | Path | None) -> None:
        """The model with fresh seeded weights (the same draws for scratch and pre-trained runs),
        the pre-trained ones loaded over them; with ``view_norm`` standardize, the views' fixed
        statistics (the initial encoder's on the training part)."""
        cfg, data = self.cfg, self.data
        pretrained = load_checkpoint(checkpoint) if checkpoint is not None else None
        if pretrained is not None:  # a training checkpoint (no kind) loads as it did before cards
            check_model(pretrained, checkpoint, (*LOADABLE_KINDS, None), "bbmn finetune --checkpoint")
        model_config = resolve_model_config(cfg.model, pretrained.get("model_config") if pretrained else None)
        model_config.update(descriptor_dim=data.train.descriptors.shape[1], disagreement=cfg.disagreement,
                            inputs=cfg.inputs, view_norm=cfg.view_norm, add_positions=cfg.add_positions,
                            frozen_encoder=cfg.encoder_lr == 0)
        seed_everything(cfg.seed)
        self.model = model = BatmanNetFinetune(len(data.tasks), data.task_type, **model_config)
        self.report: LoadReport | None = model.load_pretrained(pretrained) if pretrained is not None else None
        del pretrained
        model.to(self.device)
        if cfg.compile:
            model.enable_compile()
        if cfg.view_norm == "standardize":
            views = part_views(model, data.train, cfg.eval_batch_size)
            model.atom_view_norm.set_statistics(torch.from_numpy(views[0]))
            model.bond_view_norm.set_statistics(torch.from_numpy(views[1]))

    def _build_training(self) -> None:
        """The optimizer and the schedule over ``epochs`` full epochs (warm-up in epochs)."""
        cfg = self.cfg
        self.steps_per_epoch = math.ceil(len(self.data.train) / cfg.batch_size)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup = min(int(round(cfg.warmup_epochs * self.steps_per_epoch)), self.total_steps)
        optimizer = make_optimizer(self.model, cfg)
        self.training = Training(self.model, optimizer,
                                 noam_schedule(optimizer, cfg, self.warmup, self.total_steps))

    def _fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the settings, the model and the contents
        of the input files (a rebuilt cache or another split starts afresh)."""
        return training_fingerprint(self.cfg, model=self.model.config,
                                    files=[sha256_file(f) if f else None for f in self.inputs.values()])

    def _resume(self) -> None:
        """Continue after the last finished epoch of ``checkpoints/latest.pt`` when it is this
        configuration's on these files; else start at epoch 0."""
        self.st, self.meter = _State(), Throughput()
        saved = self.training.resume(self.latest, self.fingerprint)
        if saved is None:
            return
        progress = dict(saved["progress"])
        self.meter = Throughput(progress.pop("train_seconds", 0.0), progress.pop("train_molecules", 0))
        self.st = _State(**progress)
        self.clock.earlier_seconds = self.st.seconds
        log.info("resuming from %s: %d epochs done", self.latest, self.st.epoch)

    def _params(self) -> dict:
        """The effective configuration and what was loaded (config.json, the tracked run's parameters)."""
        cfg, inputs = self.cfg, self.inputs
        return {**asdict(cfg), "device": str(self.device), "bf16": self.bf16, "model": self.model.config,
                "init": self.kind.init, "kind": self.kind.key, "cache": str(inputs["cache"]),
                "descriptors": str(inputs["descriptors"]), "split": self.data.split,
                "checkpoint": str(inputs["checkpoint"]) if inputs["checkpoint"] else None,
                "selection": self.selection, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "warmup_steps": self.warmup,
                "parameters": count_parameters(self.model),
                "pretrained_weights": self.report.as_dict() if self.report else None}

    def tracker(self, parent: str | Path | None, required: bool) -> Tracker:
        """The run's MLflow run, tagged with the table row it makes."""
        cfg, kind = self.cfg, self.kind
        return Tracker(f"finetune-{cfg.dataset}-{kind.key}-seed{cfg.seed}",
                       tags={"stage": "finetune", "dataset": cfg.dataset, "seed": cfg.seed,
                             "init": kind.init, "kind": kind.key, "metric": cfg.metric,
                             **({"variant": cfg.variant} if cfg.variant else {})},
                       params={k: v for k, v in self.params.items() if k != "pretrained_weights"},
                       parent=parent, required=required)

    # ---------------------------------------------------------------------------------- training

    def train(self, tracker: Tracker) -> None:
        """Epochs until the time budget, the patience or the epochs end the run; a checkpoint
        after each (the time spent so far in it, so that the budget spans restarts)."""
        self.tracker, st = tracker, self.st
        while st.stopped is None:
            record = self._epoch()
            self._keep(record)
            st.stopped = self._stop_reason(record["partial"])
            st.seconds = self.clock.seconds()
            self.training.save(self.latest, self.fingerprint, progress={
                **vars(st), "train_seconds": self.meter.seconds, "train_molecules": self.meter.molecules})
        log.info("stopped (%s) after %d epochs; best epoch %d", st.stopped, st.epoch, st.best_epoch)

    def _epoch(self) -> dict:
        """Train an epoch and validate it; the epoch's record."""
        started = time.perf_counter()
        losses, partial = self._train_epoch()
        record = self._validate()
        record.update(train_loss=float(np.mean(losses)) if losses else math.nan, lr=self.training.lr,
                      partial=partial, seconds=round(time.perf_counter() - started, 3))
        return record

    def _train_epoch(self) -> tuple[list[float], bool]:
        """One pass over the training part in the epoch's seeded order; the batch losses, and
        whether the time budget cut the epoch short. The losses are read off the device at the
        end, so a GPU is not made to wait for each step before the next batch is prepared."""
        cfg, st, model, train = self.cfg, self.st, self.model, self.data.train
        model.train()
        order = np.random.default_rng([cfg.seed, st.epoch]).permutation(len(train))
        losses, partial = [], False
        self.meter.restart()
        for batch, descriptors, targets in _batches(train, order, cfg.batch_size, self.device):
            with autocast(self.bf16, self.device):
                outputs = model(batch, descriptors)
            loss = model.loss(_float(outputs), targets)
            self.training.step(loss.total)
            st.step += 1
            losses.append(loss.total.detach())
            self.meter.count(len(targets))
            if self.clock.out_of_time():
                partial = True
                break
        st.epoch += 1
        return (torch.stack(losses).tolist() if losses else []), partial

    def _validate(self) -> dict:
        """Score the validation part, keep the weights if they are the best so far; the start of
        the epoch's record."""
        cfg, st, data = self.cfg, self.st, self.data
        pred, loss = predict_part(self.model, self.val_batches, self.bf16)
        val = score(cfg.metric, data.val.labels, data.to_label_units(pred), data.tasks)
        if self.selection == "val_metric":
            improved = is_better(cfg.metric, val.value, st.best_value)
            value = val.value
        else:
            improved = not math.isnan(loss) and (st.best_value is None or loss < st.best_value)
            value = loss
        if improved:
            st.best_epoch, st.best_value, st.bad_epochs = st.epoch, value, 0
            st.best_state = copy.deepcopy(self.model.state_dict())
        else:
            st.bad_epochs += 1
        return {"epoch": st.epoch, "step": st.step, f"val_{cfg.metric}": val.value, "val_loss": loss,
                "improved": improved}

    def _keep(self, record: dict) -> None:
        """The epoch's record in the history (the checkpoint's, history.jsonl, the tracked run)
        and in the log."""
        cfg = self.cfg
        self.st.history.append(record)
        self.files.add_record(record)
        self.tracker.log_metrics({k: v for k, v in record.items() if isinstance(v, float) and math.isfinite(v)},
                                 step=self.st.epoch)
        log.info("epoch %d/%d: train loss %.4f, val %s %.4f, val loss %.4f, lr %.2e, %.1f s%s",
                 self.st.epoch, cfg.epochs, record["train_loss"], cfg.metric, record[f"val_{cfg.metric}"],
                 record["val_loss"], record["lr"], record["seconds"], " (best)" if record["improved"] else "")

    def _stop_reason(self, partial: bool) -> str | None:
        """Why the run ends after this epoch (the time budget first), or None to go on."""
        if partial or self.clock.out_of_time():
            return "time_budget"
        if self.st.bad_epochs >= self.cfg.patience:
            return "patience"
        if self.st.epoch >= self.cfg.epochs:
            return "epochs"
        return None

    # ----------------------------------------------------------------------------------- the end

    def finish(self) -> dict:
        """Score the kept epoch on the validation and test parts; write model.pt, predictions.csv,
        the pyfunc model and metrics.json, and track them. Returns the metrics."""
        cfg, st, data, kind, model = self.cfg, self.st, self.data, self.kind, self.model
        if st.best_state is None:
            log.warning("no epoch gave a finite validation value (%s): scoring the last epoch", self.selection)
            st.best_epoch, st.best_state = st.epoch, model.state_dict()
        model.load_state_dict(st.best_state)
        card = make_card("batmannet-finetuned", model.config, asdict(cfg), data_files(**self.inputs),
                         st.step, st.epoch, {}, best_epoch=st.best_epoch, stopped=st.stopped, init=kind.init,
                         row=kind.key, task={"dataset": cfg.dataset, "tasks": data.tasks,
                                             "task_type": data.task_type, "metric": cfg.metric})
        health = {"start": self.health_at_start,
                  "best_epoch": view_health(model, data.train, cfg.eval_batch_size)}
        metrics = {
            "dataset": cfg.dataset, "seed": cfg.seed, "model": "batmannet", "init": kind.init,
            "row": kind.key, "label": kind.label, "metric": cfg.metric, "variant": cfg.variant,
            "task_type": data.task_type, "tasks": data.tasks, "split": data.split,
            "best_epoch": st.best_epoch, "epochs_run": st.epoch, "stopped": st.stopped,
            "selection": self.selection,
            **_score_and_save(model, data, cfg, self.out, self.bf16, card=card,
                              extra=dict(best_epoch=st.best_epoch, init=kind.init,
                                         **cleaning_of(self.inputs["cache"]))),
            "checkpoint": ({"path": str(self.inputs["checkpoint"]),
                            "sha256": card["data"]["checkpoint"]["sha256"],
                            "loaded": len(self.report.loaded), "fresh": len(self.report.fresh)}
                           if self.report is not None else None),
            "seconds": round(self.clock.seconds(), 2),
            "molecules_per_s": round(self.meter.rate, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "health": health,
        }
        self._track_outputs(metrics, health, card)
        return metrics

    def _track_outputs(self, metrics: dict, health: dict, card: dict) -> None:
        """The same model as an MLflow pyfunc model (bbmn predict's code path), in the run directory
        and, when tracking works, as the run's logged model (and a version of the registered model
        ``cfg.register``, the card as its tags); metrics.json, written and tracked."""
        cfg, tracker, out = self.cfg, self.tracker, self.out
        model_id = tracker.log_model(save_pyfunc(out, self.data.test.smiles[:3]))
        if cfg.register:
            tracker.register_model(cfg.register, model_id, tags={"card": card})
        write_metrics(out / "metrics.json", metrics)
        tracker.log_metrics({f"test_{cfg.metric}": metrics["test"]["value"],
                             f"best_val_{cfg.metric}": metrics["val"]["value"],
                             "best_epoch": self.st.best_epoch, "molecules_per_s": metrics["molecules_per_s"],
                             "peak_rss_mb": metrics["peak_rss_mb"], **flat_metrics("health", health)},
                            step=self.st.epoch)
        tracker.set_tags({"stopped": self.st.stopped, "selection": self.selection})
        tracker.log_artifact(out / "metrics.json")
        tracker.log_artifact(out / "predictions.csv")

    def remove_checkpoint(self) -> None:
        """Remove ``checkpoints/latest.pt`` (and the then empty folder) of a complete run."""
        self.latest.unlink(missing_ok=True)
        if self.latest.parent.is_dir() and not any(self.latest.parent.iterdir()):
            self.latest.parent.rmdir()


def _score_and_save(model: BatmanNetFinetune, data: LabelledData, cfg: FinetuneConfig, out: Path,
                    bf16: bool, extra: dict, card: dict) -> dict:
    """Score the validation and test parts, write ``predictions.csv`` and ``model.pt``; return
    ``{"val": ..., "test": ...}`` as Score dicts. The scores become ``card``'s metrics (in place, so
    that the caller registers the card the file carries), and the card is saved."""
    scores = {}
    for name in ("val", "test"):
        part = data.part(name)
        batches = list(_batches(part, np.arange(len(part)), cfg.eval_batch_size, device_of(model)))
        pred, _ = predict_part(model, batches, bf16)
        pred = data.to_label_units(pred)
        scores[name] = score(cfg.metric, part.labels, pred, data.tasks)
        for task, why in scores[name].skipped.items():
            log.warning("%s part: task %s not scored (%s)", name, task, why)
    card["metrics"] = plain({n: s.as_dict() for n, s in scores.items()})
    write_predictions(out / "predictions.csv", data.test.rows, data.test.smiles, data.test.labels, pred,
                      data.tasks, data.task_type)
    save_checkpoint(out / "model.pt", kind="batmannet-finetuned", model_config=model.config,
                    model=model.state_dict(), tasks=data.tasks, task_type=data.task_type,
                    metric=cfg.metric, descriptor_scaler=data.descriptor_scaler.as_dict(),
                    target_scaler=data.target_scaler.as_dict() if data.target_scaler else None,
                    descriptors="RDKit2DNormalized", dataset=cfg.dataset, seed=cfg.seed,
                    card=card, **extra)
    return {name: s.as_dict() for name, s in scores.items()}
