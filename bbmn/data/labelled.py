"""A labelled dataset ready for fine-tuning: graphs, descriptors and labels of train / val / test.

:func:`load_labelled` joins three files made by earlier steps, all keyed by the molecule's source
data row: the graph cache (``bbmn featurize``), the descriptors (``bbmn descriptors``) and a split
(``bbmn split``). Everything the model sees is fitted on the training part only:

* descriptors are standardized with the training part's mean and standard deviation (a constant
  column gets standard deviation 1, so it becomes 0 everywhere instead of NaN), or, with
  ``descriptor_scaling="none"``, passed as they are (RDKit2DNormalized values are already CDF-scaled
  to [0, 1], which is how GROVER's README fine-tunes them);
* regression targets are standardized per task with the mean and standard deviation of the
  training part's present labels; predictions are mapped back with the same scaler.

The scalers are plain arrays with ``as_dict`` / ``from_dict``, stored in the fine-tuned model so
that new molecules are scored exactly as the test part was.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bbmn.data.cache import GraphCache
from bbmn.data.descriptors import read_descriptors
from bbmn.data.graph import GraphArrays
from bbmn.data.splits import PARTS, load_split
from bbmn.errors import BbmnError
from bbmn.io import read_json

#: a column whose standard deviation is below this is treated as constant (scale 1)
MIN_STD = 1e-8


@dataclass
class ColumnScaler:
    """Per-column ``(x - mean) / std``, fitted on one part of the data.

    Attributes:
        mean: ``(D,)`` column means.
        std: ``(D,)`` column standard deviations (1 where a column is constant).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def identity(cls, width: int) -> ColumnScaler:
        """A scaler that changes nothing (mean 0, std 1)."""
        return cls(mean=np.zeros(width), std=np.ones(width))

    @classmethod
    def fit(cls, values: np.ndarray, ignore_nan: bool = False) -> ColumnScaler:
        """Fit on ``(n, D)`` values (with ``ignore_nan``, over each column's non-NaN entries)."""
        values = np.asarray(values, dtype=np.float64)
        mean = np.nanmean(values, axis=0) if ignore_nan else values.mean(axis=0)
        std = np.nanstd(values, axis=0) if ignore_nan else values.std(axis=0)
        std = np.where(np.isfinite(std) & (std >= MIN_STD), std, 1.0)
        return cls(mean=mean, std=std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardized ``float32`` copy (NaN stays NaN)."""
        return ((np.asarray(values, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Back to the original units (``float64``)."""
        return np.asarray(values, dtype=np.float64) * self.std + self.mean

    def as_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> ColumnScaler:
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), std=np.asarray(d["std"], dtype=np.float64))


@dataclass
class LabelledPart:
    """One part (train, val or test) of a labelled dataset, in the split file's order.

    Attributes:
        name: ``train``, ``val`` or ``test``.
        graphs: the molecules' codes; ``graphs.y`` are the labels (NaN = missing) and
            ``graphs.row`` the source rows.
        descriptors: ``(n, D)`` float32 descriptors, standardized with the training part's scaler.
        targets: ``(n, T)`` float32 what the loss compares with: labels for classification,
            standardized labels for regression (NaN = missing).
        smiles: the molecules' canonical SMILES.
    """

    name: str
    graphs: GraphArrays
    descriptors: np.ndarray
    targets: np.ndarray
    smiles: list[str]

    def __len__(self) -> int:
        return len(self.graphs)

    @property
    def labels(self) -> np.ndarray:
        """``(n, T)`` labels in their own units, NaN where missing."""
        return self.graphs.y

    @property
    def rows(self) -> np.ndarray:
        return self.graphs.row


@dataclass
class LabelledData:
    """Train, validation and test parts plus what was fitted on the training part.

    Attributes:
        train, val, test: the three parts.
        tasks: task names, in label-column order.
        task_type: ``classification`` or ``regression``.
        descriptor_scaler: fitted on the training part's descriptors.
        target_scaler: fitted on the training part's labels (regression only, else None).
        split: where the split came from: ``path``, ``method``, ``seed`` and the part sizes.
    """

    train: LabelledPart
    val: LabelledPart
    test: LabelledPart
    tasks: list[str]
    task_type: str
    descriptor_scaler: ColumnScaler
    target_scaler: ColumnScaler | None
    split: dict

    def part(self, name: str) -> LabelledPart:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def to_label_units(self, predictions: np.ndarray) -> np.ndarray:
        """Model-space predictions -> label units (de-standardized for regression)."""
        if self.target_scaler is None:
            return np.asarray(predictions, dtype=np.float64)
        return self.target_scaler.inverse(predictions)


