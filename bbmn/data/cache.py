"""Graph caches: the spec's feature codes of every molecule, in one Parquet file.

One row per molecule, row groups of ``chunk_rows`` molecules so a loader can stream the file with
bounded memory. Columns:

- ``row`` (int64): the molecule's data row in the source table; ``smiles`` (string)
- ``atom_element``, ``atom_degree``, ``atom_charge``, ``atom_chiral``, ``atom_aromatic``:
  ``list<uint8>``, one code per atom (``bbmn.chem.features.ATOM_FIELDS``)
- ``bond_begin``, ``bond_end`` (``list<uint16>``): atoms of each bond; bond ``i`` gives directed
  edges ``2i`` (begin -> end) and ``2i + 1`` (end -> begin), so each edge's reverse is ``e ^ 1``
- ``bond_type``, ``bond_in_ring``, ``bond_stereo``: ``list<uint8>``, one code per bond
- ``y`` (``fixed_size_list<float32>[T]``, NaN = missing): only when the dataset has labels

The schema metadata (key ``bbmn``) records the featurizer version, the task names and the source
file's sha256, so a stale cache is detected instead of silently reused.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rdkit import Chem, RDLogger
from tqdm import tqdm

from bbmn.chem.features import ATOM_FIELDS, FEATURIZER_VERSION
from bbmn.data.clean import META_KEY, read_meta
from bbmn.data.graph import GraphArrays, arrays_from_mols
from bbmn.errors import BbmnError
from bbmn.io import atomic_path, sha256_file

RDLogger.DisableLog("rdApp.*")
log = logging.getLogger(__name__)

ATOM_COLUMNS = tuple(f"atom_{f}" for f in ATOM_FIELDS)
BOND_COLUMNS = ("bond_type", "bond_in_ring", "bond_stereo")
MAX_ATOMS = np.iinfo(np.uint16).max


def _cache_schema(n_tasks: int, meta: dict) -> pa.Schema:
    fields = [pa.field("row", pa.int64()), pa.field("smiles", pa.string())]
    fields += [pa.field(c, pa.list_(pa.uint8())) for c in ATOM_COLUMNS]
    fields += [pa.field("bond_begin", pa.list_(pa.uint16())), pa.field("bond_end", pa.list_(pa.uint16()))]
    fields += [pa.field(c, pa.list_(pa.uint8())) for c in BOND_COLUMNS]
    if n_tasks:
        fields.append(pa.field("y", pa.list_(pa.float32(), n_tasks)))
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta)})


def _featurize_chunk(args: tuple[np.ndarray, list[str], np.ndarray]) -> tuple[GraphArrays, list[str], list]:
    """Codes of one chunk of molecules; molecules that do not parse are returned as failures."""
    rows, smiles, y = args
    mols, ok, failures = [], [], []
    for i, (row, s) in enumerate(zip(rows, smiles)):
        mol = Chem.MolFromSmiles(s)
        if mol is None or mol.GetNumAtoms() > MAX_ATOMS:
            failures.append((int(row), s))
            continue
        mols.append(mol)
        ok.append(i)
    return arrays_from_mols(mols, rows[ok], y[ok]), [smiles[i] for i in ok], failures


def _list_array(ptr: np.ndarray, values: np.ndarray, value_type: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(ptr.astype(np.int32)), pa.array(values, value_type))


def _to_table(g: GraphArrays, smiles: list[str], schema: pa.Schema) -> pa.Table:
    cols = [pa.array(g.row, pa.int64()), pa.array(smiles, pa.string())]
    cols += [_list_array(g.atom_ptr, g.atoms[:, k], pa.uint8()) for k in range(len(ATOM_COLUMNS))]
    cols += [_list_array(g.bond_ptr, g.bond_atoms[:, k].astype(np.uint16), pa.uint16()) for k in range(2)]
    cols += [_list_array(g.bond_ptr, g.bonds[:, k], pa.uint8()) for k in range(len(BOND_COLUMNS))]
    if "y" in schema.names:
        n_tasks = g.y.shape[1]
        cols.append(pa.FixedSizeListArray.from_arrays(pa.array(g.y.reshape(-1), pa.float32()), n_tasks))
    return pa.Table.from_arrays(cols, schema=schema)


def cache_is_current(cache: str | Path, source: str | Path) -> bool:
    """True when ``cache`` exists, was written by this featurizer version, from this ``source``."""
    try:
        meta = read_meta(cache)
    except BbmnError:
        return False
    return (meta.get("featurizer_version") == FEATURIZER_VERSION
            and meta.get("source_sha256") == sha256_file(source))


def featurize(clean_parquet: str | Path, out: str | Path, workers: int = 1,
              chunk_rows: int = 4096, force: bool = False, work_rows: int = 512) -> dict:
    """Featurize a cleaned Parquet (``bbmn clean``'s output) into a graph cache at ``out``.

    Workers featurize units of ``work_rows`` molecules (small, so that two workers stay equally
    busy); the writer joins them into row groups of ``chunk_rows``. Skips the work when ``out``
    is already current for this input (unless ``force``).
    Returns a summary dict with counts and throughput.
    """
    clean_meta = read_meta(clean_parquet)
    if "smiles" not in pq.read_schema(clean_parquet).names:
        raise BbmnError(f"{clean_parquet} has no 'smiles' column; is it the output of bbmn clean?")
    if not force and cache_is_current(out, clean_parquet):
        log.info("featurize: %s is up to date with %s; nothing to do", out, clean_parquet)
        return {"skipped": True, **read_meta(out)["summary"]}
    tasks = clean_meta.get("tasks", [])
    work_rows = min(work_rows, chunk_rows)
    started = time.perf_counter()
    source = pq.ParquetFile(clean_parquet)
    meta = {"step": "featurize", "featurizer_version": FEATURIZER_VERSION,
            "source": str(clean_parquet), "source_sha256": sha256_file(clean_parquet),
            "tasks": tasks, "task_type": clean_meta.get("task_type")}

    def work() -> Iterator[tuple]:
        for batch in source.iter_batches(batch_size=work_rows, columns=["row", "smiles", *tasks]):
            y = (np.stack([batch.column(t).to_numpy(zero_copy_only=False) for t in tasks], axis=1)
                 if tasks else np.zeros((batch.num_rows, 0)))
            yield batch.column("row").to_numpy(), batch.column("smiles").to_pylist(), y.astype(np.float32)

    n_mol = n_atoms = n_bonds = 0
    failures: list = []
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    results = pool.imap(_featurize_chunk, work()) if pool else map(_featurize_chunk, work())
    progress = tqdm(total=source.metadata.num_rows, desc=f"featurize {Path(out).name}", unit="mol",
                    disable=None)
    try:
        row_groups = 0
        with atomic_path(out) as tmp:
            schema = _cache_schema(len(tasks), meta)
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                buffered: list[tuple[GraphArrays, list[str]]] = []

                def flush() -> None:
                    nonlocal row_groups
                    if buffered:
                        g = GraphArrays.concat([b[0] for b in buffered])
                        writer.write_table(_to_table(g, sum((b[1] for b in buffered), []), schema))
                        row_groups += 1
                        buffered.clear()

                for g, smiles, failed in results:
                    failures += failed
                    n_mol += len(g)
                    n_atoms += int(g.atom_ptr[-1])
                    n_bonds += int(g.bond_ptr[-1])
                    progress.update(len(g) + len(failed))
                    if len(g):
                        buffered.append((g, smiles))
                    if sum(len(b[0]) for b in buffered) >= chunk_rows:
                        flush()
                flush()
                summary = {"molecules": n_mol, "failed": len(failures), "atoms": n_atoms,
                           "bonds": n_bonds, "row_groups": row_groups,
                           "seconds": round(time.perf_counter() - started, 2)}
                writer.add_key_value_metadata({META_KEY: json.dumps({**meta, "summary": summary,
                                                                     "failures": failures[:1000]})})
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()
    summary["molecules_per_s"] = round((n_mol + len(failures)) / max(summary["seconds"], 1e-9), 1)
    summary["bytes"] = Path(out).stat().st_size
    if failures:
        log.warning("featurize: %d molecules did not parse and are not in the cache, e.g. row %d %r",
                    len(failures), *failures[0])
    log.info("featurize %s: %s", out, json.dumps(summary))
    return summary


class GraphCache:
    """Read access to a graph cache: all at once (small sets) or streamed by row group.

    Raises:
        BbmnError: if the file is not a bbmn cache or was written by another featurizer version.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path)
        if self.meta.get("step") != "featurize":
            raise BbmnError(f"{self.path} is not a graph cache (it was written by "
                            f"'bbmn {self.meta.get('step')}'); run bbmn featurize on it")
        version = self.meta.get("featurizer_version")
        if version != FEATURIZER_VERSION:
            raise BbmnError(f"{self.path} was written by featurizer version {version}; this bbmn "
                            f"reads version {FEATURIZER_VERSION}: re-run bbmn featurize")
        self._file = pq.ParquetFile(self.path)
        self.tasks: list[str] = self.meta.get("tasks", [])
        self.task_type: str | None = self.meta.get("task_type")

    def __len__(self) -> int:
        return self._file.metadata.num_rows

    @property
    def num_row_groups(self) -> int:
        return self._file.num_row_groups

    def row_group_sizes(self) -> list[int]:
        return [self._file.metadata.row_group(i).num_rows for i in range(self.num_row_groups)]

    def read(self, row_groups: list[int] | None = None) -> GraphArrays:
        """Decode the given row groups (all when None) into :class:`GraphArrays`."""
        if row_groups is None:
            table = self._file.read()
        else:
            table = self._file.read_row_groups(row_groups)
        return arrays_from_table(table, len(self.tasks))

    def rows(self, row_group: int | None = None) -> np.ndarray:
        """The ``row`` column (source rows) of one row group, or of the whole cache."""
        if row_group is None:
            table = self._file.read(columns=["row"])
        else:
            table = self._file.read_row_group(row_group, columns=["row"])
        return table.column("row").to_numpy()

    def read_smiles(self) -> tuple[np.ndarray, list[str]]:
        """The ``row`` and ``smiles`` columns (for reports and predictions)."""
        table = self._file.read(columns=["row", "smiles"])
        return table.column("row").to_numpy(), table.column("smiles").to_pylist()

    def iter_row_groups(self, order: list[int] | None = None) -> Iterator[GraphArrays]:
        """Stream the cache one row group at a time (memory bounded by one row group)."""
        for i in order if order is not None else range(self.num_row_groups):
            yield self.read([i])


