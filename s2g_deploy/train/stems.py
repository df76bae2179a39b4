"""Real data: a folder of tracks in the MUSDB18 layout, one folder per track, one WAV per source.

``root/<track>/mixture.wav`` plus ``root/<track>/<source>.wav`` for every source (e.g. vocals, drums,
bass, other). Stereo tracks are folded into mono examples, one per channel. Every file problem is an
:class:`InputError` that names the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from s2g_deploy.errors import InputError


@dataclass(frozen=True)
class Track:
    name: str
    target: np.ndarray  # (channels, samples)
    others: tuple[np.ndarray, ...]  # every other source, same shape
    mixture: np.ndarray


def _read(path: Path, sample_rate_hz: int) -> np.ndarray:
    import soundfile as sf

    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except Exception as exc:
        raise InputError(f"{path}: unreadable audio file ({str(exc).splitlines()[0]})") from None
    if sr != sample_rate_hz:
        raise InputError(
            f"{path}: sample rate {sr} Hz, the model needs {sample_rate_hz} Hz; resample the dataset first "
            f"(e.g. sox in.wav -r {sample_rate_hz} out.wav)"
        )
    if data.shape[0] == 0:
        raise InputError(f"{path}: empty audio file")
    return data.T  # (channels, samples)


def load_tracks(root: str | Path, sample_rate_hz: int, target: str, min_samples: int) -> list[Track]:
    """Read every track folder under ``root``; the mixture is rebuilt from the stems when absent."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder (expected one folder per track)")
    tracks = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        wavs = {p.stem: p for p in folder.glob("*.wav")}
        if target not in wavs:
            raise InputError(f"{folder}: no {target}.wav (the target source); found {sorted(wavs) or 'no WAVs'}")
        sources = {name: _read(p, sample_rate_hz) for name, p in sorted(wavs.items()) if name != "mixture"}
        ref = sources[target]
        for name, audio in sources.items():
            if audio.shape[0] != ref.shape[0]:
                raise InputError(f"{wavs[name]}: {audio.shape[0]} channels but {target}.wav has {ref.shape[0]}")
            if audio.shape[1] != ref.shape[1]:
                raise InputError(f"{wavs[name]}: {audio.shape[1]} samples but {target}.wav has {ref.shape[1]}")
        if ref.shape[1] < min_samples:
            raise InputError(f"{wavs[target]}: {ref.shape[1]} samples, shorter than one segment ({min_samples})")
        others = tuple(a for n, a in sources.items() if n != target)
        mixture = _read(wavs["mixture"], sample_rate_hz) if "mixture" in wavs else ref + sum(others)
        if mixture.shape != ref.shape:
            raise InputError(f"{wavs['mixture']}: shape {mixture.shape} differs from the stems' {ref.shape}")
        tracks.append(Track(folder.name, ref, others, mixture))
    if not tracks:
        raise InputError(f"{root}: no track folders found")
    return tracks


def split_tracks(root: str | Path, tracks: list[Track]) -> tuple[list[Track], list[Track]]:
    """(training, validation) tracks of one folder when no separate validation folder is given.

    Every tenth track (by name; at least one) is held out, so validation never sees training audio.
    """
    if len(tracks) < 2:
        raise InputError(
            f"{root}: {len(tracks)} track; validation needs held-out tracks: give --val-data or at least 2 tracks"
        )
    held = set(range(len(tracks) - 1, -1, -10))
    return [t for i, t in enumerate(tracks) if i not in held], [t for i, t in enumerate(tracks) if i in held]


@dataclass(frozen=True)
class StemFolder:
    """Random segments of real tracks for training, whole tracks for evaluation.

    With ``remix``, each training example takes its target and each other source from independently
    chosen tracks and offsets, with random gains (the usual random-mixing augmentation); otherwise the
    track's own mixture is used.
    """

    root: Path
    sample_rate_hz: int
    seconds: float
    target: str = "vocals"
    remix: bool = False
    seed: int = 0
    tracks: list[Track] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def open(cls, root, sample_rate_hz, seconds, target="vocals", remix=False, seed=0) -> StemFolder:
        n = round(seconds * sample_rate_hz)
        return cls(
            Path(root), sample_rate_hz, seconds, target, remix, seed, load_tracks(root, sample_rate_hz, target, n)
        )

    @property
    def n_samples(self) -> int:
        return round(self.seconds * self.sample_rate_hz)

    def item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 7, index])
        n = self.n_samples

        def segment(audio: np.ndarray) -> np.ndarray:
            ch = rng.integers(audio.shape[0])
            start = rng.integers(audio.shape[1] - n + 1)
            return audio[ch, start : start + n]

        if not self.remix:
            track = self.tracks[rng.integers(len(self.tracks))]
            ch = rng.integers(track.target.shape[0])
            start = rng.integers(track.target.shape[1] - n + 1)
            return track.mixture[ch, start : start + n].copy(), track.target[ch, start : start + n].copy()
        target = segment(self.tracks[rng.integers(len(self.tracks))].target) * rng.uniform(0.5, 1.5)
        mixture = target.copy()
        for k in range(len(self.tracks[0].others)):
            other = self.tracks[rng.integers(len(self.tracks))].others
            if k < len(other):
                mixture += segment(other[k]) * rng.uniform(0.5, 1.5)
        return mixture.astype(np.float32), target.astype(np.float32)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.item(i) for i in indices]
        return (torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs])))

    def examples(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Whole tracks for evaluation, one mono example per channel: (name, mixture, target)."""
        return [(f"{t.name}[{c}]", t.mixture[c], t.target[c]) for t in self.tracks for c in range(t.target.shape[0])]

    def describe(self) -> dict:
        digest = hashlib.sha256()
        for t in self.tracks:
            digest.update(t.name.encode())
            digest.update(np.ascontiguousarray(t.target).tobytes())
        described = {
            "kind": "stems",
            "root": str(self.root),
            "target": self.target,
            "tracks": len(self.tracks),
            "remix": self.remix,
            "sha256": digest.hexdigest(),
        }
        from s2g_deploy.data.render import read_manifest

        rendered = read_manifest(self.root)
        if rendered is not None:  # s2g data render wrote it: say which split and soundfont
            args = rendered["arguments"]
            described["rendered"] = {k: args[k] for k in ("split", "soundfont", "seed", "seconds")}
            described["split"] = args["split"]
        return described
