"""The one streaming loop of ``bbmn predict`` and ``bbmn embed``: input file in, table out.

The input is read in chunks that start at multiples of the batch size (so a molecule's batch,
and with it every bit of its result, does not depend on chunking:
:func:`~bbmn.inference.prepare.row_batches`), the chunks are prepared in worker processes or here
(:func:`~bbmn.inference.prepare.prepare`), each prepared chunk becomes an output table through the
caller's ``to_table``, and the tables are written in order, one Parquet row group (or a stretch of
CSV lines) per chunk, to a file that appears only when the last chunk is in. Memory stays bounded
whatever the file size. The callers differ only in ``to_table``: their model's outputs as columns
after :func:`row_columns`.
"""

from __future__ import annotations

import collections
import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from bbmn.chem.standardize import StandardizeOptions
from bbmn.data.clean import META_KEY
from bbmn.inference.prepare import OK, Prepared, aligned_chunk_rows, kept_names, prepare, read_chunks
from bbmn.io import atomic_path
from bbmn.parallel import ordered_map


def row_columns(prepared: Prepared, keep: Sequence[str] = (),
                outputs: Sequence[str] = ()) -> dict[str, pa.Array]:
    """The columns every output table starts with: ``row``, ``input``, ``smiles``, ``status``,
    ``detail``, then the kept input columns (``<name>_input`` where the name is taken by these
    or by one of the caller's ``outputs``)."""
    cols = {"row": pa.array(prepared.rows, pa.int64()), "input": pa.array(prepared.inputs, pa.string()),
            "smiles": pa.array(prepared.smiles, pa.string()),
            "status": pa.array(prepared.status, pa.string()),
            "detail": pa.array(prepared.detail, pa.string())}
    for j, name in enumerate(kept_names(keep, [*cols, *outputs])):
        cols[name] = pa.array([e[j] if j < len(e) else "" for e in prepared.extra], pa.string())
    return cols


@dataclass
class Tally:
    """Rows seen, rows prepared, and how many failed for each reason (in order of first sight)."""

    rows: int = 0
    ok: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.rows - self.ok

    def add(self, prepared: Prepared) -> None:
        counts = collections.Counter(prepared.status)  # counted in C, not row by row in Python
        self.rows += len(prepared)
        self.ok += counts.pop(OK, 0)
        for reason, n in counts.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n

    def counts(self) -> dict:
        """The summary's first keys: rows, ok, failed, reasons."""
        return {"rows": self.rows, "ok": self.ok, "failed": self.failed, "reasons": dict(self.reasons)}


class TableWriter:
    """Writes chunks of an output table to CSV or Parquet (zstd, one row group per chunk, ``metadata``
    under the schema's ``bbmn`` key), atomically: the file appears under its name only when
    :meth:`close` runs after the last chunk."""

    def __init__(self, path: str | Path, fmt: str, metadata: dict) -> None:
        self.path, self.fmt, self.metadata = Path(path), fmt, metadata
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = None
        self._fh = None

    def write(self, table: pa.Table) -> None:
        if self.fmt == "parquet":
            if self._writer is None:
                schema = table.schema.with_metadata({META_KEY: json.dumps(self.metadata)})
                self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
            self._writer.write_table(table.replace_schema_metadata(self._writer.schema.metadata))
            return
        if self._fh is None:
            self._fh = open(self._tmp, "w", newline="")
            self._csv = csv.writer(self._fh)
            self._csv.writerow(table.column_names)
        columns = [c.to_pylist() for c in table.columns]
        self._csv.writerows([_cell(v) for v in row] for row in zip(*columns))

    def close(self, ok: bool = True) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._fh is not None:
            self._fh.close()
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _prepare_chunk(args: tuple) -> Prepared:
    (rows, smiles, malformed, extra), options, descriptors = args
    return prepare(smiles, options, descriptors=descriptors, rows=rows, malformed=malformed, extra=extra)


def _at_least_one(chunks: Iterable[tuple]) -> Iterator[tuple]:
    """``chunks``, or one empty chunk for an input without rows: its table still gets the columns."""
    empty = True
    for chunk in chunks:
        empty = False
        yield chunk
    if empty:
        yield np.zeros(0, np.int64), [], [], []


def stream_file(input_path: str | Path, out: str | Path, to_table: Callable[[Prepared], pa.Table],
                options: StandardizeOptions, *, metadata: dict, fmt: str = "parquet",
                descriptors: bool = False, smiles_col: str = "smiles", keep: Sequence[str] = (),
                chunk_rows: int = 4096, batch_size: int = 256, workers: int = 0,
                encoding: str = "utf-8-sig") -> Tally:
    """Every row of ``input_path`` through ``to_table`` into ``out``, chunk by chunk (module docstring).

    Args:
        input_path: CSV or SMI, gzipped or not (:func:`~bbmn.inference.prepare.read_chunks`).
        out: the output file; written atomically.
        to_table: a prepared chunk's output table (all its rows, failed ones included, in order).
        options: the standardization the model's training molecules had.
        metadata: what the Parquet schema records under ``bbmn`` (step, model, input...).
        fmt: ``parquet`` or ``csv``.
        descriptors: prepare the 200 descriptors too (prediction needs them, embeddings do not).
        smiles_col, keep, encoding: how the input is read and which columns travel with the rows.
        chunk_rows: rows per chunk, rounded up to a multiple of ``batch_size``.
        workers: processes preparing chunks while this one runs ``to_table`` (0 = prepare here).

    Returns:
        The :class:`Tally` of rows, prepared rows and failure reasons.

    A tqdm bar on stderr, labelled with ``metadata["step"]``, counts the rows when stderr is a
    terminal (batch jobs and pipes get none).
    """
    chunks = read_chunks(input_path, smiles_col, keep, aligned_chunk_rows(chunk_rows, batch_size),
                         encoding=encoding)
    work = ((chunk, options, descriptors) for chunk in _at_least_one(chunks))
    tally = Tally()
    writer = TableWriter(out, fmt, metadata)
    progress = tqdm(desc=f"{metadata.get('step', 'rows')} {Path(input_path).name}", unit="mol", disable=None)
    try:
        for prepared in ordered_map(_prepare_chunk, work, workers):
            writer.write(to_table(prepared))
            tally.add(prepared)
            progress.update(len(prepared))
        writer.close()
    except BaseException:
        writer.close(ok=False)
        raise
    finally:
        progress.close()
    return tally
