"""benchmarks/bench_model.py runs every mode it offers and prints the line the docs quote."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

LINE = re.compile(r"batch\s+8\s+(\S+): +([\d.]+) mol/s \| (\d+) MFLOP/mol forward.* = ([\d.]+)% of 1024\^3 matmul")


@pytest.mark.slow
def test_single_process_and_data_parallel_modes_report_rate_and_fraction(repo, tmp_path):
    """The data-parallel mode starts two one-thread ranks over gloo and reports the same figures
    at the same global batch, so its FLOP per molecule matches the single process's; its ranks end
    with equal weights (gradients averaged), those of the "ranks" bound do not."""
    out = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "bench_model.py"), "--batch-sizes", "8",
         "--modes", "fp32", "ddp", "ranks", "--molecules", "16", "--repeats", "1", "--threads", "2"],
        capture_output=True, text=True, timeout=600, check=True).stdout
    rows = {m.group(1): m.groups()[1:] for m in map(LINE.search, out.splitlines()) if m}
    assert set(rows) == {"fp32", "ddp", "ranks"}, out
    for mol_per_s, _, fraction in rows.values():
        assert float(mol_per_s) > 0 and 0 < float(fraction) < 100
    # the ranks share the single process's batches, dealt by size, with masks of their own: the
    # same molecules, masked in the same proportion, so about the same work per molecule
    flops = [int(row[1]) for row in rows.values()]
    assert max(flops) < 1.05 * min(flops), out
    assert "peak RSS" in out
    agreement = {line.split(":")[0].split()[-1]: line.rsplit("weights ", 1)[1]
                 for line in out.splitlines() if "ranks' weights" in line}
    assert agreement == {"ddp": "equal", "ranks": "differ"}, out


def test_data_parallel_modes_need_ranks_that_share_the_batch(repo):
    out = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "bench_model.py"), "--batch-sizes", "33",
         "--modes", "ddp", "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "cannot share batch sizes [33]" in out.stderr and "Traceback" not in out.stderr
