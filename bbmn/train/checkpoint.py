"""Training checkpoints: everything needed to resume exactly, written atomically.

A checkpoint holds the model's hyper-parameters (so it can be rebuilt), its weights, the
optimizer and scheduler states, the RNG states of Python, numpy and torch, and the progress
(epoch, step in the epoch, global step). ``latest.pt`` is replaced atomically, so a kill at any
moment leaves the previous complete checkpoint.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bbmn.errors import BbmnError
from bbmn.io import atomic_path


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Save ``state`` (tensors, state dicts, plain values) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Raises:
        BbmnError: if the file is missing or is not a readable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise BbmnError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise BbmnError(f"cannot read checkpoint {path}: {exc}") from None
