"""A throwaway one-node SLURM cluster for tests (Debian's slurmctld, slurmd, slurm-client, munge).

`start(root)` writes a munge key and a slurm.conf under ``root``, starts munged, slurmctld and
slurmd in the foreground as children of this process (no systemd, no cgroups: this may be a
container), waits until the node is idle and a trivial batch job completes, and returns a
`Cluster`; `Cluster.stop()` ends exactly those three processes. Nothing outside ``root`` is
touched: private ports, a private munge socket, state, spool and logs all live under it.

The cluster has no accounting daemon (slurmdbd): `sacct` does not work there, so finished jobs
are kept in slurmctld's memory for an hour (MinJobAge) and `squeue --states=all` lists them.
Two partitions, `cpu` (the default) and `gpu`, share the one node (which has no GPU), so that a
profile's partition routing can be checked.

The slurm.conf is not in /etc/slurm but found through $SLURM_CONF, which `Cluster.env` sets.
snakemake-executor-plugin-slurm-jobstep (0.6) removes every SLURM_* variable but the job's
identity before it calls `srun` inside a job, SLURM_CONF included; on a cluster whose slurm.conf
is in the default place that does not matter, here srun would find no configuration. So
`Cluster.env` also puts first on PATH a `srun` that sets SLURM_CONF again and runs the real one.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

PROGRAMS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scontrol")
INSTALL_HINT = "apt-get install -y slurmctld slurmd slurm-client munge (.ci/run installs them)"


class ClusterUnavailable(RuntimeError):
    """The cluster could not be started here; the message says why (tests skip with it)."""


def missing_programs() -> list[str]:
    """The programs the cluster needs that are not installed (Debian puts the daemons in sbin)."""
    return [name for name in PROGRAMS if _which(name) is None]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")



def _detected_node() -> dict[str, int]:
    """CPUs and memory (MB) as slurmd sees them (`slurmd -C`), so the node never drains for
    having less than configured."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.split()[:8] if "=" in kv)
    return {"cpus": int(fields["CPUs"]), "memory_mb": int(fields["RealMemory"])}


