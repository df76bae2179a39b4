import pytest
import torch

from s2g_deploy.models.bsrnn import BSRNN, BSRNNConfig, count_params, istft, stft
from s2g_deploy.models.registry import PRESETS, band_widths_from_hz


@pytest.mark.parametrize("name", list(PRESETS))
def test_closed_form_params_match_the_module(name):
    config = PRESETS[name].config
    with torch.device("meta"):
        model = BSRNN(config)
    assert count_params(config) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["tiny", "xsmall"])
def test_closed_form_params_match_every_subnet_size(name):
    p = PRESETS[name]
    for s in p.space.grid():
        config = p.config.with_size(feature_dim=s.width, num_blocks=s.depth)
        with torch.device("meta"):
            model = BSRNN(config)
        assert count_params(config) == sum(t.numel() for t in model.parameters()), s


def test_paper_preset_has_the_papers_size():
    c = PRESETS["paper"].config
    assert (c.sample_rate_hz, c.n_fft, c.hop_length, c.n_bands) == (44100, 2048, 512, 41)
    assert (c.feature_dim, c.lstm_hidden, c.num_blocks) == (128, 256, 12)
    model = BSRNN(c)  # really built, not on the meta device
    n = sum(p.numel() for p in model.parameters())
    assert 25e6 <= n <= 36e6
    assert n == count_params(c) == 25_648_264


def test_band_layout_from_hz():
    # 16 kHz, 512-point FFT: 31.25 Hz per bin; 250 Hz bands are 8 bins, then the rest up to 257 bins
    assert band_widths_from_hz(16000, 512, [(1000, 250)]) == (8, 8, 8, 8, 225)
    widths = PRESETS["paper"].config.band_widths
    assert len(widths) == 41 and sum(widths) == 1025


@pytest.mark.parametrize("length", [1, 15, 64, 1000, 4001])
def test_output_has_the_input_length_for_any_length(tiny, length):
    wav = torch.randn(2, length)
    with torch.no_grad():
        out = tiny(wav)
    assert out.shape == (2, length)
    assert torch.isfinite(out).all()


def test_stft_round_trip_is_identity():
    config = PRESETS["xsmall"].config
    wav = torch.randn(3, 5000)
    spec = stft(wav, config)
    assert spec.shape == (3, config.n_bins, config.frames(5000), 2)
    assert torch.allclose(istft(spec, config, 5000), wav, atol=1e-5)


def test_batch_items_are_independent(tiny):
    wav = torch.randn(3, 2000)
    with torch.no_grad():
        together = tiny(wav)
        alone = tiny(wav[1:2])
    assert torch.allclose(together[1:2], alone, atol=1e-5)


def test_invalid_config_names_the_problem():
    with pytest.raises(ValueError, match="sum to n_fft // 2 \\+ 1 = 33"):
        BSRNNConfig(16000, 64, 16, (8, 8), 8, 2)
    with pytest.raises(ValueError, match="num_blocks >= 1"):
        BSRNNConfig(16000, 64, 16, (33,), 8, 0)
