"""The causal BSRNN: the same network with nothing that looks at the future, so it can stream.

Three changes to :mod:`s2g_deploy.models.bsrnn` make it causal (GUIDE section 6 item 7):

* the time LSTM of every block runs forward only (H units), and its (h, c) state can be carried
  from one call to the next (:meth:`BSRNN.mask_step`); the band BLSTM stays bidirectional, since it
  runs across the bands of one frame;
* every normalisation takes its statistics within one frame: band split over all bins of the frame,
  the time LSTM's and the mask estimation's norms over the N features of each band (the band
  LSTM's norm already was per frame);
* the STFT is causal: frame t covers samples [t hop - D, t hop + hop) with D = n_fft - hop, so a frame
  is complete as soon as its last hop has arrived, and an output sample is complete once the last
  frame covering it is overlap-added.

:meth:`CausalBSRNN.forward` is the offline view of the stream: its output is aligned with its input,
and a stream of the same signal gives the same samples ``delay_samples`` = D later (the stream's
algorithmic latency is D plus the samples of one call). Everything else (elasticity, slicing, costs)
follows the offline model's rules; only the forward-only time LSTM changes the closed forms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s2g_deploy.models.bsrnn import BSRNN, complex_multiply
from s2g_deploy.models.config import CausalBSRNNConfig
from s2g_deploy.models.elastic import ElasticBSRNN

__all__ = ["CausalBSRNN", "CausalBSRNNConfig", "ElasticCausalBSRNN", "causal_istft", "causal_stft"]


def synthesis_envelope(n_fft: int, hop_length: int, dtype=torch.float32) -> torch.Tensor:
    """(hop,) overlap-added squared Hann window at each position of a hop, where every frame is present."""
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return (window**2).reshape(-1, hop_length).sum(0).to(dtype)


def causal_stft(wav: torch.Tensor, config: CausalBSRNNConfig) -> torch.Tensor:
    """(B, S) -> time-major spectrogram (T, B, 2, F), T = ceil(S / hop) + n_fft / hop - 1: frame t
    covers samples [t hop - D, t hop + hop) of the input (zeros outside it), and every frame that
    covers an input sample is there."""
    n_fft, hop, D = config.n_fft, config.hop_length, config.delay_samples
    # the frames of a stream of these samples, then those that flush the last D samples out
    T = config.frames(wav.shape[-1]) + n_fft // hop - 1
    x = F.pad(wav, (D, (T - 1) * hop + n_fft - D - wav.shape[-1]))  # (B, (T-1) hop + n_fft)
    window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
    spec = torch.stft(x, n_fft, hop, window=window, center=False, return_complex=True)  # (B, F, T)
    return torch.view_as_real(spec).permute(2, 0, 3, 1)  # (T, B, 2, F)


def causal_istft(spec: torch.Tensor, config: CausalBSRNNConfig, length: int) -> torch.Tensor:
    """Inverse of :func:`causal_stft`: (T, B, 2, F) -> (B, length), overlap-add divided by the envelope."""
    n_fft, hop, D = config.n_fft, config.hop_length, config.delay_samples
    T, B = spec.shape[0], spec.shape[1]
    window = torch.hann_window(n_fft, device=spec.device, dtype=spec.dtype)
    frames = torch.fft.irfft(torch.view_as_complex(spec.permute(1, 0, 3, 2).contiguous()), n=n_fft) * window
    total = (T - 1) * hop + n_fft
    wav = F.fold(frames.transpose(1, 2), (1, total), (1, n_fft), stride=(1, hop)).reshape(B, total)
    # from sample D on, every frame covering a sample is present: the envelope is periodic in the hop
    envelope = synthesis_envelope(n_fft, hop, spec.dtype).to(spec.device).repeat(total // hop + 1)[:total]
    return (wav / envelope)[:, D : D + length]


class CausalBSRNN(BSRNN):
    """Dense causal BSRNN: waveform (B, S) -> separated target (B, S), aligned with the input.

    The stream of this network (``s2g export --io stream``) outputs the same samples
    ``config.delay_samples`` later, call after call, with its states carried between calls.
    """

    causal = True

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        # wav: (B, S)
        spec = causal_stft(wav, self.config)  # (T, B, 2, F)
        est = complex_multiply(self.mask_frames(spec), spec, dim=2)  # (T, B, 2, F)
        return causal_istft(est, self.config, length=wav.shape[-1])  # (B, S)


class ElasticCausalBSRNN(ElasticBSRNN, CausalBSRNN):
    """The causal BSRNN supernet: :class:`ElasticBSRNN`'s elasticity on the causal network."""

    dense = CausalBSRNN
