"""SIGKILL the whole workflow (snakemake and its jobs) while pre-training is mid-run, then again
while fine-tuning is; each rerun resumes from the job's last checkpoint, and the finished run
equals an uninterrupted one (determinism on) to the bit."""

import json
import shutil
import time

import pytest

from tests.workflow.reliability import (FINETUNE, PRETRAIN, checkpoint_progress, new_workdir, outcome,
                                        reference_run, run, run_and_kill)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run killed twice, then finished. It starts from the reference run's data steps (copied
    with snakemake's metadata), so only the training and the tables are redone."""
    reference = reference_run(tmp_path_factory)
    workdir = new_workdir(tmp_path_factory.mktemp("interrupted"))
    shutil.copytree(reference / ".snakemake", workdir / ".snakemake", ignore=shutil.ignore_patterns("log"))
    shutil.copytree(reference / "results" / "data", workdir / "results" / "data")
    record = {}

    # 1. pre-training: kill once it has checkpointed its first epoch and gone on a little
    def pretrain_mid_run():
        progress = checkpoint_progress(workdir / PRETRAIN / "checkpoints" / "latest.pt")
        if progress and progress["step"] >= 12 and not record.get("pretrain_seen"):
            record["pretrain_seen"] = time.time()
        return bool(record.get("pretrain_seen")) and time.time() - record["pretrain_seen"] > 0.4

    record["first"] = run_and_kill(workdir, pretrain_mid_run)
    record["pretrain_killed_at"] = checkpoint_progress(workdir / PRETRAIN / "checkpoints" / "latest.pt")
    record["pretrain_model_after_kill"] = (workdir / PRETRAIN / "model.pt").exists()

    # 2. fine-tuning: kill once it has checkpointed an epoch
    def finetune_mid_run():
        progress = checkpoint_progress(workdir / FINETUNE / "checkpoints" / "latest.pt")
        return bool(progress) and progress["epoch"] >= 1

    record["second"] = run_and_kill(workdir, finetune_mid_run)
    record["finetune_killed_at"] = checkpoint_progress(workdir / FINETUNE / "checkpoints" / "latest.pt")
    record["metrics_after_kill"] = (workdir / FINETUNE / "metrics.json").exists()

    # 3. the plain rerun finishes
    done = run(workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    record["third"] = done.stdout + done.stderr
    return workdir, reference, record


@pytest.mark.slow
def test_pretraining_killed_mid_run_resumes_from_its_checkpoint(interrupted):
    workdir, _, record = interrupted
    killed_at = record["pretrain_killed_at"]
    assert killed_at is not None and 12 <= killed_at["step"] < 36 and not record["pretrain_model_after_kill"]
    log = (workdir / "results" / "logs" / "pretrain" / "zinc200.log").read_text()
    assert f"resuming from results/pretrain/zinc200/checkpoints/latest.pt: epoch {killed_at['epoch']}" in log


@pytest.mark.slow
def test_finetuning_killed_mid_run_resumes_from_its_checkpoint(interrupted):
    workdir, _, record = interrupted
    killed_at = record["finetune_killed_at"]
    assert killed_at is not None and 1 <= killed_at["epoch"] < 4 and not record["metrics_after_kill"]
    log = (workdir / "results" / "logs" / "finetune" / "bbbp" / "pretrained" / "seed0.log").read_text()
    assert f"checkpoints/latest.pt: {killed_at['epoch']} epochs done" in log
    assert not (workdir / FINETUNE / "checkpoints").exists()  # removed once the outputs were written
    history = [json.loads(line) for line in (workdir / FINETUNE / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]  # no epoch twice, none missing


@pytest.mark.slow
def test_the_interrupted_run_ends_where_an_uninterrupted_one_does(interrupted):
    workdir, reference, _ = interrupted
    got, want = outcome(workdir), outcome(reference)
    for key in want:
        assert got[key] == want[key], key
