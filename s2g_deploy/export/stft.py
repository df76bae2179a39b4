"""STFT and inverse STFT from plain MatMuls or convolutions, so they export to ONNX and run in onnxruntime.

``torch.istft`` does not export (GUIDE section 4 item 5), so the waveform ONNX file carries its own
transforms. Where hop divides an n_fft that is a multiple of 4 (every preset), :class:`FramedSTFT` /
:class:`FramedISTFT`: frames cut by reshapes, a two-stage Cooley-Tukey DFT (two MatMuls and a twiddle
multiply each way: a fifth of the MACs of a full DFT basis at n_fft 512), overlap-add as shifted sums.
For other sizes, a ``Conv`` with a windowed DFT basis for the STFT and a ``ConvTranspose`` with a
windowed inverse-DFT basis for the iSTFT (the transposed convolution with stride ``hop`` *is* overlap-add).
Both divide by the overlap-added squared window, and all match :func:`s2g_deploy.models.bsrnn.stft` /
:func:`~s2g_deploy.models.bsrnn.istft` exactly up to float rounding: centred, zero ('constant') padding
of ``n_fft // 2`` samples, periodic Hann window, onesided spectrum, output trimmed (or zero-extended)
to the input length.

The bases are computed in float64 and stored as float32 buffers: they become ONNX initializers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from s2g_deploy.models.bsrnn import BSRNNConfig
from s2g_deploy.models.config import CausalBSRNNConfig
from s2g_deploy.models.layout import reshape, split_frames


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
    """Whether :class:`FramedSTFT` / :class:`FramedISTFT` take this size: an even hop that divides n_fft."""
    return hop_length % 2 == 0 and n_fft % hop_length == 0


def _framed_size(what: str, n_fft: int, hop_length: int) -> tuple[int, int]:
    if not framed(n_fft, hop_length):
        raise ValueError(f"{what} needs an even hop that divides n_fft, got {n_fft}/{hop_length}")
    return n_fft, hop_length


def factors(n_fft: int, hop_length: int) -> tuple[int, int]:
    """(P, Q) with P Q = n_fft, Q even and dividing hop, P + Q as small as that allows (then the smaller Q).

    The framed transforms run P-point DFTs then Q-point DFTs per frame (Cooley-Tukey), 2 n_fft (P + Q + 2)
    MACs each way instead of n_fft^2 / 2 for one radix-2 step. Q dividing hop lets the frames be cut
    straight into the layout the first stage reads (:meth:`FramedSTFT.frames`).
    """
    _framed_size("factors", n_fft, hop_length)
    q = min((q for q in range(2, hop_length + 1, 2) if hop_length % q == 0), key=lambda q: (n_fft // q + q, q))
    return n_fft // q, q


def _cis(numerator: torch.Tensor, denominator: int) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 cos and sin of 2 pi numerator / denominator, the integer angle reduced first (accuracy)."""
    angle = 2 * math.pi * torch.remainder(numerator, denominator) / denominator
    return torch.cos(angle), torch.sin(angle)


