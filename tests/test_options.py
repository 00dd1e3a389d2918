"""One source for each option: the config dataclasses give the commands' flags and defaults, and
the workflow's schema and config.yaml agree with them."""

import argparse
import typing
from dataclasses import asdict, fields

import pytest
import yaml

from bbmn.config import WORKFLOW_KEYS
from bbmn.data.clean import CleanConfig
from bbmn.eval.probe import ProbeConfig
from bbmn.models.options import HeadOptions, ModelOptions
from bbmn.options import add_options, as_flags, cli_fields, default_of, from_args, option
from bbmn.train.config import FinetuneConfig, PretrainConfig
from tests.conftest import REPO

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
FULL_SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
SCHEMA = FULL_SCHEMA["properties"]

#: (config section, its schema, the option classes whose fields it sets, the workflow's own keys)
SECTIONS = [
    ("pretrain", CONFIG["pretrain"], SCHEMA["pretrain"], (PretrainConfig,), WORKFLOW_KEYS["pretrain"]),
    ("pretrain.model", CONFIG["pretrain"]["model"], SCHEMA["pretrain"]["properties"]["model"],
     (ModelOptions,), ()),
    ("finetune", CONFIG["finetune"], SCHEMA["finetune"], (FinetuneConfig, HeadOptions), WORKFLOW_KEYS["finetune"]),
    ("probe", CONFIG["probe"], SCHEMA["probe"], (ProbeConfig,), WORKFLOW_KEYS["probe"]),
]

#: options the workflow does not set from its config, and why
NOT_IN_WORKFLOW = {
    ("pretrain", "val_fraction"): "the spec's 10% held out",
    ("pretrain", "log_every"): "progress lines only",
    ("pretrain", "checkpoint_every"): "how much a resumed run repeats, not what it gives",
    ("pretrain", "variant"): "set per variant job from pretrain.variants",
    ("pretrain", "deterministic"): "run.deterministic, one switch for every step",
    ("pretrain", "shared_memory_average"): "how CPU ranks average, not what: on wherever it applies",
    ("finetune", "deterministic"): "run.deterministic, one switch for every step",
    ("finetune", "seed"): "each job takes its split's seed",
    ("finetune", "eval_batch_size"): "scoring batch size does not change results",
    ("finetune", "inputs"): "set per job by its fine-tuning kind (finetune.kinds)",
    ("finetune", "variant"): "set per variant job from pretrain.variants",
    ("finetune", "register"): "one name for every dataset x kind x seed job would mix unrelated models; "
                              "register a chosen run's logged model afterwards (docs/tracking.md)",
    ("probe", "c_grid"): "the spec's grid", ("probe", "alpha_grid"): "the spec's grid",
    ("probe", "solver"): "chosen per width (auto)", ("probe", "max_iter"): "a safety bound",
    ("probe", "batch_size"): "memory only", ("probe", "drop_missing"): "external embeddings only",
    ("probe", "device"): "the cheap probes run on the job's CPU",
}

#: the workflow's values that differ from the commands' (the spec's) defaults, and why
WORKFLOW_CHOICES = {
    ("pretrain", "max_steps"): "the default run pre-trains for a CPU budget (docs/workflow.md)",
    ("pretrain", "val_batches"): "validation on 100 batches keeps the budgeted run short",
    ("pretrain", "threads"): "a job's threads (the CLI: 0 = torch's default)",
    ("pretrain.model", "residual"): "the reference's blocks collapse in pre-training (docs/evidence.md)",
    ("finetune", "epochs"): "the default run fine-tunes 5 epochs to finish in about an hour on 2 cores",
    ("finetune", "view_norm"): "batchnorm won on validation (docs/evidence.md, section 5)",
    ("finetune", "threads"): "a job's threads: two 1-thread jobs beat one 2-thread job on 2 cores",
    ("probe", "threads"): "a job's threads",
}

JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def option_fields(classes):
    return {f.name: (cls, f) for cls in classes for f in cli_fields(cls)}


@pytest.mark.parametrize("name, values, schema, classes, workflow_keys", SECTIONS, ids=[s[0] for s in SECTIONS])
def test_schema_and_config_yaml_agree_with_the_dataclasses(name, values, schema, classes, workflow_keys):
    options = option_fields(classes)
    properties = schema["properties"]
    assert set(values) == set(properties), f"{name}: config.yaml and the schema list other keys"
    assert set(properties) <= set(options) | set(workflow_keys), f"{name}: keys that are no option"
    for key in set(options) - set(properties):
        assert (name, key) in NOT_IN_WORKFLOW, f"{name}.{key}: an option the workflow cannot set; add it or say why"
    for key in set(properties) & set(options):
        cls, f = options[key]
        spec = properties[key]
        assert "default" not in spec, f"{name}.{key}: the default lives in config.yaml, not in the schema"
        hint = typing.get_type_hints(cls)[key]
        many = typing.get_origin(hint) in (list, tuple)
        scalar = typing.get_args(hint)[0] if many else hint
        assert spec["type"] == ("array" if many else JSON_TYPES[scalar]), f"{name}.{key}: type"
        if f.metadata["choices"]:
            assert tuple(spec["enum"]) == f.metadata["choices"], f"{name}.{key}: choices"
        if key not in workflow_keys and (name, key) not in WORKFLOW_CHOICES:
            default = default_of(f)
            assert values[key] == (list(default) if many else default), \
                f"{name}.{key}: config.yaml {values[key]!r}, the command's default {default!r}"
    for (section, key) in WORKFLOW_CHOICES:
        if section == name:
            assert values[key] != default_of(options[key][1]), f"{name}.{key} is no longer a workflow choice"


