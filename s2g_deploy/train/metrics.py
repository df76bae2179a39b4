"""Separation quality: uSDR (the MDX challenge metric) and SI-SDR, per track, in dB."""

from __future__ import annotations

import torch

_EPS = 1e-8  # keeps a silent reference or a perfect estimate finite


def usdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """10 log10(|s|^2 / |s - s_hat|^2) per track over the last axis, in dB."""
    signal = reference.pow(2).sum(-1)
    error = (reference - estimate).pow(2).sum(-1)
    return 10 * torch.log10((signal + _EPS) / (error + _EPS))


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR per track over the last axis, in dB (the reference is rescaled, as usual)."""
    alpha = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + _EPS)
    target = alpha * reference
    return 10 * torch.log10((target.pow(2).sum(-1) + _EPS) / ((target - estimate).pow(2).sum(-1) + _EPS))
