"""The dense band-split RNN (BSRNN, Luo & Yu 2023), readable top to bottom.

This is the network that gets exported: plain ``nn.Linear``, ``nn.LSTM`` and ``nn.GroupNorm`` layers,
no masks, no elastic logic. The elastic supernet (``models/elastic.py``) runs this same forward with
sliced views of its own, larger weights, so there is exactly one definition of the computation.

Shapes use B batch, S samples, F frequency bins, T frames, K bands, G_k bins in band k, N features,
H LSTM hidden units per direction, M mask hidden units.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2g_deploy.models.config import BSRNNConfig, count_params

__all__ = ["BSRNN", "BSRNNConfig", "complex_multiply", "count_params", "istft", "stft"]


def group_norm_channels_last(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """Apply a GroupNorm(1, C) to (batch, seq, C): statistics over the whole (seq, C) slab."""
    return norm(x.transpose(1, 2)).transpose(1, 2)


class BandSplit(nn.Module):
    """Per band: [Re; Im] of its G_k bins -> GroupNorm(1) -> Linear -> N features."""

    def __init__(self, band_widths: tuple[int, ...], feature_dim: int):
        super().__init__()
        self.band_widths = band_widths
        self.norms = nn.ModuleList(nn.GroupNorm(1, 2 * g) for g in band_widths)
        self.fcs = nn.ModuleList(nn.Linear(2 * g, feature_dim) for g in band_widths)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # spec: (B, F, T, 2) real and imaginary parts
        B, _, T, _ = spec.shape
        bands = torch.split(spec, self.band_widths, dim=1)  # K x (B, G_k, T, 2)
        out = []
        for band, norm, fc in zip(bands, self.norms, self.fcs):
            x = band.permute(0, 2, 3, 1).reshape(B, T, -1)  # (B, T, 2*G_k) laid out as [Re; Im]
            out.append(fc(group_norm_channels_last(norm, x)))  # (B, T, N)
        return torch.stack(out, dim=1)  # (B, K, T, N)


class ResidualBLSTM(nn.Module):
    """z + Linear(BLSTM(GroupNorm(1)(z))) along the sequence axis of (batch, seq, N)."""

    def __init__(self, feature_dim: int, hidden: int):
        super().__init__()
        self.norm = nn.GroupNorm(1, feature_dim)
        self.lstm = nn.LSTM(feature_dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, feature_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z: (batch, seq, N)
        y, _ = self.lstm(group_norm_channels_last(self.norm, z))  # (batch, seq, 2H)
        return z + self.proj(y)


class BandSequenceBlock(nn.Module):
    """One BSRNN block: a residual BLSTM over time, then one over bands."""

    def __init__(self, feature_dim: int, hidden: int):
        super().__init__()
        self.time = ResidualBLSTM(feature_dim, hidden)
        self.band = ResidualBLSTM(feature_dim, hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        B, K, T, N = z.shape  # (B, K, T, N)
        z = self.time(z.reshape(B * K, T, N)).reshape(B, K, T, N)  # sequence over T
        z = z.transpose(1, 2).reshape(B * T, K, N)  # (B*T, K, N)
        z = self.band(z)  # sequence over K
        return z.reshape(B, T, K, N).transpose(1, 2)  # (B, K, T, N)


class MaskEstimation(nn.Module):
    """Per band: GroupNorm(1) -> Linear(N, M) -> tanh -> Linear(M, 4 G_k) -> GLU -> complex mask."""

    def __init__(self, band_widths: tuple[int, ...], feature_dim: int, hidden: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.GroupNorm(1, feature_dim) for _ in band_widths)
        self.fc1 = nn.ModuleList(nn.Linear(feature_dim, hidden) for _ in band_widths)
        self.fc2 = nn.ModuleList(nn.Linear(hidden, 4 * g) for g in band_widths)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z: (B, K, T, N)
        B, _, T, _ = z.shape
        masks = []
        for k, (norm, fc1, fc2) in enumerate(zip(self.norms, self.fc1, self.fc2)):
            x = torch.tanh(fc1(group_norm_channels_last(norm, z[:, k])))  # (B, T, M)
            m = F.glu(fc2(x), dim=-1)  # (B, T, 2*G_k) laid out as [Re; Im]
            masks.append(m.reshape(B, T, 2, -1).permute(0, 3, 1, 2))  # (B, G_k, T, 2)
        return torch.cat(masks, dim=1)  # (B, F, T, 2)


class BSRNN(nn.Module):
    """Dense BSRNN: waveform (B, S) -> separated target waveform (B, S).

    ``mask(spec)`` is the network proper (spectrogram in, complex mask out); ``forward`` wraps it in
    an STFT and an inverse STFT. The STFT is centred with zero padding, so any S >= 1 works.
    """

    def __init__(self, config: BSRNNConfig):
        super().__init__()
        self.config = config
        c = config
        self.band_split = BandSplit(c.band_widths, c.feature_dim)
        self.blocks = nn.ModuleList(BandSequenceBlock(c.feature_dim, c.lstm_hidden) for _ in range(c.num_blocks))
        self.mask_estimation = MaskEstimation(c.band_widths, c.feature_dim, c.mask_hidden)

    def mask(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex mask (B, F, T, 2) for a spectrogram (B, F, T, 2) given as real and imaginary parts."""
        z = self.band_split(spec)  # (B, K, T, N)
        for block in self.blocks:
            z = block(z)  # (B, K, T, N)
        return self.mask_estimation(z)  # (B, F, T, 2)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # wav: (B, S)
        spec = stft(wav, self.config)  # (B, F, T, 2)
        est = complex_multiply(self.mask(spec), spec)  # (B, F, T, 2)
        return istft(est, self.config, length=wav.shape[-1])  # (B, S)


def complex_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(a_re + i a_im)(b_re + i b_im) on tensors whose last axis holds (re, im)."""
    ar, ai = a.unbind(-1)
    br, bi = b.unbind(-1)
    return torch.stack((ar * br - ai * bi, ar * bi + ai * br), dim=-1)


def stft(wav: torch.Tensor, config: BSRNNConfig) -> torch.Tensor:
    """Centred, zero-padded Hann STFT: (B, S) -> (B, F, T, 2) with T = 1 + S // hop."""
    window = torch.hann_window(config.n_fft, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(
        wav,
        config.n_fft,
        config.hop_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    return torch.view_as_real(spec)


def istft(spec: torch.Tensor, config: BSRNNConfig, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: (B, F, T, 2) -> (B, length)."""
    window = torch.hann_window(config.n_fft, device=spec.device, dtype=spec.dtype)
    return torch.istft(
        torch.view_as_complex(spec.contiguous()),
        config.n_fft,
        config.hop_length,
        window=window,
        center=True,
        length=length,
    )
