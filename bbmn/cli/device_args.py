"""``--device`` (and ``--bf16``) of the commands that run a model: one spelling and help text."""

from __future__ import annotations

import argparse

from bbmn.options import BF16_HELP, DEVICE_HELP


def add_device_args(p: argparse.ArgumentParser, bf16: bool = False) -> None:
    """``--device``, checked when the command starts (:func:`bbmn.train.device.resolve_device`);
    with ``bf16``, also ``--bf16``."""
    p.add_argument("--device", default="auto",
                   help=DEVICE_HELP)
    if bf16:
        p.add_argument("--bf16", action="store_true",
                       help=BF16_HELP)
