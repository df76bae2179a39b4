"""Quantized exports: int8 graph contents, the quality gate, fp16 refusal, model-byte budgets, metadata, releases."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import make_supernet
from onnx import numpy_helper
from runtime_helpers import profile_toml, quick_profile
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import ProfileError, VerificationError
from s2g_deploy.export import compact, parity
from s2g_deploy.export.stft import framed_bases
from s2g_deploy.models.registry import get_preset
from s2g_deploy.precision import cpu_features, parameter_bytes, quantization_settings
from s2g_deploy.profiles import parse_profile

runner = CliRunner()
QUALITY = {
    "metric": "usdr_db",
    "subnets": {s: {"usdr_db": q} for s, q in (("1x4", 3.0), ("1x8", 4.0), ("2x4", 5.0), ("2x8", 6.0))},
}


@pytest.fixture(scope="module", autouse=True)
def short_parity():
    """Parity at 0.2-1.1 s for the tiny model, as in test_export (three lengths, none the traced one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parity, "PARITY_SECONDS", (0.2, 0.45, 1.1))
        yield


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    model = make_supernet("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    meta = CheckpointMeta(model.config, model.space, training={"preset": "tiny", "target": "vocals"}, quality=QUALITY)
    save_checkpoint(path, model, meta)
    return path


@pytest.fixture(scope="module")
def gate_dir(tmp_path_factory) -> Path:
    """Held-out stems for the gate: two rendered test-split tracks of 2 s (a stems folder, as --gate-data takes)."""
    from s2g_deploy.data.render import RenderRequest, render

    out = tmp_path_factory.mktemp("gate") / "stems"
    render(RenderRequest(out=out, tracks=2, seconds=2.0, soundfont="TimGM6mb", split="test"))
    return out


@pytest.fixture(scope="module")
def int8_export(tiny_ckpt, gate_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "x"
    return api.export(tiny_ckpt, subnet="2x8", precision="int8-dynamic", gate_data=gate_dir, out=out)


@pytest.fixture(scope="module")
def fp32_export(tiny_ckpt, tmp_path_factory):
    return api.export(tiny_ckpt, subnet="2x8", out=tmp_path_factory.mktemp("fp32") / "x")


def _ops(path: Path) -> dict[str, int]:
    model = onnx.load(str(path))
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def test_int8_graph_quantizes_the_network_and_keeps_the_stft_float(int8_export, fp32_export):
    ops, fp32_ops = _ops(int8_export.paths["model"]), _ops(fp32_export.paths["model"])
    assert ops["DynamicQuantizeLSTM"] == fp32_ops["LSTM"] and ops["MatMulInteger"] > 0
    assert "ConvInteger" not in ops and "LSTM" not in ops and "Gemm" not in ops
    model = onnx.load(str(int8_export.paths["model"]))
    dsp = [n for n in model.graph.node if n.op_type == "MatMul" and n.name.startswith(("/stft/", "/istft/"))]
    assert len(dsp) == 4  # the framed STFT's and iSTFT's products stay float MatMuls
    bases = {
        k: v.float().numpy() for k, v in framed_bases(64, get_preset("tiny").config.hop_length).items() if ".stage" in k
    }
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    stored |= {
        n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant"
    }
    for node in dsp:  # each Cooley-Tukey basis: stored float32, exactly the float64 one rounded once
        (constant,) = (stored[i] for i in node.input if i in stored)
        assert constant.dtype == np.float32
        assert any(v.shape == constant.shape and np.array_equal(v, constant) for v in bases.values())
    assert int8_export.paths["model"].stat().st_size < fp32_export.paths["model"].stat().st_size


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory):
    """A tiny supernet whose hop (24) does not divide n_fft (64): its export keeps the convolution STFT."""
    import dataclasses

    from s2g_deploy.models.registry import architecture_of

    p = get_preset("tiny")
    config = dataclasses.replace(p.config, hop_length=24)
    model = architecture_of(config).load("supernet")(config, p.space).eval()
    path = tmp_path_factory.mktemp("conv") / "conv.safetensors"
    save_checkpoint(path, model, CheckpointMeta(config, p.space, training={"preset": "tiny", "target": "vocals"}))
    return api.export(path, subnet="2x8", out=tmp_path_factory.mktemp("conv-export") / "x")


def test_the_in_graph_basis_is_folded_at_load_and_exact(conv_export, fp32_export, tmp_path):
    import onnxruntime as ort

    from s2g_deploy.export.stft import _dft_basis

    assert np.array_equal(compact.dft_basis(64), _dft_basis(64)[0].float().numpy())
    framed_model = fp32_export.paths["model"].read_bytes()
    assert compact.compute_basis_in_graph(framed_model, 64) == (framed_model, compact.Compacted((), 0, None))
    fp32 = conv_export.paths["model"].read_bytes()
    computed, record = compact.compute_basis_in_graph(fp32, 64)
    assert record.replaced and record.bytes_saved == compact.dft_basis(64).nbytes
    assert record.max_abs_difference <= compact.MAX_BASIS_DIFFERENCE
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(computed, options, providers=["CPUExecutionProvider"])
    assert not {"Cos", "Sin", "Range"} & set(_ops(tmp_path / "optimized.onnx"))  # folded once, at load
    x = parity.parity_inputs(4003, 16000)
    y = [
        ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, {"mixture": x})[0]
        for m in (fp32, computed)
    ]
    assert np.array_equal(y[0], y[1])


