"""Run an exported waveform ONNX on an audio file of any length (``s2g separate``).

The file is processed in chunks of ``chunk_seconds`` that overlap by ``overlap_seconds``; the overlaps
are cross-faded with complementary linear ramps (they sum to one, so a model that is the identity
gives back its input exactly). Reading, inference and writing go chunk by chunk, so memory stays flat
whatever the file's length. Every channel is separated on its own (channels are the model's batch).

A file at another sample rate than the model's is resampled on the fly with a polyphase
Kaiser-windowed sinc filter (:class:`Resampler`), separated, and the target resampled back, so the
outputs have the input's rate, length and channels. The residual is the input minus the target at
the input's rate: above the model's Nyquist frequency everything counts as residual.

Outputs are 32-bit float WAV (separated signals may exceed full scale; float does not clip).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2g_deploy.artifacts import atomic_file
from s2g_deploy.errors import InputError

log = logging.getLogger(__name__)

OUTPUT_SUBTYPE = "FLOAT"
_IO_BLOCK = 1 << 16  # frames per read/write when only copying or resampling


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    sample_rate_hz: int
    input_name: str
    subnet: str


def resolve_model(model: str | os.PathLike) -> Path:
    """``model`` itself, or ``model/model.onnx`` for an export directory."""
    path = Path(model)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX model (give a model.onnx or an export directory)")
    return path


def read_model_info(path: Path) -> ModelInfo:
    """What ``s2g separate`` needs from an s2g export's metadata: the sample rate and the I/O contract."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if "s2g.sample_rate_hz" not in props or "s2g.io" not in props:
        raise InputError(f"{path}: not an s2g export (no s2g.sample_rate_hz / s2g.io metadata)")
    io = json.loads(props["s2g.io"])
    if io.get("io") != "waveform":
        raise InputError(
            f"{path}: a {io.get('io')!r} export (spectrogram in, mask out); s2g separate needs a waveform export"
        )
    return ModelInfo(path, int(props["s2g.sample_rate_hz"]), io["input"]["name"], props.get("s2g.subnet", "?"))


def _session(path: Path, threads: int | None):
    from s2g_deploy.runtime.session import SessionSettings, build_session

    return build_session(path, SessionSettings(intra_op_threads=threads, inter_op_threads=1 if threads else None))


# --- audio sources: random access, zero outside the signal ----------------------------------------------


class SoundFileSource:
    """Frames [a, b) of an audio file as (b - a, channels) float32, zeros outside the file."""

    def __init__(self, path: Path):
        import soundfile as sf

        self.path = path
        try:
            self._file = sf.SoundFile(str(path))
        except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError / TypeError
            raise InputError(f"{path}: cannot read audio ({_first_line(exc)})") from None
        self.frames, self.channels = self._file.frames, self._file.channels
        self.sample_rate_hz = self._file.samplerate

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.zeros((b - a, self.channels), np.float32)
        lo, hi = max(a, 0), min(b, self.frames)
        if hi > lo:
            self._file.seek(lo)
            data = self._file.read(hi - lo, dtype="float32", always_2d=True)
            if len(data) != hi - lo:
                raise InputError(f"{self.path}: file ends early at frame {lo + len(data)} of {self.frames}")
            out[lo - a : hi - a] = data
        return out

    def close(self) -> None:
        self._file.close()


class ArraySource:
    """An in-memory (frames, channels) signal as a source (for tests and small inputs)."""

    def __init__(self, data: np.ndarray, sample_rate_hz: int):
        self.data = np.asarray(data, np.float32).reshape(len(data), -1)
        self.frames, self.channels = self.data.shape
        self.sample_rate_hz = sample_rate_hz

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.zeros((b - a, self.channels), np.float32)
        lo, hi = max(a, 0), min(b, self.frames)
        if hi > lo:
            out[lo - a : hi - a] = self.data[lo:hi]
        return out


