"""``bbmn finetune``: fine-tune BatmanNet on one split of a labelled dataset; resumes after a kill.

Without ``--checkpoint`` the model trains from scratch with the sizes given here; with one, the
encoder sizes come from the checkpoint and a conflicting size flag is an error. The task type
comes from the cache. The last line printed is a JSON summary (dataset, seed, init, metric, test,
val, best_epoch, epochs_run, seconds, peak_rss_mb).
"""

from __future__ import annotations

import argparse
import json

from bbmn.cli.device_args import add_device_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune BatmanNet on a labelled dataset and score it",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("cache", help="graph cache of the labelled dataset (bbmn featurize)")
    p.add_argument("--descriptors", required=True, help="descriptors of the dataset (bbmn descriptors)")
    p.add_argument("--split", required=True, help="split file (bbmn split)")
    p.add_argument("--out", required=True, help="run directory (model.pt, metrics.json, predictions.csv)")
    p.add_argument("--dataset", required=True, help="dataset name, recorded in metrics.json")
    p.add_argument("--metric", required=True, choices=("roc_auc", "rmse", "mae"),
                   help="validation selection and test metric")
    p.add_argument("--checkpoint", help="pre-trained model.pt (bbmn pretrain); default: from scratch")
    p.add_argument("--seed", type=int, default=0, help="seeds fresh weights, batch order, dropout")
    p.add_argument("--epochs", type=int, default=100, help="epochs at most")
    p.add_argument("--patience", type=int, default=30, help="stop after this many epochs without improvement")
    p.add_argument("--batch-size", type=int, default=32, help="molecules per step")
    p.add_argument("--eval-batch-size", type=int, default=256, help="molecules per scoring pass")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="end training after this long and score the best epoch (0 = no limit)")
    p.add_argument("--disagreement", type=float, default=0.1,
                   help="weight of the MSE between the two heads (the reference ran with 0)")
    p.add_argument("--init-lr", type=float, default=1e-4, help="learning rate at step 0")
    p.add_argument("--max-lr", type=float, default=1e-3, help="learning rate after warm-up")
    p.add_argument("--final-lr", type=float, default=1e-4, help="learning rate at the last step")
    p.add_argument("--warmup-epochs", type=float, default=2.0, help="warm-up length in epochs")
    p.add_argument("--weight-decay", type=float, default=0.0, help="Adam weight decay")
    c = p.add_argument_group("what the heads read, and how (controls and the switches that let the graph count)")
    c.add_argument("--inputs", choices=("both", "graph", "descriptors"), default="both",
                   help="each head reads its pooled view and the descriptors (spec), the view alone, "
                        "or the descriptors alone (no encoder: a control)")
    c.add_argument("--descriptor-scaling", choices=("standardize", "none"), default="standardize",
                   help="descriptors standardized on the training part, or as RDKit2DNormalized gives them")
    c.add_argument("--view-norm", choices=("none", "batchnorm", "standardize"), default="none",
                   help="normalization of each pooled view before its head (standardize: fixed "
                        "statistics of the initial encoder on the training part)")
    c.add_argument("--encoder-lr", type=float, default=1.0,
                   help="learning-rate multiplier of the encoders (GROVER's fine_tune_coff); 0 freezes them")
    c.add_argument("--add-positions", action="store_true",
                   help="add the per-molecule positional code to the encoders' input, as pre-training does")
    g = p.add_argument_group("model (encoder sizes: scratch runs only; default 100, 2, 3, 6, prelu)")
    g.add_argument("--hidden", type=int, help="hidden size h")
    g.add_argument("--heads", type=int, help="attention heads per block")
    g.add_argument("--depth", type=int, help="message-passing depth")
    g.add_argument("--encoder-blocks", type=int, help="blocks per encoder branch")
    g.add_argument("--activation", help="activation (prelu, relu, gelu, elu, tanh)")
    g.add_argument("--residual", action="store_true", default=None,
                   help="blocks that add their input back (a checkpoint's own setting otherwise)")
    g.add_argument("--dropout", type=float, default=0.1, help="dropout in encoders and readouts")
    g.add_argument("--head-hidden", type=int, default=200, help="hidden width of each head")
    g.add_argument("--head-dropout", type=float, default=0.1, help="dropout in the heads")
    p.add_argument("--variant", help="the pre-training variant of --checkpoint (an ablation), for tags and tables")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--deterministic", action="store_true",
                   help="torch deterministic algorithms only (reproducible on GPUs; CPU runs are anyway)")
    add_device_args(p, bf16=True)
    p.add_argument("--compile", action="store_true",
                   help="run the encoders through torch.compile (faster epochs after a one-off compile)")
    p.add_argument("--tracking-parent", help="parent run record written by `bbmn track init`")
    p.add_argument("--tracking-required", action="store_true",
                   help="fail if the MLflow store cannot be used (default: skip tracking)")
    p.set_defaults(run=run)


def model_config(args: argparse.Namespace) -> dict:
    """Model arguments; encoder sizes only when given (a checkpoint supplies them otherwise)."""
    sizes = {k: getattr(args, k) for k in ("hidden", "heads", "depth", "encoder_blocks", "activation",
                                           "residual")}
    return {**{k: v for k, v in sizes.items() if v is not None}, "dropout": args.dropout,
            "head_hidden": args.head_hidden, "head_dropout": args.head_dropout}


def run(args: argparse.Namespace) -> int:
    from bbmn.train.runtime import reexec_with_malloc_tunables

    reexec_with_malloc_tunables()  # faster steps on CPU; BBMN_PLAIN_MALLOC=1 turns it off
    from bbmn.train.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(
        dataset=args.dataset, metric=args.metric, seed=args.seed, epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        init_lr=args.init_lr, max_lr=args.max_lr, final_lr=args.final_lr,
        warmup_epochs=args.warmup_epochs, weight_decay=args.weight_decay,
        disagreement=args.disagreement, max_minutes=args.max_minutes, model=model_config(args),
        threads=args.threads, deterministic=args.deterministic, device=args.device, bf16=args.bf16,
        compile=args.compile, inputs=args.inputs,
        descriptor_scaling=args.descriptor_scaling, view_norm=args.view_norm,
        encoder_lr=args.encoder_lr, add_positions=args.add_positions, variant=args.variant)
    m = finetune(args.cache, args.descriptors, args.split, args.out, cfg, args.checkpoint,
                 args.tracking_parent, args.tracking_required)
    print(json.dumps({"dataset": m["dataset"], "seed": m["seed"], "init": m["init"], "row": m["row"],
                      "metric": m["metric"], "test": m["test"]["value"], "val": m["val"]["value"],
                      "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                      "seconds": m["seconds"], "peak_rss_mb": m["peak_rss_mb"]}))
    return 0
