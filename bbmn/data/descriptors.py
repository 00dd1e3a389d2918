"""The ``descriptors`` step: cleaned Parquet in, the 200 RDKit2DNormalized descriptors out.

Output columns: ``row`` (source data row), ``descriptors_ok`` (False where descriptastorus
failed and the row is all zeros), then one float32 column per descriptor.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bbmn.chem.descriptors import descriptor_names, rdkit2d_normalized
from bbmn.data.clean import META_KEY, read_meta
from bbmn.errors import BbmnError
from bbmn.io import atomic_path, sha256_file

log = logging.getLogger(__name__)


def _compute(args: tuple[np.ndarray, list[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, smiles = args
    values, ok = rdkit2d_normalized(smiles)
    return rows, ok, values


def write_descriptors(clean_parquet: str | Path, out: str | Path, workers: int = 1,
                      chunk_rows: int = 256) -> dict:
    """Compute descriptors for every molecule of ``clean_parquet`` and write them to ``out``."""
    read_meta(clean_parquet)  # a clear error if this is not bbmn clean's output
    started = time.perf_counter()
    names = descriptor_names()
    meta = {"step": "descriptors", "generator": "RDKit2DNormalized", "source": str(clean_parquet),
            "source_sha256": sha256_file(clean_parquet)}
    schema = pa.schema([pa.field("row", pa.int64()), pa.field("descriptors_ok", pa.bool_())]
                       + [pa.field(n, pa.float32()) for n in names],
                       metadata={META_KEY: json.dumps(meta)})
    source = pq.ParquetFile(clean_parquet)
    work = ((b.column("row").to_numpy(), b.column("smiles").to_pylist())
            for b in source.iter_batches(batch_size=chunk_rows, columns=["row", "smiles"]))
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    results = pool.imap(_compute, work) if pool else map(_compute, work)
    n = n_failed = 0
    progress = tqdm(total=source.metadata.num_rows, desc=f"descriptors {Path(out).name}",
                    unit="mol", disable=None)
    try:
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for rows, ok, values in results:
                cols = [pa.array(rows, pa.int64()), pa.array(ok)]
                cols += [pa.array(values[:, j]) for j in range(values.shape[1])]
                writer.write_table(pa.Table.from_arrays(cols, schema=schema))
                n += len(rows)
                n_failed += int((~ok).sum())
                progress.update(len(rows))
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()
    summary = {"molecules": n, "failed": n_failed, "descriptors": len(names),
               "seconds": round(time.perf_counter() - started, 2)}
    if n_failed:
        log.warning("descriptors: %d of %d molecules failed and are all zeros", n_failed, n)
    log.info("descriptors %s: %s", out, json.dumps(summary))
    return summary


def read_descriptors(path: str | Path, rows: np.ndarray | None = None) -> np.ndarray:
    """The ``(n, 200)`` descriptor matrix, in the order of ``rows`` (source rows) when given.

    Raises:
        BbmnError: if a requested row has no descriptors.
    """
    meta = read_meta(path)
    if meta.get("step") != "descriptors":
        raise BbmnError(f"{path} is not a descriptors file (written by 'bbmn {meta.get('step')}')")
    table = pq.read_table(path)
    values = np.stack([table.column(n).to_numpy() for n in table.column_names[2:]], axis=1)
    if rows is None:
        return values
    have = table.column("row").to_numpy()
    order = np.argsort(have)
    pos = np.searchsorted(have, rows, sorter=order)
    pos = np.clip(pos, 0, len(have) - 1)
    found = have[order[pos]] == rows
    if not found.all():
        raise BbmnError(f"{path} has no descriptors for source rows {rows[~found][:5].tolist()}")
    return values[order[pos]]
