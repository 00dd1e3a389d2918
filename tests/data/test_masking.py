import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bbmn.data.graph import featurize_smiles
from bbmn.data.masking import Masking, hashed_keys, mask_smallest_keys, masked_counts

ZINC = [line.split()[0] for line in (Path(__file__).parent / "zinc_200.smi").read_text().splitlines()]
ARRAYS = featurize_smiles(ZINC[:40] + ["C", "[Na+].[Cl-]", "CC", "O=C=O"])
MODES = {
    "dynamic": dict(mask=lambda m, b, epoch: m.masks(b), dynamic=True),
    "dynamic by epoch": dict(mask=lambda m, b, epoch: m.masks(b, epoch), dynamic=True),
    "static": dict(mask=lambda m, b, epoch: m.masks(b, epoch), dynamic=False),
}


def per_molecule_counts(mask, ptr):
    return [int(mask[a:b].sum()) for a, b in zip(ptr[:-1].tolist(), ptr[1:].tolist())]


def draw(mode, seed=0, order=None, epoch=0, ratio=0.6, masking=None):
    batch = ARRAYS.take(np.arange(len(ARRAYS)) if order is None else order).to_batch()
    masking = masking or Masking(ratio, dynamic=MODES[mode]["dynamic"], seed=seed)
    return batch, MODES[mode]["mask"](masking, batch, epoch)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("ratio", [0.6, 0.15, 0.5, 1.0])
def test_each_molecule_masks_ceil_ratio_of_its_atoms_and_edges(mode, ratio):
    batch, (atom_mask, edge_mask) = draw(mode, ratio=ratio)
    n_atoms, n_edges = np.diff(batch.ptr.numpy()), np.diff(batch.edge_ptr.numpy())
    assert per_molecule_counts(atom_mask, batch.ptr) == [math.ceil(n * ratio) for n in n_atoms]
    assert per_molecule_counts(edge_mask, batch.edge_ptr) == [math.ceil(n * ratio) for n in n_edges]
    assert min(per_molecule_counts(atom_mask, batch.ptr)) >= 1
    # [Na+].[Cl-] has no edge to mask, CC has two (one bond), at least one of which is masked
    assert per_molecule_counts(edge_mask, batch.edge_ptr)[-3:-1] == [0, math.ceil(2 * ratio)]


def test_counts_round_like_python():
    sizes = torch.arange(0, 200)
    for ratio in (0.6, 0.1, 0.3, 0.7):
        assert masked_counts(sizes, ratio).tolist() == [math.ceil(n * ratio) for n in range(200)]


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_masks_other_seed_other_masks(mode):
    _, (a1, e1) = draw(mode, seed=3)
    _, (a2, e2) = draw(mode, seed=3)
    _, (a3, e3) = draw(mode, seed=4)
    assert torch.equal(a1, a2) and torch.equal(e1, e2)
    assert not torch.equal(a1, a3) and not torch.equal(e1, e3)


def test_dynamic_masks_change_every_call_and_every_epoch():
    masking = Masking(dynamic=True, seed=0)
    batch = ARRAYS.to_batch()
    first, second = masking.masks(batch), masking.masks(batch)
    assert not torch.equal(first[0], second[0]) and not torch.equal(first[1], second[1])
    assert not torch.equal(masking.masks(batch, epoch=0)[0], masking.masks(batch, epoch=1)[0])
    assert torch.equal(masking.masks(batch, epoch=2)[1], masking.masks(batch, epoch=2)[1])


@pytest.mark.parametrize("mode", ["static", "dynamic by epoch"])
def test_hashed_masks_do_not_depend_on_batch_composition(mode):
    order = np.random.default_rng(0).permutation(len(ARRAYS))
    plain, (atom_plain, edge_plain) = draw(mode)
    shuffled, (atom_shuffled, edge_shuffled) = draw(mode, order=order, epoch=0)
    for new, old in enumerate(order):
        assert torch.equal(atom_shuffled[shuffled.ptr[new]:shuffled.ptr[new + 1]],
                           atom_plain[plain.ptr[old]:plain.ptr[old + 1]])
        assert torch.equal(edge_shuffled[shuffled.edge_ptr[new]:shuffled.edge_ptr[new + 1]],
                           edge_plain[plain.edge_ptr[old]:plain.edge_ptr[old + 1]])


def test_static_masks_are_the_same_every_epoch():
    masking = Masking(dynamic=False, seed=9)
    batch = ARRAYS.to_batch()
    masks = [masking.masks(batch, epoch) for epoch in (None, 0, 1, 5)]
    for atom_mask, edge_mask in masks[1:]:
        assert torch.equal(atom_mask, masks[0][0]) and torch.equal(edge_mask, masks[0][1])


@pytest.mark.parametrize("mode", MODES)
def test_every_position_is_masked_with_frequency_ratio(mode):
    # one 10-atom molecule in many epochs (dynamic) or many seeds (static)
    arrays = featurize_smiles(["CC(C)Cc1ccccc1"])
    batch = arrays.to_batch()
    masking = Masking(0.6, dynamic=MODES[mode]["dynamic"], seed=0)
    totals = torch.zeros(batch.num_nodes)
    for i in range(1500):
        if mode == "static":
            masking = Masking(0.6, dynamic=False, seed=i)
        totals += MODES[mode]["mask"](masking, batch, i)[0].float()
    assert torch.all((totals / 1500 - 0.6).abs() < 0.05)


def test_atom_and_edge_keys_are_unrelated():
    rows, items = torch.zeros(1000, dtype=torch.long), torch.arange(1000)
    atoms, edges = hashed_keys(0, 0, 1, rows, items), hashed_keys(0, 0, 2, rows, items)
    assert abs(np.corrcoef(atoms.numpy(), edges.numpy())[0, 1]) < 0.1
    assert 0.0 <= float(atoms.min()) and float(atoms.max()) < 1.0
    assert abs(float(atoms.mean()) - 0.5) < 0.03


def test_smallest_keys_are_masked_per_group():
    keys = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2, 0.8], dtype=torch.float64)
    ptr = torch.tensor([0, 3, 3, 6])
    assert mask_smallest_keys(keys, ptr, 0.5).tolist() == [False, True, True, True, True, False]


def test_call_sets_batch_attributes_and_checks_ratio():
    batch = Masking(seed=1)(ARRAYS.to_batch())
    assert batch.atom_mask.dtype == torch.bool and batch.atom_mask.shape == (batch.num_nodes,)
    assert batch.edge_mask.shape == (batch.edge_index.shape[1],)
    with pytest.raises(ValueError):
        Masking(0.0)
