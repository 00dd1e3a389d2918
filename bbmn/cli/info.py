"""``bbmn info``: what a model file is, from its card, and whether this bbmn can use it.

A file written by an older bbmn has no card: what its contents show (kind, model_config, keys,
parameter count, input widths) is printed instead.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="a model file's card: what it was trained on, how, by which bbmn",
                       description=__doc__)
    p.add_argument("model", help="bbmn pretrain's or bbmn finetune's model.pt (or a snapshot)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from bbmn.train.card import describe

    info = describe(args.model)
    print(json.dumps(info, indent=2) if args.json else "\n".join(lines(info)))
    return 0


def lines(info: Mapping) -> list[str]:
    """The description as ``section:`` headings with indented ``key: value`` lines."""
    out = [f"model: {info['path']} ({info['bytes']:,} bytes, sha256 {info['sha256']})",
           f"kind: {info['kind']}", f"usable by this bbmn: {info['usable']}"]
    card = info["card"]
    if card is None:
        out.append("card: missing (written by an older bbmn); derived from the file's contents:")
        sections = info["derived"]
    else:
        out.append(f"card: version {card.get('card_version')}, created {card.get('created')}")
        sections = {k: v for k, v in card.items() if k not in ("card_version", "created", "kind")}
    for name, value in sections.items():
        if isinstance(value, Mapping) and value:
            out.append(f"{name}:")
            out += [f"  {key}: {text}" for key, text in _flat(value).items()]
        else:
            out.append(f"{name}: {_text(value)}")
    return out


def _flat(nested: Mapping, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in nested.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _text(value)
    return flat


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "(none)"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "(none)" if value is None or value == {} else str(value)
