"""A saved model's network, and the two pooled views it gives as a molecule embedding.

Both kinds of checkpoint hold the encoders, but not the same readouts: a fine-tuned model exposes
the views its heads read (:meth:`~bbmn.models.finetune.BatmanNetFinetune.views`); a pre-trained
one has no trained atom-from-bond readout (fine-tuning starts it fresh), so its views are the
encoders' own outputs, pooled (:func:`~bbmn.models.views.pretrained_views_of`). Which is which is
decided here, once, for ``bbmn embed`` and ``bbmn probe``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from bbmn.models.batmannet import BatmanNet
from bbmn.models.finetune import BatmanNetFinetune
from bbmn.models.views import GraphInputs, pretrained_views_of

#: the network each kind of checkpoint (its ``kind``) holds
MODEL_CLASSES: dict[str, type[nn.Module]] = {"batmannet-pretrained": BatmanNet,
                                             "batmannet-finetuned": BatmanNetFinetune}


def model_from_saved(saved: dict) -> nn.Module:
    """The network of a loaded checkpoint (its ``kind``, ``model_config`` and ``model`` weights),
    in evaluation mode."""
    net = MODEL_CLASSES[saved["kind"]].from_config(saved["model_config"])
    net.load_state_dict(saved["model"])
    return net.eval()


def embedding_views(net: nn.Module, compile: bool = False) -> Callable[[Batch], tuple[Tensor, Tensor]]:
    """``batch -> (atom view, bond view)``, ``(B, h)`` each, of a pre-trained or fine-tuned ``net``.

    With ``compile`` the encoders run through ``torch.compile`` (dynamic shapes, whole graph; a
    one-off compile per process): a fine-tuned model's own :meth:`enable_compile`, else
    :func:`~bbmn.models.views.pretrained_views_of`, which is tensor arithmetic only.
    """
    if isinstance(net, BatmanNetFinetune):
        if compile:
            net.enable_compile()
        return net.views
    views_of = functools.partial(pretrained_views_of, net)
    if compile:
        views_of = torch.compile(views_of, dynamic=True, fullgraph=True)
    return lambda batch: views_of(GraphInputs.of(batch))
