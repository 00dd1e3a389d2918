"""Scoring new molecules with fine-tuned models: one run, or an ensemble of seed runs.

A fine-tuned run's ``model.pt`` holds everything the score needs: the model's sizes and weights,
the tasks and task type, the descriptor scaler and (regression) target scaler fitted on the
training part, and how the training molecules were standardized. :class:`Predictor` applies them
to new SMILES through :func:`bbmn.inference.prepare.prepare`, so a molecule of the test part gets
the same prediction as in the run's ``predictions.csv``.

Output, one row per input row and in input order: ``row``, ``input``, ``smiles`` (canonical),
``status`` (``ok`` or the reason), ``detail``, kept input columns (``<name>_input`` if the name is taken), then per task ``<task>``
(probability or value in the label's units; the mean over the ensemble's members) and, with more
than one member, ``<task>_std`` (population standard deviation over the members).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from bbmn.data.labelled import ColumnScaler
from bbmn.errors import BbmnError
from bbmn.inference.prepare import Prepared, prepare, row_batches, standardize_options
from bbmn.inference.stream import row_columns, stream_file
from bbmn.io import sha256_file

log = logging.getLogger(__name__)

FINETUNED = "batmannet-finetuned"
OUTPUT_FORMATS = ("csv", "parquet")


@dataclass
class Member:
    """One fine-tuned model, ready to score.

    Attributes:
        path: its ``model.pt``.
        model: the network, in eval mode.
        tasks, task_type: what it predicts.
        descriptor_scaler: the training part's descriptor standardization.
        target_scaler: the training part's target standardization (regression), else None.
        standardize: the recorded standardization options (None if the run predates recording).
        info: dataset, seed, init, metric, best_epoch as recorded.
        card: the model card (:mod:`bbmn.train.card`; None for a file written before cards).
    """

    path: Path
    model: object
    tasks: list[str]
    task_type: str
    descriptor_scaler: ColumnScaler
    target_scaler: ColumnScaler | None
    standardize: dict | None
    info: dict
    card: dict | None = None


def model_files(paths: Sequence[str | Path]) -> list[Path]:
    """The ``model.pt`` files named by ``paths``: a file, a run directory, or a directory whose
    ``seed*/`` subdirectories are runs (an ensemble over seeds), in sorted order.

    Raises:
        BbmnError: if a path holds no fine-tuned model.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / "model.pt").is_file():
            found.append(p / "model.pt")
        elif p.is_dir() and sorted(p.glob("*/model.pt")):
            found += sorted(p.glob("*/model.pt"))
        else:
            raise BbmnError(f"no fine-tuned model at {p}: give a model.pt, a run directory holding "
                            f"one, or a directory of seed runs (seed*/model.pt)")
    return found


def load_member(path: str | Path) -> Member:
    """Load a fine-tuned ``model.pt`` (``bbmn finetune``) for scoring.

    Raises:
        BbmnError: if the file is not a fine-tuned BatmanNet model.
    """
    from bbmn.models.embedding import model_from_saved

    saved = load_model_file(path, (FINETUNED,), "bbmn predict")
    return Member(path=Path(path), model=model_from_saved(saved), tasks=list(saved["tasks"]),
                  task_type=saved["task_type"],
                  descriptor_scaler=ColumnScaler.from_dict(saved["descriptor_scaler"]),
                  target_scaler=(ColumnScaler.from_dict(saved["target_scaler"])
                                 if saved.get("target_scaler") else None),
                  standardize=saved.get("standardize"),
                  info={k: saved.get(k) for k in ("dataset", "seed", "init", "metric", "best_epoch")},
                  card=saved.get("card"))


def load_model_file(path: str | Path, kinds: Sequence[str] = (FINETUNED,), use: str = "bbmn predict") -> dict:
    """A ``model.pt`` as a dict; BbmnError when it is missing, unreadable, or not a model ``use``
    can read (of another kind than ``kinds``, another featurizer...: :func:`bbmn.train.card.check_model`)."""
    from bbmn.train.card import check_model
    from bbmn.train.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise BbmnError(f"model not found: {path}")
    saved = load_checkpoint(path, what="model")
    check_model(saved, path, kinds, use)
    return saved


