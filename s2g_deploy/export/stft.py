"""STFT and inverse STFT from plain convolutions, so they export to ONNX and run in onnxruntime.

``torch.istft`` does not export (GUIDE section 4 item 5), so the waveform ONNX file carries its own
transforms: a ``Conv`` with a windowed DFT basis for the STFT and a ``ConvTranspose`` with a windowed
inverse-DFT basis for the iSTFT (the transposed convolution with stride ``hop`` *is* overlap-add),
followed by division by the overlap-added squared window. Both match
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


def stft_macs(config: BSRNNConfig, n_samples: int) -> dict[str, int]:
    """MACs of :class:`ConvSTFT` and :class:`ConvISTFT` (with its envelope) for ``n_samples`` of one channel.

    Counted as the graph counter counts them: Conv = out_channels x kernel x frames;
    ConvTranspose = in_channels x kernel x frames. The DC and Nyquist imaginary rows are zero but
    still multiplied, so they are counted.
    """
    n_fft, hop = config.n_fft, config.hop_length
    frames = 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop
    rows = 2 * (n_fft // 2 + 1)
    return {
        "stft": rows * n_fft * frames,
        "istft": rows * n_fft * frames,
        "istft_envelope": n_fft * frames,
    }
