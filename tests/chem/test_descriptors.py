"""Our chunked RDKit2DNormalized equals descriptastorus' own generator, value for value."""

import numpy as np
from descriptastorus.descriptors import rdNormalizedDescriptors

from bbmn.chem.descriptors import descriptor_names, rdkit2d_normalized

SMILES = ["CCO", "c1ccccc1C(=O)O", "[Na+].[Cl-]", "C", "CC(=O)Nc1ccc(O)cc1",
          "O=C1c2ccccc2C(=O)N1CCCCN1CCN(c2ncccn2)CC1", "[H][H]"]


def test_same_numbers_as_descriptastorus():
    ours, ok = rdkit2d_normalized(SMILES)
    reference = rdNormalizedDescriptors.RDKit2DNormalized()
    expected = np.array([np.nan_to_num(np.asarray(reference.process(s)[1:], float), nan=0.0,
                                       posinf=0.0, neginf=0.0) for s in SMILES], dtype=np.float32)
    assert ours.shape == (len(SMILES), 200) and len(descriptor_names()) == 200
    np.testing.assert_array_equal(ours, expected)
    assert ok.all() and np.isfinite(ours).all()
    assert ((ours >= 0) & (ours <= 1)).all()  # CDF values


def test_unparsable_smiles_gives_zeros_and_a_flag():
    values, ok = rdkit2d_normalized(["CCO", "not smiles"])
    assert ok.tolist() == [True, False] and not values[1].any() and values[0].any()
