"""``bbmn clean``: a molecule table in, cleaned Parquet + rejects CSV + summary JSON out."""

from __future__ import annotations

import argparse
import json

from bbmn.chem.standardize import PROFILES, profile
from bbmn.data.clean import TASK_TYPES, CleanConfig, clean
from bbmn.options import add_options, from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clean", help="parse, sanitize and standardize SMILES; keep or reject each row",
                       description=__doc__ + "\n\nEvery input row is either kept or written to the "
                       "rejects file with its row number (0-based over data rows), its line in the "
                       "file (1-based, header and blank lines counted, as an editor shows it), its "
                       "input and a reason; the summary accounts for every line.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", help="CSV, CSV.gz, SMI or SMI.gz file")
    p.add_argument("--out", required=True, help="cleaned Parquet file to write")
    p.add_argument("--rejects", required=True, help="CSV of rejected rows to write")
    p.add_argument("--summary", help="JSON summary to write (counts per reason, duplicates)")
    p.add_argument("--smiles-col", default="smiles", help="SMILES column of a CSV")
    p.add_argument("--labels", nargs="*", default=[],
                   help="label columns ('*' = every column but the SMILES one)")
    p.add_argument("--task", choices=TASK_TYPES, help="label type; classification labels must be 0/1")
    p.add_argument("--format", choices=("csv", "smi"), help="input format (default: from the name)")
    p.add_argument("--encoding", default="utf-8-sig", help="input text encoding")
    p.add_argument("--smi-header", action="store_true", help="an SMI file's first line is a header")
    p.add_argument("--standardize", choices=sorted(PROFILES), default="standard",
                   help="'as_given': parse + sanitize only (benchmarks); 'standard': largest organic "
                        "fragment, normalize, neutralize")
    for name, what in (("largest-fragment", "keep only the largest organic fragment"),
                       ("normalize", "normalize functional groups"),
                       ("neutralize", "neutralize charges"),
                       ("keep-stereo", "keep stereochemistry")):
        p.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None,
                       help=f"{what} (default: from --standardize)")
    p.add_argument("--max-heavy-atoms", type=int, default=None,
                   help="reject larger molecules (0 = no limit; default: from --standardize)")
    p.add_argument("--dedupe", action="store_true",
                   help="reject repeated canonical SMILES (pre-training corpora)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--chunk-rows", type=int, default=1024, help="rows per work unit")
    add_options(p.add_argument_group("molecule filters (pre-training corpora)"), CleanConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options = profile(args.standardize, largest_fragment=args.largest_fragment,
                      normalize=args.normalize, neutralize=args.neutralize,
                      keep_stereo=args.keep_stereo, max_heavy_atoms=args.max_heavy_atoms)
    cfg = from_args(CleanConfig, args, smiles_col=args.smiles_col, label_cols=args.labels,
                    task=args.task, standardize=options, dedupe=args.dedupe, fmt=args.format,
                    encoding=args.encoding, smi_header=args.smi_header,
                    workers=max(1, args.workers), chunk_rows=args.chunk_rows)
    summary = clean(args.input, args.out, args.rejects, args.summary, cfg)
    print(json.dumps({k: summary[k] for k in ("input_lines", "blank_lines", "input_rows", "kept",
                                              "rejected", "reasons")}))
    return 0
