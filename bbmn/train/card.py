"""Model cards: what a model file was made from, and whether this bbmn can use it.

Every model file bbmn writes (``bbmn pretrain``'s ``model.pt`` and snapshots, ``bbmn finetune``'s
``model.pt``) carries a ``card``, so that a file found on a shared disk says by itself what it is:
its model and training configuration, the data files and their sha256, how far it trained, its
last validation (and test) figures, the featurizer it expects, and the software that wrote it.
The card is plain values only (files are loaded as data, :mod:`bbmn.train.checkpoint`).

:func:`check_model` is what every command that reads a model runs first: it refuses, in one line,
a file of the wrong kind, made for another featurizer, with model settings this bbmn does not
know, or without the encoder weights its settings need. A file written before cards existed is
checked on what it holds, with a warning, and still loads.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bbmn.errors import BbmnError

log = logging.getLogger(__name__)

#: bump when the card's layout changes meaning
CARD_VERSION = 1
PRETRAINED, FINETUNED = "batmannet-pretrained", "batmannet-finetuned"
#: what each model kind is, and which file of which command it is
KIND_NAMES = {PRETRAINED: ("a pre-trained model", "bbmn pretrain's model.pt (or a snapshot)"),
              FINETUNED: ("a fine-tuned model", "bbmn finetune's model.pt")}
#: the weights of each encoder's input stage and blocks (what pre-training provides whole)
ENCODER_PREFIXES = {"node": ("node_encoder.embed.", "node_encoder.blocks."),
                    "edge": ("edge_encoder.embed.", "edge_encoder.blocks.")}
#: the input projections whose widths are the featurizer's atom and edge widths
INPUT_WEIGHTS = {"atom_dim": "node_encoder.embed.project.weight",
                 "edge_dim": "edge_encoder.embed.project.weight"}


# ---------------------------------------------------------------------------------------- writing

def featurizer() -> dict:
    """The featurizer this bbmn codes molecules with: version and input widths."""
    from bbmn.chem.features import ATOM_DIM, EDGE_DIM, FEATURIZER_VERSION

    return {"version": FEATURIZER_VERSION, "atom_dim": ATOM_DIM, "edge_dim": EDGE_DIM}


@functools.cache
def software() -> dict:
    """bbmn's version and git commit (None outside a git checkout), torch's and Python's versions."""
    import platform

    import torch

    from bbmn import __version__

    return {"bbmn": __version__, "git_commit": _git_commit(), "torch": str(torch.__version__),
            "python": platform.python_version()}


def _git_commit() -> str | None:
    from bbmn.train.tracking import git_commit

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():  # an installed copy: a parent repository is not bbmn's
        return None
    commit = git_commit()
    return None if commit == "unknown" else commit


def data_files(**paths: str | Path | None) -> dict:
    """``{name: {"path", "sha256"}}`` of the files a model was trained on (None stays None)."""
    from bbmn.io import sha256_file

    return {name: None if p is None else {"path": str(p), "sha256": sha256_file(p)}
            for name, p in paths.items()}


def make_card(kind: str, model_config: Mapping, training_config: Mapping, data: Mapping,
              steps: int, epochs: float, metrics: Mapping, **extra: Any) -> dict:
    """A model's card as plain values (module docstring); ``extra`` adds sections."""
    card = {"card_version": CARD_VERSION, "kind": kind,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "software": software(), "featurizer": featurizer(), "data": data,
            "progress": {"steps": steps, "epochs": epochs}, "metrics": metrics, **extra,
            "model_config": model_config, "training_config": training_config}
    return plain(card)


