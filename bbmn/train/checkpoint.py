"""Training checkpoints: everything needed to resume exactly, written atomically.

A checkpoint holds the model's hyper-parameters (so it can be rebuilt), its weights, the
optimizer and scheduler states, the RNG states of Python, numpy and torch, and the progress
(epoch, step in the epoch, global step). ``latest.pt`` is replaced atomically, so a kill at any
moment leaves the previous complete checkpoint.

Files are loaded with ``torch.load(weights_only=True)``: a model file is data (tensors and plain
values: dicts, lists, numbers, strings), and one that holds anything else is refused instead of
unpickled, because unpickling can run arbitrary code from a shared file. So everything saved
here is plain too; the RNG states are stored as tensors and lists.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bbmn.errors import BbmnError
from bbmn.io import atomic_path


def rng_state() -> dict:
    """Python's, numpy's and torch's RNG states as plain values and tensors."""
    version, words, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(words), gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, words, gauss = state["python"]
    random.setstate((version, tuple(words), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict:
    """``optimizer.state_dict()`` with the name of each parameter its state belongs to.

    torch keys an optimizer's state by the parameters' positions, so a checkpoint resumed by a
    model whose modules are registered in another order (a refactor) would give each parameter
    another one's Adam moments; :func:`load_optimizer_state` matches them by name instead.
    """
    state = optimizer.state_dict()
    name_of = {id(p): n for n, p in model.named_parameters()}
    state["param_names"] = [name_of[id(p)] for group in optimizer.param_groups for p in group["params"]]
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module, saved: dict,
                         where: str | Path = "checkpoint") -> None:
    """Load ``saved`` (from :func:`optimizer_state`) into ``optimizer``, each state to the
    parameter of its name; a checkpoint without names (older bbmn) loads by position only where
    every state's shape matches its parameter's.

    Raises:
        BbmnError: if the checkpoint's parameters are not the model's (names or shapes differ).
    """
    saved = dict(saved)
    names = saved.pop("param_names", None)
    name_of = {id(p): n for n, p in model.named_parameters()}
    current = [[name_of[id(p)] for p in g["params"]] for g in optimizer.param_groups]
    if len(saved["param_groups"]) != len(current):
        raise BbmnError(f"{where}: its optimizer has {len(saved['param_groups'])} parameter groups, "
                        f"this run's {len(current)}; start the run afresh")
    if names is not None:
        index = {name: i for i, name in enumerate(names)}
        groups = []
        for group, group_names in zip(saved["param_groups"], current, strict=True):
            old = {names[i] for i in group["params"]}
            if old != set(group_names):
                raise BbmnError(f"{where}: its optimizer state is for other parameters than this model's "
                                f"(e.g. {sorted(old ^ set(group_names))[:3]}); start the run afresh")
            groups.append({**group, "params": [index[n] for n in group_names]})
        saved["param_groups"] = groups
    params = [p for g in optimizer.param_groups for p in g["params"]]
    position = {i: p for g_saved, g in zip(saved["param_groups"], optimizer.param_groups, strict=True)
                for i, p in zip(g_saved["params"], g["params"], strict=False)}
    for i, state in saved["state"].items():
        moment = state.get("exp_avg")
        if i not in position or (moment is not None and moment.shape != position[i].shape):
            raise BbmnError(f"{where}: its optimizer state does not fit this model's parameters "
                            f"({len(saved['state'])} states for {len(params)} parameters, or shapes "
                            f"differ: it was written by a bbmn whose model registers its modules in "
                            f"another order); start the run afresh")
    optimizer.load_state_dict(saved)


def save_checkpoint(path: str | Path, **state: Any) -> None:
    """Save ``state`` (tensors, state dicts, plain values) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    what: str = "checkpoint") -> dict:
    """Load a checkpoint or model file written by :func:`save_checkpoint`, as data only
    (``what`` names it in errors).

    Raises:
        BbmnError: if the file is missing, is not a readable checkpoint, or holds objects other
            than tensors and plain values (which loading would have to execute).
    """
    path = Path(path)
    if not path.is_file():
        raise BbmnError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = str(exc).splitlines()[-1].strip() if str(exc).strip() else ""
        what = found if "GLOBAL" in found or "global" in found else "objects other than tensors and plain values"
        raise BbmnError(f"refusing to load {path}: it holds {what}, and loading it could run code "
                        f"from the file; bbmn writes model files as data only") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise BbmnError(f"cannot read {what} {path}: {exc}") from None


def encoder_sizes(path: str | Path) -> dict:
    """A model file's encoder sizes as recorded (the ``pretrain.model`` keys of
    :data:`bbmn.models.options.ENCODER_SIZES` its ``model_config`` holds): what a scratch model or
    a random probe encoder needs to compare like with like.

    Raises:
        BbmnError: if the file cannot be read as a model file.
    """
    from bbmn.models.options import ENCODER_SIZES

    saved = load_checkpoint(path, what="model file").get("model_config") or {}
    return {key: saved[key] for key in ENCODER_SIZES if key in saved}


def resumable_state(path: str | Path, fingerprint: str, set_aside: bool = True) -> dict | None:
    """The training state to resume from ``path``, or None to start fresh.

    A checkpoint of another configuration (its ``fingerprint`` differs), or one that cannot be
    loaded as data (e.g. written by an older bbmn with pickled RNG states), is moved aside as
    ``latest.<time>.stale.pt`` with a warning (with ``set_aside``; other data-parallel ranks
    only read), never resumed.
    """
    import logging
    import time

    log = logging.getLogger(__name__)
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path)
        why = None if state.get("fingerprint") == fingerprint else "is from a different configuration or data"
    except BbmnError as exc:
        state, why = None, f"cannot be resumed ({exc})"
    if why is None:
        return state
    if set_aside:
        aside = path.with_name(f"latest.{int(time.time())}.stale.pt")
        path.rename(aside)
        log.warning("checkpoint %s %s; moved to %s, starting fresh", path, why, aside.name)
    return None
