"""Rendered multitracks (``s2g data render``): composed songs played through FluidSynth, MUSDB18 layout.

Slakh2100 was made by rendering MIDI with sampled instruments, one patch per instrument, stems
loudness-normalised; this is the same recipe with FluidSynth and a General-MIDI soundfont. Every part
of a song (see :mod:`s2g_deploy.data.compose`) is rendered on its own fresh synthesizer (so no state
crosses parts or tracks), with the soundfont's reverb and chorus at the part's send levels, folded to
mono. The parts of a stem are summed, each stem is normalised to the same gated loudness (ITU-R BS.1770
block gating on 400 ms blocks, without the K-weighting filter), then mixed at random gains (vocals
-3..+3 dB, every other stem -6..+3 dB around it); the mixture is the sum of the stems and the whole
track is scaled so that no file exceeds 0.9 of full scale. Files are 16-bit PCM WAV, as in MUSDB18.

A track is a pure function of (seed, split, index, seconds, sample rate, soundfont), so the same
arguments give byte-identical files whatever ``jobs`` is. The output directory is staged and renamed
into place at the end: an interrupted render leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2g_deploy.artifacts import RENDERED_FORMAT as FORMAT
from s2g_deploy.artifacts import StagedDirectory, sha256_file, write_json
from s2g_deploy.data.compose import STEMS, Part, compose
from s2g_deploy.errors import InputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = {"train": 0, "valid": 1, "test": 2}  # disjoint composition streams of one seed
SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
SOUNDFONT_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")
SOUNDFONTS = {  # short name -> (file name, Debian package that installs it)
    "FluidR3_GM": ("FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "TimGM6mb": ("TimGM6mb.sf2", "timgm6mb-soundfont"),
    "MuseScore_General": ("MuseScore_General.sf3", "musescore-general-soundfont"),
}
SUBTYPE = "PCM_16"
_PEAK = 0.9
_SYNTH_GAIN = 0.25


@dataclass(frozen=True)
class RenderRequest:
    out: Path
    tracks: int
    seconds: float = 30.0
    sample_rate_hz: int = 16000
    soundfont: str = "FluidR3_GM"  # a short name of SOUNDFONTS or a path to an .sf2/.sf3 file
    seed: int = 0
    split: str = "train"
    jobs: int = 1
    overwrite: bool = False


@dataclass(frozen=True)
class RenderResult:
    out: Path
    tracks: int
    seconds: float  # audio per track
    manifest: dict

    @property
    def total_seconds(self) -> float:
        return self.tracks * self.seconds


def find_soundfont(name: str) -> Path:
    """A soundfont by short name (``FluidR3_GM``, ``TimGM6mb``, ...) or path; the error names the package."""
    if name in SOUNDFONTS:
        file, package = SOUNDFONTS[name]
        for folder in SOUNDFONT_DIRS:
            if (Path(folder) / file).is_file():
                return Path(folder) / file
        raise InputError(
            f"soundfont {name} not found in {', '.join(SOUNDFONT_DIRS)}; install it: apt-get install {package}"
        )
    path = Path(name)
    if not path.is_file():
        known = ", ".join(SOUNDFONTS)
        raise InputError(f"--soundfont {name}: no such file (give an .sf2/.sf3 path or one of {known})")
    if path.suffix.lower() not in (".sf2", ".sf3"):
        raise InputError(f"--soundfont {name}: not a SoundFont (.sf2 or .sf3)")
    return path


def _fluidsynth():
    import contextlib
    import sys

    try:
        # pyfluidsynth prints where it found the library when $CI is set: stdout is for results (--json)
        with contextlib.redirect_stdout(sys.stderr):
            import fluidsynth
    except (ImportError, OSError) as exc:  # OSError: pyfluidsynth found libfluidsynth but ctypes cannot load it
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"FluidSynth is not available ({why}): apt-get install fluidsynth, and pip install pyfluidsynth"
        ) from None
    return fluidsynth


def fluidsynth_version() -> str:
    import ctypes

    fs = _fluidsynth()
    parts = [ctypes.c_int() for _ in range(3)]
    fs.fluid_version(*parts)
    return ".".join(str(p.value) for p in parts)


def validate(request: RenderRequest) -> Path:
    """Check every argument before anything is written; returns the soundfont's path."""
    if request.tracks < 1:
        raise InputError(f"--tracks must be at least 1, got {request.tracks}")
    if not (np.isfinite(request.seconds) and 0 < request.seconds <= 3600):
        raise InputError(f"--seconds must be in (0, 3600], got {request.seconds}")
    if request.sample_rate_hz not in SAMPLE_RATES:
        raise InputError(f"--sample-rate {request.sample_rate_hz} Hz is not one of {', '.join(map(str, SAMPLE_RATES))}")
    if request.split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, got {request.split!r}")
    if request.jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {request.jobs}")
    _fluidsynth()
    return find_soundfont(request.soundfont)


