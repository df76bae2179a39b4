"""Running a stream export (torch-free): its timing facts, zero states, and streaming a whole signal.

The contract is :mod:`s2g_deploy.export.stream`'s: inputs ``mixture`` (batch, k hop) and each state,
outputs ``target`` and ``next_`` + each state. Everything here reads the state names and shapes off
the file itself, so any stream export runs, and a measurement process never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

NEXT = "next_"  # a state's output is its input's name with this prefix


@dataclass(frozen=True)
class StreamSettings:
    """The timing facts of a stream, from the config; samples at ``sample_rate_hz``."""

    sample_rate_hz: int
    n_fft: int
    hop_length: int
    hops_per_call: int  # k of the call this export was measured and described for

    @property
    def delay_samples(self) -> int:
        """Output sample n is the offline output sample n - delay (an impulse's delay)."""
        return self.n_fft - self.hop_length

    @property
    def call_samples(self) -> int:
        return self.hops_per_call * self.hop_length

    @property
    def algorithmic_latency_samples(self) -> int:
        """The delay plus the buffering of one call: from a sample's arrival to its output's availability."""
        return self.delay_samples + self.call_samples

    def to_dict(self) -> dict:
        sr = self.sample_rate_hz
        ms = lambda n: round(1000 * n / sr, 3)  # noqa: E731
        return {
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "window": "hann, periodic; analysis and synthesis",
            "frame": "frame t covers input samples [t hop - (n_fft - hop), t hop + hop)",
            "hops_per_call": self.hops_per_call,
            "call_samples": self.call_samples,
            "call_ms": ms(self.call_samples),
            "hop_ms": ms(self.hop_length),
            "delay_samples": self.delay_samples,
            "delay_ms": ms(self.delay_samples),
            "algorithmic_latency_samples": self.algorithmic_latency_samples,
            "algorithmic_latency_ms": ms(self.algorithmic_latency_samples),
            "samples_per_call": "any multiple of hop_length",
        }


def stream_settings(config, hops_per_call: int = 1) -> StreamSettings:
    """The stream of a causal model of ``config`` (``models.config.CausalBSRNNConfig``)."""
    return StreamSettings(config.sample_rate_hz, config.n_fft, config.hop_length, hops_per_call)


def state_shapes(config) -> dict[str, tuple[str | int, ...]]:
    """Every state's shape, ``"batch"`` for the batch axis (its dtype is float32, its initial value zeros)."""
    D, L, K, H = config.n_fft - config.hop_length, config.num_blocks, config.n_bands, config.lstm_hidden
    return {
        "state_stft": ("batch", D),
        "state_h": (L, "batch", K, H),
        "state_c": (L, "batch", K, H),
        "state_ola": ("batch", D),
    }


STATE_DOCS = {
    "state_stft": "the last n_fft - hop input samples: the start of the next frame",
    "state_h": "hidden state of every block's forward time LSTM",
    "state_c": "cell state of every block's forward time LSTM",
    "state_ola": "overlap-add tail: partial sums of the next n_fft - hop output samples",
}


def zero_states(shapes: Mapping[str, tuple], batch: int) -> dict[str, np.ndarray]:
    """Initial states: zeros of each shape with its ``"batch"`` axis set to ``batch``."""
    return {
        name: np.zeros([batch if d == "batch" else int(d) for d in shape], dtype=np.float32)
        for name, shape in shapes.items()
    }


Step = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # inputs by name -> outputs by name


def stream_signal(
    step: Step, shapes: Mapping[str, tuple], wav: np.ndarray, hop: int, delay: int, hops_per_call: int
) -> np.ndarray:
    """Stream ``wav`` (B, S) through ``step``, ``hops_per_call`` hops per call from zero states, then
    ``delay`` samples of zeros to flush; returns (B, S) aligned with the input (the first ``delay``
    output samples, which belong to the zeros before the signal, dropped)."""
    B, S = wav.shape
    total = -(-(S + delay) // hop) * hop
    x = np.zeros((B, total), dtype=np.float32)
    x[:, :S] = wav
    states = zero_states(shapes, B)
    out, call = [], hops_per_call * hop
    for start in range(0, total, call):
        result = step({"mixture": x[:, start : start + call], **states})
        out.append(result["target"])
        states = {name: result[NEXT + name] for name in shapes}
    return np.concatenate(out, axis=1)[:, delay : delay + S]


def session_step(session) -> tuple[Step, dict[str, tuple]]:
    """An onnxruntime session of a stream export as a :data:`Step`, with its declared state shapes."""
    shapes = {i.name: tuple("batch" if isinstance(d, str) else d for d in i.shape) for i in session.get_inputs()}
    del shapes["mixture"]
    outputs = [o.name for o in session.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, session.run(outputs, inputs)))

    return run, shapes


def session_runner(session, stream: StreamSettings | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Waveform (B, S) -> (B, S) by an onnxruntime session of an export, the way it runs: one call for a
    waveform export (``stream`` None); for a stream export, ``stream.hops_per_call`` hops per call
    from zero states, flushed and aligned with the input (:func:`stream_signal`)."""
    if stream is None:
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]
    step, shapes = session_step(session)
    return lambda x: stream_signal(
        step, shapes, np.ascontiguousarray(x, np.float32), stream.hop_length, stream.delay_samples, stream.hops_per_call
    )


def hops_per_call(call_seconds: float, sample_rate_hz: int, hop_length: int, what: str) -> int:
    """The whole number of hops in ``call_seconds`` of audio; :class:`InputError` (exit 2) naming ``what`` if not."""
    from s2g_deploy.errors import InputError

    exact = call_seconds * sample_rate_hz / hop_length
    hops = round(exact)
    if hops < 1 or abs(exact - hops) > 1e-6:
        hop_ms = 1000 * hop_length / sample_rate_hz
        raise InputError(
            f"{what}: a stream call of {1000 * call_seconds:g} ms is not a whole number of this model's "
            f"{hop_ms:g} ms hops; set it to a multiple of {hop_ms:g} ms"
        )
    return hops


def check_chunk(chunk, batch: int, hop: int) -> np.ndarray:
    """``chunk`` as the (batch, k hop) float32 array one call takes; :class:`InputError` naming what is wrong."""
    from s2g_deploy.errors import InputError

    x = np.asarray(chunk)
    if x.dtype != np.float32:
        raise InputError(f"mixture: a stream call takes float32 samples, got {x.dtype}")
    if x.ndim != 2 or x.shape[0] != batch or x.shape[1] < hop or x.shape[1] % hop:
        raise InputError(
            f"mixture: a stream call takes (batch {batch}, k x {hop}) samples for a whole k >= 1, got {list(x.shape)}"
        )
    return np.ascontiguousarray(x)


def check_states(states: Mapping[str, np.ndarray], shapes: Mapping[str, tuple], batch: int) -> dict[str, np.ndarray]:
    """Every state of ``shapes`` present, float32 and of its declared shape at ``batch``; :class:`InputError`
    naming the first state that is not (feeding it would fail in onnxruntime, or worse, run on garbage)."""
    from s2g_deploy.errors import InputError

    unknown = sorted(set(states) - set(shapes))
    if unknown:
        raise InputError(f"unknown state(s) {', '.join(unknown)}; this stream has {', '.join(shapes)}")
    out = {}
    for name, shape in shapes.items():
        want = [batch if d == "batch" else int(d) for d in shape]
        if name not in states:
            raise InputError(f"state {name}: missing (shape {want}, float32; zeros to start a stream)")
        value = np.asarray(states[name])
        if value.dtype != np.float32 or list(value.shape) != want:
            raise InputError(
                f"state {name}: expected float32 of shape {want}, got {value.dtype} of shape {list(value.shape)}"
            )
        out[name] = np.ascontiguousarray(value)
    return out


class Streamer:
    """A stream export run call by call with its states kept between calls: what an application does.

    ``process(chunk)`` takes (batch, k hop) float32 samples, any whole k, and returns the same shape of
    target samples, delayed by :attr:`delay_samples`. ``states`` / ``set_states`` read and replace the
    states (validated: a wrong shape or dtype is an :class:`InputError`, never a silent run);
    ``reset()`` starts a new stream from zeros.
    """

    def __init__(self, session, batch: int = 1):
        self.session, self.batch = session, batch
        self._step, self.shapes = session_step(session)
        stream = _stream_metadata(session)
        self.hop_length = int(stream["hop_length"])
        self.delay_samples = int(stream["delay_samples"])
        self.reset()

    def reset(self) -> None:
        self._states = zero_states(self.shapes, self.batch)

    @property
    def states(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._states.items()}

    def set_states(self, states: Mapping[str, np.ndarray]) -> None:
        self._states = check_states(states, self.shapes, self.batch)

    def process(self, chunk) -> np.ndarray:
        x = check_chunk(chunk, self.batch, self.hop_length)
        out = self._step({"mixture": x, **self._states})
        self._states = {name: out[NEXT + name] for name in self.shapes}
        return out["target"]


def _stream_metadata(session) -> dict:
    import json

    from s2g_deploy.errors import InputError

    props = session.get_modelmeta().custom_metadata_map
    if "s2g.stream" not in props:
        raise InputError("not a stream export (no s2g.stream metadata); export a causal supernet with --io stream")
    return json.loads(props["s2g.stream"])
