"""``bbmn register``: register a dataset's seed runs as one model in the MLflow Model Registry.

The runs (a directory of seed runs such as results/finetune/bbbp/pretrained, run directories, or
model.pt files, as `bbmn predict --model` takes them) are packaged as one MLflow pyfunc model that
predicts their mean and per-task std, exactly as `bbmn predict` does with them, logged in a
tracking run of stage `register`, and registered as a new version of NAME. The version's tags
name the members and seeds, each member's validation and test score with their mean and spread,
and the card entries the members share. Load it with
`mlflow.pyfunc.load_model("models:/NAME/VERSION")` or serve it with
`mlflow models serve -m models:/NAME/VERSION`. The last line printed is the registration as JSON.
"""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="register seed runs as one ensemble in the MLflow Model Registry",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  bbmn register results/finetune/bbbp/pretrained --name bbbp-batmannet")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="fine-tuned model.pt, run directory, or a directory of seed runs")
    p.add_argument("--name", required=True, help="registered model name (a new version if it exists)")
    p.add_argument("--out", help="where to write the packaged ensemble (default: mlflow_model beside "
                                 "the seed runs, e.g. results/finetune/bbbp/pretrained/mlflow_model)")
    p.add_argument("--record", help="also write the registration (name, version, model id, tags) "
                                    "to this JSON file")
    p.add_argument("--tracking-uri", help="tracking store (default: $MLFLOW_TRACKING_URI or "
                                          "sqlite:///mlflow.db)")
    p.add_argument("--experiment", help="experiment of the registering run (default: bbmn)")
    p.add_argument("--tracking-parent", help="parent run record written by `bbmn track init` (the "
                                             "workflow's; its store and experiment are used)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.inference.register import register_ensemble

    registration = register_ensemble(args.models, args.name, out=args.out, uri=args.tracking_uri,
                                     experiment=args.experiment, parent=args.tracking_parent,
                                     record=args.record)
    print(f"registered {len(registration.members)} runs as models:/{registration.name}/"
          f"{registration.version} in {registration.uri}")
    print(json.dumps({k: v for k, v in registration.as_dict().items() if k != "tags"}))
    return 0
