"""s2g separate on a stream export: streamed call by call with its states carried, flushed and aligned,
so the output equals the causal model on the whole signal (mono, stereo, other sample rates)."""

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy import separate as separate_module
from s2g_deploy.checkpoint import load_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.export.parity import synthetic_music
from s2g_deploy.runtime.stream import session_step, stream_signal
from s2g_deploy.separate import (
    ArraySource,
    ResampledSource,
    StreamSpec,
    read_model_info,
    stream_add,
)

runner = CliRunner()
SR = 16000


@pytest.fixture(scope="module")
def stream_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sep-stream")
    api.init("tiny-causal", root / "tc.safetensors")
    return api.export(
        root / "tc.safetensors", subnet="2x8", io="stream", out=root / "export", parity_seconds=(0.2, 0.45, 1.1)
    ).out


@pytest.fixture(scope="module")
def step(stream_dir):
    session = ort.InferenceSession(str(stream_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session_step(session)  # (step, state shapes)


@pytest.fixture(scope="module")
def causal(stream_dir):
    return load_checkpoint(stream_dir / "dense.safetensors").model.eval()


def _causal_model(model, x: np.ndarray) -> np.ndarray:
    """The dense causal torch model on the whole (frames, channels) signal, channels as the batch."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x.T, np.float32))).numpy().T


def _music(frames: int, channels: int, sr: int = SR) -> np.ndarray:
    return (0.8 * np.stack([synthetic_music(frames, sr, c + 1) for c in range(channels)], axis=1)).astype(np.float32)


def _cli(*args):
    return runner.invoke(app, ["separate", *(str(a) for a in args)])


def _separate_json(stream_dir, audio, out, *options):
    result = _cli(stream_dir, audio, "--out", out, "--json", "--float32", *options)
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)
    target, sr = sf.read(doc["target"], dtype="float32", always_2d=True)
    residual, _ = sf.read(doc["residual"], dtype="float32", always_2d=True)
    return doc, target, residual, sr


def test_a_stream_export_is_read_as_a_stream(stream_dir):
    info = read_model_info(stream_dir / "model.onnx")
    props = {p.key: p.value for p in onnx.load(str(stream_dir / "model.onnx")).metadata_props}
    meta = json.loads(props["s2g.stream"])
    assert json.loads(props["s2g.io"])["io"] == "stream"
    assert info.stream == StreamSpec(meta["hop_length"], meta["delay_samples"], meta["hops_per_call"])
    assert info.stream.delay_samples == meta["n_fft"] - meta["hop_length"] > 0


@pytest.mark.parametrize("block", [100, 8192])
@pytest.mark.parametrize(("frames", "hops_per_call"), [(1, 1), (31, 1), (32, 3), (1007, 1), (1007, 4), (2000, 7)])
def test_stream_add_equals_stream_signal_and_reads_bounded_blocks(
    step, stream_dir, monkeypatch, frames, hops_per_call, block
):
    monkeypatch.setattr(separate_module, "_STREAM_BLOCK", block)
    run, shapes = step
    spec = read_model_info(stream_dir / "model.onnx").stream
    spec = StreamSpec(spec.hop_length, spec.delay_samples, hops_per_call)
    x = _music(frames, 2)
    sizes, got = [], []

    class Recording(ArraySource):
        def read(self, a, b):
            sizes.append(b - a)
            return super().read(a, b)

    calls = stream_add(Recording(x, SR), run, shapes, spec, lambda start, t, m: got.append((start, t, m)))
    total = math.ceil((frames + spec.delay_samples) / spec.hop_length) * spec.hop_length
    span = spec.call_samples * max(1, block // spec.call_samples)
    assert calls == math.ceil(total / spec.call_samples)
    assert len(sizes) == math.ceil(total / span) and max(sizes) <= span  # bounded reads, each frame once
    assert [g[0] for g in got] == list(np.cumsum([0] + [len(g[1]) for g in got[:-1]]))
    target = np.concatenate([g[1] for g in got])
    assert np.array_equal(np.concatenate([g[2] for g in got]), x)  # each block's mixture, aligned
    expected = stream_signal(run, shapes, x.T, spec.hop_length, spec.delay_samples, hops_per_call).T
    assert target.shape == x.shape and np.abs(target - expected).max() <= 1e-5


def test_mono_streams_and_equals_the_causal_model(stream_dir, causal, step, tmp_path):
    x = _music(SR + 123, 1)
    sf.write(tmp_path / "m.wav", x, SR, subtype="FLOAT")
    doc, target, residual, sr = _separate_json(stream_dir, tmp_path / "m.wav", tmp_path / "o")
    assert sr == SR and target.shape == residual.shape == x.shape
    assert np.abs(target - _causal_model(causal, x)).max() <= 1e-4
    assert np.abs(target).max() > 1e-3 and np.abs(target - x).max() > 1e-3  # neither zeros nor the identity
    run, shapes = step
    spec = read_model_info(stream_dir / "model.onnx").stream
    expected = stream_signal(run, shapes, x.T, spec.hop_length, spec.delay_samples, spec.hops_per_call).T
    assert np.abs(target - expected).max() <= 1e-5
    assert np.abs(target + residual - x).max() <= 1e-6
    # the export's own call, as the device runs it
    total = math.ceil((len(x) + spec.delay_samples) / spec.hop_length) * spec.hop_length
    assert doc["mode"] == "stream" and doc["calls"] == math.ceil(total / spec.call_samples)
    assert (doc["hop_length"], doc["delay_samples"], doc["hops_per_call"]) == (
        spec.hop_length,
        spec.delay_samples,
        spec.hops_per_call,
    )
    assert not {"chunks", "chunk_seconds", "overlap_seconds"} & doc.keys()


def test_stereo_streams_each_channel_and_hops_per_call_changes_only_the_calls(stream_dir, causal, tmp_path):
    x = _music(2 * SR + 45, 2)
    sf.write(tmp_path / "s.wav", x, SR, subtype="FLOAT")
    doc, target, _, _ = _separate_json(stream_dir, tmp_path / "s.wav", tmp_path / "o", "--hops-per-call", "1")
    assert target.shape == x.shape
    assert np.abs(target - _causal_model(causal, x)).max() <= 1e-4
    assert np.abs(target[:, 0] - _causal_model(causal, x[:, :1])[:, 0]).max() <= 1e-4  # channels do not mix
    doc5, target5, _, _ = _separate_json(stream_dir, tmp_path / "s.wav", tmp_path / "o5", "--hops-per-call", "5")
    assert doc5["hops_per_call"] == 5 and doc5["call_samples"] == 5 * doc["hop_length"]
    assert doc5["calls"] == math.ceil(doc["calls"] / 5)
    assert np.abs(target5 - target).max() <= 1e-5


def test_other_sample_rates_stream_at_the_model_rate_and_back(stream_dir, causal, tmp_path):
    rate = 22050
    x = _music(rate + 311, 2, rate)
    sf.write(tmp_path / "r.wav", x, rate, subtype="FLOAT")
    doc, target, residual, sr = _separate_json(stream_dir, tmp_path / "r.wav", tmp_path / "o")
    assert doc["resampled"] and doc["mode"] == "stream" and sr == rate
    assert target.shape == residual.shape == x.shape and np.isfinite(target).all()
    assert np.abs(target + residual - x).max() <= 1e-6
    down = ResampledSource(ArraySource(x, rate), SR)
    y = _causal_model(causal, down.read(0, down.frames))  # resample, the causal model, resample back
    expected = ResampledSource(ArraySource(y, SR), rate, frames=len(x)).read(0, len(x))
    assert np.abs(target - expected).max() <= 1e-4
    assert np.abs(target).max() > 1e-3  # a real signal, not zeros that match trivially


def test_console_line_says_it_streamed(stream_dir, tmp_path):
    sf.write(tmp_path / "a.wav", _music(SR // 4, 1), SR)
    result = _cli(stream_dir, tmp_path / "a.wav", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{tmp_path / 'a.wav'} -> ") and "streamed:" in result.stdout


def test_an_empty_file_gives_empty_outputs(stream_dir, tmp_path):
    sf.write(tmp_path / "e.wav", np.zeros((0, 2), np.float32), SR)
    result = api.separate_files(stream_dir, [tmp_path / "e.wav"], tmp_path / "o")[0]
    assert result.calls == 0 and sf.info(result.target).frames == 0 and sf.info(result.target).channels == 2


@pytest.mark.parametrize(
    ("options", "names"),
    [
        (["--chunk-seconds", "2"], ["--chunk-seconds"]),
        (["--overlap-seconds", "0.5"], ["--overlap-seconds"]),
        (["--chunk-seconds", "2", "--overlap-seconds", "0.5"], ["--chunk-seconds", "--overlap-seconds"]),
        (["--hops-per-call", "0"], ["--hops-per-call"]),
    ],
)
def test_chunk_options_on_a_stream_export_exit_2(stream_dir, tmp_path, options, names):
    sf.write(tmp_path / "a.wav", _music(SR // 4, 1), SR)
    result = _cli(stream_dir, tmp_path / "a.wav", "--out", tmp_path / "o", *options)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output, result.stderr
    assert all(name in result.stderr for name in names), result.stderr
    if names[0] != "--hops-per-call":
        assert "does not apply" in result.stderr or "do not apply" in result.stderr
    assert not (tmp_path / "o").exists()