class Predictor:
    """Scores SMILES with one fine-tuned model or the mean of several (an ensemble).

    Args:
        members: the loaded models; they must predict the same tasks of the same task type and
            have been trained on molecules standardized the same way.
        standardize: a profile name that replaces the recorded standardization (None = recorded).
        batch_size: molecules per forward pass.
        threads: torch intra-op threads (0 = torch's default).
        device: where the models run (``auto``, ``cpu``, ``cuda``, ``cuda:N``); they are moved
            there.
    """

    def __init__(self, members: Sequence[Member], standardize: str | None = None,
                 batch_size: int = 256, threads: int = 0, device: str = "auto") -> None:
        from bbmn.train.device import resolve_device

        if not members:
            raise BbmnError("no model to predict with")
        first = members[0]
        for m in members[1:]:
            if (m.tasks, m.task_type) != (first.tasks, first.task_type):
                raise BbmnError(f"{m.path} predicts {m.task_type} tasks {m.tasks}, {first.path} "
                                f"{first.task_type} tasks {first.tasks}: an ensemble needs the same tasks")
            if standardize is None and m.standardize != first.standardize:
                raise BbmnError(f"{m.path} and {first.path} were trained on differently standardized "
                                f"molecules; pass --standardize to choose one profile")
        self.members = list(members)
        self.device = resolve_device(device)
        for m in self.members:
            m.model.to(self.device)
        self.tasks, self.task_type = first.tasks, first.task_type
        self.options, self.options_source = standardize_options(first.standardize, FINETUNED,
                                                                standardize, str(first.path))
        self.batch_size, self.threads = batch_size, threads

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], **kwargs) -> Predictor:
        return cls([load_member(p) for p in model_files(paths)], **kwargs)

    @property
    def columns(self) -> list[str]:
        """The prediction columns: ``<task>``, then ``<task>_std`` for each task of an ensemble."""
        cols = list(self.tasks)
        if len(self.members) > 1:
            cols += [f"{t}_std" for t in self.tasks]
        return cols

    def describe(self) -> dict:
        return {"models": [str(m.path) for m in self.members],
                "members": [m.info for m in self.members], "tasks": self.tasks,
                "task_type": self.task_type, "standardize": self.options.as_dict(),
                "standardize_source": self.options_source}

    def score(self, prepared: Prepared) -> np.ndarray:
        """``(n, columns)`` predictions of a prepared chunk; NaN on the rows that failed."""
        import torch

        from bbmn.train.device import to_device

        if self.threads:
            torch.set_num_threads(self.threads)
        n_ok = len(prepared.graphs)
        per_member = np.zeros((len(self.members), n_ok, len(self.tasks)))
        for k, m in enumerate(self.members):
            desc = m.descriptor_scaler.transform(np.nan_to_num(prepared.descriptors.astype(np.float64),
                                                               nan=0.0, posinf=0.0, neginf=0.0))
            with torch.inference_mode():
                for idx in row_batches(prepared.graphs.row, self.batch_size):
                    batch = to_device(prepared.graphs.take(idx).to_batch(), self.device)
                    pred = m.model.predict(batch, to_device(torch.from_numpy(desc[idx]), self.device))
                    pred = pred.cpu().numpy().astype(np.float64)
                    per_member[k, idx] = m.target_scaler.inverse(pred) if m.target_scaler else pred
        out = np.full((len(prepared), len(self.columns)), np.nan)
        ok = prepared.ok
        out[ok, :len(self.tasks)] = per_member.mean(axis=0)
        if len(self.members) > 1:
            out[ok, len(self.tasks):] = per_member.std(axis=0)
        return out

    def predict_smiles(self, smiles: Sequence[str]) -> tuple[Prepared, np.ndarray]:
        """Prepare and score a list of SMILES (rows numbered 0..n-1)."""
        prepared = prepare(list(smiles), self.options, descriptors=True)
        return prepared, self.score(prepared)


def predictions_table(prepared: Prepared, values: np.ndarray, columns: Sequence[str],
                      keep: Sequence[str] = ()) -> pa.Table:
    """One output table of a chunk: the row's identity and status, kept columns, predictions."""
    cols = row_columns(prepared, keep, columns)
    for j, name in enumerate(columns):
        cols[name] = pa.array(values[:, j], pa.float64())
    return pa.table(cols)


def output_format(path: str | Path, fmt: str | None = None) -> str:
    fmt = fmt or ("parquet" if str(path).lower().endswith((".parquet", ".pq")) else "csv")
    if fmt not in OUTPUT_FORMATS:
        raise BbmnError(f"unknown output format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def predict_file(models: Sequence[str | Path], input_path: str | Path, out: str | Path,
                 smiles_col: str = "smiles", keep: Sequence[str] = (), fmt: str | None = None,
                 standardize: str | None = None, batch_size: int = 256, chunk_rows: int = 2048,
                 workers: int = 0, threads: int = 0, encoding: str = "utf-8-sig",
                 device: str = "auto") -> dict:
    """Score every row of ``input_path`` with ``models`` (one run or an ensemble) into ``out``.

    Reads and writes in chunks of ``chunk_rows``; ``workers`` processes prepare chunks while this
    one scores (0 = prepare here) on ``device``. Returns a summary: rows, ok, failed, reasons,
    seconds, models.
    """
    started = time.perf_counter()
    predictor = Predictor.from_paths(models, standardize=standardize, batch_size=batch_size,
                                     threads=threads, device=device)
    fmt = output_format(out, fmt)
    meta = {"step": "predict", "input": str(input_path), "input_sha256": sha256_file(input_path)
            if Path(input_path).is_file() else None, **predictor.describe()}

    def to_table(prepared: Prepared) -> pa.Table:
        return predictions_table(prepared, predictor.score(prepared), predictor.columns, keep)

    tally = stream_file(input_path, out, to_table, predictor.options, metadata=meta, fmt=fmt,
                        descriptors=True, smiles_col=smiles_col, keep=keep, chunk_rows=chunk_rows,
                        batch_size=batch_size, workers=workers, encoding=encoding)
    summary = {**tally.counts(), "models": len(predictor.members), "tasks": predictor.tasks,
               "standardize": predictor.options_source,
               "seconds": round(time.perf_counter() - started, 2), "out": str(out)}
    if tally.failed:
        log.warning("predict: %d of %d rows could not be scored (%s); they are in %s with their reason",
                    tally.failed, tally.rows, json.dumps(tally.reasons), out)
    return summary
