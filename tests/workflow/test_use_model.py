"""pretrain.use_model: the workflow fine-tunes an existing model.pt instead of pre-training one."""

import json
import shutil

import pytest
import torch

from tests.conftest import REPO
from tests.workflow.test_workflow import snakemake


@pytest.fixture(scope="module")
def existing_model(tmp_path_factory):
    """A model.pt made elsewhere: the tiny preset's pre-training, copied out of its run."""
    workdir = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    done = snakemake(workdir, "results/pretrain/zinc200/model.pt", "--config", "preset=tiny", check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    model = tmp_path_factory.mktemp("shared") / "model.pt"
    shutil.copy(workdir / "results" / "pretrain" / "zinc200" / "model.pt", model)
    return model


def use(model, *more):
    return ["--config", "preset=tiny", f"pretrain={{use_model: {{path: {model}}}}}", *more]


@pytest.mark.slow
def test_an_existing_model_replaces_pretraining(existing_model, tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    plan = snakemake(tmp_path, "-n", *use(existing_model))
    assert plan.returncode == 0, plan.stderr[-2000:]
    stats = plan.stdout.split("Job stats:")[1].split("total")[0]
    assert "pretrain" not in stats and "finetune" in stats and "probe" in stats
    assert f"--checkpoint {existing_model}" in plan.stdout

    # fine-tuning with frozen encoders keeps exactly the given model's encoder weights
    run = "results/finetune/bbbp/pretrained/seed0"
    done = snakemake(tmp_path, f"{run}/metrics.json", *use(existing_model, "finetune={encoder_lr: 0, epochs: 1}"),
                     check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / run / "metrics.json").read_text())
    assert metrics["checkpoint"]["path"] == str(existing_model)
    given = torch.load(existing_model, weights_only=True)["model"]
    tuned = torch.load(tmp_path / run / "model.pt", weights_only=True)["model"]
    encoder = [n for n in tuned if n.startswith(("node_encoder.blocks.", "edge_encoder.blocks.",
                                                 "node_encoder.embed.", "edge_encoder.embed."))]
    assert encoder and all(torch.equal(tuned[n], given[n]) for n in encoder)
    assert not (tmp_path / "results" / "pretrain" / "zinc200").exists()


@pytest.mark.slow
def test_a_model_that_does_not_fit_is_one_line_before_any_job(existing_model, tmp_path):
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    wrong = snakemake(tmp_path, "-n", *use(existing_model)[:-1],
                      f"pretrain={{use_model: {{path: {existing_model}}}, model: {{hidden: 64}}}}", check=False)
    assert wrong.returncode != 0
    assert "the model's sizes differ from pretrain.model: hidden 100 (pretrain.model: 64)" in wrong.stdout + wrong.stderr
    missing = snakemake(tmp_path, "-n", *use(tmp_path / "nope.pt"), check=False)
    assert missing.returncode != 0 and "pretrain.use_model.path:" in missing.stdout + missing.stderr
