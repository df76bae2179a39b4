"""STFT and inverse STFT from plain MatMuls or convolutions, so they export to ONNX and run in onnxruntime.

``torch.istft`` does not export (GUIDE section 4 item 5), so the waveform ONNX file carries its own
transforms. Where hop divides an even n_fft (every preset), :class:`FramedSTFT` / :class:`FramedISTFT`:
frames cut by reshapes, one radix-2 butterfly and two MatMuls each way (half the MACs of a full DFT
basis), overlap-add as shifted sums; measured on the 1x8 subnet's graph they took less time than the
convolutions. For other sizes, a ``Conv`` with a windowed DFT basis for the STFT and a ``ConvTranspose``
with a windowed inverse-DFT basis for the iSTFT (the transposed convolution with stride ``hop`` *is*
overlap-add). Both divide by the overlap-added squared window, and all match
:func:`s2g_deploy.models.bsrnn.stft` / :func:`~s2g_deploy.models.bsrnn.istft` exactly up to float
rounding: centred, zero ('constant') padding of ``n_fft // 2`` samples, periodic Hann window, onesided
spectrum, output trimmed (or zero-extended) to the input length.

The bases are computed in float64 and stored as float32 buffers: they become ONNX initializers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from s2g_deploy.models.bsrnn import BSRNNConfig
from s2g_deploy.models.config import CausalBSRNNConfig
from s2g_deploy.models.layout import reshape


def _dft_basis(n_fft: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windowed onesided DFT basis (2F, 1, n_fft), the inverse's per-row scale (2F, 1), and the window.

    Rows are [Re of bins 0..F-1; Im of bins 0..F-1], the channel layout of both convolutions. The
    forward transform is X[k] = sum_n w[n] x[n] e^{-i 2 pi k n / n_fft}. The inverse (irfft of a onesided
    spectrum, then the synthesis window) uses the *same* windowed basis row-scaled by c_k / n_fft, with
    c_k = 2 for bins that stand for a conjugate pair and 1 for DC and (even n_fft) Nyquist: one
    initializer in the ONNX file instead of two.
    """
    n_bins = n_fft // 2 + 1
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    k = torch.arange(n_bins, dtype=torch.float64)[:, None]
    n = torch.arange(n_fft, dtype=torch.float64)[None, :]
    # (k * n) mod n_fft keeps the angle small, so cos/sin stay accurate for long FFTs
    angle = 2 * math.pi * torch.remainder(k * n, n_fft) / n_fft  # (F, n_fft)
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2F, n_fft)
    c = torch.full((n_bins,), 2.0, dtype=torch.float64)
    c[0] = 1.0
    if n_fft % 2 == 0:
        c[-1] = 1.0
    scale = torch.cat([c, c])[:, None] / n_fft  # (2F, 1)
    return basis[:, None, :], scale, window


