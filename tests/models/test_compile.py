"""``pretrain.compile``: torch.compile takes the whole masked forward and backward (no graph
break, dynamic shapes) and computes what the eager model computes."""

import pytest
import torch

from bbmn.models.batmannet import BatmanNet
from bbmn.nn.blocks import _dropout_compiled, prelu_dropout
from tests.models.test_batmannet import ZINC, masked_batch, small_model
from tests.models.test_finetune import inputs as finetune_inputs
from tests.models.test_finetune import small as small_finetune


@pytest.mark.slow
def test_the_compiled_model_gives_the_eager_loss_and_gradients_without_recompiling():
    # molecules enough for every item count to be past the small-size kernels the compiler picks
    # below 128 rows (a guard there): real batches of 32 molecules are
    batches = [masked_batch(ZINC[:32], seed=1), masked_batch(ZINC[40:70], seed=2)]
    torch.manual_seed(0)
    eager = small_model(residual=True, dropout=0.0)
    compiled = small_model(residual=True, dropout=0.0)
    compiled.load_state_dict(eager.state_dict())
    compiled.enable_compile(fullgraph=True)  # a graph break raises instead of falling back
    for i, batch in enumerate(batches):
        with torch._dynamo.config.patch(error_on_recompile=i > 0):  # other sizes: same graph
            losses = [model.pretrain_loss(batch).total for model in (eager, compiled)]
        for loss in losses:
            loss.backward()
        assert losses[1].item() == pytest.approx(losses[0].item(), rel=1e-5)
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            if a.grad is not None:
                torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
        eager.zero_grad()
        compiled.zero_grad()


@pytest.mark.slow
def test_the_compiled_finetuning_model_gives_the_eager_outputs_and_gradients():
    eager = small_finetune(dropout=0.0, head_dropout=0.0, residual=True, view_norm="batchnorm")
    compiled = small_finetune(dropout=0.0, head_dropout=0.0, residual=True, view_norm="batchnorm")
    compiled.load_state_dict(eager.state_dict())
    compiled.enable_compile(fullgraph=True)
    for i, smiles in enumerate([ZINC[:30] + ["C", "[Na+].[Cl-]"], ZINC[40:70]]):
        batch, descriptors = finetune_inputs(smiles)
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            outputs = [model(batch, descriptors) for model in (eager, compiled)]
        for (a, b) in zip(*outputs, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        labels = (torch.arange(2 * len(smiles)).view(-1, 2) % 3 == 0).float()
        for model, out in zip((eager, compiled), outputs, strict=True):
            model.loss(out, labels).total.backward()
        scale = torch.cat([p.grad.flatten() for p in eager.parameters() if p.grad is not None]).abs().max()
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            if a.grad is not None:  # summation order differs: equal up to float rounding
                torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-4 * float(scale), msg=name)
        eager.zero_grad()
        compiled.zero_grad()


@pytest.mark.slow
def test_dropout_traces_into_the_compiled_graph():
    # one block of each kind and no autograd graph: the same dropout calls at a fraction of the
    # compile time (the backward through them is the first test's, at dropout 0)
    torch.manual_seed(0)
    model = BatmanNet(hidden=16, heads=2, depth=2, encoder_blocks=1, decoder_blocks=1, residual=True,
                      dropout=0.1).enable_compile(fullgraph=True)
    assert model.training
    batch = masked_batch(ZINC[:32], seed=1)
    with torch.no_grad():
        first, second = (model.pretrain_loss(batch).total.item() for _ in range(2))
    assert torch.isfinite(torch.tensor([first, second])).all()
    assert first != second  # each call draws new masks


def test_the_compiled_dropout_drops_at_its_rate_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    y = _dropout_compiled(x, 0.1)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.003)
    assert torch.unique(y[y != 0]).tolist() == pytest.approx([65536 / (65536 - round(0.1 * 65536))])
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_the_compiled_prelu_branch_is_prelu_per_channel():
    x = torch.randn(3, 7, 5)
    slope = torch.tensor([0.1, 0.25, 0.5])
    compiled = torch.compile(lambda t: prelu_dropout(t, slope, 0.0, False), fullgraph=True, dynamic=True)
    expected = torch.where(x >= 0, x, x * slope.view(3, 1, 1))
    torch.testing.assert_close(compiled(x), expected)
    torch.testing.assert_close(prelu_dropout(x, slope, 0.0, False), expected)
