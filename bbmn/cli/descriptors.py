"""``bbmn descriptors``: cleaned Parquet in, 200 RDKit2DNormalized descriptors per molecule out."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("descriptors", help="RDKit2DNormalized descriptors (descriptastorus) per molecule",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="cleaned Parquet (output of bbmn clean)")
    p.add_argument("--out", required=True, help="descriptor Parquet to write")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.data.descriptors import write_descriptors

    print(json.dumps(write_descriptors(args.input, args.out, workers=max(1, args.workers))))
    return 0
