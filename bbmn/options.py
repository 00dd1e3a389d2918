"""A step's options, declared once on its config dataclass.

A field made with :func:`option` carries its default and its help text (and choices). From the
fields, :func:`add_options` builds the command's argparse arguments, :func:`from_args` builds the
dataclass back from what was parsed, and :func:`as_flags` turns a workflow config section into
the same command line. So a default, a help text and a flag's spelling each live in one place;
``tests/test_options.py`` checks that the workflow's schema and ``config.yaml`` agree with them.

Spelling: field ``batch_size`` is ``--batch-size``; a boolean is ``--x`` / ``--no-x``; a list or
tuple takes its values after the flag. A field made with ``cli=False`` is the library's only.
"""

from __future__ import annotations

import argparse
import copy
import functools
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, field, fields
from typing import Any


#: help texts that several steps' options share
DEVICE_HELP = "auto (a GPU when CUDA works, else the CPU), cpu, cuda or cuda:N"
BF16_HELP = ("bfloat16 autocast on a GPU or on a CPU with native bf16 (avx512_bf16, AMX); "
             "elsewhere a warning, and float32, which is faster there")


def option(default: Any, help: str, *, choices: Iterable[str] | None = None, metavar: str | None = None,
           cli: bool = True) -> Any:
    """A dataclass field with its help text; mutable defaults are copied per instance."""
    metadata = {"help": help, "choices": tuple(choices) if choices else None, "metavar": metavar, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def flag_of(name: str) -> str:
    return "--" + name.replace("_", "-")


def default_of(f: Field) -> Any:
    return f.default_factory() if f.default is MISSING else f.default


def cli_fields(cls: type, only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[Field]:
    """The fields of ``cls`` that are command-line options, in declaration order."""
    only, exclude = (set(only) if only is not None else None), set(exclude)
    unknown = ((only or set()) | exclude) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__} has no options {sorted(unknown)}")
    return [f for f in fields(cls) if f.metadata.get("cli") and (only is None or f.name in only)
            and f.name not in exclude]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The fields' annotations, evaluated once per class (every command builds its parser)."""
    return typing.get_type_hints(cls)


def _value_type(cls: type, name: str) -> tuple[type, bool]:
    """The scalar type of a field and whether it holds a sequence of them."""
    hint = _type_hints(cls)[name]
    if typing.get_origin(hint) in (list, tuple):
        return typing.get_args(hint)[0], True
    args = [a for a in typing.get_args(hint) if a is not type(None)]  # X | None
    return (args[0] if args else hint), False


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                only: Iterable[str] | None = None, exclude: Iterable[str] = (),
                defaults: Mapping[str, Any] | None = None) -> None:
    """Add the options of ``cls`` to ``parser``. ``defaults`` replaces a field's default for
    this command (e.g. None where a checkpoint supplies the value)."""
    defaults = defaults or {}
    for f in cli_fields(cls, only, exclude):
        kind, many = _value_type(cls, f.name)
        default = defaults.get(f.name, default_of(f))
        kwargs: dict[str, Any] = {"help": f.metadata["help"], "default": default}
        if kind is bool and not many:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            if many:
                kwargs["nargs"] = "*"
                kwargs["default"] = list(default) if default is not None else None
            if f.metadata["choices"]:
                kwargs["choices"] = f.metadata["choices"]
            if f.metadata["metavar"]:
                kwargs["metavar"] = f.metadata["metavar"]
        parser.add_argument(flag_of(f.name), **kwargs)


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """``cls`` from the parsed options (sequences as the field's type) and ``extra`` fields."""
    values = {}
    for f in cli_fields(cls):
        if f.name in extra or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if isinstance(value, list) and typing.get_origin(_type_hints(cls)[f.name]) is tuple:
            value = tuple(value)
        values[f.name] = value
    return cls(**values, **extra)


def as_flags(values: Mapping[str, Any], *classes: type, workflow_keys: Iterable[str] = ()) -> list[str]:
    """The command line that gives the options of ``classes`` the values of a workflow config
    section (each key an option of one of them).

    Every option in ``values`` is passed, also at its default, so that changing a default reruns
    the jobs that depend on it. ``workflow_keys`` are the section's keys that are the workflow's
    own (no option of the step); any other unknown key is an error rather than silently dropped.
    """
    known = {f.name: f for cls in classes for f in cli_fields(cls)}
    workflow_keys = set(workflow_keys)
    unknown = set(values) - set(known) - workflow_keys
    if unknown:
        names = " or ".join(cls.__name__ for cls in classes)
        raise ValueError(f"{', '.join(sorted(unknown))}: not options of {names}")
    flags: list[str] = []
    for name in known:
        value = values.get(name)
        if value is None or name in workflow_keys:
            continue
        if isinstance(value, bool):
            flags.append(flag_of(name) if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, (list, tuple)):
            flags += [flag_of(name), *(str(v) for v in value)]
        else:
            flags += [flag_of(name), str(value)]
    return flags
