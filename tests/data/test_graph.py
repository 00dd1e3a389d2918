"""GraphArrays: directed edges and reverses, ragged selection, and the cache round trip."""

import numpy as np
import pytest
import torch
from rdkit import Chem

from bbmn.chem.standardize import profile
from bbmn.data.cache import GraphCache, featurize
from bbmn.data.clean import CleanConfig, clean
from bbmn.data.graph import GraphArrays, featurize_smiles

SMILES = ["CCO", "c1ccccc1O", "C", "[Na+].[Cl-]", "CC(=O)Nc1ccc(O)cc1", "F[C@H](Cl)Br", "C/C=C/C"]


def assert_same_batch(a, b):
    for key in ("x", "atom_codes", "edge_index", "rev_edge", "edge_attr", "bond_codes", "batch",
                "ptr", "edge_ptr"):
        assert torch.equal(getattr(a, key), getattr(b, key)), key
    assert torch.equal(torch.nan_to_num(a.y, nan=-7), torch.nan_to_num(b.y, nan=-7))


def test_directed_edges_and_reverse():
    b = featurize_smiles(["CCO"]).to_batch()
    assert b.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    src, dst = b.edge_index
    assert torch.equal(src[b.rev_edge], dst) and torch.equal(dst[b.rev_edge], src)


def test_batch_offsets_and_edge_counts():
    b = featurize_smiles(SMILES).to_batch()
    mols = [Chem.MolFromSmiles(s) for s in SMILES]
    assert b.ptr.tolist() == np.cumsum([0] + [m.GetNumAtoms() for m in mols]).tolist()
    assert b.edge_ptr.tolist() == np.cumsum([0] + [2 * m.GetNumBonds() for m in mols]).tolist()
    # every edge stays inside its molecule
    assert torch.equal(b.batch[b.edge_index[0]], b.batch[b.edge_index[1]])


def test_take_equals_featurizing_the_subset():
    g = featurize_smiles(SMILES)
    order = [4, 0, 2, 6]
    assert_same_batch(g.take(order).to_batch(), featurize_smiles([SMILES[i] for i in order]).to_batch())


def test_concat_inverts_split():
    g = featurize_smiles(SMILES)
    joined = GraphArrays.concat([g.take([0, 1, 2]), g.take([3, 4, 5, 6])])
    assert_same_batch(joined.to_batch(), g.to_batch())


@pytest.mark.parametrize("workers,chunk_rows", [(1, 3), (2, 2)])
def test_cache_round_trip_equals_direct_featurization(tmp_path, workers, chunk_rows):
    csv = tmp_path / "mols.csv"
    csv.write_text("smiles,y\n" + "\n".join(f"{s},{i % 2}" for i, s in enumerate(SMILES)) + "\n")
    clean(csv, tmp_path / "c.parquet", tmp_path / "r.csv", None,
          CleanConfig(label_cols=["y"], task="classification", standardize=profile("as_given")))
    summary = featurize(tmp_path / "c.parquet", tmp_path / "cache.parquet", workers=workers,
                        chunk_rows=chunk_rows)
    assert summary["molecules"] == len(SMILES)
    cache = GraphCache(tmp_path / "cache.parquet")
    assert len(cache) == len(SMILES) and cache.tasks == ["y"] and cache.task_type == "classification"
    direct = featurize_smiles([Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in SMILES])
    direct.y = np.array([[i % 2] for i in range(len(SMILES))], np.float32)
    assert_same_batch(cache.read().to_batch(), direct.to_batch())
    streamed = GraphArrays.concat(list(cache.iter_row_groups()))
    assert_same_batch(streamed.to_batch(), direct.to_batch())
    assert cache.num_row_groups == -(-len(SMILES) // chunk_rows)
    assert cache.read().row.tolist() == list(range(len(SMILES)))


def test_stale_cache_is_rebuilt_and_wrong_version_refused(tmp_path, monkeypatch):
    from bbmn.data import cache as cache_module
    from bbmn.errors import BbmnError

    csv = tmp_path / "mols.csv"
    csv.write_text("smiles\nCCO\nCCN\n")
    clean(csv, tmp_path / "c.parquet", tmp_path / "r.csv")
    first = featurize(tmp_path / "c.parquet", tmp_path / "cache.parquet")
    assert not first.get("skipped")
    assert featurize(tmp_path / "c.parquet", tmp_path / "cache.parquet")["skipped"]
    csv.write_text("smiles\nCCO\nCCN\nCCC\n")  # the source changes: the cache is stale
    clean(csv, tmp_path / "c.parquet", tmp_path / "r.csv")
    assert featurize(tmp_path / "c.parquet", tmp_path / "cache.parquet")["molecules"] == 3
    monkeypatch.setattr(cache_module, "FEATURIZER_VERSION", 999)
    with pytest.raises(BbmnError, match="featurizer version"):
        cache_module.GraphCache(tmp_path / "cache.parquet")
