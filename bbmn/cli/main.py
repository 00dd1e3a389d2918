"""``bbmn``: one subcommand per pipeline step; each lives in its own module of this package.

A subcommand module defines ``add_parser(subparsers)`` (its arguments) and ``run(args)`` (a thin
call into the library). Errors the user can fix (:class:`bbmn.errors.BbmnError`) are printed as
one line, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from bbmn import __version__
from bbmn.errors import BbmnError

#: Subcommands in the order of the pipeline; each is the module ``bbmn.cli.<name>``.
COMMANDS = ("fetch", "clean", "featurize", "descriptors", "split", "pretrain", "baseline",
            "finetune", "probe", "train", "predict", "register", "embed", "info", "leakage", "table",
            "ablation", "plot", "track", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bbmn", description="BatmanNet: masked graph autoencoder pre-training and fine-tuning.")
    parser.add_argument("--version", action="version", version=f"bbmn {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bbmn.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    try:
        result = args.run(args)
    except BbmnError as exc:
        print(f"bbmn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bbmn {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
