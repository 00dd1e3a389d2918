"""The ``clean`` step: a molecule table in, a Parquet of kept molecules and a rejects CSV out.

Every input row ends up either kept or rejected with its row number, its line in the file, its
input and a reason, and ``kept + rejected == input rows`` is checked before anything is published,
as is ``input lines == header + blank + continuation lines + input rows`` (see
:mod:`bbmn.data.tables`): the summary says where every line went. Pre-training corpora are
de-duplicated on canonical SMILES (later copies are rejected as ``duplicate``) and may be filtered
(too few heavy atoms, elements the featurizer does not name); labelled sets keep their duplicates
and report them (and conflicting labels) in the summary, and are filtered only when asked.
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

from rdkit import Chem

from bbmn.chem.features import ELEMENTS
from bbmn.chem.standardize import StandardizeOptions, Standardizer
from bbmn.data.tables import Chunk, LineCount, MoleculeTable
from bbmn.errors import BbmnError
from bbmn.io import atomic_path, sha256_file, write_json
from bbmn.options import option

log = logging.getLogger(__name__)

TASK_TYPES = ("classification", "regression")
FILTER_REASONS = ("too_few_atoms", "unsupported_element")
REJECT_REASONS = Standardizer.REASONS + FILTER_REASONS + ("invalid_label", "malformed_row", "duplicate")
#: The element sets of ``CleanConfig.elements``: the atomic numbers a kept molecule's atoms may
#: have (None = any).
ELEMENT_SETS = {
    "any": None,
    "featurizer": frozenset(Chem.GetPeriodicTable().GetAtomicNumber(e) for e in ELEMENTS),
}
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
        min_heavy_atoms, elements: the molecule filters (their help below); off by default, on
            for the workflow's pre-training corpora.
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
    min_heavy_atoms: int = option(
        0, "reject molecules with fewer heavy atoms (after standardization) as too_few_atoms; 0 keeps "
           "all. The workflow's pre-training corpora use 3: a molecule of one or two heavy atoms "
           "(methane, water, ethane, a lone ion or noble gas) has at most one bond, so masked "
           "pre-training has no neighbours to reconstruct it from; ZINC250K and MOSES have none "
           "(their smallest molecules have 6 and 8). Labelled sets keep them unless asked: an "
           "assay may hold small molecules")
    elements: str = option(
        "any", "reject molecules with an atom outside this element set as unsupported_element: "
               "any = no filter; featurizer = the 22 elements the atom features name "
               "(bbmn.chem.features.ELEMENTS), since every other element (a noble gas, most "
               "metals, a dummy atom *) shares one 'other' slot. On for the workflow's "
               "pre-training corpora, off for labelled sets unless asked",
        choices=tuple(ELEMENT_SETS))


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


def filter_reason(mol: Chem.Mol, min_heavy_atoms: int = 0, elements: str = "any") -> tuple[str, str] | None:
    """Why the molecule filters (``CleanConfig.min_heavy_atoms``, ``.elements``) drop ``mol``, as
    ``(reason, detail)``, or None to keep it."""
    heavy = mol.GetNumHeavyAtoms()
    if heavy < min_heavy_atoms:
        return "too_few_atoms", f"{heavy} heavy atom(s) < min_heavy_atoms={min_heavy_atoms}"
    allowed = ELEMENT_SETS[elements]
    if allowed is None:
        return None
    outside = sorted({atom.GetSymbol() for atom in mol.GetAtoms() if atom.GetAtomicNum() not in allowed})
    if outside:
        return "unsupported_element", (f"{', '.join(outside)}: not among the {len(allowed)} elements "
                                       f"of elements={elements}")
    return None


# --- work done in worker processes -------------------------------------------------------------
_standardizer: Standardizer | None = None


def _init_worker(options: StandardizeOptions) -> None:
    global _standardizer
    _standardizer = Standardizer(options)


def _clean_chunk(args: tuple[Chunk, list[str], CleanConfig]) -> tuple[list, list, LineCount]:
    """Kept rows ``(row, line, input, smiles, labels)``, rejects ``(row, line, input, reason,
    detail)`` and the chunk's lines that start no record."""
    chunk, label_names, cfg = args
    kept, rejected = [], []
    for (row, detail, reason), line in zip(chunk.malformed, chunk.malformed_lines):
        rejected.append((row, line, detail, reason, "row does not have the header's number of fields"))
    for row, line, smiles, raw_labels in zip(chunk.rows, chunk.lines, chunk.smiles, chunk.labels):
        labels = []
        try:
            for name, cell in zip(label_names, raw_labels):
                try:
                    labels.append(parse_label(cell, cfg.task))
                except ValueError as exc:
                    raise ValueError(f"column {name!r}: {exc}") from None
        except ValueError as exc:
            rejected.append((row, line, smiles, "invalid_label", str(exc)))
            continue
        outcome = _standardizer(smiles)
        if outcome.mol is None:
            rejected.append((row, line, smiles, outcome.reason, outcome.detail))
            continue
        dropped = filter_reason(outcome.mol, cfg.min_heavy_atoms, cfg.elements)
        if dropped is not None:
            rejected.append((row, line, smiles, *dropped))
        else:
            kept.append((row, line, smiles, outcome.smiles, labels))
    return kept, rejected, chunk.other_lines


