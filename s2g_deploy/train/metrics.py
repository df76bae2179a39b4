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


def require_museval():
    """The museval module, or an :class:`InputError` naming what to install (its import needs ffmpeg)."""
    import warnings

    from s2g_deploy.errors import InputError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # museval's imports warn
            import museval
    except (ImportError, RuntimeError, OSError) as exc:  # stempeg raises RuntimeError without ffmpeg
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"cSDR needs museval, which cannot be imported ({first}): apt-get install ffmpeg; pip install museval"
        ) from None
    return museval


def csdr(estimate, reference, sample_rate_hz: int) -> float:
    """One track's cSDR in dB: BSSEval v4 SDR (museval) on 1-s windows, median over windows.

    museval takes its window and hop in samples and defaults to 44,100, which at 16 kHz would be 2.76 s
    windows; one second at the model's rate is passed explicitly. Windows where the reference is silent
    are NaN in museval and left out of the median, as in SiSEC/MDX; a track with none left is NaN.
    """
    import warnings

    import numpy as np

    museval = require_museval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-silent windows warn on every call
        ref = np.asarray(reference, np.float64).reshape(1, -1, 1)  # (sources, samples, channels)
        est = np.asarray(estimate, np.float64).reshape(1, -1, 1)
        if not ref.any():  # every window silent; museval refuses an all-zero reference (ValueError)
            return float("nan")
        sdr, _, _, _ = museval.evaluate(ref, est, win=sample_rate_hz, hop=sample_rate_hz)
        return float(np.nanmedian(sdr[0])) if np.isfinite(sdr[0]).any() else float("nan")
