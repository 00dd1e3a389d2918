"""An unreachable MLflow store: pre-training and fine-tuning keep every result (tracking skipped),
or, with tracking required, stop before training starts. Both ways no result is lost."""

import json

import pytest

from bbmn.errors import BbmnError
from bbmn.train.finetune import FinetuneConfig, finetune
from bbmn.train.pretrain import PretrainConfig, pretrain
from bbmn.train.tracking import init_store
from tests.data.test_labelled import labelled_files
from tests.models.test_finetune import SMALL

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


@pytest.fixture(scope="module")
def zinc_cache(tmp_path_factory):
    from bbmn.chem.standardize import profile
    from bbmn.data.cache import featurize
    from bbmn.data.clean import CleanConfig, clean
    from tests.conftest import TEST_DATA

    d = tmp_path_factory.mktemp("zinc")
    clean(TEST_DATA / "zinc_200.smi", d / "c.parquet", d / "r.csv", None,
          CleanConfig(standardize=profile("standard"), dedupe=True))
    featurize(d / "c.parquet", d / "cache.parquet")
    return d / "cache.parquet"


@pytest.fixture(scope="module")
def bbbp(tmp_path_factory):
    return labelled_files(tmp_path_factory, "bbbp")


@pytest.fixture(autouse=True)
def unreachable_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", UNREACHABLE)


def pretrain_cfg() -> PretrainConfig:
    return PretrainConfig(batch_size=16, epochs=1, max_steps=3, val_batches=1, threads=1,
                          model={**SMALL, "decoder_blocks": 1})


def finetune_cfg() -> FinetuneConfig:
    return FinetuneConfig(dataset="bbbp", metric="roc_auc", epochs=2, threads=1, model=dict(SMALL))


def run_pretrain(out, cache, **kw):
    return pretrain(cache, out, pretrain_cfg(), **kw)


def run_finetune(out, files, **kw):
    return finetune(files["cache"], files["descriptors"], files["split0"], out, finetune_cfg(), **kw)


RUNS = {"pretrain": (run_pretrain, "zinc_cache", ("model.pt", "summary.json", "history.jsonl")),
        "finetune": (run_finetune, "bbbp", ("model.pt", "metrics.json", "predictions.csv", "history.jsonl"))}


@pytest.mark.parametrize("stage", sorted(RUNS))
@pytest.mark.parametrize("via_parent", [False, True], ids=["direct", "workflow-record"])
def test_unreachable_store_is_skipped_and_every_result_is_written(stage, via_parent, tmp_path, caplog,
                                                                  request):
    run, data, outputs = RUNS[stage]
    kw = {}
    if via_parent:  # the workflow's path: `bbmn track init` found the store unusable
        record = init_store(tmp_path / "parent.json", uri=UNREACHABLE)
        assert record["parent_run_id"] is None
        kw["tracking_parent"] = tmp_path / "parent.json"
    result = run(tmp_path / "run", request.getfixturevalue(data), **kw)
    for name in outputs:
        assert (tmp_path / "run" / name).is_file(), name
    if stage == "pretrain":
        assert result["ended"] == "done" and result["steps"] == 3
    else:
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        assert metrics["epochs_run"] == 2 and metrics["best_epoch"] == result["best_epoch"]
    assert "tracking skipped" in caplog.text and "results are still written" in caplog.text


@pytest.mark.parametrize("stage", sorted(RUNS))
@pytest.mark.parametrize("via_parent", [False, True], ids=["direct", "workflow-record"])
def test_required_tracking_fails_before_training(stage, via_parent, tmp_path, request):
    run, data, outputs = RUNS[stage]
    kw = {"tracking_required": True}
    if via_parent:
        init_store(tmp_path / "parent.json", uri=UNREACHABLE)
        kw["tracking_parent"] = tmp_path / "parent.json"
    with pytest.raises(BbmnError, match="MLflow") as failure:
        run(tmp_path / "run", request.getfixturevalue(data), **kw)
    assert "\n" not in str(failure.value)  # the CLI prints it as one line
    assert not (tmp_path / "run" / "checkpoints").exists()  # no step was trained
    assert not any((tmp_path / "run" / name).exists() for name in outputs if name != "history.jsonl")
