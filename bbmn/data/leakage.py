"""Leakage check: which validation and test molecules of the downstream sets the pre-training
corpus already holds, by InChIKey; and a corpus cache without them.

Molecules are compared in the corpus's form: the corpus's cleaned SMILES are already standardized
with its profile (``standard``: largest organic fragment, normalized, neutralized), and each
dataset molecule is standardized with the same options before its InChIKey is taken, so a salt
in BBBP matches its parent in ZINC. Two molecules match when their full InChIKeys are equal
(stereo and isotopes included); the report also counts skeleton matches (the first, connectivity
block of the key), which flag stereoisomers of a corpus molecule.

Three steps (``bbmn leakage keys | check | filter``):

1. :func:`corpus_keys`: the InChIKey of every corpus molecule, once (the corpus is large);
2. :func:`check`: per dataset, split seed and part (``val``, ``test``): molecules, overlapping
   molecules and their share, as CSV and Markdown, plus the per-molecule list;
3. :func:`filter_cache`: the corpus's graph cache without every molecule whose key is in the
   per-molecule list (used for pre-training when ``leakage.drop_from_corpus`` is on).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rdkit import Chem, RDLogger

from bbmn.chem.standardize import StandardizeOptions, Standardizer
from bbmn.data.clean import META_KEY, read_meta
from bbmn.data.splits import load_split
from bbmn.errors import BbmnError
from bbmn.io import atomic_path, sha256_file, write_json
from bbmn.parallel import ordered_map

RDLogger.DisableLog("rdApp.*")
log = logging.getLogger(__name__)

PARTS = ("val", "test")
SUMMARY_COLUMNS = ("dataset", "seed", "part", "molecules", "overlap", "overlap_pct",
                   "skeleton_overlap", "skeleton_overlap_pct")
MOLECULE_COLUMNS = ("dataset", "seed", "part", "row", "smiles", "inchikey", "corpus_row",
                    "corpus_smiles")


def inchikeys(smiles: Sequence[str], options: StandardizeOptions | None = None) -> list[str]:
    """InChIKey of each SMILES after ``options`` (none: as parsed); '' where RDKit fails."""
    standardize = Standardizer(options) if options is not None else None
    keys = []
    for s in smiles:
        mol = standardize(s).mol if standardize is not None else Chem.MolFromSmiles(s)
        key = Chem.MolToInchiKey(mol) if mol is not None else ""
        keys.append(key or "")
    return keys


def _keys_chunk(args: tuple[np.ndarray, list[str]]) -> tuple[np.ndarray, list[str], list[str]]:
    rows, smiles = args
    return rows, smiles, inchikeys(smiles)


def corpus_keys(clean_parquet: str | Path, out: str | Path, workers: int = 1,
                chunk_rows: int = 4096) -> dict:
    """Write ``row``, ``smiles``, ``inchikey`` of every molecule of a cleaned corpus to ``out``.

    The SMILES are the cleaned ones (already standardized); the standardization options are
    copied into the file's metadata, for :func:`check` to apply to the datasets.
    """
    started = time.perf_counter()
    clean_meta = read_meta(clean_parquet)
    meta = {"step": "inchikeys", "source": str(clean_parquet),
            "source_sha256": sha256_file(clean_parquet), "standardize": clean_meta.get("standardize")}
    schema = pa.schema([pa.field("row", pa.int64()), pa.field("smiles", pa.string()),
                        pa.field("inchikey", pa.string())], metadata={META_KEY: json.dumps(meta)})
    source = pq.ParquetFile(clean_parquet)
    work = ((b.column("row").to_numpy(), b.column("smiles").to_pylist())
            for b in source.iter_batches(batch_size=chunk_rows, columns=["row", "smiles"]))
    n = failed = 0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for rows, smiles, keys in ordered_map(_keys_chunk, work, workers if workers > 1 else 0):
            writer.write_table(pa.Table.from_arrays([pa.array(rows, pa.int64()), pa.array(smiles, pa.string()),
                                                     pa.array(keys, pa.string())], schema=schema))
            n += len(rows)
            failed += sum(1 for k in keys if not k)
    summary = {"molecules": n, "no_key": failed, "seconds": round(time.perf_counter() - started, 2)}
    log.info("inchikeys %s: %s", out, json.dumps(summary))
    return summary


@dataclass
class DatasetParts:
    """A downstream dataset to check: its cleaned table and its split files (one per seed)."""

    name: str
    clean: Path
    splits: list[Path]


def _read_corpus_keys(path: str | Path) -> tuple[pa.Table, dict]:
    meta = read_meta(path)
    if meta.get("step") != "inchikeys":
        raise BbmnError(f"{path} is not a corpus key file (written by 'bbmn {meta.get('step')}'); "
                        f"make one with bbmn leakage keys")
    return pq.read_table(path), meta


def check(keys_path: str | Path, datasets: Sequence[DatasetParts], out_dir: str | Path) -> dict:
    """Overlap of each dataset's validation and test parts with the corpus; writes into ``out_dir``
    ``summary.csv``, ``summary.md`` and ``molecules.csv`` (one line per overlapping molecule,
    part and seed). Returns ``{"rows": [...summary rows], "overlapping_keys": n}``."""
    out_dir = Path(out_dir)
    corpus, meta = _read_corpus_keys(keys_path)
    options = StandardizeOptions(**meta["standardize"]) if meta.get("standardize") else None
    corpus_key = corpus.column("inchikey").combine_chunks()
    corpus_skeleton = pc.utf8_slice_codeunits(corpus_key, 0, 14)
    summary_rows, molecule_rows = [], []
    for ds in datasets:
        table = pq.read_table(ds.clean, columns=["row", "smiles"])
        rows = table.column("row").to_numpy()
        smiles = table.column("smiles").to_pylist()
        keys = pa.array(inchikeys(smiles, options), pa.string())
        position = {int(r): i for i, r in enumerate(rows)}
        for split_path in ds.splits:
            split = load_split(split_path)
            seed = _split_seed(split_path)
            for part in PARTS:
                idx = np.array([position[int(r)] for r in split[part] if int(r) in position], dtype=np.int64)
                if len(idx) != len(split[part]):
                    raise BbmnError(f"split {split_path} names rows that are not in {ds.clean}: "
                                    f"was it made from this cleaned table?")
                part_keys = keys.take(pa.array(idx))
                found = pc.index_in(part_keys, value_set=corpus_key).to_numpy(zero_copy_only=False)
                found = np.where(np.asarray(pc.equal(part_keys, "").fill_null(True)), np.nan, found)
                hit = ~np.isnan(found.astype(np.float64))
                skeleton = pc.is_in(pc.utf8_slice_codeunits(part_keys, 0, 14),
                                    value_set=corpus_skeleton).to_numpy(zero_copy_only=False)
                skeleton &= np.asarray(pc.not_equal(part_keys, "").fill_null(False))
                n = len(idx)
                summary_rows.append({"dataset": ds.name, "seed": seed, "part": part, "molecules": n,
                                     "overlap": int(hit.sum()),
                                     "overlap_pct": round(100 * hit.sum() / n, 2) if n else 0.0,
                                     "skeleton_overlap": int(skeleton.sum()),
                                     "skeleton_overlap_pct": round(100 * skeleton.sum() / n, 2) if n else 0.0})
                for j in np.flatnonzero(hit):
                    c = int(found[j])
                    molecule_rows.append({"dataset": ds.name, "seed": seed, "part": part,
                                          "row": int(rows[idx[j]]), "smiles": smiles[idx[j]],
                                          "inchikey": part_keys[j].as_py(),
                                          "corpus_row": int(corpus.column("row")[c].as_py()),
                                          "corpus_smiles": corpus.column("smiles")[c].as_py()})
    _write_csv(out_dir / "summary.csv", SUMMARY_COLUMNS, summary_rows)
    _write_csv(out_dir / "molecules.csv", MOLECULE_COLUMNS, molecule_rows)
    with atomic_path(out_dir / "summary.md") as tmp:
        tmp.write_text(markdown(summary_rows, meta, len({m["inchikey"] for m in molecule_rows})))
    result = {"rows": summary_rows, "overlapping_keys": len({m["inchikey"] for m in molecule_rows})}
    log.info("leakage: %d overlapping molecules (distinct InChIKeys) in the validation and test "
             "parts", result["overlapping_keys"])
    return result


def _split_seed(path: str | Path) -> int | None:
    from bbmn.io import read_json

    return read_json(path).get("seed")


def _write_csv(path: Path, columns: Sequence[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)


def markdown(rows: list[dict], meta: dict, distinct: int) -> str:
    """The summary as a Markdown table with a caption line."""
    lines = [f"Pre-training corpus `{Path(meta.get('source', '?')).stem}` vs the validation and test "
             f"parts: molecules whose InChIKey (after the corpus's standardization) is in the corpus. "
             f"{distinct} distinct overlapping molecules; skeleton = same first InChIKey block "
             f"(connectivity; stereoisomers included).", "",
             "| dataset | seed | part | molecules | overlap | % | skeleton overlap | % |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['seed']} | {r['part']} | {r['molecules']} | {r['overlap']} "
                     f"| {r['overlap_pct']:.2f} | {r['skeleton_overlap']} | {r['skeleton_overlap_pct']:.2f} |")
    return "\n".join(lines) + "\n"


def filter_cache(cache: str | Path, keys_path: str | Path, molecules_csv: str | Path,
                 out: str | Path, summary: str | Path | None = None) -> dict:
    """Copy the corpus graph cache ``cache`` to ``out`` without the molecules whose InChIKey is
    listed in ``molecules_csv`` (:func:`check`'s per-molecule list), row group by row group."""
    corpus, _ = _read_corpus_keys(keys_path)
    with open(molecules_csv, newline="") as fh:
        drop_keys = pa.array(sorted({r["inchikey"] for r in csv.DictReader(fh) if r["inchikey"]}),
                             pa.string())
    drop_rows = corpus.filter(pc.is_in(corpus.column("inchikey"), value_set=drop_keys)).column("row")
    drop_rows = drop_rows.combine_chunks()
    source = pq.ParquetFile(cache)
    meta = read_meta(cache)
    if meta.get("step") != "featurize":
        raise BbmnError(f"{cache} is not a graph cache (written by 'bbmn {meta.get('step')}')")
    meta["leakage_filter"] = {"keys": str(keys_path), "molecules": str(molecules_csv),
                              "dropped_keys": len(drop_keys)}
    schema = source.schema_arrow.with_metadata({META_KEY: json.dumps(meta)})
    kept = dropped = 0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for i in range(source.num_row_groups):
            table = source.read_row_group(i)
            keep = pc.invert(pc.is_in(table.column("row"), value_set=drop_rows))
            part = table.filter(keep)
            kept += part.num_rows
            dropped += table.num_rows - part.num_rows
            if part.num_rows:
                writer.write_table(part.replace_schema_metadata(schema.metadata))
    result = {"molecules": kept + dropped, "kept": kept, "dropped": dropped,
              "dropped_keys": len(drop_keys)}
    if summary is not None:
        write_json(summary, result)
    log.info("leakage filter %s: %s", out, json.dumps(result))
    return result