def test_manifest_metadata_and_card_record_precision_settings_cpu_and_gate(int8_export):
    m = int8_export.manifest
    assert m["precision"] == m["settings"]["precision"] == "int8-dynamic"
    q, gate = m["quantization"], m["gate"]
    expected = quantization_settings()
    assert q["reduce_range"] == expected.reduce_range == (not cpu_features().vnni) and q["reduce_range_reason"]
    assert q["per_channel"] is True and q["cpu"]["vnni"] == cpu_features().vnni
    assert gate["passed"] and gate["limit_usdr_drop_db"] == 0.5 and gate["data"]["kind"] == "stems"
    assert gate["workload"]["label"] == "whole clip" and len(gate["track_drops_usdr_db"]) == 2
    assert q["parity"]["passed"] and len(q["parity"]["lengths_samples"]) == 3
    assert q["parity"]["required_snr_db"] == gate["required_parity_snr_db"]
    pb = m["costs"]["parameter_bytes"]
    assert pb["closed_form"] == parameter_bytes(make_supernet("tiny").config.with_size(8, 2), "int8-dynamic")
    assert abs(pb["graph"] - pb["closed_form"]) <= 0.01 * pb["closed_form"]
    macs = m["costs"]["macs_by_precision"]
    assert macs["int8"] == m["costs"]["macs_per_second"]["network"] and "DynamicQuantizeLSTM" in macs["int8_ops"]
    assert m["model"]["file_bytes"] == int8_export.paths["model"].stat().st_size
    props = {p.key: p.value for p in onnx.load(str(int8_export.paths["model"])).metadata_props}
    assert props["s2g.precision"] == "int8-dynamic" and int(props["s2g.parameter_bytes"]) == pb["graph"]
    assert json.loads(props["s2g.quantization"])["cpu"]["vnni"] == cpu_features().vnni
    assert json.loads(props["s2g.gate"])["passed"] is True
    card = int8_export.paths["model_card"].read_text()
    assert "## Precision" in card and "int8-dynamic" in card and "Quality gate" in card


@pytest.fixture(scope="module")
def perfect_dir(gate_dir, fp32_export, tmp_path_factory) -> Path:
    """Gate tracks on which the fp32 model is perfect: each target is the fp32 file's own output for its mixture
    (whole 2-s tracks, so the gate scores exactly these samples). Any change the int8 model makes is a loss."""
    import soundfile as sf

    from s2g_deploy.runtime.session import build_session

    session = build_session(fp32_export.paths["model"])
    out = tmp_path_factory.mktemp("perfect")
    for track in sorted(p for p in gate_dir.iterdir() if p.is_dir()):
        mix, sr = sf.read(track / "mixture.wav", dtype="float32")
        (out / track.name).mkdir()
        sf.write(out / track.name / "mixture.wav", mix, sr, subtype="FLOAT")
        sf.write(out / track.name / "vocals.wav", session.run(None, {"mixture": mix[None]})[0][0], sr, subtype="FLOAT")
    return out


