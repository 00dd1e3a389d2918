"""``bbmn table``: metric files in, the paper's tables out (CSV, Markdown, LaTeX + per task)."""

from __future__ import annotations

import argparse

from bbmn.cli.shared_args import add_datasets_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="aggregate metric files into the paper's tables",
                       description=__doc__ + " Built from the files only, never from MLflow.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("metrics", nargs="+", help="metrics.json files of fine-tuning / baseline runs")
    p.add_argument("--out-dir", required=True, help="directory for the table files")
    p.add_argument("--selection", help="training budget and stopping rule, for the caption "
                   "(default: the spec's: up to 100 epochs, early stop after 30 epochs without improvement)")
    add_datasets_option(p)
    p.add_argument("--tracking-parent", help="log the tables as artifacts of this workflow's run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.eval.tables import write_tables

    written = write_tables(args.metrics, args.out_dir, args.selection, args.datasets)
    if args.tracking_parent:
        from bbmn.train.tracking import Tracker

        with Tracker("tables", tags={"stage": "table"}, parent=args.tracking_parent) as tracker:
            for path in written.values():
                tracker.log_artifact(path, "tables")
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
