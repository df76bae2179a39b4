"""Named architecture presets: the paper's size, small ones for a laptop CPU, and a tiny one for tests."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from s2g_deploy.models.config import BSRNNConfig
from s2g_deploy.subnet import ElasticSpace

ARCHITECTURE = "bsrnn"


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


def _preset(name, description, sr, n_fft, hop, splits, n, blocks, widths) -> Preset:
    config = BSRNNConfig(sr, n_fft, hop, band_widths_from_hz(sr, n_fft, splits), n, blocks)
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
