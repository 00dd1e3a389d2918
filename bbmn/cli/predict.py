"""``bbmn predict``: score a CSV or SMI file of molecules with a fine-tuned run or an ensemble.

Each input row goes through the run's own cleaning (its recorded standardization profile),
featurization and descriptors, and comes out in input order: ``row``, ``input``, ``smiles``
(canonical), ``status`` (``ok`` or why it cannot be scored), ``detail``, the ``--keep`` columns,
then one column per task (probability, or value in the label's units). With several models (or a
directory of seed runs) the task columns are the members' mean and ``<task>_std`` their spread.
The last line printed is a JSON summary (rows, ok, failed, reasons, seconds).
"""

from __future__ import annotations

import argparse
import json

from bbmn.cli.molecule_input import add_molecule_input_args, molecule_input_kwargs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict properties of new molecules with fine-tuned models",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_molecule_input_args(p, chunk_rows=2048,
                            standardize_help="override the standardization profile the model recorded")
    p.add_argument("--model", required=True, nargs="+",
                   help="fine-tuned model.pt, run directory, or a directory of seed runs (ensemble)")
    p.add_argument("--out", required=True, help="output .csv or .parquet")
    p.add_argument("--format", choices=("csv", "parquet"), help="output format (default: from --out)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.train.runtime import reexec_with_malloc_tunables

    reexec_with_malloc_tunables()  # faster forward passes on CPU; BBMN_PLAIN_MALLOC=1 turns it off
    from bbmn.inference.predict import predict_file

    summary = predict_file(args.model, args.input, args.out, fmt=args.format,
                           **molecule_input_kwargs(args))
    print(json.dumps(summary))
    return 0
