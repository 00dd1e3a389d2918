"""Fine-tuning controls and the switches that let the graph views count: descriptors only, graph
only, a frozen or slower encoder, view normalization, unscaled descriptors, positional code."""

import numpy as np
import pytest
import torch

from bbmn.data.labelled import load_labelled
from bbmn.errors import BbmnError
from bbmn.models.finetune import BatmanNetFinetune
from bbmn.train.checkpoint import load_checkpoint
from bbmn.train.finetune import finetune, make_optimizer, normalized_views, part_views
from bbmn.train.schedule import NoamSchedule
from tests.models.test_finetune import SMALL
from tests.train.test_finetune import bbbp, mlflow_uri, pretrained, small, tracking_store  # noqa: F401


def run(tmp_path, files, name, checkpoint=None, **cfg):
    return finetune(files["cache"], files["descriptors"], files["split1"], tmp_path / name,
                    small(epochs=2, **cfg), checkpoint=checkpoint)


def test_descriptors_only_is_the_same_heads_without_any_encoder(tmp_path, bbbp):
    metrics = run(tmp_path, bbbp, "desc", inputs="descriptors")
    assert metrics["row"] == "batmannet_descriptors_only" and metrics["init"] == "none"
    assert metrics["label"] == "Same heads, descriptors only" and metrics["health"] == {"start": {}, "best_epoch": {}}
    saved = load_checkpoint(tmp_path / "desc" / "model.pt")
    assert not any("encoder" in name for name in saved["model"])
    assert saved["model"]["atom_view_head.1.weight"].shape == (200, 200)  # descriptors in, nothing else


def test_descriptors_only_refuses_a_checkpoint(tmp_path, bbbp, pretrained):
    with pytest.raises(BbmnError, match="descriptors-only run has no encoder"):
        run(tmp_path, bbbp, "x", checkpoint=pretrained, inputs="descriptors")


def test_graph_only_heads_read_the_views_alone(tmp_path, bbbp, pretrained):
    metrics = run(tmp_path, bbbp, "graph", checkpoint=pretrained, inputs="graph", model={})
    assert metrics["row"] == "batmannet_graph_pretrained" and metrics["init"] == "pretrained"
    assert metrics["health"]["start"]["atom"]["input_share"] == pytest.approx(1.0)
    saved = load_checkpoint(tmp_path / "graph" / "model.pt")
    assert saved["model"]["atom_view_head.1.weight"].shape[1] == SMALL["hidden"]
    scratch = run(tmp_path, bbbp, "graph_scratch", inputs="graph")
    assert scratch["row"] == "batmannet_graph_scratch"


def test_a_frozen_encoder_keeps_its_pretrained_weights_and_runs_without_dropout(tmp_path, bbbp, pretrained):
    metrics = run(tmp_path, bbbp, "frozen", checkpoint=pretrained, encoder_lr=0.0, model={})
    assert metrics["row"] == "batmannet_pretrained"
    before = load_checkpoint(pretrained)["model"]
    after = load_checkpoint(tmp_path / "frozen" / "model.pt")["model"]
    encoder = [k for k in after if k.startswith(("node_encoder.blocks", "edge_encoder.embed"))]
    assert encoder and all(torch.equal(after[k], before[k]) for k in encoder)
    head = "atom_view_head.1.weight"
    assert not torch.equal(after[head], BatmanNetFinetune(1, "classification", **SMALL).state_dict()[head])
    model = BatmanNetFinetune(1, "classification", frozen_encoder=True, **SMALL).train()
    assert not model.node_encoder.blocks.training and not model.edge_encoder.embed.training
    assert model.atom_view_head.training and model.node_encoder.readout.training


def test_the_encoder_learning_rate_is_a_multiple_of_the_schedule():
    from bbmn.train.finetune import FinetuneConfig

    model = BatmanNetFinetune(1, "classification", **SMALL)
    optimizer = make_optimizer(model, FinetuneConfig(encoder_lr=0.1))
    schedule = NoamSchedule(optimizer, 10, 100, 1e-4, 1e-3, 1e-4)
    for _ in range(10):
        optimizer.step()
        schedule.step()
    heads, encoder = optimizer.param_groups
    assert heads["lr"] == pytest.approx(1e-3) and encoder["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in encoder["params"]} == {id(p) for p in model.encoder_parameters()}
    with pytest.raises(BbmnError, match="encoder_lr must be >= 0"):
        make_optimizer(model, FinetuneConfig(encoder_lr=-1))


def test_standardized_views_weigh_as_much_as_descriptors_in_the_heads(tmp_path, bbbp):
    plain = run(tmp_path, bbbp, "none")["health"]["start"]["atom"]
    scaled = run(tmp_path, bbbp, "std", view_norm="standardize")["health"]["start"]["atom"]
    assert scaled["spread"] == pytest.approx(plain["spread"])  # the encoder is the same
    # a standardized view has unit variance per dimension: h of them against the descriptors'
    data = load_labelled(bbbp["cache"], bbbp["descriptors"], bbbp["split1"])
    descriptor_variance = data.train.descriptors.astype("float64").var(0).sum()
    h = SMALL["hidden"]
    assert scaled["input_share"] == pytest.approx(h / (h + descriptor_variance), rel=1e-2)  # BN eps
    assert plain["input_share"] < 0.1 < scaled["input_share"]
    assert run(tmp_path, bbbp, "bn", view_norm="batchnorm")["row"] == "batmannet_scratch"


def test_unscaled_descriptors_are_stored_as_an_identity_scaler(tmp_path, bbbp):
    run(tmp_path, bbbp, "raw", descriptor_scaling="none")
    scaler = load_checkpoint(tmp_path / "raw" / "model.pt")["descriptor_scaler"]
    assert set(scaler["mean"]) == {0.0} and set(scaler["std"]) == {1.0}


@pytest.mark.parametrize("view_norm", ["batchnorm", "standardize", "none"])
def test_health_normalizes_the_raw_views_as_the_heads_read_them(bbbp, view_norm):
    """The health pass encodes a part once and applies the view normalization to the result."""
    data = load_labelled(bbbp["cache"], bbbp["descriptors"], bbbp["split1"])
    model = BatmanNetFinetune(1, "classification", view_norm=view_norm, **SMALL)
    raw = part_views(model, data.train, 16)
    if view_norm == "standardize":
        model.atom_view_norm.set_statistics(torch.from_numpy(raw[0]))
        model.bond_view_norm.set_statistics(torch.from_numpy(raw[1]))
    else:  # running statistics that are not the identity
        for norm in (model.atom_view_norm, model.bond_view_norm):
            if norm.norm is not None:
                norm.norm.running_mean.fill_(0.3)
                norm.norm.running_var.fill_(4.0)
    model.eval()
    with torch.no_grad():  # a second encoder pass, in the same batches of 16
        batches = [model.views(data.train.graphs.take(np.arange(start, min(start + 16, len(data.train)))).to_batch())
                   for start in range(0, len(data.train), 16)]
    model.train()
    second_pass = [torch.cat(views).numpy() for views in zip(*batches)]
    for ours, theirs in zip(normalized_views(model, raw), second_pass):
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)
    assert model.training
