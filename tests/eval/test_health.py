"""Representation health: known answers for the numpy measures, and an encoder's report."""

import itertools

import numpy as np
import pytest
import torch

from bbmn.data.graph import featurize_smiles
from bbmn.eval.health import (effective_rank, encode_graphs, encoder_health, mean_pair_cosine, variance_share,
                              view_spread)
from bbmn.models.batmannet import BatmanNet

#: a single atom (no edge), a two-atom molecule (two directed edges), rings and branches
SMILES = ["C", "CO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCNCC1", "OC(=O)CCl", "CCN(CC)CC"]


def sign_pattern(n: int, columns: int, scale: float) -> np.ndarray:
    """``(n, columns)`` of ``+-scale``, every column with mean 0: population std exactly ``scale``."""
    signs = np.array([1.0, -1.0] * (n // 2))
    return np.stack([np.roll(signs, k) for k in range(columns)], axis=1) * scale


def hadamard(k: int) -> np.ndarray:
    h = np.ones((1, 1))
    for _ in range(k):
        h = np.block([[h, h], [h, -h]])
    return h


def test_view_spread_is_the_root_mean_variance():
    assert view_spread(sign_pattern(6, 4, 2.0)) == 2.0
    x = np.random.default_rng(0).normal(size=(50, 3)) * [1.0, 2.0, 3.0]
    assert view_spread(x) == pytest.approx(np.sqrt(np.mean(np.var(x, axis=0))))
    assert view_spread(np.ones((5, 3))) == 0.0


def test_variance_share_has_the_known_answer():
    views = sign_pattern(8, 4, 2.0)  # 4 columns of variance 4
    other = sign_pattern(8, 12, 1.0)  # 12 columns of variance 1
    assert views.std(axis=0).tolist() == [2.0] * 4 and other.std(axis=0).tolist() == [1.0] * 12
    assert variance_share(views, other) == 16 / (16 + 12)
    assert variance_share(other, views) == 12 / (16 + 12)
    assert variance_share(views, np.zeros((8, 0))) == 1.0  # a head that reads the views alone
    assert np.isnan(variance_share(np.ones((8, 2)), np.ones((8, 3))))  # no variance anywhere
    with pytest.raises(ValueError, match="differ in length"):
        variance_share(views, other[:4])


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_effective_rank_of_equal_singular_values_is_the_rank(k):
    columns = hadamard(3)[:, 1:1 + k]  # centred, orthogonal, equal norms: k equal singular values
    rotation, _ = np.linalg.qr(np.random.default_rng(k).normal(size=(6, 6)))
    x = np.hstack([columns, np.zeros((8, 6 - k))]) @ rotation + 3.0  # an offset changes nothing
    assert effective_rank(x) == pytest.approx(k, abs=1e-9)


def test_effective_rank_of_unequal_spreads_and_of_nothing():
    x = hadamard(3)[:, 1:4] * [1.0, 0.1, 0.01]
    assert 1.0 < effective_rank(x) < 2.0  # one direction dominates
    assert effective_rank(np.full((10, 4), 0.1)) == 0.0  # constant: no direction is used (documented)
    assert effective_rank(np.random.default_rng(0).normal(size=(1, 4))) == 0.0  # one molecule
    assert effective_rank(np.zeros((5, 0))) == 0.0


def brute_force_cosine(x: np.ndarray) -> float:
    total, pairs = 0.0, 0
    for i, j in itertools.permutations(range(len(x)), 2):
        ni, nj = np.linalg.norm(x[i]), np.linalg.norm(x[j])
        total += float(x[i] @ x[j] / (ni * nj)) if ni > 0 and nj > 0 else 0.0
        pairs += 1
    return total / pairs


def test_mean_pair_cosine_equals_the_loop_over_pairs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 5)) + 0.5
    assert mean_pair_cosine(x) == pytest.approx(brute_force_cosine(x), abs=1e-12)
    x[3] = 0.0  # a zero vector has cosine 0 with every other
    assert mean_pair_cosine(x) == pytest.approx(brute_force_cosine(x), abs=1e-12)
    assert mean_pair_cosine(np.tile([1.0, 2.0, 3.0], (4, 1))) == pytest.approx(1.0)
    assert mean_pair_cosine(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)
    assert np.isnan(mean_pair_cosine(x[:1]))


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return BatmanNet(hidden=16, heads=2, depth=2, encoder_blocks=3, decoder_blocks=1)


def test_encoder_health_of_a_random_encoder(tiny_net):
    graphs = featurize_smiles(SMILES)
    tiny_net.train()
    health = encoder_health(tiny_net, graphs, batch_size=3)
    assert tiny_net.training  # evaluation mode only while it runs
    assert set(health) == {"atom", "bond", "stage_cosine"}
    for view in ("atom", "bond"):
        numbers = health[view]
        assert set(numbers) == {"spread", "effective_rank", "mean_pair_cosine"}
        assert all(isinstance(v, float) for v in numbers.values())
        assert numbers["spread"] > 0
        assert 1.0 <= numbers["effective_rank"] <= min(len(SMILES) - 1, 16) + 1e-9
        assert -1.0 <= numbers["mean_pair_cosine"] <= 1.0
    assert set(health["stage_cosine"]) == {"atom", "edge"}
    for branch in ("atom", "edge"):
        values = health["stage_cosine"][branch]
        assert len(values) == 3 + 1  # input stage + every block
        assert all(isinstance(v, float) and -1.0 <= v <= 1.0 + 1e-9 for v in values)


def test_health_agrees_with_the_views_and_ignores_the_batch_size(tiny_net):
    graphs = featurize_smiles(SMILES)
    atom, bond, stages = encode_graphs(tiny_net, graphs, batch_size=256, stages=True)
    atom2, bond2, stages2 = encode_graphs(tiny_net, graphs, batch_size=2, stages=True)
    assert np.allclose(atom, atom2, atol=1e-5) and np.allclose(bond, bond2, atol=1e-5)
    for branch in ("atom", "edge"):
        assert np.allclose(stages[branch], stages2[branch], atol=1e-6)
    health = encoder_health(tiny_net, graphs, batch_size=4)
    assert health["atom"]["spread"] == pytest.approx(view_spread(atom), rel=1e-5)
    assert health["bond"]["effective_rank"] == pytest.approx(effective_rank(bond), rel=1e-4)
    # the last stage's within-molecule cosine, by hand: every molecule with >= 2 atoms
    from bbmn.models.views import full_graph_sums

    batch = graphs.to_batch()
    with torch.inference_mode():
        tiny_net.eval()
        atom_sum, _ = full_graph_sums(batch)
        last = tiny_net.node_encoder.stage_states(batch.x, atom_sum)[-1].double().numpy()
    ptr = batch.ptr.numpy()
    per_molecule = [brute_force_cosine(last[a:b]) for a, b in zip(ptr[:-1], ptr[1:]) if b - a >= 2]
    assert health["stage_cosine"]["atom"][-1] == pytest.approx(np.mean(per_molecule), abs=1e-6)