def test_a_gate_that_cannot_be_met_exits_4_and_writes_nothing(tiny_ckpt, perfect_dir, tmp_path):
    out = tmp_path / "never"
    args = ["export", str(tiny_ckpt), "--subnet", "2x8", "--precision", "int8-dynamic", "--gate-data", str(perfect_dir)]
    result = runner.invoke(app, [*args, "--max-quality-drop", "0.01", "--out", str(out)])
    assert result.exit_code == 4, result.output
    assert (
        "quality gate failed" in result.stderr
        and "limit 0.01 dB" in result.stderr
        and "nothing was written" in result.stderr
    )
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    out.mkdir()  # an existing empty directory stays empty
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 4  # the default 0.5 dB cannot be met either
    assert list(out.iterdir()) == []


def test_a_profile_sets_the_gate_and_the_default_gate_renders_its_own_tracks(tiny_ckpt, perfect_dir, tmp_path):
    strict = quick_profile("strict", budgets={}, runtime={"precision": "int8-dynamic", "max_quality_drop_db": 0.01})
    with pytest.raises(VerificationError, match="quality gate failed"):
        api.export(
            tiny_ckpt,
            subnet="2x8",
            profile=None,
            precision="int8-dynamic",
            gate_data=perfect_dir,
            max_quality_drop_db=strict.runtime.max_quality_drop_db,
            out=tmp_path / "strict",
        )
    assert not (tmp_path / "strict").exists()
    relaxed = quick_profile("relaxed", budgets={}, runtime={"precision": "int8-dynamic"})
    result = api.export(tiny_ckpt, profile=relaxed, out=tmp_path / "relaxed")  # no --gate-data: rendered now
    gate = result.manifest["gate"]
    assert gate["limit_usdr_drop_db"] == 0.5 and result.manifest["precision"] == "int8-dynamic"
    assert gate["data"]["kind"] == "rendered now" and gate["data"]["rendered"]["soundfont"] == "TimGM6mb.sf2"
    assert gate["data"]["rendered"]["split"] == "test" and gate["workload"]["chunk_seconds"] == 0.032


