"""New molecules, prepared the way training data was: standardized, featurized, described.

The steps are the training pipeline's, in the same order and with the same code:

1. :class:`bbmn.chem.standardize.Standardizer` with the run's profile (``bbmn clean``);
2. the canonical SMILES parsed again and coded by :func:`bbmn.data.graph.arrays_from_mols`
   (``bbmn featurize`` does exactly this with the cleaned table's SMILES);
3. the 200 RDKit2DNormalized descriptors of the canonical SMILES (``bbmn descriptors``).

Every input row gets a status: ``ok`` or the reason it cannot be scored (``bbmn clean``'s reasons,
plus ``malformed_row``), so callers report failures instead of dropping them. Input files are read
in chunks (:func:`read_chunks`) and chunks can be prepared in worker processes
(:func:`bbmn.parallel.ordered_map`), with a bounded number in flight so memory does not grow with the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger

from bbmn.chem.standardize import StandardizeOptions, Standardizer, profile
from bbmn.data.cache import MAX_ATOMS
from bbmn.data.clean import read_meta
from bbmn.data.graph import GraphArrays, arrays_from_mols
from bbmn.data.tables import MoleculeTable
from bbmn.errors import BbmnError

RDLogger.DisableLog("rdApp.*")

OK = "ok"
#: standardization profile assumed for a model that does not record its own
FALLBACK_PROFILE = {"batmannet-finetuned": "as_given", "batmannet-pretrained": "standard"}


@dataclass
class Prepared:
    """A chunk of input rows, prepared.

    Attributes:
        rows: ``(n,)`` 0-based data rows of the input file.
        inputs: the SMILES as given (the raw record for a malformed row).
        smiles: canonical SMILES after standardization ('' where the row failed).
        status: ``ok`` or the reason code of the failure.
        detail: why it failed ('' where ok).
        extra: per row, the values of the columns the caller asked to keep.
        graphs: codes of the ``ok`` rows, in input order.
        descriptors: ``(n_ok, 200)`` RDKit2DNormalized values of the ``ok`` rows (None if not asked).
    """

    rows: np.ndarray
    inputs: list[str]
    smiles: list[str]
    status: list[str]
    detail: list[str]
    extra: list[list[str]] = field(default_factory=list)
    graphs: GraphArrays | None = None
    descriptors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ok(self) -> np.ndarray:
        """``(n,)`` bool: the rows that were prepared."""
        return np.array([s == OK for s in self.status], dtype=bool)


_STANDARDIZERS: dict[StandardizeOptions, Standardizer] = {}


def _standardizer(options: StandardizeOptions) -> Standardizer:
    if options not in _STANDARDIZERS:  # RDKit's standardization objects are not cheap to make
        _STANDARDIZERS[options] = Standardizer(options)
    return _STANDARDIZERS[options]


def prepare(smiles: Sequence[str], options: StandardizeOptions, descriptors: bool = True,
            rows: Sequence[int] | None = None, malformed: Sequence[tuple[int, str, str]] = (),
            extra: Sequence[Sequence[str]] | None = None) -> Prepared:
    """Standardize, featurize and (with ``descriptors``) describe ``smiles``; nothing is dropped.

    Args:
        smiles: input SMILES, one per row.
        options: the standardization the model's training data had.
        descriptors: compute the 200 descriptors (prediction needs them, embeddings do not).
        rows: the rows' numbers (default 0..n-1).
        malformed: ``(row, raw text, reason)`` of records that could not be read as rows; they
            are merged in by row number with status ``malformed_row``.
        extra: per row, kept column values (empty for malformed rows).
    """
    from bbmn.chem.descriptors import rdkit2d_normalized

    standardize = _standardizer(options)
    rows = list(range(len(smiles))) if rows is None else list(rows)
    extra = [list(e) for e in extra] if extra is not None else [[] for _ in smiles]
    records = [(r, s, e, None) for r, s, e in zip(rows, smiles, extra)]
    if malformed:
        records += [(r, text, [], (reason, "the record does not have the header's number of fields"))
                    for r, text, reason in malformed]
        records.sort(key=lambda rec: rec[0])
    out = Prepared(rows=np.array([r[0] for r in records], dtype=np.int64), inputs=[], smiles=[],
                   status=[], detail=[], extra=[r[2] for r in records])
    mols = []
    for _, text, _, failed in records:
        out.inputs.append(text)
        if failed is not None:
            out.smiles.append("")
            out.status.append(failed[0])
            out.detail.append(failed[1])
            continue
        outcome = standardize(text)
        mol = Chem.MolFromSmiles(outcome.smiles) if outcome.mol is not None else None
        if outcome.mol is not None and mol is None:  # as bbmn featurize would find
            outcome_reason, detail = "invalid_smiles", "the canonical SMILES does not parse again"
        elif mol is not None and mol.GetNumAtoms() > MAX_ATOMS:
            outcome_reason, detail, mol = "too_many_atoms", f"more than {MAX_ATOMS} atoms", None
        else:
            outcome_reason, detail = outcome.reason, outcome.detail
        if mol is None:
            out.smiles.append("")
            out.status.append(outcome_reason)
            out.detail.append(detail)
            continue
        mols.append(mol)
        out.smiles.append(outcome.smiles)
        out.status.append(OK)
        out.detail.append("")
    ok_rows = out.rows[out.ok]
    out.graphs = arrays_from_mols(mols, ok_rows)
    if descriptors:
        out.descriptors = rdkit2d_normalized([s for s, st in zip(out.smiles, out.status) if st == OK])[0]
    return out


def read_chunks(path: str | Path, smiles_col: str = "smiles", keep: Sequence[str] = (),
                chunk_rows: int = 1024, fmt: str | None = None, encoding: str = "utf-8-sig",
                smi_header: bool = False) -> Iterator[tuple]:
    """Yield ``(rows, smiles, malformed, extra)`` of ``path`` (CSV / SMI, gzipped or not), in order.

    ``keep`` names columns (e.g. an identifier) whose raw values travel with each row.
    """
    table = MoleculeTable(path, smiles_col, list(keep), fmt, encoding, smi_header)
    for chunk in table.chunks(chunk_rows):
        yield chunk.rows, chunk.smiles, chunk.malformed, chunk.labels


def standardize_options(recorded: dict | None, kind: str, override: str | None = None,
                        source: str = "the model") -> tuple[StandardizeOptions, str]:
    """The standardization to apply to new molecules, and where it came from.

    ``override`` (a profile name) wins; else the options the model recorded; else the profile its
    kind of training data had (:data:`FALLBACK_PROFILE`).
    """
    if override is not None:
        try:
            return profile(override), f"profile {override} (asked for)"
        except ValueError as exc:
            raise BbmnError(str(exc)) from None
    if recorded:
        return StandardizeOptions(**recorded), f"as recorded by {source}"
    name = FALLBACK_PROFILE.get(kind, "standard")
    return profile(name), f"profile {name} ({source} records none)"


def cleaning_of(cache: str | Path) -> dict:
    """How the molecules of a graph cache were cleaned: ``standardize`` options (None when the
    cleaned table is gone) and the ``featurizer_version``; what a run records to be self-describing."""
    meta = read_meta(cache)
    standardize = meta.get("standardize")
    if standardize is None and meta.get("source"):
        try:
            standardize = read_meta(meta["source"]).get("standardize")
        except BbmnError:
            standardize = None
    return {"standardize": standardize, "featurizer_version": meta.get("featurizer_version")}


def row_batches(rows: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Positions of ``rows`` (input row numbers, increasing) grouped by ``row // batch_size``.

    A molecule's batch is then fixed by its input row alone, whatever the chunk it was read in
    (chunks start at multiples of ``batch_size``): CPU kernels sum in an order that depends on a
    row's position in the batch, so this is what makes results independent of chunking.
    """
    if len(rows) == 0:
        return []
    groups = np.asarray(rows) // max(1, batch_size)
    cuts = np.flatnonzero(np.diff(groups)) + 1
    return np.split(np.arange(len(rows)), cuts)


def aligned_chunk_rows(chunk_rows: int, batch_size: int) -> int:
    """``chunk_rows`` rounded up to a multiple of ``batch_size`` (see :func:`row_batches`)."""
    batch_size = max(1, batch_size)
    return max(1, -(-chunk_rows // batch_size)) * batch_size


def kept_names(keep: Sequence[str], taken: Sequence[str]) -> list[str]:
    """Output names of kept input columns: their own, or ``<name>_input`` where an output column
    already has the name (e.g. a label column kept beside its prediction)."""
    return [f"{k}_input" if k in taken else k for k in keep]

