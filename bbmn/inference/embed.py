"""Molecule embeddings (fingerprints) from a pre-trained or fine-tuned BatmanNet encoder.

Two views per molecule, each ``h`` wide (h = 100 at the spec's size), computed on the full,
unmasked graph without positional code (as fine-tuning runs the encoders, spec section 9):

``atom``
    fine-tuned model: the atom-from-atom readout mean-pooled over the molecule's atoms (what the
    first head reads, before the descriptors are appended). Pre-trained model: the node branch's
    encoder output (blocks + its pre-trained aggregate-to-self) mean-pooled over the atoms.
``bond``
    fine-tuned model: the atom-from-bond readout, mean-pooled (what the second head reads).
    Pre-trained model: the edge branch's encoder output summed into each atom over its incoming
    edges (fine-tuning's atom-from-bond aggregation), mean-pooled over the atoms.

A pre-trained checkpoint has no trained atom-from-bond readout (fine-tuning starts it fresh), so
its views use only the weights pre-training trained. :func:`embed_file` streams: it reads the
input in chunks, prepares them (optionally in worker processes), encodes them in batches and
writes one Parquet row group per chunk (:func:`bbmn.inference.stream.stream_file`), so memory stays
bounded whatever the file size. Which views a model gives is :mod:`bbmn.models.embedding`'s to say.

Output columns: ``row``, ``input``, ``smiles`` (canonical), ``status`` (``ok`` or the reason),
``detail``, kept input columns, then ``embedding`` (``fixed_size_list<float32>[2h]``, the atom
view then the bond view; layout ``concat``) or ``atom_view`` and ``bond_view`` (``[h]`` each;
layout ``separate``). Rows that failed have all-NaN embeddings.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bbmn.data.graph import GraphArrays
from bbmn.errors import BbmnError
from bbmn.inference.predict import load_model_file
from bbmn.inference.prepare import Prepared, row_batches, standardize_options
from bbmn.inference.stream import row_columns, stream_file
from bbmn.io import sha256_file

log = logging.getLogger(__name__)

VIEWS = ("atom", "bond")
LAYOUTS = ("concat", "separate")


class Encoder:
    """The two pooled views of a checkpoint's encoders (:func:`bbmn.models.embedding.embedding_views`),
    run on ``device`` in batches fixed by the input rows.

    Args:
        checkpoint: ``bbmn pretrain``'s or ``bbmn finetune``'s ``model.pt``.
        standardize: a profile name replacing the recorded standardization (None = recorded, or
            the profile of the checkpoint's kind of training data).
        batch_size: molecules per forward pass.
        threads: torch intra-op threads (0 = torch's default).
        device: where the encoder runs (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        compile: run the encoders through ``torch.compile`` (a one-off compile per process).
    """

    def __init__(self, checkpoint: str | Path, standardize: str | None = None,
                 batch_size: int = 256, threads: int = 0, device: str = "auto",
                 compile: bool = False) -> None:
        import torch

        from bbmn.models.embedding import MODEL_CLASSES, embedding_views, model_from_saved
        from bbmn.train.device import resolve_device

        self.device = resolve_device(device)  # a bad --device fails before the model is read
        saved = load_model_file(checkpoint, tuple(MODEL_CLASSES), "bbmn embed")
        self.kind = saved["kind"]
        if saved["model_config"].get("inputs") == "descriptors":
            raise BbmnError(f"{checkpoint} is a descriptors-only model: it has no encoder to embed with")
        self.model = model_from_saved(saved).to(self.device)
        self._views = embedding_views(self.model, compile)
        self.hidden = int(saved["model_config"].get("hidden", 100))
        self.checkpoint = Path(checkpoint)
        self.options, self.options_source = standardize_options(saved.get("standardize"), self.kind,
                                                                standardize, str(checkpoint))
        self.batch_size = batch_size
        if threads:
            torch.set_num_threads(threads)

    def views(self, graphs: GraphArrays) -> tuple[np.ndarray, np.ndarray]:
        """``(n, h)`` float32 atom and bond views of ``graphs``, in batches of the molecules whose
        input rows share ``row // batch_size`` (:func:`~bbmn.inference.prepare.row_batches`)."""
        import torch

        from bbmn.train.device import to_device

        atom = np.zeros((len(graphs), self.hidden), np.float32)
        bond = np.zeros((len(graphs), self.hidden), np.float32)
        with torch.inference_mode():
            for idx in row_batches(graphs.row, self.batch_size):
                a, b = self._views(to_device(graphs.take(idx).to_batch(), self.device))
                atom[idx], bond[idx] = a.cpu().numpy(), b.cpu().numpy()
        return atom, bond

    def describe(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "checkpoint_sha256": sha256_file(self.checkpoint),
                "kind": self.kind, "hidden": self.hidden, "standardize": self.options.as_dict(),
                "standardize_source": self.options_source}


def _fixed_lists(values: np.ndarray, ok: np.ndarray, width: int) -> pa.Array:
    """``(n_ok, width)`` values spread over ``len(ok)`` rows; all NaN where not ``ok`` (Parquet
    readers mishandle null fixed-size lists, so failed rows are NaN vectors, not nulls)."""
    full = np.full((len(ok), width), np.nan, np.float32)
    full[ok] = values
    return pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), width)


def embeddings_table(prepared: Prepared, atom: np.ndarray, bond: np.ndarray, layout: str = "concat",
                     keep: Sequence[str] = ()) -> pa.Table:
    """One output table of a chunk (columns in the module docstring)."""
    ok = prepared.ok
    cols = row_columns(prepared, keep, ("embedding", "atom_view", "bond_view"))
    h = atom.shape[1]
    if layout == "concat":
        cols["embedding"] = _fixed_lists(np.concatenate([atom, bond], axis=1), ok, 2 * h)
    else:
        cols["atom_view"] = _fixed_lists(atom, ok, h)
        cols["bond_view"] = _fixed_lists(bond, ok, h)
    return pa.table(cols)


def embed_file(checkpoint: str | Path, input_path: str | Path, out: str | Path,
               smiles_col: str = "smiles", keep: Sequence[str] = (), layout: str = "concat",
               standardize: str | None = None, batch_size: int = 256, chunk_rows: int = 4096,
               workers: int = 0, threads: int = 0, encoding: str = "utf-8-sig",
               device: str = "auto", compile: bool = False) -> dict:
    """Embed every row of ``input_path`` into the Parquet file ``out`` (one row group per chunk).

    ``workers`` processes prepare chunks (standardize + featurize) while this one encodes on
    ``device`` (0 = prepare here); ``compile`` runs the encoders through ``torch.compile``.
    Returns a summary: rows, ok, failed, reasons, seconds, molecules_per_s, peak_rss_mb (this
    process) and workers_peak_rss_mb.
    """
    from bbmn.train.runtime import peak_rss_mb

    if layout not in LAYOUTS:
        raise BbmnError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    started = time.perf_counter()
    encoder = Encoder(checkpoint, standardize, batch_size, threads, device, compile)
    meta = {"step": "embed", "input": str(input_path), "layout": layout, "views": list(VIEWS),
            **encoder.describe()}

    def to_table(prepared: Prepared) -> pa.Table:
        return embeddings_table(prepared, *encoder.views(prepared.graphs), layout, keep)

    tally = stream_file(input_path, out, to_table, encoder.options, metadata=meta, smiles_col=smiles_col,
                        keep=keep, chunk_rows=chunk_rows, batch_size=batch_size, workers=workers,
                        encoding=encoding)
    seconds = time.perf_counter() - started
    summary = {**tally.counts(), "layout": layout, "dim": 2 * encoder.hidden, "seconds": round(seconds, 2),
               "molecules_per_s": round(tally.rows / max(seconds, 1e-9), 1),
               "peak_rss_mb": round(peak_rss_mb(), 1),
               "workers_peak_rss_mb": round(peak_rss_mb(children=True), 1) if workers else 0.0,
               "out": str(out)}
    if tally.failed:
        log.warning("embed: %d of %d rows could not be embedded (%s); they are in %s with their "
                    "reason and NaN embeddings", tally.failed, tally.rows, json.dumps(tally.reasons), out)
    return summary


def read_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2h)`` float32 embeddings (NaN rows where the molecule failed) and the ``status``
    column of an ``embed`` output with layout ``concat`` or ``separate``."""
    table = pq.read_table(path)
    if "embedding" in table.column_names:
        columns = [table.column("embedding")]
    else:
        columns = [table.column("atom_view"), table.column("bond_view")]
    parts = []
    for col in columns:
        arr = col.combine_chunks()
        parts.append(arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), arr.type.list_size))
    return np.concatenate(parts, axis=1), np.array(table.column("status").to_pylist())
