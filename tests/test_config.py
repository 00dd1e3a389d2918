"""The workflow config: presets, defaults, and one-line errors that name the key."""

import copy

import pytest
import yaml

from bbmn.config import deep_merge, prepare_config
from bbmn.errors import BbmnError
from tests.conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_default_config_is_valid_and_gets_defaults(config):
    prepared = prepare_config(copy.deepcopy(config), SCHEMA)
    assert prepared["datasets"]["bbbp"]["encoding"] == "utf-8-sig"
    assert prepared["split"]["method"] == "balanced_scaffold"
    assert len(prepared["datasets"]) == 11 and {"zinc250k", "moses"} <= set(prepared["corpora"])


def test_paper_preset_merges_over_the_top_level(config):
    config["preset"] = "paper"
    prepared = prepare_config(config, SCHEMA)
    assert len(prepared["run"]["datasets"]) == 11 and prepared["run"]["corpus"] == "zinc250k"


def test_deep_merge():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": 3}, "d": [2]}) == {"a": {"b": 3, "c": 2}, "d": [2]}


@pytest.mark.parametrize("change,message", [
    (lambda c: c["datasets"]["bbbp"].__setitem__("lables", ["x"]), "config key datasets.bbbp: 'lables' was unexpected"),
    (lambda c: c.__setitem__("workers", "two"), "config key workers: 'two' is not of type 'integer'"),
    (lambda c: c.__setitem__("splt", {}), "config key (top level): 'splt' was unexpected"),
    (lambda c: c["datasets"]["bbbp"].pop("task"), "config key datasets.bbbp: 'task' is a required property"),
    (lambda c: c["datasets"]["bbbp"].__setitem__("sha256", "abc"), "config key datasets.bbbp.sha256: 'abc' does not match"),
    (lambda c: c.__setitem__("preset", "papr"), "config key preset: unknown preset 'papr'"),
    (lambda c: c["run"].__setitem__("datasets", ["bbbpp"]), "config key run.datasets: 'bbbpp' is not in the datasets registry"),
    (lambda c: c["split"].__setitem__("method", "scafold"), "config key split.method: 'scafold' is not one of"),
])
def test_errors_are_one_line_and_name_the_key(config, change, message):
    change(config)
    with pytest.raises(BbmnError) as info:
        prepare_config(config, SCHEMA)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_new_dataset_through_config_alone(config):
    config["datasets"]["mine"] = {"file": "mine.csv", "sha256": "a" * 64, "smiles_column": "SMILES",
                                  "labels": ["pIC50"], "task": "regression", "metric": "rmse"}
    config["run"]["datasets"] = ["mine"]
    prepared = prepare_config(config, SCHEMA)
    assert prepared["datasets"]["mine"]["standardize"] == "as_given"


def test_command_line_wins_over_the_preset_and_gets_types(config):
    # snakemake --config parses nested values as strings: "false", "0"
    overrides = {"preset": "tiny", "split": {"seeds": ["0"]}, "data": {"download": "false"}}
    prepared = prepare_config(config, SCHEMA, overrides)
    assert prepared["split"]["seeds"] == [0]  # the tiny preset says [0, 1]
    assert prepared["data"]["download"] is False
    assert prepared["run"]["corpus"] == "zinc200"  # the rest of the preset applies


def test_paper_preset_sweeps_the_mask_ratio_on_both_sides_of_the_default(config):
    from bbmn.config import variant_pretrain

    config["preset"] = "paper"
    prepared = prepare_config(config, SCHEMA)
    ratios = sorted(variant_pretrain(prepared, v["name"])["mask_ratio"]
                    for v in prepared["pretrain"]["variants"])
    assert min(ratios) < prepared["pretrain"]["mask_ratio"] < max(ratios)
    branches = {variant_pretrain(prepared, v["name"])["model"]["branches"] for v in prepared["pretrain"]["variants"]}
    assert branches == {"both", "atoms", "bonds"}


def test_a_variant_overrides_its_keys_and_keeps_the_others(config):
    from bbmn.config import variant_pretrain

    config["pretrain"]["variants"] = [{"name": "dec1", "overrides": {"model": {"decoder_blocks": 1},
                                                                      "mask_ratio": 0.3}}]
    config["pretrain"]["snapshot_steps"] = [0]
    prepared = prepare_config(config, SCHEMA)
    variant = variant_pretrain(prepared, "dec1")
    assert variant["model"]["decoder_blocks"] == 1 and variant["mask_ratio"] == 0.3
    assert variant["model"]["hidden"] == prepared["pretrain"]["model"]["hidden"]
    assert variant["snapshot_steps"] == [] and "variants" not in variant
    with pytest.raises(BbmnError, match="no pre-training variant named 'nope'"):
        variant_pretrain(prepared, "nope")


@pytest.mark.parametrize("variants,message", [
    ([{"name": "a", "overrides": {"mask_ratio": 1.5}}], "pre-training variant 'a': config key pretrain.mask_ratio"),
    ([{"name": "a", "overrides": {"model": {"decoder_blok": 1}}}], "'decoder_blok' was unexpected"),
    ([{"name": "a", "overrides": {}}, {"name": "a", "overrides": {}}], "names used twice: a"),
    ([{"name": "a b", "overrides": {}}], "config key pretrain.variants.0.name"),
])
def test_a_bad_variant_is_one_line_naming_it(config, variants, message):
    config["pretrain"]["variants"] = variants
    with pytest.raises(BbmnError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        prepare_config(config, SCHEMA)
    assert "\n" not in str(info.value)
