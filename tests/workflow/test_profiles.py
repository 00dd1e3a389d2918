"""profiles/slurm: a dry run with the SLURM executor plugin (no sbatch needed) lists the jobs with
the profile's resources; the torchrun switch launches pre-training over the job's GPUs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, TEST_DATA

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PROFILE = REPO / "profiles" / "slurm"


def dry_run(workdir, *args):
    cmd = [str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
           str(workdir), "--profile", str(PROFILE), "-n", *args]
    path = os.pathsep.join([str(SNAKEMAKE.parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "BBMN_DATA_MIRROR": str(TEST_DATA)}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def jobs(output: str) -> list[dict]:
    """The dry run's job blocks: rule name, resources, shell command."""
    found = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n)", output):
        head = re.search(r"^rule (\w+):", block, flags=re.M)
        if not head:
            continue
        resources = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        shell = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        found.append({"rule": head.group(1),
                      "resources": dict(kv.split("=", 1) for kv in resources.group(1).split(", "))
                      if resources else {},
                      "shell": shell.group(1) if shell else ""})
    return found


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    pytest.importorskip("snakemake_executor_plugin_slurm",
                        reason="pip install '.[cluster]' installs snakemake-executor-plugin-slurm")
    path = tmp_path_factory.mktemp("slurm")
    shutil.copy(REPO / "config.yaml", path / "config.yaml")
    return path


def test_profile_has_placeholders_only_for_account_and_partitions():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["jobs"] >= 1
    assert profile["slurm-logdir"].startswith("logs/")
    defaults = profile["default-resources"]
    assert defaults["slurm_account"] == "YOUR_ACCOUNT" and defaults["slurm_partition"] == "YOUR_CPU_PARTITION"
    for rule in ("pretrain", "finetune"):
        assert {"gpu", "cpus_per_gpu", "mem_mb", "slurm_partition"} <= set(profile["set-resources"][rule])
    # GPUs only for the rules that train BatmanNet; runtimes come from the rules (the config)
    gpu_rules = {rule for rule, r in profile["set-resources"].items() if r.get("gpu")}
    assert {"pretrain", "finetune"} <= gpu_rules
    assert all(rule.startswith(("pretrain", "finetune")) for rule in gpu_rules)
    assert not any("runtime" in r for r in profile["set-resources"].values())
    rules = "".join(p.read_text() for p in (REPO / "rules").glob("*.smk"))
    assert "slurm_" not in rules and "partition" not in rules  # cluster specifics stay in the profile


def test_dry_run_lists_jobs_with_the_profiles_resources(workdir):
    done = dry_run(workdir, "--config", "preset=tiny")
    assert done.returncode == 0, done.stderr[-3000:]
    listed = jobs(done.stdout)
    by_rule = {}
    for job in listed:
        by_rule.setdefault(job["rule"], []).append(job)
    assert len(by_rule["finetune"]) == 20 and len(by_rule["pretrain"]) == 1
    pretrain = by_rule["pretrain"][0]["resources"]
    # runtime: the rule's, from the config (a step budget: 240 min; 2 fine-tuning epochs: 60)
    assert (pretrain["gpu"], pretrain["cpus_per_gpu"], pretrain["mem_mb"], pretrain["runtime"]) == ("1", "8", "32000", "240")
    assert pretrain["slurm_partition"] == "YOUR_GPU_PARTITION" and pretrain["slurm_account"] == "YOUR_ACCOUNT"
    for job in by_rule["finetune"]:
        r = job["resources"]
        assert (r["gpu"], r["cpus_per_gpu"], r["mem_mb"], r["runtime"]) == ("1", "4", "16000", "60")
    clean = by_rule["clean"][0]["resources"]
    assert "gpu" not in clean and clean["slurm_partition"] == "YOUR_CPU_PARTITION" and clean["mem_mb"] == "2000"
    for rule in ("probe", "baseline"):  # no GPU for the probes' and baselines' regressions and forests
        assert all(job["resources"].get("gpu", "0") == "0" for job in by_rule[rule])
        assert all(job["resources"]["slurm_partition"] == "YOUR_CPU_PARTITION" for job in by_rule[rule])
    assert by_rule["pretrain"][0]["shell"].startswith("bbmn pretrain ")


def test_cheap_aggregation_steps_are_localrules():
    snakefile = (REPO / "workflow" / "Snakefile").read_text()
    block = re.search(r"^localrules:\n((?:    \w+,\n)+)", snakefile, flags=re.M)
    local = set(re.findall(r"\w+", block.group(1)))
    assert {"fetch", "table", "plot_comparison", "plot_roc", "plot_tables", "plot_pretrain"} <= local
    assert not {"pretrain", "finetune", "baseline", "clean", "featurize"} & local


def test_torchrun_over_the_jobs_gpus_and_nodes(workdir):
    switch = ["--config", "preset=tiny", "pretrain={torchrun_per_gpu: true}"]
    one = dry_run(workdir, *switch, "--set-resources", "pretrain:gpu=4")
    assert one.returncode == 0, one.stderr[-3000:]
    shell = next(j for j in jobs(one.stdout) if j["rule"] == "pretrain")["shell"]
    assert shell.startswith("torchrun --standalone --nproc_per_node 4 $(command -v bbmn) pretrain ")
    two = dry_run(workdir, *switch, "--set-resources", "pretrain:gpu=8", "pretrain:nodes=2",
                  "pretrain:tasks=2", "pretrain:mpi=srun")
    assert two.returncode == 0, two.stderr[-3000:]
    shell = next(j for j in jobs(two.stdout) if j["rule"] == "pretrain")["shell"]
    assert shell.startswith("srun --nodes 2 --ntasks-per-node 1")
    assert "torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d" in shell
    none = dry_run(workdir, *switch, "--set-resources", "pretrain:gpu=0")
    assert none.returncode != 0
    assert "pretrain.torchrun_per_gpu needs the pretrain job's `gpu` resource" in none.stdout + none.stderr
