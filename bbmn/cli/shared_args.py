"""Options that several commands share, with one spelling and help text each. Light on purpose:
every subcommand module imports this to build its parser."""

from __future__ import annotations

import argparse

from bbmn.options import BF16_HELP, DEVICE_HELP


def add_device_args(p: argparse.ArgumentParser, bf16: bool = False) -> None:
    """``--device``, checked when the command starts (:func:`bbmn.train.device.resolve_device`);
    with ``bf16``, also ``--bf16``."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    if bf16:
        p.add_argument("--bf16", action="store_true", help=BF16_HELP)


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    """The parent run a workflow's jobs log under (:mod:`bbmn.train.tracking`), and whether a store
    that cannot be used is an error or a warning."""
    p.add_argument("--tracking-parent", help="parent run record written by `bbmn track init`")
    p.add_argument("--tracking-required", action="store_true",
                   help="fail if the MLflow store cannot be used (default: skip tracking)")


def add_datasets_option(parser: argparse.ArgumentParser) -> None:
    """``--datasets``: the run's dataset order (``run.datasets``), which the metric files do not
    hold; ``bbmn plot`` takes it too, so the figures' panels follow the tables' columns."""
    parser.add_argument("--datasets", nargs="*", default=[], metavar="NAME",
                        help="the run's datasets in config order: the paper's come first in the "
                        "paper's order, then the others in this order (default: by name)")
