"""The dense band-split RNN (BSRNN, Luo & Yu 2023), readable top to bottom.

This is the network that gets exported: plain ``nn.Linear``, ``nn.LSTM`` and ``nn.GroupNorm`` layers,
no masks, no elastic logic. The elastic supernet (``models/elastic.py``) runs this same forward with
sliced views of its own, larger weights, so there is exactly one definition of the computation.

Inside :meth:`BSRNN.mask` tensors are band-major, (K, T*B, N): the band LSTM's sequence-first layout,
and a batched matmul over bands for the per-band layers. Those run per *group* of consecutive bands
of one width (a handful of groups instead of one chain of ops per band; no padding, so the MACs stay
those of the per-band layers); their weights stay one ``nn.Linear`` per band (the checkpoint format)
and are stacked at every forward, which the ONNX exporter folds into constants. Reshapes go through
``models.layout`` so the exported graph holds constant shapes.

Shapes use B batch, S samples, F frequency bins, T frames, K bands, c bands in a group of G bins each,
N features, H LSTM hidden units per direction, M mask hidden units.
"""

from __future__ import annotations

import torch
from torch import nn

from s2g_deploy.models.config import BSRNNConfig, band_groups, count_params
from s2g_deploy.models.layout import reshape, split_frames

__all__ = ["BSRNN", "BSRNNConfig", "band_groups", "complex_multiply", "count_params", "istft", "stft"]


def group_norm(
    x: torch.Tensor, dims: tuple[int, ...], weight: torch.Tensor, bias: torch.Tensor, eps: float
) -> torch.Tensor:
    """GroupNorm(1): statistics over ``dims`` (biased variance, as ``nn.GroupNorm``), then the affine.

    Written out rather than calling ``nn.GroupNorm`` so the statistics can be taken over any axes
    without transposes.
    """
    mean = x.mean(dims, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dims, keepdim=True)
    # scale the small statistics tensor, not the activations: one full-size op fewer than divide-then-scale
    return centred * (weight * torch.rsqrt(var + eps)) + bias


