"""The architectures this toolkit serves, and the named BSRNN presets (the paper's size, small ones for a
laptop CPU, a tiny one for tests).

One :class:`Architecture` per architecture name, the name a checkpoint records: its config class, its
dense and supernet classes, the slicing rules, and the closed forms of parameters and MACs. Checkpoint,
slicing, costs, export and the model card look it up here. Adding an architecture is one module in
``models/`` (config with ``from_dict``/``to_dict``/``with_size``, a dense network with ``mask(spec)``
and ``forward(wav)``, a supernet with ``forward(wav, subnet)`` and ``space``, ``slice_state``) plus one
:func:`register` call. Torch-free: classes and functions may be given as ``"module:name"`` and are
imported when first used.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from s2g_deploy.models.config import (
    BSRNNConfig,
    CausalBSRNNConfig,
    causal_count_params,
    causal_macs_per_frame,
    causal_quantizable_weights,
    count_params,
    macs_per_frame,
    quantizable_weights,
)
from s2g_deploy.subnet import ElasticSpace

ARCHITECTURE = "bsrnn"
CAUSAL_ARCHITECTURE = "bsrnn-causal"


@dataclass(frozen=True)
class Architecture:
    """One architecture: what every layer needs to know about it."""

    name: str  # as checkpoints record it
    title: str  # as the model card names it, e.g. "BSRNN"
    # from_dict, to_dict, with_size(feature_dim, num_blocks), frames(samples), samples_for_frames(frames),
    # sample_rate_hz, n_fft, hop_length, n_bins
    config: type
    dense: Any  # the dense network class (or "module:name")
    supernet: Any  # the elastic supernet class, (config, space) -> module (or "module:name")
    slice_state: Any  # (state, full config, subnet) -> (subnet config, sliced state) (or "module:name")
    count_params: Callable[[Any], int]  # closed form, from a config
    macs_per_frame: Callable[[Any], int]  # closed-form network MACs per STFT frame, from a config
    description: str = "network"  # what the model card calls it: "a dense <description> cut out of ..."
    # (elements, output channels) of the weights int8 quantization stores as bytes, from a config
    quantizable_weights: Callable[[Any], tuple[int, int]] | None = None
    # causal: the network can run as a stream (``s2g export --io stream``) and only that way on devices
    causal: bool = False

    def load(self, part: str) -> Any:
        """``dense``, ``supernet`` or ``slice_state``, imported if it was given by name."""
        ref = getattr(self, part)
        if isinstance(ref, str):
            module, _, name = ref.partition(":")
            return getattr(importlib.import_module(module), name)
        return ref


_ARCHITECTURES: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    """Make ``arch`` known by its name (a second registration of a name replaces the first)."""
    _ARCHITECTURES[arch.name] = arch
    return arch


def get_architecture(name: str) -> Architecture:
    """The architecture a checkpoint names; ValueError for one this installation does not know."""
    if name not in _ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r} (this version knows {', '.join(map(repr, _ARCHITECTURES))})")
    return _ARCHITECTURES[name]


def architecture_of(config: Any) -> Architecture:
    """The architecture whose config class ``config`` (or a model's ``.config``) is."""
    config = getattr(config, "config", config)
    for arch in _ARCHITECTURES.values():
        if type(config) is arch.config:
            return arch
    raise ValueError(f"no registered architecture has the config class {type(config).__name__}")


register(
    Architecture(
        name=ARCHITECTURE,
        title="BSRNN",
        config=BSRNNConfig,
        dense="s2g_deploy.models.bsrnn:BSRNN",
        supernet="s2g_deploy.models.elastic:ElasticBSRNN",
        slice_state="s2g_deploy.slicing:slice_state",
        count_params=count_params,
        macs_per_frame=macs_per_frame,
        description="band-split RNN",
        quantizable_weights=quantizable_weights,
    )
)
register(
    Architecture(
        name=CAUSAL_ARCHITECTURE,
        title="causal BSRNN",
        config=CausalBSRNNConfig,
        dense="s2g_deploy.models.causal:CausalBSRNN",
        supernet="s2g_deploy.models.causal:ElasticCausalBSRNN",
        slice_state="s2g_deploy.slicing:slice_state",
        count_params=causal_count_params,
        macs_per_frame=causal_macs_per_frame,
        description="causal band-split RNN",
        quantizable_weights=causal_quantizable_weights,
        causal=True,
    )
)


def band_widths_from_hz(sample_rate_hz: int, n_fft: int, splits: list[tuple[float, float]]) -> tuple[int, ...]:
    """Band widths in bins from ``(up_to_hz, bandwidth_hz)`` pieces, low to high; the rest is one band.

    E.g. ``[(1000, 100), (4000, 250)]``: 100 Hz bands up to 1 kHz, 250 Hz bands up to 4 kHz, then a
    single band up to Nyquist. Band edges are rounded to the nearest bin.
    """
    n_bins = n_fft // 2 + 1
    bin_hz = sample_rate_hz / n_fft
    edges = [0]
    low = 0.0
    for up_to_hz, bandwidth_hz in splits:
        f = low
        while f + bandwidth_hz <= up_to_hz + 1e-9:
            f += bandwidth_hz
            edge = min(round(f / bin_hz), n_bins)
            if edge > edges[-1]:
                edges.append(edge)
        low = up_to_hz
    if edges[-1] < n_bins:
        edges.append(n_bins)
    return tuple(b - a for a, b in itertools.pairwise(edges))


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: BSRNNConfig
    space: ElasticSpace


def _preset(name, description, sr, n_fft, hop, splits, n, blocks, widths, config_class=BSRNNConfig) -> Preset:
    config = config_class(sr, n_fft, hop, band_widths_from_hz(sr, n_fft, splits), n, blocks)
    return Preset(name, description, config, ElasticSpace(tuple(range(1, blocks + 1)), widths))


_16K_BANDS = [(1000, 250), (4000, 500), (7000, 1000)]  # 4 + 6 + 3 bands, then 7-8 kHz

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        _preset(
            "paper",
            "BSRNN as in the S2G paper: 44.1 kHz, 41 bands, N=128, H=256, 12 blocks",
            44100,
            2048,
            512,
            [(1000, 100), (4000, 250), (8000, 500), (16000, 1000), (20000, 2000)],
            128,
            12,
            (32, 64, 96, 128),
        ),
        _preset(
            "small",
            "16 kHz, 14 bands, N=48, 6 blocks: trains on a laptop CPU",
            16000,
            512,
            128,
            _16K_BANDS,
            48,
            6,
            (12, 24, 36, 48),
        ),
        _preset(
            "xsmall",
            "16 kHz, 14 bands, N=32, 4 blocks: the bundled supernet's size",
            16000,
            512,
            128,
            _16K_BANDS,
            32,
            4,
            (8, 16, 24, 32),
        ),
        _preset(
            "xsmall-causal",
            "causal, streams: 16 kHz, 16 ms window, 8 ms hop (16 ms algorithmic latency), 14 bands, N=32, 4 blocks",
            16000,
            256,
            128,
            _16K_BANDS,
            32,
            4,
            (8, 16, 24, 32),
            CausalBSRNNConfig,
        ),
        _preset(
            "tiny-causal",
            "causal, streams: 16 kHz, n_fft 64, hop 32, 4 bands, N=8, 2 blocks: for tests",
            16000,
            64,
            32,
            [(4000, 2000), (6000, 2000)],
            8,
            2,
            (4, 8),
            CausalBSRNNConfig,
        ),
        _preset(
            "tiny",
            "16 kHz, 4 bands, N=8, 2 blocks: for tests",
            16000,
            64,
            16,
            [(4000, 2000), (6000, 2000)],
            8,
            2,
            (4, 8),
        ),
    )
}


def get_preset(name: str) -> Preset:
    from s2g_deploy.errors import InputError

    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
