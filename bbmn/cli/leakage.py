"""``bbmn leakage``: InChIKey overlap between a pre-training corpus and downstream evaluation parts.

``keys`` computes the InChIKey of every molecule of a cleaned corpus (once); ``check`` compares the
validation and test parts of each dataset's split files with it (after the corpus's
standardization) and writes ``summary.csv``, ``summary.md`` and ``molecules.csv``; ``filter``
writes the corpus's graph cache without the overlapping molecules, for pre-training.
"""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leakage", help="overlap of the pre-training corpus with evaluation parts",
                       description=__doc__)
    kinds = p.add_subparsers(dest="step", required=True, metavar="STEP")
    k = kinds.add_parser("keys", help="InChIKeys of a cleaned corpus",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    k.add_argument("clean", help="cleaned corpus (bbmn clean)")
    k.add_argument("--out", required=True, help="output Parquet: row, smiles, inchikey")
    k.add_argument("--workers", type=int, default=1, help="parallel processes")
    k.set_defaults(run=run_keys)
    c = kinds.add_parser("check", help="overlap of each dataset's validation and test parts",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("keys", help="the corpus's keys (bbmn leakage keys)")
    c.add_argument("--dataset", nargs="+", action="append", required=True,
                   metavar=("NAME CLEAN", "SPLIT"),
                   help="a dataset: its name, its cleaned table and its split files (repeatable)")
    c.add_argument("--out-dir", required=True, help="summary.csv, summary.md and molecules.csv go here")
    c.set_defaults(run=run_check)
    f = kinds.add_parser("filter", help="a corpus cache without the overlapping molecules",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    f.add_argument("cache", help="the corpus's graph cache (bbmn featurize)")
    f.add_argument("--keys", required=True, help="the corpus's keys (bbmn leakage keys)")
    f.add_argument("--molecules", required=True, help="molecules.csv of bbmn leakage check")
    f.add_argument("--out", required=True, help="filtered graph cache")
    f.add_argument("--summary", help="JSON summary file")
    f.set_defaults(run=run_filter)


def run_keys(args: argparse.Namespace) -> int:
    from bbmn.data.leakage import corpus_keys

    print(json.dumps(corpus_keys(args.clean, args.out, args.workers)))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bbmn.data.leakage import DatasetParts, check
    from bbmn.errors import BbmnError

    datasets = []
    for entry in args.dataset:
        if len(entry) < 3:
            raise BbmnError(f"--dataset {' '.join(entry)}: give a name, a cleaned table and at "
                            f"least one split file")
        datasets.append(DatasetParts(entry[0], Path(entry[1]), [Path(s) for s in entry[2:]]))
    result = check(args.keys, datasets, args.out_dir)
    print(json.dumps({"overlapping_keys": result["overlapping_keys"],
                      "parts": len(result["rows"]), "out_dir": args.out_dir}))
    return 0


def run_filter(args: argparse.Namespace) -> int:
    from bbmn.data.leakage import filter_cache

    print(json.dumps(filter_cache(args.cache, args.keys, args.molecules, args.out, args.summary)))
    return 0