def _positions(cache_rows: np.ndarray, wanted: np.ndarray, part: str, cache_path: Path) -> np.ndarray:
    """Cache positions of the source rows ``wanted`` (BbmnError naming the missing ones)."""
    order = np.argsort(cache_rows, kind="stable")
    pos = np.clip(np.searchsorted(cache_rows, wanted, sorter=order), 0, max(len(cache_rows) - 1, 0))
    found = (cache_rows[order[pos]] == wanted) if len(cache_rows) else np.zeros(len(wanted), bool)
    if not found.all():
        missing = wanted[~found]
        raise BbmnError(f"{len(missing)} source rows of the {part} part are not in the cache "
                        f"{cache_path} (e.g. {missing[:5].tolist()}): was the split made from "
                        f"the same cleaned table as the cache?")
    return order[pos]


#: how descriptors are scaled before the heads read them
DESCRIPTOR_SCALINGS = ("standardize", "none")


def load_labelled(cache_path: str | Path, descriptors_path: str | Path,
                  split_path: str | Path, descriptor_scaling: str = "standardize") -> LabelledData:
    """Join a graph cache, its descriptors and a split into standardized train / val / test parts.

    ``descriptor_scaling``: ``"standardize"`` (on the training part) or ``"none"``.

    Raises:
        BbmnError: if the cache has no labels, a split row is not in the cache, a part is empty,
            parts overlap, a task has no label in the training part, or a row has no descriptors.
    """
    cache_path, split_path = Path(cache_path), Path(split_path)
    cache = GraphCache(cache_path)
    if not cache.tasks:
        raise BbmnError(f"{cache_path} has no labels: fine-tuning needs a labelled dataset")
    if cache.task_type not in ("classification", "regression"):
        raise BbmnError(f"{cache_path} has no task type (classification or regression) in its metadata")
    split = load_split(split_path)
    for name in PARTS:
        if len(split[name]) == 0:
            raise BbmnError(f"the {name} part of split {split_path} is empty")
    seen = np.concatenate([split[p] for p in PARTS])
    if len(np.unique(seen)) != len(seen):
        raise BbmnError(f"split {split_path} lists some source rows twice (parts overlap)")
    graphs = cache.read()
    rows_all, smiles_all = cache.read_smiles()
    positions = {p: _positions(graphs.row, split[p], p, cache_path) for p in PARTS}
    train_labels = graphs.y[positions["train"]]
    unlabelled = [t for j, t in enumerate(cache.tasks) if np.isnan(train_labels[:, j]).all()]
    if unlabelled:
        raise BbmnError(f"tasks {unlabelled} have no label in the training part of {split_path}; "
                        f"they cannot be learned")
    try:
        descriptors = read_descriptors(descriptors_path, seen)
    except BbmnError as exc:
        raise BbmnError(f"{exc}: were the descriptors computed from the same cleaned table?") from None
    descriptors = np.nan_to_num(descriptors.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    offsets = np.cumsum([0] + [len(split[p]) for p in PARTS])
    desc = {p: descriptors[offsets[i]:offsets[i + 1]] for i, p in enumerate(PARTS)}
    if descriptor_scaling not in DESCRIPTOR_SCALINGS:
        raise BbmnError(f"unknown descriptor scaling {descriptor_scaling!r}; use one of "
                        f"{', '.join(DESCRIPTOR_SCALINGS)}")
    descriptor_scaler = (ColumnScaler.fit(desc["train"]) if descriptor_scaling == "standardize"
                         else ColumnScaler.identity(desc["train"].shape[1]))
    target_scaler = (ColumnScaler.fit(train_labels, ignore_nan=True)
                     if cache.task_type == "regression" else None)
    smiles_of = dict(zip(rows_all.tolist(), smiles_all))

    def make(name: str) -> LabelledPart:
        part_graphs = graphs.take(positions[name])
        targets = (target_scaler.transform(part_graphs.y) if target_scaler is not None
                   else part_graphs.y.astype(np.float32))
        return LabelledPart(name=name, graphs=part_graphs,
                            descriptors=descriptor_scaler.transform(desc[name]), targets=targets,
                            smiles=[smiles_of[r] for r in part_graphs.row.tolist()])

    record = read_json(split_path)
    split_info = {"path": str(split_path), "method": record.get("method"), "seed": record.get("seed"),
                  **{p: int(len(split[p])) for p in PARTS}}
    return LabelledData(train=make("train"), val=make("val"), test=make("test"),
                        tasks=list(cache.tasks), task_type=cache.task_type,
                        descriptor_scaler=descriptor_scaler, target_scaler=target_scaler,
                        split=split_info)
