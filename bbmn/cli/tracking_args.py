"""``--tracking-parent`` and ``--tracking-required`` of the commands that log a training run to
MLflow: one spelling and help text."""

from __future__ import annotations

import argparse


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    """The parent run a workflow's jobs log under (:mod:`bbmn.train.tracking`), and whether a store
    that cannot be used is an error or a warning."""
    p.add_argument("--tracking-parent", help="parent run record written by `bbmn track init`")
    p.add_argument("--tracking-required", action="store_true",
                   help="fail if the MLflow store cannot be used (default: skip tracking)")
