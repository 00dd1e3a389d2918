"""The training steps' settings, without torch: ``bbmn pretrain`` and ``bbmn finetune`` build
their flags from these fields and the workflow's ``pretrain`` and ``finetune`` sections are checked
against them (:mod:`bbmn.options`, ``tests/test_options.py``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bbmn.models.options import INPUTS, VIEW_NORMS
from bbmn.options import BF16_HELP, DEVICE_HELP, option


#: model options added after runs were checkpointed, with their default
LATER_MODEL_DEFAULTS = {"branches": "both", "activation": "prelu"}


@dataclass
class PretrainConfig:
    """Pre-training settings; the defaults are the spec's (section 8). ``bbmn pretrain``'s flags
    and the workflow's ``pretrain`` section are these fields (:mod:`bbmn.options`)."""

    batch_size: int = option(32, "molecules per optimizer step (per process when data-parallel)")
    epochs: int = option(16, "passes over the training part")
    max_steps: int = option(0, "optimizer steps at most (0 = no limit); the learning-rate schedule "
                            "spans min(epochs x steps per epoch, max_steps)")
    max_minutes: float = option(0.0, "stop with a usable model and a checkpoint after this much "
                                "training time (0 = no limit)")
    val_fraction: float = option(0.1, "share of the corpus held out for validation")
    val_batches: int = option(0, "validate on at most this many batches (0 = the whole validation part)")
    seed: int = option(0, "seeds the split, the batch order, the masks and the initialization")
    init_lr: float = option(2e-4, "learning rate at step 0 (Noam schedule)")
    max_lr: float = option(4e-4, "learning rate after warm-up")
    final_lr: float = option(1e-4, "learning rate at the last step")
    warmup_epochs: float = option(1.0, "linear warm-up length in epochs (with a step budget, the same "
                                  "share of the budgeted run)")
    weight_decay: float = option(1e-7, "Adam weight decay")
    mask_ratio: float = option(0.6, "masked share of atoms and of directed edges per molecule")
    dynamic_mask: bool = option(True, "new masks every epoch (--no-dynamic-mask: the same mask every "
                                "epoch, the reference's behaviour)")
    model: dict[str, Any] = option({}, "BatmanNet's keyword arguments (ModelOptions)", cli=False)
    device: str = option("auto", DEVICE_HELP)
    bf16: bool = option(False, BF16_HELP)
    compile: bool = option(False, "run the model through torch.compile (dynamic shapes; a one-off "
                           "compile, then faster steps). Not a training key: the weights differ from "
                           "an eager run's only by dropout's random stream")
    threads: int = option(0, "torch intra-op threads per process (0 = torch's default)")
    shared_memory_average: bool = option(True, "data-parallel CPU ranks on one machine average their "
                                         "gradients through shared memory (/dev/shm), not gloo's "
                                         "sockets (--no-shared-memory-average: gloo). Not a training key")
    log_every: int = option(50, "steps between progress lines")
    checkpoint_every: int = option(500, "steps between checkpoints (each epoch end also writes one)")
    window: int = option(8, "row groups per shuffle window (bounds memory)", cli=False)
    deterministic: bool = option(False, "torch's deterministic algorithms only (reproducible on GPUs; "
                                 "CPU runs are anyway)")
    validate_every: int = option(0, "also validate every this many steps (0 = at epoch ends only)")
    snapshot_steps: list[int] = option([], "keep the model after these steps as snapshots/step-N.pt "
                                       "(0 = the initialization), e.g. to probe the representation "
                                       "against the pre-training budget")
    register: str = option("", "register the final model.pt in the MLflow Model Registry under this "
                           "name, its card as the version's tags (\"\" = no)", metavar="NAME")
    variant: str | None = option(None, "name of this pre-training variant (an ablation), recorded and "
                                 "tagged")
    variant_overrides: dict[str, Any] = option({}, "the config keys the variant overrides", cli=False)

    def training_keys(self) -> dict:
        """The settings that change the trained weights (a resumed checkpoint must match them).

        Model options added after checkpoints existed are left out at their default
        (:data:`LATER_MODEL_DEFAULTS`), so that a run started before them still resumes."""
        d = asdict(self)
        d["model"] = {k: v for k, v in d["model"].items() if LATER_MODEL_DEFAULTS.get(k, object()) != v}
        for key in ("max_minutes", "device", "compile", "threads", "shared_memory_average", "log_every", "checkpoint_every",
                    "val_batches", "validate_every", "snapshot_steps", "register", "variant", "variant_overrides"):
            d.pop(key)
        return d


