"""The quality gate of a quantized export: does it separate as well as its own fp32 model?

Both ONNX files (the simplified fp32 one and the quantized one) separate the same held-out tracks at the
profile's workload (cut into its chunks exactly as ``s2g separate`` and the quality table cut them;
whole tracks without a profile), and are scored against the true target: uSDR (per track, and the mean
over tracks) and cSDR (museval, median over 1-s windows then over tracks). A **drop** is fp32 minus
quantized. The gate fails when any track's uSDR drops by more than the profile's
``runtime.max_quality_drop_db``: the worst track, so one track's loss cannot hide behind another's gain.
Beside it, the SNR of the quantized output against the fp32 output says how far apart the two are.

The gate also sets the **parity tolerance** of the quantized file. Quantization noise e is uncorrelated
with the model's own error s - y (y the fp32 estimate, s the target), so it moves a track's uSDR by
10 log10(1 + |e|^2 / |s - y|^2) dB: at most D dB while |e| <= sqrt(10^(D/10) - 1) |s - y|. As an SNR
against the fp32 output that is 20 log10(|y| / (sqrt(10^(D/10) - 1) |s - y|)), at the worst gate track:
:attr:`GateReport.required_snr_db`, which parity then demands on its own inputs at three lengths
(:func:`quantized_parity`). A file with a broken axis or a lost band is far below it; honest int8 noise
is 15-25 dB above it (README, Precision).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s2g_deploy.errors import VerificationError
from s2g_deploy.export.gate_data import GateData
from s2g_deploy.quality import overlap_for, workload_label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateReport:
    """The gate's numbers, in dB; ``drop`` is fp32 minus quantized (positive: the quantized model is worse)."""

    precision: str
    data: dict
    chunk_seconds: float | None
    fp32: dict  # usdr_db, sisdr_db, csdr_db
    quantized: dict
    track_drops_db: tuple[float, ...]  # uSDR drop of each track
    snr_db: float  # quantized output against the fp32 output, all gate tracks together
    limit_db: float  # the largest uSDR drop accepted
    required_snr_db: float  # what parity demands (module docstring)
    seconds: float  # wall time of the gate
    streamed: bool = False  # a stream export: chunk_seconds is the call, the states carried between calls

    @property
    def label(self) -> str:
        if self.streamed:
            return f"streamed, {1000 * self.chunk_seconds:g} ms calls, states carried"
        return workload_label(self.chunk_seconds)

    @property
    def worst_drop_db(self) -> float:
        return max(self.track_drops_db)

    @property
    def drop(self) -> dict:
        mean = {k: _round(self.fp32[k] - self.quantized[k]) for k in self.fp32 if self.fp32[k] is not None}
        return {"usdr_db_worst_track": _round(self.worst_drop_db), **mean}

    @property
    def passed(self) -> bool:
        return self.worst_drop_db <= self.limit_db

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "precision": self.precision,
            "reference": "the export's own fp32 ONNX model (simplified)",
            "metric": "usdr_db_worst_track",
            "limit_usdr_drop_db": self.limit_db,
            "drop": self.drop,
            "track_drops_usdr_db": [_round(d) for d in self.track_drops_db],
            "fp32": dict(self.fp32),
            "quantized": dict(self.quantized),
            "snr_db_vs_fp32": _round(self.snr_db),
            "workload": {
                "label": self.label,
                "chunk_seconds": self.chunk_seconds,
                "overlap_seconds": overlap_for(self.chunk_seconds)
                if self.chunk_seconds and not self.streamed
                else None,
            },
            "data": dict(self.data),
            "required_parity_snr_db": _round(self.required_snr_db),
            "seconds": round(self.seconds, 2),
        }

    def summary(self) -> str:
        d = self.drop
        return (
            f"{self.precision} uSDR drop {d['usdr_db_worst_track']:.3f} dB on the worst track (limit "
            f"{self.limit_db:g} dB), mean {d['usdr_db']:.3f} dB ({self.quantized['usdr_db']:.3f} vs fp32 "
            f"{self.fp32['usdr_db']:.3f} dB), cSDR drop {d.get('csdr_db', math.nan):.3f} dB, "
            f"SNR vs fp32 {self.snr_db:.1f} dB, {'' if self.streamed else 'at '}{self.label} on {self.data['tracks']} "
            f"tracks x {self.data['seconds']:g} s ({self.data['kind']})"
        )


