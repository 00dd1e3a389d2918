"""Spec section 1 on hand-checked molecules: codes, one-hot layout, dimensions."""

import numpy as np
import pytest
import torch
from rdkit import Chem

from bbmn.chem import features as F
from bbmn.data.graph import featurize_smiles


def codes(smiles):
    return F.mol_codes(Chem.MolFromSmiles(smiles))


def test_dimensions_match_the_spec():
    assert F.ATOM_DIM == 39 and F.BOND_DIM == 11 and F.EDGE_DIM == 50
    assert F.ATOM_FIELD_SIZES == (23, 6, 5, 4, 1)
    assert F.BOND_FIELD_SIZES == (4, 1, 6)
    assert F.ELEMENTS[:9] == ("C", "N", "O", "S", "F", "Si", "P", "Cl", "Br")
    assert len(F.ELEMENTS) == 22 and F.ELEMENTS[-3:] == ("H", "Cu", "Mn")


def test_ethanol_codes():
    c = codes("CCO")
    # element C=0, O=2; degree; charge 0 is slot 4; no chirality; not aromatic
    assert c.atoms.tolist() == [[0, 1, 4, 0, 0], [0, 2, 4, 0, 0], [2, 1, 4, 0, 0]]
    assert c.bond_atoms.tolist() == [[0, 1], [1, 2]]
    assert c.bonds.tolist() == [[0, 0, 0], [0, 0, 0]]  # single, not in ring, STEREONONE


def test_charges_elements_and_clamping():
    # charge slots: -1 -> 0, -2 -> 1, +1 -> 2, +2 -> 3, 0 -> 4, anything else -> 4
    c = codes("[O-]C(=O)C[NH3+].[Ca+2].[S-2].[Fe+3].[Li+]")
    by_symbol = {a.GetSymbol(): i for i, a in enumerate(Chem.MolFromSmiles(
        "[O-]C(=O)C[NH3+].[Ca+2].[S-2].[Fe+3].[Li+]").GetAtoms())}
    assert c.atoms[by_symbol["N"], 2] == 2
    assert c.atoms[0, 2] == 0  # [O-]
    assert c.atoms[by_symbol["Ca"]].tolist() == [11, 0, 3, 0, 0]
    assert c.atoms[by_symbol["S"], 2] == 1
    assert c.atoms[by_symbol["Fe"]].tolist() == [12, 0, 4, 0, 0]  # +3 goes to the slot of 0
    assert c.atoms[by_symbol["Li"], 0] == 22  # not listed: "other"
    # degree 6 (SF6) clamps to the last slot, 5
    assert codes("FS(F)(F)(F)(F)F").atoms[1, 1] == 5


def test_aromatic_ring_and_stereo():
    c = codes("c1ccccc1")
    assert (c.atoms[:, 4] == 1).all()
    assert (c.bonds[:, 0] == 3).all() and (c.bonds[:, 1] == 1).all()
    chiral = codes("F[C@H](Cl)Br")
    assert chiral.atoms[1, 3] == int(Chem.ChiralType.CHI_TETRAHEDRAL_CCW) == 2  # '@'
    assert codes("F[C@@H](Cl)Br").atoms[1, 3] == int(Chem.ChiralType.CHI_TETRAHEDRAL_CW) == 1
    trans = codes("C/C=C/C")
    double = [i for i, b in enumerate(trans.bonds) if b[0] == 1]
    assert trans.bonds[double[0], 2] == int(Chem.BondStereo.STEREOE) == 3
    assert codes("CC#N").bonds[1, 0] == 2


def test_dative_bond_is_other_and_sets_no_bit():
    c = codes("[NH3]->[Cu]")
    assert c.bonds[0, 0] == F.BOND_TYPE_OTHER
    one_hot = F.bond_one_hot(torch.from_numpy(c.bonds.astype(np.int64)))
    assert one_hot[0, :4].sum() == 0


def test_one_hot_layout():
    batch = featurize_smiles(["CC(=O)[O-]", "c1ccncc1", "C"]).to_batch()
    assert batch.x.shape == (4 + 6 + 1, 39) and batch.edge_attr.shape[1] == 11
    # one bit per categorical field, plus the aromatic bit
    assert torch.equal(batch.x[:, :38].sum(1), torch.full((11,), 4.0))
    assert torch.equal(batch.x[:, 38], batch.atom_codes[:, 4].float())
    for field, offset, size in zip(range(4), F.ATOM_FIELD_OFFSETS, F.ATOM_FIELD_SIZES):
        assert torch.equal(batch.x[:, offset:offset + size].argmax(1), batch.atom_codes[:, field])
    # bond: one type bit (codes 0..3), in-ring bit, one stereo bit
    assert torch.equal(batch.edge_attr[:, 5:].argmax(1), batch.bond_codes[:, 2])
    assert torch.equal(batch.edge_attr[:, 4], batch.bond_codes[:, 1].float())
    edge_input = torch.cat([batch.x[batch.edge_index[0]], batch.edge_attr], dim=1)
    assert edge_input.shape[1] == F.EDGE_DIM


@pytest.mark.parametrize("smiles", ["C", "[Na+]", "O", "CC"])
def test_tiny_molecules(smiles):
    b = featurize_smiles([smiles]).to_batch()
    assert b.num_graphs == 1 and b.x.shape[0] == Chem.MolFromSmiles(smiles).GetNumAtoms()
    assert b.edge_index.shape[1] == 2 * Chem.MolFromSmiles(smiles).GetNumBonds()