def render(request: RenderRequest, on_track: Callable[[int], None] | None = None) -> RenderResult:
    """Render ``request.tracks`` tracks into ``request.out`` (staged; renamed into place when all are done)."""

    soundfont = validate(request)
    sf_sha = sha256_file(soundfont)
    jobs = [(request, str(soundfont), i) for i in range(request.tracks)]
    with StagedDirectory(request.out, request.overwrite, replaces=(FORMAT,)) as staging:
        tracks = []
        if request.jobs == 1:
            for job in jobs:
                tracks.append(_render_track(job, staging.path))
                if on_track:
                    on_track(len(tracks))
        else:
            with ProcessPoolExecutor(max_workers=request.jobs) as pool:
                for entry in pool.map(_render_track, jobs, [staging.path] * len(jobs)):
                    tracks.append(entry)
                    if on_track:
                        on_track(len(tracks))
        manifest = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "arguments": {
                "tracks": request.tracks,
                "seconds": request.seconds,
                "sample_rate_hz": request.sample_rate_hz,
                "soundfont": soundfont.name,
                "seed": request.seed,
                "split": request.split,
            },
            "soundfont_sha256": sf_sha,
            "fluidsynth": fluidsynth_version(),
            "stems": list(STEMS),
            "file_subtype": SUBTYPE,
            "mixing": "per-stem gated loudness normalisation, random gains (vocals -3..+3 dB, others -6..+3 dB), "
            f"mixture = sum of stems, peak <= {_PEAK}",
            "tracks": tracks,
        }
        write_json(staging.path / MANIFEST, manifest)
        out = staging.commit()
    return RenderResult(out, request.tracks, request.seconds, manifest)


def track_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


def _render_track(job: tuple[RenderRequest, str, int], folder: Path) -> dict:
    """Compose, render and mix one track; write its five WAVs; return its manifest entry."""
    import soundfile as sf

    request, soundfont, index = job
    rng = np.random.default_rng([request.seed, SPLITS[request.split], index])
    n = round(request.seconds * request.sample_rate_hz)
    song = compose(rng, request.seconds)
    stems = {stem: np.zeros(n) for stem in STEMS}
    for channel, part in enumerate(song.parts):
        stems[part.stem] += render_part(part, soundfont, request.sample_rate_hz, n, channel)
    resting = [s for s in STEMS if gated_rms(stems[s], request.sample_rate_hz) < 1e-3]  # -60 dBFS
    gains = {s: float(rng.uniform(-3, 3) if s == "vocals" else rng.uniform(-6, 3)) for s in STEMS}
    for s in STEMS:
        stems[s] *= 10 ** (gains[s] / 20) / max(gated_rms(stems[s], request.sample_rate_hz), 1e-9)
    mixture = sum(stems.values())
    scale = _PEAK / max(max(np.abs(x).max() for x in stems.values()), np.abs(mixture).max(), 1e-9)
    name = track_name(request.split, index)
    (folder / name).mkdir()
    levels = {}
    for s, audio in [*stems.items(), ("mixture", mixture)]:
        audio = audio * scale
        sf.write(folder / name / f"{s}.wav", audio.astype(np.float32), request.sample_rate_hz, subtype=SUBTYPE)
        levels[s] = round(20 * np.log10(max(gated_rms(audio, request.sample_rate_hz), 1e-12)), 2)
    return {
        "name": name,
        "index": index,
        **song.describe(),
        "gains_db": {s: round(g, 2) for s, g in gains.items()},
        "loudness_dbfs": levels,  # gated RMS of each written file
        "resting": resting,  # stems silent (below -60 dBFS) throughout the track
    }


