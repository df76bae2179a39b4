"""The BSRNN's hyper-parameters and what follows from them alone (torch-free: checkpoint headers, search
and costs read them without importing torch)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BSRNNConfig:
    """Hyper-parameters of one dense BSRNN.

    ``lstm_hidden`` (H = 2N) and ``mask_hidden`` (M = 4N) are tied to ``feature_dim`` as in the paper,
    so width is a single number and a subnet of width n has H = 2n and M = 4n.
    """

    sample_rate_hz: int
    n_fft: int
    hop_length: int
    band_widths: tuple[int, ...]  # bins per band, low to high; sums to n_fft // 2 + 1
    feature_dim: int  # N
    num_blocks: int  # L

    def __post_init__(self) -> None:
        object.__setattr__(self, "band_widths", tuple(int(w) for w in self.band_widths))
        problems = []
        if self.sample_rate_hz <= 0:
            problems.append(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")
        if self.n_fft < 2 or self.hop_length < 1 or self.hop_length > self.n_fft:
            problems.append(f"need 2 <= n_fft and 1 <= hop_length <= n_fft, got {self.n_fft}/{self.hop_length}")
        if any(w < 1 for w in self.band_widths) or sum(self.band_widths) != self.n_bins:
            problems.append(
                f"band_widths must be positive and sum to n_fft // 2 + 1 = {self.n_bins}, "
                f"got {len(self.band_widths)} bands summing to {sum(self.band_widths)}"
            )
        if self.feature_dim < 1 or self.num_blocks < 1:
            problems.append(f"need feature_dim >= 1 and num_blocks >= 1, got {self.feature_dim}/{self.num_blocks}")
        if problems:
            raise ValueError("invalid BSRNN config: " + "; ".join(problems))

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_bands(self) -> int:
        return len(self.band_widths)

    @property
    def lstm_hidden(self) -> int:
        return 2 * self.feature_dim

    @property
    def mask_hidden(self) -> int:
        return 4 * self.feature_dim

    def frames(self, n_samples: int) -> int:
        """STFT frames for an input of ``n_samples`` samples (centred, zero-padded)."""
        return 1 + n_samples // self.hop_length

    def samples_for_frames(self, frames: int) -> int:
        """The fewest samples that give ``frames`` frames (the inverse of :meth:`frames`)."""
        return (frames - 1) * self.hop_length

    def with_size(self, feature_dim: int, num_blocks: int) -> BSRNNConfig:
        return dataclasses.replace(self, feature_dim=feature_dim, num_blocks=num_blocks)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "band_widths": list(self.band_widths)}

    @classmethod
    def from_dict(cls, data: dict) -> BSRNNConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        missing = sorted(fields - set(data))
        if unknown or missing:
            raise ValueError(f"BSRNN config: unknown keys {unknown}, missing keys {missing}")
        return cls(**data)


def band_groups(band_widths: tuple[int, ...]) -> tuple[tuple[int, int, int], ...]:
    """Runs of consecutive equal-width bands as (first band, bands in the run, bins per band)."""
    groups, first = [], 0
    for width, run in itertools.groupby(band_widths):
        count = len(list(run))
        groups.append((first, count, width))
        first += count
    return tuple(groups)


def count_params(config: BSRNNConfig) -> int:
    """Closed-form parameter count of a dense BSRNN (checked against ``sum(p.numel())`` in tests)."""
    n, h, m, L = config.feature_dim, config.lstm_hidden, config.mask_hidden, config.num_blocks
    bins, K = config.n_bins, config.n_bands
    # band split: GroupNorm(2G) affine 2*2G, Linear(2G, N) with bias, summed over bands
    band_split = 4 * bins + 2 * bins * n + K * n
    # one residual BLSTM: GroupNorm(N) + 2 directions x (4H (N + H) weights + 8H biases) + Linear(2H, N)
    residual = 2 * n + 2 * (4 * h * (n + h) + 8 * h) + (2 * h * n + n)
    # mask estimation: per band GroupNorm(N) + Linear(N, M) + Linear(M, 4G), summed over bands
    mask = K * (2 * n + n * m + m) + 4 * bins * m + 4 * bins
    return band_split + L * 2 * residual + mask


def quantizable_weights(config: BSRNNConfig) -> tuple[int, int]:
    """(elements, scale/zero-point pairs) of the weights of every Linear and LSTM: what int8 quantization
    stores as one byte each, with a scale and zero point per output channel of a 2-D weight and one per
    batched per-band weight (a run of equal-width bands; checked on the quantized graph)."""
    n, h, m, L = config.feature_dim, config.lstm_hidden, config.mask_hidden, config.num_blocks
    bins, runs = config.n_bins, len(band_groups(config.band_widths))  # runs of equal-width bands: a matmul each
    # per residual BLSTM: 2 directions x (W 4H x N, R 4H x H), rows are channels; then Linear(2H, N)
    residual = (2 * 4 * h * (n + h) + 2 * h * n, 2 * 2 * 4 * h + n)
    band_split = (2 * bins * n, runs)  # per band Linear(2 G_k, N), batched per run
    mask = (config.n_bands * n * m + 4 * bins * m, 1 + runs)  # Linear(N, M) all bands at once; Linear(M, 4 G_k)
    return (
        band_split[0] + L * 2 * residual[0] + mask[0],
        band_split[1] + L * 2 * residual[1] + mask[1],
    )


def macs_per_frame(config: BSRNNConfig) -> int:
    """Closed-form network MACs per STFT frame of a dense BSRNN (batch 1; checked against fvcore in tests)."""
    n, h, m = config.feature_dim, config.lstm_hidden, config.mask_hidden
    bins, bands = config.n_bins, config.n_bands
    band_split = 2 * bins * n  # per band Linear(2 G_k, n); the 2 G_k sum to 2 F
    blstm_step = 2 * 4 * h * (n + h)  # 2 directions x 4 gates x (n input + h recurrent) x h units
    projection = 2 * h * n  # Linear(2h, n) after each BLSTM
    # time BLSTM: K sequences advance one step per frame; band BLSTM: one K-step sequence per frame
    block = 2 * bands * (blstm_step + projection)
    mask = bands * n * m + 4 * bins * m  # per band Linear(n, m) and Linear(m, 4 G_k)
    return band_split + config.num_blocks * block + mask


@dataclass(frozen=True)
class CausalBSRNNConfig(BSRNNConfig):
    """A :class:`BSRNNConfig` for the causal BSRNN; hop must divide n_fft (the stream moves by whole hops)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_fft % self.hop_length:
            raise ValueError(
                f"invalid causal BSRNN config: hop_length must divide n_fft, got {self.n_fft}/{self.hop_length}"
            )

    @property
    def delay_samples(self) -> int:
        """Samples between an input sample and its output sample in a stream: n_fft - hop."""
        return self.n_fft - self.hop_length

    def frames(self, n_samples: int) -> int:
        """Frames a stream computes for ``n_samples``: one per hop (a frame ends with each hop)."""
        return math.ceil(n_samples / self.hop_length)

    def samples_for_frames(self, frames: int) -> int:
        return frames * self.hop_length


