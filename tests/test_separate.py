"""s2g separate: chunked overlap-add, per-channel stereo, resampling, and the file-level contract
(several inputs, demucs-style names, output formats, bad input and OS errors, what the user sees)."""

import io
import itertools
import json
import math
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import soundfile as sf
from conftest import make_supernet
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy import separate as separate_module
from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError
from s2g_deploy.export import parity
from s2g_deploy.export.parity import synthetic_music
from s2g_deploy.separate import (
    ArraySource,
    ResampledSource,
    Resampler,
    chunk_plan,
    output_names,
    overlap_add,
    read_model_info,
)

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


def _cli(*args):
    return runner.invoke(app, ["separate", *map(str, args)])


def _tone(path, frames=SR // 2, sr=SR, channels=1, subtype="FLOAT", amplitude=0.5):
    sf.write(path, amplitude * _stereo(frames, sr)[:, :channels], sr, subtype=subtype)
    return path


def _files(root):
    """Every file and directory under ``root`` (relative), hidden ones included."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


def test_separate_a_short_mono_file_equals_one_model_run(model_dir, tmp_path):
    x = _stereo(SR * 2 + 7)[:, :1]
    sf.write(tmp_path / "m.wav", x, SR, subtype="FLOAT")
    result = api.separate(model_dir, tmp_path / "m.wav", tmp_path / "out", chunk_seconds=5)
    assert (result.target, result.residual) == (tmp_path / "out/m/target.wav", tmp_path / "out/m/residual.wav")
    target, sr = sf.read(result.target, dtype="float32", always_2d=True)
    residual, _ = sf.read(result.residual, dtype="float32", always_2d=True)
    assert sr == SR and target.shape == residual.shape == x.shape
    assert np.abs(target - _run_whole(model_dir, x)).max() <= 1e-6
    assert np.abs(target + residual - x).max() <= 1e-6
    assert result.chunks == 1 and not result.resampled
    assert sf.info(result.target).subtype == "FLOAT"  # the library's default: float, lossless


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
    result = _cli(model_dir, tmp_path / "r.wav", "--out", tmp_path / "o", "--json", "--float32")
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)
    assert doc["resampled"] and doc["sample_rate_hz"] == 22050 and doc["model_sample_rate_hz"] == SR
    target, sr = sf.read(doc["target"], dtype="float32")
    residual, _ = sf.read(doc["residual"], dtype="float32")
    mixture, _ = sf.read(tmp_path / "r.wav", dtype="float32")
    assert sr == 22050 and target.shape == residual.shape == x.shape
    assert np.abs(target + residual - mixture).max() <= 1e-6
    assert _files(tmp_path / "o") == ["r", "r/residual.wav", "r/target.wav"]  # no scratch or staging left


def test_empty_file_gives_empty_outputs(model_dir, tmp_path):
    sf.write(tmp_path / "e.wav", np.zeros((0, 2), np.float32), SR)
    result = api.separate(model_dir, tmp_path / "e.wav", tmp_path / "o")
    assert sf.info(result.target).frames == 0 and sf.info(result.target).channels == 2


def _one_line_error(args, code=2, match=""):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert match in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    return result


def test_unreadable_and_missing_inputs_exit_2(model_dir, tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF not really a wav file")
    out = str(tmp_path / "o")
    _one_line_error(["separate", str(model_dir), str(tmp_path / "junk.wav"), "--out", out], match="junk.wav")
    missing = _one_line_error(["separate", str(model_dir), str(tmp_path / "none.wav"), "--out", out], match="none.wav")
    assert "no such file" in missing.stderr and "System error" not in missing.stderr
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
    before = (tmp_path / "o" / "a" / "target.wav").read_bytes()
    _one_line_error(args, match="--overwrite")
    assert (tmp_path / "o" / "a" / "target.wav").read_bytes() == before
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    _one_line_error([*args, "--overwrite", "--overlap-seconds", "9"], match="--overlap-seconds")
    _one_line_error([*args, "--overwrite", "--chunk-seconds", "0"], match="--chunk-seconds")


# --- several inputs, naming, formats --------------------------------------------------------------


def test_several_inputs_in_one_call_and_one_json_document(model_dir, tmp_path):
    a = _tone(tmp_path / "a.wav", channels=2)
    b = _tone(tmp_path / "b.flac", frames=SR // 3, subtype="PCM_16")
    result = _cli(model_dir, a, b, "--out", tmp_path / "sep")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{a} -> {tmp_path}/sep/a/target.wav, {tmp_path}/sep/a/residual.wav",
        f"{b} -> {tmp_path}/sep/b/target.wav, {tmp_path}/sep/b/residual.wav",
    ]
    assert _files(tmp_path / "sep") == ["a", "a/residual.wav", "a/target.wav", "b", "b/residual.wav", "b/target.wav"]
    assert (
        sf.info(tmp_path / "sep/a/target.wav").channels == 2
        and sf.info(tmp_path / "sep/b/target.wav").frames == SR // 3
    )
    result = _cli(model_dir, a, b, "--out", tmp_path / "sep2", "--json")
    assert result.exit_code == 0, result.output
    docs = json.loads(result.stdout)  # one document for the whole call
    assert [d["input"] for d in docs] == [str(a), str(b)]
    keys = {"input", "outputs", "sample_rate_hz", "model_sample_rate_hz", "frames", "chunks", "wall_s"}
    assert all(keys | {"real_time_factor", "clipped_samples"} <= d.keys() for d in docs)
    assert docs[1]["outputs"] == {
        "target": f"{tmp_path}/sep2/b/target.wav",
        "residual": f"{tmp_path}/sep2/b/residual.wav",
    }
    assert docs[0]["frames"] == SR // 2 and docs[0]["chunks"] == 1 and docs[0]["clipped_samples"] == 0


def _with_props(model_dir, dest, extra: dict):
    model = onnx.load(str(model_dir / "model.onnx"))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, **extra})
    onnx.save(model, str(dest))
    return dest


def test_outputs_are_named_by_the_recorded_source(model_dir, tmp_path):
    audio = _tone(tmp_path / "song.wav")
    # the export's manifest records the checkpoint's training target
    export = tmp_path / "export"
    shutil.copytree(model_dir, export)
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["training"] = {"target": "vocals", "steps": 3}
    (export / "manifest.json").write_text(json.dumps(manifest))
    result = _cli(export, audio, "--out", tmp_path / "o1")
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "o1") == ["song", "song/no_vocals.wav", "song/vocals.wav"]
    # the ONNX metadata records it (and wins); a lone model.onnx needs nothing else
    lone = tmp_path / "lone"
    lone.mkdir()
    _with_props(model_dir, lone / "model.onnx", {"s2g.training": json.dumps({"target": "drums"})})
    assert _cli(lone, audio, "--out", tmp_path / "o2", "--flac").exit_code == 0
    assert _files(tmp_path / "o2") == ["song", "song/drums.flac", "song/no_drums.flac"]
    # nothing records it: no guessed name
    assert read_model_info(model_dir / "model.onnx").target_source is None
    assert output_names(None) == ("target", "residual") and output_names("vocals") == ("vocals", "no_vocals")
    # a manifest that is not this model's (its hash differs) is ignored
    other = _with_props(model_dir, export / "model.onnx", {"s2g.note": "changed"})
    assert read_model_info(other).target_source is None
    # a recorded name that is no plain file-name word is ignored
    odd = _with_props(model_dir, tmp_path / "odd.onnx", {"s2g.target": "../x"})
    assert read_model_info(odd).target_source is None


def test_inputs_with_the_same_stem_are_refused(model_dir, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = _tone(tmp_path / "a/song.wav"), _tone(tmp_path / "b/song.flac", subtype="PCM_16")
    error = _one_line_error(["separate", model_dir, first, second, "--out", tmp_path / "o"], match=str(first))
    assert str(second) in error.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("options", "name", "container", "subtype"),
    [
        ([], "target.wav", "WAV", "PCM_16"),
        (["--int24"], "target.wav", "WAV", "PCM_24"),
        (["--float32"], "target.wav", "WAV", "FLOAT"),
        (["--flac"], "target.flac", "FLAC", "PCM_16"),
        (["--flac", "--int24"], "residual.flac", "FLAC", "PCM_24"),
    ],
)
def test_output_formats(model_dir, tmp_path, options, name, container, subtype):
    audio = _tone(tmp_path / "a.wav", channels=2)
    result = _cli(model_dir, audio, "--out", tmp_path / "o", *options)
    assert result.exit_code == 0, result.output
    info = sf.info(tmp_path / "o" / "a" / name)
    assert (info.format, info.subtype, info.samplerate, info.channels) == (container, subtype, SR, 2)
    samples, _ = sf.read(tmp_path / "o" / "a" / name, dtype="float32")
    assert samples.shape == (SR // 2, 2) and np.isfinite(samples).all()


@pytest.mark.parametrize(
    ("options", "names"),
    [(["--int24", "--float32"], ("--int24", "--float32")), (["--float32", "--flac"], ("--float32", "--flac"))],
)
def test_conflicting_format_options_are_refused(model_dir, tmp_path, options, names):
    audio = _tone(tmp_path / "a.wav")
    error = _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "o", *options])
    assert all(n in error.stderr for n in names) and not (tmp_path / "o").exists()


def test_16_bit_output_clips_counts_and_warns(model_dir, tmp_path):
    loud = np.sign(_stereo(SR, SR)[:, :1]).astype(np.float32)  # full-scale square-ish wave
    sf.write(tmp_path / "loud.wav", loud, SR, subtype="FLOAT")
    assert _cli(model_dir, tmp_path / "loud.wav", "--out", tmp_path / "f", "--float32").exit_code == 0
    floats = [sf.read(tmp_path / "f/loud" / n, dtype="float32")[0] for n in ("target.wav", "residual.wav")]
    expected = sum(int(np.count_nonzero(np.abs(x) > 1)) for x in floats)
    assert expected > 0  # the residual of a full-scale input exceeds full scale somewhere
    result = _cli(model_dir, tmp_path / "loud.wav", "--out", tmp_path / "i", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["clipped_samples"] == expected
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"warning: {tmp_path / 'loud.wav'}: {expected} samples clipped to [-1, 1] in the 16-bit output; "
        "pass --float32 for float WAV, which never clips"
    )
    for n, x in zip(("target.wav", "residual.wav"), floats, strict=True):
        y, _ = sf.read(tmp_path / "i/loud" / n, dtype="float32")
        assert np.abs(y).max() <= 1 and np.abs(y - np.clip(x, -1, 1)).max() <= 2 / 32767  # clipped, not wrapped


# --- bad input: exit 2, one line, nothing written -------------------------------------------------


def _nan_file(path, bad_frame, value=np.nan, frames=SR, sr=SR):
    x = 0.1 * _stereo(frames, sr)[:, :1]
    x[bad_frame] = value
    sf.write(path, x, sr, subtype="FLOAT")
    return path


def _fifo(path):
    os.mkfifo(path)
    return path


def _folder(path):
    path.mkdir()
    return path


def _junk(path):
    path.write_bytes(b"RIFF....WAVEjunk")
    return path


@pytest.mark.parametrize(
    ("make", "match", "checked_first"),
    [
        (lambda d: d / "none.wav", "none.wav: no such file", True),
        (lambda d: _folder(d / "folder.wav"), "folder.wav: not a regular file", True),
        (lambda d: _fifo(d / "pipe.wav"), "pipe.wav: not a regular file", True),
        (lambda d: _junk(d / "junk.wav"), "junk.wav: cannot read audio", True),
        (lambda d: d / ("x" * 300 + ".wav"), "File name too long", True),
        (lambda d: _nan_file(d / "nan.wav", 5), "nan.wav: contains non-finite samples (NaN or inf)", False),
        (
            lambda d: _nan_file(d / "inf.wav", SR - 3, np.inf),
            "inf.wav: contains non-finite samples (NaN or inf)",
            False,
        ),
        (
            lambda d: _nan_file(d / "late[1].wav", 3 * SR - 1, -np.inf, 3 * SR),
            "late[1].wav: contains non-finite",
            False,
        ),
        (lambda d: _nan_file(d / "r.wav", 44099, frames=44100, sr=44100), "r.wav: contains non-finite", False),
    ],
    ids=["missing", "directory", "fifo", "garbage", "name-too-long", "nan", "inf", "inf-in-a-later-chunk", "resampled"],
)
def test_bad_inputs_exit_2_and_write_nothing(model_dir, tmp_path, make, match, checked_first):
    (tmp_path / "in").mkdir()
    bad = make(tmp_path / "in")
    out = tmp_path / "o"
    chunked = ["--chunk-seconds", "1", "--overlap-seconds", "0.1"]
    _one_line_error(["separate", model_dir, bad, "--out", out, *chunked], match=match)
    assert not out.exists()
    if checked_first:  # checked before anything is written, even after a good input
        good = _tone(tmp_path / "good.wav")
        result = _one_line_error(["separate", model_dir, good, bad, "--out", out], match=match)
        assert not out.exists() and result.stdout == ""


def test_a_failing_input_keeps_the_finished_ones_and_leaves_no_partial_files(model_dir, tmp_path):
    good = _tone(tmp_path / "good.wav")
    bad = _nan_file(tmp_path / "bad.wav", 2 * SR + 10, frames=3 * SR)
    result = _one_line_error(
        ["separate", model_dir, good, bad, "--out", tmp_path / "o", "--chunk-seconds", "1", "--overlap-seconds", "0.2"],
        match="bad.wav",
    )
    assert result.stdout == f"{good} -> {tmp_path}/o/good/target.wav, {tmp_path}/o/good/residual.wav\n"
    assert _files(tmp_path / "o") == ["good", "good/residual.wav", "good/target.wav"]  # no bad/, no staging


@pytest.mark.parametrize("threads", ["-1", "0"])
def test_threads_must_be_at_least_one(model_dir, tmp_path, threads):
    audio = _tone(tmp_path / "a.wav")
    _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "o", "--threads", threads], match="--threads")
    assert not (tmp_path / "o").exists()
    assert _cli(model_dir, audio, "--out", tmp_path / "o", "--threads", "1").exit_code == 0


# --- operating-system errors while writing ---------------------------------------------------------


def test_an_output_name_too_long_exits_2(model_dir, tmp_path):
    audio = _tone(tmp_path / "a.wav")
    out = tmp_path / "o" / ("d" * 300)
    error = _one_line_error(["separate", model_dir, audio, "--out", out], match="File name too long")
    assert str(tmp_path / "o") in error.stderr and not (tmp_path / "o").exists()
    long_stem = _tone(tmp_path / ("s" * 250 + ".wav"))  # a long but legal name works: short staging names
    assert _cli(model_dir, long_stem, "--out", tmp_path / "o").exit_code == 0
    assert _files(tmp_path / "o" / long_stem.stem) == ["residual.wav", "target.wav"]


def test_a_file_where_an_output_directory_goes(model_dir, tmp_path):
    audio = _tone(tmp_path / "a.wav")
    (tmp_path / "f").write_text("x")
    _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "f"], match="is not a directory")
    _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "f/sub"], match=f"{tmp_path / 'f'} is not a")
    (tmp_path / "o").mkdir()
    (tmp_path / "o/a").write_text("x")  # where the outputs of a.wav would go
    _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "o"], match=f"{tmp_path / 'o/a'}: exists")
    assert _files(tmp_path / "o") == ["a"] and (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_directory_where_an_output_goes(model_dir, tmp_path, overwrite):
    audio = _tone(tmp_path / "a.wav")
    (tmp_path / "o/a/target.wav").mkdir(parents=True)
    error = _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "o", *overwrite], match="is a directory")
    assert f"{tmp_path}/o/a/target.wav" in error.stderr
    assert _files(tmp_path / "o") == ["a", "a/target.wav"]  # the directory untouched, nothing else written


@pytest.mark.parametrize(
    ("opener", "cause"),
    [
        (lambda path: open("/dev/full", "r+b"), "No space left on device"),  # noqa: SIM115
        (lambda path: (_ for _ in ()).throw(PermissionError(13, "Permission denied", str(path))), "Permission denied"),
    ],
    ids=["disk-full", "permission-denied"],
)
def test_os_errors_while_writing_name_the_file_and_leave_nothing(model_dir, tmp_path, monkeypatch, opener, cause):
    if not os.path.exists("/dev/full") and "space" in cause:
        pytest.skip("no /dev/full here")
    audio = _tone(tmp_path / "a.wav")
    monkeypatch.setattr(separate_module, "_open_output", opener)
    error = _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "o"])
    assert error.stderr.strip() == f"error: {tmp_path}/o/a/target.wav: {cause}"
    assert not (tmp_path / "o").exists()


# --- what the user sees ----------------------------------------------------------------------------


def test_brackets_in_names_are_shown_as_written(model_dir, tmp_path):
    audio = _tone(tmp_path / "song[live].wav")
    result = _cli(model_dir, audio, "--out", tmp_path / "o[1]")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{audio} -> {tmp_path}/o[1]/song[live]/target.wav, {tmp_path}/o[1]/song[live]/residual.wav\n"
    )
    _one_line_error(["separate", model_dir, audio, "--out", tmp_path / "o[1]"], match="song[live]/target.wav exists")
    _one_line_error(["separate", model_dir, tmp_path / "gone[x].wav", "--out", tmp_path / "p"], match="gone[x].wav")
    (tmp_path / "junk[bold].wav").write_bytes(b"not audio")
    _one_line_error(
        ["separate", model_dir, tmp_path / "junk[bold].wav", "--out", tmp_path / "p"], match="junk[bold].wav"
    )


def test_model_rate_note_once_per_run(model_dir, tmp_path):
    a = _tone(tmp_path / "a.wav", frames=44100 // 2, sr=44100)
    b = _tone(tmp_path / "b.wav", frames=44100 // 3, sr=44100)
    result = _cli(model_dir, a, b, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "note: model rate 16000 Hz (a 16 kHz model): content above 8000 Hz is not separated and is left in residual.wav"
    ]
    result = _cli(model_dir, _tone(tmp_path / "c.wav"), "--out", tmp_path / "p")  # at the model's rate: no note
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize("rate", [SR, 44100])
def test_progress_reports_frames_done_at_the_input_rate(model_dir, tmp_path, rate):
    audio = _tone(tmp_path / "a.wav", frames=3 * rate + 5, sr=rate)
    seen = []
    separate_module.separate(
        model_dir, audio, tmp_path / "o", chunk_seconds=1, overlap_seconds=0.25, on_progress=lambda *a: seen.append(a)
    )
    total = 3 * rate + 5
    assert seen[0] == (0, total) and seen[-1] == (total, total) and len(seen) > 3
    assert all(t == total for _, t in seen) and all(a <= b for (a, _), (b, _) in itertools.pairwise(seen))


def test_a_progress_bar_on_a_terminal(model_dir, tmp_path, monkeypatch):
    from rich.console import Console

    from s2g_deploy.cli import output

    screen = io.StringIO()
    monkeypatch.setattr(output, "stderr", Console(file=screen, force_terminal=True, width=120))
    audio = _tone(tmp_path / "bar.wav", frames=2 * 22050, sr=22050)
    result = _cli(model_dir, audio, "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    shown = screen.getvalue()
    assert "bar.wav (22050 -> 16000 Hz and back)" in shown and "2.0/2.0 s of audio" in shown
    assert result.stdout.startswith(f"{audio} -> ")  # results stay on stdout
