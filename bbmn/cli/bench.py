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
    e = kinds.add_parser("embed", help="bbmn embed: molecules/s and peak memory of a streamed run",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("input", help="molecule file (e.g. MOSES train.csv.gz)")
    e.add_argument("--checkpoint", required=True, help="pre-trained or fine-tuned model.pt")
    e.add_argument("-n", type=int, default=200_000, help="molecules to embed (from the start)")
    e.add_argument("--workers", type=int, default=1, help="processes preparing chunks")
    e.add_argument("--threads", type=int, default=1, help="torch threads of the encoding process")
    e.add_argument("--batch-size", type=int, default=256, help="molecules per forward pass")
    e.add_argument("--chunk-rows", type=int, default=4096, help="rows per chunk and row group")
    e.add_argument("--smiles-col", default="smiles", help="SMILES column of a CSV")
    e.add_argument("--compare", type=int, default=0,
                   help="also embed the first N molecules, to show memory does not grow with input")
    e.set_defaults(run=run_embed)


def run_featurize(args: argparse.Namespace) -> int:
    from bbmn.bench.featurize import bench_featurize

    result = bench_featurize(args.input, args.n, args.workers, args.smiles_col, full_size=args.full_size)
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(result))
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from bbmn.bench.embed import bench_embed

    result = bench_embed(args.input, args.checkpoint, args.n, args.workers, args.threads,
                         args.batch_size, args.chunk_rows, args.smiles_col, args.compare)
    for key, value in result.items():
        print(f"{key:>40}: {value}")
    print(json.dumps(result))
    return 0

