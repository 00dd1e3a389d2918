"""profiles/slurm against a real one-node SLURM (tests/workflow/slurm_cluster.py): the smallest
workflow that still runs every kind of job (tests/workflow/reliability.py: the tiny preset on BBBP,
seed 0, the pre-trained init) submitted with `--profile`, every non-local job through sbatch, and
the same tables as the session's local `--cores 2` run of that workflow. Skipped, with the reason, where the SLURM packages are missing or the daemons
cannot start (.ci/run installs them: slurmctld slurmd slurm-client munge)."""

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, TEST_DATA
from tests.workflow import slurm_cluster
from tests.workflow.reliability import CONFIG, TARGET, reference_run

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
ACCOUNT = "bbmn-test"
TABLES = ("classification.csv", "per_task.csv")


def profile_for(cluster: slurm_cluster.Cluster) -> dict:
    """profiles/slurm/config.yaml as a user fills it in for this cluster, plus what a cluster
    without an accounting database, without GPUs and with few CPUs needs:

    - the placeholders: our account, partitions `cpu` and `gpu`;
    - `gpu: 0` for every rule: the profile asks for one GPU for pretrain and finetune, which
      this node does not have (sbatch would refuse the job); the jobs stay on the `gpu`
      partition, so the profile's routing is still checked, and `--device auto` picks the CPU;
    - memory capped at the node's (sbatch refuses a request larger than any node);
    - no `set-threads`: the jobs run with the rules' own threads, as the local `--cores 2` run
      does. The profile's 4 CPUs per job are more than this node has, and the numbers depend on
      the thread count (fine-tuning with 2 torch threads instead of 1 moved the tiny preset's
      BBBP ROC-AUC by up to 0.01), so with them the tables could not be compared;
    - `slurm-status-command: squeue`: there is no slurmdbd, so `sacct` fails; the cluster keeps
      finished jobs for squeue (MinJobAge=3600);
    - the first status check after 5 s instead of 40 (the tiny preset's jobs take seconds), and
      the SLURM logs of successful jobs kept, for the test to read.
    Everything else (executor, jobs, slurm-logdir, the other resources) is kept."""
    profile = yaml.safe_load(PROFILE.read_text())
    defaults = profile["default-resources"]
    assert defaults["slurm_account"] == "YOUR_ACCOUNT" and defaults["slurm_partition"] == "YOUR_CPU_PARTITION"
    defaults.update(slurm_account=ACCOUNT, slurm_partition="cpu",
                    mem_mb=min(defaults["mem_mb"], cluster.memory_mb))
    for rule, resources in profile["set-resources"].items():
        assert resources["slurm_partition"] == "YOUR_GPU_PARTITION", rule
        resources.update(slurm_partition="gpu", gpu=0)
        resources["mem_mb"] = min(resources["mem_mb"], cluster.memory_mb)
    del profile["set-threads"]
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 5
    profile["slurm-keep-successful-logs"] = True
    return profile


def localrules() -> set[str]:
    snakefile = (REPO / "workflow" / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:    \w+,\n)+)", snakefile, flags=re.M)
    return set(re.findall(r"\w+", block.group(1)))


def job_stats(log: str) -> Counter:
    """Snakemake's "Job stats" table at the start of a run: jobs per rule."""
    table = re.search(r"^Job stats:\njob\s+count\n-+\s+-+\n(.*?)^total\s+\d+", log, flags=re.M | re.S)
    assert table, log[:3000]
    return Counter({name: int(n) for name, n in re.findall(r"^(\w+)\s+(\d+)$", table.group(1), flags=re.M)})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-cluster")
    try:
        started = slurm_cluster.start(root)
    except slurm_cluster.ClusterUnavailable as error:
        pytest.skip(f"no one-node SLURM here: {error}")
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"no one-node SLURM here: could not start its daemons: {error}")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def local_tables(tmp_path_factory):
    """The local run's tables: the uninterrupted reference run the determinism and interruption
    tests share (made once per session)."""
    return reference_run(tmp_path_factory) / "results" / "tables"


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm-run")
    shutil.copy(REPO / "config.yaml", workdir / "config.yaml")
    profile = workdir / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump(profile_for(cluster), sort_keys=False))
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
           str(workdir), "--profile", str(profile), "--config", *CONFIG, "--", TARGET]
    path = os.pathsep.join([str(SNAKEMAKE.parent), cluster.env["PATH"]])
    env = {**cluster.env, "PATH": path, "BBMN_DATA_MIRROR": str(TEST_DATA)}
    env.pop("SLURM_JOB_ID", None)
    # cwd: the plugin puts a relative slurm-logdir under the directory snakemake starts in
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=3600)
    log = done.stdout + done.stderr
    (workdir / "snakemake.log").write_text(log)
    assert done.returncode == 0, log[-5000:] + "\n" + cluster.logs()
    return workdir, log


@pytest.mark.slow
def test_every_non_local_job_goes_through_sbatch(slurm_run, cluster, capsys):
    workdir, log = slurm_run
    planned = job_stats(log)
    local = localrules() | {"all"}
    remote = Counter({rule: n for rule, n in planned.items() if rule not in local})
    assert {"clean", "pretrain", "finetune", "baseline", "probe"} <= set(remote)
    # the plugin's line for each submission: "Job 12 has been submitted with SLURM jobid 34 (log: ...)"
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", log)
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    jobs = {job["id"]: job for job in cluster.jobs(name=run_id)}
    assert sorted(jobs) == sorted(job_id for job_id, _ in submitted)
    ids = {}
    for job_id, slurm_log in submitted:
        job = jobs[job_id]
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["comment"]).group(1)
        ids.setdefault(rule, []).append(job_id)
        assert job["state"] == "COMPLETED", job
        # the profile's routing: BatmanNet training on the GPU partition, the rest on the CPU one
        assert job["partition"] == ("gpu" if rule in ("pretrain", "finetune") else "cpu"), job
        # the job's own log (the profile's slurm-logdir): snakemake ran the rule inside the job
        assert Path(slurm_log).is_relative_to(workdir / "logs" / "slurm"), slurm_log
        assert f"rule {rule}:" in Path(slurm_log).read_text(), slurm_log
    assert Counter({rule: len(i) for rule, i in ids.items()}) == remote  # each non-local job once
    with capsys.disabled():  # in the CI log: the ids sbatch returned
        print(f"\nsbatch job ids ({len(jobs)} jobs, SLURM run {run_id}):")
        for rule in sorted(ids):
            print(f"  {rule}: {' '.join(ids[rule])}")


@pytest.mark.slow
def test_slurm_tables_equal_a_local_runs(slurm_run, local_tables):
    workdir, _ = slurm_run
    for name in TABLES:
        on_slurm = pd.read_csv(workdir / "results" / "tables" / name)
        local = pd.read_csv(local_tables / name)
        # Equal up to rounding: the ECFP + RF regression forest (n_jobs=2) sums its trees'
        # predictions in thread order (scikit-learn accumulates them under a lock), so its last
        # bit differs between any two runs, local ones too; everything else is bit-equal.
        pd.testing.assert_frame_equal(on_slurm, local, check_exact=False, rtol=1e-12, atol=0, obj=name)
