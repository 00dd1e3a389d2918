"""The smallest workflow that still trains everything, for the interruption and determinism tests.

The tiny preset restricted to BBBP, seed 0 and the pre-trained init, with the determinism switch
on, pre-training long enough (3 epochs of the ZINC slice) and fine-tuning for 4 epochs so that a
kill can land mid-run. The uninterrupted reference run is made once per test session and shared.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from bbmn.errors import BbmnError
from bbmn.train.checkpoint import load_checkpoint
from tests.conftest import REPO, TEST_DATA
from tests.workflow.test_workflow import SNAKEMAKE

CONFIG = ["preset=tiny", "run={datasets: [bbbp], deterministic: true}", "split={seeds: [0]}",
          "finetune={kinds: [pretrained], epochs: 4}", "pretrain={max_steps: 36}"]
TARGET = "results/tables/classification.md"  # the tables (not the figures): everything that trains
PRETRAIN = Path("results/pretrain/zinc200")
FINETUNE = Path("results/finetune/bbbp/pretrained/seed0")
BASELINE = Path("results/baselines/bbbp/ecfp_rf/seed0")
TABLES = ("classification.csv", "classification.md", "classification.tex", "per_task.csv")

_REFERENCE: dict[str, Path] = {}


def command(workdir: Path, *extra: str) -> tuple[list[str], dict]:
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--rerun-incomplete", *extra, "--config", *CONFIG, "--", TARGET]
    env = {**os.environ, "PATH": os.pathsep.join([str(SNAKEMAKE.parent), os.environ.get("PATH", "")]),
           "BBMN_DATA_MIRROR": str(TEST_DATA), "OMP_NUM_THREADS": "1"}
    return cmd, env


def new_workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "config.yaml", path / "config.yaml")
    return path


def run(workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd, env = command(workdir, *extra)
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def run_and_kill(workdir: Path, ready: Callable[[], bool], timeout: float = 600) -> str:
    """Start the workflow in its own process group; SIGKILL the whole group (snakemake and its
    jobs, as a crashed node or an OOM kill would) as soon as ``ready()``, unlock the directory;
    return the killed run's output."""
    cmd, env = command(workdir)
    log = workdir / f"killed-{time.time_ns()}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + timeout
        try:
            while time.time() < deadline and proc.poll() is None and not ready():
                time.sleep(0.05)
            assert proc.poll() is None, f"the workflow ended before the kill: {log.read_text()[-3000:]}"
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    _wait_for_group_exit(proc.pid)
    # a killed snakemake leaves its lock behind: `snakemake --unlock` once, as after a crash
    unlocked = run(workdir, "--unlock")
    assert unlocked.returncode == 0, unlocked.stderr[-2000:]
    return log.read_text()


def _wait_for_group_exit(pgid: int, timeout: float = 30) -> None:
    """Until no live (non-zombie) process of the group is left: nothing of the killed run may
    still write while the rerun starts."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
        if not alive:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes {alive} of group {pgid} survived SIGKILL")


_SEEN: dict[Path, tuple[int, dict | None]] = {}


def checkpoint_progress(path: Path) -> dict | None:
    """The progress a training checkpoint records, or None while there is none. Polled often:
    the file is read again only when it was replaced."""
    try:
        stamp = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    if path in _SEEN and _SEEN[path][0] == stamp:
        return _SEEN[path][1]
    try:
        state = load_checkpoint(path)
    except BbmnError:  # replaced while being read
        return None
    progress = state.get("progress") or {k: state[k] for k in ("epoch", "step_in_epoch", "step") if k in state}
    _SEEN[path] = (stamp, progress)
    return progress


def reference_run(tmp_path_factory) -> Path:
    """The uninterrupted run, made once per session."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _REFERENCE:
        workdir = new_workdir(tmp_path_factory.mktemp("reference"))
        done = run(workdir)
        assert done.returncode == 0, done.stderr[-3000:]
        _REFERENCE[key] = workdir
    return _REFERENCE[key]


def outcome(workdir: Path) -> dict:
    """What a run produced, without timings: the pre-trained weights' digest, the fine-tuning and
    baseline scores, test predictions and the tables, byte for byte."""
    res = workdir / "results"
    pretrain = json.loads((workdir / PRETRAIN / "summary.json").read_text())
    result = {"pretrain": {k: pretrain[k] for k in ("weights_digests", "steps", "ended")},
              "pretrain_final": {k: v for k, v in pretrain["final"].items() if k != "molecules_per_s"}}
    for name, directory in (("finetune", FINETUNE), ("baseline", BASELINE)):
        metrics = json.loads((workdir / directory / "metrics.json").read_text())
        result[name] = {k: metrics.get(k) for k in ("val", "test", "best_epoch", "epochs_run", "stopped", "selected")}
        result[f"{name}_predictions"] = (workdir / directory / "predictions.csv").read_text()
    for table in TABLES:
        result[table] = (res / "tables" / table).read_text()
    return result
