"""``bbmn train``: fine-tune on one labelled CSV, with no workflow config to edit.

Runs the workflow on a config written for the file alone (OUT/config.yaml): clean, featurize,
descriptors, split and fine-tuning for every seed, then the tables (OUT/results/tables/). With
--checkpoint it fine-tunes that pre-trained model (kind pretrained); without, it trains from
scratch (kind scratch): it never pre-trains. Baselines and probes only when asked. Running the
same command again redoes only what changed. The last lines printed are the `bbmn predict`
command that scores new molecules with the trained seed runs as an ensemble.
"""

from __future__ import annotations

import argparse
import os

from bbmn.kinds import FINETUNE_KINDS

TASKS = ("classification", "regression")
METRICS = ("roc_auc", "rmse", "mae")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune on one labelled CSV (runs the workflow for it)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  bbmn train my_assay.csv --smiles-col SMILES --labels pIC50 "
                              "--task regression \\\n      --checkpoint results/pretrain/zinc250k/model.pt "
                              "--out my_assay_run")
    p.add_argument("input", help="CSV (or SMI) file of molecules and labels, gzipped or not")
    p.add_argument("--out", required=True, help="output directory (config.yaml, results/, mlflow.db)")
    p.add_argument("--labels", required=True, nargs="+", metavar="COLUMN",
                   help="label columns ('*' = every column but the SMILES one)")
    p.add_argument("--task", required=True, choices=TASKS,
                   help="classification (0/1 labels; empty = missing) or regression")
    p.add_argument("--smiles-col", default="smiles", help="SMILES column (default: smiles)")
    p.add_argument("--metric", choices=METRICS,
                   help="test metric (default: roc_auc for classification, rmse for regression)")
    p.add_argument("--checkpoint", metavar="MODEL.pt",
                   help="pre-trained model to fine-tune (default: none, train from scratch)")
    p.add_argument("--seeds", nargs="+", type=int, default=[], metavar="SEED",
                   help="split and training seeds, one model each (default: split.seeds of the "
                        "workflow's config.yaml)")
    p.add_argument("--epochs", type=int,
                   help="fine-tuning epochs (default: finetune.epochs of the workflow's config.yaml)")
    p.add_argument("--kinds", nargs="+", choices=list(FINETUNE_KINDS), default=[], metavar="KIND",
                   help=f"fine-tuning kinds: {', '.join(FINETUNE_KINDS)} (default: pretrained with "
                        "--checkpoint, else scratch)")
    p.add_argument("--name", help="dataset name in results/ and tables (default: from the file name)")
    p.add_argument("--standardize", choices=("standard", "as_given"), default="standard",
                   help="SMILES standardization profile (default: standard; see bbmn clean --help)")
    p.add_argument("--baselines", action="store_true", help="also train ECFP + RF on the same splits")
    p.add_argument("--probes", action="store_true", help="also run the linear probes of the encoders")
    p.add_argument("--register", metavar="NAME",
                   help="register the seed runs of the first kind as one model (a new version of NAME) "
                        "in the MLflow Model Registry (OUT/mlflow.db, or $MLFLOW_TRACKING_URI; see bbmn register --help)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                   help="cores the workflow may use (default: all)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.train_one import train_one
    from bbmn.workflow_config import OneDataset, TrainChoices

    data = OneDataset(args.input, tuple(args.labels), args.task, args.smiles_col, args.metric,
                      args.name, args.standardize)
    choices = TrainChoices(checkpoint=args.checkpoint, seeds=tuple(args.seeds), epochs=args.epochs,
                           kinds=tuple(args.kinds), baselines=args.baselines, probes=args.probes,
                           register=args.register)
    trained = train_one(data, choices, args.out, cores=args.cores)
    print(f"done in {trained.seconds:.0f} s; tables: {trained.results / 'tables'}")
    for kind in trained.kinds:
        print(f"models ({kind}): {trained.model_dir(kind)}")
    if trained.registration is not None:
        print(f"registered as models:/{trained.registration['name']}/{trained.registration['version']} "
              f"in {trained.registration['uri']}")
    print("score new molecules with:")
    print(f"  {trained.predict_command(args.smiles_col)}")
    return 0
