"""Pre-training: the loss falls, a killed run resumes to the same weights, 2-process gloo DDP."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bbmn.chem.standardize import profile
from bbmn.data.cache import featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.train.checkpoint import load_checkpoint
from bbmn.train.pretrain import PretrainConfig, pretrain
from tests.conftest import TEST_DATA

BBMN = str(Path(sys.executable).with_name("bbmn"))
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


@pytest.fixture(scope="module")
def zinc_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("zinc")
    clean(TEST_DATA / "zinc_200.smi", d / "c.parquet", d / "r.csv", None,
          CleanConfig(standardize=profile("standard"), dedupe=True))
    featurize(d / "c.parquet", d / "cache.parquet", chunk_rows=64)
    return d / "cache.parquet"


def small(**overrides) -> PretrainConfig:
    base = dict(batch_size=16, epochs=4, threads=1, log_every=5, checkpoint_every=4,
                init_lr=5e-4, max_lr=1e-3, final_lr=5e-4, warmup_epochs=0.3)
    return PretrainConfig(**{**base, **overrides})


def test_loss_falls_and_outputs_are_written(tmp_path, zinc_cache):
    summary = pretrain(zinc_cache, tmp_path / "run", small())
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 4 and summary["ended"] == "done"
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert summary["steps"] == summary["total_steps"] == 4 * 12  # 180-ish training molecules / 16
    assert summary["molecules_per_s"] > 0 and summary["peak_rss_mb"] > 0
    final = history[-1]
    # the validation report names every masked field with its majority-class baseline
    for field in ("atom.element", "atom.degree", "edge.bond_type", "edge.stereo"):
        assert 0 <= final[f"val_acc.{field}"] <= 1 and 0 < final[f"val_majority.{field}"] <= 1
    model = load_checkpoint(tmp_path / "run" / "model.pt")
    assert model["kind"] == "batmannet-pretrained" and model["model_config"]["hidden"] == 100


def test_step_validation_and_snapshots(tmp_path, zinc_cache, caplog):
    """Learning curves at equal steps, and the model kept at chosen steps (0 = initialization)."""
    with caplog.at_level(logging.WARNING, logger="bbmn.train.pretrain"):
        summary = pretrain(zinc_cache, tmp_path / "run", small(epochs=2, validate_every=5,
                                                                  snapshot_steps=[0, 5, 24]))
    assert not caplog.records, "a fresh run has no snapshot to restore"
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    # steps 0, 5, 10 (epoch 1 ends at 12 and is validated there), 15, 20, 24 (the end)
    assert [r["step"] for r in history] == [0, 5, 10, 12, 15, 20, 24] and summary["steps"] == 24
    snapshots = sorted(p.name for p in (tmp_path / "run" / "snapshots").iterdir())
    assert snapshots == ["step-0.pt", "step-24.pt", "step-5.pt"]
    final = load_checkpoint(tmp_path / "run" / "model.pt")["model"]
    last = load_checkpoint(tmp_path / "run" / "snapshots" / "step-24.pt")
    first = load_checkpoint(tmp_path / "run" / "snapshots" / "step-0.pt")
    assert last["kind"] == "batmannet-pretrained" and last["summary"]["steps"] == 24
    assert all(torch.equal(final[k], last["model"][k]) for k in final)
    assert not all(torch.equal(final[k], first["model"][k]) for k in final)
    # validating between steps does not change the trained weights
    plain = pretrain(zinc_cache, tmp_path / "plain", small(epochs=2))
    assert plain["weights_digests"] == summary["weights_digests"]


def test_snapshots_removed_by_a_restart_come_back(tmp_path, zinc_cache):
    """Snakemake deletes a restarted job's outputs: a rerun puts back the snapshots of the steps
    already done (hard links under checkpoints/), and rebuilds the initialization from the seed."""
    cfg = small(epochs=1, snapshot_steps=[0, 5])
    pretrain(zinc_cache, tmp_path / "run", cfg)
    snapshots = tmp_path / "run" / "snapshots"
    before = {p.name: load_checkpoint(p)["model"] for p in snapshots.iterdir()}
    for path in snapshots.iterdir():  # what snakemake does when it restarts the job
        path.unlink()
    pretrain(zinc_cache, tmp_path / "run", cfg)  # resumes at the end: nothing left to train
    assert sorted(p.name for p in snapshots.iterdir()) == ["step-0.pt", "step-5.pt"]
    for name, weights in before.items():
        assert all(torch.equal(weights[k], v) for k, v in load_checkpoint(snapshots / name)["model"].items())
    # a run checkpointed by an older bbmn has no links: the initialization is rebuilt all the same
    for path in [*snapshots.iterdir(), *(tmp_path / "run" / "checkpoints" / "snapshots").iterdir()]:
        path.unlink()
    pretrain(zinc_cache, tmp_path / "run", cfg)
    assert sorted(p.name for p in snapshots.iterdir()) == ["step-0.pt"]
    assert all(torch.equal(before["step-0.pt"][k], v)
               for k, v in load_checkpoint(snapshots / "step-0.pt")["model"].items())


def run_cli(out, cache, *extra, env=None):
    cmd = [BBMN, "pretrain", str(cache), "--out", str(out), "--batch-size", "8", "--epochs", "2",
           "--threads", "1", "--checkpoint-every", "3", "--log-every", "1", "--val-batches", "2", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path, zinc_cache):
    reference = run_cli(tmp_path / "ref", zinc_cache)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-2000:]
    interrupted = run_cli(tmp_path / "run", zinc_cache)
    checkpoint = tmp_path / "run" / "checkpoints" / "latest.pt"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it mid-epoch, once a checkpoint (step 3 or later) exists
        if checkpoint.is_file() and load_checkpoint(checkpoint)["step"] >= 6:
            break
        time.sleep(0.2)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait()
    saved = load_checkpoint(checkpoint)
    assert 0 < saved["step"] < 2 * 23 and not (tmp_path / "run" / "model.pt").exists()
    resumed = run_cli(tmp_path / "run", zinc_cache)
    assert resumed.wait(timeout=600) == 0
    assert f"resuming from {checkpoint}" in resumed.stderr.read()
    ref = json.loads((tmp_path / "ref" / "summary.json").read_text())
    got = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert got["steps"] == ref["steps"]
    assert got["weights_digests"] == ref["weights_digests"]  # bit-identical on CPU


@pytest.mark.slow
def test_two_process_gloo_matches_one_process(tmp_path, zinc_cache):
    """2 ranks x batch 8 see the molecules of 1 process x batch 16, step for step."""
    common = ["--epochs", "1", "--max-steps", "10", "--warmup-epochs", "0", "--threads", "1",
              "--no-dynamic-mask", "--dropout", "0",
              "--val-batches", "1", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([BBMN, "pretrain", str(zinc_cache), "--out", str(tmp_path / "one"),
                             "--batch-size", "16", *common], capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([TORCHRUN, "--nproc_per_node", "2", "--master_port", "29517", BBMN,
                          "pretrain", str(zinc_cache), "--out", str(tmp_path / "two"),
                          "--batch-size", "8", *common], capture_output=True, text=True, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "gradients averaged through shared memory" in ddp.stderr  # CPU ranks of one machine
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["world_size"] == 2 and len(set(two["weights_digests"])) == 1  # ranks agree
    assert two["steps"] == one["steps"]
    assert two["final"]["train_loss"] == pytest.approx(one["final"]["train_loss"], rel=0.05)
    a = load_checkpoint(tmp_path / "one" / "model.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "model.pt")["model"]
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff < 0.05
