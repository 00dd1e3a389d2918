"""``bbmn embed`` throughput and peak memory on the first N molecules of a file.

The embedding runs as its own ``bbmn embed`` process, so its peak resident memory is its own (not
this script's list of SMILES). With ``compare``, a second run on the first ``compare`` molecules
shows whether memory grows with the input (streaming: it should not).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rdkit import Chem, RDLogger

from bbmn.bench.featurize import _first_smiles
from bbmn.errors import BbmnError

RDLogger.DisableLog("rdApp.*")


def _run_embed(smi: Path, checkpoint: str | Path, out: Path, workers: int, threads: int,
               batch_size: int, chunk_rows: int) -> dict:
    bbmn = Path(sys.executable).with_name("bbmn")
    cmd = [str(bbmn), "embed", str(smi), "--checkpoint", str(checkpoint), "--out", str(out),
           "--workers", str(workers), "--threads", str(threads), "--batch-size", str(batch_size),
           "--chunk-rows", str(chunk_rows)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BbmnError(f"bbmn embed failed: {done.stderr.strip()[-500:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["wall_seconds"] = wall
    return summary


def bench_embed(input_path: str | Path, checkpoint: str | Path, n: int = 200_000, workers: int = 1,
                threads: int = 1, batch_size: int = 256, chunk_rows: int = 4096,
                smiles_col: str = "smiles", compare: int = 0) -> dict:
    """Embed the first ``n`` molecules of ``input_path`` with ``checkpoint``; rates and memory.

    ``workers`` processes prepare chunks while the main process encodes with ``threads`` torch
    threads (keep ``threads + workers`` at or below the cores). RDKit's bare parse rate of the same
    molecules (one core, this process) is measured too, to relate the rate to the machine.
    """
    smiles = _first_smiles(Path(input_path), n, smiles_col)
    started = time.perf_counter()
    for s in smiles[:20_000]:
        Chem.MolFromSmiles(s)
    parse_rate = min(len(smiles), 20_000) / (time.perf_counter() - started)
    result = {"molecules": len(smiles), "workers": workers, "threads": threads,
              "batch_size": batch_size, "chunk_rows": chunk_rows,
              "rdkit_parse_per_s": round(parse_rate, 1)}
    with tempfile.TemporaryDirectory(prefix="bbmn-bench-embed-") as tmp:
        tmp = Path(tmp)
        runs = [("", smiles)] + ([("compare_", smiles[:compare])] if 0 < compare < len(smiles) else [])
        for prefix, part in runs:
            smi = tmp / f"{prefix}input.smi"
            smi.write_text("".join(f"{s}\n" for s in part))
            out = tmp / f"{prefix}embeddings.parquet"
            s = _run_embed(smi, checkpoint, out, workers, threads, batch_size, chunk_rows)
            result.update({
                f"{prefix}molecules": len(part) if prefix else result["molecules"],
                f"{prefix}embedded": s["ok"],
                f"{prefix}seconds": s["seconds"],
                f"{prefix}molecules_per_s": s["molecules_per_s"],
                f"{prefix}molecules_per_s_with_startup": round(len(part) / s["wall_seconds"], 1),
                f"{prefix}peak_rss_mb": s["peak_rss_mb"],
                f"{prefix}workers_peak_rss_mb": s["workers_peak_rss_mb"],
                f"{prefix}output_bytes_per_molecule": round(out.stat().st_size / max(len(part), 1), 1),
            })
            if not prefix:
                result["dim"] = s["dim"]
    return result
