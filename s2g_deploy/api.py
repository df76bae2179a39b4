"""The library API: each CLI command is a thin layer over one function here."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from s2g_deploy.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from s2g_deploy.errors import InputError
from s2g_deploy.models.bsrnn import count_params
from s2g_deploy.models.elastic import ElasticBSRNN
from s2g_deploy.models.registry import get_preset
from s2g_deploy.slicing import slice_subnet
from s2g_deploy.subnet import Subnet


@dataclass(frozen=True)
class SubnetParams:
    subnet: Subnet
    params: int


@dataclass(frozen=True)
class InspectReport:
    """What ``s2g inspect`` shows: the checkpoint's metadata and the parameter count of every subnet."""

    source: str
    meta: CheckpointMeta
    params: int
    subnets: tuple[SubnetParams, ...]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            **self.meta.to_dict(),
            "params": self.params,
            "subnets": [{"subnet": str(s.subnet), "params": s.params} for s in self.subnets],
        }


def new_supernet(preset: str, seed: int = 0) -> ElasticBSRNN:
    """A randomly initialised supernet of a named preset (``s2g_deploy.models.registry.PRESETS``)."""
    p = get_preset(preset)
    torch.manual_seed(seed)
    return ElasticBSRNN(p.config, p.space)


def init(preset: str, out: str | os.PathLike, seed: int = 0) -> CheckpointMeta:
    """Write an untrained supernet of ``preset`` to ``out`` (a starting point for training)."""
    model = new_supernet(preset, seed)
    training = {"status": "untrained", "preset": preset, "seed": seed}
    return save_checkpoint(out, model, CheckpointMeta(model.config, model.space, training=training))


def slice_to_file(checkpoint: str | os.PathLike, subnet: Subnet | str, out: str | os.PathLike) -> CheckpointMeta:
    """Cut ``subnet`` out of the supernet at ``checkpoint`` and save it as a dense checkpoint at ``out``."""
    subnet = Subnet.parse(subnet) if isinstance(subnet, str) else subnet
    ckpt = load_checkpoint(checkpoint)
    if not isinstance(ckpt.model, ElasticBSRNN):
        raise InputError(f"{checkpoint}: is a dense subnet ({ckpt.meta.subnet}), not a supernet; nothing to slice")
    dense = slice_subnet(ckpt.model, subnet)
    meta = CheckpointMeta(
        dense.config,
        subnet=subnet,
        parent_sha256=ckpt.meta.weights_sha256,
        training=ckpt.meta.training,
        quality=_quality_of(ckpt.meta, subnet),
    )
    return save_checkpoint(out, dense, meta)


def inspect(checkpoint: str | os.PathLike | None = None, preset: str | None = None) -> InspectReport:
    """Describe a checkpoint file, or an untrained preset when ``preset`` is given instead."""
    if (checkpoint is None) == (preset is None):
        raise InputError("give either a checkpoint file or --preset, not both or neither")
    if preset is not None:
        p = get_preset(preset)
        meta = CheckpointMeta(p.config, p.space, training={"status": "untrained", "preset": preset})
        source = f"preset:{preset}"
    else:
        ckpt = load_checkpoint(checkpoint)
        meta, source = ckpt.meta, str(Path(checkpoint))
    grid = meta.space.grid() if meta.space else []
    subnets = tuple(
        SubnetParams(s, count_params(meta.config.with_size(feature_dim=s.width, num_blocks=s.depth))) for s in grid
    )
    return InspectReport(source, meta, count_params(meta.config), subnets)


def _quality_of(meta: CheckpointMeta, subnet: Subnet) -> dict | None:
    if not meta.quality:
        return None
    rows = meta.quality.get("subnets", {})
    summary = {k: v for k, v in meta.quality.items() if k != "subnets"}
    return {**summary, "subnets": {str(subnet): rows.get(str(subnet))}}
