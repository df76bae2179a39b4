"""The stream contract of a causal BSRNN (``s2g export --io stream``): k hops in, k hops out, states carried.

One call of the exported graph takes the next ``k`` hops of mixture samples (any k >= 1: the samples
axis is dynamic, a multiple of the hop) and every state, and returns ``k`` hops of target samples and
every updated state. Following the streaming models in the field (GTCRN, sherpa-onnx, Silero), each
state is an explicit input with a matching ``next_`` output, initial states are zeros, and their
names, shapes and the latency are written into the file's metadata:

* ``state_stft`` (batch, D): the last D = n_fft - hop input samples, the start of the next frame;
* ``state_h``, ``state_c`` (blocks, batch, bands, H): the forward time LSTM of every block;
* ``state_ola`` (batch, D): the overlap-add tail, the partial sums of the next D output samples.

Output sample n of the stream is the offline causal model's output sample n - D (its input was
complete D samples earlier, at the end of its hop): the delay an impulse shows. The algorithmic
latency of a call of k hops is D + k hop samples: the first sample of a call waits for the call's
last one. :class:`StreamingSeparator` is the module that gets traced; ``runtime.stream`` runs any
implementation of the contract (torch-free) over a whole signal and aligns the result with the input.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from s2g_deploy.export.stft import FramedISTFT, FramedSTFT, framed
from s2g_deploy.models.bsrnn import complex_multiply
from s2g_deploy.models.causal import synthesis_envelope
from s2g_deploy.models.layout import reshape
from s2g_deploy.runtime.stream import NEXT, STATE_DOCS, Step, StreamSettings, state_shapes, stream_settings

__all__ = [
    "STATES",
    "STATE_DOCS",
    "StreamSettings",
    "StreamingSeparator",
    "state_shapes",
    "stream_settings",
    "torch_step",
]

STATES = ("state_stft", "state_h", "state_c", "state_ola")  # the order of the graph's state inputs


class StreamSTFT(FramedSTFT):
    """(B, D + k hop) samples -> the k frames that end in them, (k, B, 2, F); no centring pad."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.analyse(self.frames(x))


class StreamISTFT(FramedISTFT):
    """(k, B, 2, F) and the overlap-add tail (B, D) -> k hops of output (B, k hop) and the next tail (B, D).

    The frames' inverse DFTs, windowed and overlap-added onto the tail: the first k hops then hold every
    frame that covers them, so they are divided by the steady-state envelope and leave; the last D
    samples wait for the next call's frames.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__(n_fft, hop_length)
        self.register_buffer("envelope", synthesis_envelope(n_fft, hop_length), persistent=False)  # (hop,)

    def forward(self, spec: torch.Tensor, tail: torch.Tensor):
        D, hop = self.n_fft - self.hop_length, self.hop_length
        added = self.overlap_add(self.synthesise(spec))  # (B, D + k hop)
        added = torch.cat([added[:, :D] + tail, added[:, D:]], dim=-1)
        out = reshape(reshape(added[:, :-D], (0, -1, hop)) / self.envelope, (0, -1))  # (B, k hop)
        return out, added[:, -D:]


class StreamingSeparator(nn.Module):
    """One call of the stream of a dense causal BSRNN (``models.causal.CausalBSRNN``).

    forward(mixture (B, k hop), state_stft, state_h, state_c, state_ola) ->
    (target (B, k hop), next_state_stft, next_state_h, next_state_c, next_state_ola).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        c = model.config
        if not getattr(model, "causal", False):
            raise ValueError("a stream needs a causal model (architecture bsrnn-causal)")
        if not framed(c.n_fft, c.hop_length):
            raise ValueError(f"a stream needs n_fft a multiple of 4 and of hop, got {c.n_fft}/{c.hop_length}")
        self.model = model
        self.delay = c.n_fft - c.hop_length
        self.n_bands, self.hidden = c.n_bands, c.lstm_hidden
        # submodules, so the exporter scopes their nodes /stft/ and /istft/ (the MAC count's attribution)
        self.stft, self.istft = StreamSTFT(c.n_fft, c.hop_length), StreamISTFT(c.n_fft, c.hop_length)

    def forward(self, mixture, state_stft, state_h, state_c, state_ola):
        D, K, H = self.delay, self.n_bands, self.hidden
        x = torch.cat([state_stft, mixture], dim=-1)  # (B, D + k hop): k frames end in this call
        spec = self.stft(x)  # (k, B, 2, F)
        states = [(reshape(h, (1, -1, H)), reshape(c, (1, -1, H))) for h, c in zip(state_h, state_c)]
        mask, states = self.model.mask_step(spec, states)  # (k, B, 2, F); per block (1, B*K, H) twice
        out, next_ola = self.istft(complex_multiply(mask, spec, dim=2), state_ola)  # (B, k hop), (B, D)
        next_h = torch.stack([reshape(h, (-1, K, H)) for h, _ in states])  # (L, B, K, H)
        next_c = torch.stack([reshape(c, (-1, K, H)) for _, c in states])
        return out, x[:, -D:], next_h, next_c, next_ola


def torch_step(module: StreamingSeparator) -> Step:
    """The traced module as a :data:`Step` (for parity: the exporter's input, before ONNX)."""

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outs = module(*(torch.from_numpy(inputs[n]) for n in ("mixture", *STATES)))
        return dict(zip(("target", *(NEXT + s for s in STATES)), (o.numpy() for o in outs)))

    return run
