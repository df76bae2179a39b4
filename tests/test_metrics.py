"""Separation metrics (uSDR, SI-SDR, cSDR via museval) and the batched chunking used to score models."""

import math
import warnings

import numpy as np
import pytest
import torch

from s2g_deploy.separate import ArraySource, chunk_plan, overlap_add, separate_batched
from s2g_deploy.train.metrics import csdr, si_sdr, usdr

RATE = 8000


def museval_sdr(estimate: np.ndarray, reference: np.ndarray, **window) -> np.ndarray:
    """museval's per-window SDR of one mono source, called directly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import museval

        sdr, _, _, _ = museval.evaluate(reference.reshape(1, -1, 1), estimate.reshape(1, -1, 1), **window)
    return sdr[0]


def reference_signal(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    tones = sum(a * np.sin(2 * np.pi * hz * t + p) for a, hz, p in [(0.5, 220, 0), (0.3, 331, 1), (0.2, 997, 2)])
    return tones + 0.01 * rng.standard_normal(len(t))


def with_noise(reference: np.ndarray, snr_db, seed: int = 1) -> np.ndarray:
    """reference + white noise at ``snr_db`` (a number, or one per 1-s window) of each window's own power."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(len(reference))
    out = reference.copy()
    snrs = np.broadcast_to(np.asarray(snr_db, float), (len(reference) // RATE,))
    for w, snr in enumerate(snrs):
        span = slice(w * RATE, (w + 1) * RATE)
        n = noise[span] - noise[span].mean()
        power = np.mean(reference[span] ** 2)
        out[span] += n * np.sqrt(power / np.mean(n**2) * 10 ** (-snr / 10))
    return out


# --- cSDR ----------------------------------------------------------------------------------------------


def test_csdr_equals_a_direct_museval_computation():
    ref = reference_signal()
    est = with_noise(ref, 12.0)
    direct = museval_sdr(est, ref, win=RATE, hop=RATE)
    assert direct.shape == (3,) and np.isfinite(direct).all()
    assert csdr(est, ref, RATE) == pytest.approx(float(np.nanmedian(direct)), abs=1e-9)
    # float32 inputs (what evaluation passes) are widened, not rejected
    assert math.isfinite(csdr(est.astype(np.float32), ref.astype(np.float32), RATE))


def test_csdr_windows_are_one_second_at_the_given_rate():
    ref = reference_signal()
    est = with_noise(ref, [5.0, 20.0, 35.0])  # one noise level per 1-s window
    windows = museval_sdr(est, ref, win=RATE, hop=RATE)
    assert windows == pytest.approx([5.0, 20.0, 35.0], abs=1.0)  # the construction is what it claims
    value = csdr(est, ref, RATE)
    assert value == pytest.approx(20.0, abs=2.0)  # the median window
    default = museval_sdr(est, ref)  # 44,100-sample default: one window over all 3 s, dominated by the 5 dB second
    assert default.shape == (1,)
    assert abs(value - float(np.nanmedian(default))) > 1.0
    assert float(default[0]) < 12.0


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_csdr_of_reference_plus_white_noise_is_the_snr(snr_db):
    ref = reference_signal(seed=2)
    est = with_noise(ref, snr_db, seed=3)
    # BSSEval may explain a little of the noise with its 512-tap distortion filter: allow 1 dB
    assert csdr(est, ref, RATE) == pytest.approx(snr_db, abs=1.0)


def test_csdr_leaves_out_silent_reference_windows():
    ref = reference_signal()
    ref[:RATE] = 0.0  # the first second is silent
    est = ref + 0.05 * np.random.default_rng(4).standard_normal(len(ref))  # not silent anywhere
    windows = museval_sdr(est, ref, win=RATE, hop=RATE)
    assert np.isnan(windows[0]) and np.isfinite(windows[1:]).all()
    value = csdr(est, ref, RATE)
    assert math.isfinite(value)
    assert value == pytest.approx(float(np.median(windows[1:])), abs=1e-9)


def test_csdr_of_an_all_silent_reference_is_nan():
    est = 0.1 * np.random.default_rng(5).standard_normal(3 * RATE)
    assert math.isnan(csdr(est, np.zeros(3 * RATE), RATE))


# --- uSDR and SI-SDR -------------------------------------------------------------------------------------


def test_usdr_and_si_sdr_of_a_half_scale_estimate():
    ref = torch.from_numpy(reference_signal()).unsqueeze(0)  # (tracks, samples), float64
    est = 0.5 * ref
    # |s|^2 / |s - s/2|^2 = 1 / 0.25
    assert usdr(est, ref).shape == (1,)
    assert usdr(est, ref).item() == pytest.approx(10 * math.log10(4), abs=1e-6)
    assert si_sdr(est, ref).item() > 80  # a rescaled reference is perfect up to scale


def test_usdr_and_si_sdr_with_orthogonal_error():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(2, 4000, generator=g, dtype=torch.float64)
    noise = torch.randn(2, 4000, generator=g, dtype=torch.float64)
    noise -= (noise * ref).sum(-1, keepdim=True) / ref.pow(2).sum(-1, keepdim=True) * ref  # orthogonal to ref
    snr = torch.tensor([10.0, 20.0], dtype=torch.float64)
    noise *= (ref.pow(2).sum(-1) / noise.pow(2).sum(-1) / 10 ** (snr / 10)).sqrt().unsqueeze(-1)
    est = ref + noise
    assert usdr(est, ref).tolist() == pytest.approx([10.0, 20.0], abs=1e-6)
    assert si_sdr(est, ref).tolist() == pytest.approx([10.0, 20.0], abs=1e-6)
    # scaling the estimate: SI-SDR does not change, uSDR does
    assert si_sdr(3 * est, ref).tolist() == pytest.approx([10.0, 20.0], abs=1e-6)
    assert (usdr(3 * est, ref) < 0).all()


# --- separate_batched: the chunked evaluation ----------------------------------------------------------


def nonlinear(x: np.ndarray) -> np.ndarray:
    """Elementwise-nonlinear and position-dependent (a shift), like a model: chunk boundaries show."""
    return np.tanh(1.3 * x) + 0.5 * np.roll(x, 1, axis=-1)


def reference_overlap_add(run, mix: np.ndarray, chunk: int, overlap: int) -> np.ndarray:
    pieces: list[np.ndarray] = []
    overlap_add(ArraySource(mix.T, 1), run, chunk, overlap, lambda start, y, x: pieces.append(y))
    return np.concatenate(pieces).T


@pytest.fixture(scope="module")
def mix() -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (3, 4000)).astype(np.float32)


@pytest.mark.parametrize(
    ("chunk", "overlap"),
    [
        (256, 128),  # many chunks, half overlap
        (300, 0),  # no overlap, chunk does not divide 4000
        (1000, 0),  # no overlap, divides
        (1000, 100),
        (777, 333),  # neither divides; the last chunk is short
        (2000, 1000),
        (4000, 0),  # exactly one full chunk
        (5000, 100),  # shorter than one chunk
        (1, 0),  # one sample a chunk
    ],
)
def test_separate_batched_equals_overlap_add(mix, chunk, overlap):
    calls: list[tuple[int, ...]] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return nonlinear(x)

    expected = reference_overlap_add(nonlinear, mix, chunk, overlap)
    got = separate_batched(run, mix, chunk, overlap)
    assert got.shape == mix.shape and got.dtype == np.float32
    assert np.array_equal(got, expected)
    plan = chunk_plan(mix.shape[1], chunk, overlap)
    full = sum(b - a == chunk for a, b in plan)
    rows = max(1, (1 << 20) // chunk)
    assert len(calls) == math.ceil(full * 3 / rows) + (len(plan) - full)  # batches of full chunks + the rest
    if len(plan) > 2:
        assert len(calls) < len(plan)


def test_separate_batched_runs_batches_of_the_requested_size(mix):
    calls: list[tuple[int, ...]] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return nonlinear(x)

    chunk, overlap = 256, 128
    got = separate_batched(run, mix, chunk, overlap, batch_samples=7 * chunk)
    assert np.array_equal(got, reference_overlap_add(nonlinear, mix, chunk, overlap))
    plan = chunk_plan(4000, chunk, overlap)
    assert len(plan) == 31 and plan[-1] == (3840, 4000)  # 30 full chunks and a short last one
    batched = [s for s in calls if s[1] == chunk]
    assert [s[0] for s in batched] == [7] * 12 + [6]  # 30 chunks x 3 tracks = 90 rows, 7 a batch
    assert calls[-1] == (3, 160)  # the short last chunk, run on its own with every track


def test_separate_batched_differs_from_running_the_whole_signal(mix):
    """The check above is not vacuous: chunking changes this run's output."""
    assert not np.array_equal(separate_batched(nonlinear, mix, 256, 128), nonlinear(mix).astype(np.float32))
    identity = separate_batched(lambda x: x, mix, 256, 128)
    np.testing.assert_allclose(identity, mix, atol=1e-6)  # complementary ramps: the identity comes back
