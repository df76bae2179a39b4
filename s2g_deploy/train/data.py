"""Training and evaluation data: a synthetic music-like set, and real stems in the MUSDB18 layout.

Both give (mixture, target) pairs of mono float32 waveforms at the model's sample rate. Every item is
a pure function of (seed, split, index), so a run is reproducible and a resumed run sees exactly the
batches it would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from s2g_deploy.errors import InputError

SPLIT_SEEDS = {"train": 0, "valid": 1, "test": 2}  # disjoint streams of the same generator


@dataclass(frozen=True)
class SyntheticMusic:
    """Vocal-like harmonic target over drums, bass and noise; needs no download.

    The target has notes with pitch glides, vibrato, a formant-shaped harmonic spectrum, onsets and
    silences. The accompaniment has kick and snare/hi-hat hits on a beat grid, a bass line and
    coloured noise, mixed at a random target-to-accompaniment ratio of -6..+6 dB.
    """

    sample_rate_hz: int
    seconds: float
    split: str = "train"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in SPLIT_SEEDS:
            raise InputError(f"split must be one of {list(SPLIT_SEEDS)}, got {self.split!r}")

    @property
    def n_samples(self) -> int:
        return round(self.seconds * self.sample_rate_hz)

    def item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(mixture, target), each (samples,) float32."""
        rng = np.random.default_rng([self.seed, SPLIT_SEEDS[self.split], index])
        sr, n = self.sample_rate_hz, self.n_samples
        target = _voice(rng, sr, n)
        accompaniment = _drums(rng, sr, n) + _bass(rng, sr, n) + _noise(rng, n)
        target *= 10 ** (rng.uniform(-6, 6) / 20) * _rms(accompaniment) / max(_rms(target), 1e-4)
        mixture = target + accompaniment
        scale = rng.uniform(0.3, 0.9) / max(np.abs(mixture).max(), 1e-4)
        return (mixture * scale).astype(np.float32), (target * scale).astype(np.float32)

    def batch(self, indices: range | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixture, target), each (B, samples)."""
        pairs = [self.item(i) for i in indices]
        return (torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs])))

    def examples(self, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``count`` whole items for evaluation: (name, mixture, target)."""
        return [(f"{self.split}-{i}", *self.item(i)) for i in range(count)]

    def describe(self) -> dict:
        return {
            "kind": "synthetic",
            "split": self.split,
            "seed": self.seed,
            "seconds": self.seconds,
            "sample_rate_hz": self.sample_rate_hz,
        }


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def _envelope(n: int, sr: int, attack_s: float, release_s: float) -> np.ndarray:
    a, r = max(1, int(attack_s * sr)), max(1, int(release_s * sr))
    env = np.ones(n)
    env[: min(a, n)] = np.linspace(0, 1, a)[:n]
    env[-min(r, n) :] *= np.linspace(1, 0, r)[-min(r, n) :]
    return env


def _voice(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    out = np.zeros(n)
    t = 0
    formants = rng.uniform([400, 1000, 2400], [900, 2000, 3200])  # a vowel, roughly
    while t < n:
        t += int(rng.uniform(0.0, 0.4) * sr) if rng.random() < 0.5 else 0  # a rest
        length = min(int(rng.uniform(0.15, 0.8) * sr), n - t)
        if length <= 0:
            break
        time = np.arange(length) / sr
        f0 = rng.uniform(140, 520) * 2 ** (rng.uniform(-2, 2) / 12 * time / time[-1] if length > 1 else 0)
        f0 = f0 * 2 ** (rng.uniform(0.1, 0.6) / 12 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * time))  # vibrato
        phase = 2 * np.pi * np.cumsum(f0) / sr
        note = np.zeros(length)
        for k in range(1, int(0.45 * sr / f0.max()) + 1):
            gain = sum(np.exp(-((((k * f0.mean()) - f) / 250) ** 2)) for f in formants) + 0.1 / k
            note += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
        out[t : t + length] += note * _envelope(length, sr, rng.uniform(0.01, 0.06), rng.uniform(0.03, 0.15))
        t += length
    return out


def _drums(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    out = np.zeros(n)
    beat = int(60 / rng.uniform(80, 160) / 2 * sr)  # eighth notes
    for i, start in enumerate(range(int(rng.uniform(0, beat)), n, beat)):
        if i % 4 == 0 or rng.random() < 0.15:  # kick: a falling sine
            m = min(int(0.25 * sr), n - start)
            time = np.arange(m) / sr
            f = 45 + 80 * np.exp(-time * 30)
            out[start : start + m] += 0.9 * np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-time * 12)
        if i % 4 == 2 or rng.random() < 0.5:  # snare or hi-hat: a noise burst, brighter when short
            m = min(int(rng.uniform(0.04, 0.2) * sr), n - start)
            burst = rng.standard_normal(m)
            if m > 1:
                burst = np.diff(burst, prepend=0.0) if m < 0.08 * sr else burst
            out[start : start + m] += 0.35 * burst * np.exp(-np.arange(m) / sr * rng.uniform(20, 60))
    return out


def _bass(rng: np.random.Generator, sr: int, n: int) -> np.ndarray:
    out = np.zeros(n)
    note_len = int(rng.uniform(0.2, 0.6) * sr)
    for start in range(0, n, note_len):
        m = min(note_len, n - start)
        f = rng.uniform(40, 110)
        time = np.arange(m) / sr
        tone = np.sin(2 * np.pi * f * time) + 0.3 * np.sin(4 * np.pi * f * time) + 0.1 * np.sin(6 * np.pi * f * time)
        out[start : start + m] += 0.5 * tone * _envelope(m, sr, 0.005, 0.05)
    return out


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    slope = rng.uniform(0.5, 1.5)  # 1/f^slope power: from pink-ish to brown-ish
    spectrum[1:] /= np.arange(1, len(spectrum)) ** (slope / 2)
    spectrum[0] = 0
    out = np.fft.irfft(spectrum, n)
    return 0.05 * rng.uniform(0.2, 1.0) * out / max(_rms(out), 1e-9)
