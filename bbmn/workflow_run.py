"""Run the workflow in a directory as a child process: one line per step, a failure as one line.

Snakemake prints a block of about ten lines per job; someone who asked for one trained model
wants to know which step runs and how long each took, and, when one fails, why, in one line.
:class:`StepReport` reads snakemake's own output as it streams (its job blocks, ``Finished
jobid`` and ``N of M steps`` lines) and prints a line as a step starts and one as it ends. The
failed job's log (the ``bbmn`` command's own one-line error) becomes the error. Lines it does not
recognize are skipped, so another snakemake version costs detail, not the run; snakemake's full
log stays in ``.snakemake/log/``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bbmn.errors import BbmnError

_JOB = re.compile(r"^(?:local)?rule (\w+):$")
_MESSAGE_JOB = re.compile(r"^Job (\d+): (.*)$")
_FIELD = re.compile(r"^\s+(jobid|wildcards|log|resources): (.*?)(?: \(check log file\(s\) for error details\))?$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)$")
_COUNT = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done$")
_ERROR = re.compile(r"^Error in rule (\w+):$")


class StepReport:
    """Turns snakemake's output lines into one line per step start and end.

    Args:
        show: where the lines go (``print``).
    """

    def __init__(self, show: Callable[[str], None] = print):
        self.show = show
        self.jobs: dict[str, tuple[str, float]] = {}  # jobid -> (what, start time)
        self.block: dict[str, str] | None = None  # the job or error block being read
        self.finished: str | None = None
        self.failed: dict[str, str] | None = None
        self.errors: list[str] = []  # snakemake's own error lines, and ours ("bbmn: ...")
        self.detail_next = False
        self.nothing_to_do = False

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        if line.startswith("bbmn:"):  # the workflow's own checks (rules/common.smk)
            self.errors.append(line)
            self.detail_next = False
            return
        if self.detail_next and line.strip():
            self.errors[-1] += f" {line.strip()}"
            self.detail_next = False
            return
        if self.block is not None and (field := _FIELD.match(line)):
            self.block[field.group(1)] = field.group(2)
            if field.group(1) == "resources":  # a job block's last line: the job runs now
                self._close_block()
            return
        if self.block is not None and not line.startswith(" "):
            self._close_block()
        if match := _JOB.match(line):
            self.block = {"rule": match.group(1)}
        elif match := _ERROR.match(line):
            self.block = {"rule": match.group(1), "error": "yes"}
        elif match := _MESSAGE_JOB.match(line):
            self._start(match.group(1), match.group(2).split(":")[0])
        elif match := _FINISHED.match(line):
            self.finished = match.group(1)
        elif (match := _COUNT.match(line)) and self.finished is not None:
            self._finish(self.finished, match.group(1), match.group(2))
            self.finished = None
        elif line.startswith("Nothing to be done"):
            self.nothing_to_do = True
        elif re.match(r"^\w*(Error|Exception)\b", line):
            self.errors.append(line.rstrip(":"))
            self.detail_next = True

    def _close_block(self) -> None:
        block, self.block = self.block, None
        if block.get("error"):
            self.failed = self.failed or block
        elif block.get("jobid") is not None and block["rule"] != "all":
            self._start(block["jobid"], _describe(block))

    def _start(self, jobid: str, what: str) -> None:
        self.jobs[jobid] = (what, time.monotonic())
        self.show(f"  ... {what}")

    def _finish(self, jobid: str, done: str, total: str) -> None:
        if jobid not in self.jobs:  # rule all, which does nothing
            return
        what, start = self.jobs.pop(jobid)
        self.show(f"[{done:>{len(total)}}/{total}] {what}: {time.monotonic() - start:.0f} s")

    def error(self, workdir: Path) -> str:
        """One line: the failed step and its log's last line, or snakemake's own error."""
        if self.block is not None:
            self._close_block()
        if self.failed is not None:
            log = self.failed.get("log", "")
            log_path = workdir / log if log else None
            last = _last_line(log_path) if log_path else ""
            where = f" (log: {log_path})" if log_path else ""
            return f"step {self.failed['rule']} failed: {last or 'see its log'}{where}"
        ours = [line for line in self.errors if line.startswith("bbmn:")]
        if ours:
            return ours[-1].removeprefix("bbmn: ")
        if self.errors:
            return f"the workflow stopped: {self.errors[0]}"
        return f"the workflow stopped; see the newest log in {workdir / '.snakemake' / 'log'}"


def _describe(block: dict[str, str]) -> str:
    """``finetune esol kind=scratch seed=0`` from a job block."""
    values = [v.strip() for v in block.get("wildcards", "").split(",") if v.strip()]
    shown = [v.split("=", 1)[1] if v.startswith("name=") else v for v in values]
    return " ".join([block["rule"], *shown])


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_workflow(workdir: str | Path, snakefile: str | Path, cores: int,
                 extra: Sequence[str] = (), show: Callable[[str], None] = print) -> StepReport:
    """Run ``snakemake`` on ``workdir``'s ``config.yaml``, reporting each step through ``show``.

    The interpreter's own scripts folder goes first on PATH, so the rules find ``bbmn`` (and
    snakemake the same Python) even when the venv is not activated.

    Raises:
        BbmnError: one line saying which step failed and why.
    """
    workdir = Path(workdir)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile),
               "--directory", str(workdir), "--cores", str(cores), "--rerun-incomplete",
               "--workflow-profile", "none", *extra]  # the same run from any directory
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    report = StepReport(show)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, bufsize=1) as process:
        try:
            for line in process.stdout:
                report.feed(line)
        except KeyboardInterrupt:
            process.wait()  # snakemake got the same signal and stops its jobs
            raise
    if process.returncode != 0:
        raise BbmnError(report.error(workdir))
    return report