class ConvSTFT(nn.Module):
    """Waveform (B, S) -> spectrogram (B, F, T, 2), T = 1 + S // hop (even n_fft), as ``models.bsrnn.stft``."""

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        basis, _, _ = _dft_basis(n_fft)
        self.register_buffer("basis", basis.float(), persistent=False)  # (2F, 1, n_fft)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        B = wav.shape[0]
        # padding= on the conv is the centred, zero-padded framing of torch.stft(center=True, 'constant')
        spec = F.conv1d(wav.unsqueeze(1), self.basis, stride=self.hop_length, padding=self.n_fft // 2)  # (B, 2F, T)
        return spec.reshape(B, 2, -1, spec.shape[-1]).permute(0, 2, 3, 1)  # (B, F, T, 2)


class ConvISTFT(nn.Module):
    """Spectrogram (B, F, T, 2) -> waveform (B, length), as ``models.bsrnn.istft``.

    ``basis`` may be the buffer of a :class:`ConvSTFT` of the same size, so an exported graph holds it once.
    """

    def __init__(self, n_fft: int, hop_length: int, basis: torch.Tensor | None = None):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        own_basis, scale, window = _dft_basis(n_fft)
        self.register_buffer("basis", own_basis.float() if basis is None else basis, persistent=False)
        self.register_buffer("scale", scale.float(), persistent=False)  # (2F, 1)
        self.register_buffer("window_sq", (window**2).float()[None, None, :], persistent=False)  # (1, 1, n_fft)
        # torch.istft zero-extends when the frames end before `length`; that can only happen for hop > n_fft/2
        self.tail = max(0, hop_length - n_fft // 2)

    def forward(self, spec: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
        B, n_bins, T, _ = spec.shape
        frames = spec.permute(0, 3, 1, 2).reshape(B, 2 * n_bins, T) * self.scale  # (B, 2F, T) as [Re; Im]
        # a transposed convolution with stride hop is the inverse DFT of every frame plus overlap-add
        wav = F.conv_transpose1d(frames, self.basis, stride=self.hop_length)  # (B, 1, n_fft + hop (T-1))
        # window-square envelope of the same frames: overlap-add of w^2 (the NOLA normaliser)
        ones = torch.ones_like(frames[:1, :1, :])  # (1, 1, T), follows the dynamic T in the graph
        envelope = F.conv_transpose1d(ones, self.window_sq, stride=self.hop_length)  # (1, 1, n_fft + hop (T-1))
        start = self.n_fft // 2  # undo the centring pad
        wav = wav[:, 0, start:] / envelope[:, 0, start:]
        if self.tail:
            wav = F.pad(wav, (0, self.tail))
        return wav[:, :length]  # (B, length)


def framed(n_fft: int, hop_length: int) -> bool:
    """Whether :class:`FramedSTFT` / :class:`FramedISTFT` take this size: n_fft a multiple of 4 and of hop."""
    return n_fft % 4 == 0 and n_fft % hop_length == 0


def _framed_size(what: str, n_fft: int, hop_length: int) -> tuple[int, int]:
    if not framed(n_fft, hop_length):
        raise ValueError(f"{what} needs n_fft a multiple of 4 and of hop, got {n_fft}/{hop_length}")
    return n_fft, hop_length


def _half_bases(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DFT bases over n_fft/2 samples for the even bins (2 x Fe, h) and the odd bins (2 x Fo, h).

    One radix-2 step of decimation in frequency: with a = x[:h] + x[h:] and d = x[:h] - x[h:] (h = n_fft/2)
    of a windowed frame x, X[k] = sum_n a[n] e^{-i 2 pi k n / n_fft} for even k and the same sum over
    d for odd k, since e^{-i 2 pi k (n + h) / n_fft} = (-1)^k e^{-i 2 pi k n / n_fft}. Half the MACs of a
    full DFT basis. Rows are [Re; Im] of each parity's bins, low to high.
    """
    h = n_fft // 2
    n = torch.arange(h, dtype=torch.float64)[None, :]
    bases = []
    for parity in (0, 1):
        k = torch.arange(parity, n_fft // 2 + 1, 2, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * torch.remainder(k * n, n_fft) / n_fft  # (F_parity, h)
        bases.append(torch.cat([torch.cos(angle), -torch.sin(angle)]))  # (2 F_parity, h)
    return bases[0], bases[1]


def inverse_row_scales(n_fft: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (2 Fe, 1) and (2 Fo, 1): the inverse real DFT's c_k / n_fft for the rows of :func:`_half_bases`."""
    _, scale, _ = _dft_basis(n_fft)  # (2F, 1) as [Re; Im] of the bins in natural order
    c = scale[: n_fft // 2 + 1, 0]
    return torch.cat([c[0::2], c[0::2]])[:, None], torch.cat([c[1::2], c[1::2]])[:, None]


def framed_constants(n_fft: int) -> dict[str, tuple[int, torch.Tensor | None, bool]]:
    """How each large constant of the framed STFT/iSTFT is made from :func:`_half_bases`.

    {buffer: (parity, float64 row scale or None, transposed)}: the bases of :class:`FramedSTFT` are
    transposed and unscaled, those of :class:`FramedISTFT` scaled by :func:`inverse_row_scales`.
    """
    ce, co = inverse_row_scales(n_fft)
    return {
        "stft.even": (0, None, True),
        "stft.odd": (1, None, True),
        "istft.even": (0, ce, False),
        "istft.odd": (1, co, False),
    }


class FramedSTFT(nn.Module):
    """Waveform (B, S) -> spectrogram (T, B, 2, F) time-major, T = 1 + S // hop: ``models.bsrnn.stft``.

    Framing by reshapes and slices (hop divides n_fft), one radix-2 butterfly, then two MatMuls: half the
    MACs of :class:`ConvSTFT` and no Gather: the bins are interleaved back by reshapes.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = _framed_size(type(self).__name__, n_fft, hop_length)
        even, odd = _half_bases(n_fft)
        self.register_buffer("window", torch.hann_window(n_fft, dtype=torch.float64).float(), persistent=False)
        self.register_buffer("even", even.t().float().contiguous(), persistent=False)  # (h, 2 Fe)
        self.register_buffer("odd", odd.t().float().contiguous(), persistent=False)  # (h, 2 Fo)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        hop, h = self.hop_length, self.n_fft // 2
        # centring pad, plus one hop of zeros so the chunk count below never runs short
        x = F.pad(wav, (h, h + hop))  # (B, S + n_fft + hop)
        frames = 1 + wav.shape[-1] // hop
        return self.analyse(self.frames(x[:, : (frames + self.n_fft // hop - 1) * hop]))

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, (T + R - 1) hop) -> (T, B, n_fft): frame t starts at sample t hop (R = n_fft / hop)."""
        per_frame = self.n_fft // self.hop_length
        chunks = reshape(x, (0, -1, self.hop_length)).transpose(0, 1)  # (T+R-1, B, hop)
        # frame t is chunks t .. t+R-1: R slices with constant ends (the chunk count is T + R - 1)
        ends = [r - (per_frame - 1) or None for r in range(per_frame)]
        return torch.cat([chunks[r:end] for r, end in enumerate(ends)], dim=-1)  # (T, B, n_fft)

    def analyse(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, B, n_fft) frames -> (T, B, 2, F): window, butterfly, two MatMuls, bins interleaved."""
        h = self.n_fft // 2
        x = frames * self.window
        a, d = x[..., :h] + x[..., h:], x[..., :h] - x[..., h:]  # (T, B, h) each
        n_odd = self.n_fft // 4  # odd bins 1, 3, ..., below n_fft/2
        even = reshape(a @ self.even, (0, 0, 2, -1))  # (T, B, 2, Fe): bins 0, 2, ..., n_fft/2
        odd = reshape(d @ self.odd, (0, 0, 2, n_odd))  # (T, B, 2, Fo): bins 1, 3, ..., n_fft/2 - 1
        pairs = reshape(torch.stack([even[..., :n_odd], odd], dim=-1), (0, 0, 2, 2 * n_odd))  # (T, B, 2, 2 Fo)
        return torch.cat([pairs, even[..., n_odd:]], dim=-1)  # (T, B, 2, F)


class FramedISTFT(nn.Module):
    """Spectrogram (T, B, 2, F) time-major -> waveform (B, length): ``models.bsrnn.istft``.

    The inverse of :class:`FramedSTFT`: bins split by parity with strided slices, two MatMuls with the
    same half bases (scaled as an inverse real DFT), the butterfly, the synthesis window, then
    overlap-add as n_fft / hop shifted sums of whole frames, divided by the overlap-added squared window.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = _framed_size(type(self).__name__, n_fft, hop_length)
        even, odd = _half_bases(n_fft)
        ce, co = inverse_row_scales(n_fft)
        _, _, window = _dft_basis(n_fft)
        self.register_buffer("even", (even * ce).float().contiguous(), persistent=False)  # (2 Fe, h)
        self.register_buffer("odd", (odd * co).float().contiguous(), persistent=False)  # (2 Fo, h)
        self.register_buffer("window", window.float(), persistent=False)  # (n_fft,)
        self.register_buffer("window_sq", (window**2).float().reshape(-1, hop_length), persistent=False)  # (R, hop)

    def overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, B, n_fft) -> (B, n_fft + hop (T - 1)): frame t starts at sample t * hop."""
        per_frame = self.n_fft // self.hop_length
        parts = reshape(frames, (0, 0, per_frame, self.hop_length))  # (T, B, R, hop)
        total = 0
        for r in range(per_frame):  # part r of frame t lands on output chunk t + r
            total = total + F.pad(parts[:, :, r], (0, 0, 0, 0, r, per_frame - 1 - r))  # (T+R-1, B, hop)
        return reshape(total.transpose(0, 1), (0, -1))  # (B, (T+R-1) hop)

    def synthesise(self, spec: torch.Tensor) -> torch.Tensor:
        """(T, B, 2, F) -> (T, B, n_fft): each frame's inverse real DFT times the synthesis window."""
        even = reshape(spec[..., 0::2], (0, 0, -1))  # (T, B, 2 Fe) as [Re; Im]
        odd = reshape(spec[..., 1::2], (0, 0, -1))  # (T, B, 2 Fo)
        e, o = even @ self.even, odd @ self.odd  # (T, B, h) each
        return torch.cat([e + o, e - o], dim=-1) * self.window  # (T, B, n_fft)

    def forward(self, spec: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
        h = self.n_fft // 2
        frames = self.synthesise(spec)  # (T, B, n_fft)
        wav = self.overlap_add(frames)
        ones = torch.ones_like(frames[:, :1, :1]).unsqueeze(-1)  # (T, 1, 1, 1), follows the dynamic T
        envelope = self.overlap_add(reshape(ones * self.window_sq, (0, 0, -1)))  # (1, n_fft + hop (T-1))
        return (wav[:, h:] / envelope[:, h:])[:, :length]  # (B, length)


def stft_macs(config: BSRNNConfig, n_samples: int, framed_transforms: bool | None = None) -> dict[str, int]:
    """MACs of the in-graph STFT and iSTFT for ``n_samples`` of one channel, as the graph counter counts them.

    ``framed_transforms``: whether the export uses :class:`FramedSTFT` / :class:`FramedISTFT` (default:
    whenever :func:`framed` allows). Framed: two MatMuls each way over n_fft/2 samples per frame, 2F x n_fft/2
    per frame; the overlap-add and its envelope are additions. Otherwise Conv = out_channels x kernel x
    frames and ConvTranspose = in_channels x kernel x frames, plus the envelope's ConvTranspose. The
    DC and Nyquist imaginary rows are zero but still multiplied, so they are counted.
    """
    n_fft, hop = config.n_fft, config.hop_length
    if isinstance(config, CausalBSRNNConfig):  # a stream: one frame per hop, framed transforms
        frames, framed_transforms = config.frames(n_samples), True
    else:
        frames = 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop
    rows = 2 * (n_fft // 2 + 1)
    if framed(n_fft, hop) if framed_transforms is None else framed_transforms:
        return {"stft": rows * (n_fft // 2) * frames, "istft": rows * (n_fft // 2) * frames}
    return {
        "stft": rows * n_fft * frames,
        "istft": rows * n_fft * frames,
        "istft_envelope": n_fft * frames,
    }
