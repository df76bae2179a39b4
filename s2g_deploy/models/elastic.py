"""The elastic BSRNN supernet: one set of weights, any subnet of its elastic space.

It *is* a full-size :class:`BSRNN` (same layers, same parameter names) that can also run as a smaller
subnet: ``forward(wav, subnet)`` takes views of the first units of every active layer
(``slicing.slice_state``) and runs the dense forward on them with ``torch.func.functional_call``.
So the supernet and the dense model share one definition of the computation, the subnet costs only
its own MACs, and gradients reach only the weights the subnet uses.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from s2g_deploy.models.bsrnn import BSRNN, BSRNNConfig
from s2g_deploy.slicing import slice_state
from s2g_deploy.subnet import ElasticSpace, Subnet


class ElasticBSRNN(BSRNN):
    """A BSRNN supernet with dynamic depth and width over ``space``."""

    dense = BSRNN  # the dense class a subnet runs as (and the forward of the full network)

    def __init__(self, config: BSRNNConfig, space: ElasticSpace):
        # S2G trains the full network at every step, so it must be the largest subnet of the space.
        if space.largest != Subnet(config.num_blocks, config.feature_dim):
            raise ValueError(
                f"elastic space {space.to_dict()} must end at the supernet's own size: "
                f"{config.num_blocks} blocks x {config.feature_dim} features"
            )
        super().__init__(config)
        self.space = space
        # Weightless (meta-device) dense networks, one per subnet used, that run the dense forward
        # on the sliced views; kept in a plain dict so they are not submodules.
        self._templates: dict[Subnet, BSRNN] = {}

    @property
    def full(self) -> Subnet:
        return Subnet(self.config.num_blocks, self.config.feature_dim)

    def forward(self, wav: torch.Tensor, subnet: Subnet | None = None) -> torch.Tensor:
        """Separate ``wav`` (B, S) with ``subnet`` (default: the full network); returns (B, S)."""
        subnet = self.full if subnet is None else subnet
        if subnet == self.full:
            return super().forward(wav)
        return self._run(subnet, wav)

    def _run(self, subnet: Subnet, wav: torch.Tensor) -> torch.Tensor:
        self.space.check(subnet)
        config, weights = slice_state(dict(self.named_parameters()), self.config, subnet)
        template = self._templates.get(subnet)
        if template is None:
            with torch.device("meta"):
                template = self._templates[subnet] = self.dense(config)
        template.train(self.training)
        return functional_call(template, weights, (wav,), strict=True)
