"""``s2g data render``: rendered multitracks in the MUSDB18 layout (FluidSynth + a small soundfont, tiny sizes)."""

import builtins
import hashlib
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from s2g_deploy.cli.app import app
from s2g_deploy.data import render as render_module
from s2g_deploy.data.render import RenderRequest, find_soundfont, gated_rms, render
from s2g_deploy.errors import InputError

runner = CliRunner()

SOUNDFONT = "TimGM6mb"
SOUNDFONT_PATH = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
STEMS = ("vocals", "bass", "drums", "other")
FILES = {f"{s}.wav" for s in (*STEMS, "mixture")}
LSB = 1 / 32768  # one step of a 16-bit file read back as float

pytestmark = pytest.mark.skipif(not SOUNDFONT_PATH.is_file(), reason="needs timgm6mb-soundfont")


def cli_args(out: Path, *extra: str, tracks: int = 2, seconds: float = 1.5, rate: int = 8000) -> list[str]:
    return [
        "data",
        "render",
        "--out",
        str(out),
        "--tracks",
        str(tracks),
        "--seconds",
        str(seconds),
        "--sample-rate",
        str(rate),
        "--soundfont",
        SOUNDFONT,
        *extra,
    ]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temp_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*s2g-*"))


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[RenderRequest, Path, dict]:
    """Three 2-s tracks at 16 kHz, rendered once through the library for the read-only checks."""
    request = RenderRequest(tmp_path_factory.mktemp("render") / "set", 3, 2.0, 16000, SOUNDFONT, seed=7)
    result = render(request)
    assert result.out == request.out and result.tracks == 3 and result.total_seconds == 6.0
    manifest = json.loads((request.out / "manifest.json").read_text())
    assert manifest == result.manifest
    return request, request.out, manifest


# --- determinism --------------------------------------------------------------------------------------


def test_same_arguments_give_byte_identical_files_whatever_jobs(tmp_path):
    first, again, parallel = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, jobs in [(first, "1"), (again, "1"), (parallel, "2")]:
        result = runner.invoke(app, cli_args(out, "--jobs", jobs))
        assert result.exit_code == 0, result.output
    a = tree(first)
    expected = {"manifest.json"} | {f"train-{i:05d}/{f}" for i in range(2) for f in FILES}
    assert set(a) == expected
    for other in (again, parallel):
        b = tree(other)
        assert set(b) == set(a)
        for name in a:
            assert a[name] == b[name], f"{other.name}/{name} differs"
    assert a["train-00000/mixture.wav"] != a["train-00001/mixture.wav"]  # the tracks are not one track twice


def test_split_and_seed_change_the_audio(tmp_path):
    def mixture(split: str, seed: int) -> np.ndarray:
        out = tmp_path / f"{split}-{seed}"
        render(RenderRequest(out, 1, 1.5, 8000, SOUNDFONT, seed=seed, split=split))
        (track,) = [p for p in out.iterdir() if p.is_dir()]
        assert track.name == f"{split}-00000"
        return sf.read(track / "mixture.wav", dtype="float64")[0]

    base = mixture("train", 0)
    assert np.abs(base).max() > 0.1
    for other in (mixture("test", 0), mixture("valid", 0), mixture("train", 1)):
        assert other.shape == base.shape
        assert not np.array_equal(other, base)
        assert np.abs(other - base).max() > 0.05  # a different song, not a rounding difference


# --- the files -----------------------------------------------------------------------------------------


def test_musdb18_layout(rendered):
    request, out, manifest = rendered
    names = [f"train-{i:05d}" for i in range(request.tracks)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "manifest.json"])
    assert [t["name"] for t in manifest["tracks"]] == names
    assert [t["index"] for t in manifest["tracks"]] == list(range(request.tracks))
    frames = round(request.seconds * request.sample_rate_hz)
    for name in names:
        assert {p.name for p in (out / name).iterdir()} == FILES
        for file in FILES:
            info = sf.info(out / name / file)
            assert info.format == "WAV" and info.subtype == "PCM_16", (name, file, info.subtype)
            assert info.channels == 1 and info.samplerate == request.sample_rate_hz
            assert info.frames == frames, (name, file, info.frames)


def quantization_error_range(tmp_path: Path) -> tuple[float, float]:
    """(lo, hi) of original - read-back for float -> PCM_16 in this libsndfile, in LSB.

    Round-to-nearest gives (-0.5, 0.5); libsndfile 1.2 truncates (floor of x * 32768), which gives [0, 1).
    """
    x = np.random.default_rng(0).uniform(-0.9, 0.9, 20000).astype(np.float32)
    sf.write(tmp_path / "probe.wav", x, 8000, subtype="PCM_16")
    error = (x.astype(np.float64) - sf.read(tmp_path / "probe.wav", dtype="float64")[0]) / LSB
    assert error.min() >= -0.5 - 1e-6 and error.max() < 1, "a 16-bit file should be within 1 LSB"
    return float(min(error.min(), 0.0)), float(max(error.max(), 0.0))


