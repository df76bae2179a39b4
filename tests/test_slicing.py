import random

import pytest
import torch
from conftest import make_supernet
from torch import nn

from s2g_deploy.errors import SubnetError
from s2g_deploy.models.bsrnn import BSRNN
from s2g_deploy.slicing import bidirectional_columns, lstm_gate_rows, slice_subnet
from s2g_deploy.subnet import ElasticSpace, Subnet

LENGTHS = (1600, 2345)  # two input lengths, one not a multiple of the hop


def _max_diff(supernet, dense, length, seed=0):
    wav = torch.randn(2, length, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (supernet(wav, dense_subnet(dense)) - dense(wav)).abs().max().item()


def dense_subnet(dense: BSRNN) -> Subnet:
    return Subnet(dense.config.num_blocks, dense.config.feature_dim)


def test_every_tiny_subnet_matches_the_supernet(tiny):
    for subnet in tiny.space.grid():
        dense = slice_subnet(tiny, subnet)
        for length in LENGTHS:
            assert _max_diff(tiny, dense, length) <= 1e-5, (subnet, length)


def test_sampled_xsmall_subnets_match_the_supernet(xsmall):
    grid = xsmall.space.grid()
    sample = [grid[0], grid[-1], *random.Random(0).sample(grid[1:-1], 4)]
    for subnet in sample:
        dense = slice_subnet(xsmall, subnet)
        for length in LENGTHS:
            assert _max_diff(xsmall, dense, length) <= 1e-5, (subnet, length)


def test_subnets_differ_from_each_other(tiny):
    # guards the parity tests: if every subnet computed the same thing, they would prove nothing
    wav = torch.randn(1, 2000)
    with torch.no_grad():
        outs = [tiny(wav, s) for s in tiny.space.grid()]
    for a in range(len(outs)):
        for b in range(a + 1, len(outs)):
            assert (outs[a] - outs[b]).abs().max() > 1e-3


def test_dense_model_is_plain_and_owns_its_weights(xsmall):
    subnet = Subnet(2, 16)
    dense = slice_subnet(xsmall, subnet)
    assert type(dense) is BSRNN
    assert (dense.config.num_blocks, dense.config.feature_dim, dense.config.lstm_hidden) == (2, 16, 32)
    lstm = dense.blocks[0].time.lstm
    assert type(lstm) is nn.LSTM and (lstm.input_size, lstm.hidden_size) == (16, 32)
    assert dense.blocks[0].time.proj.weight.shape == (16, 64)
    assert dense.mask_estimation.fc1[0].weight.shape == (64, 16)
    super_ptrs = {p.untyped_storage().data_ptr() for p in xsmall.parameters()}
    for name, p in dense.named_parameters():
        assert p.is_contiguous(), name
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size(), name  # no parent storage
        assert p.untyped_storage().data_ptr() not in super_ptrs, name
    # changing the supernet afterwards leaves the dense model alone
    before = dense(torch.ones(1, 800)).detach()
    with torch.no_grad():
        for p in xsmall.parameters():
            p.add_(1.0)
    try:
        assert torch.equal(dense(torch.ones(1, 800)).detach(), before)
    finally:
        with torch.no_grad():
            for p in xsmall.parameters():
                p.sub_(1.0)


def test_gate_aware_lstm_slice_matches_an_lstm_whose_extra_units_are_cut_off():
    # Independent of slice_state: a big BLSTM whose units >= h never feed units < h, and whose inputs
    # >= n are zero, computes in its first h units exactly what the sliced small BLSTM computes.
    torch.manual_seed(0)
    N, H, n, h, T = 6, 10, 4, 7, 9
    big = nn.LSTM(N, H, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for sfx in ("_l0", "_l0_reverse"):
            w_hh = getattr(big, "weight_hh" + sfx)
            for g in range(4):
                w_hh[g * H : g * H + h, h:] = 0  # units < h ignore units >= h
    small = nn.LSTM(n, h, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for sfx in ("_l0", "_l0_reverse"):
            getattr(small, "weight_ih" + sfx).copy_(lstm_gate_rows(getattr(big, "weight_ih" + sfx), H, h)[:, :n])
            getattr(small, "weight_hh" + sfx).copy_(lstm_gate_rows(getattr(big, "weight_hh" + sfx), H, h)[:, :h])
            for b in ("bias_ih", "bias_hh"):
                getattr(small, b + sfx).copy_(lstm_gate_rows(getattr(big, b + sfx), H, h))
    x = torch.randn(3, T, n)
    y_big, _ = big(torch.cat([x, torch.zeros(3, T, N - n)], dim=-1))
    y_small, _ = small(x)
    assert torch.allclose(y_big[..., :h], y_small[..., :h], atol=1e-6)  # forward direction
    assert torch.allclose(y_big[..., H : H + h], y_small[..., h:], atol=1e-6)  # reverse direction
    # and a projection over [forward; reverse] keeps columns [0:h] and [H:H+h]
    proj = torch.randn(5, 2 * H)
    kept = bidirectional_columns(proj, H, h)
    assert torch.equal(kept, torch.cat([proj[:, :h], proj[:, H : H + h]], dim=1))


def test_gradients_reach_only_the_sliced_weights():
    supernet = make_supernet("xsmall").train()
    subnet = Subnet(2, 16)
    n, h, m, N, H = 16, 32, 64, 32, 64
    supernet(torch.randn(2, 1600), subnet).pow(2).mean().backward()
    grads = {k: p.grad for k, p in supernet.named_parameters()}
    for k, g in grads.items():
        if k.startswith(("blocks.2.", "blocks.3.")):
            assert g is None or not g.any(), k  # skipped blocks
    lstm = grads["blocks.0.time.lstm.weight_ih_l0_reverse"]
    used = torch.zeros_like(lstm, dtype=torch.bool)
    for gate in range(4):
        used[gate * H : gate * H + h, :n] = True
    assert not lstm[~used].any() and lstm[used].abs().sum() > 0
    hh = grads["blocks.1.band.lstm.weight_hh_l0"]
    used = torch.zeros_like(hh, dtype=torch.bool)
    for gate in range(4):
        used[gate * H : gate * H + h, :h] = True
    assert not hh[~used].any() and hh[used].abs().sum() > 0
    proj = grads["blocks.0.band.proj.weight"]
    assert not proj[n:].any() and not proj[:, h:H].any() and not proj[:, H + h :].any()
    assert proj[:n, :h].abs().sum() > 0 and proj[:n, H : H + h].abs().sum() > 0
    assert not grads["blocks.1.time.norm.weight"][n:].any()
    assert not grads["band_split.fcs.3.weight"][n:].any() and grads["band_split.fcs.3.weight"][:n].any()
    fc1 = grads["mask_estimation.fc1.2.weight"]
    assert not fc1[m:].any() and not fc1[:, n:].any() and fc1[:m, :n].any()
    fc2 = grads["mask_estimation.fc2.2.weight"]
    assert not fc2[:, m:].any() and fc2[:, :m].any()
    assert supernet.config.feature_dim == N and supernet.config.lstm_hidden == H


def test_full_subnet_is_the_supernet_itself(tiny):
    dense = slice_subnet(tiny, tiny.space.largest)
    wav = torch.randn(1, 1000)
    with torch.no_grad():
        assert torch.equal(dense(wav), tiny(wav))


def test_subnet_outside_the_space_lists_the_valid_ones(tiny):
    with pytest.raises(SubnetError, match=r"subnet 2x6 is not in .*depths 1,2 x widths 4,8"):
        slice_subnet(tiny, Subnet(2, 6))
    with pytest.raises(SubnetError, match="depths 1,2"):
        tiny(torch.randn(1, 100), Subnet(3, 8))


@pytest.mark.parametrize("text", ["6x", "x48", "6*48", "abc", "-1x8", ""])
def test_malformed_subnet_strings_are_rejected(text):
    with pytest.raises(SubnetError, match="DEPTHxWIDTH"):
        Subnet.parse(text)


def test_subnet_parse_and_grid():
    assert Subnet.parse(" 6X48 ") == Subnet(6, 48) and str(Subnet(6, 48)) == "6x48"
    space = ElasticSpace((2, 1), (8, 4, 8))
    assert space.grid() == [Subnet(1, 4), Subnet(1, 8), Subnet(2, 4), Subnet(2, 8)]