@dataclass
class Cluster:
    root: Path
    conf: Path
    cpus: int
    memory_mb: int                       # RealMemory of the node: what jobs may request
    partitions: tuple[str, ...] = ("cpu", "gpu")
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """Environment for SLURM's client commands (and snakemake, which calls them)."""
        path = os.pathsep.join([str(self.root / "bin"), os.environ.get("PATH", "")])
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([_which(cmd[0]) or cmd[0], *cmd[1:]], capture_output=True, text=True,
                              env=self.env, check=check, timeout=60)

    def jobs(self, name: str | None = None) -> list[dict[str, str]]:
        """Every job slurmctld still knows (running or finished within MinJobAge): id, name,
        comment, partition, state, exit code."""
        cmd = ["squeue", "--states=all", "--noheader", "--format=%i|%j|%k|%P|%T"]
        if name:
            cmd += ["--name", name]
        keys = ("id", "name", "comment", "partition", "state")
        return [dict(zip(keys, line.split("|"))) for line in self.run(*cmd).stdout.splitlines() if line]

    def logs(self, tail: int = 30) -> str:
        """The last lines of each daemon's log, for error messages."""
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel the jobs still queued or running (only this cluster's controller knows them),
        then end the daemons this cluster started (slurmd first, munged last)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            try:
                self.run("scancel", f"--user={getpass.getuser()}", check=False)
                _wait(lambda: not any(j["state"] in ("PENDING", "RUNNING", "COMPLETING")
                                      for j in self.jobs()), 30, "jobs did not end", self)
            except (ClusterUnavailable, subprocess.SubprocessError, OSError):
                pass  # the daemons are ended below all the same
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def slurm_conf(root: Path, *, host: str, user: str, cpus: int, memory_mb: int, munge_socket: Path,
               ctld_port: int, slurmd_port: int) -> str:
    return f"""\
ClusterName=bbmntest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
# no systemd and no cgroups in a container: track processes through /proc, bind nothing
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd: finished jobs stay listed by `squeue --states=all` for an hour instead
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=3600
SchedulerType=sched/backfill
SelectType=select/cons_tres
# CPUs are allocated, memory is not (nothing would enforce it without cgroups): the profile's
# requests sized for GPU nodes do not make the jobs wait for one another
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
"""


def start(root: Path, *, memory_margin_mb: int = 1000, timeout: float = 60) -> Cluster:
    """Start the cluster under ``root``; raises ClusterUnavailable (with the daemons' logs) when
    the programs are missing or the node does not come up and run a job."""
    missing = missing_programs()
    if missing:
        raise ClusterUnavailable(f"SLURM programs not installed ({', '.join(missing)}): {INSTALL_HINT}")
    for sub in ("state", "spool", "run", "log", "munge", "bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    srun = root / "bin" / "srun"  # see the module's docstring
    srun.write_text(f'#!/bin/sh\nSLURM_CONF={root / "slurm.conf"} exec {_which("srun")} "$@"\n')
    srun.chmod(0o755)
    node = _detected_node()
    host = socket.gethostname().split(".")[0]
    munge_socket = root / "munge" / "munge.socket"
    key = root / "munge" / "munge.key"
    subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
    key.chmod(0o400)
    cluster = Cluster(root=root, conf=root / "slurm.conf", cpus=node["cpus"],
                      memory_mb=max(500, node["memory_mb"] - memory_margin_mb))
    cluster.conf.write_text(slurm_conf(root, host=host, user=getpass.getuser(), cpus=cluster.cpus,
                                       memory_mb=cluster.memory_mb, munge_socket=munge_socket,
                                       ctld_port=free_port(), slurmd_port=free_port()))
    commands = {
        # --force: munged refuses root and loose directory permissions otherwise
        "munged": [_which("munged"), "--foreground", "--force", f"--socket={munge_socket}",
                   f"--key-file={key}", f"--pid-file={root}/run/munged.pid",
                   f"--log-file={root}/log/munged.log", f"--seed-file={root}/munge/munged.seed"],
        "slurmctld": [_which("slurmctld"), "-D", "-i"],
        "slurmd": [_which("slurmd"), "-D", "-N", host],
    }
    try:
        for name, cmd in commands.items():
            out = open(root / "log" / f"{name}.stdout.log", "w")
            cluster.processes[name] = subprocess.Popen(cmd, env=cluster.env, stdout=out,
                                                       stderr=subprocess.STDOUT, start_new_session=True)
            if name == "munged":
                _wait(lambda: munge_socket.exists(), timeout, "munged did not create its socket", cluster)
            if name == "slurmctld":
                _wait(lambda: cluster.run("scontrol", "ping", check=False).returncode == 0, timeout,
                      "slurmctld does not answer `scontrol ping`", cluster)
        _wait(lambda: cluster.run("sinfo", "--noheader", "--format=%t", check=False).stdout.split()[:1]
              in (["idle"], ["mix"]), timeout, "the node did not become idle", cluster)
        # a trivial job with one step: slurmd can launch jobs and their srun steps as this user
        submitted = cluster.run("sbatch", "--parsable", "--wrap=srun true", f"--output={root}/log/smoke-%j.out")
        job = submitted.stdout.strip().split(";")[0]
        _wait(lambda: any(j["id"] == job and j["state"] == "COMPLETED" for j in cluster.jobs()), timeout,
              f"the smoke job {job} did not complete", cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(condition, timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, process in cluster.processes.items():
            if process.poll() is not None:
                raise ClusterUnavailable(f"{name} exited with {process.returncode}\n{cluster.logs(tail=8)}")
        try:
            if condition():
                return
        except (subprocess.SubprocessError, OSError):
            pass
        time.sleep(0.5)
    raise ClusterUnavailable(f"{what} within {timeout:.0f} s\n{cluster.logs(tail=8)}")