def test_stems_sum_to_the_mixture_and_peak_at_most_0_9(rendered, tmp_path):
    _, out, manifest = rendered
    # read(stems) - read(mixture) = -(e_vocals + e_bass + e_drums + e_other) + e_mixture, each e in [lo, hi]:
    # within 5 * 0.5 LSB under round-to-nearest, [-4, 1) LSB under truncation
    lo, hi = quantization_error_range(tmp_path)
    for track in manifest["tracks"]:
        audio = {s: sf.read(out / track["name"] / f"{s}.wav", dtype="float64")[0] for s in (*STEMS, "mixture")}
        error = sum(audio[s] for s in STEMS) - audio["mixture"]
        assert np.abs(error).max() <= 4 * LSB + 1e-9, (track["name"], np.abs(error).max() / LSB)
        assert error.min() >= (lo - 4 * hi) * LSB - 1e-9, (track["name"], error.min() / LSB, lo, hi)
        assert error.max() <= (hi - 4 * lo) * LSB + 1e-9, (track["name"], error.max() / LSB, lo, hi)
        peak = max(np.abs(x).max() for x in audio.values())
        assert 0.5 < peak <= 0.9 + LSB, (track["name"], peak)  # scaled so the loudest file peaks at 0.9


def test_no_stem_is_silent(rendered):
    request, out, manifest = rendered
    for track in manifest["tracks"]:
        assert track["resting"] == []
        for s in (*STEMS, "mixture"):
            x = sf.read(out / track["name"] / f"{s}.wav", dtype="float64")[0]
            rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-30)
            assert rms_db > -50, (track["name"], s, rms_db)
            # the manifest's loudness is the gated RMS of the written file
            gated_db = 20 * np.log10(gated_rms(x, request.sample_rate_hz))
            assert track["loudness_dbfs"][s] == pytest.approx(gated_db, abs=0.02), (track["name"], s)


def test_manifest(rendered):
    request, _, manifest = rendered
    assert manifest["format"] == "s2g_deploy.rendered" and manifest["schema_version"] == 1
    assert manifest["arguments"] == {
        "tracks": request.tracks,
        "seconds": request.seconds,
        "sample_rate_hz": request.sample_rate_hz,
        "soundfont": SOUNDFONT_PATH.name,
        "seed": request.seed,
        "split": request.split,
    }
    assert manifest["soundfont_sha256"] == hashlib.sha256(SOUNDFONT_PATH.read_bytes()).hexdigest()
    assert manifest["stems"] == list(STEMS) and manifest["file_subtype"] == "PCM_16"
    assert re.fullmatch(r"\d+\.\d+\.\d+", manifest["fluidsynth"])
    assert len(manifest["tracks"]) == request.tracks
    for track in manifest["tracks"]:
        assert re.fullmatch(r"[A-G][#b]? (major|minor)", track["key"]), track["key"]
        assert 50 <= track["tempo_bpm"] <= 150
        assert track["metre"] in ("4/4", "3/4", "6/8")
        sections = track["sections"]
        assert sections and sections[0]["start_s"] == 0 and sections[-1]["end_s"] >= request.seconds
        assert all(a["end_s"] == pytest.approx(b["start_s"], abs=1e-3) for a, b in itertools.pairwise(sections))
        parts = track["parts"]
        assert all(isinstance(p["program"], int) and 0 <= p["program"] <= 127 for p in parts), parts
        assert all(p["stem"] in STEMS for p in parts)
        leads = [p for p in parts if p["role"] == "lead"]
        assert len(leads) == 1 and leads[0]["stem"] == "vocals" and not leads[0]["drum"]
        drums = [p for p in parts if p["drum"]]
        assert len(drums) == 1 and drums[0]["stem"] == "drums"
        assert [p for p in parts if p["stem"] == "drums"] == drums
        assert any(p["stem"] == "bass" and p["role"] == "bass" and not p["drum"] for p in parts)
        assert 2 <= sum(p["stem"] == "other" for p in parts) <= 4
        assert set(track["gains_db"]) == set(STEMS)
        assert -3 <= track["gains_db"]["vocals"] <= 3
        assert all(-6 <= track["gains_db"][s] <= 3 for s in ("bass", "drums", "other"))
    # every stem plays within the first 2 s in at least one section that covers them
    for track in manifest["tracks"]:
        heard = {r for s in track["sections"] if s["start_s"] < request.seconds for r in s["playing"]}
        assert {"lead", "bass", "drums"} <= heard


