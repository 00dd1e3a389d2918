"""Blocks against literal re-implementations of the reference's layer structure."""

import math

import pytest
import torch
import torch.nn.functional as F

from bbmn.data.graph import featurize_smiles
from bbmn.models.batmannet import count_parameters
from bbmn.nn.blocks import (AggregateToSelf, Dropout, HeadAttention, InputEmbedding, MessageNets,
                            MTBlock, dropout_mask, prelu_dropout)
from bbmn.nn.message_passing import AtomNeighbourSum, EdgeNeighbourSum

BATCH = featurize_smiles(["CC(=O)Nc1ccc(O)cc1", "C", "OCC(O)CO", "C1CC1C#N"]).to_batch()
ATOM_SUM = AtomNeighbourSum.full(BATCH.edge_index, BATCH.num_nodes)
EDGE_SUM = EdgeNeighbourSum.full(BATCH.edge_index, BATCH.rev_edge, BATCH.num_nodes)
RULES = {"atoms": (ATOM_SUM, BATCH.num_nodes), "edges": (EDGE_SUM, BATCH.edge_index.shape[1])}


# ------------------------------------------------------------------------- dropout and PReLU

def test_dropout_mask_rate_and_scale():
    torch.manual_seed(0)
    mask = dropout_mask((1000, 1000), 0.1)
    dropped = round(0.1 * 65536) / 65536
    assert abs((mask == 0).float().mean().item() - dropped) < 2e-3
    assert torch.all((mask == 0) | torch.isclose(mask, torch.tensor(1 / (1 - dropped))))
    assert abs(mask.mean().item() - 1.0) < 3e-3
    assert torch.all(dropout_mask((10,), 0.0) == 1) and torch.all(dropout_mask((10,), 1.0) == 0)


def test_dropout_is_seeded_and_off_in_eval():
    layer = Dropout(0.5)
    x = torch.randn(64, 33)
    torch.manual_seed(1)
    a = layer(x)
    torch.manual_seed(1)
    assert torch.equal(a, layer(x)) and not torch.equal(a, layer(x))
    assert layer.eval()(x) is x


def test_prelu_dropout_equals_prelu_times_the_same_mask_with_the_same_gradients():
    x = torch.randn(3, 40, 7, requires_grad=True)
    slope = torch.tensor([0.25, -0.5, 1.5], requires_grad=True)
    torch.manual_seed(5)
    y = prelu_dropout(x, slope, 0.3, True)
    grad = torch.randn_like(y)
    y.backward(grad)
    x2, slope2 = x.detach().clone().requires_grad_(), slope.detach().clone().requires_grad_()
    torch.manual_seed(5)
    mask = dropout_mask((3, 280), 0.3).view(3, 40, 7)
    expected = F.prelu(x2.view(1, 3, 280), slope2).view(3, 40, 7) * mask
    expected.backward(grad)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(slope.grad, slope2.grad)


def test_prelu_dropout_without_gradients_gives_the_same_output_from_the_same_draw():
    x = torch.randn(4, 30, 5)
    slope = torch.tensor([0.25, -0.5, 1.5, 0.0], requires_grad=True)
    torch.manual_seed(3)
    with_graph = prelu_dropout(x.clone().requires_grad_(), slope, 0.2, True)
    torch.manual_seed(3)
    with torch.no_grad():
        without = prelu_dropout(x, slope, 0.2, True)
    assert without.grad_fn is None and with_graph.grad_fn is not None
    torch.testing.assert_close(without, with_graph.detach())


def test_prelu_dropout_with_every_element_dropped_gives_zeros_and_zero_gradients():
    x = torch.randn(2, 6, 4, requires_grad=True)
    slope = torch.tensor([0.25, 0.5], requires_grad=True)
    y = prelu_dropout(x, slope, 1.0, True)
    y.sum().backward()
    assert not y.any() and not x.grad.any() and not slope.grad.any()


def test_prelu_dropout_gradcheck():
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    slope = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: prelu_dropout(a, s, 0.0, True), (x, slope))
    one = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)  # a single slope, any shape
    assert torch.autograd.gradcheck(lambda a, s: prelu_dropout(a, s, 0.0, True), (x, one))


# ----------------------------------------------------------------- literal reference structure

def loop_message_nets(nets: MessageNets, x, aggregate):
    """Each net on its own, with one h x h Linear and one PReLU, as the reference's MPNEncoder."""
    outputs = []
    for j in range(nets.num_nets):
        m = x
        for _ in range(nets.depth - 1):
            m = F.prelu(F.linear(aggregate(m), nets.weight[j], nets.bias[j, 0]), nets.act.slope[j:j + 1])
        outputs.append(m)
    return outputs


