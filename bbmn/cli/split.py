"""``bbmn split``: cleaned Parquet in, train/val/test source rows (JSON) out."""

from __future__ import annotations

import argparse
import json

from bbmn.data.splits import METHODS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("split", help="balanced scaffold (GROVER), deterministic scaffold or random split",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="cleaned Parquet (output of bbmn clean)")
    p.add_argument("--out", required=True, help="split JSON to write")
    p.add_argument("--method", choices=METHODS, default="balanced_scaffold", help="split protocol")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--sizes", type=float, nargs=3, default=(0.8, 0.1, 0.1),
                   metavar=("TRAIN", "VAL", "TEST"), help="fractions")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.data.splits import split_table

    record = split_table(args.input, args.out, args.method, args.seed, args.sizes)
    print(json.dumps({k: record[k] for k in record if k.endswith(("_size", "_digest"))}))
    return 0