def test_json_prints_one_document(tmp_path):
    out = tmp_path / "set"
    result = runner.invoke(app, cli_args(out, "--json"))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout: fails on anything else printed there
    assert doc["out"] == str(out) and doc["tracks"] == 2
    assert doc["total_seconds"] == pytest.approx(2 * 1.5) and doc["seconds_per_track"] == 1.5
    assert doc["wall_s"] >= 0
    assert "rendered 2/2 tracks" in result.stderr  # progress goes to stderr


def test_json_stdout_of_the_process_is_one_document(tmp_path):
    """The same through a real process: FluidSynth's own C-level output would land on fd 1."""
    out = tmp_path / "set"
    cmd = [sys.executable, "-m", "s2g_deploy", *cli_args(out, "--json", tracks=1)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["out"] == str(out) and doc["tracks"] == 1 and doc["total_seconds"] == pytest.approx(1.5)


# --- refusals: exit 2, one line, nothing written -------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--tracks", "0"], "--tracks"),
        (["--seconds", "0"], "--seconds"),
        (["--seconds", "-1"], "--seconds"),
        (["--seconds", "nan"], "--seconds"),
        (["--sample-rate", "12345"], "--sample-rate 12345"),
        (["--split", "nope"], "--split"),
        (["--jobs", "0"], "--jobs"),
        (["--soundfont", "/nonexistent.sf2"], "/nonexistent.sf2"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, extra, named):
    out = tmp_path / "new" / "set"  # the parent is missing too: it must not be created either
    result = runner.invoke(app, cli_args(out) + extra)
    assert result.exit_code == 2, result.output
    assert named in one_line_error(result)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_soundfont_is_refused(tmp_path):
    fake = tmp_path / "font.txt"
    fake.write_text("not a soundfont")
    result = runner.invoke(app, [*cli_args(tmp_path / "set"), "--soundfont", str(fake)])
    assert result.exit_code == 2 and "not a SoundFont" in one_line_error(result)
    assert list(tmp_path.iterdir()) == [fake]


def test_non_empty_out_needs_overwrite(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = runner.invoke(app, cli_args(out))
    assert result.exit_code == 2
    message = one_line_error(result)
    assert "not empty" in message and "--overwrite" in message
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    assert temp_dirs(tmp_path) == []


def test_overwrite_replaces_a_previous_render(tmp_path):
    out = tmp_path / "set"
    assert runner.invoke(app, cli_args(out, tracks=2)).exit_code == 0
    before = tree(out)
    refused = runner.invoke(app, cli_args(out, "--seed", "1", tracks=1))
    assert refused.exit_code == 2 and tree(out) == before  # without --overwrite nothing changes
    result = runner.invoke(app, cli_args(out, "--seed", "1", "--overwrite", tracks=1))
    assert result.exit_code == 0, result.output
    after = tree(out)
    assert set(after) == {"manifest.json"} | {f"train-00000/{f}" for f in FILES}  # track 1 is gone
    assert json.loads(after["manifest.json"])["arguments"]["seed"] == 1
    assert after["train-00000/mixture.wav"] != before["train-00000/mixture.wav"]
    fresh = tmp_path / "fresh"
    assert runner.invoke(app, cli_args(fresh, "--seed", "1", tracks=1)).exit_code == 0
    assert tree(fresh) == after  # the same as rendering into a new folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "set"]


@pytest.mark.parametrize("manifest", [None, {"format": "something.else"}, "not json"])
def test_overwrite_refuses_a_folder_that_is_not_a_render(tmp_path, manifest):
    out = tmp_path / "set"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    if manifest is not None:
        (out / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    before = tree(out)
    result = runner.invoke(app, cli_args(out, "--overwrite"))
    assert result.exit_code == 2
    assert "refusing to overwrite" in one_line_error(result)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]


def test_output_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "set"
    out.write_text("mine")
    result = runner.invoke(app, cli_args(out, "--overwrite"))
    assert result.exit_code == 2 and "not a directory" in one_line_error(result)
    assert out.read_text() == "mine" and list(tmp_path.iterdir()) == [out]


# --- missing dependencies -------------------------------------------------------------------------------


def test_missing_soundfont_names_the_debian_package(tmp_path, monkeypatch):
    empty = tmp_path / "sf2"
    empty.mkdir()
    monkeypatch.setattr(render_module, "SOUNDFONT_DIRS", (str(empty),))
    out = tmp_path / "set"
    result = runner.invoke(app, cli_args(out))
    assert result.exit_code == 2
    message = one_line_error(result)
    assert "TimGM6mb" in message and "apt-get install timgm6mb-soundfont" in message
    assert not out.exists() and temp_dirs(tmp_path) == []
    monkeypatch.setattr(render_module, "SOUNDFONT_DIRS", ())
    with pytest.raises(InputError, match="apt-get install fluid-soundfont-gm"):
        find_soundfont("FluidR3_GM")


def _without_fluidsynth(monkeypatch, error: BaseException) -> None:
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "fluidsynth" or name.startswith("fluidsynth."):
            raise error
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.mark.parametrize(
    "error",
    [
        ImportError("No module named 'fluidsynth'"),
        ImportError("Couldn't find the FluidSynth library.\nsecond line of detail"),
        ImportError(),  # no message at all
        OSError("libfluidsynth.so.3: cannot open shared object file: No such file or directory"),  # ctypes.CDLL
    ],
    ids=["no-module", "no-library", "empty-message", "cdll-fails"],
)
def test_missing_fluidsynth_names_the_package(tmp_path, monkeypatch, error):
    _without_fluidsynth(monkeypatch, error)
    out = tmp_path / "set"
    result = runner.invoke(app, cli_args(out))
    assert result.exit_code == 2, result.output
    message = one_line_error(result)
    assert "FluidSynth is not available" in message and "apt-get install fluidsynth" in message
    assert not out.exists() and list(tmp_path.iterdir()) == []


# --- interrupts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("jobs", [1, 2])
def test_interrupt_mid_render_leaves_nothing(tmp_path, jobs):
    out = tmp_path / "deep" / "set"  # StagedDirectory also removes the parents it created
    done = []

    def on_track(count: int) -> None:
        done.append(count)
        if count == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render(RenderRequest(out, 3, 1.5, 8000, SOUNDFONT, jobs=jobs), on_track=on_track)
    assert done == [1]
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_interrupt_keeps_a_previous_render(tmp_path):
    out = tmp_path / "set"
    render(RenderRequest(out, 1, 1.5, 8000, SOUNDFONT))
    before = tree(out)

    def on_track(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render(RenderRequest(out, 2, 1.5, 8000, SOUNDFONT, seed=3, overwrite=True), on_track=on_track)
    assert tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


# --- gated_rms -------------------------------------------------------------------------------------------


RATE = 16000
BLOCK, HOP = 6400, 1600  # 400 ms blocks, 75% overlap at 16 kHz


def sine(amplitude: float, seconds: float, hz: float = 1000.0) -> np.ndarray:
    # 1 kHz at 16 kHz: 16 samples a cycle, so every hop (and block) holds whole cycles: mean square A^2 / 2
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(seconds * RATE)) / RATE)


def test_gated_rms_of_a_sine():
    for amplitude in (1.0, 0.5, 0.01):
        assert gated_rms(sine(amplitude, 2.0), RATE) == pytest.approx(amplitude / np.sqrt(2), rel=1e-3)


def test_gated_rms_drops_the_silent_half():
    a = 0.5
    x = np.concatenate([sine(a, 2.0), np.zeros(2 * RATE)])
    # 37 blocks: 17 all sine, 3 straddling the edge (3/4, 2/4, 1/4 sine), 17 silent. The absolute gate
    # drops the silent ones; the relative gate (-10 dB below their mean, 0.925 P) keeps the edge ones.
    powers = [1.0] * 17 + [0.75, 0.5, 0.25]
    expected = a / np.sqrt(2) * np.sqrt(np.mean(powers))
    assert gated_rms(x, RATE) == pytest.approx(expected, rel=1e-3)
    assert gated_rms(x, RATE) == pytest.approx(a / np.sqrt(2), rel=0.05)  # about the sine's own RMS
    assert np.sqrt(np.mean(x**2)) == pytest.approx(a / 2, rel=1e-3)  # where the ungated RMS is 3 dB lower


def test_gated_rms_relative_gate_drops_a_quiet_half():
    a = 0.5
    x = np.concatenate([sine(a, 2.0), sine(a / 10, 2.0)])  # -20 dB: above -70 dBFS, below the -10 dB gate
    powers = [1.0] * 17 + [f + (1 - f) * 0.01 for f in (0.75, 0.5, 0.25)]
    expected = a / np.sqrt(2) * np.sqrt(np.mean(powers))
    assert gated_rms(x, RATE) == pytest.approx(expected, rel=1e-3)


def test_gated_rms_of_silence_and_short_signals():
    assert gated_rms(np.zeros(2 * RATE), RATE) == 0.0
    assert gated_rms(np.full(2 * RATE, 1e-5), RATE) == 0.0  # -100 dBFS: below the absolute gate
    assert gated_rms(np.array([]), RATE) == 0.0
    short = sine(0.5, 0.1)  # shorter than one block: measured whole
    assert gated_rms(short, RATE) == pytest.approx(np.sqrt(np.mean(short**2)), rel=1e-12)
