"""The ``clean`` step: a molecule table in, a Parquet of kept molecules and a rejects CSV out.

Every input row ends up either kept or rejected with its row number, its input and a reason, and
``kept + rejected == input rows`` is checked before anything is published. Pre-training corpora
are de-duplicated on canonical SMILES (later copies are rejected as ``duplicate``); labelled sets
keep their duplicates and report them (and conflicting labels) in the summary.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import multiprocessing as mp
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bbmn.chem.standardize import StandardizeOptions, Standardizer
from bbmn.data.tables import Chunk, MoleculeTable
from bbmn.errors import BbmnError
from bbmn.io import atomic_path, sha256_file, write_json

log = logging.getLogger(__name__)

TASK_TYPES = ("classification", "regression")
REJECT_REASONS = Standardizer.REASONS + ("invalid_label", "malformed_row", "duplicate")
#: Parquet schema metadata key under which each bbmn step stores what it did.
META_KEY = b"bbmn"


@dataclass
class CleanConfig:
    """How to read and clean one table.

    Attributes:
        smiles_col: SMILES column (CSV).
        label_cols: label columns, ``["*"]`` for all but the SMILES column, empty for corpora.
        task: ``classification`` (labels must be 0/1), ``regression`` (any finite number) or None.
        standardize: what to do to each molecule beyond parse + sanitize.
        dedupe: reject later copies of a canonical SMILES (pre-training corpora).
        fmt: ``csv`` or ``smi``, guessed from the file name when None.
        encoding: input text encoding.
        smi_header: an SMI file's first line is a header.
        workers: processes that standardize in parallel (1 = in this process).
        chunk_rows: rows per work unit and per Parquet row group.
    """

    smiles_col: str = "smiles"
    label_cols: Sequence[str] = ()
    task: str | None = None
    standardize: StandardizeOptions = field(default_factory=StandardizeOptions)
    dedupe: bool = False
    fmt: str | None = None
    encoding: str = "utf-8-sig"
    smi_header: bool = False
    workers: int = 1
    chunk_rows: int = 1024


def parse_label(text: str, task: str | None) -> float:
    """A label cell as a float: empty / NaN -> NaN; anything else must be a (0/1) number.

    Raises:
        ValueError: with a message naming the problem.
    """
    s = text.strip()
    if s == "" or s.lower() == "nan":
        return math.nan
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    if task == "classification" and value not in (0.0, 1.0):
        raise ValueError(f"{text!r} is not a 0/1 class label")
    return value


# --- work done in worker processes -------------------------------------------------------------
_standardizer: Standardizer | None = None


def _init_worker(options: StandardizeOptions) -> None:
    global _standardizer
    _standardizer = Standardizer(options)


def _clean_chunk(args: tuple[Chunk, list[str], str | None]) -> tuple[list, list]:
    """Kept rows ``(row, input, smiles, labels)`` and rejects ``(row, input, reason, detail)``."""
    chunk, label_names, task = args
    kept, rejected = [], []
    for row, detail, reason in chunk.malformed:
        rejected.append((row, detail, reason, "row does not have the header's number of fields"))
    for row, smiles, raw_labels in zip(chunk.rows, chunk.smiles, chunk.labels):
        labels = []
        try:
            for name, cell in zip(label_names, raw_labels):
                try:
                    labels.append(parse_label(cell, task))
                except ValueError as exc:
                    raise ValueError(f"column {name!r}: {exc}") from None
        except ValueError as exc:
            rejected.append((row, smiles, "invalid_label", str(exc)))
            continue
        outcome = _standardizer(smiles)
        if outcome.mol is None:
            rejected.append((row, smiles, outcome.reason, outcome.detail))
        else:
            kept.append((row, smiles, outcome.smiles, labels))
    return kept, rejected


# --- the step ------------------------------------------------------------------------------------
def _schema(label_cols: Sequence[str], meta: dict) -> pa.Schema:
    fields = [pa.field("row", pa.int64()), pa.field("input_smiles", pa.string()),
              pa.field("smiles", pa.string())]
    fields += [pa.field(name, pa.float64()) for name in label_cols]
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta)})


def _smiles_key(smiles: str) -> bytes:
    return hashlib.blake2b(smiles.encode(), digest_size=8).digest()


class _Duplicates:
    """Tracks repeated canonical SMILES: rejects them (corpora) or reports them (labelled sets)."""

    def __init__(self, dedupe: bool):
        self.dedupe = dedupe
        self.first_row: dict[bytes, int] = {}
        self.groups: dict[bytes, list] = defaultdict(list)  # labelled sets only

    def is_duplicate(self, row: int, smiles: str, labels: list[float]) -> int | None:
        """The first row of the same molecule if this row must be rejected as its duplicate."""
        key = _smiles_key(smiles)
        first = self.first_row.setdefault(key, row)
        if first == row:
            if not self.dedupe:
                self.groups[key].append((row, smiles, labels))
            return None
        if self.dedupe:
            return first
        self.groups[key].append((row, smiles, labels))
        return None

    def report(self, limit: int = 200) -> dict:
        repeated = [g for g in self.groups.values() if len(g) > 1]
        conflicts = []
        for group in repeated:
            labels = [tuple("nan" if math.isnan(x) else x for x in g[2]) for g in group]
            if len(set(labels)) > 1:
                conflicts.append(group)
        return {
            "duplicated_molecules": len(repeated),
            "duplicate_rows": sum(len(g) - 1 for g in repeated),
            "conflicting_label_molecules": len(conflicts),
            "examples": [{"smiles": g[0][1], "rows": [r for r, _, _ in g],
                          "conflicting_labels": g in conflicts} for g in repeated[:limit]],
        }


def clean(input_path: str | Path, out: str | Path, rejects: str | Path,
          summary: str | Path | None = None, cfg: CleanConfig = CleanConfig()) -> dict:
    """Clean ``input_path`` into ``out`` (Parquet) and ``rejects`` (CSV); return the summary.

    The summary (also written to ``summary`` as JSON when given) has the input and output
    counts, counts per reject reason, and the duplicate report.
    """
    started = time.perf_counter()
    if cfg.task not in (None,) + TASK_TYPES:
        raise BbmnError(f"unknown task type {cfg.task!r}; use one of {', '.join(TASK_TYPES)}")
    table = MoleculeTable(input_path, cfg.smiles_col, cfg.label_cols, cfg.fmt, cfg.encoding,
                          cfg.smi_header)
    if table.label_cols and cfg.task is None:
        raise BbmnError("label columns given without a task type (classification or regression)")
    meta = {
        "step": "clean", "source": str(input_path), "source_sha256": sha256_file(input_path),
        "smiles_col": cfg.smiles_col, "tasks": table.label_cols, "task_type": cfg.task,
        "standardize": cfg.standardize.as_dict(), "dedupe": cfg.dedupe,
    }
    schema = _schema(table.label_cols, meta)
    reasons: Counter = Counter()
    duplicates = _Duplicates(cfg.dedupe)
    n_in = n_kept = 0
    work = ((chunk, table.label_cols, cfg.task) for chunk in table.chunks(cfg.chunk_rows))
    pool = None
    if cfg.workers > 1:
        pool = mp.get_context("fork").Pool(cfg.workers, _init_worker, (cfg.standardize,))
        results = pool.imap(_clean_chunk, work)
    else:
        _init_worker(cfg.standardize)
        results = map(_clean_chunk, work)
    progress = tqdm(desc=f"clean {Path(input_path).name}", unit="mol", disable=None)
    try:
        with atomic_path(out) as tmp_out, atomic_path(rejects) as tmp_rej:
            with pq.ParquetWriter(tmp_out, schema, compression="zstd") as writer, \
                    open(tmp_rej, "w", newline="") as rej_fh:
                rej = csv.writer(rej_fh)
                rej.writerow(["row", "input", "reason", "detail"])
                for kept, rejected in results:
                    n_in += len(kept) + len(rejected)
                    kept_now = []
                    for row, input_smiles, smiles, labels in kept:
                        first = duplicates.is_duplicate(row, smiles, labels)
                        if first is None:
                            kept_now.append((row, input_smiles, smiles, labels))
                        else:
                            rejected.append((row, input_smiles, "duplicate",
                                             f"same canonical SMILES as row {first}"))
                    rejected.sort()
                    rej.writerows(rejected)
                    reasons.update(r[2] for r in rejected)
                    if kept_now:
                        writer.write_table(_to_table(kept_now, table.label_cols, schema))
                    n_kept += len(kept_now)
                    progress.update(len(kept) + len(rejected))
                if n_kept + sum(reasons.values()) != n_in:  # the promise this step makes
                    raise RuntimeError(f"row accounting broken: {n_kept} kept + "
                                       f"{sum(reasons.values())} rejected != {n_in} input rows")
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()
    result = {
        "input": str(input_path), "input_rows": n_in, "kept": n_kept,
        "rejected": sum(reasons.values()),
        "reasons": {r: reasons[r] for r in REJECT_REASONS if reasons[r]},
        "duplicates": duplicates.report() if not cfg.dedupe else {"removed": reasons["duplicate"]},
        "tasks": table.label_cols, "task_type": cfg.task, "standardize": cfg.standardize.as_dict(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if summary is not None:
        write_json(summary, result)
    log.info("clean %s: %d rows -> %d kept, %d rejected %s", input_path, n_in, n_kept,
             result["rejected"], json.dumps(result["reasons"]))
    if n_in == 0:
        log.warning("clean %s: the file has a header but no data rows", input_path)
    return result


def _to_table(kept: list, label_cols: Sequence[str], schema: pa.Schema) -> pa.Table:
    columns = [
        pa.array([k[0] for k in kept], pa.int64()),
        pa.array([k[1] for k in kept], pa.string()),
        pa.array([k[2] for k in kept], pa.string()),
    ]
    for j in range(len(label_cols)):
        columns.append(pa.array([k[3][j] for k in kept], pa.float64()))
    return pa.Table.from_arrays(columns, schema=schema)


def read_meta(path: str | Path) -> dict:
    """The bbmn metadata a step stored in a Parquet file's schema."""
    try:
        key_values = pq.read_metadata(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise BbmnError(f"cannot read Parquet file {path}: {exc}") from None
    raw = key_values.get(META_KEY)  # the file footer's value: steps may update it at close
    if raw is None:
        raise BbmnError(f"{path} was not written by bbmn (no bbmn metadata)")
    return json.loads(raw)
