"""Cut a subnet out of a supernet as a dense BSRNN with its own, contiguous weights.

One set of rules, :func:`slice_state`, says which part of each supernet weight belongs to a subnet.
The supernet's forward uses those rules on views (so gradients reach only the subnet's part); slicing
uses them on copies (so the dense model owns its memory and knows nothing of the supernet).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from s2g_deploy.models.bsrnn import BSRNN, BSRNNConfig
from s2g_deploy.subnet import Subnet

if TYPE_CHECKING:
    from s2g_deploy.models.elastic import ElasticBSRNN

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


def lstm_gate_rows(weight: torch.Tensor, full_hidden: int, hidden: int) -> torch.Tensor:
    """Rows of the first ``hidden`` units of each gate (i, f, g, o stacked in dim 0, PyTorch's order)."""
    return torch.cat([weight[g * full_hidden : g * full_hidden + hidden] for g in range(4)], dim=0)


def bidirectional_columns(weight: torch.Tensor, full_hidden: int, hidden: int) -> torch.Tensor:
    """Input columns of a layer after a BLSTM: the first ``hidden`` of each direction."""
    return torch.cat([weight[:, :hidden], weight[:, full_hidden : full_hidden + hidden]], dim=1)


def _slice_one(name: str, t: torch.Tensor, full: BSRNNConfig, sub: BSRNNConfig) -> torch.Tensor:
    n, h, m, H = sub.feature_dim, sub.lstm_hidden, sub.mask_hidden, full.lstm_hidden
    leaf = name.rsplit(".", 1)[-1]
    if name.startswith("band_split.norms."):
        return t  # the band's input bins never change
    if name.startswith("band_split.fcs."):
        return t[:n]  # weight (N, 2G) -> (n, 2G); bias (N,) -> (n,)
    if ".lstm." in name:
        rows = lstm_gate_rows(t, H, h)
        if leaf.startswith("weight_ih"):
            return rows[:, :n]
        if leaf.startswith("weight_hh"):
            return rows[:, :h]
        return rows  # bias_ih / bias_hh
    if name.endswith(".proj.weight"):
        if t.shape[1] == H:  # after the causal model's forward-only time LSTM: one direction
            return t[:n, :h]
        return bidirectional_columns(t, H, h)[:n]
    if name.endswith(".norm.weight") or name.endswith(".norm.bias") or name.endswith(".proj.bias"):
        return t[:n]
    if name.startswith("mask_estimation.norms."):
        return t[:n]
    if name.startswith("mask_estimation.fc1."):
        return t[:m, :n] if leaf == "weight" else t[:m]
    if name.startswith("mask_estimation.fc2."):
        return t[:, :m] if leaf == "weight" else t  # output bins never change
    raise KeyError(f"no slicing rule for supernet weight {name!r}")


def slice_state(
    state: Mapping[str, torch.Tensor], full: BSRNNConfig, subnet: Subnet
) -> tuple[BSRNNConfig, dict[str, torch.Tensor]]:
    """The subnet's config and its weights as slices of ``state`` (a supernet's state dict).

    Blocks at or beyond ``subnet.depth`` are dropped. The returned tensors may be views or
    autograd-connected results of ``state``; copy them before keeping them.
    """
    sub = full.with_size(feature_dim=subnet.width, num_blocks=subnet.depth)
    out = {}
    for name, t in state.items():
        block = _BLOCK_RE.match(name)
        if block and int(block.group(1)) >= subnet.depth:
            continue
        out[name] = _slice_one(name, t, full, sub)
    return sub, out


def slice_subnet(supernet: ElasticBSRNN, subnet: Subnet) -> BSRNN:
    """A dense model (a :class:`BSRNN` for a BSRNN supernet) computing what ``supernet`` computes at
    ``subnet``, with copied weights; any architecture of :mod:`s2g_deploy.models.registry`, by its rules.

    Raises :class:`~s2g_deploy.errors.SubnetError` (listing the valid subnets) for a subnet outside
    the supernet's elastic space.
    """
    from s2g_deploy.models.registry import architecture_of

    arch = architecture_of(supernet.config)
    supernet.space.check(subnet)
    with torch.no_grad():
        config, weights = arch.load("slice_state")(dict(supernet.named_parameters()), supernet.config, subnet)
        dense = arch.load("dense")(config).to(next(supernet.parameters()).device)
        # .clone().contiguous(): a saved view would drag its whole supernet storage along
        dense.load_state_dict({k: v.detach().clone().contiguous() for k, v in weights.items()}, strict=True)
    return dense.train(supernet.training)
