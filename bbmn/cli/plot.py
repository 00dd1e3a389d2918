"""``bbmn plot``: the report's figures from the files in ``results/`` (PNG and SVG, matplotlib).

Each figure is written as ``OUT.png`` and ``OUT.svg`` (``--out`` given with or without the
suffix); ``tables`` and ``overview`` write one HTML fragment. Nothing is read from MLflow.
"""

from __future__ import annotations

import argparse

from bbmn.cli.shared_args import add_datasets_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="figures for the report: pre-training curves, per-dataset bars, ROC",
                       description=__doc__)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    pre = kinds.add_parser("pretrain", help="loss and validation accuracy curves of a pre-training run",
                           description="Reads history.jsonl (per epoch) and steps.jsonl (logged steps).")
    pre.add_argument("run_dir", help="pre-training run directory (bbmn pretrain --out)")
    pre.add_argument("--out", required=True, help="figure path (OUT.png and OUT.svg are written)")
    pre.add_argument("--title", help="figure title (default: the run directory's name)")
    cmp_ = kinds.add_parser("comparison", help="per-dataset bars, mean and std over seeds, with the "
                            "published reference rows", description="Reads the metrics.json files "
                            "the tables are built from.")
    cmp_.add_argument("metrics", nargs="+", help="metrics.json of fine-tuning and baseline runs")
    cmp_.add_argument("--out", required=True, help="figure path (OUT.png and OUT.svg are written)")
    add_datasets_option(cmp_)
    hlt = kinds.add_parser("health", help="representation health: over-smoothing, spread and rank of "
                           "the pooled views, their share of the heads' input", description="Reads the "
                           "health records in the metrics.json of probe and fine-tuning runs.")
    hlt.add_argument("metrics", nargs="+", help="metrics.json of probe and fine-tuning runs")
    hlt.add_argument("--out", required=True, help="figure path (OUT.png and OUT.svg are written)")
    add_datasets_option(hlt)
    roc = kinds.add_parser("roc", help="ROC curves of one classification dataset's test predictions",
                           description="Reads each metrics.json and the predictions.csv beside it.")
    roc.add_argument("metrics", nargs="+", help="metrics.json of the dataset's runs (any models, seeds)")
    roc.add_argument("--out", required=True, help="figure path (OUT.png and OUT.svg are written)")
    tab = kinds.add_parser("tables", help="the tables as one HTML fragment for the report",
                           description="Reads classification.csv / regression.csv of `bbmn table` "
                                       "and the caption from the Markdown file beside each.")
    tab.add_argument("tables", nargs="+", help="table CSV files of `bbmn table`")
    tab.add_argument("--out", required=True, help="HTML file to write")
    ovw = kinds.add_parser("overview", help="the tables and the figures on one HTML page (images inlined)",
                           description="The first page of `snakemake --report`.")
    ovw.add_argument("--tables", nargs="+", required=True, help="table CSV files of `bbmn table`")
    ovw.add_argument("--figures", nargs="*", default=[], help="PNG figures of `bbmn plot`")
    ovw.add_argument("--out", required=True, help="HTML file to write")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.eval import pages, plots

    if args.kind == "pretrain":
        written = plots.plot_pretrain(args.run_dir, args.out, args.title)
    elif args.kind == "comparison":
        written = plots.plot_comparison(args.metrics, args.out, args.datasets)
    elif args.kind == "health":
        written = plots.plot_health(args.metrics, args.out, args.datasets)
    elif args.kind == "roc":
        written = plots.plot_roc(args.metrics, args.out)
    elif args.kind == "tables":
        written = {"html": pages.write_tables_html(args.tables, args.out)}
    else:
        written = {"html": pages.write_overview_html(args.tables, args.figures, args.out)}
    for fmt, path in written.items():
        print(f"{fmt}: {path}")
    return 0