class Resampler:
    """Rational-rate polyphase resampling with a Kaiser-windowed sinc low-pass.

    ``y[j] = sum_k x[k] h[j * down + C - k * up]``: the signal upsampled by ``up`` (zero-stuffed),
    low-passed at the lower of the two Nyquist frequencies, and kept every ``down``-th sample, without
    materialising the upsampled signal. ``zero_crossings`` sinc lobes each side and Kaiser beta 8.6
    give a stop band about 90 dB down. Output ranges are computed from input ranges alone, so a
    signal resampled in pieces equals the signal resampled whole.
    """

    def __init__(self, rate_in: int, rate_out: int, zero_crossings: int = 16, beta: float = 8.6):
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        step = max(self.up, self.down)
        self.half = zero_crossings * step  # C: filter half-length at the upsampled rate
        n = np.arange(-self.half, self.half + 1)
        h = np.sinc(n / step) * np.kaiser(2 * self.half + 1, beta)
        self.h = h * (self.up / h.sum())  # unit gain at DC after zero-stuffing by `up`
        self.taps = 2 * self.half // self.up + 1  # most input samples any output sample uses

    def output_frames(self, input_frames: int) -> int:
        return -(-input_frames * self.up // self.down)

    def input_range(self, j0: int, j1: int) -> tuple[int, int]:
        """Input frames [k0, k1) that outputs [j0, j1) depend on."""
        k0 = -((self.half - j0 * self.down) // self.up)  # ceil((j0 * down - C) / up)
        k1 = ((j1 - 1) * self.down + self.half) // self.up + 1
        return k0, k1

    def apply(self, x: np.ndarray, k0: int, j0: int, j1: int) -> np.ndarray:
        """Outputs [j0, j1) from input frames ``x`` = frames [k0, k0 + len(x)), shape (frames, channels)."""
        j = np.arange(j0, j1)
        t = j * self.down + self.half
        k_lo = -((self.half - j * self.down) // self.up)
        k = k_lo[:, None] + np.arange(self.taps)  # (J, Q)
        idx = t[:, None] - k * self.up
        valid = (idx >= 0) & (idx <= 2 * self.half)
        weights = np.where(valid, self.h[np.clip(idx, 0, 2 * self.half)], 0.0)
        rows = np.clip(k - k0, 0, len(x) - 1)
        return np.einsum("jq,jqc->jc", weights, x[rows].astype(np.float64)).astype(np.float32)


class ResampledSource:
    """``source`` at ``rate_out``, computed on demand for any frame range."""

    def __init__(self, source, rate_out: int, frames: int | None = None):
        self.source = source
        self.resampler = Resampler(source.sample_rate_hz, rate_out)
        self.frames = self.resampler.output_frames(source.frames) if frames is None else frames
        self.channels = source.channels
        self.sample_rate_hz = rate_out

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.zeros((b - a, self.channels), np.float32)
        for j0 in range(a, b, 8192):  # bounded working memory: 8192 x taps x channels
            j1 = min(j0 + 8192, b)
            k0, k1 = self.resampler.input_range(j0, j1)
            out[j0 - a : j1 - a] = self.resampler.apply(self.source.read(k0, k1), k0, j0, j1)
        return out


# --- chunked overlap-add ------------------------------------------------------------------------------


def chunk_plan(frames: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of every chunk: full chunks every ``chunk - overlap`` frames; the last one ends at
    ``frames`` and is longer than ``overlap``."""
    if frames <= 0:
        return []
    if frames <= chunk:
        return [(0, frames)]
    hop = chunk - overlap
    n = 1 + math.ceil((frames - chunk) / hop)
    return [(i * hop, min(i * hop + chunk, frames) if i < n - 1 else frames) for i in range(n)]


def overlap_add(
    source,
    run: Callable[[np.ndarray], np.ndarray],
    chunk: int,
    overlap: int,
    emit: Callable[[int, np.ndarray, np.ndarray], None],
) -> int:
    """Separate ``source`` chunk by chunk; ``emit(start, target, mixture)`` gets consecutive final blocks.

    ``run`` maps (channels, samples) to (channels, samples). Returns the number of chunks.
    """
    if not 0 <= overlap <= chunk // 2 or chunk < 1:
        raise InputError(f"need a chunk of at least 1 sample and 0 <= overlap <= chunk / 2, got {chunk}/{overlap}")
    plan = chunk_plan(source.frames, chunk, overlap)
    tail = None  # the previous chunk's output over the first `overlap` frames of this one
    for i, (start, end) in enumerate(plan):
        x = source.read(start, end)  # (len, channels)
        y = np.asarray(run(np.ascontiguousarray(x.T)), np.float32).T.copy()  # (len, channels)
        if tail is not None and len(tail):
            ramp = ((np.arange(len(tail)) + 0.5) / len(tail))[:, None].astype(np.float32)
            y[: len(tail)] = tail * (1 - ramp) + y[: len(tail)] * ramp
        keep = len(y) if i == len(plan) - 1 else chunk - overlap
        emit(start, y[:keep], x[:keep])
        tail = y[keep:]
    return len(plan)


def separate_batched(run, mix: np.ndarray, chunk: int, overlap: int, batch_samples: int = 1 << 20) -> np.ndarray:
    """What :func:`overlap_add` gives for ``mix`` (tracks, samples), with the chunks run in batches.

    Every full-length chunk of every track goes through ``run`` in batches of about ``batch_samples``
    samples; then :func:`overlap_add` itself assembles the outputs, so the cross-fade is exactly that of
    ``s2g separate``. ``run`` maps (batch, samples) to (batch, samples). Used to score a model the way a
    device runs it.
    """
    tracks, frames = mix.shape
    plan = chunk_plan(frames, chunk, overlap)
    full = [(a, b) for a, b in plan if b - a == chunk]
    outputs: dict[tuple[int, int], np.ndarray] = {}
    if full:
        stack = np.stack([mix[:, a:b] for a, b in full]).reshape(-1, chunk)  # (chunks * tracks, chunk)
        rows = max(1, batch_samples // chunk)
        done = np.concatenate([np.asarray(run(stack[i : i + rows]), np.float32) for i in range(0, len(stack), rows)])
        for k, span in enumerate(done.reshape(len(full), tracks, chunk)):
            outputs[full[k]] = span
    spans = iter(plan)

    def replay(x: np.ndarray) -> np.ndarray:  # overlap_add asks for the chunks in plan order
        span = next(spans)
        return outputs[span] if span in outputs else np.asarray(run(x), np.float32)

    pieces: list[np.ndarray] = []
    overlap_add(ArraySource(mix.T, 1), replay, chunk, overlap, lambda start, y, x: pieces.append(y))
    return np.concatenate(pieces).T if pieces else np.zeros_like(mix)


# --- the command ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeparationResult:
    model: Path
    input: Path
    target: Path
    residual: Path
    sample_rate_hz: int
    model_sample_rate_hz: int
    resampled: bool
    channels: int
    frames: int
    chunks: int
    chunk_seconds: float
    overlap_seconds: float
    wall_s: float

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz

    def to_dict(self) -> dict:
        return {
            "model": str(self.model),
            "input": str(self.input),
            "target": str(self.target),
            "residual": str(self.residual),
            "sample_rate_hz": self.sample_rate_hz,
            "model_sample_rate_hz": self.model_sample_rate_hz,
            "resampled": self.resampled,
            "channels": self.channels,
            "frames": self.frames,
            "seconds": self.seconds,
            "chunks": self.chunks,
            "chunk_seconds": self.chunk_seconds,
            "overlap_seconds": self.overlap_seconds,
            "wall_s": round(self.wall_s, 3),
            "real_time_factor": round(self.wall_s / self.seconds, 4) if self.frames else None,
        }


def separate(
    model: str | os.PathLike,
    audio: str | os.PathLike,
    out: str | os.PathLike,
    *,
    chunk_seconds: float = 10.0,
    overlap_seconds: float = 1.0,
    overwrite: bool = False,
    threads: int | None = None,
) -> SeparationResult:
    """Separate ``audio`` with the exported ``model``; writes ``<stem>_target.wav`` and ``<stem>_residual.wav``."""
    import soundfile as sf

    started = time.perf_counter()
    info = read_model_info(resolve_model(model))
    if not (math.isfinite(chunk_seconds) and chunk_seconds > 0):
        raise InputError(f"--chunk-seconds must be positive, got {chunk_seconds}")
    if not (math.isfinite(overlap_seconds) and 0 <= overlap_seconds <= chunk_seconds / 2):
        raise InputError(f"--overlap-seconds must be between 0 and half the chunk, got {overlap_seconds}")
    audio, out = Path(audio), Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a directory")
    target_path, residual_path = out / f"{audio.stem}_target.wav", out / f"{audio.stem}_residual.wav"
    for p in (target_path, residual_path):
        if p.exists() and not overwrite:
            raise InputError(f"output file {p} exists; pass --overwrite to replace it")
    source = SoundFileSource(audio)
    try:
        sr, model_sr = source.sample_rate_hz, info.sample_rate_hz
        session = _session(info.path, threads)

        def run(x: np.ndarray) -> np.ndarray:
            return session.run(None, {info.input_name: x})[0]

        chunk = max(1, round(chunk_seconds * model_sr))
        overlap = min(round(overlap_seconds * model_sr), chunk // 2)
        out.mkdir(parents=True, exist_ok=True)
        kwargs = {"samplerate": sr, "channels": source.channels, "subtype": OUTPUT_SUBTYPE, "format": "WAV"}
        # contexts exit in reverse: the SoundFiles close (headers flushed) before atomic_file renames them
        with (
            atomic_file(target_path, overwrite) as tmp_t,
            atomic_file(residual_path, overwrite) as tmp_r,
            sf.SoundFile(tmp_t, "w", **kwargs) as ft,
            sf.SoundFile(tmp_r, "w", **kwargs) as fr,
        ):
            if sr == model_sr:

                def emit(start: int, target: np.ndarray, mixture: np.ndarray) -> None:
                    ft.write(target)
                    fr.write(mixture - target)

                chunks = overlap_add(source, run, chunk, overlap, emit)
            else:
                log.info("resampling %s from %d Hz to the model's %d Hz and back", audio, sr, model_sr)
                chunks = _separate_resampled(source, run, model_sr, chunk, overlap, ft, fr, out)
    finally:
        source.close()
    return SeparationResult(
        info.path,
        audio,
        target_path,
        residual_path,
        sr,
        model_sr,
        sr != model_sr,
        source.channels,
        source.frames,
        chunks,
        chunk / model_sr,
        overlap / model_sr,
        time.perf_counter() - started,
    )


def _separate_resampled(source, run, model_sr: int, chunk: int, overlap: int, ft, fr, out: Path) -> int:
    """Separate at the model's rate into a scratch WAV, then resample the target back chunk by chunk."""
    import soundfile as sf

    fd, scratch = tempfile.mkstemp(prefix=".s2g-separate-", suffix=".wav", dir=out)
    os.close(fd)
    try:
        model_source = ResampledSource(source, model_sr)
        with sf.SoundFile(scratch, "w", model_sr, source.channels, "FLOAT", format="WAV") as fs:
            chunks = overlap_add(model_source, run, chunk, overlap, lambda s, target, mixture: fs.write(target))
        back = SoundFileSource(Path(scratch))
        try:
            target = ResampledSource(back, source.sample_rate_hz, frames=source.frames)
            for a in range(0, source.frames, _IO_BLOCK):
                b = min(a + _IO_BLOCK, source.frames)
                t = target.read(a, b)
                ft.write(t)
                fr.write(source.read(a, b) - t)
        finally:
            back.close()
    finally:
        Path(scratch).unlink(missing_ok=True)
    return chunks


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
