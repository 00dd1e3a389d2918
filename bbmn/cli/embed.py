"""``bbmn embed``: molecule embeddings from a pre-trained or fine-tuned BatmanNet encoder.

Two pooled views per molecule (atom and bond, ``h`` wide each), written to Parquet with one row per
input row in input order: ``row``, ``input``, ``smiles``, ``status``, ``detail``, the ``--keep``
columns, then ``embedding`` (both views concatenated, ``--layout concat``) or ``atom_view`` and
``bond_view`` (``--layout separate``); rows that cannot be read or parsed have NaN embeddings and
their reason. The input is read, encoded and written in chunks (one Parquet row group each), so
memory does not grow with the file. The last line printed is a JSON summary.
"""

from __future__ import annotations

import argparse
import json

from bbmn.cli.molecule_input import add_molecule_input_args, molecule_input_kwargs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="molecule embeddings (the encoder's two pooled views) as Parquet",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_molecule_input_args(p, chunk_rows=4096,
                            standardize_help="standardization profile (default: the model's record; "
                                             "pre-trained: standard)")
    p.add_argument("--checkpoint", required=True, help="bbmn pretrain's or bbmn finetune's model.pt")
    p.add_argument("--out", required=True, help="output .parquet")
    p.add_argument("--layout", choices=("concat", "separate"), default="concat",
                   help="one 2h-wide embedding column, or atom_view and bond_view columns")
    p.add_argument("--compile", action="store_true",
                   help="run the encoders through torch.compile (a one-off compile; docs/benchmarks.md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.train.runtime import reexec_with_malloc_tunables

    reexec_with_malloc_tunables()  # faster forward passes on CPU; BBMN_PLAIN_MALLOC=1 turns it off
    from bbmn.inference.embed import embed_file

    summary = embed_file(args.checkpoint, args.input, args.out, layout=args.layout,
                         compile=args.compile, **molecule_input_kwargs(args))
    print(json.dumps(summary))
    return 0
