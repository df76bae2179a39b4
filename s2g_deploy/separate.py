"""Run an exported waveform or stream ONNX on audio files of any length (``s2g separate``).

A waveform export processes each file in chunks of ``chunk_seconds`` that overlap by ``overlap_seconds``; the overlaps
are cross-faded with complementary linear ramps (they sum to one, so a model that is the identity
gives back its input exactly). A stream export (``s2g export --io stream``, a causal model) is run the
way it runs on a device instead (:func:`stream_add`): call after call of ``hops_per_call`` hops from
zero states, the states carried from one call to the next, ``delay`` samples of zeros at the end to
flush, and the first ``delay`` output samples dropped, so the output is aligned with the input and
equals the causal model on the whole signal. Reading, inference and writing go chunk by chunk (call by
call), so memory stays flat whatever the file's length. Every channel is separated on its own
(channels are the model's batch).

A file at another sample rate than the model's is resampled on the fly with a polyphase
Kaiser-windowed sinc filter (:class:`Resampler`), separated, and the target resampled back as it comes,
so the outputs have the input's rate, length and channels. The residual is the input minus the target
at the input's rate: above the model's Nyquist frequency everything counts as residual.

Outputs, demucs style: ``<out>/<input stem>/<source>.wav`` and ``<out>/<input stem>/no_<source>.wav``,
where ``<source>`` is the model's training target (see :func:`recorded_target`); a model that records
none gives ``target.wav`` and ``residual.wav``. Formats (:class:`OutputFormat`): 16- or 24-bit PCM WAV,
32-bit float WAV, or 16/24-bit FLAC. Integer formats clip to [-1, 1] and count the clipped samples;
float never clips. Every input is checked before anything is written, and each input's two files are
written into a hidden staging directory beside their destination and renamed into place only when
both are complete: a bad sample (NaN or inf), a full disk or Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2g_deploy.artifacts import MANIFEST_FORMAT, Terminated, sha256_file
from s2g_deploy.errors import InputError, first_line

log = logging.getLogger(__name__)

OUTPUT_SUBTYPE = "FLOAT"  # the library's default output: float WAV, lossless and never clipped
_BACK_BLOCK = 8192  # output frames per step when resampling the target back (ResampledSource's block)
_STREAM_BLOCK = 8192  # frames a stream reads and emits at a time (whole calls; at least one)
_STAGING_PREFIX = ".s2g-tmp-"


# --- the model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSpec:
    """How a stream export is called (its ``s2g.stream`` metadata); samples at the model's rate."""

    hop_length: int
    delay_samples: int  # output sample n is the offline output sample n - delay
    hops_per_call: int  # the export's own call (its metadata), or the --hops-per-call asked for

    @property
    def call_samples(self) -> int:
        return self.hops_per_call * self.hop_length


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    sample_rate_hz: int
    input_name: str
    subnet: str
    target_source: str | None = None  # the training target ("vocals"), where the export records it
    stream: StreamSpec | None = None  # a stream export's timing; None for a waveform export


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
        raise InputError(f"{path}: not a readable ONNX model ({first_line(exc)})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if "s2g.sample_rate_hz" not in props or "s2g.io" not in props:
        raise InputError(f"{path}: not an s2g export (no s2g.sample_rate_hz / s2g.io metadata)")
    io = json.loads(props["s2g.io"])
    inputs = [i.name for i in model.graph.input]
    stream = None
    if io.get("io") == "stream" or any(name.startswith("state_") for name in inputs):
        stream = _stream_spec(path, props, inputs)
    elif io.get("io") != "waveform":
        raise InputError(
            f"{path}: a {io.get('io')!r} export (spectrogram in, mask out); s2g separate needs a waveform export "
            "or a stream export"
        )
    return ModelInfo(
        path,
        int(props["s2g.sample_rate_hz"]),
        io["input"]["name"],
        props.get("s2g.subnet", "?"),
        recorded_target(path, props),
        stream,
    )


def _stream_spec(path: Path, props: dict[str, str], inputs: list[str]) -> StreamSpec:
    """The hop, delay and call of a stream export, from its ``s2g.stream`` metadata."""
    try:
        doc = json.loads(props.get("s2g.stream") or "null")
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a stream export without usable s2g.stream metadata (hop_length, delay_samples)")
    if "mixture" not in inputs or not any(name.startswith("state_") for name in inputs):
        raise InputError(f"{path}: a stream export needs a 'mixture' input and state_* inputs, has {inputs}")
    try:
        hop = int(doc["hop_length"])
        delay = int(doc["delay_samples"]) if "delay_samples" in doc else int(doc["n_fft"]) - hop
        hops = int(doc.get("hops_per_call", 1))
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"{path}: a stream export whose s2g.stream metadata has no hop_length / delay_samples"
        ) from None
    if hop < 1 or delay < 0 or hops < 1:
        raise InputError(f"{path}: s2g.stream metadata out of range (hop {hop}, delay {delay}, hops per call {hops})")
    return StreamSpec(hop, delay, hops)


