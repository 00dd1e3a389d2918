"""Workflow configuration: presets merged over the base, then checked against the JSON schema.

Snakemake's ``validate`` fills in the schema's defaults; when the config is wrong, its message
is the whole schema and config. :func:`prepare_config` turns that into one line that names the
offending key, e.g. ``config key datasets.bbbp: 'lables' was unexpected``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bbmn.errors import BbmnError
from bbmn.kinds import FINETUNE_KINDS

#: keys of the workflow's step sections that are the workflow's own (its DAG, launcher and job
#: threads), not options of the step's command; every other key is an option (bbmn.options)
WORKFLOW_KEYS = {
    "pretrain": ("model", "use_model", "variants", "nproc", "torchrun_per_gpu"),
    "finetune": ("kinds", "threads"),
    "probe": ("encoders", "datasets", "snapshots", "threads"),
}


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """``base`` with ``override`` merged in: mappings merge recursively, everything else replaces
    (snakemake's ``update_config``, on copies so that neither input changes)."""
    from snakemake.utils import update_config

    merged = copy.deepcopy(dict(base))
    update_config(merged, copy.deepcopy(dict(override)))
    return merged


def _one_line(errors: list) -> str:
    """The most specific error, in one line. A failed ``$ref`` inside ``allOf`` also makes
    ``unevaluatedProperties`` list every sibling key as unexpected, so that one comes last."""
    best = min(errors, key=lambda e: (e.validator == "unevaluatedProperties", -len(e.absolute_path)))
    where = ".".join(str(p) for p in best.absolute_path) or "(top level)"
    message = best.message
    if "were unexpected" in message or "was unexpected" in message:
        message = message[message.index("(") + 1:message.rindex(")")] if "(" in message else message
    return f"config key {where}: {message}"


def validate(config: dict, schema_path: str | Path) -> None:
    """Check ``config`` against the schema and fill in defaults, in place.

    Raises:
        BbmnError: one line naming the first offending key.
    """
    import jsonschema
    from snakemake.utils import validate as snakemake_validate

    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        raise BbmnError(_one_line(errors))
    snakemake_validate(config, str(schema_path), set_default=True)


def coerce_scalars(value: Any) -> Any:
    """Types for ``--config`` values: snakemake parses nested ones as strings ('false', '0.7')."""
    if isinstance(value, Mapping):
        return {k: coerce_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_scalars(v) for v in value]
    if not isinstance(value, str):
        return value
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def prepare_config(config: dict, schema_path: str | Path, overrides: Mapping | None = None) -> dict:
    """The effective config: ``config``, then the chosen preset, then the command-line
    ``overrides`` (``snakemake --config``; they win over the preset), validated before and after.
    """
    overrides = coerce_scalars(dict(overrides or {}))
    config = deep_merge(config, overrides)
    validate(config, schema_path)
    name = config.get("preset", "default")
    presets = config.get("presets", {})
    if name not in presets and name != "default":
        raise BbmnError(f"config key preset: unknown preset {name!r}; choose one of {sorted(presets)}")
    merged = deep_merge(deep_merge(config, presets.get(name, {})), overrides)
    validate(merged, schema_path)
    _check_references(merged)
    _check_source_entries(merged)
    _check_use_model(merged)
    _check_variants(merged, schema_path)
    return merged


def variant_pretrain(config: dict, name: str) -> dict:
    """The ``pretrain`` section of pre-training variant ``name``: the run's, with the variant's
    ``overrides`` merged in (model keys under ``model``), no variants and no snapshots of its own."""
    variants = {v["name"]: v for v in config["pretrain"]["variants"]}
    if name not in variants:
        raise BbmnError(f"no pre-training variant named {name!r} (defined: {', '.join(variants) or 'none'})")
    section = {k: v for k, v in config["pretrain"].items() if k != "variants"}
    return deep_merge({**section, "snapshot_steps": []}, variants[name]["overrides"])


def prepared_datasets(config: dict) -> list[str]:
    """The datasets whose caches and splits the run builds: the run's (``run.prepare: run``) or
    every registered one (``all``)."""
    if config["run"]["prepare"] == "all":
        return list(config["datasets"])
    return list(dict.fromkeys(config["run"]["datasets"]))


def existing_model(config: dict) -> bool:
    """Whether ``pretrain.use_model`` gives the pre-trained model (no pretrain job)."""
    use = config["pretrain"]["use_model"]
    return bool(use["path"] or use["url"])


def uses_pretrained_model(config: dict) -> bool:
    """Whether something the run builds reads the pre-trained model: a fine-tuning kind that
    starts from it, a probe of it or of its snapshots, an embedding by it. A run without any
    (scratch kinds only, as ``bbmn train`` without a checkpoint) neither pre-trains nor needs a
    corpus."""
    starts_from_it = any(FINETUNE_KINDS[k].init == "pretrained" for k in config["finetune"]["kinds"])
    probe = config["probe"]
    probed = prepared_datasets(config) if probe["datasets"] == "all" else probe["datasets"]
    snapshots = probe["snapshots"] and config["pretrain"]["snapshot_steps"] and not existing_model(config)
    probes_it = bool(probed) and ("pretrained" in probe["encoders"] or bool(snapshots))
    embeds_with_it = any(not entry.get("dataset") for entry in config["embed"])
    return starts_from_it or probes_it or embeds_with_it


def reads_corpus(config: dict) -> bool:
    """Whether the run reads its corpus: to pre-train (its own model, or variants) or to check the
    overlap of its own model's corpus with the datasets (leakage.check)."""
    own_model = not existing_model(config)
    return (bool(config["pretrain"]["variants"])
            or own_model and (uses_pretrained_model(config) or config["leakage"]["check"]))


def _check_source_entries(config: dict) -> None:
    """Each registry entry names a local ``path`` or a ``file`` with its ``sha256`` (a mirror copy
    or a download), not both: the schema's ``oneOf`` would report the whole entry instead."""
    for section in ("datasets", "corpora"):
        for name, entry in config.get(section, {}).items():
            key = f"config key {section}.{name}"
            if entry.get("path") and entry.get("file"):
                raise BbmnError(f"{key}: give path (a local file) or file (a mirror copy or a "
                                "download), not both")
            if entry.get("path"):
                extra = [k for k in ("url", "member") if entry.get(k)]
                if extra:
                    raise BbmnError(f"{key}.{extra[0]}: a local path is not downloaded; "
                                    f"drop {extra[0]}")
            elif not entry.get("file"):
                raise BbmnError(f"{key}: needs path (a local file) or file and sha256 (a mirror "
                                "copy or a download)")
            elif not entry.get("sha256"):
                raise BbmnError(f"{key}.sha256: a mirror or downloaded file needs its sha256 "
                                "(sha256sum FILE), or give a local path instead of file")


def _check_use_model(config: dict) -> None:
    """``pretrain.use_model``: a path or a URL, and a URL only with its sha256."""
    use = config["pretrain"]["use_model"]
    if use["path"] and use["url"]:
        raise BbmnError("config key pretrain.use_model: give a path or a url, not both")
    if use["url"] and not use["sha256"]:
        raise BbmnError("config key pretrain.use_model: a url needs the file's sha256")


def _check_variants(config: dict, schema_path: str | Path) -> None:
    """Variant names are unique, and each variant's pre-training section is valid as a whole."""
    names = [v["name"] for v in config["pretrain"]["variants"]]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise BbmnError(f"config key pretrain.variants: names used twice: {', '.join(duplicated)}")
    for name in names:
        if "variants" in next(v for v in config["pretrain"]["variants"] if v["name"] == name)["overrides"]:
            raise BbmnError(f"config key pretrain.variants.{name}.overrides: a variant cannot have variants")
        candidate = {**config, "pretrain": {**variant_pretrain(config, name), "variants": []}}
        try:
            validate(copy.deepcopy(candidate), schema_path)
        except BbmnError as exc:
            raise BbmnError(f"pre-training variant {name!r}: {exc} (from its overrides)") from None


def _check_references(config: dict) -> None:
    """Names used in ``run`` must be registered."""
    for name in config["run"]["datasets"]:
        if name not in config.get("datasets", {}):
            raise BbmnError(f"config key run.datasets: {name!r} is not in the datasets registry "
                            f"(registered: {', '.join(sorted(config.get('datasets', {})))})")
    corpus = config["run"]["corpus"]
    if corpus not in config.get("corpora", {}):
        raise BbmnError(f"config key run.corpus: {corpus!r} is not in the corpora registry "
                        f"(registered: {', '.join(sorted(config.get('corpora', {})))})")


def load(path: str | Path, schema_path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """Read a YAML config file, apply ``overrides`` (like ``--config k=v``), prepare it."""
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BbmnError(f"cannot read config {path}: {exc}") from None
    return prepare_config(config, schema_path, overrides)
