"""The building blocks of a BatmanNet branch (spec section 3).

* :class:`InputEmbedding`: the first block's input stage, Linear(in -> h) + positional code, kept
  as the branch's "original features", then Dropout(LayerNorm(PReLU(.))).
* :class:`MTBlock`: GROVER's multi-head block: per head three message-passing nets give Q, K and
  V; standard multi-head attention runs across the heads axis of each item; Linear(heads*h -> h),
  Dropout(LayerNorm(.)), no residual.
* :class:`AggregateToSelf`: after the last block, sum the neighbours' outputs, concatenate with the
  original features, FFN 2h -> 4h -> h, Dropout(LayerNorm(.)).

Speed on a CPU shaped this module (the function is the reference's, parameter for parameter):
what the reference does with one small matrix per head or per net is one batched product here,
the nets' messages live as one contiguous ``(nets, n, h)`` tensor, and PReLU + dropout, the
dearest element-wise work of a step, run as one autograd function with a cheap random mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bbmn.nn.choices import ACTIVATIONS

#: Neighbour sum of a branch: messages (..., n, w) -> summed messages (..., n, w).
Aggregate = Callable[[Tensor], Tensor]

_FIXED_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu, "gelu": F.gelu, "elu": F.elu, "tanh": torch.tanh}


# ------------------------------------------------------------------------------ dropout, PReLU

def _uniform16(shape: torch.Size | tuple[int, ...], device: torch.device | None) -> Tensor:
    """int16 tensor of ``shape``, uniform on [-32768, 32767]: four per 64-bit random word."""
    n = math.prod(shape)
    words = torch.randint(-2**63, 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=device)
    return words.view(torch.int16)[:n].view(shape)


#: numpy's SFC64 generator, re-seeded from torch's generator at every draw (:func:`_cpu_uniform16`)
_SFC64 = np.random.SFC64(0)


def _cpu_uniform16(shape: torch.Size | tuple[int, ...]) -> Tensor:
    """:func:`_uniform16` on the CPU, its words from numpy's SFC64 generator.

    Torch's CPU generator (MT19937) makes the words one at a time: 5.8 ms of a 129 ms pre-training
    step (one thread, batch 16); SFC64 makes the same number of random bits in 40% of the time
    (docs/benchmarks.md). Its 256-bit state is three 64-bit words drawn from torch's default
    generator at every call (and a counter), so ``torch.manual_seed`` still makes every mask
    reproducible, and a draw advances torch's generator like any other random op.
    """
    n = math.prod(shape)
    state = torch.randint(-2**63, 2**63 - 1, (4,), dtype=torch.int64).numpy().view(np.uint64)
    state[3] = 1  # SFC64's counter
    with _SFC64.lock:  # a seeding and its draw go together, whatever other threads do
        _SFC64.state = {"bit_generator": "SFC64", "state": {"state": state}, "has_uint32": 0, "uinteger": 0}
        words = _SFC64.random_raw((n + 3) // 4)
    return torch.from_numpy(words.view(np.int16)[:n]).view(shape)


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> Tensor:
    """Float mask for dropout with rate ``p``: 0 for dropped elements, ``1 / keep rate`` elsewhere.

    Torch's own CPU dropout draws and converts one random float per element, which made it the
    dearest part of a training step. Here one 64-bit random word gives four 16-bit uniforms, and the
    comparison writes the float mask directly. An element is dropped with probability
    ``round(p * 65536) / 65536`` (within 8e-6 of ``p``) and kept ones are scaled by the exact inverse
    keep rate, so the expectation is unchanged. Draws from torch's generator: ``torch.manual_seed``
    makes it reproducible.
    """
    dropped = _dropped_of_65536(p)
    if dropped >= 65536:
        return torch.zeros(shape, device=device, dtype=dtype)
    mask = torch.empty(shape, device=device, dtype=dtype)
    on_cpu = device is None or torch.device(device).type == "cpu"
    torch.ge(_cpu_uniform16(shape) if on_cpu else _uniform16(shape, device), dropped - 32768, out=mask)
    return mask.mul_(_keep_scale(p))


def _dropped_of_65536(p: float) -> int:
    """How many of the 65,536 values of a 16-bit uniform drop an element, for rate ``p``."""
    return round(p * 65536)


def _keep_scale(p: float) -> float:
    """The value of a kept element in :func:`dropout_mask`: the exact inverse keep rate (0 when
    every element is dropped)."""
    dropped = _dropped_of_65536(p)
    return 65536 / (65536 - dropped) if dropped < 65536 else 0.0


def _dropout_compiled(x: Tensor, p: float) -> Tensor:
    """``x`` times :func:`dropout_mask`, as plain ops for ``torch.compile`` (no ``out=``), whose own
    dropout random numbers made a compiled pre-training step slower than an eager one (measured:
    68.5 mol/s with them, 129 with this draw, docs/benchmarks.md)."""
    dropped = _dropped_of_65536(p)
    if dropped >= 65536:
        return torch.zeros_like(x)
    keep = _uniform16(x.shape, x.device) >= dropped - 32768
    return x * torch.where(keep, _keep_scale(p), 0.0).to(x.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` drawing its mask with :func:`dropout_mask` (faster on CPU)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        if torch.compiler.is_compiling():  # plain ops, which the compiler fuses with their neighbours
            return _dropout_compiled(x, self.p)
        return x * dropout_mask(x.shape, self.p, x.device, x.dtype)


class _PReLUDropout(torch.autograd.Function):
    """``dropout(prelu(x))`` with one slope per channel, channels on axis 0 of ``x``.

    Written for CPU speed, where a training step is as much element-wise work as matrix products.
    The forward pass saves what the backward pass multiplies by, so the backward is two products
    and a sum: the input gradient is ``grad * factor`` (``factor``: the mask times PReLU's
    derivative, 1 or the slope) and the slope gradient the sum of ``grad * negative`` (``negative``:
    the mask times ``min(x, 0)``). Nothing goes through a boolean tensor: ``torch.where`` on a
    boolean condition ran at a twentieth of a multiply's rate here, and made the backward of the
    earlier ``where``-based version 19% of a fine-tuning step (docs/benchmarks.md). At ``x == 0``
    exactly, the derivative is taken as 1 (torch's PReLU takes the slope): a subgradient either way.
    """

    @staticmethod
    def forward(ctx, x: Tensor, slope: Tensor, p: float, training: bool) -> Tensor:
        channels = x.reshape(slope.numel(), -1)
        s = slope.to(x.dtype).unsqueeze(1)
        if training and p > 0.0:
            mask = dropout_mask(channels.shape, p, x.device, x.dtype)
            kept = channels * mask  # mask * x
            negative = kept.clamp(max=0.0)  # mask * min(x, 0), as the mask is >= 0
            y = kept.addcmul_(negative, s - 1)  # mask * prelu(x) = mask * (x + (s - 1) * min(x, 0))
            # mask * (1 where x >= 0, else the slope): sign(negative) is -1 exactly where x < 0
            # and the element is kept; in place, so that a step holds no more tensors than before
            factor = mask.addcmul_(torch.sign(negative), (1 - s) * _keep_scale(p))
        else:
            negative = channels.clamp(max=0.0)
            y = torch.addcmul(channels, negative, s - 1)
            factor = torch.sign(negative).mul_(1 - s).add_(1.0)
        ctx.save_for_backward(factor, negative)
        ctx.input_shape, ctx.slope_dtype = x.shape, slope.dtype
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:
        factor, negative = ctx.saved_tensors
        grad = grad.reshape(factor.shape).to(factor.dtype)
        grad_x = grad * factor
        grad_slope = (grad * negative).sum(1, dtype=torch.float32)
        return grad_x.view(ctx.input_shape), grad_slope.to(ctx.slope_dtype), None, None


def _prelu_dropout_inference(x: Tensor, slope: Tensor, p: float, training: bool) -> Tensor:
    """:class:`_PReLUDropout`'s forward when no gradient is wanted: nothing saved for a backward."""
    channels = x.reshape(slope.numel(), -1)
    y = F.prelu(channels.unsqueeze(0), slope.to(x.dtype)).squeeze(0)
    if training and p > 0.0:
        y.mul_(dropout_mask(y.shape, p, y.device, y.dtype))
    return y.view(x.shape)


def prelu_dropout(x: Tensor, slope: Tensor, p: float, training: bool) -> Tensor:
    """Dropout(PReLU(x)), with ``slope`` (one per channel; channels on axis 0) or one slope.

    Under ``torch.compile`` this is written as plain element-wise torch ops, which the compiler
    fuses (forward and backward) into the kernels around them; eagerly it is one autograd function.
    """
    if torch.compiler.is_compiling():
        y = torch.where(x >= 0, x, x * slope.to(x.dtype).view(-1, *([1] * (x.dim() - 1))))
        return _dropout_compiled(y, p) if training and p > 0.0 else y
    if not (torch.is_grad_enabled() and (x.requires_grad or slope.requires_grad)):
        return _prelu_dropout_inference(x, slope, p, training)
    return _PReLUDropout.apply(x, slope, p, training)


class ActivationDropout(nn.Module):
    """Dropout(act(x)) for ``channels`` independent channels laid out on axis 0 of ``x``.

    PReLU (the default) owns one slope per channel, 0.25 at start. With ``channels == 1`` this is
    an ordinary activation followed by dropout, for inputs of any shape.

    Args:
        activation (str): ``"prelu"`` or a parameter-free activation (``"relu"``, ...).
        dropout (float): dropout rate. Default 0.1.
        channels (int): number of channels with their own slope. Default 1.
    """

    def __init__(self, activation: str = "prelu", dropout: float = 0.1, channels: int = 1) -> None:
        super().__init__()
        self.activation, self.p = activation.lower(), dropout
        if self.activation == "prelu":
            self.slope = nn.Parameter(torch.full((channels,), 0.25))
        elif self.activation not in _FIXED_ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        else:
            self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.activation == "prelu":
            return prelu_dropout(x, self.slope, self.p, self.training)
        return self.dropout(_FIXED_ACTIVATIONS[self.activation](x))


def _init_linear_(weight: Tensor, bias: Tensor, fan_in: int) -> None:
    """``nn.Linear``'s default initialisation, for weights stored fused."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    nn.init.uniform_(bias, -bound, bound)


# ------------------------------------------------------------------------------------- blocks

class MessageNets(nn.Module):
    """``num_nets`` independent message-passing nets on the same input, run as one.

    Each net runs ``depth - 1`` rounds of ``m <- Dropout(act(W m_sum + b))`` where ``m_sum`` is the
    neighbour sum of the previous messages (the first round starts from the block input, with no
    input layer and no skip connection, as in the reference). Every net owns its ``W`` (h x h, with
    bias, shared by its rounds) and, for PReLU, its own slope.

    The first round's neighbour sum is the same for every net, so it is computed once and all
    first rounds are one ``(n, h) x (h, num_nets*h)`` product; later rounds are one batched product
    over the nets. Messages are kept as one contiguous ``(num_nets, n, h)`` tensor.

    Args:
        hidden (int): message width ``h``.
        num_nets (int): number of independent nets (``3 * heads`` in a block: Q, K, V per head).
        depth (int): message-passing depth; ``depth - 1 >= 1`` rounds are run. Default 3.
        dropout (float): dropout after every round. Default 0.1.
        activation (str): activation name; ``"prelu"`` (default) gives each net its own slope.
    """

    def __init__(self, hidden: int, num_nets: int, depth: int = 3, dropout: float = 0.1,
                 activation: str = "prelu") -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth must be at least 2 (one round of message passing), got {depth}")
        self.hidden, self.num_nets, self.depth = hidden, num_nets, depth
        self.weight = nn.Parameter(torch.empty(num_nets, hidden, hidden))  # (net, out, in)
        self.bias = nn.Parameter(torch.empty(num_nets, 1, hidden))
        for net in range(num_nets):
            _init_linear_(self.weight.data[net], self.bias.data[net], hidden)
        self.act = ActivationDropout(activation, dropout, channels=num_nets)

    def forward(self, x: Tensor, aggregate: Aggregate) -> Tensor:
        """``(n, h)`` block input -> ``(num_nets, n, h)`` final messages of every net."""
        n, k, h = x.shape[0], self.num_nets, self.hidden
        # round 1: one (n, h) x (h, k*h) product for all nets (their inputs are the same)
        first = F.linear(aggregate(x), self.weight.view(k * h, h), self.bias.view(k * h))
        m = self.act(first.view(n, k, h).transpose(0, 1))
        weight_t = self.weight.transpose(1, 2)
        for _ in range(self.depth - 2):
            m = self.act(torch.baddbmm(self.bias, aggregate(m), weight_t))
        return m


class HeadAttention(nn.Module):
    """Standard multi-head attention whose sequence is the heads axis of one item.

    For each item (atom or edge) separately, the sequence has ``heads`` positions (one per block
    head); Q, K and V each pass their own Linear(h -> h), are split into ``heads`` attention heads of
    width ``h / heads``, and scaled dot-product attention with dropout on the attention weights
    mixes the positions. The output Linear(h -> h) is applied by :meth:`output_projection_into`,
    fused with the block's next Linear.

    Args:
        hidden (int): model width ``h``; must be divisible by ``heads``.
        heads (int): sequence length and number of attention heads.
        dropout (float): dropout on the attention weights. Default 0.1.
    """

    def __init__(self, hidden: int, heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.hidden, self.heads = hidden, heads
        self.dropout = Dropout(dropout)
        self.qkv_weight = nn.Parameter(torch.empty(3, hidden, hidden))  # (Q/K/V, out, in)
        self.qkv_bias = nn.Parameter(torch.empty(3, 1, hidden))
        self.out_weight = nn.Parameter(torch.empty(hidden, hidden))
        self.out_bias = nn.Parameter(torch.empty(hidden))
        for i in range(3):
            _init_linear_(self.qkv_weight.data[i], self.qkv_bias.data[i], hidden)
        _init_linear_(self.out_weight, self.out_bias, hidden)

    def forward(self, qkv: Tensor) -> Tensor:
        """``(3 * S, n, h)`` queries, keys then values (``S = heads`` each) -> ``(n, S * h)``.

        The output is taken before the output Linear (see :meth:`output_projection_into`).
        """
        _, n, h = qkv.shape
        s = a = self.heads
        # reshape, not view: eager gets contiguous message-net outputs here, but the compiler's
        # stride rules can see them transposed (hidden 16, depth 2), where a view cannot be taken
        projected = torch.baddbmm(self.qkv_bias, qkv.reshape(3, s * n, h), self.qkv_weight.transpose(1, 2))
        q, k, v = projected.view(3, s, n, a, h // a).unbind(0)  # (s, n, a, d)
        # the sequence is only `heads` long: broadcasting beats batches of tiny matrix products
        scores = (q.unsqueeze(1) * k.unsqueeze(0)).sum(-1) * (a / h) ** 0.5  # (s, t, n, a)
        weights = self.dropout(scores.softmax(1))
        mixed = (weights.unsqueeze(-1) * v.unsqueeze(0)).sum(1)  # (s, n, a, d)
        return mixed.transpose(0, 1).reshape(n, s * h)

    def output_projection_into(self, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """Weight and bias of ``Linear(weight, bias)(concat_s(out_linear(u_s)))`` as one Linear of
        ``concat_s(u_s)``.

        The output Linear and the block's next Linear have nothing in between, so their product
        is formed once per call (``S*h^3`` operations) instead of applying both to every item.
        """
        h, s = self.hidden, weight.shape[1] // self.hidden
        per_position = weight.view(-1, s, h)  # (out, s, h)
        fused_weight = torch.matmul(per_position, self.out_weight).reshape(-1, s * h)
        fused_bias = bias + per_position.sum(1) @ self.out_bias
        return fused_weight, fused_bias


class MTBlock(nn.Module):
    """One multi-head graph attention block (GROVER's MTBlock, without its input stage).

    ``heads`` heads each own three message-passing nets (Q, K, V); attention runs across the heads
    of each item; then Linear(heads*h -> h) and Dropout(LayerNorm(.)). No residual connection by
    default (the reference); with ``residual`` the block adds its input back (GROVER's
    ``res_connection``: ``x + Dropout(LayerNorm(.))``), so an item keeps its own state through the
    blocks instead of converging to its neighbours' average.
    The first block of an encoder branch is preceded by :class:`InputEmbedding`.

    Args:
        hidden (int): model width ``h``. Default 100.
        heads (int): number of heads. Default 2.
        depth (int): message-passing depth of the Q/K/V nets (``depth - 1`` rounds). Default 3.
        dropout (float): dropout rate everywhere in the block. Default 0.1.
        activation (str): activation of the message nets. Default ``"prelu"``.
        residual (bool): add the block's input to its output. Default False (the reference).
    """

    def __init__(self, hidden: int = 100, heads: int = 2, depth: int = 3, dropout: float = 0.1,
                 activation: str = "prelu", residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        # net j = role * heads + head, role 0/1/2 = Q/K/V
        self.message_nets = MessageNets(hidden, 3 * heads, depth, dropout, activation)
        self.attention = HeadAttention(hidden, heads, dropout)
        self.combine = nn.Linear(heads * hidden, hidden)  # the reference's W_o
        self.norm = nn.LayerNorm(hidden)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, aggregate: Aggregate) -> Tensor:
        """``(n, h)`` item states -> ``(n, h)`` new item states."""
        mixed = self.attention(self.message_nets(x, aggregate))
        weight, bias = self.attention.output_projection_into(self.combine.weight, self.combine.bias)
        out = self.dropout(self.norm(F.linear(mixed, weight, bias)))
        return x + out if self.residual else out


class InputEmbedding(nn.Module):
    """Input stage of an encoder branch: Linear(in -> h) plus positional code, then
    Dropout(LayerNorm(act(.))).

    Args:
        in_dim (int): input width (39 for atoms, 50 for directed edges).
        hidden (int): model width ``h``. Default 100.
        dropout (float): dropout rate. Default 0.1.
        activation (str): activation name. Default ``"prelu"``.
    """

    def __init__(self, in_dim: int, hidden: int = 100, dropout: float = 0.1,
                 activation: str = "prelu") -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, hidden)
        self.act = ActivationDropout(activation, dropout=0.0)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = Dropout(dropout)

    def forward(self, features: Tensor, position_code: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Returns the first block's input and the branch's original features (both ``(n, h)``)."""
        original = self.project(features)
        if position_code is not None:
            original = original + position_code
        return self.dropout(self.norm(self.act(original))), original


class PositionwiseFFN(nn.Module):
    """Linear(d_in -> d_ff), activation, dropout, Linear(d_ff -> d_out).

    Args:
        d_in (int): input width.
        d_ff (int): hidden width.
        d_out (int): output width.
        dropout (float): dropout after the activation. Default 0.1.
        activation (str): activation name. Default ``"prelu"``.
    """

    def __init__(self, d_in: int, d_ff: int, d_out: int, dropout: float = 0.1,
                 activation: str = "prelu") -> None:
        super().__init__()
        self.expand = nn.Linear(d_in, d_ff)
        self.act = ActivationDropout(activation, dropout)
        self.contract = nn.Linear(d_ff, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.contract(self.act(self.expand(x)))


class AggregateToSelf(nn.Module):
    """Final stage of a branch: neighbour sum of the block outputs, concatenated with the original
    features, FFN 2h -> 4h -> h, then Dropout(LayerNorm(.)).

    Args:
        hidden (int): model width ``h``. Default 100.
        dropout (float): dropout rate. Default 0.1.
        activation (str): activation name. Default ``"prelu"``.
    """

    def __init__(self, hidden: int = 100, dropout: float = 0.1, activation: str = "prelu") -> None:
        super().__init__()
        self.ffn = PositionwiseFFN(2 * hidden, 4 * hidden, hidden, dropout, activation)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, original: Tensor, aggregate: Aggregate,
                rows: Tensor | None = None) -> Tensor:
        """``(n, h)`` last block output and original features -> ``(n, h)`` outputs.

        With ``rows``, only those items' outputs are computed (the neighbour sum still reads all).
        """
        summed = aggregate(x)
        if rows is not None:
            original, summed = original.index_select(0, rows), summed.index_select(0, rows)
        return self.dropout(self.norm(self.ffn(torch.cat([original, summed], dim=1))))
