"""The parity certificate: does the shipped ONNX file compute what the supernet computes at the subnet?

Four implementations of the same subnet run on the same inputs:

1. ``supernet``: the elastic supernet at the subnet (the reference; a dense checkpoint is its own
   reference),
2. ``dense_torch``: the sliced dense PyTorch model,
3. ``onnx``: the exporter's file in onnxruntime,
4. ``onnx_simplified``: the onnxsim-simplified file (the one shipped) in onnxruntime.

Inputs are unit-scale waveforms (peak 1): white noise and a synthetic music-like signal (harmonic notes,
percussive noise bursts, a noise floor), batched together (batch 2, while the export traced batch 1),
at three or more lengths none equal to the traced length, one of several seconds. Both checks prove
the dynamic axes hold. Every stage is compared in the waveform domain, also for a spectrogram export
(whose mask is applied to the torch STFT and inverted with the torch iSTFT), so one tolerance fits all:
:data:`TOLERANCE_ABS` on unit-scale audio, about -80 dB below the peak; float32 rounding through the
network gives ~1e-6. ``max_rel`` is ``max |stage - reference| / max |reference|``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from s2g_deploy.errors import VerificationError, first_line
from s2g_deploy.export.onnx import exportable
from s2g_deploy.models.bsrnn import BSRNN, BSRNNConfig, complex_multiply, istft, stft

TOLERANCE_ABS = 1e-4
SIGNALS = ("noise", "music")


PARITY_SECONDS = (0.5, 3.0, 10.0)
STREAM_HOPS = (1, 7)  # hops per call a stream export is proved at: hop by hop, and several (not the traced 3)


def default_lengths(
    sample_rate_hz: int, trace_samples: int, seconds_list: tuple[float, ...] | None = None
) -> tuple[int, ...]:
    """``seconds_list`` (default :data:`PARITY_SECONDS`) in samples, each nudged off a multiple of 8 (and
    off the traced length)."""
    lengths = []
    for seconds in PARITY_SECONDS if seconds_list is None else seconds_list:
        n = round(seconds * sample_rate_hz) + 3
        lengths.append(n + 2 if n == trace_samples else n)
    return tuple(lengths)


def unit_noise(n_samples: int, seed: int) -> np.ndarray:
    """White Gaussian noise scaled to peak 1 (float32, shape (n_samples,))."""
    x = np.random.default_rng(seed).standard_normal(n_samples)
    return (x / np.abs(x).max()).astype(np.float32)


def synthetic_music(n_samples: int, sample_rate_hz: int, seed: int) -> np.ndarray:
    """A deterministic music-like signal, peak 0.9: notes of 6 harmonics with decaying envelopes on a
    pentatonic scale, percussive noise bursts on a beat, and a -50 dB noise floor. float32, (n_samples,)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / sample_rate_hz
    out = 1e-3 * rng.standard_normal(n_samples)
    note_s, beat_s = 0.25, 0.5
    scale = np.array([0, 2, 4, 7, 9, 12, 14, 16])  # semitones above the root
    nyquist = sample_rate_hz / 2
    for start in np.arange(0.0, n_samples / sample_rate_hz, note_s):
        f0 = 110.0 * 2 ** (rng.choice(scale) / 12 + rng.integers(0, 3))
        i0 = int(start * sample_rate_hz)
        span = t[i0 : i0 + int(2 * note_s * sample_rate_hz)] - start  # notes ring into the next one
        envelope = np.minimum(span / 0.01, 1.0) * np.exp(-span / 0.3)
        note = sum(
            np.sin(2 * np.pi * h * f0 * span + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 7) if h * f0 < nyquist
        )
        out[i0 : i0 + span.size] += 0.3 * envelope * note
    for start in np.arange(0.0, n_samples / sample_rate_hz, beat_s):
        i0 = int(start * sample_rate_hz)
        n = min(int(0.1 * sample_rate_hz), n_samples - i0)
        out[i0 : i0 + n] += 0.5 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.02 * sample_rate_hz))
    peak = np.abs(out).max()
    return (0.9 * out / peak if peak > 0 else out).astype(np.float32)