def parser_of(*classes, **kwargs):
    parser = argparse.ArgumentParser()
    for cls in classes:
        add_options(parser, cls, **kwargs)
    return parser


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig, ProbeConfig, ModelOptions, HeadOptions,
                                 CleanConfig])
def test_the_commands_defaults_are_the_dataclasses(cls):
    assert from_args(cls, parser_of(cls).parse_args([])) == cls()


@pytest.mark.parametrize("name, values, schema, classes, workflow_keys", SECTIONS, ids=[s[0] for s in SECTIONS])
def test_the_workflows_flags_give_the_config_values(name, values, schema, classes, workflow_keys):
    parsed = parser_of(*classes).parse_args(as_flags(values, *classes, workflow_keys=workflow_keys))
    for key, (cls, f) in option_fields(classes).items():
        if key in values and key not in workflow_keys:
            expected = values[key]
            assert getattr(parsed, key) == (list(expected) if isinstance(expected, tuple) else expected), key


def test_every_preset_sets_only_known_options():
    for preset, body in CONFIG["presets"].items():
        for section in ("pretrain", "finetune", "probe"):
            classes = {"pretrain": (PretrainConfig,), "finetune": (FinetuneConfig, HeadOptions),
                       "probe": (ProbeConfig,)}[section]
            as_flags(body.get(section, {}), *classes, workflow_keys=WORKFLOW_KEYS[section])


def test_as_flags_spells_booleans_lists_and_refuses_unknown_keys():
    flags = as_flags({"dynamic_mask": False, "snapshot_steps": [0, 500], "deterministic": True, "epochs": 3},
                     PretrainConfig)
    assert flags == ["--epochs", "3", "--no-dynamic-mask", "--deterministic", "--snapshot-steps", "0", "500"]
    with pytest.raises(ValueError, match="epoch: not options of PretrainConfig"):
        as_flags({"epoch": 3}, PretrainConfig)


def test_model_options_are_batmannets_keyword_defaults():
    import inspect

    from bbmn.models.batmannet import BatmanNet

    signature = inspect.signature(BatmanNet.__init__).parameters
    for key, value in asdict(ModelOptions()).items():
        assert signature[key].default == value, key


def test_a_mutable_default_is_copied_per_instance():
    from dataclasses import dataclass

    @dataclass
    class Options:
        steps: list[int] = option([], "steps")

    first = Options()
    first.steps.append(1)
    assert Options().steps == [] and [f.name for f in fields(Options)] == ["steps"]


def test_the_registrys_molecule_filters_are_clean_options():
    """The registry's filter keys are CleanConfig's options: same types and choices; on by default
    for corpora (the schema's default, which config.yaml's corpora repeat), off for labelled sets
    unless set; a corpus's flags (rules/common.smk, clean_args) parse back to its values."""
    corpus_keys = SCHEMA["corpora"]["additionalProperties"]["properties"]
    dataset_keys = SCHEMA["datasets"]["additionalProperties"]["properties"]
    options = option_fields([CleanConfig])
    assert set(options) == {"min_heavy_atoms", "elements"}
    corpus_defaults = {}
    for key, (cls, f) in options.items():
        spec = FULL_SCHEMA["definitions"][key]
        assert spec["type"] == JSON_TYPES[typing.get_type_hints(cls)[key]], key
        assert tuple(spec.get("enum", ())) == (f.metadata["choices"] or ()), key
        assert "default" not in dataset_keys[key], f"datasets.{key}: labelled sets are filtered only when asked"
        corpus_defaults[key] = corpus_keys[key]["default"]
        assert corpus_defaults[key] != default_of(f), f"corpora.{key}: the filter is on for corpora"
        for name, entry in CONFIG["corpora"].items():
            assert entry.get(key, corpus_defaults[key]) == corpus_defaults[key], f"corpora.{name}.{key}"
    parsed = parser_of(CleanConfig).parse_args(as_flags(corpus_defaults, CleanConfig))
    assert from_args(CleanConfig, parsed) == CleanConfig(**corpus_defaults)
