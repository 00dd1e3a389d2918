"""``bbmn ablation``: fine-tuning metric files of pre-training variants in, the ablation table
(Markdown, CSV) and the mask-ratio figure out."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablation", help="compare pre-training variants (mask ratio, decoder, branches)",
                       description=__doc__ + " A run fine-tuned with --variant is that variant's; "
                       "the others are the default row. Settings come from each pre-training "
                       "run's config.json.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("metrics", nargs="+", help="metrics.json of runs fine-tuned from pre-trained models")
    p.add_argument("--out-dir", required=True, help="directory for ablation.md and ablation.csv")
    p.add_argument("--figure", help="also draw the mask-ratio figure here (PNG and SVG)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.eval.ablation import write_ablation

    written = write_ablation(args.metrics, args.out_dir)
    if args.figure:
        from bbmn.eval.plots import plot_ablation

        written.update(plot_ablation(args.metrics, args.figure))
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