def parity_inputs(n_samples: int, sample_rate_hz: int, seed: int = 0) -> np.ndarray:
    """(2, n_samples) float32: unit noise and synthetic music, the batch every stage sees."""
    return np.stack([unit_noise(n_samples, seed), synthetic_music(n_samples, sample_rate_hz, seed)])


@dataclass(frozen=True)
class StageError:
    """How far one stage is from the reference (and from the stage before it), worst over inputs."""

    stage: str
    max_abs: float  # vs the reference
    max_rel: float  # max_abs / max |reference|
    max_abs_vs_previous: float
    by_length: dict[int, float]  # max_abs vs the reference at each length (samples)

    def to_dict(self) -> dict:
        return {
            "stage": self.stage,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "max_abs_vs_previous": self.max_abs_vs_previous,
            "max_abs_by_length": {str(k): v for k, v in self.by_length.items()},
        }


@dataclass(frozen=True)
class ParityReport:
    reference: str
    tolerance_abs: float
    trace_samples: int
    lengths: tuple[int, ...]
    sample_rate_hz: int
    stages: tuple[StageError, ...]

    @property
    def max_abs(self) -> float:
        return max(s.max_abs for s in self.stages)

    @property
    def passed(self) -> bool:
        return all(math.isfinite(s.max_abs) and s.max_abs <= self.tolerance_abs for s in self.stages)

    @property
    def worst(self) -> StageError:
        return max(self.stages, key=lambda s: s.max_abs if math.isfinite(s.max_abs) else math.inf)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "tolerance_abs": self.tolerance_abs,
            "max_abs": self.max_abs,
            "reference": self.reference,
            "relative_error": "max|stage - reference| / max|reference|",
            "signals": list(SIGNALS),
            "batch": len(SIGNALS),
            "trace_samples": self.trace_samples,
            "lengths_samples": list(self.lengths),
            "lengths_seconds": [round(n / self.sample_rate_hz, 4) for n in self.lengths],
            "stages": [s.to_dict() for s in self.stages],
        }

    def summary(self) -> str:
        w = self.worst
        return (
            f"max abs error {self.max_abs:.2e} (tolerance {self.tolerance_abs:.0e}; worst stage {w.stage}, "
            f"lengths {', '.join(f'{n / self.sample_rate_hz:.2f} s' for n in self.lengths)})"
        )


Stage = Callable[[np.ndarray], np.ndarray]  # (B, S) float32 waveform -> (B, S) float32 waveform


class StageFailure(RuntimeError):
    """A stage that raised or returned the wrong shape (e.g. a time axis frozen at the traced length)."""


def certify(
    stages: Sequence[tuple[str, Stage]],
    lengths: Sequence[int],
    sample_rate_hz: int,
    trace_samples: int,
    tolerance_abs: float = TOLERANCE_ABS,
) -> ParityReport:
    """Run every stage on every input; the first stage is the reference. Raises :class:`StageFailure`."""
    if len(lengths) < 3 or trace_samples in lengths:
        raise ValueError(f"need >= 3 parity lengths, none equal to the traced {trace_samples}; got {list(lengths)}")
    names = [name for name, _ in stages]
    abs_err = {name: {} for name in names[1:]}
    prev_err = dict.fromkeys(names[1:], 0.0)
    peak = 0.0
    for n in lengths:
        x = parity_inputs(n, sample_rate_hz)
        outputs = []
        for name, run in stages:
            try:
                y = np.asarray(run(x), dtype=np.float64)
            except Exception as exc:
                raise StageFailure(f"stage {name} failed at {n} samples: {first_line(exc, 300)}") from exc
            if y.shape != x.shape:
                raise StageFailure(f"stage {name} returned shape {list(y.shape)} for input {list(x.shape)}")
            outputs.append(y)
        ref = outputs[0]
        peak = max(peak, float(np.abs(ref).max()))
        for i, name in enumerate(names[1:], start=1):
            abs_err[name][n] = _max_abs(outputs[i], ref)
            prev_err[name] = max(prev_err[name], _max_abs(outputs[i], outputs[i - 1]))
    errors = tuple(
        StageError(
            name,
            max(abs_err[name].values()),
            max(abs_err[name].values()) / peak if peak > 0 else math.inf,
            prev_err[name],
            dict(abs_err[name]),
        )
        for name in names[1:]
    )
    return ParityReport(names[0], tolerance_abs, trace_samples, tuple(lengths), sample_rate_hz, errors)


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a - b)
    return float(d.max()) if np.isfinite(d).all() else math.inf