def render_part(part: Part, soundfont: str, sample_rate_hz: int, n: int, channel: int) -> np.ndarray:
    """One part through a fresh FluidSynth: (n,) float64 mono, full scale 1.0 at the synth gain.

    Rendered in float (``fluid_synth_write_float``): the 16-bit writer adds dither from the C library's
    process-wide ``rand()``, which would make a track depend on what the process rendered before it.
    """
    fs = _fluidsynth()
    synth = fs.Synth(gain=_SYNTH_GAIN, samplerate=sample_rate_hz, channels=16)
    try:
        sfid = synth.sfload(soundfont)
        if sfid < 0:
            raise InputError(f"{soundfont}: FluidSynth cannot load this soundfont")
        chan = 9 if part.drum else 0
        bank = 128 if part.drum else 0
        if synth.program_select(chan, sfid, bank, part.program) != 0:  # the soundfont lacks this preset
            synth.program_select(chan, sfid, bank, 0)
        synth.cc(chan, 7, 100)
        synth.cc(chan, 91, part.reverb)
        synth.cc(chan, 93, part.chorus)
        out = np.zeros((2, n), np.float32)  # left, right
        done = 0
        sounding: dict[int, int] = {}  # pitch -> id of the note that holds it
        for sample, _, kind, a, b in _events(part, sample_rate_hz):
            if sample >= n:
                break
            if sample > done:
                _write_float(fs, synth, out, done, sample)
                done = sample
            if kind == "on":
                if a in sounding:  # re-struck before its release: release it first
                    synth.noteoff(chan, a)
                synth.noteon(chan, a, b[0])
                sounding[a] = b[1]
            elif kind == "off":
                if sounding.get(a) == b:  # a later note on this key now owns it
                    synth.noteoff(chan, a)
                    del sounding[a]
            else:
                synth.pitch_bend(chan, a)
        if done < n:
            _write_float(fs, synth, out, done, n)
        return out.astype(np.float64).mean(axis=0)
    finally:
        synth.delete()


def _write_float(fs, synth, out: np.ndarray, a: int, b: int) -> None:
    """Samples [a, b) of the synth's stereo output into ``out`` (2, n) float32, in blocks of 64 frames."""
    import ctypes

    write = fs._fl.fluid_synth_write_float
    write.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    write.argtypes += [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    left, right = out[0, a:b], out[1, a:b]
    if write(synth.synth, b - a, left.ctypes.data, 0, 1, right.ctypes.data, 0, 1) != 0:
        raise RuntimeError("fluid_synth_write_float failed")


def _events(part: Part, sample_rate_hz: int):
    """(sample, order, kind, a, b) sorted by time; at one sample: releases, bends, then note-ons."""
    events = []
    for i, note in enumerate(part.notes):
        events.append((round(note.start * sample_rate_hz), 2, "on", note.pitch, (note.velocity, i)))
        events.append((round(note.end * sample_rate_hz), 0, "off", note.pitch, i))
    for t, value in part.bends:
        events.append((round(t * sample_rate_hz), 1, "bend", int(np.clip(value, -8192, 8191)), 0))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def gated_rms(audio: np.ndarray, sample_rate_hz: int) -> float:
    """Root mean square over the blocks that pass BS.1770 gating (-70 dBFS absolute, -10 dB relative).

    400 ms blocks with 75% overlap; a signal shorter than one block is measured whole.
    """
    block = int(0.4 * sample_rate_hz)
    hop = block // 4
    if len(audio) < block:
        return float(np.sqrt(np.mean(audio**2))) if len(audio) else 0.0
    starts = range(0, len(audio) - block + 1, hop)
    power = np.array([np.mean(audio[s : s + block] ** 2) for s in starts])
    power = power[power > 1e-7]  # -70 dBFS
    if not len(power):
        return 0.0
    power = power[power > power.mean() * 0.1]  # -10 dB below the ungated mean
    return float(np.sqrt(power.mean()))


def read_manifest(root: str | os.PathLike) -> dict | None:
    """A rendered set's manifest, or None where ``root`` is not one."""
    try:
        doc = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("format") == FORMAT else None