def plain(value: Any) -> Any:
    """``value`` with dicts, lists, str, int, float, bool and None only (what loads as data)."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy and torch scalars
        return plain(value.item())
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    for t in (bool, int, float, str):  # subclasses, e.g. torch's TorchVersion
        if isinstance(value, t):
            return t(value)
    return str(value)  # paths and the like


# ---------------------------------------------------------------------------------------- checking

def check_model(saved: Any, path: str | Path, kinds: Sequence[str | None], use: str,
                warn_legacy: bool = True) -> dict | None:
    """Refuse a model file that ``use`` (e.g. ``"bbmn predict"``) cannot read; return its card.

    Args:
        saved: the loaded file.
        path: its path (for messages).
        kinds: the kinds ``use`` accepts (None: a file without a kind, e.g. a training checkpoint).
        use: the command, for messages.
        warn_legacy: log a warning for a file without a card.

    Returns:
        The card, or None for a file written before cards (logged; only what it holds is checked).

    Raises:
        BbmnError: one line saying why the file cannot be used.
    """
    if not isinstance(saved, dict):
        raise BbmnError(f"{path} is not a bbmn model file")
    kind = saved.get("kind")
    if kind not in kinds:
        raise BbmnError(_wrong_kind(path, kind, kinds, use))
    weights, config = saved.get("model"), saved.get("model_config")
    if not isinstance(weights, dict) or not isinstance(config, dict):
        raise BbmnError(f"{path} has no model weights or model_config; it is not a complete model file")
    card = saved.get("card")
    if card is not None and not isinstance(card, dict):
        raise BbmnError(f"{path} has a malformed model card ({type(card).__name__}, not a dict)")
    _check_featurizer(path, saved, card or {})
    unknown = sorted(set(config) - known_config_keys(kind))
    if unknown:
        made_by = (card or {}).get("software", {}).get("bbmn", "another version")
        raise BbmnError(f"{path}: model_config keys {', '.join(unknown)} are unknown to this bbmn "
                        f"({software()['bbmn']}); the file was written by bbmn {made_by}")
    missing = [p for p in required_encoder_prefixes(kind, config) if not any(k.startswith(p) for k in weights)]
    if missing:
        raise BbmnError(f"{path} has no encoder weights {', '.join(p + '*' for p in missing)}, which its "
                        f"model_config needs; the file is incomplete")
    if card is None and warn_legacy:
        log.warning("%s has no model card (written by an older bbmn): checked on what it holds", path)
    return card


def _wrong_kind(path: str | Path, kind: Any, kinds: Sequence[str | None], use: str) -> str:
    wanted = [k for k in kinds if k is not None]
    files = " or ".join(KIND_NAMES[k][1] for k in wanted if k in KIND_NAMES)
    if kind in KIND_NAMES:
        return (f"{path} is {KIND_NAMES[kind][0]}, not {' or '.join(KIND_NAMES[k][0] for k in wanted)}: "
                f"{use} needs {files}")
    return f"{path} is a checkpoint of kind {kind!r}, not a BatmanNet model; {use} needs {files}"


def _check_featurizer(path: str | Path, saved: dict, card: dict) -> None:
    """The recorded featurizer version and the input widths (recorded, else read off the
    weights) must be this bbmn's."""
    own = featurizer()
    recorded = card.get("featurizer") or {}
    versions = [v for v in (recorded.get("version"), saved.get("featurizer_version")) if v is not None]
    widths = input_widths(saved.get("model") or {})
    widths.update({k: recorded[k] for k in ("atom_dim", "edge_dim") if recorded.get(k) is not None})
    wrong = [v for v in versions if v != own["version"]]
    if wrong or any(widths[k] != own[k] for k in widths):
        version = wrong[0] if wrong else (versions[0] if versions else "unknown")
        have = ", ".join(f"{widths[k]} {name}" for k, name in (("atom_dim", "atom"), ("edge_dim", "edge"))
                         if k in widths)
        raise BbmnError(f"{path} was made for featurizer version {version}"
                        f"{f' ({have} features)' if have else ''}; this bbmn featurizes with version "
                        f"{own['version']} ({own['atom_dim']} atom, {own['edge_dim']} edge features)")


def input_widths(weights: Mapping) -> dict[str, int]:
    """The atom and edge input widths the weights were made for (the encoders' input projections)."""
    return {k: int(weights[name].shape[1]) for k, name in INPUT_WEIGHTS.items()
            if name in weights and getattr(weights[name], "ndim", 0) == 2}


def known_config_keys(kind: str | None) -> set[str]:
    """The model_config keys this bbmn rebuilds a model of ``kind`` from."""
    from bbmn.models.batmannet import BatmanNet
    from bbmn.models.finetune import PRETRAINING_ONLY, BatmanNetFinetune

    def arguments(cls: type) -> set[str]:
        return {n for n, p in inspect.signature(cls).parameters.items()
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}

    if kind == PRETRAINED:
        return arguments(BatmanNet)
    if kind == FINETUNED:
        return arguments(BatmanNetFinetune) | set(PRETRAINING_ONLY)
    return arguments(BatmanNet) | arguments(BatmanNetFinetune)


def required_encoder_prefixes(kind: str | None, config: Mapping) -> list[str]:
    """The encoder weights a model of ``config`` must hold: none for a descriptors-only model,
    the trained branches' for a pre-trained one, both encoders' otherwise."""
    if config.get("inputs") == "descriptors":
        return []
    chosen = ("node", "edge")
    if kind != FINETUNED:  # a single-branch pre-training has one encoder
        chosen = {"atoms": ("node",), "bonds": ("edge",)}.get(config.get("branches"), chosen)
    return [p for b in chosen for p in ENCODER_PREFIXES[b]]


# ---------------------------------------------------------------------------------------- reading

def describe(path: str | Path) -> dict:
    """What ``bbmn info`` shows of a model file: path, size, sha256, kind, its card, whether this
    bbmn can load it, and for a file without a card what can be derived from its contents."""
    from bbmn.io import sha256_file
    from bbmn.train.checkpoint import load_checkpoint

    saved = load_checkpoint(path, what="model")
    if not isinstance(saved, dict):
        raise BbmnError(f"{path} is not a bbmn model file")
    try:
        check_model(saved, path, (PRETRAINED, FINETUNED), "this bbmn", warn_legacy=False)
        usable = "yes"
    except BbmnError as exc:
        usable = f"no: {exc}"
    info = {"path": str(path), "bytes": Path(path).stat().st_size, "sha256": sha256_file(path),
            "kind": saved.get("kind"), "usable": usable, "card": saved.get("card")}
    if info["card"] is None:
        weights = saved.get("model") if isinstance(saved.get("model"), dict) else {}
        info["derived"] = plain({
            "keys": sorted(saved), "model_config": saved.get("model_config"),
            "parameters": sum(int(t.numel()) for t in weights.values() if hasattr(t, "numel")),
            "input_widths": input_widths(weights), "summary": saved.get("summary"),
            **{k: v for k, v in saved.items() if _short(v)}})
    return info


def _short(value: Any) -> bool:
    """A top-level value worth showing as it is: a scalar or a short list of scalars (tasks)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, list) and len(value) <= 50 and all(isinstance(v, (str, int, float)) for v in value)
