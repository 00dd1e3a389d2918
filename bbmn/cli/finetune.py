"""``bbmn finetune``: fine-tune BatmanNet on one split of a labelled dataset; resumes after a kill.

Without ``--checkpoint`` the model trains from scratch with the sizes given here; with one, the
encoder sizes come from the checkpoint and a conflicting size flag is an error. The task type
comes from the cache. The last line printed is a JSON summary (dataset, seed, init, metric, test,
val, best_epoch, epochs_run, seconds, peak_rss_mb).
"""

from __future__ import annotations

import argparse
import json

from bbmn.cli.shared_args import add_tracking_args
from bbmn.models.options import ENCODER_SIZES, HeadOptions, ModelOptions
from bbmn.options import add_options, from_args
from bbmn.train.config import FinetuneConfig


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
    add_options(p, FinetuneConfig)
    g = p.add_argument_group("model (encoder sizes: scratch runs only, a checkpoint's own otherwise; "
                             "default 100, 2, 3, 6, prelu, no residual)")
    add_options(g, ModelOptions, only=ENCODER_SIZES, defaults=dict.fromkeys(ENCODER_SIZES))
    add_options(g, ModelOptions, only=("dropout",))
    add_options(g, HeadOptions)
    add_tracking_args(p)
    p.set_defaults(run=run)


def model_config(args: argparse.Namespace) -> dict:
    """Model arguments; encoder sizes only when given (a checkpoint supplies them otherwise)."""
    sizes = {k: getattr(args, k) for k in ENCODER_SIZES if getattr(args, k) is not None}
    return {**sizes, "dropout": args.dropout, "head_hidden": args.head_hidden,
            "head_dropout": args.head_dropout}


def run(args: argparse.Namespace) -> int:
    from bbmn.train.runtime import reexec_with_malloc_tunables

    reexec_with_malloc_tunables()  # faster steps on CPU; BBMN_PLAIN_MALLOC=1 turns it off
    from bbmn.train.finetune import finetune

    cfg = from_args(FinetuneConfig, args, dataset=args.dataset, metric=args.metric,
                    model=model_config(args))
    m = finetune(args.cache, args.descriptors, args.split, args.out, cfg, args.checkpoint,
                 args.tracking_parent, args.tracking_required)
    print(json.dumps({"dataset": m["dataset"], "seed": m["seed"], "init": m["init"], "row": m["row"],
                      "metric": m["metric"], "test": m["test"]["value"], "val": m["val"]["value"],
                      "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                      "seconds": m["seconds"], "peak_rss_mb": m["peak_rss_mb"]}))
    return 0
