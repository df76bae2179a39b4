"""s2g separate: chunked overlap-add, per-channel stereo, resampling, and the file-level contract."""

import itertools
import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
from conftest import make_supernet
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError
from s2g_deploy.export import parity
from s2g_deploy.export.parity import synthetic_music
from s2g_deploy.separate import ArraySource, ResampledSource, Resampler, chunk_plan, overlap_add

runner = CliRunner()
SR = 16000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = make_supernet("tiny")
    root = tmp_path_factory.mktemp("sep")
    save_checkpoint(root / "tiny.safetensors", model, CheckpointMeta(model.config, model.space))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parity, "PARITY_SECONDS", (0.2, 0.45, 1.1))  # tiny model, hop 16: keep parity short
        return api.export(root / "tiny.safetensors", subnet="1x4", out=root / "export").out


def _run_whole(model_dir, x: np.ndarray) -> np.ndarray:
    """The model on the whole (frames, channels) signal at once, channels as the batch."""
    session = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"mixture": np.ascontiguousarray(x.T)})[0].T


def _stereo(frames: int, sr: int = SR) -> np.ndarray:
    return 0.8 * np.stack([synthetic_music(frames, sr, 1), synthetic_music(frames, sr, 2)], axis=1)


# --- chunking ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "chunk", "overlap"), [(1, 10, 2), (10, 10, 5), (11, 10, 5), (1000, 64, 16), (999, 100, 0)]
)
def test_chunk_plan_covers_the_signal(frames, chunk, overlap):
    plan = chunk_plan(frames, chunk, overlap)
    assert plan[0][0] == 0 and plan[-1][1] == frames
    assert all(e - s <= chunk for s, e in plan)
    for (s0, e0), (s1, _) in itertools.pairwise(plan):
        assert s1 == s0 + chunk - overlap and e0 == s1 + overlap
    if len(plan) > 1:
        assert plan[-1][1] - plan[-1][0] > overlap


@pytest.mark.parametrize(("frames", "chunk", "overlap"), [(5, 8, 2), (1000, 64, 16), (1001, 64, 32), (777, 50, 0)])
def test_overlap_add_of_the_identity_is_the_identity(frames, chunk, overlap):
    x = np.random.default_rng(frames).uniform(-1, 1, (frames, 2)).astype(np.float32)
    got = []
    overlap_add(ArraySource(x, SR), lambda c: c, chunk, overlap, lambda start, t, m: got.append((start, t, m)))
    assert [g[0] for g in got] == list(np.cumsum([0] + [len(g[1]) for g in got[:-1]]))
    target = np.concatenate([g[1] for g in got])
    assert np.abs(target - x).max() <= 1e-6  # the cross-fade ramps sum to one
    assert np.array_equal(np.concatenate([g[2] for g in got]), x)


def test_memory_stays_flat_reads_are_bounded():
    sizes = []

    class Recording(ArraySource):
        def read(self, a, b):
            sizes.append(b - a)
            return super().read(a, b)

    source = Recording(np.zeros((100_000, 1), np.float32), SR)
    n = overlap_add(source, lambda c: c, 1000, 100, lambda *args: None)
    assert n == math.ceil((100_000 - 1000) / 900) + 1 and max(sizes) <= 1000


def test_bad_chunking_is_refused():
    with pytest.raises(InputError):
        overlap_add(ArraySource(np.zeros((10, 1)), SR), lambda c: c, 10, 6, lambda *a: None)


