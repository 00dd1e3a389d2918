"""``bbmn bench``: throughput (molecules/s) and peak memory of the pipeline's hot steps."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: molecules/s and peak memory",
                       description=__doc__ + " Run on an idle machine.")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    f = kinds.add_parser("featurize", help="clean + featurize vs RDKit's bare parse rate",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("input", help="molecule file (e.g. ZINC250K's .smi.gz)")
    f.add_argument("-n", type=int, default=20_000, help="molecules to use (from the start)")
    f.add_argument("--workers", type=int, default=2, help="parallel processes")
    f.add_argument("--smiles-col", default="smiles", help="SMILES column of a CSV")
    f.add_argument("--full-size", type=int, default=249_456,
                   help="rows of the whole file, to extrapolate the cache size")
    f.set_defaults(run=run_featurize)


def run_featurize(args: argparse.Namespace) -> int:
    from bbmn.bench.featurize import bench_featurize

    result = bench_featurize(args.input, args.n, args.workers, args.smiles_col, full_size=args.full_size)
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(result))
    return 0
