"""Batches from a graph cache: seeded order per epoch, streamed by row group, shardable.

Memory stays bounded by a shuffle window of a few row groups (4,096 molecules each), whatever
the corpus size. The order of an epoch depends only on (seed, epoch), so a resumed run can skip
the batches it already did and see the same batches as an uninterrupted one, and distributed
ranks share each ``world_size`` batches' worth of the same global order, dealt by size.

The pre-training train/validation split is by molecule: a molecule is in validation when a hash
of (seed, source row) falls in the lowest ``val_fraction`` of the hash range. Membership never
depends on the corpus order or size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bbmn.data.cache import GraphCache
from bbmn.data.graph import GraphArrays

PARTS = ("train", "val", "all")
_HASH_RANGE = 1 << 20


def _mix(values: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 of ``values`` with a seed: a fast, well-spread integer hash, vectorized."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def in_validation(rows: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the molecules (by source row) that belong to the validation part."""
    bucket = (_mix(np.asarray(rows), seed) % np.uint64(_HASH_RANGE)).astype(np.int64)
    return bucket < int(round(val_fraction * _HASH_RANGE))


class CacheBatches:
    """An epoch-indexed stream of ``GraphArrays`` batches from a graph cache.

    Args:
        cache: the graph cache (or its path).
        batch_size: molecules per batch (per rank).
        part: ``train``, ``val`` (split by :func:`in_validation`) or ``all``.
        val_fraction: share of molecules in the validation part.
        seed: seeds the validation split and every epoch's order.
        shuffle: shuffle row groups and molecules each epoch (False: file order).
        window: row groups read and shuffled together; bounds memory.
        rank: this process's rank among ``world_size`` data-parallel processes.
        world_size: number of data-parallel processes; each epoch has the same number of
            batches on every rank (the global tail that does not divide evenly is dropped).
        drop_last: drop a final batch smaller than ``batch_size``.
    """

    def __init__(self, cache: GraphCache | str, batch_size: int, part: str = "all",
                 val_fraction: float = 0.1, seed: int = 0, shuffle: bool = True, window: int = 8,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        self.cache = cache if isinstance(cache, GraphCache) else GraphCache(cache)
        self.batch_size = int(batch_size)
        self.part, self.val_fraction, self.seed = part, float(val_fraction), int(seed)
        self.shuffle, self.window = shuffle, max(1, int(window))
        self.rank, self.world_size, self.drop_last = int(rank), int(world_size), drop_last
        self._rows_per_group = self._part_sizes()
        self.num_molecules = int(sum(self._rows_per_group))

    def _part_sizes(self) -> list[int]:
        sizes = []
        for group in range(self.cache.num_row_groups):
            sizes.append(int(self._select(self.cache.rows(group)).sum()))
        return sizes

    def _select(self, rows: np.ndarray) -> np.ndarray:
        if self.part == "all":
            return np.ones(len(rows), dtype=bool)
        val = in_validation(rows, self.val_fraction, self.seed)
        return val if self.part == "val" else ~val

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        full, rest = divmod(self.num_molecules, self.batch_size)
        total = full + (1 if rest and not self.drop_last else 0)
        return total // self.world_size

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[GraphArrays]:
        """The batches of ``epoch`` for this rank, after skipping the first ``skip`` of them.

        With several ranks, each run of ``world_size * batch_size`` molecules of the global order
        (what one process would train on in ``world_size`` steps) is dealt to the ranks by
        size (:func:`deal_by_size`), ``batch_size`` each: data-parallel ranks wait for the slowest
        at every step, and dealing in order left one rank with the larger molecules (measured:
        docs/benchmarks.md). One process gets its batches in order.
        """
        rng = np.random.default_rng([self.seed, epoch])
        n_groups = self.cache.num_row_groups
        order = rng.permutation(n_groups) if self.shuffle else np.arange(n_groups)
        per_rank, step_size = len(self), self.batch_size * self.world_size
        taken = 0  # batches of this rank yielded or skipped
        pending: GraphArrays | None = None
        for start in range(0, n_groups, self.window):
            groups = [int(g) for g in order[start:start + self.window] if self._rows_per_group[g]]
            if not groups:
                continue
            arrays = self.cache.read(sorted(groups))
            chosen = np.flatnonzero(self._select(arrays.row))
            if self.shuffle:
                chosen = rng.permutation(chosen)
            window = arrays.take(chosen)
            if pending is not None and len(pending):
                window = GraphArrays.concat([pending, window])
            n_steps = len(window) // step_size
            for step in range(n_steps):
                if taken >= per_rank:
                    return
                if taken >= skip:
                    together = window.take(np.arange(step * step_size, (step + 1) * step_size))
                    yield together.take(np.flatnonzero(deal_by_size(together, self.world_size) == self.rank))
                taken += 1
            pending = window.take(np.arange(n_steps * step_size, len(window)))
        if pending is None or not len(pending) or taken >= per_rank:
            return
        # the tail, less than one batch per rank: batch-size pieces in order, one per rank
        first = self.rank * self.batch_size
        mine = np.arange(first, min(first + self.batch_size, len(pending)))
        if len(mine) and (len(mine) == self.batch_size or not self.drop_last) and taken >= skip:
            yield pending.take(mine)


def deal_by_size(arrays: GraphArrays, parts: int) -> np.ndarray:
    """Which of ``parts`` equal shares each molecule goes to, so that the shares' work is even.

    Work is counted as atoms plus directed edges (the items of the two branches). Molecules are
    dealt from the largest down in the order 0, 1, ..., parts - 1, parts - 1, ..., 0, 0, 1, ...,
    which gives every share the same number of molecules when ``parts`` divides their number.
    """
    work = arrays.num_atoms + 2 * arrays.num_bonds
    turns = np.concatenate([np.arange(parts), np.arange(parts)[::-1]])
    share = np.empty(len(arrays), dtype=np.int64)
    share[np.argsort(-work, kind="stable")] = np.resize(turns, len(arrays))
    return share
