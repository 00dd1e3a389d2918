"""Options shared by the commands that read new molecules (``bbmn predict``, ``bbmn embed``)."""

from __future__ import annotations

import argparse

from bbmn.cli.shared_args import add_device_args


def add_molecule_input_args(p: argparse.ArgumentParser, *, chunk_rows: int, standardize_help: str) -> None:
    """The input file and how it is read, prepared and batched; the same for every such command."""
    p.add_argument("input", help="molecules: CSV (with a SMILES column) or SMI, optionally .gz")
    p.add_argument("--smiles-col", default="smiles", help="SMILES column of a CSV")
    p.add_argument("--keep", nargs="*", default=[], help="input columns copied to the output (e.g. an id)")
    p.add_argument("--standardize", choices=("as_given", "standard"), help=standardize_help)
    p.add_argument("--encoding", default="utf-8-sig", help="input text encoding")
    p.add_argument("--batch-size", type=int, default=256, help="molecules per forward pass")
    p.add_argument("--chunk-rows", type=int, default=chunk_rows, help="rows read, prepared and written at a time")
    p.add_argument("--workers", type=int, default=0,
                   help="processes preparing chunks while this one runs the model (0 = none)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    add_device_args(p)


def molecule_input_kwargs(args: argparse.Namespace) -> dict:
    """The options of :func:`add_molecule_input_args` as keyword arguments of the library calls."""
    return {name: getattr(args, name) for name in
            ("smiles_col", "keep", "standardize", "batch_size", "chunk_rows", "workers", "threads",
             "encoding", "device")}
