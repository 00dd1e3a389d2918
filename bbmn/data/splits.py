"""Train / validation / test splits: balanced scaffold (GROVER), deterministic scaffold, random.

Splits are computed over the molecules a cleaned table kept, in file order, and written as lists
of the molecules' source data rows, so they stay meaningful whatever was rejected. The balanced
scaffold split reproduces GROVER's to the index (spec section 12: ``tests/data/test_splits.py``
checks the spec's digests).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bbmn.chem.scaffold import scaffold_groups
from bbmn.data.clean import read_meta
from bbmn.errors import BbmnError
from bbmn.io import read_json, write_json

METHODS = ("balanced_scaffold", "scaffold", "random")
PARTS = ("train", "val", "test")


def split_digest(indices: Sequence[int]) -> str:
    """The spec's check value: first 16 hex digits of sha256 of ``json.dumps(sorted(indices))``."""
    return hashlib.sha256(json.dumps(sorted(int(i) for i in indices)).encode()).hexdigest()[:16]


def _fill(groups: Sequence[Sequence[int]], train_size: float, val_size: float) -> tuple[list, list, list]:
    """Chemprop/GROVER's greedy fill: train while it fits, then validation, then test."""
    train, val, test = [], [], []
    for group in groups:
        if len(train) + len(group) <= train_size:
            train += group
        elif len(val) + len(group) <= val_size:
            val += group
        else:
            test += group
    return train, val, test


def balanced_scaffold_split(groups: Sequence[Sequence[int]], n: int, sizes: Sequence[float],
                            seed: int) -> tuple[list, list, list]:
    """GROVER's balanced scaffold split (spec sections 10 and 12), exactly.

    Groups larger than half the validation or test size are "big"; big and small groups are
    shuffled separately with Python's ``random`` seeded by ``seed`` and walked big first.
    """
    train_size, val_size, test_size = sizes[0] * n, sizes[1] * n, sizes[2] * n
    big, small = [], []
    for group in groups:
        (big if len(group) > val_size / 2 or len(group) > test_size / 2 else small).append(group)
    rng = random.Random(seed)  # same stream as random.seed(seed) + random.shuffle, no global state
    rng.shuffle(big)
    rng.shuffle(small)
    return _fill(big + small, train_size, val_size)


def deterministic_scaffold_split(groups: Sequence[Sequence[int]], n: int,
                                 sizes: Sequence[float]) -> tuple[list, list, list]:
    """Hu et al. (2020) / OGB scaffold split: groups sorted largest first, no randomness.

    Ties are broken by the group's first index, larger first, as in their code.
    """
    ordered = sorted(groups, key=lambda g: (len(g), g[0]), reverse=True)
    train_cut, val_cut = sizes[0] * n, (sizes[0] + sizes[1]) * n
    train, val, test = [], [], []
    for group in ordered:
        if len(train) + len(group) > train_cut:
            if len(train) + len(val) + len(group) > val_cut:
                test += group
            else:
                val += group
        else:
            train += group
    return train, val, test


def random_split(n: int, sizes: Sequence[float], seed: int) -> tuple[list, list, list]:
    """Chemprop's random split: shuffle with ``random.Random(seed)``, then cut at 80% / 90%."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    train_end = int(sizes[0] * n)
    val_end = int((sizes[0] + sizes[1]) * n)
    return order[:train_end], order[train_end:val_end], order[val_end:]


def make_split(rows: Sequence[int], smiles: Sequence[str], method: str, seed: int,
               sizes: Sequence[float] = (0.8, 0.1, 0.1), include_chirality: bool | None = None) -> dict:
    """Split molecules (given in file order) and return the split record that ``bbmn split`` writes.

    Args:
        rows: each molecule's source data row.
        smiles: each molecule's SMILES (scaffolds are computed from these).
        method: one of :data:`METHODS`.
        seed: random seed (ignored by the deterministic ``scaffold`` method).
        sizes: train / validation / test fractions, summing to 1.
        include_chirality: scaffold chirality; default False for ``balanced_scaffold`` (GROVER)
            and True for ``scaffold`` (Hu et al.).
    """
    if method not in METHODS:
        raise BbmnError(f"unknown split method {method!r}; use one of {', '.join(METHODS)}")
    if len(sizes) != 3 or min(sizes) < 0 or abs(sum(sizes) - 1) > 1e-6:
        raise BbmnError(f"split sizes must be three non-negative fractions summing to 1, got {list(sizes)}")
    n = len(rows)
    if n == 0:
        raise BbmnError("nothing to split: the dataset has no molecules")
    if include_chirality is None:
        include_chirality = method == "scaffold"
    if method == "random":
        parts = random_split(n, sizes, seed)
        n_scaffolds = None
    else:
        groups = scaffold_groups(smiles, include_chirality)
        n_scaffolds = len(groups)
        if method == "balanced_scaffold":
            parts = balanced_scaffold_split(groups, n, sizes, seed)
        else:
            parts = deterministic_scaffold_split(groups, n, sizes)
    rows_arr = np.asarray(rows, dtype=np.int64)
    record = {"method": method, "seed": seed, "sizes": list(sizes),
              "include_chirality": include_chirality if method != "random" else None,
              "molecules": n, "scaffolds": n_scaffolds}
    for name, positions in zip(PARTS, parts):
        part_rows = sorted(int(r) for r in rows_arr[positions])
        record[name] = part_rows
        record[f"{name}_size"] = len(part_rows)
        record[f"{name}_digest"] = split_digest(part_rows)
    return record


def split_table(clean_parquet: str | Path, out: str | Path, method: str, seed: int,
                sizes: Sequence[float] = (0.8, 0.1, 0.1)) -> dict:
    """Split a cleaned Parquet (``bbmn clean``'s output) and write the record as JSON to ``out``.

    Scaffolds come from the cleaned canonical ``smiles``. For benchmark sets read ``as_given``
    this is the same molecule GROVER splits on, and gives its splits to the index (checked
    against all 33 digests of spec section 12).
    """
    meta = read_meta(clean_parquet)
    table = pq.read_table(clean_parquet, columns=["row", "smiles"])
    record = make_split(table.column("row").to_pylist(), table.column("smiles").to_pylist(),
                        method, seed, sizes)
    record.update(source=str(clean_parquet), source_sha256=meta.get("source_sha256"))
    write_json(out, record)
    return record


def load_split(path: str | Path) -> dict[str, np.ndarray]:
    """The ``train``/``val``/``test`` source rows of a split file."""
    try:
        record = read_json(path)
        return {part: np.asarray(record[part], dtype=np.int64) for part in PARTS}
    except (OSError, ValueError, KeyError) as exc:
        raise BbmnError(f"cannot read split file {path}: {exc}") from None
