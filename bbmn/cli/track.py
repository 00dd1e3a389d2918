"""``bbmn track``: the workflow's MLflow parent run (created before jobs start, closed at the end)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("track", help="create / close the workflow's MLflow store and parent run",
                       description=__doc__)
    kinds = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = kinds.add_parser("init", help="create the store and experiment, start the parent run",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    init.add_argument("--out", required=True, help="JSON record of the parent run, for child runs")
    init.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    init.add_argument("--experiment", default="bbmn", help="experiment name")
    init.add_argument("--run-name", default="workflow", help="name of the parent run")
    init.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="parent run tags")
    init.add_argument("--required", action="store_true",
                      help="fail if the store cannot be used (default: record that tracking is off)")
    init.set_defaults(run=run_init)
    finish = kinds.add_parser("finish", help="mark the parent run finished or failed")
    finish.add_argument("record", help="the record written by `bbmn track init`")
    finish.add_argument("--status", choices=("FINISHED", "FAILED", "KILLED"), default="FINISHED")
    finish.set_defaults(run=run_finish)


def run_init(args: argparse.Namespace) -> int:
    from bbmn.train.tracking import init_store

    tags = dict(t.split("=", 1) for t in args.tag if "=" in t)
    record = init_store(args.out, args.uri, args.experiment, args.run_name, tags, args.required)
    state = f"parent run {record['parent_run_id']}" if record["parent_run_id"] else "tracking skipped"
    print(f"{record['uri']}: {state}")
    return 0


def run_finish(args: argparse.Namespace) -> int:
    from bbmn.train.tracking import finish_parent

    finish_parent(args.record, args.status)
    return 0