def _round(x: float) -> float:
    return round(float(x), 4) if math.isfinite(x) else float(x)


def run_gate(
    fp32: bytes,
    quantized: bytes,
    data: GateData,
    chunk_seconds: float | None,
    limit_db: float,
    precision: str,
    stream=None,
) -> GateReport:
    """Score both models on ``data``; raises :class:`VerificationError` (exit 4) with the numbers if it fails.

    ``stream`` (``export.stream.StreamSettings``, a stream export): both files stream every track call by
    call, ``chunk_seconds`` of audio per call.
    """
    from s2g_deploy.train.evaluate import score_estimates

    t = time.perf_counter()
    sr = data.sample_rate_hz
    y32 = _separate(fp32, data, chunk_seconds, stream)
    y8 = _separate(quantized, data, chunk_seconds, stream)
    examples = list(data.examples)
    targets = [t for _, _, t in examples]
    report = GateReport(
        precision=precision,
        data=dict(data.description),
        chunk_seconds=chunk_seconds,
        fp32=score_estimates(examples, y32, sr),
        quantized=score_estimates(examples, y8, sr),
        track_drops_db=tuple(usdr_db(s, a) - usdr_db(s, b) for s, a, b in zip(targets, y32, y8, strict=True)),
        snr_db=snr_db(np.concatenate(y32), np.concatenate(y8)),
        limit_db=limit_db,
        required_snr_db=required_snr_db(targets, y32, limit_db),
        seconds=time.perf_counter() - t,
        streamed=stream is not None,
    )
    log.info("quality gate: %s (%.1f s)", report.summary(), report.seconds)
    if not report.passed:
        raise VerificationError(f"quality gate failed: {report.summary()}; nothing was written")
    return report


