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
writes one Parquet row group per chunk, so memory stays bounded whatever the file size.

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

from bbmn.bench import peak_rss_mb
from bbmn.data.clean import META_KEY
from bbmn.data.graph import GraphArrays
from bbmn.errors import BbmnError
from bbmn.inference.predict import load_model_file
from bbmn.inference.prepare import (OK, Prepared, aligned_chunk_rows, kept_names, prepare, read_chunks,
                                    row_batches, standardize_options)
from bbmn.io import atomic_path, sha256_file
from bbmn.parallel import ordered_map

log = logging.getLogger(__name__)

VIEWS = ("atom", "bond")
LAYOUTS = ("concat", "separate")
KINDS = ("batmannet-pretrained", "batmannet-finetuned")


class Encoder:
    """The two pooled views of a checkpoint's encoders.

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
        import functools

        import torch

        from bbmn.models.batmannet import BatmanNet
        from bbmn.models.finetune import BatmanNetFinetune
        from bbmn.models.views import pretrained_views_of
        from bbmn.train.device import resolve_device

        self.device = resolve_device(device)  # a bad --device fails before the model is read
        saved = load_model_file(checkpoint, KINDS, "bbmn embed")
        self.kind = saved["kind"]
        if saved["model_config"].get("inputs") == "descriptors":
            raise BbmnError(f"{checkpoint} is a descriptors-only model: it has no encoder to embed with")
        cls = BatmanNet if self.kind == "batmannet-pretrained" else BatmanNetFinetune
        self.model = cls.from_config(saved["model_config"])
        self.model.load_state_dict(saved["model"])
        self.model.eval().to(self.device)
        self._pretrained_views = functools.partial(pretrained_views_of, self.model)
        if compile and self.kind == "batmannet-finetuned":
            self.model.enable_compile()
        elif compile:
            self._pretrained_views = torch.compile(self._pretrained_views, dynamic=True, fullgraph=True)
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

        from bbmn.models.views import GraphInputs
        from bbmn.train.device import to_device

        atom = np.zeros((len(graphs), self.hidden), np.float32)
        bond = np.zeros((len(graphs), self.hidden), np.float32)
        with torch.inference_mode():
            for idx in row_batches(graphs.row, self.batch_size):
                batch = to_device(graphs.take(idx).to_batch(), self.device)
                if self.kind == "batmannet-finetuned":
                    a, b = self.model.views(batch)
                else:
                    a, b = self._pretrained_views(GraphInputs.of(batch))
                atom[idx], bond[idx] = a.cpu().numpy(), b.cpu().numpy()
        return atom, bond

    def describe(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "checkpoint_sha256": sha256_file(self.checkpoint),
                "kind": self.kind, "hidden": self.hidden, "standardize": self.options.as_dict(),
                "standardize_source": self.options_source}


def _prepare_chunk(args: tuple) -> Prepared:
    (rows, smiles, malformed, extra), options = args
    return prepare(smiles, options, descriptors=False, rows=rows, malformed=malformed, extra=extra)


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
    cols = {"row": pa.array(prepared.rows, pa.int64()), "input": pa.array(prepared.inputs, pa.string()),
            "smiles": pa.array(prepared.smiles, pa.string()),
            "status": pa.array(prepared.status, pa.string()),
            "detail": pa.array(prepared.detail, pa.string())}
    for j, name in enumerate(kept_names(keep, [*cols, "embedding", "atom_view", "bond_view"])):
        cols[name] = pa.array([e[j] if j < len(e) else "" for e in prepared.extra], pa.string())
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
    if layout not in LAYOUTS:
        raise BbmnError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    started = time.perf_counter()
    encoder = Encoder(checkpoint, standardize, batch_size, threads, device, compile)
    meta = {"step": "embed", "input": str(input_path), "layout": layout, "views": list(VIEWS),
            **encoder.describe()}
    chunks = read_chunks(input_path, smiles_col, keep, aligned_chunk_rows(chunk_rows, batch_size),
                         encoding=encoding)
    n = n_ok = 0
    reasons: dict[str, int] = {}
    with atomic_path(out) as tmp:
        writer = None
        try:
            for prepared in ordered_map(_prepare_chunk, ((c, encoder.options) for c in chunks), workers):
                atom, bond = encoder.views(prepared.graphs)
                table = embeddings_table(prepared, atom, bond, layout, keep)
                if writer is None:
                    schema = table.schema.with_metadata({META_KEY: json.dumps(meta)})
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd")
                writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
                n += len(prepared)
                n_ok += int(prepared.ok.sum())
                for s in prepared.status:
                    if s != OK:
                        reasons[s] = reasons.get(s, 0) + 1
            if writer is None:  # an input with a header and no rows: an empty table, same columns
                empty = prepare([], encoder.options, descriptors=False)
                table = embeddings_table(empty, np.zeros((0, encoder.hidden), np.float32),
                                         np.zeros((0, encoder.hidden), np.float32), layout, keep)
                writer = pq.ParquetWriter(tmp, table.schema.with_metadata({META_KEY: json.dumps(meta)}))
                writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
        finally:
            if writer is not None:
                writer.close()
    seconds = time.perf_counter() - started
    summary = {"rows": n, "ok": n_ok, "failed": n - n_ok, "reasons": reasons, "layout": layout,
               "dim": 2 * encoder.hidden, "seconds": round(seconds, 2),
               "molecules_per_s": round(n / max(seconds, 1e-9), 1),
               "peak_rss_mb": round(peak_rss_mb(), 1),
               "workers_peak_rss_mb": round(peak_rss_mb(children=True), 1) if workers else 0.0,
               "out": str(out)}
    if n - n_ok:
        log.warning("embed: %d of %d rows could not be embedded (%s); they are in %s with their "
                    "reason and NaN embeddings", n - n_ok, n, json.dumps(reasons), out)
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
