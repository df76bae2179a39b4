"""The exportable STFT / iSTFT against torch.stft / torch.istft and models.bsrnn.stft / istft."""

import dataclasses

import numpy as np
import pytest
import torch

from s2g_deploy.export.stft import ConvISTFT, ConvSTFT, FramedISTFT, FramedSTFT, factors, framed, stft_macs
from s2g_deploy.models.bsrnn import istft, stft
from s2g_deploy.models.registry import PRESETS

LENGTHS = [1, 15, 64, 1000, 4001]


def _torch_stft(x, n_fft, hop):
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)
    return torch.view_as_real(spec)


def _torch_istft(spec, n_fft, hop, length):
    window = torch.hann_window(n_fft)
    return torch.istft(torch.view_as_complex(spec.contiguous()), n_fft, hop, window=window, center=True, length=length)


@pytest.mark.parametrize("preset", ["tiny", "xsmall"])
@pytest.mark.parametrize("length", LENGTHS)
def test_stft_matches_the_models_stft(preset, length):
    c = PRESETS[preset].config
    x = torch.rand(2, length, generator=torch.Generator().manual_seed(length)) * 2 - 1
    ours, ref = ConvSTFT(c.n_fft, c.hop_length)(x), stft(x, c)
    assert ours.shape == ref.shape == (2, c.n_bins, c.frames(length), 2)
    # float32 sums over n_fft products: error relative to the spectrum's magnitude
    assert (ours - ref).abs().max() <= 2e-6 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("preset", ["tiny", "xsmall"])
@pytest.mark.parametrize("length", LENGTHS)
def test_istft_matches_the_models_istft_on_arbitrary_spectra(preset, length):
    # arbitrary spectra (not an STFT of anything, nonzero imaginary DC/Nyquist), like a masked one
    c = PRESETS[preset].config
    g = torch.Generator().manual_seed(length)
    spec = torch.randn(2, c.n_bins, c.frames(length), 2, generator=g)
    ours, ref = ConvISTFT(c.n_fft, c.hop_length)(spec, length), istft(spec, c, length)
    assert ours.shape == ref.shape == (2, length)
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("n_fft", "hop"),
    [(64, 16), (63, 16), (64, 40), (128, 32), (512, 128)],  # odd n_fft; hop > n_fft/2 (zero-extended end)
)
def test_against_torch_for_other_shapes(n_fft, hop):
    g = torch.Generator().manual_seed(n_fft + hop)
    for length in (hop * 7 + 5, hop * 20):
        x = torch.rand(3, length, generator=g) * 2 - 1
        ref = _torch_stft(x, n_fft, hop)
        ours = ConvSTFT(n_fft, hop)(x)
        assert ours.shape == ref.shape
        assert (ours - ref).abs().max() <= 2e-6 * ref.abs().max()
        spec = torch.randn(ref.shape, generator=g)
        assert (ConvISTFT(n_fft, hop)(spec, length) - _torch_istft(spec, n_fft, hop, length)).abs().max() <= 1e-5


def test_round_trip_is_identity():
    c = PRESETS["xsmall"].config
    x = torch.rand(2, 5003) * 2 - 1
    y = ConvISTFT(c.n_fft, c.hop_length)(ConvSTFT(c.n_fft, c.hop_length)(x), x.shape[-1])
    assert (y - x).abs().max() <= 1e-5


def test_shared_basis_is_one_tensor():
    s = ConvSTFT(64, 16)
    i = ConvISTFT(64, 16, basis=s.basis)
    assert i.basis is s.basis
    assert torch.equal(ConvISTFT(64, 16).basis, s.basis)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is deprecated, and chosen
def test_exported_pair_keeps_the_length_dynamic():
    import io

    import onnxruntime as ort

    class RoundTrip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stft, self.istft = ConvSTFT(64, 16), ConvISTFT(64, 16)

        def forward(self, x):
            return self.istft(self.stft(x) * 0.5, x.shape[-1])

    buffer = io.BytesIO()
    torch.onnx.export(
        RoundTrip(),
        (torch.randn(1, 1000),),
        buffer,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b", 1: "s"}, "y": {0: "b", 1: "s"}},
        opset_version=17,
        dynamo=False,
    )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for length in (1, 37, 999, 4321):
        x = np.random.default_rng(length).uniform(-1, 1, (2, length)).astype(np.float32)
        y = session.run(None, {"x": x})[0]
        assert y.shape == x.shape
        assert np.abs(y - 0.5 * x).max() <= 1e-5