# --- resampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate_in", "rate_out"), [(44100, 16000), (16000, 44100), (48000, 16000), (22050, 16000)])
def test_resampler_keeps_a_sine_and_rejects_aliases(rate_in, rate_out):
    n = rate_in
    t = np.arange(n) / rate_in
    source = ResampledSource(ArraySource(np.sin(2 * np.pi * 1000 * t + 0.3)[:, None], rate_in), rate_out)
    assert source.frames == math.ceil(n * rate_out / rate_in)
    y = source.read(0, source.frames)[:, 0]
    ref = np.sin(2 * np.pi * 1000 * np.arange(source.frames) / rate_out + 0.3)
    inner = slice(rate_out // 10, -rate_out // 10)  # edges see the zeros beyond the signal
    assert np.abs(y[inner] - ref[inner]).max() <= 1e-4
    pieces = np.concatenate([source.read(a, min(a + 997, source.frames)) for a in range(0, source.frames, 997)])
    assert np.array_equal(pieces[:, 0], y)  # a signal resampled in pieces equals it resampled whole
    if rate_out < rate_in:  # a tone above the new Nyquist frequency must vanish, not fold back
        high = 0.47 * rate_in
        hi = ResampledSource(ArraySource(np.sin(2 * np.pi * high * t)[:, None], rate_in), rate_out)
        assert np.abs(hi.read(0, hi.frames)[inner]).max() <= 1e-3


def test_resampler_ratio_is_reduced():
    r = Resampler(44100, 16000)
    assert (r.up, r.down) == (160, 441)


# --- the command ---------------------------------------------------------------------------------


def test_separate_a_short_mono_file_equals_one_model_run(model_dir, tmp_path):
    x = _stereo(SR * 2 + 7)[:, :1]
    sf.write(tmp_path / "m.wav", x, SR, subtype="FLOAT")
    result = api.separate(model_dir, tmp_path / "m.wav", tmp_path / "out", chunk_seconds=5)
    target, sr = sf.read(result.target, dtype="float32", always_2d=True)
    residual, _ = sf.read(result.residual, dtype="float32", always_2d=True)
    assert sr == SR and target.shape == residual.shape == x.shape
    assert np.abs(target - _run_whole(model_dir, x)).max() <= 1e-6
    assert np.abs(target + residual - x).max() <= 1e-6
    assert result.chunks == 1 and not result.resampled


def test_stereo_is_separated_per_channel_in_chunks(model_dir, tmp_path):
    x = _stereo(SR * 5 + 123)
    sf.write(tmp_path / "s.wav", x, SR, subtype="FLOAT")
    sf.write(tmp_path / "swapped.wav", x[:, ::-1], SR, subtype="FLOAT")
    a = api.separate(model_dir, tmp_path / "s.wav", tmp_path / "out", chunk_seconds=2, overlap_seconds=0.5)
    b = api.separate(model_dir, tmp_path / "swapped.wav", tmp_path / "out", chunk_seconds=2, overlap_seconds=0.5)
    ta, _ = sf.read(a.target, dtype="float32")
    tb, _ = sf.read(b.target, dtype="float32")
    assert a.chunks == len(chunk_plan(len(x), 2 * SR, SR // 2)) == 4 and ta.shape == x.shape
    assert np.abs(ta - tb[:, ::-1]).max() <= 1e-6  # channels do not mix
    # the first two chunks by hand: chunk 0 alone, the linear cross-fade, chunk 1 alone
    chunk, fade = 2 * SR, SR // 2
    hop = chunk - fade
    y0, y1 = _run_whole(model_dir, x[:chunk]), _run_whole(model_dir, x[hop : hop + chunk])
    ramp = ((np.arange(fade) + 0.5) / fade)[:, None]
    expected = np.concatenate([y0[:hop], y0[hop:] * (1 - ramp) + y1[:fade] * ramp, y1[fade:hop]])
    assert np.abs(ta[: 2 * hop] - expected).max() <= 1e-6


def test_other_sample_rates_are_resampled_and_back(model_dir, tmp_path):
    x = _stereo(22050 * 3 + 11, 22050)
    sf.write(tmp_path / "r.wav", x, 22050, subtype="PCM_16")
    result = runner.invoke(
        app, ["separate", str(model_dir), str(tmp_path / "r.wav"), "--out", str(tmp_path / "o"), "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["resampled"] and doc["sample_rate_hz"] == 22050 and doc["model_sample_rate_hz"] == SR
    target, sr = sf.read(doc["target"], dtype="float32")
    residual, _ = sf.read(doc["residual"], dtype="float32")
    mixture, _ = sf.read(tmp_path / "r.wav", dtype="float32")
    assert sr == 22050 and target.shape == residual.shape == x.shape
    assert np.abs(target + residual - mixture).max() <= 1e-6
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["r_residual.wav", "r_target.wav"]  # no scratch left


def test_empty_file_gives_empty_outputs(model_dir, tmp_path):
    sf.write(tmp_path / "e.wav", np.zeros((0, 2), np.float32), SR)
    result = api.separate(model_dir, tmp_path / "e.wav", tmp_path / "o")
    assert sf.info(result.target).frames == 0 and sf.info(result.target).channels == 2


def _one_line_error(args, code=2, match=""):
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert match in result.stderr and len(result.stderr.strip().splitlines()) == 1
    return result


def test_unreadable_and_missing_inputs_exit_2(model_dir, tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wav file")
    out = str(tmp_path / "o")
    _one_line_error(["separate", str(model_dir), str(tmp_path / "junk.wav"), "--out", out], match="junk.wav")
    _one_line_error(["separate", str(model_dir), str(tmp_path / "none.wav"), "--out", out], match="none.wav")
    _one_line_error(["separate", str(tmp_path), str(tmp_path / "junk.wav"), "--out", out], match="model.onnx")
    assert not (tmp_path / "o").exists()


def test_models_that_are_not_waveform_exports_are_refused(model_dir, tmp_path):
    model = onnx.load(str(model_dir / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    io = json.loads(props["s2g.io"])
    io["io"] = "spectrogram"
    for p in model.metadata_props:
        if p.key == "s2g.io":
            p.value = json.dumps(io)
    onnx.save(model, str(tmp_path / "spec.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "plain.onnx"))
    sf.write(tmp_path / "a.wav", np.zeros((100, 1), np.float32), SR)
    args = [str(tmp_path / "a.wav"), "--out", str(tmp_path / "o")]
    _one_line_error(["separate", str(tmp_path / "spec.onnx"), *args], match="waveform export")
    _one_line_error(["separate", str(tmp_path / "plain.onnx"), *args], match="not an s2g export")


def test_existing_outputs_need_overwrite(model_dir, tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros((100, 1), np.float32), SR)
    args = ["separate", str(model_dir), str(tmp_path / "a.wav"), "--out", str(tmp_path / "o")]
    assert runner.invoke(app, args).exit_code == 0
    before = (tmp_path / "o" / "a_target.wav").read_bytes()
    _one_line_error(args, match="--overwrite")
    assert (tmp_path / "o" / "a_target.wav").read_bytes() == before
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    _one_line_error([*args, "--overwrite", "--overlap-seconds", "9"], match="--overlap-seconds")
