"""``bbmn baseline``: ECFP4 + RF or chemprop's D-MPNN, on the same split files as fine-tuning.

Writes a run directory (metrics.json for ``bbmn table``, predictions.csv of the test part,
config.json, details.json). The last line printed is a JSON summary with the test score and
the wall time.
"""

from __future__ import annotations

import argparse
import json

from bbmn.cli.shared_args import add_tracking_args

METRICS = ("roc_auc", "rmse", "mae")  # bbmn.eval.metrics.METRICS, without importing scikit-learn here


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("clean", help="cleaned Parquet (bbmn clean)")
    p.add_argument("--split", required=True, help="split file of that table (bbmn split)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--dataset", required=True, help="dataset name, as the tables show it")
    p.add_argument("--metric", required=True, choices=METRICS, help="the dataset's metric")
    p.add_argument("--seed", type=int, default=0, help="model seed (use the split's seed)")
    p.add_argument("--threads", type=int, default=1, help="threads of the job")
    add_tracking_args(p)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="ECFP4 + random forest or chemprop D-MPNN on bbmn's splits",
                       description=__doc__)
    models = p.add_subparsers(dest="model", required=True, metavar="MODEL")
    rf = models.add_parser("ecfp-rf", help="Morgan radius 2 / 2048 bits + random forest per task",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                           description="Forests fit on train, the grid point chosen on validation, "
                                       "scored on test.")
    _common(rf)
    rf.add_argument("--n-estimators", type=int, default=500, help="trees per forest")
    rf.add_argument("--max-features", nargs="+", default=["sqrt", "0.2"],
                    help="grid axis: sqrt, log2, a fraction or a count")
    rf.add_argument("--min-samples-leaf", type=int, nargs="+", default=[1, 3], help="grid axis")
    rf.set_defaults(run=run)
    cp = models.add_parser("chemprop", help="chemprop v2 D-MPNN (pip install '.[baselines]')",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                           description="chemprop's default model trained on bbmn's train part; its best "
                                       "validation-loss epoch scored on bbmn's test part.")
    _common(cp)
    cp.add_argument("--epochs", type=int, default=50, help="training epochs (chemprop's default 50)")
    cp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "gpu"), help="where to train")
    cp.add_argument("--deterministic", action="store_true",
                    help="torch deterministic algorithms only (ECFP-RF is deterministic given --seed)")
    cp.set_defaults(run=run)


def _train(args: argparse.Namespace) -> dict:
    if args.model == "ecfp-rf":
        from bbmn.baselines.ecfp_rf import EcfpRfConfig, parse_max_features, run_ecfp_rf

        cfg = EcfpRfConfig(n_estimators=args.n_estimators,
                           max_features=tuple(parse_max_features(v) for v in args.max_features),
                           min_samples_leaf=tuple(args.min_samples_leaf), threads=max(1, args.threads))
        return run_ecfp_rf(args.clean, args.split, args.out, args.dataset, args.metric, args.seed, cfg)
    from bbmn.baselines.chemprop_run import run_chemprop

    return run_chemprop(args.clean, args.split, args.out, args.dataset, args.metric, args.seed,
                        epochs=args.epochs, device=args.device, threads=max(1, args.threads),
                        deterministic=args.deterministic)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bbmn.train.tracking import Tracker

    if args.model == "chemprop":  # before any tracking run is opened: a missing extra is a user error
        from bbmn.baselines.chemprop_run import require_chemprop

        require_chemprop()
    model = args.model.replace("-", "_")
    params = {k: v for k, v in vars(args).items() if k not in ("run", "tracking_parent", "tracking_required")}
    with Tracker(f"baseline {model} {args.dataset} seed{args.seed}", parent=args.tracking_parent,
                 tags={"stage": "baseline", "model": model, "dataset": args.dataset, "seed": args.seed},
                 params=params, required=args.tracking_required,
                 enabled=bool(args.tracking_parent)) as tracker:
        record = _train(args)
        if tracker.enabled:
            tracker.log_metrics({f"val_{args.metric}": record["val"]["value"],
                                 f"test_{args.metric}": record["test"]["value"], "seconds": record["seconds"]})
            for name in ("metrics.json", "predictions.csv", "details.json"):
                tracker.log_artifact(Path(args.out) / name, "baseline")
    print(json.dumps({"model": model, "dataset": args.dataset, "seed": args.seed, "metric": args.metric,
                      "val": record["val"]["value"], "test": record["test"]["value"],
                      "selected": record["selected"], "seconds": record["seconds"], "out": args.out}))
    return 0