def test_stft_macs_formula():
    c = PRESETS["xsmall"].config
    macs = stft_macs(c, 16000)
    frames = c.frames(16000)
    # framed, n_fft 512 = P 32 x Q 16 (hop 128): 2Q x P x P + 2Q x (Q + 2) x P = 32,768 + 18,432 = 51,200
    # per frame each way (a full DFT basis: 2 x 257 x 512 = 263,168)
    assert factors(c.n_fft, c.hop_length) == (32, 16)
    assert macs == {"stft": 51_200 * frames, "istft": 51_200 * frames}
    odd = dataclasses.replace(c, n_fft=510, hop_length=128, band_widths=(*c.band_widths[:-1], 32))
    assert not framed(odd.n_fft, odd.hop_length)
    macs = stft_macs(odd, 16000)
    assert macs["stft"] == macs["istft"] == 2 * odd.n_bins * odd.n_fft * odd.frames(16000)
    assert macs["istft_envelope"] == odd.n_fft * odd.frames(16000)


def _time_major(spec):  # (B, F, T, 2) -> (T, B, 2, F), the framed transforms' layout
    return spec.permute(2, 0, 3, 1)


@pytest.mark.parametrize("preset", ["tiny", "xsmall"])
@pytest.mark.parametrize("length", LENGTHS)
def test_framed_pair_matches_the_models_transforms(preset, length):
    c = PRESETS[preset].config
    assert framed(c.n_fft, c.hop_length)
    g = torch.Generator().manual_seed(length)
    x = torch.rand(2, length, generator=g) * 2 - 1
    ours, ref = FramedSTFT(c.n_fft, c.hop_length)(x), _time_major(stft(x, c))
    assert ours.shape == ref.shape == (c.frames(length), 2, 2, c.n_bins)
    assert (ours - ref).abs().max() <= 2e-6 * max(1.0, ref.abs().max().item())
    spec = torch.randn(2, c.n_bins, c.frames(length), 2, generator=g)  # arbitrary, like a masked one
    ours, ref = FramedISTFT(c.n_fft, c.hop_length)(_time_major(spec), length), istft(spec, c, length)
    assert ours.shape == ref.shape == (2, length)
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize(("n_fft", "hop"), [(64, 32), (128, 16), (256, 64), (512, 128), (12, 4), (96, 32), (1024, 256)])
def test_framed_pair_against_torch_for_other_shapes(n_fft, hop):
    g = torch.Generator().manual_seed(n_fft + hop)
    for length in (hop * 7 + 5, hop * 20, 3):
        x = torch.rand(3, length, generator=g) * 2 - 1
        ref = _torch_stft(x, n_fft, hop)
        ours = FramedSTFT(n_fft, hop)(x)
        assert (ours - _time_major(ref)).abs().max() <= 2e-6 * ref.abs().max()
        spec = torch.randn(ref.shape, generator=g)
        out = FramedISTFT(n_fft, hop)(_time_major(spec), length)
        assert (out - _torch_istft(spec, n_fft, hop, length)).abs().max() <= 1e-5


def test_factors_divide_the_hop_and_come_near_the_square_root():
    cases = {(4, 2): (2, 2), (12, 4): (3, 4), (64, 32): (8, 8), (256, 128): (16, 16), (512, 128): (32, 16)}
    cases |= {(1024, 256): (32, 32), (2048, 512): (64, 32), (96, 32): (12, 8), (512, 8): (64, 8), (64, 2): (32, 2)}
    assert {size: factors(*size) for size in cases} == cases


def test_framed_refuses_sizes_it_cannot_frame():
    for n_fft, hop in ((63, 16), (64, 40), (66, 33)):
        assert not framed(n_fft, hop)
        with pytest.raises(ValueError, match="even hop that divides n_fft"):
            FramedSTFT(n_fft, hop)
