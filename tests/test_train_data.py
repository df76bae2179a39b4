import numpy as np
import pytest
import soundfile as sf
import torch

from s2g_deploy.errors import InputError
from s2g_deploy.models.registry import get_preset
from s2g_deploy.train.data import SyntheticMusic
from s2g_deploy.train.losses import separation_loss
from s2g_deploy.train.metrics import si_sdr, usdr
from s2g_deploy.train.stems import StemFolder


def test_synthetic_items_are_reproducible_and_splits_differ():
    a = SyntheticMusic(16000, 0.5, "train", seed=0)
    mix1, tgt1 = a.item(3)
    mix2, tgt2 = SyntheticMusic(16000, 0.5, "train", seed=0).item(3)
    assert np.array_equal(mix1, mix2) and np.array_equal(tgt1, tgt2)
    assert mix1.shape == (8000,) and mix1.dtype == np.float32
    for other in (SyntheticMusic(16000, 0.5, "valid").item(3), SyntheticMusic(16000, 0.5, "test").item(3), a.item(4)):
        assert not np.allclose(other[0], mix1)
    with pytest.raises(InputError, match="split"):
        SyntheticMusic(16000, 1.0, "dev")


def test_synthetic_mixture_is_target_plus_a_real_accompaniment():
    mix, target = SyntheticMusic(16000, 2.0, "valid").item(0)
    accompaniment = mix - target
    assert 0.2 <= np.abs(mix).max() <= 0.91
    ratio_db = 10 * np.log10(np.sum(target**2) / np.sum(accompaniment**2))
    assert -7 < ratio_db < 7  # mixed at -6..+6 dB

    # the target is harmonic: most of its energy sits above 100 Hz, the accompaniment has bass and kick below
    def low_share(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[: int(100 * len(x) / 16000)].sum() / p.sum()

    assert low_share(target) < 0.05 < low_share(accompaniment)


def test_usdr_and_si_sdr_match_hand_computed_values():
    s = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    est = torch.tensor([[1.0, 2.0, 3.0, 3.0]])  # error energy 1, signal energy 30
    assert usdr(est, s).item() == pytest.approx(10 * np.log10(30), abs=1e-4)
    # SI-SDR: alpha = <est, s>/|s|^2 = 26/30; target = alpha s; noise = target - est
    alpha = 26 / 30
    t = alpha * np.array([1, 2, 3, 4.0])
    expected = 10 * np.log10(np.sum(t**2) / np.sum((t - np.array([1, 2, 3, 3.0])) ** 2))
    assert si_sdr(est, s).item() == pytest.approx(expected, abs=1e-3)
    assert si_sdr(2 * s, s).item() > 60  # scale does not matter
    assert usdr(2 * s, s).item() == pytest.approx(0.0, abs=1e-4)  # but it does for uSDR: |s - 2s| = |s|


def test_loss_is_zero_for_a_perfect_estimate_and_l1_otherwise():
    config = get_preset("tiny").config
    target = torch.randn(2, 400)
    assert separation_loss(target, target, config).item() == 0
    shifted = separation_loss(target + 0.5, target, config).item()
    # waveform part is exactly 0.5; the STFT part adds the spectrum of a constant 0.5
    assert shifted > 0.5


def _write(path, data, sr=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr)


def _track(root, name, seconds=1.0, channels=2, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    for source in ("vocals", "drums", "bass", "other"):
        _write(root / name / f"{source}.wav", 0.1 * rng.standard_normal((n, channels)), sr)


def test_stem_folder_reads_tracks_and_rebuilds_the_mixture(tmp_path):
    _track(tmp_path, "a")
    _track(tmp_path, "b", channels=2)
    data = StemFolder.open(tmp_path, 16000, 0.5, remix=False)
    mix, target = data.item(0)
    assert mix.shape == target.shape == (8000,)
    examples = data.examples()
    assert [e[0] for e in examples] == ["a[0]", "a[1]", "b[0]", "b[1]"]
    vocals = sf.read(tmp_path / "a" / "vocals.wav", dtype="float32")[0][:, 0]
    others = sum(sf.read(tmp_path / "a" / f"{s}.wav", dtype="float32")[0][:, 0] for s in ("drums", "bass", "other"))
    assert np.allclose(examples[0][1], vocals + others, atol=1e-6)
    remixed = StemFolder.open(tmp_path, 16000, 0.5, remix=True)
    assert remixed.batch(range(3))[0].shape == (3, 8000)
    assert len(data.describe()["sha256"]) == 64


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("rate", "sample rate 8000 Hz, the model needs 16000 Hz"),
        ("channels", "1 channels but vocals.wav has 2"),
        ("short", "shorter than one segment"),
        ("unreadable", "unreadable audio file"),
        ("empty", "empty audio file"),
        ("no-target", "no vocals.wav"),
    ],
)
def test_stem_folder_errors_name_the_file(tmp_path, problem, message):
    _track(tmp_path, "t")
    bad = tmp_path / "t" / "drums.wav"
    if problem == "rate":
        _write(bad, np.zeros((8000, 2)), sr=8000)
    elif problem == "channels":
        _write(bad, np.zeros(16000))
    elif problem == "short":
        _track(tmp_path, "t", seconds=0.1)
    elif problem == "unreadable":
        bad.write_bytes(b"RIFF....garbage")
    elif problem == "empty":
        _write(bad, np.zeros((0, 2)))
    elif problem == "no-target":
        (tmp_path / "t" / "vocals.wav").unlink()
    with pytest.raises(InputError, match=message) as info:
        StemFolder.open(tmp_path, 16000, 0.5)
    assert str(tmp_path / "t") in str(info.value)
