import numpy as np
import pytest
import torch

from bbmn.data.graph import featurize_smiles
from bbmn.nn.positional import positional_code, positions_in_groups, sinusoidal_code, table_index


def reference_table_row(p: int, width: int) -> np.ndarray:
    """Row ``p`` of the reference's table: zeros at 0, else the sinusoid of position p - 1."""
    if p == 0:
        return np.zeros(width)
    angle = np.array([(p - 1) / np.power(10000, 2 * (j // 2) / width) for j in range(width)])
    angle[0::2], angle[1::2] = np.sin(angle[0::2]), np.cos(angle[1::2])
    return angle


@pytest.mark.parametrize("width", [100, 7])
def test_rows_match_the_reference_table_for_any_position(width):
    index = torch.tensor([0, 1, 2, 37, 301, 5000])
    code = sinusoidal_code(index, width)
    assert code.shape == (6, width) and code.dtype == torch.float32
    expected = np.stack([reference_table_row(int(p), width) for p in index])
    np.testing.assert_allclose(code.numpy(), expected, atol=1e-6)
    assert torch.all(code[0] == 0)
    assert torch.equal(code[1, :4], torch.tensor([0.0, 1.0, 0.0, 1.0]))  # first real item


def test_the_kept_table_grows_without_changing_its_rows():
    from bbmn.nn import positional

    positional._TABLES.pop((12, torch.device("cpu")), None)
    index = torch.arange(300)
    before = sinusoidal_code(index, 12)
    assert len(positional._TABLES[(12, torch.device("cpu"))]) == 300
    grown = sinusoidal_code(torch.tensor([9000]), 12)  # the table grows to hold row 9000
    assert len(positional._TABLES[(12, torch.device("cpu"))]) >= 9001
    assert torch.equal(sinusoidal_code(index, 12), before)
    np.testing.assert_allclose(grown[0].numpy(), reference_table_row(9000, 12), atol=1e-6)
    assert sinusoidal_code(torch.tensor([], dtype=torch.long), 12).shape == (0, 12)


def test_positions_restart_in_every_molecule_and_skip_empty_ones():
    ptr = torch.tensor([0, 3, 3, 5, 6])
    assert positions_in_groups(ptr).tolist() == [0, 1, 2, 0, 1, 0]
    assert table_index(ptr, "molecule").tolist() == [1, 2, 3, 1, 2, 1]
    assert table_index(ptr, "batch").tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError):
        table_index(ptr, "graph")


def test_per_molecule_code_does_not_depend_on_the_batch():
    arrays = featurize_smiles(["CCO", "c1ccccc1", "C", "CC(=O)N"])
    alone = arrays.take([1]).to_batch()
    mixed = arrays.take([0, 2, 1, 3]).to_batch()
    rows = slice(int(mixed.ptr[2]), int(mixed.ptr[3]))
    assert torch.equal(positional_code(alone.ptr, 100)[:, :], positional_code(mixed.ptr, 100)[rows])
    edge_rows = slice(int(mixed.edge_ptr[2]), int(mixed.edge_ptr[3]))
    assert torch.equal(positional_code(alone.edge_ptr, 100), positional_code(mixed.edge_ptr, 100)[edge_rows])
    # the reference's batch-wide positions do depend on the neighbours in the batch
    assert not torch.equal(positional_code(alone.ptr, 100, "batch"),
                           positional_code(mixed.ptr, 100, "batch")[rows])


def test_a_300_atom_molecule_gets_distinct_codes():
    batch = featurize_smiles(["C" * 300]).to_batch()
    code = positional_code(batch.ptr, 100)
    assert code.shape == (300, 100)
    assert torch.unique(code, dim=0).shape[0] == 300
