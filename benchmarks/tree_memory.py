"""Run a command and report its wall time and the peak memory of its whole process tree.

``/usr/bin/time -v`` reports the largest single process; a step with worker processes uses more.
This samples every ``--interval`` seconds the summed RSS and PSS (shared pages split between the
processes that share them, so forked workers are not counted twice) of the command and all its
descendants, and prints one JSON line at the end:

    python benchmarks/tree_memory.py -- bbmn featurize CLEAN.parquet --out CACHE.parquet --workers 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import psutil


def tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def sample(processes: list[psutil.Process]) -> tuple[float, float]:
    rss = pss = 0
    for p in processes:
        try:
            info = p.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    started = time.perf_counter()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak_rss = peak_pss = 0.0
    peak_processes = 0
    while child.poll() is None:
        processes = tree(root)
        rss, pss = sample(processes)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        peak_processes = max(peak_processes, len(processes))
        time.sleep(args.interval)
    print(json.dumps({"command": command, "exit": child.returncode,
                      "seconds": round(time.perf_counter() - started, 1),
                      "peak_tree_rss_mb": round(peak_rss, 1), "peak_tree_pss_mb": round(peak_pss, 1),
                      "max_processes": peak_processes}), file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