def _flat(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and flat values of a list column (no Python loop over rows)."""
    arr = column.combine_chunks()
    offsets = arr.offsets.to_numpy().astype(np.int64)
    values = arr.values.to_numpy(zero_copy_only=False)
    base = offsets[0]
    return offsets - base, values[base:offsets[-1]]


def arrays_from_table(table: pa.Table, n_tasks: int) -> GraphArrays:
    """Decode a cache table (or a slice of it) into :class:`GraphArrays`."""
    atom_ptr, _ = _flat(table.column(ATOM_COLUMNS[0]))
    atoms = np.stack([_flat(table.column(c))[1] for c in ATOM_COLUMNS], axis=1).astype(np.uint8)
    bond_ptr, begin = _flat(table.column("bond_begin"))
    end = _flat(table.column("bond_end"))[1]
    bonds = np.stack([_flat(table.column(c))[1] for c in BOND_COLUMNS], axis=1).astype(np.uint8)
    n = table.num_rows
    if n_tasks:
        y = table.column("y").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        y = y.reshape(n, n_tasks).astype(np.float32)
    else:
        y = np.zeros((n, 0), np.float32)
    return GraphArrays(atom_ptr=atom_ptr, atoms=atoms, bond_ptr=bond_ptr,
                       bond_atoms=np.stack([begin, end], axis=1).astype(np.int64), bonds=bonds,
                       row=table.column("row").to_numpy().astype(np.int64), y=y)