def _separate(model: bytes, data: GateData, chunk_seconds: float | None, stream=None) -> list[np.ndarray]:
    """Estimates of every gate track by ``model`` in onnxruntime, one thread, as the quality table runs them."""
    from s2g_deploy.runtime.session import SessionSettings, build_session
    from s2g_deploy.runtime.stream import session_runner
    from s2g_deploy.separate import separate_batched

    session = build_session(model, SessionSettings(intra_op_threads=1, inter_op_threads=1))
    run = session_runner(session, stream)
    mix = np.stack([m for _, m, _ in data.examples])  # the gate's tracks share one length
    if chunk_seconds is None or stream is not None:
        return list(run(mix))
    sr = data.sample_rate_hz
    chunk = max(1, round(chunk_seconds * sr))
    overlap = min(round(overlap_for(chunk_seconds) * sr), chunk // 2)  # as s2g separate and evaluate do
    return list(separate_batched(run, mix, chunk, overlap))


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - other|^2); +inf when they are equal."""
    noise = float(np.sum((np.asarray(reference, np.float64) - other) ** 2))
    signal = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)


def usdr_db(target: np.ndarray, estimate: np.ndarray) -> float:
    """uSDR of one track: 10 log10(|s|^2 / |s - estimate|^2)."""
    return snr_db(target, estimate)


def required_snr_db(targets: Sequence[np.ndarray], estimates: Sequence[np.ndarray], limit_db: float) -> float:
    """The SNR against the fp32 output that guarantees a uSDR drop of at most ``limit_db`` on every track."""
    if limit_db <= 0:
        return math.inf
    worst = -math.inf
    for s, y in zip(targets, estimates, strict=True):
        residual = float(np.linalg.norm(np.asarray(s, np.float64) - y))
        if residual == 0:
            return math.inf
        allowed = math.sqrt(10 ** (limit_db / 10) - 1) * residual
        worst = max(worst, 20 * math.log10(max(float(np.linalg.norm(y)), 1e-30) / allowed))
    return worst


@dataclass(frozen=True)
class QuantizedParity:
    """The quantized file against the fp32 file at three or more lengths: SNR on the parity inputs."""

    required_snr_db: float
    lengths: tuple[int, ...]
    sample_rate_hz: int
    snr_db_by_length: dict[int, float]  # worst input at each length
    max_abs_by_length: dict[int, float]

    @property
    def min_snr_db(self) -> float:
        return min(self.snr_db_by_length.values())

    @property
    def passed(self) -> bool:
        return self.min_snr_db >= self.required_snr_db

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reference": "onnx_fp32 (the simplified fp32 file)",
            "criterion": "SNR of the quantized output against the fp32 output >= required_snr_db (set by the gate)",
            "required_snr_db": _round(self.required_snr_db),
            "min_snr_db": _round(self.min_snr_db),
            "lengths_samples": list(self.lengths),
            "lengths_seconds": [round(n / self.sample_rate_hz, 4) for n in self.lengths],
            "snr_db_by_length": {str(k): _round(v) for k, v in self.snr_db_by_length.items()},
            "max_abs_by_length": {str(k): v for k, v in self.max_abs_by_length.items()},
        }

    def summary(self) -> str:
        return f"min SNR vs fp32 {self.min_snr_db:.1f} dB (required {self.required_snr_db:.1f} dB)"


def quantized_parity(
    fp32: bytes, quantized: bytes, lengths: Sequence[int], sample_rate_hz: int, required: float, stream=None
):
    """:class:`QuantizedParity` on the fp32 parity inputs (unit noise and synthetic music, batch 2); raises
    :class:`VerificationError` when it fails or a file returns the wrong shape. A stream streams."""
    from s2g_deploy.export.parity import parity_inputs
    from s2g_deploy.runtime.session import SessionSettings, build_session
    from s2g_deploy.runtime.stream import session_runner

    settings = SessionSettings(intra_op_threads=1, inter_op_threads=1, deterministic=True)
    runners = [session_runner(build_session(m, settings), stream) for m in (fp32, quantized)]
    snr, max_abs = {}, {}
    for n in lengths:
        x = parity_inputs(n, sample_rate_hz)
        y32, y8 = (run(x) for run in runners)
        if y8.shape != x.shape:
            raise VerificationError(f"quantized parity: output shape {list(y8.shape)} for input {list(x.shape)}")
        snr[n] = min(snr_db(a, b) for a, b in zip(y32, y8, strict=True))
        max_abs[n] = float(np.abs(y32 - y8).max())
    report = QuantizedParity(required, tuple(lengths), sample_rate_hz, snr, max_abs)
    if not report.passed:
        raise VerificationError(f"quantized parity failed: {report.summary()}")
    return report


def check_same_outputs(final: bytes, model: bytes, n: int, sample_rate_hz: int, stream=None) -> None:
    """The file as written (metadata added) in a fresh session computes what ``model`` computed."""
    from s2g_deploy.export.parity import TOLERANCE_ABS, parity_inputs
    from s2g_deploy.runtime.session import SessionSettings, build_session
    from s2g_deploy.runtime.stream import session_runner

    settings = SessionSettings(intra_op_threads=1, inter_op_threads=1, deterministic=True)
    x = parity_inputs(n, sample_rate_hz)
    a, b = (session_runner(build_session(m, settings), stream)(x) for m in (final, model))
    err = float(np.abs(a - b).max())
    if not err <= TOLERANCE_ABS:
        raise VerificationError(
            f"the ONNX file as written (metadata added) differs from the model checked by {err:.2e}"
        )
