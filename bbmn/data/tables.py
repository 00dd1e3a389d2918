"""Reading molecule tables (CSV / CSV.gz / SMI / SMI.gz) in chunks, with clear errors.

Python's ``csv`` module reads the records (quoted newlines, quoted commas in SIDER's headers),
so every record is seen: a malformed one becomes a rejects row, never a silent skip.
Rows are numbered 0-based over data records, header not counted, blank lines skipped (as pandas
does), which is the numbering the spec's split digests use.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bbmn.errors import BbmnError

csv.field_size_limit(1 << 26)

FORMATS = ("csv", "smi")


def detect_format(path: str | os.PathLike) -> str:
    """``csv`` or ``smi`` from the file name (``.gz`` allowed); other names are read as CSV."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return "smi" if name.endswith((".smi", ".smiles")) else "csv"


@dataclass
class Chunk:
    """Up to ``chunk_rows`` records: their data-row numbers, SMILES and raw label strings.

    ``malformed`` lists (row, raw text, reason) for records that could not be read as a row.
    """

    rows: list[int] = field(default_factory=list)
    smiles: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    malformed: list[tuple[int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.malformed)


def _open_text(path: Path, encoding: str) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")


class MoleculeTable:
    """A molecule file with a SMILES column and optional label columns.

    Args:
        path: the file.
        smiles_col: SMILES column name (CSV); ignored for SMI files.
        label_cols: label column names, ``["*"]`` for every column except the SMILES one, or empty.
        fmt: ``csv`` or ``smi``; guessed from the name when None.
        encoding: text encoding; ``utf-8-sig`` reads UTF-8 with or without a byte-order mark.
        smi_header: the SMI file's first line is a header, not a molecule.

    Raises:
        BbmnError: missing or empty file, missing or duplicated columns, undecodable text.
    """

    def __init__(self, path: str | os.PathLike, smiles_col: str = "smiles",
                 label_cols: Sequence[str] = (), fmt: str | None = None,
                 encoding: str = "utf-8-sig", smi_header: bool = False):
        self.path = Path(path)
        self.fmt = fmt or detect_format(self.path)
        if self.fmt not in FORMATS:
            raise BbmnError(f"unknown input format {self.fmt!r}; use one of {', '.join(FORMATS)}")
        self.encoding = encoding
        self.smi_header = smi_header
        if not self.path.is_file():
            raise BbmnError(f"input file not found: {self.path}")
        if self.path.stat().st_size == 0:
            raise BbmnError(f"input file is empty (0 bytes): {self.path}")
        if self.fmt == "smi":
            if [c for c in label_cols if c != "*"]:
                raise BbmnError("SMI files have no label columns; use a CSV for labelled data")
            self.header, self.smiles_index, self.label_cols, self.label_index = ["smiles"], 0, [], []
            return
        self.header = self._read_header()
        self.smiles_index = self._column_index(smiles_col, "SMILES")
        if list(label_cols) == ["*"]:
            label_cols = [c for c in self.header if c != smiles_col]
        self.label_cols = list(label_cols)
        self.label_index = [self._column_index(c, "label") for c in self.label_cols]

    def _read_header(self) -> list[str]:
        try:
            with _open_text(self.path, self.encoding) as fh:
                header = next(csv.reader(fh), None)
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc, "the header") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BbmnError(f"cannot read {self.path}: {exc}") from None
        if not header or all(not h.strip() for h in header):
            raise BbmnError(f"input file has no header line: {self.path}")
        return [h.strip() for h in header]

    def _column_index(self, name: str, role: str) -> int:
        hits = [i for i, h in enumerate(self.header) if h == name]
        if not hits:
            shown = ", ".join(repr(h) for h in self.header[:20])
            more = f" (and {len(self.header) - 20} more)" if len(self.header) > 20 else ""
            raise BbmnError(f"{role} column {name!r} not found in {self.path}; columns are: {shown}{more}")
        if len(hits) > 1:
            raise BbmnError(f"{role} column {name!r} appears {len(hits)} times in the header of {self.path}")
        return hits[0]

    def _decode_error(self, exc: UnicodeDecodeError, where: str) -> BbmnError:
        return BbmnError(
            f"{self.path} is not valid {self.encoding} text ({where}: {exc.reason} at byte "
            f"{exc.start}); re-save it as UTF-8 or pass its encoding, e.g. --encoding latin-1")

    def chunks(self, chunk_rows: int = 4096) -> Iterator[Chunk]:
        """Yield the file's records in order, ``chunk_rows`` at a time."""
        reader = self._records()
        chunk = Chunk()
        for row, fields in reader:
            if isinstance(fields, str):  # a malformed record, fields holds the reason
                chunk.malformed.append((row, fields, "malformed_row"))
            else:
                smiles, labels = fields
                chunk.rows.append(row)
                chunk.smiles.append(smiles)
                chunk.labels.append(labels)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = Chunk()
        if len(chunk):
            yield chunk

    def _records(self) -> Iterator[tuple[int, tuple[str, list[str]] | str]]:
        row = -1
        try:
            with _open_text(self.path, self.encoding) as fh:
                if self.fmt == "smi":
                    if self.smi_header:
                        next(fh, None)
                    for line in fh:
                        text = line.strip()
                        if not text:
                            continue
                        row += 1
                        yield row, (text.split()[0], [])
                    return
                reader = csv.reader(fh)
                next(reader, None)
                width = len(self.header)
                for fields in reader:
                    if not fields or (len(fields) == 1 and not fields[0].strip()):
                        continue
                    row += 1
                    if len(fields) != width:
                        yield row, f"{len(fields)} fields where the header has {width}: {','.join(fields)[:200]}"
                        continue
                    yield row, (fields[self.smiles_index], [fields[i] for i in self.label_index])
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc, f"after data row {row}") from None
        except csv.Error as exc:
            raise BbmnError(f"{self.path}: CSV error after data row {row}: {exc}") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BbmnError(f"cannot read {self.path} after data row {row}: {exc}") from None