# --- the step ------------------------------------------------------------------------------------
def _schema(label_cols: Sequence[str], meta: dict) -> pa.Schema:
    fields = [pa.field("row", pa.int64()), pa.field("line", pa.int64()),
              pa.field("input_smiles", pa.string()), pa.field("smiles", pa.string())]
    fields += [pa.field(name, pa.float64()) for name in label_cols]
    return pa.schema(fields, metadata={META_KEY: json.dumps(meta)})


def _smiles_key(smiles: str) -> bytes:
    return hashlib.blake2b(smiles.encode(), digest_size=8).digest()


class _Duplicates:
    """Tracks repeated canonical SMILES: rejects them (corpora) or reports them (labelled sets).

    A corpus's index holds one number per molecule, the line of its first copy: what a user
    looks up (the kept copy's row is beside its line in the cleaned table).
    """

    def __init__(self, dedupe: bool):
        self.dedupe = dedupe
        self.first_line: dict[bytes, int] = {}
        self.groups: dict[bytes, list] = defaultdict(list)  # labelled sets only

    def is_duplicate(self, row: int, line: int, smiles: str, labels: list[float]) -> int | None:
        """The line of the first copy of the molecule if this row must be rejected as a duplicate."""
        key = _smiles_key(smiles)
        if not self.dedupe:
            self.groups[key].append((row, line, smiles, labels))
            return None
        first = self.first_line.setdefault(key, line)
        return None if first == line else first

    def report(self, limit: int = 200) -> dict:
        repeated = [g for g in self.groups.values() if len(g) > 1]
        conflicts = []
        for group in repeated:
            labels = [tuple("nan" if math.isnan(x) else x for x in g[3]) for g in group]
            if len(set(labels)) > 1:
                conflicts.append(group)
        return {
            "duplicated_molecules": len(repeated),
            "duplicate_rows": sum(len(g) - 1 for g in repeated),
            "conflicting_label_molecules": len(conflicts),
            "examples": [{"smiles": g[0][2], "rows": [r for r, _, _, _ in g], "lines": [n for _, n, _, _ in g],
                          "conflicting_labels": g in conflicts} for g in repeated[:limit]],
        }


def accounting(lines: LineCount, kept: int, rejected: int) -> str:
    """Where every line of the input went, in one sentence (the parts that are not 0)."""
    parts = [f"{n} {what}" for n, what in ((lines.header, "header"), (lines.blank, "blank"),
                                           (lines.continuation, "continuation")) if n]
    rows = kept + rejected
    return (f"{lines.read} lines = " + " + ".join(parts + [f"{rows} rows"])
            + f"; {rows} rows = {kept} kept + {rejected} rejected")