def causal_count_params(config: CausalBSRNNConfig) -> int:
    """Closed-form parameter count of a dense causal BSRNN (checked against ``sum(p.numel())``)."""
    n, h, m, L = config.feature_dim, config.lstm_hidden, config.mask_hidden, config.num_blocks
    bins, K = config.n_bins, config.n_bands
    band_split = 4 * bins + 2 * bins * n + K * n
    band = 2 * n + 2 * (4 * h * (n + h) + 8 * h) + (2 * h * n + n)  # residual BLSTM, as offline
    time = 2 * n + (4 * h * (n + h) + 8 * h) + (h * n + n)  # forward-only LSTM and Linear(H, N)
    mask = K * (2 * n + n * m + m) + 4 * bins * m + 4 * bins
    return band_split + L * (band + time) + mask


def causal_macs_per_frame(config: CausalBSRNNConfig) -> int:
    """Closed-form network MACs per STFT frame of a dense causal BSRNN (checked against fvcore)."""
    n, h, m = config.feature_dim, config.lstm_hidden, config.mask_hidden
    bins, K = config.n_bins, config.n_bands
    lstm_step = 4 * h * (n + h)  # one direction: 4 gates x (n input + h recurrent) x h units
    band = K * (2 * lstm_step + 2 * h * n)  # the band BLSTM: K steps per frame, both directions
    time = K * (lstm_step + h * n)  # the time LSTM: K sequences advance one step per frame
    mask = K * n * m + 4 * bins * m
    return 2 * bins * n + config.num_blocks * (band + time) + mask


def causal_quantizable_weights(config: CausalBSRNNConfig) -> tuple[int, int]:
    """(elements, scale/zero-point pairs) int8 stores, as :func:`quantizable_weights`."""
    n, h, m, L = config.feature_dim, config.lstm_hidden, config.mask_hidden, config.num_blocks
    bins, runs = config.n_bins, len(band_groups(config.band_widths))
    band = (2 * 4 * h * (n + h) + 2 * h * n, 2 * 2 * 4 * h + n)
    time = (4 * h * (n + h) + h * n, 2 * 4 * h + n)  # W and R of one direction, then Linear(H, N)
    band_split = (2 * bins * n, runs)
    mask = (config.n_bands * n * m + 4 * bins * m, 1 + runs)
    return (
        band_split[0] + L * (band[0] + time[0]) + mask[0],
        band_split[1] + L * (band[1] + time[1]) + mask[1],
    )