def grover_attention(attn: HeadAttention, q, k, v):
    """GROVER's MultiHeadedAttention on (n, heads, h) inputs, up to and including its output Linear."""
    n, heads, h = q.shape
    d = h // heads

    def split(t, i):
        return F.linear(t, attn.qkv_weight[i], attn.qkv_bias[i, 0]).view(n, -1, heads, d).transpose(1, 2)

    query, key, value = split(q, 0), split(k, 1), split(v, 2)
    weights = F.softmax(query @ key.transpose(-2, -1) / math.sqrt(d), dim=-1)
    mixed = (weights @ value).transpose(1, 2).contiguous().view(n, -1, heads * d)
    return F.linear(mixed, attn.out_weight, attn.out_bias)


def loop_block(block: MTBlock, x, aggregate):
    heads = block.attention.heads
    nets = loop_message_nets(block.message_nets, x, aggregate)
    q, k, v = (torch.stack(nets[r * heads:(r + 1) * heads], dim=1) for r in range(3))
    out = grover_attention(block.attention, q, k, v)
    return block.norm(block.combine(out.view(x.shape[0], -1)))


@pytest.mark.parametrize("rule", ["atoms", "edges"])
@pytest.mark.parametrize("heads,depth", [(2, 3), (4, 2), (1, 4)])
def test_block_equals_the_reference_structure(rule, heads, depth):
    torch.manual_seed(0)
    aggregate, n = RULES[rule]
    block = MTBlock(hidden=16, heads=heads, depth=depth).double().eval()
    with torch.no_grad():
        block.message_nets.act.slope.uniform_(-0.5, 0.5)  # distinct slopes per net
    x = torch.randn(n, 16, dtype=torch.float64)
    torch.testing.assert_close(block(x, aggregate), loop_block(block, x, aggregate))
    nets = loop_message_nets(block.message_nets, x, aggregate)
    torch.testing.assert_close(block.message_nets(x, aggregate), torch.stack(nets))


def test_block_handles_zero_items():
    block = MTBlock(hidden=8, heads=2).train()
    empty = EdgeNeighbourSum.visible(BATCH.edge_index, BATCH.rev_edge, BATCH.num_nodes,
                                     torch.zeros(BATCH.edge_index.shape[1], dtype=torch.bool))[0]
    out = block(torch.zeros(0, 8, requires_grad=True), empty)
    assert out.shape == (0, 8)
    out.sum().backward()


def test_aggregate_to_self_rows_and_structure():
    torch.manual_seed(0)
    readout = AggregateToSelf(hidden=12).double().eval()
    x = torch.randn(BATCH.num_nodes, 12, dtype=torch.float64)
    original = torch.randn(BATCH.num_nodes, 12, dtype=torch.float64)
    full = readout(x, original, ATOM_SUM)
    ffn = readout.ffn
    hidden = F.prelu(ffn.expand(torch.cat([original, ATOM_SUM(x)], 1)), ffn.act.slope)
    torch.testing.assert_close(full, readout.norm(ffn.contract(hidden)))
    rows = torch.tensor([4, 0, 7])
    torch.testing.assert_close(readout(x, original, ATOM_SUM, rows=rows), full[rows])


# ---------------------------------------------------------------------------------- sizes

def test_parameter_counts_of_the_parts():
    # spec section 7: one block = 121,507 counting an input PReLU + LayerNorm (201) that only the
    # first encoder block uses; ours owns them in InputEmbedding, beside the input projection
    assert count_parameters(MTBlock()) == 121_306
    assert count_parameters(MTBlock().message_nets) == 60_606
    assert count_parameters(MTBlock().attention) == 40_400
    assert count_parameters(InputEmbedding(39)) == 3_900 + 100 + 1 + 200
    assert count_parameters(MTBlock()) + count_parameters(InputEmbedding(39)) == 121_507 + 4_000
    assert count_parameters(MTBlock()) + count_parameters(InputEmbedding(50)) == 121_507 + 5_100
    assert count_parameters(AggregateToSelf().ffn) == 120_501
    assert count_parameters(AggregateToSelf()) == 120_501 + 200


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError):
        MessageNets(10, 6, depth=1)
    with pytest.raises(ValueError):
        HeadAttention(10, 3)
    with pytest.raises(ValueError):
        MTBlock(activation="swish")


def test_parameter_free_activation():
    block = MTBlock(hidden=16, heads=2, activation="relu")
    assert count_parameters(block) == count_parameters(MTBlock(hidden=16, heads=2)) - 6
    block(torch.randn(BATCH.num_nodes, 16), ATOM_SUM).sum().backward()