def framed_bases(n_fft: int, hop_length: int) -> dict[str, torch.Tensor]:
    """The constants of :class:`FramedSTFT` (``stft.*``) and :class:`FramedISTFT` (``istft.*``), float64.

    With n = Q n1 + n2 and k = k1 + P k2 (k2 <= Q / 2 covers the onesided bins), the forward DFT is
    X[k] = sum_n2 e^{-i 2 pi n2 k2 / Q} [sum_n1 w[n] x[n] e^{-i 2 pi k1 n / n_fft}]: per n2, a P-point stage
    whose twiddles and analysis window sit in its matrix, then a Q-point stage over n2. The onesided
    inverse is its mirror: x[n] = w[n] Re sum_k1 e^{i 2 pi k1 n / n_fft} [sum_k2 X'[k] e^{i 2 pi k2 n2 / Q}]
    with X' = X c_k / n_fft, c_k = 2 for bins that stand for a conjugate pair and 1 for DC and Nyquist.
    """
    P, Q = factors(n_fft, hop_length)
    n1, n2 = torch.arange(P, dtype=torch.float64), torch.arange(Q, dtype=torch.float64)
    k1, k2 = torch.arange(P, dtype=torch.float64), torch.arange(Q // 2 + 1, dtype=torch.float64)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    n = Q * n1[None, :, None] + n2[:, None, None]  # (n2, n1, 1)
    cos, sin = _cis(n * k1, n_fft)  # (n2, n1, k1)
    w = window[n.long()]  # (n2, n1, 1)
    cos_q, sin_q = _cis(k2[:, None] * n2[None, :], Q)  # (k2, n2)
    n_bins = n_fft // 2 + 1
    c = torch.full((2, n_bins), 2.0 / n_fft, dtype=torch.float64)
    c[:, 0] = c[:, -1] = 1.0 / n_fft
    return {
        # (n2, [Re; Im], n1, k1): y[n2, ri, :, k1] = sum_n1 x[n1, n2] * this
        "stft.stage1": torch.stack([cos * w, -sin * w], dim=1),
        # rows ([Re; Im] of X, k2), columns (n2, [Re; Im] of y)
        "stft.stage2": _rotation(cos_q, -sin_q).permute(0, 2, 3, 1).reshape(Q + 2, 2 * Q),
        "istft.scale": c,  # (2, F)
        # rows (n2, [Re; Im] of v), columns ([Re; Im] of X', k2)
        "istft.stage1": _rotation(cos_q.t(), sin_q.t()).permute(2, 0, 1, 3).reshape(2 * Q, Q + 2),
        # (n2, [Re; Im] of v, k1, n1): frame[n1, n2] = sum over both of v * this (the real part)
        "istft.stage2": torch.stack([cos * w, -sin * w], dim=1).transpose(2, 3),
        "istft.window_sq": window**2,
    }


def _rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(2, 2, ...) [out part, in part, ...]: multiplying by cos + i sin, on [Re; Im] parts.

    (a + ib)(cos + i sin) = (a cos - b sin) + i (a sin + b cos).
    """
    return torch.stack([torch.stack([cos, -sin]), torch.stack([sin, cos])])


def _buffers(module: nn.Module, prefix: str, n_fft: int, hop_length: int) -> None:
    for name, value in framed_bases(n_fft, hop_length).items():
        if name.startswith(prefix):
            module.register_buffer(name[len(prefix) :], value.float().contiguous(), persistent=False)


class FramedSTFT(nn.Module):
    """Waveform (B, S) -> spectrogram (T, B, 2, F) time-major, T = 1 + S // hop: ``models.bsrnn.stft``.

    Frames cut by reshapes and slices straight into the (n2, B, T, n1) layout of the first stage, then a
    Cooley-Tukey DFT of P x Q points (:func:`factors`, :func:`framed_bases`) as two MatMuls, window and
    twiddles folded into the first: for n_fft 512, 51K MACs per frame against 131K for one radix-2
    step and 263K for a DFT basis.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = _framed_size(type(self).__name__, n_fft, hop_length)
        self.P, self.Q = factors(n_fft, hop_length)
        _buffers(self, "stft.", n_fft, hop_length)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        hop, h = self.hop_length, self.n_fft // 2
        # centring pad, plus one hop of zeros so the chunk count below never runs short
        x = F.pad(wav, (h, h + hop))  # (B, S + n_fft + hop)
        frames = 1 + wav.shape[-1] // hop
        return self.analyse(self.frames(x[:, : (frames + self.n_fft // hop - 1) * hop]))

    def frames(self, x: torch.Tensor) -> torch.Tensor:
        """(B, (T + R - 1) hop) -> (Q, B, T, P): frame t (from sample t hop) at [n2, :, t, n1], n = Q n1 + n2."""
        per_frame, Q = self.n_fft // self.hop_length, self.Q
        # moving one axis only: onnxruntime's fast transpose (six times the general one's speed here)
        chunks = reshape(x, (0, -1, self.hop_length // Q, Q)).permute(3, 0, 1, 2)  # (Q, B, T+R-1, hop/Q)
        # frame t is chunks t .. t+R-1: R slices with constant ends (the chunk count is T + R - 1)
        ends = [r - (per_frame - 1) or None for r in range(per_frame)]
        return torch.cat([chunks[:, :, r:end] for r, end in enumerate(ends)], dim=-1)  # (Q, B, T, P)

    def analyse(self, frames: torch.Tensor) -> torch.Tensor:
        """(Q, B, T, P) frames -> (T, B, 2, F): windowed P-point DFTs with twiddles, then Q-point DFTs."""
        P, Q = self.P, self.Q
        y = reshape(frames, (0, 1, -1, P)) @ self.stage1  # (n2, [Re; Im], B*T, k1)
        z = reshape(self.stage2 @ reshape(y, (2 * Q, -1)), (Q + 2, -1, P))  # ([Re; Im] k2, B*T, k1)
        z = split_frames(z, frames, (Q + 2,), (P,), at=2, batch_first=True)  # ([Re; Im] k2, B, T, k1)
        spec = z.permute(2, 1, 0, 3)  # (T, B, [Re; Im] k2, k1)
        return reshape(spec, (0, 0, 2, -1))[..., : self.n_fft // 2 + 1]  # (T, B, 2, F): k = k1 + P k2


class FramedISTFT(nn.Module):
    """Spectrogram (T, B, 2, F) time-major -> waveform (B, length): ``models.bsrnn.istft``.

    The inverse of :class:`FramedSTFT`: Q-point inverse DFTs, then P-point ones whose twiddles, real
    part and synthesis window sit in one matrix (:func:`framed_bases`), then overlap-add as n_fft / hop
    shifted sums of whole frames, divided by the overlap-added squared window.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft, self.hop_length = _framed_size(type(self).__name__, n_fft, hop_length)
        self.P, self.Q = factors(n_fft, hop_length)
        _buffers(self, "istft.", n_fft, hop_length)
        # (Q, 1, 1, P): w^2[Q n1 + n2] in the frames' layout
        self.window_sq = self.window_sq.reshape(self.P, self.Q).t().reshape(self.Q, 1, 1, self.P).contiguous()

    def overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(Q, B, T, P) frames -> (B, n_fft + hop (T - 1)): frame t starts at sample t * hop."""
        per_frame, part = self.n_fft // self.hop_length, self.hop_length // self.Q
        total = 0
        for r in range(per_frame):  # part r of frame t (n1 in [r, r + 1) hop / Q) lands on output chunk t + r
            piece = frames[..., r * part : (r + 1) * part]  # (Q, B, T, hop/Q)
            total = total + F.pad(piece, (0, 0, r, per_frame - 1 - r))  # (Q, B, T+R-1, hop/Q)
        return reshape(total.permute(1, 2, 3, 0), (0, -1))  # (B, (T+R-1) hop): one axis moves

    def synthesise(self, spec: torch.Tensor) -> torch.Tensor:
        """(T, B, 2, F) -> (Q, B, T, P): each frame's inverse real DFT times the synthesis window."""
        P, Q = self.P, self.Q
        x = F.pad(spec * self.scale, (0, (Q // 2 + 1) * P - self.n_fft // 2 - 1))  # (T, B, 2, k = k1 + P k2)
        x = reshape(reshape(x, (0, 0, Q + 2, P)).permute(2, 1, 0, 3), (Q + 2, -1))  # ([Re; Im] k2, B*T*k1)
        v = reshape(self.stage1 @ x, (Q, 2, -1, P))  # (n2, [Re; Im], B*T, k1)
        frames = (v @ self.stage2).sum(1)  # (n2, B*T, n1)
        return split_frames(frames, spec, (Q,), (P,), batch_first=True)  # (Q, B, T, P)

    def forward(self, spec: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
        h = self.n_fft // 2
        frames = self.synthesise(spec)  # (Q, B, T, P)
        wav = self.overlap_add(frames)
        ones = torch.ones_like(frames[:1, :1, :, :1])  # (1, 1, T, 1), follows the dynamic T
        envelope = self.overlap_add(ones * self.window_sq)  # (1, n_fft + hop (T-1))
        return (wav[:, h:] / envelope[:, h:])[:, :length]  # (B, length)


def stft_macs(config: BSRNNConfig, n_samples: int, framed_transforms: bool | None = None) -> dict[str, int]:
    """MACs of the in-graph STFT and iSTFT for ``n_samples`` of one channel, as the graph counter counts them.

    ``framed_transforms``: whether the export uses :class:`FramedSTFT` / :class:`FramedISTFT` (default:
    whenever :func:`framed` allows). Framed, per frame with P x Q = n_fft (:func:`factors`), each way:
    2Q x P x P (the P-point stage, per n2 and real/imaginary part) + 2Q x (Q + 2) x P (the Q-point stage);
    the iSTFT's input scale, overlap-add and its envelope are element-wise. Otherwise Conv = out_channels x
    kernel x frames and ConvTranspose = in_channels x kernel x frames, plus the envelope's ConvTranspose. The
    DC and Nyquist imaginary rows are zero but still multiplied, so they are counted.
    """
    n_fft, hop = config.n_fft, config.hop_length
    if isinstance(config, CausalBSRNNConfig):  # a stream: one frame per hop, framed transforms
        frames, framed_transforms = config.frames(n_samples), True
    else:
        frames = 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop
    if framed(n_fft, hop) if framed_transforms is None else framed_transforms:
        P, Q = factors(n_fft, hop)
        return {
            "stft": (Q * 2 * P * P + (Q + 2) * 2 * Q * P) * frames,
            "istft": (2 * Q * (Q + 2) * P + Q * 2 * P * P) * frames,
        }
    rows = 2 * (n_fft // 2 + 1)
    return {
        "stft": rows * n_fft * frames,
        "istft": rows * n_fft * frames,
        "istft_envelope": n_fft * frames,
    }
