"""Vectorized neighbour sums against literal Python loops over the graph."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bbmn.data.graph import featurize_smiles
from bbmn.nn.message_passing import AtomNeighbourSum, EdgeNeighbourSum, sparse_sum

SMILES = ["CC(=O)Nc1ccc(O)cc1", "C", "[Na+].[Cl-]", "C1CC1C#N", "OCC(O)CO", "c1ccc2ccccc2c1"]
BATCH = featurize_smiles(SMILES).to_batch()
N_ATOMS, N_EDGES = BATCH.num_nodes, BATCH.edge_index.shape[1]


def loop_atom_sum(messages, keep_atom):
    """Each kept atom: sum of the messages of its kept neighbours (rows in kept order)."""
    kept = [a for a in range(N_ATOMS) if keep_atom[a]]
    row = {a: i for i, a in enumerate(kept)}
    out = torch.zeros((len(kept),) + messages.shape[1:], dtype=messages.dtype)
    for e in range(N_EDGES):
        u, v = BATCH.edge_index[:, e].tolist()
        if keep_atom[u] and keep_atom[v]:
            out[row[v]] += messages[row[u]]
    return out


def loop_edge_sum(messages, keep_edge):
    """Each kept edge u->v: kept edges entering u, minus v->u when that one is kept."""
    kept = [e for e in range(N_EDGES) if keep_edge[e]]
    row = {e: i for i, e in enumerate(kept)}
    out = torch.zeros((len(kept),) + messages.shape[1:], dtype=messages.dtype)
    for e in kept:
        u, v = BATCH.edge_index[:, e].tolist()
        for f in kept:
            if BATCH.edge_index[1, f] == u and f != int(BATCH.rev_edge[e]):
                out[row[e]] += messages[row[f]]
    return out


masks = st.integers(min_value=0, max_value=2**62)


def bits(seed, n):
    return (torch.rand(n, generator=torch.Generator().manual_seed(seed)) < 0.6).tolist()


def test_full_graphs_match_loops():
    atoms = torch.randn(N_ATOMS, 3, dtype=torch.float64)
    edges = torch.randn(N_EDGES, 3, dtype=torch.float64)
    atom_sum = AtomNeighbourSum.full(BATCH.edge_index, N_ATOMS)
    edge_sum = EdgeNeighbourSum.full(BATCH.edge_index, BATCH.rev_edge, N_ATOMS)
    torch.testing.assert_close(atom_sum(atoms), loop_atom_sum(atoms, [True] * N_ATOMS))
    torch.testing.assert_close(edge_sum(edges), loop_edge_sum(edges, [True] * N_EDGES))


@settings(max_examples=25, deadline=None)
@given(seed=masks)
def test_induced_atom_subgraph_matches_loop(seed):
    keep = bits(seed, N_ATOMS)
    rule, kept = AtomNeighbourSum.induced(BATCH.edge_index, torch.tensor(keep))
    assert kept.tolist() == [a for a in range(N_ATOMS) if keep[a]]
    messages = torch.randn(len(kept), 4, dtype=torch.float64)
    torch.testing.assert_close(rule(messages), loop_atom_sum(messages, keep))


@settings(max_examples=25, deadline=None)
@given(seed=masks)
def test_visible_edges_match_loop(seed):
    keep = bits(seed, N_EDGES)
    rule, kept = EdgeNeighbourSum.visible(BATCH.edge_index, BATCH.rev_edge, N_ATOMS, torch.tensor(keep))
    assert kept.tolist() == [e for e in range(N_EDGES) if keep[e]]
    messages = torch.randn(len(kept), 4, dtype=torch.float64)
    torch.testing.assert_close(rule(messages), loop_edge_sum(messages, keep))


def test_several_nets_are_summed_at_once_on_the_item_axis():
    keep = torch.tensor(bits(7, N_EDGES))
    rule, kept = EdgeNeighbourSum.visible(BATCH.edge_index, BATCH.rev_edge, N_ATOMS, keep)
    messages = torch.randn(3, len(kept), 5, dtype=torch.float64)  # (nets, items, width)
    stacked = rule(messages)
    for net in range(3):
        torch.testing.assert_close(stacked[net], rule(messages[net]))


def test_a_visible_edge_without_its_reverse_keeps_its_other_neighbours():
    # isobutane: bonds 0-1, 1-2, 1-3 give edges e0 0->1, e1 1->0, e2 1->2, e3 2->1, e4 1->3, e5 3->1
    batch = featurize_smiles(["CC(C)C"]).to_batch()
    assert batch.edge_index.tolist() == [[0, 1, 1, 2, 1, 3], [1, 0, 2, 1, 3, 1]]
    keep = torch.tensor([True, True, True, True, True, False])  # e5 masked
    rule, _ = EdgeNeighbourSum.visible(batch.edge_index, batch.rev_edge, 4, keep)
    m = torch.tensor([[1.0], [10.0], [100.0], [1000.0], [10000.0]])  # rows e0..e4
    # e1: e0 + e3 enter atom 1, minus reverse e0; e4: e0 + e3 and no reverse term (e5 is masked)
    assert rule(m).squeeze(1).tolist() == [0.0, 1000.0, 1.0, 0.0, 1001.0]


def _both_paths(rule, messages):
    """The rule's output by its sparse product and by index_add_."""
    return rule(messages), rule.by_index(messages)