@dataclass
class FinetuneConfig:
    """Fine-tuning settings; the defaults are the spec's (section 10). ``bbmn finetune``'s flags and
    the workflow's ``finetune`` section are these fields (:mod:`bbmn.options`)."""

    dataset: str = option("dataset", "the dataset's name (metrics, tags, run name)", cli=False)
    metric: str = option("roc_auc", "roc_auc (classification), rmse or mae (regression): selects the "
                         "epoch on validation and scores the test part", cli=False)
    seed: int = option(0, "seeds fresh weights, the batch order and dropout")
    epochs: int = option(100, "passes over the training part at most")
    patience: int = option(30, "stop after this many epochs without a better validation score")
    batch_size: int = option(32, "molecules per optimizer step")
    eval_batch_size: int = option(256, "molecules per scoring pass (no gradients)")
    init_lr: float = option(1e-4, "learning rate at step 0 (Noam schedule over real optimizer steps)")
    max_lr: float = option(1e-3, "learning rate after warm-up")
    final_lr: float = option(1e-4, "learning rate at the last step of --epochs")
    warmup_epochs: float = option(2.0, "linear warm-up length in epochs")
    weight_decay: float = option(0.0, "Adam weight decay (GROVER's fine-tuning default)")
    disagreement: float = option(0.1, "weight of the MSE between the two heads (the reference ran 0)")
    max_minutes: float = option(0.0, "end training after this long and score the best epoch so far "
                                "(0 = no limit)")
    model: dict[str, Any] = option({}, "BatmanNetFinetune's arguments (sizes, dropout); with a "
                                   "pre-trained checkpoint the encoder sizes come from it", cli=False)
    threads: int = option(0, "torch intra-op threads (0 = torch's default)")
    deterministic: bool = option(False, "torch's deterministic algorithms only (reproducible on GPUs; "
                                 "CPU runs are anyway)")
    device: str = option("auto", f"{DEVICE_HELP}. Not a training key: a run resumes on another device")
    bf16: bool = option(False, BF16_HELP)
    compile: bool = option(False, "run the encoders through torch.compile (dynamic shapes). Not a "
                           "training key: the weights differ from an eager run's only by dropout's "
                           "random stream")
    inputs: str = option("both", "what the heads read: their pooled view and the descriptors (spec), "
                         "the view alone, or the descriptors alone (no encoder: a control)",
                         choices=INPUTS)
    descriptor_scaling: str = option("standardize", "descriptors standardized on the training part "
                                     "(spec), or as RDKit2DNormalized gives them",
                                     choices=("standardize", "none"))
    view_norm: str = option("none", "normalization of each pooled view before its head (standardize: "
                            "fixed statistics of the initial encoder on the training part)",
                            choices=VIEW_NORMS)
    encoder_lr: float = option(1.0, "learning-rate multiplier of the encoders' input stages and blocks "
                               "(GROVER's fine_tune_coff); 0 freezes them")
    add_positions: bool = option(False, "add the per-molecule positional code to the encoders' input, "
                                 "as pre-training does (spec section 9 fine-tunes without it)")
    variant: str | None = option(None, "the pre-training variant whose model is fine-tuned (an "
                                 "ablation), recorded in metrics.json and tagged")
    register: str = option("", "register the packaged model (mlflow_model) in the MLflow Model "
                           "Registry under this name, its card as the version's tags (\"\" = no)",
                           metavar="NAME")

    def training_keys(self) -> dict:
        """The settings that change the trained weights (a resumed checkpoint must match them)."""
        d = asdict(self)
        for key in ("dataset", "eval_batch_size", "max_minutes", "threads", "variant", "compile",
                    "register"):
            d.pop(key)
        d.pop("device")  # a run may resume on another device
        return d
