"""The BSRNN training loss: L1 on the waveform plus L1 on the STFT's real and imaginary parts."""

from __future__ import annotations

import torch

from s2g_deploy.models.bsrnn import BSRNNConfig, stft


def separation_loss(estimate: torch.Tensor, target: torch.Tensor, config: BSRNNConfig) -> torch.Tensor:
    """Mean L1 over samples plus mean L1 over STFT bins (real and imaginary), both (B, S) inputs."""
    wave = (estimate - target).abs().mean()
    spec = (stft(estimate, config) - stft(target, config)).abs().mean()
    return wave + spec