def recorded_target(path: Path, props: dict[str, str]) -> str | None:
    """The source the model was trained to separate, or None where nothing records it.

    First the ONNX metadata (``s2g.target``, or a ``"target"`` in the JSON of ``s2g.training`` or
    ``s2g.io``); then the training metadata of the checkpoint the export came from, which an s2g export
    keeps in the ``manifest.json`` beside its ``model.onnx`` (used only if that manifest lists this very
    file's hash). A name that is not a plain file-name word is ignored.
    """
    for key in ("s2g.target", "s2g.training", "s2g.io"):
        value = props.get(key)
        if not value:
            continue
        name = value if key == "s2g.target" else _json_field(value, "target")
        if _usable_name(name):
            return name
    manifest = path.parent / "manifest.json"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        return None
    files = (doc.get("hashes") or {}).get("files") or {}
    if not isinstance(files, dict) or files.get(path.name) != sha256_file(path):
        return None  # a manifest, but not this model's
    training = doc.get("training") or {}
    if not isinstance(training, dict):
        return None
    for name in (training.get("target"), _json_field(training.get("data_description"), "target")):
        if _usable_name(name):
            return name
    return None


def _json_field(value, key: str):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value.get(key) if isinstance(value, dict) else None


def _usable_name(name) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}", name) is not None


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
            raise InputError(f"{path}: cannot read audio ({first_line(exc)})") from None
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


# --- streaming -------------------------------------------------------------------------------------