# --- the implementations compared ------------------------------------------------------------------


def _session(model_bytes: bytes):
    from s2g_deploy.runtime.session import SessionSettings, build_session

    # deterministic kernels: reproducible parity numbers, hence reproducible metadata; one thread, see
    # single_threaded(), which also keeps the numbers reproducible
    return build_session(model_bytes, SessionSettings(intra_op_threads=1, inter_op_threads=1, deterministic=True))


def parity_stages(supernet, subnet, dense: BSRNN, io: str, raw: bytes, simplified: bytes):
    """(name, waveform -> waveform) for every implementation; the first is the reference."""

    def torch_stage(fn):
        def run(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return fn(torch.from_numpy(x)).numpy()

        return run

    stages = []
    if supernet is not None:
        stages.append(("supernet", torch_stage(lambda w: supernet(w, subnet))))
    stages.append(("dense_torch", torch_stage(dense)))
    if io == "waveform":  # the traced module itself: localises an error to the STFT rewrite or the exporter
        stages.append(("export_module", torch_stage(exportable(dense, io))))
    if io == "stream":  # every stream stage runs call by call from zero states, aligned by the delay
        from s2g_deploy.export.stream import state_shapes, torch_step

        step, shapes = torch_step(exportable(dense, io)), state_shapes(dense.config)
        stages.append((f"export_module_{STREAM_HOPS[-1]}hops", _streamed(step, shapes, dense.config, STREAM_HOPS[-1])))
        for name, model_bytes in (("onnx", raw), ("onnx_simplified", simplified)):
            stages += [
                (f"{name}_{k}hop{'s' if k > 1 else ''}", _onnx_stage(model_bytes, io, dense.config, k))
                for k in STREAM_HOPS
            ]
        return stages
    stages += [
        ("onnx", _onnx_stage(raw, io, dense.config)),
        ("onnx_simplified", _onnx_stage(simplified, io, dense.config)),
    ]
    return stages


def _streamed(step, shapes, config, hops_per_call: int) -> Stage:
    from s2g_deploy.runtime.stream import stream_signal

    return lambda x: stream_signal(step, shapes, x, config.hop_length, config.n_fft - config.hop_length, hops_per_call)


def _onnx_stage(model_bytes: bytes, io: str, config: BSRNNConfig, hops_per_call: int = 1):
    session = _session(model_bytes)
    name = session.get_inputs()[0].name
    if io == "waveform":
        return lambda x: session.run(None, {name: x})[0]
    if io == "stream":
        from s2g_deploy.runtime.stream import session_step

        return _streamed(*session_step(session), config, hops_per_call)

    def run(x: np.ndarray) -> np.ndarray:  # torch STFT -> ONNX mask -> torch iSTFT
        with torch.no_grad():
            spec = stft(torch.from_numpy(x), config)
            mask = torch.from_numpy(session.run(None, {name: spec.numpy()})[0])
            return istft(complex_multiply(mask, spec), config, x.shape[-1]).numpy()

    return run


def check_final(final: bytes, io: str, config: BSRNNConfig, reference_stage, tolerance: float, n: int) -> None:
    """The file as written (metadata added), in a fresh session, against the reference once more."""
    x = parity_inputs(n, config.sample_rate_hz)
    err = float(np.abs(_onnx_stage(final, io, config)(x) - reference_stage(x)).max())
    if not err <= tolerance:
        raise VerificationError(f"the ONNX file as written (metadata added) differs from the reference by {err:.2e}")