def test_fp16_on_the_cpu_provider_is_refused(tiny_ckpt, tmp_path):
    args = ["export", str(tiny_ckpt), "--subnet", "1x4", "--precision", "fp16", "--out", str(tmp_path / "o")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.stdout == ""
    assert "--precision fp16" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    bad = quick_profile().to_dict()
    bad["runtime"]["precision"] = "fp16"
    del bad["source"]
    with pytest.raises(ProfileError, match=r"runtime\.precision: fp16 runs slower than fp32"):
        parse_profile(bad)
    result = runner.invoke(app, ["export", str(tiny_ckpt), "--subnet", "1x4", "--precision", "int4", "--out", "o"])
    assert result.exit_code == 2 and "--precision must be one of fp32, int8-dynamic, fp16" in result.stderr


def test_cpu_features_decide_reduce_range():
    vnni = cpu_features("processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni\n")
    plain = cpu_features("processor : 0\nflags : fpu sse avx2\n")
    assert vnni.vnni and vnni.flags == ("avx512_vnni",) and not plain.vnni
    assert (
        quantization_settings(vnni).reduce_range is False
        and "avx512_vnni" in quantization_settings(vnni).to_dict()["reduce_range_reason"]
    )
    assert (
        quantization_settings(plain).reduce_range is True
        and "7-bit" in quantization_settings(plain).reduce_range_reason
    )


def test_max_model_bytes_binds_at_the_stored_precision(tiny_ckpt, tmp_path):
    config = make_supernet("tiny").config
    int8 = {
        s: parameter_bytes(config.with_size(w, d), "int8-dynamic")
        for s, (d, w) in {"2x4": (2, 4), "2x8": (2, 8)}.items()
    }
    limit = (int8["2x4"] + int8["2x8"]) // 2  # between the two: the best subnet, 2x8, is just too big
    budgets = {"max_model_bytes": limit}
    prof = quick_profile("tight", budgets=budgets, runtime={"precision": "int8-dynamic"})
    result = api.search(tiny_ckpt, profile=prof)
    assert (
        result.chosen.subnet.width == 4
        and result.binding == ("max_model_bytes",)
        and result.precision == "int8-dynamic"
    )
    assert result.chosen.model_bytes == int8["2x4"]
    # below the smallest subnet's fp32 bytes: nothing fits at fp32 (exit 3 naming the byte budget and the
    # precision), while int8 still fits
    smallest_fp32 = min(c.model_bytes for c in api.search(tiny_ckpt, precision="fp32").candidates)
    path = profile_toml(quick_profile("tight32", budgets={"max_model_bytes": smallest_fp32 - 1}), tmp_path)
    out = runner.invoke(app, ["search", str(tiny_ckpt), "--profile", str(path)])
    assert out.exit_code == 3 and "max_model_bytes" in out.stderr and "bytes at fp32" in out.stderr
    assert (
        runner.invoke(app, ["search", str(tiny_ckpt), "--profile", str(path), "--precision", "int8-dynamic"]).exit_code
        == 0
    )
    exported = api.export(tiny_ckpt, profile=prof, out=tmp_path / "e", measure_latency=False)
    assert exported.manifest["selection"]["binding"] == ["max_model_bytes"]
    assert exported.manifest["costs"]["parameter_bytes"]["graph"] <= limit


def test_release_rows_show_precision_size_and_quality_drop(tiny_ckpt, gate_dir, tmp_path):
    profiles = tmp_path / "profiles"
    profile_toml(quick_profile("small8", budgets={}, runtime={"precision": "int8-dynamic"}), profiles)
    profile_toml(quick_profile("small32", budgets={}), profiles)
    result = api.release(tiny_ckpt, [profiles], tmp_path / "dist", bench=False, gate_data=gate_dir)
    rows = {p["profile"]: p for p in result.document["profiles"]}
    assert rows["small8"]["precision"] == "int8-dynamic" and rows["small32"]["precision"] == "fp32"
    assert rows["small8"]["model_bytes"] < rows["small32"]["model_bytes"]
    assert rows["small8"]["gate"]["passed"] and "usdr_db_worst_track" in rows["small8"]["gate"]["drop"]
    assert rows["small32"]["gate"] is None and rows["small8"]["budgets"] == {}
    notes = (result.out / "RELEASE.md").read_text()
    assert "| precision | model file |" in notes and "int8-dynamic" in notes and "Quality gate: uSDR drop" in notes


def test_bench_reports_the_models_precision(int8_export):
    from s2g_deploy.runtime.bench import read_model

    assert read_model(int8_export.out).precision == "int8-dynamic"


def test_verify_checks_an_int8_export_at_its_gates_snr(int8_export):
    report = api.verify(int8_export.out, seed=3)
    (check,) = report.exports
    assert check.required_snr_db == int8_export.manifest["quantization"]["parity"]["required_snr_db"]
    assert check.snr_db >= check.required_snr_db and check.max_abs > 1e-4  # int8 noise, judged by SNR


def test_the_convolution_basis_is_computed_in_the_graph_too():
    """Sizes the framed STFT cannot take keep the convolution's windowed basis: it is replaced the same way."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    basis = compact.dft_basis(64)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "basis"], ["y"])],
        "conv-basis",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(basis.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(basis.shape))],
        [numpy_helper.from_array(basis, "basis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    computed, record = compact.compute_basis_in_graph(model, 64)
    assert record.replaced == ("basis",) and record.bytes_saved == basis.nbytes
    assert "basis" not in {t.name for t in onnx.load_from_string(computed).graph.initializer}
    x = np.zeros(basis.shape, np.float32)
    y = ort.InferenceSession(computed, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(y - basis).max() <= compact.MAX_BASIS_DIFFERENCE
