"""The architecture registry: a second architecture plugs in with one module and one ``register`` call.

The toy below (a per-frame MLP mask network, elastic in depth and width) lives only in this test. It
trains a step, and the package's own code slices it, counts its costs, exports it and checks parity,
without a line of it knowing the toy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.func import functional_call

from s2g_deploy import api
from s2g_deploy.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from s2g_deploy.models.bsrnn import complex_multiply, istft, stft
from s2g_deploy.models.registry import Architecture, architecture_of, get_architecture, get_preset, register
from s2g_deploy.slicing import slice_subnet
from s2g_deploy.subnet import ElasticSpace, Subnet


@dataclass(frozen=True)
class ToyConfig:
    sample_rate_hz: int
    n_fft: int
    hop_length: int
    feature_dim: int
    num_blocks: int

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.hop_length

    def samples_for_frames(self, frames: int) -> int:
        return (frames - 1) * self.hop_length

    def with_size(self, feature_dim: int, num_blocks: int) -> ToyConfig:
        return dataclasses.replace(self, feature_dim=feature_dim, num_blocks=num_blocks)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ToyConfig:
        return cls(**data)


class ToyMask(nn.Module):
    """Per frame: [Re; Im] of every bin -> Linear -> tanh -> residual Linear+tanh blocks -> Linear -> mask."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        two_f, n = 2 * config.n_bins, config.feature_dim
        self.fc_in = nn.Linear(two_f, n)
        self.blocks = nn.ModuleList(nn.Linear(n, n) for _ in range(config.num_blocks))
        self.fc_out = nn.Linear(n, two_f)

    def mask(self, spec: torch.Tensor) -> torch.Tensor:  # (B, F, T, 2) -> (B, F, T, 2)
        z = torch.tanh(self.fc_in(spec.permute(0, 2, 1, 3).flatten(2)))  # (B, T, N)
        for block in self.blocks:
            z = z + torch.tanh(block(z))
        return self.fc_out(z).unflatten(-1, (self.config.n_bins, 2)).permute(0, 2, 1, 3)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = stft(wav, self.config)
        return istft(complex_multiply(self.mask(spec), spec), self.config, wav.shape[-1])


def toy_slice_state(state, full: ToyConfig, subnet: Subnet):
    sub = full.with_size(feature_dim=subnet.width, num_blocks=subnet.depth)
    n, out = sub.feature_dim, {}
    for name, t in state.items():
        if name.startswith("blocks."):
            if int(name.split(".")[1]) >= subnet.depth:
                continue
            out[name] = t[:n, :n] if name.endswith("weight") else t[:n]
        elif name.startswith("fc_in."):
            out[name] = t[:n]
        else:  # fc_out: the output bins never change
            out[name] = t[:, :n] if name.endswith("weight") else t
    return sub, out


class ToySupernet(ToyMask):
    def __init__(self, config: ToyConfig, space: ElasticSpace):
        super().__init__(config)
        self.space = space

    def forward(self, wav: torch.Tensor, subnet: Subnet | None = None) -> torch.Tensor:
        full = Subnet(self.config.num_blocks, self.config.feature_dim)
        if subnet is None or subnet == full:
            return super().forward(wav)
        config, weights = toy_slice_state(dict(self.named_parameters()), self.config, self.space.check(subnet))
        with torch.device("meta"):
            template = ToyMask(config)
        return functional_call(template, weights, (wav,), strict=True)


def toy_params(c: ToyConfig) -> int:
    two_f, n = 2 * c.n_bins, c.feature_dim
    return two_f * n + n + c.num_blocks * (n * n + n) + n * two_f + two_f


def toy_macs_per_frame(c: ToyConfig) -> int:
    two_f, n = 2 * c.n_bins, c.feature_dim
    return two_f * n + c.num_blocks * n * n + n * two_f


TOY = Architecture(
    name="toy-mlp",
    title="Toy MLP",
    config=ToyConfig,
    dense=ToyMask,
    supernet=ToySupernet,
    slice_state=toy_slice_state,
    count_params=toy_params,
    macs_per_frame=toy_macs_per_frame,
    description="per-frame MLP mask network",
)


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    register(TOY)  # the one line that makes the toy known
    torch.manual_seed(0)
    config = ToyConfig(16000, 64, 16, feature_dim=8, num_blocks=2)
    supernet = ToySupernet(config, ElasticSpace((1, 2), (4, 8)))
    # one S2G training step: the full network plus a subnet, one backward pass
    optimizer = torch.optim.Adam(supernet.parameters(), lr=1e-3)
    mix, target = torch.randn(2, 1600), torch.randn(2, 1600)
    loss = sum((supernet(mix, s) - target).abs().mean() for s in (None, Subnet(1, 4)))
    loss.backward()
    optimizer.step()
    path = tmp_path_factory.mktemp("toy") / "toy.safetensors"
    save_checkpoint(path, supernet, CheckpointMeta(config, supernet.space))
    return path


def test_the_bsrnn_is_registered():
    bsrnn = get_architecture("bsrnn")
    assert bsrnn.title == "BSRNN" and architecture_of(get_preset("tiny").config) is bsrnn
    with pytest.raises(ValueError, match="unknown architecture 'nope'"):
        get_architecture("nope")


def test_a_registered_toy_loads_slices_and_is_costed(toy_checkpoint):
    ckpt = load_checkpoint(toy_checkpoint)
    assert ckpt.meta.architecture == "toy-mlp" and isinstance(ckpt.model, ToySupernet)
    dense = slice_subnet(ckpt.model, Subnet(1, 4))
    assert type(dense) is ToyMask and dense.config.feature_dim == 4
    wav = torch.randn(1, 800)
    with torch.no_grad():
        assert torch.allclose(dense(wav), ckpt.model(wav, Subnet(1, 4)), atol=1e-6)
    table = api.costs(toy_checkpoint)
    assert [str(e.subnet) for e in table.entries] == ["1x4", "1x8", "2x4", "2x8"]
    for entry in table.entries:  # fvcore on the dense toy agrees with the toy's own closed form
        assert entry.macs_per_frame == entry.closed_form_macs_per_frame, entry.subnet
        assert entry.params == toy_params(ToyConfig(16000, 64, 16, entry.subnet.width, entry.subnet.depth))


def test_a_registered_toy_exports_with_parity(toy_checkpoint, tmp_path):
    result = api.export(toy_checkpoint, subnet="2x4", out=tmp_path / "out", parity_seconds=(0.2, 0.45, 1.1))
    assert result.parity.passed and result.subnet == Subnet(2, 4)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["params"] == toy_params(ToyConfig(16000, 64, 16, 4, 2))
    assert (tmp_path / "out" / "model_card.md").read_text().startswith("# Toy MLP subnet 2x4")
    assert load_checkpoint(tmp_path / "out" / "dense.safetensors").meta.architecture == "toy-mlp"