def _norm_affine(norms, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Weights and biases of ``c`` GroupNorm(1, C) layers as (c, 1, ..., C) of ``rank`` axes, and eps."""
    shape = (len(norms), *([1] * (rank - 2)), -1)
    weight = torch.stack([n.weight for n in norms]).reshape(shape)
    bias = torch.stack([n.bias for n in norms]).reshape(shape)
    return weight, bias, norms[0].eps


def _stacked(linears) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (c, in, out) and biases (c, 1, out) of ``c`` Linear layers, for one batched matmul."""
    weight = torch.stack([fc.weight.t() for fc in linears])  # (c, in, out)
    bias = torch.stack([fc.bias for fc in linears]).unsqueeze(1)  # (c, 1, out)
    return weight, bias


class BandSplit(nn.Module):
    """Per band: [Re; Im] of its G_k bins -> GroupNorm(1) over (T, 2 G_k) -> Linear -> N features.

    ``frame_norm`` (the causal model): statistics per frame over all bins instead, so no frame sees the
    future and the bands' levels relative to each other survive; each band keeps its own affine.
    """

    def __init__(self, band_widths: tuple[int, ...], feature_dim: int, frame_norm: bool = False):
        super().__init__()
        self.band_widths, self.frame_norm = band_widths, frame_norm
        self.groups = band_groups(band_widths)
        self.norms = nn.ModuleList(nn.GroupNorm(1, 2 * g) for g in band_widths)
        self.fcs = nn.ModuleList(nn.Linear(2 * g, feature_dim) for g in band_widths)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        # spec: (T, B, 2, F) real and imaginary parts, time-major
        if self.frame_norm:  # statistics per (T, B) over (2, F)
            mean = spec.mean((2, 3), keepdim=True)
            centred = spec - mean
            spec = centred * torch.rsqrt((centred * centred).mean((2, 3), keepdim=True) + self.norms[0].eps)
        out, start = [], 0
        for first, count, width in self.groups:
            bands = slice(first, first + count)
            x = reshape(spec[..., start : start + count * width], (0, 0, 2, count, width))  # (T, B, 2, c, G)
            start += count * width
            x = reshape(x.permute(3, 0, 1, 2, 4), (0, 0, 0, 2 * width))  # (c, T, B, 2G) as [Re; Im]
            weight, bias, eps = _norm_affine(self.norms[bands], 4)
            x = x * weight + bias if self.frame_norm else group_norm(x, (1, 3), weight, bias, eps)  # per (band, B)
            weight, bias = _stacked(self.fcs[bands])  # (c, 2G, N), (c, 1, N)
            out.append(reshape(x, (0, -1, 2 * width)) @ weight + bias)  # (c, T*B, N)
        return torch.cat(out, dim=0)  # (K, T*B, N)


class ResidualBLSTM(nn.Module):
    """z + Linear(BLSTM(GroupNorm(1)(z))) along the sequence axis of a sequence-first (seq, batch, N).

    ``causal``: a forward-only LSTM (H units) whose state can be carried between calls, and GroupNorm(1)
    statistics per step over N only (a LayerNorm), so step t sees nothing after t.
    """

    def __init__(self, feature_dim: int, hidden: int, causal: bool = False):
        super().__init__()
        self.norm_dims = (2,) if causal else (0, 2)  # per (seq, batch) step, or per sequence over (seq, N)
        self.norm = nn.GroupNorm(1, feature_dim)
        self.lstm = nn.LSTM(feature_dim, hidden, bidirectional=not causal)
        self.proj = nn.Linear((1 if causal else 2) * hidden, feature_dim)

    def forward(self, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        # z: (seq, batch, N); state: the LSTM's (h, c), each (1, batch, H), or None for zeros
        n = self.norm
        y, state = self.lstm(group_norm(z, self.norm_dims, n.weight, n.bias, n.eps), state)  # (seq, batch, 2H or H)
        return z + self.proj(y), state


class BandSequenceBlock(nn.Module):
    """One BSRNN block: a residual BLSTM over time, then one over bands.

    ``causal``: the time LSTM runs forward only and carries its state; the band BLSTM stays
    bidirectional (it runs within one frame) and its norm is per frame already.
    """

    def __init__(self, n_bands: int, feature_dim: int, hidden: int, causal: bool = False):
        super().__init__()
        self.n_bands, self.feature_dim = n_bands, feature_dim
        self.time = ResidualBLSTM(feature_dim, hidden, causal=causal)
        self.band = ResidualBLSTM(feature_dim, hidden)

    def forward(self, z: torch.Tensor, frames: torch.Tensor, state=None):
        """(K, T*B, N) -> (K, T*B, N) and the time LSTM's final (h, c), each (1, B*K, H)."""
        K, N = self.n_bands, self.feature_dim
        z = split_frames(z, frames, (K,), (N,)).permute(1, 2, 0, 3)  # (K, T*B, N) -> (T, B, K, N)
        z, state = self.time(reshape(z, (0, -1, N)), state)  # sequence over T, batch B*K
        z = reshape(reshape(z, (0, -1, K, N)).permute(2, 0, 1, 3), (0, -1, N))  # (K, T*B, N)
        return self.band(z)[0], state  # sequence over K, batch T*B


class MaskEstimation(nn.Module):
    """Per band: GroupNorm(1) -> Linear(N, M) -> tanh -> Linear(M, 4 G_k) -> GLU -> complex mask."""

    def __init__(self, band_widths: tuple[int, ...], feature_dim: int, hidden: int, frame_norm: bool = False):
        super().__init__()
        self.groups = band_groups(band_widths)
        self.n_bands, self.feature_dim = len(band_widths), feature_dim
        self.norm_dims = (3,) if frame_norm else (1, 3)  # per (band, T, B), or per (band, B) over (T, N)
        self.norms = nn.ModuleList(nn.GroupNorm(1, feature_dim) for _ in band_widths)
        self.fc1 = nn.ModuleList(nn.Linear(feature_dim, hidden) for _ in band_widths)
        self.fc2 = nn.ModuleList(nn.Linear(hidden, 4 * g) for g in band_widths)

    def forward(self, z: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        # z: (K, T*B, N); every band has the same input and hidden sizes: one batched matmul for fc1
        K, N = self.n_bands, self.feature_dim
        x = group_norm(
            split_frames(z, frames, (K,), (N,)), self.norm_dims, *_norm_affine(self.norms, 4)
        )  # (K, T, B, N)
        weight, bias = _stacked(self.fc1)  # (K, N, M), (K, 1, M)
        x = torch.tanh(reshape(x, (0, -1, N)) @ weight + bias)  # (K, T*B, M)
        masks = []
        for first, count, width in self.groups:
            weight, bias = _stacked(self.fc2[first : first + count])  # (c, M, 4G), (c, 1, 4G)
            value, gate = (x[first : first + count] @ weight + bias).chunk(2, dim=-1)  # GLU: (c, T*B, 2G) each
            m = reshape(value * torch.sigmoid(gate), (0, 0, 2, width))  # (c, T*B, 2, G) as [Re; Im]
            masks.append(reshape(m.permute(1, 2, 0, 3), (0, 2, count * width)))  # (T*B, 2, c G)
        return torch.cat(masks, dim=-1)  # (T*B, 2, F)


class BSRNN(nn.Module):
    """Dense BSRNN: waveform (B, S) -> separated target waveform (B, S).

    ``mask(spec)`` is the network proper (spectrogram in, complex mask out); ``forward`` wraps it in
    an STFT and an inverse STFT. The STFT is centred with zero padding, so any S >= 1 works.
    """

    causal = False  # CausalBSRNN (models/causal.py): per-frame norms, forward-only time LSTMs

    def __init__(self, config: BSRNNConfig):
        super().__init__()
        self.config = config
        c, causal = config, self.causal
        self.band_split = BandSplit(c.band_widths, c.feature_dim, frame_norm=causal)
        self.blocks = nn.ModuleList(
            BandSequenceBlock(c.n_bands, c.feature_dim, c.lstm_hidden, causal=causal) for _ in range(c.num_blocks)
        )
        self.mask_estimation = MaskEstimation(c.band_widths, c.feature_dim, c.mask_hidden, frame_norm=causal)

    def mask(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex mask (B, F, T, 2) for a spectrogram (B, F, T, 2) given as real and imaginary parts."""
        return self.mask_frames(spec.permute(2, 0, 3, 1)).permute(1, 3, 0, 2)

    def mask_frames(self, spec: torch.Tensor) -> torch.Tensor:
        """:meth:`mask` on time-major spectrograms: (T, B, 2, F) -> (T, B, 2, F)."""
        return self.mask_step(spec)[0]

    def mask_step(self, spec: torch.Tensor, states=None):
        """:meth:`mask_frames` from given time-LSTM states; returns the mask and the final states.

        ``states``: one (h, c) per block, each (1, B*K, H), or None for zeros. Carrying the returned
        states into the next call continues the same sequence (the causal model's streaming).
        """
        z = self.band_split(spec)  # (K, T*B, N): band-major inside
        out = []
        for i, block in enumerate(self.blocks):
            z, state = block(z, spec, None if states is None else states[i])  # (K, T*B, N)
            out.append(state)
        mask = self.mask_estimation(z, spec)  # (T*B, 2, F)
        return split_frames(mask, spec, (), (2, self.config.n_bins)), out  # (T, B, 2, F)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # wav: (B, S)
        spec = stft(wav, self.config)  # (B, F, T, 2)
        est = complex_multiply(self.mask(spec), spec)  # (B, F, T, 2)
        return istft(est, self.config, length=wav.shape[-1])  # (B, S)


def complex_multiply(a: torch.Tensor, b: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """(a_re + i a_im)(b_re + i b_im) on tensors whose axis ``dim`` holds (re, im)."""
    ar, ai = a.narrow(dim, 0, 1), a.narrow(dim, 1, 1)
    br, bi = b.narrow(dim, 0, 1), b.narrow(dim, 1, 1)
    return torch.cat((ar * br - ai * bi, ar * bi + ai * br), dim=dim)


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
