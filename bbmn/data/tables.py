"""Reading molecule tables (CSV / CSV.gz / SMI / SMI.gz) in chunks, with clear errors.

Python's ``csv`` module reads the records (quoted newlines, quoted commas in SIDER's headers),
so every record is seen: a malformed one becomes a rejects row, never a silent skip.

Two numbers name a record. Its ``row`` is 0-based over data records, header not counted, blank
lines skipped (as pandas does): the numbering of the spec's split digests, and the key that caches,
splits and predictions join on. Its ``line`` is the 1-based line of the file on which the record
starts, header and blank lines counted, as an editor shows it; a quoted CSV field that spans lines
makes its record span them too, so the next record's line is further on. The lines that start no
record (header, blank, the rest of a multi-line record) are counted in :class:`LineCount`, so that
every line of the file is accounted for.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path

from bbmn.errors import BbmnError

csv.field_size_limit(1 << 26)

FORMATS = ("csv", "smi")
#: All a blank line may hold, and what separates an SMI line's SMILES from its name: spaces and
#: tabs only. Any other character (a NUL, a form feed) stays in the SMILES, where it is rejected
#: with a reason instead of vanishing as ``str.strip`` and ``str.split`` would make it.
BLANKS = " \t"
_SMI_SEPARATOR = re.compile(f"[{BLANKS}]+")


def detect_format(path: str | os.PathLike) -> str:
    """``csv`` or ``smi`` from the file name (``.gz`` allowed); other names are read as CSV."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return "smi" if name.endswith((".smi", ".smiles")) else "csv"


@dataclass
class LineCount:
    """Lines of a file that start no data record: why a file's lines are more than its rows.

    ``read == header + blank + continuation + records`` for the lines read along with so many
    records.

    Attributes:
        read: every line read.
        header: the header (a CSV's, or an SMI file's read with ``smi_header``).
        blank: empty lines and lines of spaces and tabs only; skipped, as pandas does.
        continuation: lines of quoted multi-line CSV records after each one's first line.
    """

    read: int = 0
    header: int = 0
    blank: int = 0
    continuation: int = 0

    def __add__(self, other: LineCount) -> LineCount:
        return LineCount(*(a + b for a, b in zip(astuple(self), astuple(other))))

    def __sub__(self, other: LineCount) -> LineCount:
        return LineCount(*(a - b for a, b in zip(astuple(self), astuple(other))))

    def records(self) -> int:
        """The number of records these lines started."""
        return self.read - self.header - self.blank - self.continuation


@dataclass
class Chunk:
    """Up to ``chunk_rows`` records: their data-row numbers, lines, SMILES and raw label strings.

    ``malformed`` lists (row, raw text, reason) for records that could not be read as a row, and
    ``malformed_lines`` their lines. ``other_lines`` counts the lines read since the previous
    chunk that start no record, so that the chunks of a file add up to all of its lines.
    """

    rows: list[int] = field(default_factory=list)
    smiles: list[str] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    malformed: list[tuple[int, str, str]] = field(default_factory=list)
    malformed_lines: list[int] = field(default_factory=list)
    other_lines: LineCount = field(default_factory=LineCount)

    def __len__(self) -> int:
        return len(self.rows) + len(self.malformed)

    def add(self, row: int, line: int, fields: tuple[str, list[str]] | str) -> None:
        """Add a record: ``fields`` is (SMILES, raw labels), or why it could not be read."""
        if isinstance(fields, str):
            self.malformed.append((row, fields, "malformed_row"))
            self.malformed_lines.append(line)
            return
        smiles, labels = fields
        self.rows.append(row)
        self.lines.append(line)
        self.smiles.append(smiles)
        self.labels.append(labels)


def smi_smiles(line: str) -> str | None:
    """An SMI line's SMILES (its first field), or None for a blank line (see :data:`BLANKS`)."""
    text = line.rstrip("\r\n").strip(BLANKS)
    return _SMI_SEPARATOR.split(text, maxsplit=1)[0] if text else None


def _blank_csv_record(fields: list[str]) -> bool:
    """An empty line, or one field of spaces and tabs only (a blank line of a one-column CSV)."""
    return not fields or (len(fields) == 1 and not fields[0].strip(BLANKS))


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
        """Yield the file's records in order, ``chunk_rows`` at a time.

        A full chunk is held back until the next record is read, so that the lines after the
        last record (trailing blank lines) are counted in the last chunk's ``other_lines``; a
        file of blank lines only gives one empty chunk that counts them.
        """
        counts, counted = LineCount(), LineCount()
        chunk, held = Chunk(), None

        def settled(done: Chunk) -> Chunk:
            nonlocal counted
            done.other_lines, counted = counts - counted, replace(counts)
            return done

        for row, line, fields in self._records(counts):
            if held is not None:
                yield settled(held)
                held = None
            chunk.add(row, line, fields)
            if len(chunk) >= chunk_rows:
                held, chunk = chunk, Chunk()
        last = settled(held if held is not None else chunk)
        if len(last) or last.other_lines.read:
            yield last

    def _records(self, counts: LineCount) -> Iterator[tuple[int, int, tuple[str, list[str]] | str]]:
        """``(row, line, fields)`` of each record, ``fields`` as in :meth:`Chunk.add`; the lines
        that start no record are counted in ``counts`` as they are read."""
        records = self._smi_records(counts) if self.fmt == "smi" else self._csv_records(counts)
        try:
            yield from records
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc, f"after line {counts.read}") from None
        except csv.Error as exc:
            raise BbmnError(f"{self.path}: CSV error after line {counts.read}: {exc}") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BbmnError(f"cannot read {self.path} after line {counts.read}: {exc}") from None

    def _smi_records(self, counts: LineCount) -> Iterator[tuple[int, int, tuple[str, list[str]]]]:
        row = -1
        with _open_text(self.path, self.encoding) as fh:
            for line, text in enumerate(fh, start=1):
                counts.read = line
                if line == 1 and self.smi_header:
                    counts.header = 1
                    continue
                smiles = smi_smiles(text)
                if smiles is None:
                    counts.blank += 1
                    continue
                row += 1
                yield row, line, (smiles, [])

    def _csv_records(self, counts: LineCount) -> Iterator[tuple[int, int, tuple[str, list[str]] | str]]:
        row = -1
        with _open_text(self.path, self.encoding) as fh:
            reader = csv.reader(fh)
            next(reader, None)
            counts.read = counts.header = reader.line_num
            width = len(self.header)
            for fields in reader:
                first_line, counts.read = counts.read + 1, reader.line_num
                spanned = counts.read - first_line + 1
                if _blank_csv_record(fields):
                    counts.blank += spanned
                    continue
                counts.continuation += spanned - 1
                row += 1
                if len(fields) != width:
                    yield row, first_line, (f"{len(fields)} fields where the header has {width}: "
                                            f"{','.join(fields)[:200]}")
                    continue
                yield row, first_line, (fields[self.smiles_index], [fields[i] for i in self.label_index])
