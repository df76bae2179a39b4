import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from s2g_deploy import api
from s2g_deploy.checkpoint import CheckpointMeta, load_checkpoint, read_meta, save_checkpoint
from s2g_deploy.errors import CheckpointError
from s2g_deploy.models.elastic import ElasticBSRNN
from s2g_deploy.slicing import slice_subnet
from s2g_deploy.subnet import Subnet


@pytest.fixture
def supernet_file(tmp_path, tiny):
    path = tmp_path / "supernet.safetensors"
    save_checkpoint(path, tiny, CheckpointMeta(tiny.config, tiny.space, training={"steps": 3}))
    return path


def test_supernet_round_trip_is_exact(supernet_file, tiny):
    ckpt = load_checkpoint(supernet_file)
    assert isinstance(ckpt.model, ElasticBSRNN) and ckpt.meta.kind == "supernet"
    assert ckpt.meta.space == tiny.space and ckpt.meta.config == tiny.config
    assert ckpt.meta.training == {"steps": 3} and ckpt.meta.versions["torch"] == torch.__version__
    wav = torch.randn(2, 1500)
    with torch.no_grad():
        for s in tiny.space.grid():
            assert torch.equal(ckpt.model(wav, s), tiny(wav, s))


def test_dense_round_trip_keeps_parity_with_the_supernet(tmp_path, supernet_file, tiny):
    for subnet in tiny.space.grid():
        out = tmp_path / f"{subnet}.safetensors"
        meta = api.slice_to_file(supernet_file, subnet, out)
        assert meta.subnet == subnet and meta.parent_sha256 == read_meta(supernet_file).weights_sha256
        dense = load_checkpoint(out)
        assert dense.meta.kind == "dense" and dense.meta.subnet == subnet
        for length in (1234, 3000):
            wav = torch.randn(2, length)
            with torch.no_grad():
                assert (dense.model(wav) - tiny(wav, subnet)).abs().max() <= 1e-5


def test_save_is_deterministic(tmp_path, tiny):
    meta = CheckpointMeta(tiny.config, tiny.space)
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_checkpoint(a, tiny, meta)
    save_checkpoint(b, tiny, meta)
    assert a.read_bytes() == b.read_bytes()


def test_truncated_file_is_a_one_line_error(tmp_path, supernet_file):
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(supernet_file.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_checkpoint(bad)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    tiny_bad = tmp_path / "short.safetensors"
    tiny_bad.write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="too short"):
        load_checkpoint(tiny_bad)


def test_other_formats_are_rejected(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("hello world, this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(text)
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)  # a valid safetensors file, but not ours
    with pytest.raises(CheckpointError, match="not an s2g checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_shape_mismatch_names_the_tensor(tmp_path, supernet_file):
    from safetensors.torch import load_file

    state = load_file(supernet_file)
    header = read_meta(supernet_file)
    state["blocks.0.time.proj.bias"] = torch.zeros(5)
    bad = tmp_path / "mismatch.safetensors"
    raw = {"s2g_deploy.checkpoint": json.dumps({"format_version": 1, **header.to_dict()})}
    save_file(state, bad, metadata=raw)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.time\.proj\.bias has shape \[5\], expected \[8\]"):
        load_checkpoint(bad)


def test_flipped_weight_bytes_fail_the_hash(tmp_path, supernet_file):
    data = bytearray(supernet_file.read_bytes())
    data[-7] ^= 0xFF
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="hash"):
        load_checkpoint(bad)


class _Exploit:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_are_refused_without_being_executed(tmp_path, tiny):
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    raw = tmp_path / "model.pkl"
    raw.write_bytes(pickle.dumps({"state": _Exploit()}, protocol=2))
    pt = tmp_path / "model.pt"
    torch.save(tiny.state_dict(), pt)  # a zip-based torch checkpoint
    for path in (raw, pt):
        with pytest.raises(CheckpointError, match="pickle"):
            load_checkpoint(path)
    assert not marker.exists()


def test_future_format_version_is_refused(tmp_path):
    path = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(1)}, path, metadata={"s2g_deploy.checkpoint": '{"format_version": 99}'})
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_header_length_guard(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="bad header"):
        load_checkpoint(path)


def test_slicing_a_dense_checkpoint_is_refused(tmp_path, supernet_file):
    dense = tmp_path / "dense.safetensors"
    api.slice_to_file(supernet_file, Subnet(1, 4), dense)
    with pytest.raises(CheckpointError.__mro__[1], match="not a supernet"):
        api.slice_to_file(dense, Subnet(1, 4), tmp_path / "again.safetensors")


def test_slice_subnet_works_on_loaded_model(supernet_file):
    ckpt = load_checkpoint(supernet_file)
    dense = slice_subnet(ckpt.model, Subnet(1, 8))
    assert dense.config.num_blocks == 1
