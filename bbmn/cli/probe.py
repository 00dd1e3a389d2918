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

from bbmn.cli.device_args import add_device_args

#: the random encoder's options (BatmanNet's arguments); unset ones take BatmanNet's defaults
SIZES = ("hidden", "heads", "depth", "encoder_blocks")


def add_parser(sub: argparse._SubParsersAction) -> None:
    # light modules (numpy): scikit-learn and torch load only when a probe runs
    from bbmn.cli.baseline import METRICS
    from bbmn.eval.probe import NEWTON_MAX_FEATURES, SOLVERS, ProbeConfig

    defaults = ProbeConfig()
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
    random = p.add_argument_group("random encoder (--random-init only; sizes default to the spec's 100, 2, 3, 6)")
    random.add_argument("--init-seed", type=int, default=argparse.SUPPRESS,
                        help="torch seed of the initialisation (default 0)")
    for name in SIZES:
        random.add_argument(f"--{name.replace('_', '-')}", type=int, default=argparse.SUPPRESS,
                            help=f"{name.replace('_', ' ')} of the random BatmanNet")
    random.add_argument("--residual", action="store_true", default=argparse.SUPPRESS,
                        help="blocks that add their input back (as a residual pre-trained model)")
    p.add_argument("--tag", help="a row of its own: appended to the row key and label (e.g. step500 "
                   "for a pre-training snapshot)")
    p.add_argument("--name", help="the external encoder's name (--embeddings only): 'Linear probe (NAME)'")
    p.add_argument("--drop-missing", action="store_true",
                   help="leave molecules with NaN features out of every part instead of failing")
    p.add_argument("--add-positions", action="store_true",
                   help="add the positional code to the encoders' input, as pre-training does")
    p.add_argument("--c-grid", type=float, nargs="+", default=list(defaults.c_grid),
                   help="logistic regression C values (classification)")
    p.add_argument("--alpha-grid", type=float, nargs="+", default=list(defaults.alpha_grid),
                   help="ridge alpha values (regression, standardized targets)")
    p.add_argument("--solver", choices=SOLVERS, default=defaults.solver,
                   help=f"logistic regression solver; auto: newton-cholesky up to {NEWTON_MAX_FEATURES} "
                        f"features, else lbfgs")
    p.add_argument("--max-iter", type=int, default=defaults.max_iter, help="solver iterations per fit at most")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="molecules per forward pass")
    p.add_argument("--threads", type=int, default=defaults.threads,
                   help="threads of torch and of the BLAS / OpenMP pools (0 = their defaults)")
    add_device_args(p)
    p.add_argument("--tracking-parent", help="parent run record written by `bbmn track init`")
    p.add_argument("--tracking-required", action="store_true",
                   help="fail if the MLflow store cannot be used (default: skip tracking)")
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
    random_init = {k: getattr(args, k) for k in (*SIZES, "init_seed", "residual") if hasattr(args, k)}
    if random_init and not args.random_init:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in random_init)
        raise BbmnError(f"{flags} set up a random encoder: they go with --random-init")
    if args.batch_size < 1:
        raise BbmnError(f"--batch-size must be at least 1, not {args.batch_size}")
    reexec_with_malloc_tunables()  # faster forward passes on CPU; BBMN_PLAIN_MALLOC=1 turns it off
    from bbmn.eval.probe import ProbeConfig, run_probe

    cfg = ProbeConfig(c_grid=tuple(args.c_grid), alpha_grid=tuple(args.alpha_grid), solver=args.solver,
                      max_iter=args.max_iter,
                      batch_size=args.batch_size, add_positions=args.add_positions,
                      drop_missing=args.drop_missing, threads=max(0, args.threads), device=args.device)
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