@settings(max_examples=15, deadline=None)
@given(seed=masks)
def test_sparse_products_equal_the_index_path_with_gradients(seed):
    keep_atom, keep_edge = torch.tensor(bits(seed, N_ATOMS)), torch.tensor(bits(seed + 1, N_EDGES))
    rules = [AtomNeighbourSum.induced(BATCH.edge_index, keep_atom),
             EdgeNeighbourSum.visible(BATCH.edge_index, BATCH.rev_edge, N_ATOMS, keep_edge),
             (AtomNeighbourSum.full(BATCH.edge_index, N_ATOMS), torch.arange(N_ATOMS)),
             (EdgeNeighbourSum.full(BATCH.edge_index, BATCH.rev_edge, N_ATOMS), torch.arange(N_EDGES))]
    for rule, kept in rules:
        for shape in ((len(kept), 4), (3, len(kept), 4)):
            messages = torch.randn(shape, dtype=torch.float64, requires_grad=True)
            weights = torch.randn(shape, dtype=torch.float64)
            sparse, indexed = _both_paths(rule, messages)
            torch.testing.assert_close(sparse, indexed)
            (grad_sparse,) = torch.autograd.grad((sparse * weights).sum(), messages)
            (grad_indexed,) = torch.autograd.grad((indexed * weights).sum(), messages)
            torch.testing.assert_close(grad_sparse, grad_indexed)
    assert torch.autograd.gradcheck(rules[1][0], (torch.randn(len(rules[1][1]), 2, dtype=torch.float64,
                                                              requires_grad=True),))


def test_the_sparse_operator_passes_torch_library_checks():
    # schema, fake (shape-only) implementation, autograd registration: what torch.compile relies on
    rule = EdgeNeighbourSum.full(BATCH.edge_index, BATCH.rev_edge, N_ATOMS)
    index = rule.index
    messages = torch.randn(3, N_EDGES, 4, requires_grad=True)
    torch.library.opcheck(sparse_sum, (messages, index.crow, index.col, index.crow_t, index.col_t))


def test_graphs_without_bonds_and_other_dtypes():
    batch = featurize_smiles(["C", "[Na+].[Cl-]"]).to_batch()
    atom_sum = AtomNeighbourSum.full(batch.edge_index, batch.num_nodes)
    edge_sum = EdgeNeighbourSum.full(batch.edge_index, batch.rev_edge, batch.num_nodes)
    assert atom_sum(torch.ones(batch.num_nodes, 2)).eq(0).all()
    assert edge_sum(torch.ones(0, 2)).shape == (0, 2)
    # bf16 has no CPU sparse kernel: summed in float32, rounded once to bf16
    messages = torch.randn(N_EDGES, 4).to(torch.bfloat16)
    rule = EdgeNeighbourSum.full(BATCH.edge_index, BATCH.rev_edge, N_ATOMS)
    summed = rule(messages)
    assert summed.dtype == torch.bfloat16
    assert torch.equal(summed, rule(messages.float()).to(torch.bfloat16))
    torch.testing.assert_close(rule(messages.float()), rule.by_index(messages.float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 messages stay float32
        torch.testing.assert_close(rule(messages.float()), rule.by_index(messages.float()))
