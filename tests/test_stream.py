"""The causal BSRNN and its stream export: causality, closed forms, slicing, stream parity, the delay,
state validation and the workload checks."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import make_supernet
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.cli.app import app
from s2g_deploy.cost import count_macs
from s2g_deploy.errors import InputError
from s2g_deploy.export.parity import parity_inputs
from s2g_deploy.export.stream import StreamingSeparator, torch_step
from s2g_deploy.models.config import causal_count_params, causal_macs_per_frame
from s2g_deploy.models.registry import get_preset
from s2g_deploy.runtime.stream import (
    session_runner,
    session_step,
    state_shapes,
    stream_settings,
    stream_signal,
    zero_states,
)
from s2g_deploy.slicing import slice_subnet
from s2g_deploy.subnet import Subnet

runner = CliRunner()
SR = 16000


@pytest.fixture(scope="module")
def causal():
    return make_supernet("tiny-causal", seed=3).eval()


@pytest.fixture(scope="module")
def causal_ckpt(tmp_path_factory, causal):
    from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint

    path = tmp_path_factory.mktemp("causal") / "tiny-causal.safetensors"
    save_checkpoint(path, causal, CheckpointMeta(causal.config, causal.space, training={"preset": "tiny-causal"}))
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint

    model = make_supernet("tiny")
    path = tmp_path_factory.mktemp("offline") / "tiny.safetensors"
    save_checkpoint(path, model, CheckpointMeta(model.config, model.space, training={"preset": "tiny"}))
    return path


@pytest.fixture(scope="module")
def stream_export(tmp_path_factory, causal_ckpt):
    out = tmp_path_factory.mktemp("stream") / "export"
    return api.export(causal_ckpt, subnet="2x4", out=out, parity_seconds=(0.3, 0.77, 2.0))


def _shifted_reference(dense, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return dense(torch.from_numpy(x)).numpy()


def test_causal_output_ignores_the_future(causal):
    """Output sample s depends on input up to the end of the hop holding s + D, and on nothing later."""
    c = causal.config
    D, hop = c.delay_samples, c.hop_length
    x = torch.from_numpy(parity_inputs(3000, SR))
    cut = 1600  # a hop boundary
    y = torch.cat([x[:, :cut], torch.randn(2, 3000 - cut)], dim=1)
    with torch.no_grad():
        for subnet in (Subnet(1, 4), Subnet(2, 8)):
            a, b = causal(x, subnet), causal(y, subnet)
            assert torch.equal(a[:, : cut - D], b[:, : cut - D])  # exactly: no statistics across time
            assert (a[:, cut - D : cut - D + hop] - b[:, cut - D : cut - D + hop]).abs().max() > 1e-4


@pytest.mark.parametrize("subnet", [Subnet(1, 4), Subnet(2, 8), Subnet(2, 4)])
def test_closed_forms_and_slicing_of_the_causal_model(causal, subnet):
    dense = slice_subnet(causal, subnet).eval()
    config = dense.config
    assert sum(p.numel() for p in dense.parameters()) == causal_count_params(config)
    # the forward-only time LSTM: one direction, H units, and a projection from H
    assert not dense.blocks[0].time.lstm.bidirectional and dense.blocks[0].time.proj.in_features == config.lstm_hidden
    assert count_macs(dense, 50 * config.hop_length).total == 50 * causal_macs_per_frame(config)
    x = torch.from_numpy(parity_inputs(1234, SR))
    with torch.no_grad():
        assert torch.equal(dense(x), causal(x, subnet))


@pytest.mark.parametrize("hops", [1, 3, 7])
@pytest.mark.parametrize("n", [1, 777, 4001])
def test_the_torch_stream_is_the_offline_model_delayed(causal, hops, n):
    dense = slice_subnet(causal, Subnet(2, 8)).eval()
    c = dense.config
    x = parity_inputs(n, SR)
    got = stream_signal(torch_step(StreamingSeparator(dense)), state_shapes(c), x, c.hop_length, c.delay_samples, hops)
    assert np.abs(got - _shifted_reference(dense, x)).max() <= 1e-5


def test_stream_export_certificate_and_metadata(stream_export):
    m = stream_export.manifest
    assert m["model"]["io"] == "stream" and m["parity"]["passed"]
    stages = [s["stage"] for s in m["parity"]["stages"]]
    assert {"onnx_1hop", "onnx_7hops", "onnx_simplified_1hop", "onnx_simplified_7hops"} <= set(stages)
    trace = m["settings"]["trace_samples"]
    assert trace not in m["parity"]["lengths_samples"] and len(m["parity"]["lengths_samples"]) >= 3
    import onnx

    props = {p.key: p.value for p in onnx.load(str(stream_export.paths["model"])).metadata_props}
    stream = json.loads(props["s2g.stream"])
    config = get_preset("tiny-causal").config
    assert stream["delay_samples"] == config.n_fft - config.hop_length
    assert stream["algorithmic_latency_samples"] == stream["delay_samples"] + stream["call_samples"]
    assert stream["algorithmic_latency_ms"] == pytest.approx(1000 * stream["algorithmic_latency_samples"] / SR)
    names = {s["name"]: s for s in stream["states"]}
    assert set(names) == {"state_stft", "state_h", "state_c", "state_ola"}
    assert names["state_h"]["shape"] == [2, "batch", config.n_bands, 8] and names["state_h"]["initial"] == "zeros"
    assert m["stream"] == {k: v for k, v in stream.items() if k != "states"}


@pytest.mark.parametrize("hops", [1, 2, 5])
def test_the_onnx_stream_reproduces_the_dense_model(stream_export, hops):
    from s2g_deploy.checkpoint import load_checkpoint

    dense = load_checkpoint(stream_export.paths["dense_checkpoint"]).model.eval()
    session = ort.InferenceSession(str(stream_export.paths["model"]), providers=["CPUExecutionProvider"])
    settings = stream_settings(dense.config, hops)
    for n in (999, 5003, 16000 * 3 + 17):  # none the traced call (3 hops)
        x = parity_inputs(n, SR, seed=n)
        assert np.abs(session_runner(session, settings)(x) - _shifted_reference(dense, x)).max() <= 1e-4


def _identity_mask(dense) -> None:
    """Make the mask 1 + 0j everywhere: value bias 1 (real) / 0 (imaginary), gates saturated open."""
    with torch.no_grad():
        for fc in dense.mask_estimation.fc2:
            fc.weight.zero_()
            half = fc.out_features // 2  # GLU: value (re then im), then gate
            g = half // 2
            fc.bias.zero_()
            fc.bias[:g] = 1.0
            fc.bias[half:] = 40.0


def test_an_impulse_comes_out_delay_samples_later(tmp_path, causal):
    """The delay the metadata states is the one measured: an impulse through a pass-through stream."""
    from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint

    dense = slice_subnet(causal, Subnet(1, 4)).eval()
    _identity_mask(dense)
    path = tmp_path / "identity.safetensors"
    save_checkpoint(path, dense, CheckpointMeta(dense.config, subnet=Subnet(1, 4)))
    result = api.export(path, out=tmp_path / "e", parity_seconds=(0.3, 0.5, 0.7))
    stream = result.manifest["stream"]
    session = ort.InferenceSession(str(result.paths["model"]), providers=["CPUExecutionProvider"])
    step, shapes = session_step(session)
    hop = stream["hop_length"]
    x = np.zeros((1, 40 * hop), np.float32)
    at = 17 * hop + 5
    x[0, at] = 1.0
    states, out = zero_states(shapes, 1), []
    for start in range(0, x.shape[1], hop):  # hop by hop, raw: no alignment
        y = step({"mixture": x[:, start : start + hop], **states})
        states = {k: y["next_" + k] for k in shapes}
        out.append(y["target"])
    out = np.concatenate(out, axis=1)[0]
    assert int(np.argmax(np.abs(out))) - at == stream["delay_samples"]
    assert out[at + stream["delay_samples"]] == pytest.approx(1.0, abs=1e-5)
    assert np.abs(np.delete(out, at + stream["delay_samples"])).max() < 1e-5


def test_states_of_the_wrong_shape_or_dtype_are_refused(stream_export):
    streamer = api.open_stream(stream_export.out)
    hop = streamer.hop_length
    assert streamer.process(np.zeros((1, 3 * hop), np.float32)).shape == (1, 3 * hop)
    good = streamer.states
    with pytest.raises(InputError, match=r"state state_h: expected float32 of shape \[2, 1, 4, 8\], got float64"):
        streamer.set_states({**good, "state_h": good["state_h"].astype(np.float64)})
    with pytest.raises(InputError, match=r"state state_c: expected float32 of shape \[2, 1, 4, 8\].*\[2, 1, 4, 7\]"):
        streamer.set_states({**good, "state_c": np.zeros((2, 1, 4, 7), np.float32)})
    with pytest.raises(InputError, match="state state_ola: missing"):
        streamer.set_states({k: v for k, v in good.items() if k != "state_ola"})
    with pytest.raises(InputError, match=r"mixture: a stream call takes \(batch 1, k x 32\)"):
        streamer.process(np.zeros((1, hop + 1), np.float32))
    assert streamer.states.keys() == good.keys()  # a refused call changes nothing
    # onnxruntime itself refuses them too: never a silent run on garbage
    session = ort.InferenceSession(str(stream_export.paths["model"]), providers=["CPUExecutionProvider"])
    feed = {"mixture": np.zeros((1, hop), np.float32), **good, "state_h": np.zeros((2, 1, 4, 9), np.float32)}
    with pytest.raises(Exception, match="state_h"):
        session.run(None, feed)


def test_streamer_continues_the_stream(stream_export):
    """Calls of any size through the public Streamer equal one whole-signal stream."""
    streamer = api.open_stream(stream_export.out, batch=2)
    hop = streamer.hop_length
    x = parity_inputs(30 * hop, SR)
    parts, start = [], 0
    for k in (1, 4, 2, 7, 16):
        parts.append(streamer.process(x[:, start : start + k * hop]))
        start += k * hop
    session = ort.InferenceSession(str(stream_export.paths["model"]), providers=["CPUExecutionProvider"])
    step, shapes = session_step(session)
    whole = step({"mixture": x, **zero_states(shapes, 2)})["target"]
    assert np.abs(np.concatenate(parts, axis=1) - whole).max() <= 1e-5
    assert streamer.delay_samples == 32 and streamer.hop_length == 32  # tiny-causal: n_fft 64, hop 32


def test_workloads_and_architectures_must_agree(tmp_path, causal_ckpt, tiny_ckpt, stream_export):
    result = runner.invoke(
        app, ["export", str(tiny_ckpt), "--io", "stream", "--subnet", "1x4", "--out", str(tmp_path / "a")]
    )
    assert result.exit_code == 2 and "cannot stream" in result.output and "xsmall-causal" in result.output
    result = runner.invoke(
        app, ["export", str(causal_ckpt), "--io", "waveform", "--subnet", "1x4", "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 2 and "exports as --io stream" in result.output
    result = runner.invoke(app, ["export", str(tiny_ckpt), "--profile", "earbud", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "profile 'earbud' runs a stream workload" in result.output
    result = runner.invoke(app, ["search", str(causal_ckpt), "--profile", "laptop"])
    assert result.exit_code == 2 and "runs a chunk workload" in result.output
    # a stream export given a chunk workload, and the reverse
    result = runner.invoke(app, ["bench", str(stream_export.out), "--device", "laptop", "--no-manifest"])
    assert result.exit_code == 2 and "cannot run profile 'laptop'" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def test_a_stream_profile_needs_whole_hops_per_call(tmp_path, causal_ckpt):
    profile = tmp_path / "odd.toml"
    text = (load_text("earbud")).replace("chunk_seconds = 0.008", "chunk_seconds = 0.005")
    profile.write_text(text)
    result = runner.invoke(app, ["export", str(causal_ckpt), "--profile", str(profile), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert (
        "workload.chunk_seconds: a stream call of 5 ms is not a whole number of this model's 2 ms hops" in result.output
    )


def test_workload_mode_is_validated(tmp_path):
    from s2g_deploy.errors import ProfileError
    from s2g_deploy.profiles import read_profile

    path = tmp_path / "bad.toml"
    path.write_text(load_text("earbud").replace('mode = "stream"', 'mode = "streaming"'))
    with pytest.raises(ProfileError, match=r"workload\.mode: must be one of chunk, offline, stream"):
        read_profile(path)


def load_text(name: str) -> str:
    from s2g_deploy.profiles import shipped_profiles

    return shipped_profiles()[name].read_text()


def test_bench_of_a_stream_reports_calls_and_deadlines(tmp_path, stream_export):
    profile = tmp_path / "s.toml"
    text = load_text("earbud").replace("chunk_seconds = 0.008", "chunk_seconds = 0.004")
    text = text.replace("timed_runs = 500", "timed_runs = 50").replace("min_duration_s = 5.0", "min_duration_s = 0.0")
    text = text.replace('precision = "int8-dynamic"', 'precision = "fp32"')
    profile.write_text(text)
    result = runner.invoke(app, ["bench", str(stream_export.out), "--device", str(profile), "--json", "--no-manifest"])
    assert result.exit_code in (0, 4), result.output
    report = json.loads(result.stdout)
    assert report["io"] == "stream" and report["input_shape"] == [1, 64]
    assert report["stream"]["hops_per_call"] == 2 and report["stream"]["call_ms"] == 4.0
    assert report["stream"]["algorithmic_latency_ms"] == pytest.approx(1000 * (32 + 64) / SR)
    d = report["deadline"]
    assert d["deadline_ms"] == 4.0 and d["runs"] == report["protocol"]["runs"] >= 50
    assert d["misses"] == sum(1 for t in report["samples_ms"] if t > 4.0)
    assert d["miss_rate"] == d["misses"] / d["runs"]


def test_search_of_a_stream_profile_counts_one_frame_per_hop(causal_ckpt):
    from s2g_deploy.profiles import load_profile
    from s2g_deploy.search import search

    earbud = load_profile("earbud")  # 8 ms calls: 4 hops of the tiny preset's 2 ms
    result = search(causal_ckpt, None, earbud, latency_model=None, precision="fp32")
    chosen = result.chosen
    config = get_preset("tiny-causal").config.with_size(chosen.subnet.width, chosen.subnet.depth)
    assert chosen.macs_per_chunk == 4 * causal_macs_per_frame(config)
    assert chosen.macs_per_second == 500 * causal_macs_per_frame(config)  # 16000 / 32 frames per second
    assert result.checkpoint == str(causal_ckpt)


def test_bench_compare_torch_is_refused_for_a_stream(stream_export, tmp_path):
    profile = tmp_path / "s.toml"
    profile.write_text(load_text("earbud").replace("chunk_seconds = 0.008", "chunk_seconds = 0.004"))
    result = runner.invoke(app, ["bench", str(stream_export.out), "--device", str(profile), "--compare", "torch"])
    assert result.exit_code == 2 and "--compare torch times chunks on their own" in result.output
