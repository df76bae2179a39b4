"""The checkpoint format: one safetensors file, weights plus JSON metadata, no pickle anywhere.

Supernets and dense subnets share the format. The safetensors header carries one string entry,
``s2g_deploy.checkpoint``: the metadata as JSON, with its ``format_version``. (One entry, because
safetensors writes its metadata map in hash order: several entries would make saves non-reproducible.)
Everything that can go wrong while loading becomes a one-line :class:`CheckpointError` that names
the file. :func:`read_header` is the one reader of that header: torch-free (this module imports torch
only to load weights), so a warm ``s2g search`` reads checkpoints without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2g_deploy.artifacts import atomic_file
from s2g_deploy.errors import CheckpointError, first_line
from s2g_deploy.models.config import BSRNNConfig
from s2g_deploy.models.registry import architecture_of, get_architecture
from s2g_deploy.subnet import ElasticSpace, Subnet

if TYPE_CHECKING:
    import torch

    from s2g_deploy.models.bsrnn import BSRNN

FORMAT = "s2g_deploy.checkpoint"
FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint says about itself. ``space`` is set for supernets, ``subnet`` for dense subnets."""

    config: BSRNNConfig
    space: ElasticSpace | None = None
    subnet: Subnet | None = None
    parent_sha256: str | None = None  # weights hash of the supernet a dense subnet was cut from
    training: Mapping[str, Any] = field(default_factory=dict)
    quality: Mapping[str, Any] | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    weights_sha256: str = ""
    architecture: str | None = None  # the registry's name; default: the architecture of ``config``

    def __post_init__(self) -> None:
        if self.architecture is None:
            object.__setattr__(self, "architecture", architecture_of(self.config).name)

    @property
    def kind(self) -> str:
        return "supernet" if self.space is not None else "dense"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "architecture": {"name": self.architecture, "config": self.config.to_dict()},
            "elastic_space": self.space.to_dict() if self.space else None,
            "subnet": str(self.subnet) if self.subnet else None,
            "parent_sha256": self.parent_sha256,
            "training": dict(self.training),
            "quality": dict(self.quality) if self.quality is not None else None,
            "versions": dict(self.versions),
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_dict(cls, data: dict) -> CheckpointMeta:
        arch = data["architecture"]
        config_class = get_architecture(arch["name"]).config
        space = data.get("elastic_space")
        subnet = data.get("subnet")
        return cls(
            architecture=arch["name"],
            config=config_class.from_dict(arch["config"]),
            space=ElasticSpace.from_dict(space) if space else None,
            subnet=Subnet.parse(subnet) if subnet else None,
            parent_sha256=data.get("parent_sha256"),
            training=data.get("training") or {},
            quality=data.get("quality"),
            versions=data.get("versions") or {},
            weights_sha256=data["weights_sha256"],
        )


@dataclass(frozen=True)
class Checkpoint:
    model: BSRNN  # an ElasticBSRNN when meta.kind == "supernet"
    meta: CheckpointMeta
    path: Path | None = None


def weights_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """The versions a checkpoint records: the code that wrote it."""
    from s2g_deploy.environment import versions

    return versions("s2g_deploy", "torch", "safetensors")


def save_checkpoint(path: str | os.PathLike, model: BSRNN, meta: CheckpointMeta) -> CheckpointMeta:
    """Write ``model`` and ``meta`` to ``path`` atomically (temporary file, then rename).

    The weights hash and library versions are filled in here; returns the metadata as written.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = replace(meta, weights_sha256=weights_sha256(state), versions=meta.versions or library_versions())
    header = {FORMAT: json.dumps({"format_version": FORMAT_VERSION, **meta.to_dict()})}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        save_file(state, tmp, metadata=header)
    return meta


def _sniff(path: Path) -> None:
    """Reject what is not a safetensors file before any parser sees it."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(9)
    if size >= 9 and head[8:9] == b"{":
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len <= min(_MAX_HEADER_BYTES, size - 8):
            return
    if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        raise CheckpointError(
            f"{path}: this is a PyTorch pickle (.pt/.pth); s2g never unpickles files. "
            "Load it yourself in a trusted session and re-save it with s2g_deploy.save_checkpoint"
        )
    if size < 8:
        raise CheckpointError(f"{path}: file is {size} bytes, too short to be a safetensors checkpoint")
    raise CheckpointError(f"{path}: not a safetensors file (bad header); is it truncated or another format?")


def read_header(path: str | os.PathLike) -> dict:
    """The checkpoint's metadata as saved (:meth:`CheckpointMeta.to_dict`'s form), checked for format,
    version and a file as long as its header says; no weights read, no torch imported."""
    path = Path(path)
    _sniff(path)
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            tensors = json.loads(f.read(length))
        header = tensors.pop("__metadata__", None) or {}
        ends = [t["data_offsets"][1] for t in tensors.values()]
        if not isinstance(header, dict) or not all(isinstance(e, int) for e in ends):
            raise ValueError("malformed header")
    except Exception as exc:  # a header that is not the JSON safetensors writes
        raise CheckpointError(f"{path}: unreadable safetensors file ({first_line(exc)})") from None
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise CheckpointError(f"{path}: file is {size} bytes but its header describes {expected}; it is truncated")
    if FORMAT not in header:
        raise CheckpointError(f"{path}: a safetensors file, but not an s2g checkpoint (no '{FORMAT}' metadata)")
    try:
        data = json.loads(header[FORMAT])
        version = data.pop("format_version", "?")
    except Exception as exc:
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({first_line(exc)})") from None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}; this s2g reads version {FORMAT_VERSION}")
    return data


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    """Read and validate only the metadata of a checkpoint (fast: no weights are loaded, no torch)."""
    data = read_header(path)
    try:
        return CheckpointMeta.from_dict(data)
    except Exception as exc:
        raise CheckpointError(f"{path}: invalid checkpoint metadata ({first_line(exc)})") from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a supernet or dense subnet; verifies tensor names, shapes and the weights hash."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_meta(path)
    arch = get_architecture(meta.architecture)
    try:
        model = arch.load("supernet")(meta.config, meta.space) if meta.space else arch.load("dense")(meta.config)
    except (ValueError, TypeError, RuntimeError) as exc:  # metadata that contradicts itself
        raise CheckpointError(f"{path}: the metadata describes no valid model ({first_line(exc)})") from None
    try:
        state = load_file(path)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable weights ({first_line(exc)}); the file may be truncated") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        raise CheckpointError(f"{path}: weights do not match the metadata's architecture: {_diff(expected, found)}")
    if weights_sha256(state) != meta.weights_sha256:
        raise CheckpointError(f"{path}: weights hash differs from the one recorded at save time; the file is corrupt")
    model.load_state_dict(state, strict=True)
    return Checkpoint(model.to(device).eval(), meta, path)


def _diff(expected: dict, found: dict) -> str:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing:
        return f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    if unexpected:
        return f"unexpected {unexpected[0]}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else "")
    name = next(k for k in sorted(expected) if expected[k] != found[k])
    return f"{name} has shape {list(found[name])}, expected {list(expected[name])}"