def stream_add(
    source,
    step: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    shapes: dict[str, tuple],
    stream: StreamSpec,
    emit: Callable[[int, np.ndarray, np.ndarray], None],
) -> int:
    """Stream ``source`` through a stream export's ``step``; ``emit(start, target, mixture)`` gets
    consecutive final blocks of [0, source.frames), as :func:`overlap_add` does. Returns the calls.

    Calls of ``stream.call_samples`` (the last one shorter, whole hops) from zero states (``shapes``:
    each state's shape, ``"batch"`` for the channels), every state carried to the next call, then
    ``delay`` samples of zeros to flush; output sample ``n`` belongs to input sample ``n - delay``, so
    the first ``delay`` output samples are dropped. The calls and their inputs are those of
    :func:`s2g_deploy.runtime.stream.stream_signal` on the whole signal, so the result is the same.
    The source is read, and the output emitted, in blocks of whole calls of about ``_STREAM_BLOCK``
    frames (one call if a call is longer): only a block and ``delay`` frames of mixture are held.
    """
    from s2g_deploy.runtime.stream import NEXT, zero_states

    hop, delay, call = stream.hop_length, stream.delay_samples, stream.call_samples
    if hop < 1 or delay < 0 or stream.hops_per_call < 1:
        raise InputError(f"need a hop of at least 1 sample, a delay >= 0 and >= 1 hop per call, got {stream}")
    frames, channels = source.frames, source.channels
    if frames <= 0:
        return 0
    total = -(-(frames + delay) // hop) * hop  # whole hops: the signal and the flush
    span = call * max(1, _STREAM_BLOCK // call)  # a whole number of calls: the calls of stream_signal
    states = zero_states(shapes, channels)
    held = np.zeros((0, channels), np.float32)  # mixture frames [done, ...) read but not yet emitted
    done = calls = 0
    for block in range(0, total, span):
        block_end = min(block + span, total)
        x = source.read(block, block_end)
        x[max(frames - block, 0) :] = 0  # the flush is zeros, whatever the source gives beyond its end
        xt = np.ascontiguousarray(x.T)  # (channels, frames): channels are the batch
        ys = []
        for start in range(0, block_end - block, call):
            result = step({"mixture": np.ascontiguousarray(xt[:, start : start + call]), **states})
            states = {name: result[NEXT + name] for name in shapes}
            ys.append(np.asarray(result["target"], np.float32))
            calls += 1
        y = np.concatenate(ys, axis=1).T  # stream output [block, block_end): input [block - delay, ...)
        held = np.concatenate([held, x])
        a, b = max(block - delay, 0), min(block_end - delay, frames)
        if b > a:
            offset = a - (block - delay)
            emit(a, np.ascontiguousarray(y[offset : offset + b - a]), held[: b - a])
            held, done = held[b - a :], b
    assert done == frames
    return calls


def _stream_process(session, stream: StreamSpec):
    """``process(source, emit) -> calls`` for a stream export's onnxruntime session."""
    from s2g_deploy.runtime.stream import session_step

    step, shapes = session_step(session)
    return lambda source, emit: stream_add(source, step, shapes, stream, emit)


# --- output formats ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFormat:
    """How the two outputs are stored: ``container`` "WAV" or "FLAC", ``subtype`` a libsndfile subtype."""

    container: str = "WAV"
    subtype: str = OUTPUT_SUBTYPE

    def __post_init__(self):
        allowed = {"WAV": ("PCM_16", "PCM_24", "FLOAT"), "FLAC": ("PCM_16", "PCM_24")}
        if self.subtype not in allowed.get(self.container, ()):
            raise InputError(f"unsupported output format {self.container} {self.subtype}")

    @property
    def extension(self) -> str:
        return ".flac" if self.container == "FLAC" else ".wav"

    @property
    def clips(self) -> bool:
        """Integer samples: values beyond [-1, 1] are clipped (and counted)."""
        return self.subtype != "FLOAT"

    def describe(self) -> str:
        return "32-bit float WAV" if self.subtype == "FLOAT" else f"{self.subtype[4:]}-bit {self.container}"


FLOAT_WAV = OutputFormat("WAV", "FLOAT")
PCM16_WAV = OutputFormat("WAV", "PCM_16")


def output_format(*, int24: bool = False, float32: bool = False, flac: bool = False) -> OutputFormat:
    """The format the ``s2g separate`` options ask for; default 16-bit PCM WAV."""
    if int24 and float32:
        raise InputError("--int24 and --float32 cannot be combined: choose one sample format")
    if float32 and flac:
        raise InputError("--float32 cannot be combined with --flac: FLAC has no float samples (use --int24)")
    return OutputFormat("FLAC" if flac else "WAV", "FLOAT" if float32 else "PCM_24" if int24 else "PCM_16")


def output_names(target_source: str | None) -> tuple[str, str]:
    """File stems of the two outputs: ``(source, no_source)``, or ``(target, residual)`` without a source."""
    return (target_source, f"no_{target_source}") if target_source else ("target", "residual")


# --- the command ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeparationJob:
    """One input, checked, and where its outputs go (what ``on_start`` is told before it runs)."""

    input: Path
    target: Path
    residual: Path
    frames: int
    channels: int
    sample_rate_hz: int
    model_sample_rate_hz: int

    @property
    def resampled(self) -> bool:
        return self.sample_rate_hz != self.model_sample_rate_hz

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz


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
    chunks: int  # model runs: chunks, or a stream's calls
    chunk_seconds: float | None  # None for a stream
    overlap_seconds: float | None
    wall_s: float
    format: str = "WAV"
    subtype: str = OUTPUT_SUBTYPE
    clipped_samples: int = 0  # sample values beyond [-1, 1] clipped in the two outputs (integer formats)
    stream: StreamSpec | None = None  # how a stream export was called; None: chunked overlap-add

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate_hz

    @property
    def mode(self) -> str:
        return "chunked" if self.stream is None else "stream"

    @property
    def calls(self) -> int:
        """A stream's calls (``chunks`` under its own name)."""
        return self.chunks

    def _how(self) -> dict:
        if self.stream is None:
            return {
                "chunks": self.chunks,
                "chunk_seconds": self.chunk_seconds,
                "overlap_seconds": self.overlap_seconds,
            }
        ms = lambda n: round(1000 * n / self.model_sample_rate_hz, 3)  # noqa: E731
        return {
            "calls": self.chunks,
            "hops_per_call": self.stream.hops_per_call,
            "call_samples": self.stream.call_samples,
            "call_ms": ms(self.stream.call_samples),
            "hop_length": self.stream.hop_length,
            "delay_samples": self.stream.delay_samples,
            "delay_ms": ms(self.stream.delay_samples),
        }

    def to_dict(self) -> dict:
        return {
            "model": str(self.model),
            "input": str(self.input),
            "outputs": {self.target.stem: str(self.target), self.residual.stem: str(self.residual)},
            "target": str(self.target),
            "residual": str(self.residual),
            "format": self.format,
            "subtype": self.subtype,
            "sample_rate_hz": self.sample_rate_hz,
            "model_sample_rate_hz": self.model_sample_rate_hz,
            "resampled": self.resampled,
            "channels": self.channels,
            "frames": self.frames,
            "seconds": self.seconds,
            "mode": self.mode,
            **self._how(),
            "wall_s": round(self.wall_s, 3),
            "real_time_factor": round(self.wall_s / self.seconds, 4) if self.frames else None,
            "clipped_samples": self.clipped_samples,
        }


def separate(
    model: str | os.PathLike,
    audio: str | os.PathLike,
    out: str | os.PathLike,
    *,
    chunk_seconds: float | None = None,
    overlap_seconds: float | None = None,
    hops_per_call: int | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    output_format: OutputFormat = FLOAT_WAV,
    on_progress: Callable[[int, int], None] | None = None,
) -> SeparationResult:
    """Separate one ``audio`` file with the exported ``model``: :func:`separate_files` with one input."""
    return separate_files(
        model,
        [audio],
        out,
        chunk_seconds=chunk_seconds,
        overlap_seconds=overlap_seconds,
        hops_per_call=hops_per_call,
        overwrite=overwrite,
        threads=threads,
        output_format=output_format,
        on_progress=on_progress,
    )[0]


def separate_files(
    model: str | os.PathLike,
    audio: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    chunk_seconds: float | None = None,
    overlap_seconds: float | None = None,
    hops_per_call: int | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    output_format: OutputFormat = FLOAT_WAV,
    on_start: Callable[[SeparationJob], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_result: Callable[[SeparationResult], None] | None = None,
) -> list[SeparationResult]:
    """Separate each of ``audio`` in turn with the exported ``model``; one result per input, in order.

    Writes ``<out>/<stem>/<source><ext>`` (the target) and ``<out>/<stem>/no_<source><ext>`` (the input
    minus the target) for each input ``<stem>.<suffix>``. ``<source>`` is the training target the
    export records (:func:`recorded_target`: ONNX metadata, else the checkpoint's training metadata in
    the export's manifest, e.g. ``vocals``); where nothing records one, the files are ``target<ext>``
    and ``residual<ext>``, never a guessed name. ``output_format`` picks the container and sample format
    (default 32-bit float WAV; ``s2g separate`` defaults to 16-bit PCM); integer formats clip to [-1, 1]
    and ``clipped_samples`` counts what was clipped.

    A waveform export runs in chunks of ``chunk_seconds`` (default 10) cross-faded over
    ``overlap_seconds`` (default 1, at most half a chunk). A stream export (``io`` "stream", or
    ``state_*`` inputs) is streamed instead (:func:`stream_add`): ``hops_per_call`` hops per call
    (default: the export's own, from its ``s2g.stream`` metadata), states carried, flushed and
    aligned, so the output equals the causal model on the whole input; chunk and overlap do not apply
    to it (giving either is an :class:`InputError`), nor ``hops_per_call`` to a waveform export.

    Everything is checked before anything is written: the settings, the model, every input (exists, a
    regular file, readable audio), that no two inputs share a stem, and that no output exists (unless
    ``overwrite``) or is a directory. Bad input and operating-system errors while writing (full disk,
    name too long, permission denied) raise :class:`InputError` naming the path; the failing input's
    files are removed (they are staged and renamed into place only when complete); inputs finished
    before it stay. An input with NaN or inf samples is refused when they are read.

    Callbacks, for a user interface (this module draws nothing): ``on_start(job)`` before each input,
    ``on_progress(done_frames, total_frames)`` as its output is written (frames at the input's rate),
    ``on_result(result)`` once its files are in place.
    """
    given = (chunk_seconds, overlap_seconds)
    chunk_seconds, overlap_seconds = _check_settings(chunk_seconds, overlap_seconds, threads, audio, hops_per_call)
    info = read_model_info(resolve_model(model))
    _check_mode(info, *given, hops_per_call)
    jobs = _plan(info, [Path(a) for a in audio], Path(out), output_format, overwrite)
    session = _session(info.path, threads)
    model_sr = info.sample_rate_hz
    stream = info.stream
    if stream is not None:
        # the export's own call by default: an fp32 stream's output does not depend on how hops are grouped
        # into calls (parity), but an int8 one's does a little (each call quantizes its activations with
        # their own range), and its quality gate was measured at the device's call
        if hops_per_call is not None:
            stream = StreamSpec(stream.hop_length, stream.delay_samples, hops_per_call)
        process = _stream_process(session, stream)
        chunk_s = overlap_s = None
    else:

        def run(x: np.ndarray) -> np.ndarray:
            return session.run(None, {info.input_name: x})[0]

        chunk = max(1, round(chunk_seconds * model_sr))
        overlap = min(round(overlap_seconds * model_sr), chunk // 2)
        chunk_s, overlap_s = chunk / model_sr, overlap / model_sr

        def process(source, emit) -> int:
            return overlap_add(source, run, chunk, overlap, emit)

    results = []
    with _terminate_as_interrupt():
        for job in jobs:
            if on_start is not None:
                on_start(job)
            started = time.perf_counter()
            chunks, clipped = _separate_one(job, process, output_format, overwrite, on_progress)
            seconds = (chunk_s, overlap_s, time.perf_counter() - started)
            result = _result(info, job, model_sr, chunks, seconds, output_format, clipped, stream)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results


def _check_settings(
    chunk_seconds: float | None, overlap_seconds: float | None, threads: int | None, audio, hops_per_call=None
) -> tuple[float, float]:
    """Refuse bad settings before anything is read; returns the chunk (default 10 s) and the overlap in
    seconds (default: 1 s, at most half a chunk, what s2g evaluate scores)."""
    if chunk_seconds is None:
        chunk_seconds = 10.0
    elif not (math.isfinite(chunk_seconds) and chunk_seconds > 0):
        raise InputError(f"--chunk-seconds must be positive, got {chunk_seconds}")
    if overlap_seconds is None:
        from s2g_deploy.quality import overlap_for

        overlap_seconds = overlap_for(chunk_seconds)
    elif not (math.isfinite(overlap_seconds) and 0 <= overlap_seconds <= chunk_seconds / 2):
        raise InputError(f"--overlap-seconds must be between 0 and half the chunk, got {overlap_seconds}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, got {threads}")
    if hops_per_call is not None and (
        isinstance(hops_per_call, bool) or not isinstance(hops_per_call, int) or hops_per_call < 1
    ):
        raise InputError(f"--hops-per-call must be a whole number of at least 1, got {hops_per_call}")
    if not audio:
        raise InputError("no audio files given")
    return chunk_seconds, overlap_seconds


def _check_mode(info: ModelInfo, chunk_seconds, overlap_seconds, hops_per_call) -> None:
    """Chunking applies to a waveform export only, hops per call to a stream export only."""
    if info.stream is not None:
        given = [
            name
            for name, v in (("--chunk-seconds", chunk_seconds), ("--overlap-seconds", overlap_seconds))
            if v is not None
        ]
        if given:
            raise InputError(
                f"{info.path}: a stream export runs call by call with its states carried; {' and '.join(given)} "
                f"{'do' if len(given) > 1 else 'does'} not apply to it (use --hops-per-call to set its call)"
            )
    elif hops_per_call is not None:
        raise InputError(f"{info.path}: --hops-per-call applies to a stream export only; this is a waveform export")


def _result(info, job, model_sr: int, chunks: int, seconds: tuple, fmt, clipped: int, stream=None) -> SeparationResult:
    """``seconds``: (chunk, overlap, wall time); chunk and overlap None for a stream."""
    chunk_s, overlap_s, wall_s = seconds
    return SeparationResult(
        info.path,
        job.input,
        job.target,
        job.residual,
        job.sample_rate_hz,
        model_sr,
        job.resampled,
        job.channels,
        job.frames,
        chunks,
        chunk_s,
        overlap_s,
        wall_s,
        fmt.container,
        fmt.subtype,
        clipped,
        stream,
    )


def _plan(info: ModelInfo, inputs: list[Path], out: Path, fmt: OutputFormat, overwrite: bool) -> list[SeparationJob]:
    """Check every input and output path; nothing is created."""
    out_stat = _stat(out)
    if out_stat is not None and not stat.S_ISDIR(out_stat.st_mode):
        raise InputError(f"output {out} exists and is not a directory")
    target_name, residual_name = output_names(info.target_source)
    jobs, by_stem = [], {}
    for path in inputs:
        frames, channels, sr = _check_input(path)
        if path.stem in by_stem:
            raise InputError(
                f"inputs {by_stem[path.stem]} and {path} would both write to {out / path.stem}; "
                "rename one, or separate them in two calls with different --out"
            )
        by_stem[path.stem] = path
        folder = out / path.stem
        folder_stat = _stat(folder)
        if folder_stat is not None and not stat.S_ISDIR(folder_stat.st_mode):
            raise InputError(f"{folder}: exists and is not a directory (the outputs of {path} go there)")
        target, residual = (folder / f"{name}{fmt.extension}" for name in (target_name, residual_name))
        for p in (target, residual):
            st = _stat(p)
            if st is not None and stat.S_ISDIR(st.st_mode):
                raise InputError(f"{p}: is a directory, where an output file would be written")
            if st is not None and not overwrite:
                raise InputError(f"output file {p} exists; pass --overwrite to replace it")
        jobs.append(SeparationJob(path, target, residual, frames, channels, sr, info.sample_rate_hz))
    ancestor, st = next((p, st) for p in [out.absolute(), *out.absolute().parents] if (st := _stat(p)) is not None)
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"cannot write the output {out}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output {out}: {ancestor}: Permission denied")
    return jobs


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat(path)``, None where nothing is there; other failures (name too long...) are InputError."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise InputError(f"{path}: {_cause(exc)}") from None


def _check_input(path: Path) -> tuple[int, int, int]:
    """(frames, channels, sample rate) of an input that exists, is a regular file and is readable audio."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: {_cause(exc)}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "special"
        raise InputError(f"{path}: not a regular file ({kind}); give an audio file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: {_cause(exc)}") from None
    source = SoundFileSource(path)  # InputError naming the file if it is not audio
    source.close()
    if source.channels < 1 or source.sample_rate_hz < 1:
        raise InputError(f"{path}: cannot read audio ({source.channels} channels at {source.sample_rate_hz} Hz)")
    return source.frames, source.channels, source.sample_rate_hz


def _separate_one(job: SeparationJob, process, fmt: OutputFormat, overwrite: bool, on_progress):
    """Separate one checked input into staging files, then rename them into place; (chunks, clipped).

    ``process(source, emit) -> chunks`` separates a source at the model's rate, emitting consecutive
    final blocks as :func:`overlap_add` does (chunked overlap-add, or a stream's :func:`stream_add`).
    """
    folder = job.target.parent
    created = _make_dirs(folder)
    staging, placed = None, False
    try:
        with _os_errors(folder):
            staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=folder))
        staged = (staging / job.target.name, staging / job.residual.name)
        source = _FiniteSource(SoundFileSource(job.input))
        writers: list[_AudioWriter] = []
        try:
            for tmp, final in zip(staged, (job.target, job.residual), strict=True):
                writers.append(_AudioWriter(tmp, final, fmt, job.sample_rate_hz, job.channels))
            target_out, residual_out = writers

            def write(target: np.ndarray, mixture: np.ndarray) -> None:
                target_out.write(target)
                residual_out.write(mixture - target)

            def progress(done: int) -> None:
                if on_progress is not None:
                    on_progress(done, job.frames)

            progress(0)
            if not job.resampled:

                def emit(start: int, target: np.ndarray, mixture: np.ndarray) -> None:
                    write(target, mixture)
                    progress(start + len(target))

                chunks = process(source, emit)
            else:
                log.info(
                    "resampling %s from %d Hz to the model's %d Hz and back",
                    job.input,
                    job.sample_rate_hz,
                    job.model_sample_rate_hz,
                )
                chunks = _separate_resampled(source, process, job.model_sample_rate_hz, write, progress)
            for w in writers:
                w.close()
        except BaseException:
            for w in writers:
                w.abort()
            raise
        finally:
            source.close()
        _place(staged, (job.target, job.residual), overwrite)
        placed = True
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if not placed:
            for p in reversed(created):
                with contextlib.suppress(OSError):
                    p.rmdir()
    return chunks, target_out.clipped + residual_out.clipped


def _separate_resampled(source, process, model_sr: int, write, progress) -> int:
    """Separate at the model's rate and resample the target back as the chunks come (no scratch file).

    An output block is computed as soon as every model-rate target frame it depends on has been
    emitted; only those frames are kept, so memory stays flat. The blocks and their inputs are those
    of :class:`ResampledSource` reading the whole model-rate target, so the result is the same.
    """
    model_source = ResampledSource(source, model_sr)
    back = Resampler(model_sr, source.sample_rate_hz)
    frames, channels = source.frames, source.channels
    held = np.zeros((0, channels), np.float32)  # model-rate target frames [held_start, held_start + len(held))
    held_start = next_frame = 0

    def drain(final: bool) -> None:
        nonlocal held, held_start, next_frame
        while next_frame < frames:
            j0, j1 = next_frame, min(next_frame + _BACK_BLOCK, frames)
            k0, k1 = back.input_range(j0, j1)
            if not final and k1 > held_start + len(held):
                return
            x = np.zeros((k1 - k0, channels), np.float32)  # zeros outside the model-rate signal
            lo, hi = max(k0, held_start), min(k1, held_start + len(held))
            if hi > lo:
                x[lo - k0 : hi - k0] = held[lo - held_start : hi - held_start]
            write(back.apply(x, k0, j0, j1), source.read(j0, j1))
            next_frame = j1
            progress(next_frame)
            keep = min(max(back.input_range(j1, j1 + 1)[0], held_start), held_start + len(held))
            held, held_start = held[keep - held_start :], keep

    def emit(start: int, target: np.ndarray, mixture: np.ndarray) -> None:
        nonlocal held
        held = np.concatenate([held, target])
        drain(final=False)

    chunks = process(model_source, emit)
    drain(final=True)
    return chunks


class _FiniteSource:
    """A source that refuses NaN and inf samples as they are read."""

    def __init__(self, source):
        self.source = source
        self.frames, self.channels, self.sample_rate_hz = source.frames, source.channels, source.sample_rate_hz

    def read(self, a: int, b: int) -> np.ndarray:
        x = self.source.read(a, b)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            frame = a + int(np.argmin(finite))
            raise InputError(
                f"{self.source.path}: contains non-finite samples (NaN or inf), the first at frame {frame} "
                f"({frame / self.sample_rate_hz:.3f} s)"
            )
        return x

    def close(self) -> None:
        self.source.close()


def _open_output(path: Path):
    """The binary file an output is written to (a seam for tests that simulate a full disk)."""
    return open(path, "w+b")  # closed by _AudioWriter


class _GuardedFile:
    """A file for soundfile's virtual I/O that never raises inside libsndfile's callbacks.

    An exception there would be printed and lost, and libsndfile would report a bare failure; instead
    the first OSError (a full disk...) is kept, the call reports failure, and the writer raises it.
    """

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def _guard(self, call, failed):
        if self.error is not None:
            return failed
        try:
            return call()
        except OSError as exc:
            self.error = exc
            return failed

    def write(self, data) -> int:
        return self._guard(lambda: self.file.write(data), 0)

    def read(self, n: int = -1) -> bytes:
        return self._guard(lambda: self.file.read(n), b"")

    def readinto(self, buffer) -> int:
        return self._guard(lambda: self.file.readinto(buffer), 0)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._guard(lambda: self.file.seek(offset, whence), -1)

    def tell(self) -> int:
        return self._guard(self.file.tell, -1)


class _AudioWriter:
    """One staged output file: clips (and counts) for integer formats; errors name the final path."""

    def __init__(self, tmp: Path, final: Path, fmt: OutputFormat, sample_rate_hz: int, channels: int):
        import soundfile as sf

        self.final, self.fmt, self.clipped = final, fmt, 0
        self._sf = None
        with _os_errors(final):
            self._raw = _GuardedFile(_open_output(tmp))
        try:
            self._sf = sf.SoundFile(self._raw, "w", sample_rate_hz, channels, fmt.subtype, format=fmt.container)
        except Exception as exc:
            self.abort()
            self._raise(exc, f"cannot write {fmt.describe()} at {sample_rate_hz} Hz, {channels} channel(s)")

    def write(self, data: np.ndarray) -> None:
        if self.fmt.clips:
            over = int(np.count_nonzero(np.abs(data) > 1))
            if over:
                self.clipped += over
                data = np.clip(data, -1, 1)
        try:
            self._sf.write(data)
        except Exception as exc:
            self._raise(exc, "write failed")

    def close(self) -> None:
        try:
            self._sf.close()
        except Exception as exc:
            self._raise(exc, "write failed")
        with _os_errors(self.final):
            self._raw.file.close()  # flushes: a full disk can show here too
        self._raise_kept()

    def abort(self) -> None:
        if self._sf is not None:
            with contextlib.suppress(Exception):
                self._sf.close()
        with contextlib.suppress(OSError):
            self._raw.file.close()

    def _raise_kept(self) -> None:
        if self._raw.error is not None:
            raise InputError(f"{self.final}: {_cause(self._raw.error)}") from None

    def _raise(self, exc: BaseException, what: str):
        self._raise_kept()
        if isinstance(exc, OSError):
            raise InputError(f"{self.final}: {_cause(exc)}") from None
        raise InputError(f"{self.final}: {what} ({first_line(exc)})") from None


def _place(staged: tuple[Path, ...], finals: tuple[Path, ...], overwrite: bool) -> None:
    """Rename the finished files into place; if one cannot be, the ones already placed are removed."""
    placed = []
    try:
        for tmp, final in zip(staged, finals, strict=True):
            with _os_errors(final):
                if not overwrite and os.path.lexists(final):  # appeared while we worked
                    raise InputError(f"output file {final} exists; pass --overwrite to replace it")
                if os.path.isdir(final):
                    raise InputError(f"{final}: is a directory, where an output file would be written")
                os.replace(tmp, final)
            placed.append(final)
    except BaseException:
        for p in placed:
            with contextlib.suppress(OSError):
                p.unlink()
        raise


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, outermost first."""
    missing = []
    for p in [folder, *folder.parents]:
        if _stat(p) is not None:
            break
        missing.append(p)
    created = []
    try:
        for p in reversed(missing):
            with _os_errors(p):
                p.mkdir()
            created.append(p)
    except BaseException:
        for p in reversed(created):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return created


@contextlib.contextmanager
def _os_errors(path: Path):
    """An OSError in the block becomes an InputError naming ``path`` and the cause (one line)."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"{path}: {_cause(exc)}") from None


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM unwinds like Ctrl-C while outputs are staged, so they are cleaned up (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _cause(exc: OSError) -> str:
    if exc.strerror:
        return exc.strerror
    if exc.errno:
        return os.strerror(exc.errno)
    return first_line(exc)
