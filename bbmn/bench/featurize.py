"""Clean + featurize throughput on the first N molecules of a file, beside RDKit's bare parse rate.

The bare ``Chem.MolFromSmiles`` rate is measured in the same run, on one core, so the ratio
(featurize rate / parse rate) does not depend on how fast the machine is.
"""

from __future__ import annotations

import gzip
import tempfile
import time
from pathlib import Path

from rdkit import Chem, RDLogger

from bbmn.chem.standardize import profile
from bbmn.data.cache import featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.tables import MoleculeTable
from bbmn.train.runtime import peak_rss_mb

RDLogger.DisableLog("rdApp.*")


def _first_smiles(path: Path, n: int, smiles_col: str) -> list[str]:
    table = MoleculeTable(path, smiles_col)
    smiles: list[str] = []
    for chunk in table.chunks(4096):
        smiles += chunk.smiles
        if len(smiles) >= n:
            break
    return smiles[:n]


def bench_featurize(input_path: str | Path, n: int = 20_000, workers: int = 2,
                    smiles_col: str = "smiles", standardize: str = "standard",
                    full_size: int | None = None) -> dict:
    """Measure parse, clean and featurize rates on the first ``n`` molecules of ``input_path``.

    ``full_size`` (e.g. 249,456 for ZINC250K) extrapolates the cache size of the whole file.
    """
    smiles = _first_smiles(Path(input_path), n, smiles_col)
    started = time.perf_counter()
    for s in smiles:
        Chem.MolFromSmiles(s)
    parse_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bbmn-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "input.smi.gz"
        with gzip.open(src, "wt") as fh:
            fh.writelines(f"{s}\n" for s in smiles)
        started = time.perf_counter()
        summary = clean(src, tmp / "clean.parquet", tmp / "rejects.csv", None,
                        CleanConfig(standardize=profile(standardize), dedupe=True, workers=workers))
        clean_s = time.perf_counter() - started
        started = time.perf_counter()
        cache = featurize(tmp / "clean.parquet", tmp / "cache.parquet", workers=workers)
        featurize_s = time.perf_counter() - started
        cache_bytes = (tmp / "cache.parquet").stat().st_size
    result = {
        "molecules": len(smiles),
        "workers": workers,
        "rdkit_parse_per_s": round(len(smiles) / parse_s, 1),
        "clean_per_s": round(len(smiles) / clean_s, 1),
        "featurize_per_s": round(summary["kept"] / featurize_s, 1),
        "clean_and_featurize_per_s": round(len(smiles) / (clean_s + featurize_s), 1),
        "featurize_vs_parse": round(summary["kept"] / featurize_s / (len(smiles) / parse_s), 2),
        "cache_bytes_per_molecule": round(cache_bytes / max(cache["molecules"], 1), 1),
        "peak_rss_mb": round(max(peak_rss_mb(), peak_rss_mb(children=True)), 1),
    }
    if full_size:
        result["cache_mb_extrapolated"] = round(result["cache_bytes_per_molecule"] * full_size / 1e6, 1)
    return result