def clean(input_path: str | Path, out: str | Path, rejects: str | Path,
          summary: str | Path | None = None, cfg: CleanConfig = CleanConfig()) -> dict:
    """Clean ``input_path`` into ``out`` (Parquet) and ``rejects`` (CSV); return the summary.

    The summary (also written to ``summary`` as JSON when given) has the input and output
    counts, where every input line went (``accounting``), counts per reject reason, and the
    duplicate report.
    """
    started = time.perf_counter()
    if cfg.task not in (None,) + TASK_TYPES:
        raise BbmnError(f"unknown task type {cfg.task!r}; use one of {', '.join(TASK_TYPES)}")
    if cfg.elements not in ELEMENT_SETS:
        raise BbmnError(f"unknown element set {cfg.elements!r}; use one of {', '.join(ELEMENT_SETS)}")
    table = MoleculeTable(input_path, cfg.smiles_col, cfg.label_cols, cfg.fmt, cfg.encoding,
                          cfg.smi_header)
    if table.label_cols and cfg.task is None:
        raise BbmnError("label columns given without a task type (classification or regression)")
    meta = {
        "step": "clean", "source": str(input_path), "source_sha256": sha256_file(input_path),
        "smiles_col": cfg.smiles_col, "tasks": table.label_cols, "task_type": cfg.task,
        "standardize": cfg.standardize.as_dict(), "dedupe": cfg.dedupe, "filters": _filters(cfg),
    }
    schema = _schema(table.label_cols, meta)
    reasons: Counter = Counter()
    duplicates = _Duplicates(cfg.dedupe)
    lines = LineCount()
    n_in = n_kept = 0
    work = ((chunk, table.label_cols, cfg) for chunk in table.chunks(cfg.chunk_rows))
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
                rej.writerow(["row", "line", "input", "reason", "detail"])
                for kept, rejected, other_lines in results:
                    n_in += len(kept) + len(rejected)
                    lines += other_lines
                    kept_now = []
                    for row, line, input_smiles, smiles, labels in kept:
                        first = duplicates.is_duplicate(row, line, smiles, labels)
                        if first is None:
                            kept_now.append((row, line, input_smiles, smiles, labels))
                        else:
                            rejected.append((row, line, input_smiles, "duplicate",
                                             f"same canonical SMILES as line {first}"))
                    rejected.sort()
                    rej.writerows(rejected)
                    reasons.update(r[3] for r in rejected)
                    if kept_now:
                        writer.write_table(_to_table(kept_now, table.label_cols, schema))
                    n_kept += len(kept_now)
                    progress.update(len(kept) + len(rejected))
                _check_accounting(lines, n_in, n_kept, sum(reasons.values()))
    finally:
        progress.close()
        if pool is not None:
            pool.terminate()
    result = {
        "input": str(input_path), "input_lines": lines.read, "header_lines": lines.header,
        "blank_lines": lines.blank, "continuation_lines": lines.continuation, "input_rows": n_in,
        "kept": n_kept, "rejected": sum(reasons.values()),
        "accounting": accounting(lines, n_kept, sum(reasons.values())),
        "reasons": {r: reasons[r] for r in REJECT_REASONS if reasons[r]},
        "duplicates": duplicates.report() if not cfg.dedupe else {"removed": reasons["duplicate"]},
        "tasks": table.label_cols, "task_type": cfg.task, "standardize": cfg.standardize.as_dict(),
        "filters": _filters(cfg), "seconds": round(time.perf_counter() - started, 2),
    }
    if summary is not None:
        write_json(summary, result)
    log.info("clean %s: %s %s", input_path, result["accounting"], json.dumps(result["reasons"]))
    if n_in == 0:
        log.warning("clean %s: no data rows (%s)", input_path, result["accounting"])
    return result


def _filters(cfg: CleanConfig) -> dict:
    return {"min_heavy_atoms": cfg.min_heavy_atoms, "elements": cfg.elements}


def _check_accounting(lines: LineCount, rows: int, kept: int, rejected: int) -> None:
    """The promise this step makes, checked before its outputs are published: every row kept or
    rejected, every line a header, blank or continuation line or a row's first line."""
    if kept + rejected != rows:
        raise RuntimeError(f"row accounting broken: {kept} kept + {rejected} rejected != {rows} input rows")
    if lines.records() != rows:
        raise RuntimeError(f"line accounting broken: {lines} does not give {rows} rows")


def _to_table(kept: list, label_cols: Sequence[str], schema: pa.Schema) -> pa.Table:
    row, line, input_smiles, smiles, labels = zip(*kept)
    columns = [pa.array(row, pa.int64()), pa.array(line, pa.int64()),
               pa.array(input_smiles, pa.string()), pa.array(smiles, pa.string())]
    columns += [pa.array([k[j] for k in labels], pa.float64()) for j in range(len(label_cols))]
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
