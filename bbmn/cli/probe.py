"""``bbmn probe``: a linear probe of a frozen encoder on the split files fine-tuning uses.

The features are the encoder's two pooled last-block views (atom, bond) of every molecule of the
graph cache, computed once and shared by every split; per task a logistic (classification) or
ridge (regression) regression reads them, with one regularization value chosen on validation. The
encoder is a checkpoint (bbmn pretrain's model.pt or a snapshot, or bbmn finetune's model.pt), a
seeded random initialisation (the control), or precomputed embeddings (.npy, row i = source data
row i of the dataset's file: another tool's encoder). Writes OUT/config.json, OUT/health.json
(representation health on all molecules) and per split OUT/seed<S>/ (metrics.json for bbmn table,
predictions.csv of the test part, details.json). The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json

from bbmn.cli.shared_args import add_tracking_args
from bbmn.models.options import ENCODER_SIZES, ModelOptions
from bbmn.options import add_options, from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    # light modules (numpy): scikit-learn and torch load only when a probe runs
    from bbmn.cli.baseline import METRICS
    from bbmn.eval.probe import ProbeConfig

    p = sub.add_parser("probe", help="linear probe of a frozen encoder's pooled views on bbmn's splits",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("cache", help="graph cache of the labelled dataset (bbmn featurize)")
    p.add_argument("--splits", nargs="+", required=True, help="split files (bbmn split); one run per seed")
    p.add_argument("--out", required=True, help="output directory (OUT/seed<S>/metrics.json ...)")
    p.add_argument("--dataset", required=True, help="dataset name, as the tables show it")
    p.add_argument("--metric", required=True, choices=METRICS, help="the dataset's metric")
    source = p.add_argument_group("encoder (exactly one)").add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="bbmn pretrain's model.pt or snapshot, or bbmn finetune's model.pt")
    source.add_argument("--random-init", action="store_true", help="a randomly initialised BatmanNet")
    source.add_argument("--embeddings", help=".npy (rows, dims) of precomputed embeddings; row i = source data "
                                             "row i of the dataset's file, NaN rows for failed molecules")
    random = p.add_argument_group("random encoder (--random-init only; unset options take the spec's "
                                  "100, 2, 3, 6, prelu, no residual)")
    random.add_argument("--init-seed", type=int, default=argparse.SUPPRESS,
                        help="torch seed of the initialisation (default 0)")
    add_options(random, ModelOptions, only=ENCODER_SIZES, defaults=dict.fromkeys(ENCODER_SIZES, argparse.SUPPRESS))
    p.add_argument("--tag", help="a row of its own: appended to the row key and label (e.g. step500 "
                   "for a pre-training snapshot)")
    p.add_argument("--name", help="the external encoder's name (--embeddings only): 'Linear probe (NAME)'")
    add_options(p, ProbeConfig)
    add_tracking_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.errors import BbmnError
    from bbmn.train.runtime import reexec_with_malloc_tunables

    if args.embeddings and not args.name:
        raise BbmnError("--embeddings needs --name (the encoder's name in the tables)")
    if args.name and not args.embeddings:
        raise BbmnError("--name names an external encoder: it goes with --embeddings")
    if args.embeddings and args.add_positions:
        raise BbmnError("--add-positions changes how bbmn runs an encoder; it does nothing to --embeddings")
    if args.embeddings and args.device != "auto":
        raise BbmnError("--device says where bbmn runs an encoder; it does nothing to --embeddings")
    random_init = {k: getattr(args, k) for k in (*ENCODER_SIZES, "init_seed") if hasattr(args, k)}
    if random_init and not args.random_init:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in random_init)
        raise BbmnError(f"{flags} set up a random encoder: they go with --random-init")
    if args.batch_size < 1:
        raise BbmnError(f"--batch-size must be at least 1, not {args.batch_size}")
    reexec_with_malloc_tunables()  # faster forward passes on CPU; BBMN_PLAIN_MALLOC=1 turns it off
    from bbmn.eval.probe import ProbeConfig, run_probe

    cfg = from_args(ProbeConfig, args, threads=max(0, args.threads))
    if args.random_init:
        random_init["seed"] = random_init.pop("init_seed", 0)
    records = run_probe(args.cache, args.splits, args.out, args.dataset, args.metric, cfg,
                        checkpoint=args.checkpoint, random_init=random_init if args.random_init else None,
                        embeddings=args.embeddings,
                        name=args.name, tag=args.tag, tracking_parent=args.tracking_parent,
                        tracking_required=args.tracking_required)
    param = "C" if records[0]["task_type"] == "classification" else "alpha"
    print(json.dumps({"dataset": args.dataset, "row": records[0]["row"], "metric": args.metric,
                      "runs": [{"seed": r["seed"], "val": r["val"]["value"], "test": r["test"]["value"],
                                param: r["selected"][param], "seconds": r["seconds"]} for r in records],
                      "encode_seconds": records[0]["encode_seconds"], "out": args.out}))
    return 0
