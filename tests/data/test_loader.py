"""CacheBatches: complete and disjoint epochs, seeded order, resume by skipping, rank sharding."""

import numpy as np
import pytest

from bbmn.chem.standardize import profile
from bbmn.data.cache import featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.loader import CacheBatches, deal_by_size, in_validation


@pytest.fixture(scope="module")
def zinc_cache(tmp_path_factory):
    from tests.conftest import TEST_DATA

    d = tmp_path_factory.mktemp("zinc")
    clean(TEST_DATA / "zinc_200.smi", d / "c.parquet", d / "r.csv", None,
          CleanConfig(standardize=profile("standard"), dedupe=True))
    featurize(d / "c.parquet", d / "cache.parquet", chunk_rows=32)  # 7 row groups
    return d / "cache.parquet"


def rows_of(batches):
    return [b.row.tolist() for b in batches]


def test_train_and_val_partition_the_corpus(zinc_cache):
    train = CacheBatches(zinc_cache, 16, part="train", seed=3)
    val = CacheBatches(zinc_cache, 16, part="val", seed=3)
    train_rows = sum(rows_of(train.epoch(0)), [])
    val_rows = sum(rows_of(val.epoch(0)), [])
    assert sorted(train_rows + val_rows) == list(range(200))
    assert 5 <= len(val_rows) <= 40  # about 10%
    assert len(train_rows) == train.num_molecules and len(list(train.epoch(0))) == len(train)


def test_order_is_seeded_per_epoch(zinc_cache):
    loader = CacheBatches(zinc_cache, 16, window=2)
    assert rows_of(loader.epoch(0)) == rows_of(loader.epoch(0))
    assert rows_of(loader.epoch(0)) != rows_of(loader.epoch(1))
    assert sorted(sum(rows_of(loader.epoch(1)), [])) == list(range(200))
    assert all(len(b) == 16 for b in list(loader.epoch(1))[:-1])
    in_order = CacheBatches(zinc_cache, 16, shuffle=False)
    assert sum(rows_of(in_order.epoch(5)), []) == list(range(200))


def test_skip_resumes_the_same_sequence(zinc_cache):
    loader = CacheBatches(zinc_cache, 16, window=3, seed=1)
    full = rows_of(loader.epoch(2))
    assert rows_of(loader.epoch(2, skip=5)) == full[5:]


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_share_one_global_order(zinc_cache, world_size, drop_last):
    """Step i of the ranks together trains on the molecules one process would train on in its
    steps i * world_size ... (i + 1) * world_size - 1, each rank on batch_size of them."""
    order = sum(rows_of(CacheBatches(zinc_cache, 10, window=2, drop_last=drop_last).epoch(0)), [])
    ranks = [CacheBatches(zinc_cache, 10, window=2, rank=r, world_size=world_size, drop_last=drop_last)
             for r in range(world_size)]
    per_rank = [rows_of(loader.epoch(0)) for loader in ranks]
    assert {len(p) for p in per_rank} == {len(ranks[0])}  # the same number of batches on every rank
    steps = len(per_rank[0])
    assert steps == (len(order) // 10 + (0 if drop_last or len(order) % 10 == 0 else 1)) // world_size
    for i in range(steps):
        together = sum((p[i] for p in per_rank), [])
        assert len(together) == len(set(together))
        assert set(together) == set(order[i * world_size * 10:(i + 1) * world_size * 10])
        assert all(len(p[i]) == 10 for p in per_rank) or i == steps - 1


def test_ranks_get_even_work(zinc_cache):
    """Dealt by size, two ranks' batches differ in work by less than dealt in order."""
    ranks = [CacheBatches(zinc_cache, 16, rank=r, world_size=2, drop_last=True) for r in range(2)]
    work = [[int((b.num_atoms + 2 * b.num_bonds).sum()) for b in loader.epoch(0)] for loader in ranks]
    gaps = [abs(a - b) for a, b in zip(*work)]
    in_order = rows_of(CacheBatches(zinc_cache, 16, drop_last=True).epoch(0))
    sizes = {r: n for b in CacheBatches(zinc_cache, 16).epoch(0)
             for r, n in zip(b.row.tolist(), (b.num_atoms + 2 * b.num_bonds).tolist())}
    in_order_gaps = [abs(sum(sizes[r] for r in in_order[2 * i]) - sum(sizes[r] for r in in_order[2 * i + 1]))
                     for i in range(len(gaps))]
    assert sum(gaps) < sum(in_order_gaps) / 3, (gaps, in_order_gaps)


def test_deal_by_size_gives_equal_counts_and_close_work():
    rng = np.random.default_rng(0)
    atoms = rng.integers(5, 40, size=32)
    molecules = _Sizes(atoms, atoms + rng.integers(-1, 4, size=32))
    share = deal_by_size(molecules, 2)
    assert np.bincount(share).tolist() == [16, 16]
    work = molecules.num_atoms + 2 * molecules.num_bonds
    assert abs(work[share == 0].sum() - work[share == 1].sum()) <= work.max()
    assert np.array_equal(deal_by_size(molecules, 1), np.zeros(32, dtype=np.int64))


class _Sizes:
    """What deal_by_size reads of a GraphArrays: its molecules' atom and bond counts."""

    def __init__(self, num_atoms, num_bonds):
        self.num_atoms, self.num_bonds = num_atoms, num_bonds

    def __len__(self):
        return len(self.num_atoms)


def test_validation_membership_is_stable():
    rows = np.arange(100_000)
    val = in_validation(rows, 0.1, seed=0)
    assert abs(val.mean() - 0.1) < 0.005
    assert np.array_equal(val[5000:6000], in_validation(rows[5000:6000], 0.1, seed=0))
    assert not np.array_equal(val, in_validation(rows, 0.1, seed=1))
