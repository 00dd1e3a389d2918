"""The config `bbmn train` writes: valid for the workflow, one dataset by its local path, and
nothing the user did not ask for (no pre-training without a checkpoint, no baselines or probes)."""

import pytest

from bbmn.config import prepare_config, reads_corpus, uses_pretrained_model
from bbmn.data.sources import needed_sources
from bbmn.errors import BbmnError
from bbmn.workflow_config import OneDataset, TrainChoices, dataset_name, one_dataset_config, schema
from tests.conftest import TEST_DATA

ESOL = OneDataset(TEST_DATA / "esol_100.csv", ("logSolubility",), "regression")


def prepared(data=ESOL, **choices) -> dict:
    return prepare_config(one_dataset_config(data, TrainChoices(**choices)), schema())


def test_without_a_checkpoint_it_trains_from_scratch_and_reads_only_the_file():
    config = prepared(seeds=(0,), epochs=1)
    assert config["datasets"] == {"esol_100": {
        "path": str(TEST_DATA / "esol_100.csv"), "smiles_column": "smiles", "labels": ["logSolubility"],
        "task": "regression", "metric": "rmse", "standardize": "standard", "encoding": "utf-8-sig"}}
    assert config["run"]["datasets"] == ["esol_100"] and config["run"]["prepare"] == "run"
    assert config["split"]["seeds"] == [0] and config["finetune"]["epochs"] == 1
    assert config["finetune"]["kinds"] == ["scratch"]
    assert config["probe"]["encoders"] == [] and config["baselines"]["models"] == []
    assert not config["leakage"]["check"] and not config["pretrain"]["variants"]
    assert not uses_pretrained_model(config) and not reads_corpus(config)
    assert [name for _, name, _ in needed_sources(config)] == ["esol_100"]


def test_a_checkpoint_is_fine_tuned_with_its_sizes_and_nothing_is_pre_trained(tmp_path):
    config = prepared(checkpoint=tmp_path / "model.pt", model_sizes={"hidden": 32, "encoder_blocks": 2},
                      probes=True, baselines=True)
    assert config["pretrain"]["use_model"]["path"] == str(tmp_path / "model.pt")
    assert config["pretrain"]["model"]["hidden"] == 32 and config["pretrain"]["model"]["encoder_blocks"] == 2
    assert config["finetune"]["kinds"] == ["pretrained"]
    assert config["probe"]["encoders"] == ["pretrained", "random"] and config["baselines"]["models"] == ["ecfp_rf"]
    assert uses_pretrained_model(config) and not reads_corpus(config)
    # the workflow's own values for what was not asked: seeds and epochs of config.yaml
    assert config["split"]["seeds"] == [0, 1, 2] and config["finetune"]["epochs"] == 5


def test_kinds_that_need_a_pre_trained_model_need_a_checkpoint():
    with pytest.raises(BbmnError, match="^kind graph_pretrained fine-tunes a pre-trained model: give --checkpoint"):
        prepared(kinds=("scratch", "graph_pretrained"))
    assert prepared(kinds=("scratch", "descriptors_only"))["finetune"]["kinds"] == ["scratch", "descriptors_only"]


def test_the_registry_entry_follows_the_options():
    data = OneDataset(TEST_DATA / "bbbp_150.csv", ("*",), "classification", smiles_column="smiles",
                      name="my-set", standardize="as_given")
    config = prepared(data)
    entry = config["datasets"]["my-set"]
    assert entry["labels"] == "*" and entry["metric"] == "roc_auc" and entry["standardize"] == "as_given"


@pytest.mark.parametrize("file,name", [("my assay.csv.gz", "my_assay"), ("x.smi", "x"), ("2024.v1.csv", "2024_v1"),
                                       ("_.csv", "dataset")])
def test_dataset_names_come_from_the_file_name(file, name):
    assert dataset_name(file) == name
