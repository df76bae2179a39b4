"""Where the quality gate's held-out tracks come from, on any machine.

Either a stems folder the user names (``--gate-data DIR``, the MUSDB18 layout ``s2g evaluate`` and
``s2g train`` read; a rendered root holding ``test/`` means that split), or, by default, tracks rendered
on the fly by :mod:`s2g_deploy.data.render`: the *test* split's compositions (a stream disjoint from
the train and valid splits) played by the small TimGM6mb soundfont (Debian ``timgm6mb-soundfont``, which
the test setup installs; the bundled supernet was trained on FluidR3_GM, so these are timbres it never
heard), rendered into a temporary directory that is removed afterwards. Either way the first
:data:`TRACKS` tracks, :data:`SECONDS` seconds of each (the shortest one's length if shorter): per track,
the window with the most target energy (on a 0.5 s grid), so no gate track is a silent stretch of the
target. The description records which data it was.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2g_deploy.errors import InputError

log = logging.getLogger(__name__)

TRACKS = 4
SECONDS = 4.0
SOUNDFONT = "TimGM6mb"
SPLIT = "test"
SEED = 0


@dataclass(frozen=True)
class GateData:
    """The gate's tracks: (name, mixture, target) mono float32 of one length, and what they are."""

    examples: tuple
    sample_rate_hz: int
    description: dict


def gate_data(
    directory: str | os.PathLike | None,
    sample_rate_hz: int,
    target: str = "vocals",
    tracks: int = TRACKS,
    seconds: float = SECONDS,
) -> GateData:
    """The gate's tracks from ``directory`` (a stems folder), or rendered now when it is None."""
    if directory is None:
        return _rendered(sample_rate_hz, target, tracks, seconds)
    root = Path(directory)
    if (root / SPLIT).is_dir():  # a rendered root: its test split
        root = root / SPLIT
    if not root.is_dir():
        raise InputError(f"--gate-data {directory}: no such directory (give a stems folder: <track>/{target}.wav)")
    examples = _read_tracks(root, sample_rate_hz, target, tracks, seconds)
    return GateData(
        examples, sample_rate_hz, _describe(examples, sample_rate_hz, kind="stems", root=str(root), target=target)
    )


def _rendered(sample_rate_hz: int, target: str, tracks: int, seconds: float) -> GateData:
    from s2g_deploy.data.render import RenderRequest, render

    log.info("quality gate: rendering %d held-out tracks of %g s with %s", tracks, seconds, SOUNDFONT)
    with tempfile.TemporaryDirectory(prefix="s2g-gate-") as tmp:
        request = RenderRequest(
            out=Path(tmp) / "gate",
            tracks=tracks,
            seconds=seconds,
            sample_rate_hz=sample_rate_hz,
            soundfont=SOUNDFONT,
            seed=SEED,
            split=SPLIT,
        )
        try:
            result = render(request)
        except InputError as exc:
            raise InputError(
                f"the quality gate needs held-out music and cannot render it ({exc}); pass --gate-data DIR "
                "(a stems folder of held-out tracks)"
            ) from None
        examples = _read_tracks(result.out, sample_rate_hz, target, tracks, seconds)
        rendered = {
            "split": SPLIT,
            "soundfont": result.manifest["arguments"]["soundfont"],
            "soundfont_sha256": result.manifest["soundfont_sha256"],
            "seed": SEED,
            "fluidsynth": result.manifest["fluidsynth"],
        }
    return GateData(
        examples,
        sample_rate_hz,
        _describe(examples, sample_rate_hz, kind="rendered now", target=target, rendered=rendered),
    )


def _read_tracks(root: Path, sample_rate_hz: int, target: str, tracks: int, seconds: float) -> tuple:
    from s2g_deploy.train.stems import _read

    folders = sorted(p for p in root.iterdir() if (p / f"{target}.wav").is_file())
    if not folders:
        raise InputError(f"--gate-data {root}: no track folder holds {target}.wav (the MUSDB18 layout)")
    pairs = []
    for folder in folders[:tracks]:
        s = _read(folder / f"{target}.wav", sample_rate_hz).mean(axis=0)
        mix_file = folder / "mixture.wav"
        if mix_file.is_file():
            mix = _read(mix_file, sample_rate_hz).mean(axis=0)
        else:
            mix = sum(_read(f, sample_rate_hz).mean(axis=0) for f in sorted(folder.glob("*.wav")))
        if len(mix) != len(s):
            raise InputError(f"--gate-data {folder}: {target}.wav and the mixture differ in length")
        pairs.append((folder.name, mix, s))
    n = min(round(seconds * sample_rate_hz), *(len(s) for _, _, s in pairs))  # shorter tracks: all of them
    if n < sample_rate_hz:
        raise InputError(f"--gate-data {root}: the gate needs tracks of at least 1 s")
    examples = []
    for name, mix, s in pairs:
        start = _loudest_window(s, n, round(0.5 * sample_rate_hz))
        examples.append((name, mix[start : start + n].astype(np.float32), s[start : start + n].astype(np.float32)))
    return tuple(examples)


def _loudest_window(target: np.ndarray, n: int, step: int) -> int:
    """Start of the ``n``-sample window with the most energy, on a grid of ``step`` samples (first on ties)."""
    energy = np.concatenate([[0.0], np.cumsum(np.asarray(target, np.float64) ** 2)])
    starts = np.arange(0, len(target) - n + 1, max(1, step))
    return int(starts[np.argmax(energy[starts + n] - energy[starts])])


def _describe(examples: tuple, sample_rate_hz: int, **what) -> dict:
    digest = hashlib.sha256()
    for name, mix, target in examples:
        digest.update(name.encode())
        digest.update(mix.tobytes())
        digest.update(target.tobytes())
    return {
        **what,
        "tracks": len(examples),
        "seconds": len(examples[0][1]) / sample_rate_hz,
        "names": [name for name, _, _ in examples],
        "window": "per track, the window with the most target energy (0.5 s grid)",
        "sha256": digest.hexdigest(),
    }
