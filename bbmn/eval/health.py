"""Representation health: is there anything between molecules in an encoder's views for a head
(or a linear probe) to read?

A head can only learn from what differs between molecules. Three ways a pooled view can fail to
carry it, each with its number (numpy in, plain floats out):

* it is nearly the same vector for every molecule: :func:`view_spread` (small) and
  :func:`mean_pair_cosine` (near 1);
* it varies, but along few directions: :func:`effective_rank` (small);
* it varies, but a head reading it beside other inputs sees mostly the others:
  :func:`variance_share` (small), e.g. a view with std 0.1 per dimension beside 200 unit-variance
  descriptors.

:func:`encoder_health` runs an encoder over molecules and reports these per view, together with
the within-molecule cosine after every block (1 = every atom of a molecule carries the same vector:
the blocks over-smooth), so a collapsed encoder is told apart from a collapsing head.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads in seconds; the numpy functions do not need it
    from torch import nn

    from bbmn.data.graph import GraphArrays

#: the pooled views of :func:`bbmn.models.views.block_views`, in its order
VIEWS = ("atom", "bond")


def _matrix(views: np.ndarray) -> np.ndarray:
    x = np.asarray(views, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a (molecules, dims) matrix, got shape {x.shape}")
    return x


def view_spread(views: np.ndarray) -> float:
    """Between-molecule standard deviation of a pooled view matrix ``(n, d)``:
    ``sqrt(mean over dims of the population variance across molecules)``.

    In the units of the view, so it can be set against what the view sits next to (descriptors
    standardized to std 1): a spread of 0.01 is a view the head hardly sees. NaN without molecules.
    """
    x = _matrix(views)
    if len(x) == 0 or x.shape[1] == 0:
        return float("nan")
    return float(np.sqrt(x.var(axis=0).mean()))


def variance_share(views: np.ndarray, other: np.ndarray) -> float:
    """The views' share of the input variance of a head that reads ``concat(views, other)``:
    ``sum_d var(views[:, d]) / (sum_d var(views[:, d]) + sum_k var(other[:, k]))`` (population
    variances across molecules).

    A linear head's first layer starts with weights of one scale for every input, so this is
    roughly the share of its pre-activation that comes from the graph. ``other`` may have no
    columns (share 1.0); the share is NaN when the whole input is constant.
    """
    x, o = _matrix(views), _matrix(other)
    if len(x) != len(o):
        raise ValueError(f"views ({len(x)} molecules) and other ({len(o)}) differ in length")
    own = float(x.var(axis=0).sum()) if len(x) else 0.0
    rest = float(o.var(axis=0).sum()) if len(o) and o.shape[1] else 0.0
    total = own + rest
    return own / total if total > 0 else float("nan")


def effective_rank(views: np.ndarray) -> float:
    """Roy & Vetterli's effective rank (2007) of the column-centred matrix: ``exp(H(p))`` with
    ``p`` the singular values divided by their sum and ``H`` the Shannon entropy.

    How many directions the molecules really spread along: ``k`` for data of rank ``k`` with
    equal singular values, less when a few directions dominate. Singular values at the level of
    rounding noise count as zero; a matrix without any spread (constant, or one molecule) has
    effective rank **0**, not 1: it uses no direction at all, and a collapsed representation should
    read as the bottom of the scale.
    """
    x = _matrix(views)
    if len(x) < 2 or x.shape[1] == 0:
        return 0.0
    centred = x - x.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    # the spectral norm of a matrix of rounding errors of the entries
    tol = 10 * np.finfo(np.float64).eps * math.sqrt(x.size) * max(float(np.abs(x).max()), 1e-300)
    s = s[s > tol]
    if len(s) == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def mean_pair_cosine(views: np.ndarray) -> float:
    """Mean cosine between the views of two distinct molecules, over all ``n (n - 1)`` ordered
    pairs, exact and without forming them.

    With unit rows ``u_i``, ``sum_{i != j} u_i . u_j = |sum_i u_i|^2 - sum_i |u_i|^2`` (the second
    term is ``n`` when no row is zero; a zero row has cosine 0 with every other). Near 1: every
    molecule points the same way, and only the norm is left to tell them apart. NaN for fewer than
    two molecules.
    """
    x = _matrix(views)
    n = len(x)
    if n < 2:
        return float("nan")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    total = unit.sum(axis=0)
    return float((total @ total - (unit * unit).sum()) / (n * (n - 1)))


def matrix_health(views: np.ndarray) -> dict[str, float]:
    """:func:`view_spread`, :func:`effective_rank` and :func:`mean_pair_cosine` of one matrix."""
    return {"spread": view_spread(views), "effective_rank": effective_rank(views),
            "mean_pair_cosine": mean_pair_cosine(views)}


def encode_graphs(net: nn.Module, graphs: GraphArrays, batch_size: int = 256,
                  add_positions: bool = False, stages: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, dict[str, list[float]] | None]:
    """The pooled block views of every molecule of ``graphs``, in its order, and (with ``stages``)
    the within-molecule mean cosine per branch and stage.

    Runs ``net``'s encoders (a BatmanNet or a BatmanNetFinetune) in evaluation mode under
    ``torch.inference_mode``, ``batch_size`` molecules at a time, on the device of its weights, and
    restores its mode after.

    Returns:
        ``(atom, bond, stage_cosine)``: ``(n, h)`` float32 atom and bond views
        (:func:`bbmn.models.views.block_views`), and ``{"atom": [...], "edge": [...]}`` with one
        value per stage (input stage, block 1, ...): the mean over the molecules with at least two
        atoms (edges) of :func:`bbmn.models.views.stage_cosines`' within-molecule cosine (NaN when
        no molecule has two), or None without ``stages``.
    """
    import torch

    from bbmn.models.views import block_views, views_and_stage_cosines
    from bbmn.train.device import device_of, to_device

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(graphs)
    hidden = net.node_encoder.embed.project.out_features
    atom = np.zeros((n, hidden), np.float32)
    bond = np.zeros((n, hidden), np.float32)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    was_training = net.training
    net.eval()
    device = device_of(net)
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                batch = to_device(graphs.take(np.arange(start, min(start + batch_size, n))).to_batch(), device)
                if not stages:
                    a, b = block_views(net, batch, add_positions)
                else:  # one forward pass gives the views and the stage cosines
                    a, b, cosines = views_and_stage_cosines(net, batch, add_positions)
                atom[start:start + len(a)], bond[start:start + len(b)] = a.cpu().numpy(), b.cpu().numpy()
                if stages:
                    for branch, rows in cosines.items():
                        pairs = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
                        sums[branch] = sums.get(branch, 0.0) + pairs[:, 0]
                        counts[branch] = counts.get(branch, 0.0) + pairs[:, 1]
    finally:
        net.train(was_training)
    if not stages:
        return atom, bond, None
    if not sums:  # no molecule at all: one NaN per stage
        blocks = len(net.node_encoder.blocks) + 1
        return atom, bond, {"atom": [float("nan")] * blocks, "edge": [float("nan")] * blocks}
    cosine = {branch: [float(s / c) if c > 0 else float("nan") for s, c in zip(sums[branch], counts[branch])]
              for branch in sums}
    return atom, bond, cosine


def health_of(atom: np.ndarray, bond: np.ndarray, stage_cosine: dict[str, list[float]]) -> dict:
    """:func:`encoder_health`'s dict from already computed views and stage cosines."""
    return {**{name: matrix_health(v) for name, v in zip(VIEWS, (atom, bond))},
            "stage_cosine": {branch: list(values) for branch, values in stage_cosine.items()}}


def encoder_health(net: nn.Module, graphs: GraphArrays, batch_size: int = 256,
                   add_positions: bool = False) -> dict:
    """Health of an encoder's representation of the molecules ``graphs`` (module docstring).

    Args:
        net: a BatmanNet or BatmanNetFinetune (anything with ``node_encoder`` and
            ``edge_encoder``); run in evaluation mode, its mode is restored after.
        graphs: the molecules.
        batch_size: molecules per forward pass.
        add_positions: add the per-molecule positional code to the input stage (as pre-training).

    Returns:
        Plain floats: ``{"atom": {"spread", "effective_rank", "mean_pair_cosine"}, "bond": {...},
        "stage_cosine": {"atom": [input stage, block 1, ..., block n], "edge": [...]}}``.
    """
    atom, bond, stage_cosine = encode_graphs(net, graphs, batch_size, add_positions, stages=True)
    return health_of(atom, bond, stage_cosine)
