"""``bbmn featurize``: cleaned Parquet in, graph cache (Parquet of feature codes) out."""

from __future__ import annotations

import argparse
import json

from bbmn.data.cache import featurize


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("featurize", help="write the graph cache (atom/bond codes) of cleaned molecules",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="cleaned Parquet (output of bbmn clean)")
    p.add_argument("--out", required=True, help="graph cache Parquet to write")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--chunk-rows", type=int, default=4096, help="molecules per row group")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    summary = featurize(args.input, args.out, workers=max(1, args.workers),
                        chunk_rows=args.chunk_rows, force=args.force)
    print(json.dumps(summary))
    return 0
