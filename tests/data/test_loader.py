"""CacheBatches: complete and disjoint epochs, seeded order, resume by skipping, rank sharding."""

import numpy as np
import pytest

from bbmn.chem.standardize import profile
from bbmn.data.cache import featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.loader import CacheBatches, in_validation


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
def test_ranks_share_one_global_order(zinc_cache, world_size):
    single = rows_of(CacheBatches(zinc_cache, 10, drop_last=True).epoch(0))
    per_rank = [rows_of(CacheBatches(zinc_cache, 10, rank=r, world_size=world_size, drop_last=True).epoch(0))
                for r in range(world_size)]
    assert len({len(p) for p in per_rank}) == 1  # same number of batches on every rank
    for r, batches in enumerate(per_rank):
        assert batches == single[r::world_size][:len(batches)]


def test_validation_membership_is_stable():
    rows = np.arange(100_000)
    val = in_validation(rows, 0.1, seed=0)
    assert abs(val.mean() - 0.1) < 0.005
    assert np.array_equal(val[5000:6000], in_validation(rows[5000:6000], 0.1, seed=0))
    assert not np.array_equal(val, in_validation(rows, 0.1, seed=1))
