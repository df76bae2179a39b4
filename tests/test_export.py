"""s2g export: parity, dynamic axes, MAC agreement, metadata, checksums, determinism, output safety."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import chunked, make_supernet
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.artifacts import MANIFEST, SHA256SUMS, StagedDirectory, write_sha256sums
from s2g_deploy.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError, SubnetError, VerificationError
from s2g_deploy.export import parity, pipeline
from s2g_deploy.export.graph_macs import GraphCountError, count_graph_macs
from s2g_deploy.export.onnx import declared_shape
from s2g_deploy.export.pipeline import single_threaded
from s2g_deploy.export.stft import stft_macs
from s2g_deploy.subnet import Subnet

runner = CliRunner()
QUALITY = {
    "metric": "usdr_db",
    "data": {"kind": "synthetic", "items": 4},
    "mixture": {"usdr_db": 0.5},
    "subnets": {"1x4": {"usdr_db": 3.25, "sisdr_db": 2.5}, "2x8": {"usdr_db": 5.5, "sisdr_db": 4.75}},
}


@pytest.fixture(scope="module", autouse=True)
def short_parity():
    """Parity at 0.2-1.1 s for the tiny model (hop 16: 10 s would be 10,000 LSTM steps per stage).

    The xsmall acceptance tests below run the product's defaults (0.5 s, 3 s, 10 s).
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parity, "PARITY_SECONDS", (0.2, 0.45, 1.1))
        yield


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    model = make_supernet("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(
        path, model, CheckpointMeta(model.config, model.space, training={"preset": "tiny"}, quality=QUALITY)
    )
    return path


@pytest.fixture(scope="module")
def tiny_export(tiny_ckpt, tmp_path_factory):
    return api.export(tiny_ckpt, subnet="1x4", out=tmp_path_factory.mktemp("exp") / "tiny-1x4")


def _listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())} if directory.exists() else {}


# --- a tiny export, end to end ----------------------------------------------------------------


def test_export_writes_a_complete_verified_directory(tiny_export):
    out = tiny_export.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["model.onnx", "manifest.json", "model_card.md", "SHA256SUMS", "dense.safetensors"]
    )
    assert subprocess.run(["sha256sum", "-c", SHA256SUMS], cwd=out, capture_output=True).returncode == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["subnet"] == "1x4" and manifest["params"] == tiny_export.manifest["params"]
    assert manifest["parity"]["passed"] and manifest["parity"]["max_abs"] <= 1e-4
    stages = [s["stage"] for s in manifest["parity"]["stages"]]
    assert stages == ["dense_torch", "export_module", "onnx", "onnx_simplified"]
    assert manifest["parity"]["reference"] == "supernet"
    lengths = manifest["parity"]["lengths_samples"]
    assert len(lengths) >= 3 and manifest["parity"]["trace_samples"] not in lengths
    assert manifest["quality"]["subnets"] == {"1x4": QUALITY["subnets"]["1x4"]}
    assert manifest["costs"]["graph_vs_model"] <= 0.02
    assert set(manifest["hashes"]["files"]) == {"model.onnx", "dense.safetensors", "model_card.md"}
    assert {"onnx", "onnxruntime", "onnxsim", "torch"} <= set(manifest["versions"])


def test_onnx_declares_dynamic_axes_and_carries_the_facts(tiny_export):
    model = onnx.load(str(tiny_export.paths["model"]))
    assert declared_shape(model, "mixture") == declared_shape(model, "target") == ["batch", "samples"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["model_author"] and props["model_license"]
    assert props["s2g.subnet"] == "1x4" and int(props["s2g.params"]) == tiny_export.manifest["params"]
    assert json.loads(props["s2g.parity"])["passed"] is True
    assert json.loads(props["s2g.quality"])["subnets"]["1x4"]["usdr_db"] == 3.25
    manifest = tiny_export.manifest
    assert props["s2g.supernet_weights_sha256"] == manifest["hashes"]["supernet_weights_sha256"]
    assert json.loads(props["s2g.macs_per_second"])["total"] == manifest["costs"]["macs_per_second"]["total"]
    assert not any(k.startswith("onnxsim.") for k in props)


def test_dense_checkpoint_beside_the_onnx(tiny_export, tiny_ckpt):
    dense = load_checkpoint(tiny_export.paths["dense_checkpoint"])
    assert dense.meta.kind == "dense" and dense.meta.subnet == Subnet(1, 4)
    assert dense.meta.parent_sha256 == load_checkpoint(tiny_ckpt).meta.weights_sha256
    supernet = load_checkpoint(tiny_ckpt).model
    wav = torch.randn(1, 3000)
    with torch.no_grad(), single_threaded():
        assert torch.allclose(dense.model(wav), supernet(wav, Subnet(1, 4)), atol=1e-6)


def test_same_inputs_give_byte_identical_files(tiny_ckpt, tiny_export, tmp_path):
    again = api.export(tiny_ckpt, subnet="1x4", out=tmp_path / "again")
    for name in ("model.onnx", "model_card.md", "dense.safetensors"):
        assert (again.out / name).read_bytes() == (tiny_export.out / name).read_bytes(), name
    a, b = (json.loads((r.out / MANIFEST).read_text()) for r in (tiny_export, again))
    for doc in (a, b):
        doc.pop("created_utc"), doc.pop("timings_s")
        doc["inputs"].pop("checkpoint")
    assert a == b


def test_spectrogram_export(tiny_ckpt, tmp_path):
    result = api.export(tiny_ckpt, subnet="2x8", out=tmp_path / "spec", io="spectrogram", opset=14)
    model = onnx.load(str(result.paths["model"]))
    bins = make_supernet("tiny").config.n_bins
    assert declared_shape(model, "spectrogram") == ["batch", bins, "frames", 2]
    assert declared_shape(model, "mask") == ["batch", bins, "frames", 2]
    assert model.opset_import[0].version == 14
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["s2g.stft"])["n_fft"] == 64
    assert result.costs["macs_per_second"]["stft_istft"] == 0 and result.costs["graph"]["stft_istft"] == 0
    assert result.parity.passed and result.costs["graph_vs_model"] <= 0.02


def test_cli_json_is_one_document(tiny_ckpt, tmp_path):
    result = runner.invoke(app, ["export", str(tiny_ckpt), "--subnet", "2x4", "--out", str(tmp_path / "o"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["subnet"] == "2x4" and doc["parity"]["passed"] and Path(doc["paths"]["model"]).is_file()


def test_dense_checkpoint_exports_itself(tiny_export, tmp_path):
    result = api.export(tiny_export.paths["dense_checkpoint"], out=tmp_path / "d")
    assert result.subnet == Subnet(1, 4) and result.parity.reference == "dense_torch"
    assert (result.out / "model.onnx").read_bytes() != b""


# --- the graph MAC counter ----------------------------------------------------------------------


def _graph(nodes, inputs, outputs, initializers=()):
    graph = onnx.helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


def _vi(name, shape):
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, shape)


def _init(name, shape):
    return onnx.numpy_helper.from_array(np.zeros(shape, np.float32), name)


def test_graph_macs_by_hand():
    T, I, H = 7, 5, 3  # noqa: E741
    nodes = [
        onnx.helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),  # (2, T, I) x (I, 4): 2*T*4*I
        onnx.helper.make_node("Gemm", ["a2", "g"], ["b"], name="gemm", transB=1),  # (T, 4) x (6, 4)^T: T*6*4
        onnx.helper.make_node("Conv", ["c", "k"], ["d"], name="/stft/Conv", strides=[2]),  # (1,1,20)*(8,1,4): 9*8*4
        onnx.helper.make_node("ConvTranspose", ["d", "kt"], ["e"], name="/istft/ConvT", strides=[2]),  # 9*8*1*4
        onnx.helper.make_node("LSTM", ["s", "W", "R"], ["y"], name="lstm", hidden_size=H, direction="bidirectional"),
    ]
    lstm_weights = [_init("W", (2, 4 * H, I)), _init("R", (2, 4 * H, H))]
    model = _graph(
        nodes,
        [_vi("x", ["B", T, I]), _vi("a2", [T, 4]), _vi("c", [1, 1, 20]), _vi("s", [T, 2, I])],
        [_vi("a", None), _vi("b", None), _vi("e", None), _vi("y", None)],
        [_init("w", (I, 4)), _init("g", (6, 4)), _init("k", (8, 1, 4)), _init("kt", (8, 1, 4)), *lstm_weights],
    )
    # the counter fixes only the first input; give the others concrete shapes already
    counted = count_graph_macs(model, (2, T, I))
    lstm = 2 * T * 2 * 4 * H * (I + H)
    assert counted.by_op == {
        "MatMul": 2 * T * 4 * I,
        "Gemm": T * 6 * 4,
        "Conv": 9 * 8 * 4,
        "ConvTranspose": 9 * 8 * 4,
        "LSTM": lstm,
    }
    assert counted.stft == 2 * 9 * 8 * 4 and counted.network == counted.total - counted.stft


def test_graph_macs_refuses_unresolved_shapes():
    node = onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    model = _graph([node], [_vi("x", ["B", 4]), _vi("w", [4, "N"])], [_vi("y", None)])  # N stays unknown
    with pytest.raises(GraphCountError, match="unresolved"):
        count_graph_macs(model, (2, 4))


# --- an xsmall-sized export: the acceptance checks ----------------------------------------


@pytest.fixture(scope="module")
def xsmall_export(tmp_path_factory):
    model = make_supernet("xsmall")
    root = tmp_path_factory.mktemp("xs")
    save_checkpoint(root / "xs.safetensors", model, CheckpointMeta(model.config, model.space))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parity, "PARITY_SECONDS", (0.5, 3.0, 10.0))  # the product's defaults
        return api.export(root / "xs.safetensors", subnet="2x8", out=root / "out")


FRESH_SESSION = textwrap.dedent(
    """
    import sys, numpy as np, onnxruntime as ort
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    for path in sys.argv[2:]:
        x = np.load(path)
        np.save(path + ".out.npy", session.run(None, {"mixture": x})[0])
    assert "torch" not in sys.modules
    """
)


def test_xsmall_export_runs_in_a_fresh_session_at_half_3_and_10_seconds(xsmall_export, tmp_path):
    dense = load_checkpoint(xsmall_export.paths["dense_checkpoint"]).model
    files = []
    for seconds in (0.5, 3.0, 10.0):
        x = np.random.default_rng(int(seconds * 10)).uniform(-1, 1, (1, int(seconds * 16000))).astype(np.float32)
        files.append(tmp_path / f"{seconds}.npy")
        np.save(files[-1], x)
    cmd = [sys.executable, "-c", FRESH_SESSION, str(xsmall_export.paths["model"]), *map(str, files)]
    subprocess.run(cmd, check=True)
    for f in files:
        x, y = np.load(f), np.load(str(f) + ".out.npy")
        assert y.shape == x.shape
        with torch.no_grad(), single_threaded():
            ref = dense(torch.from_numpy(x)).numpy()
        assert np.abs(y - ref).max() <= 1e-4


def test_xsmall_graph_macs_agree_with_the_cost_model(xsmall_export):
    from s2g_deploy.cost import closed_form_macs, count_macs

    dense = load_checkpoint(xsmall_export.paths["dense_checkpoint"]).model
    model_bytes = xsmall_export.paths["model"].read_bytes()
    for n in (16000, 48003):
        graph = count_graph_macs(model_bytes, (1, n))
        stft = sum(stft_macs(dense.config, n).values())
        network = count_macs(dense, n).total
        assert network == closed_form_macs(dense.config, n)
        assert abs(graph.total - (network + stft)) <= 0.02 * (network + stft)
        assert abs(graph.network - network) <= 0.02 * network and graph.stft == stft
    assert xsmall_export.costs["graph_vs_model"] <= 0.02


def test_xsmall_graph_is_lean(xsmall_export):
    """No per-band op chains or Shape-driven reshapes: what the graph runs is the network's work."""
    model = onnx.load(str(xsmall_export.paths["model"]))
    ops = Counter(node.op_type for node in model.graph.node)
    manifest = json.loads((xsmall_export.out / MANIFEST).read_text())
    assert manifest["settings"]["simplify"]["nodes_by_op"] == dict(ops)
    assert manifest["settings"]["graph_format"] == 3
    depth = xsmall_export.subnet.depth
    # one run-time size per block (frames x batch back into frames), one for the mask, one each for the
    # STFT's frame count and the iSTFT's output length, one each where the STFT's and the iSTFT's DFTs split
    # batch and frames apart again; nothing per band
    assert ops["Shape"] <= depth + 5
    # STFT 2, iSTFT 2, band split 4 (one per run of equal-width bands), fc1 1, fc2 4; a projection per BLSTM
    assert ops["MatMul"] + ops["Gemm"] == 2 + 2 + 4 + 1 + 4 + 2 * depth
    assert ops["LSTM"] == 2 * depth and ops["Conv"] == ops["ConvTranspose"] == ops["Identity"] == 0
    # the exporter's zero initial states are gone: LSTM gets X, W, R, B only
    assert all(len(n.input) == 4 for n in model.graph.node if n.op_type == "LSTM")
    assert len(model.graph.node) < 400


def test_xsmall_parity_certificate_covers_several_seconds(xsmall_export):
    p = xsmall_export.parity
    assert p.passed and p.max_abs <= 1e-4 and p.reference == "supernet"
    assert [round(n / 16000, 1) for n in p.lengths] == [0.5, 3.0, 10.0] and p.trace_samples not in p.lengths


# --- refusals: exit code, one line, nothing written ------------------------------------------------


def _invoke_and_check_nothing_written(args, root: Path, code: int, match: str):
    before = sorted(p.name for p in root.iterdir())
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert match in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert sorted(p.name for p in root.iterdir()) == before
    return result


def test_bad_subnet_strings_exit_2(tiny_ckpt, tmp_path):
    out = str(tmp_path / "out")
    _invoke_and_check_nothing_written(
        ["export", str(tiny_ckpt), "--subnet", "banana", "--out", out], tmp_path, 2, "DEPTHxWIDTH"
    )
    _invoke_and_check_nothing_written(
        ["export", str(tiny_ckpt), "--subnet", "3x8", "--out", out], tmp_path, 2, "depths 1,2"
    )


def test_existing_non_empty_output_exits_2_and_is_untouched(tiny_ckpt, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["export", str(tiny_ckpt), "--subnet", "1x4", "--out", str(out)]
    _invoke_and_check_nothing_written(args, tmp_path, 2, "not empty")
    # --overwrite replaces only an s2g export, never an arbitrary folder
    _invoke_and_check_nothing_written([*args, "--overwrite"], tmp_path, 2, "--overwrite replaces only an export")
    assert _listing(out) == {"keep.txt": b"mine"}


def test_corrupted_checkpoint_exits_2(tiny_ckpt, tmp_path):
    bad = tmp_path / "bad.safetensors"
    data = bytearray(tiny_ckpt.read_bytes())
    data[-100] ^= 0xFF  # inside the weights: the header still parses, the hash does not match
    bad.write_bytes(bytes(data))
    out = str(tmp_path / "out")
    _invoke_and_check_nothing_written(["export", str(bad), "--subnet", "1x4", "--out", out], tmp_path, 2, "corrupt")
    (tmp_path / "trunc.safetensors").write_bytes(bytes(data[:50]))
    args = ["export", str(tmp_path / "trunc.safetensors"), "--subnet", "1x4", "--out", out]
    _invoke_and_check_nothing_written(args, tmp_path, 2, "trunc.safetensors")


def test_missing_selection_and_bad_options_exit_2(tiny_ckpt, tmp_path):
    out = str(tmp_path / "out")
    _invoke_and_check_nothing_written(["export", str(tiny_ckpt), "--out", out], tmp_path, 2, "--subnet")
    args = ["export", str(tiny_ckpt), "--subnet", "1x4", "--out", out]
    _invoke_and_check_nothing_written([*args, "--io", "mel"], tmp_path, 2, "--io")
    _invoke_and_check_nothing_written([*args, "--opset", "7"], tmp_path, 2, "--opset")


def test_parity_failure_exits_4_and_leaves_nothing(tiny_ckpt, tmp_path, monkeypatch):
    real = pipeline.to_onnx

    def broken_to_onnx(dense, io, opset, trace_samples):  # an exporter that gets one weight wrong
        wrong = type(dense)(dense.config)
        wrong.load_state_dict(dense.state_dict())
        with torch.no_grad():
            wrong.mask_estimation.fc2[0].bias.add_(0.5)
        return real(wrong.eval(), io, opset, trace_samples)

    monkeypatch.setattr(pipeline, "to_onnx", broken_to_onnx)
    out = str(tmp_path / "out")
    result = _invoke_and_check_nothing_written(
        ["export", str(tiny_ckpt), "--subnet", "1x4", "--out", out], tmp_path, 4, "parity failed"
    )
    assert "onnx" in result.stderr


def test_ctrl_c_mid_export_leaves_the_old_export(tiny_ckpt, tiny_export, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(tiny_export.out, out)
    before = _listing(out)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "certify", interrupt)
    with pytest.raises(KeyboardInterrupt):
        api.export(tiny_ckpt, subnet="2x8", out=out, overwrite=True)
    assert _listing(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sigterm_mid_export_leaves_the_target_and_no_temp_dirs(tiny_ckpt, tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from s2g_deploy import api
        from s2g_deploy.export import parity, pipeline
        real = pipeline.simplify
        def killed(*args):
            os.kill(os.getpid(), signal.SIGTERM)
            return real(*args)
        pipeline.simplify = killed
        api.export({str(tiny_ckpt)!r}, subnet="1x4", out={str(tmp_path / "new" / "out")!r})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode != 0 and "Terminated" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # not even the parent it created


def test_overwrite_replaces_a_previous_export(tiny_ckpt, tiny_export, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_export.out, out)
    with pytest.raises(InputError, match="not empty"):
        api.export(tiny_ckpt, subnet="2x4", out=out)
    result = api.export(tiny_ckpt, subnet="2x4", out=out, overwrite=True)
    assert json.loads((out / MANIFEST).read_text())["subnet"] == "2x4" == str(result.subnet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private mode
    assert (out / "dense.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def test_api_errors_are_typed(tiny_ckpt, tmp_path):
    with pytest.raises(SubnetError):
        api.export(tiny_ckpt, subnet="9x9", out=tmp_path / "o")
    with pytest.raises(InputError, match="not both"):
        api.export(tiny_ckpt, subnet="1x4", profile=chunked("phone"), out=tmp_path / "o")
    assert list(tmp_path.iterdir()) == []
    assert issubclass(VerificationError, Exception) and VerificationError.exit_code == 4


@pytest.fixture
def cost_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("S2G_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def test_budgets_and_profiles_select_through_search(tiny_ckpt, tmp_path, cost_cache):
    search = pytest.importorskip("s2g_deploy.search")
    budgets = search.Budgets(max_macs_per_second=20e6)
    result = api.export(tiny_ckpt, budgets=budgets, out=tmp_path / "b")
    expected = search.search(tiny_ckpt, budgets).chosen
    assert result.subnet == expected.subnet and result.manifest["selection"]["method"] == "search"
    assert result.manifest["selection"]["chosen"]["subnet"] == str(expected.subnet)
    assert result.costs["macs_per_second"]["network"] <= 20e6
    # static budgets only: a measured latency would make the test depend on the machine's load
    result = api.export(tiny_ckpt, profile=chunked("earbud"), out=tmp_path / "p", measure_latency=False)
    assert result.manifest["profile"] == "earbud" and result.costs["per_chunk"]["chunk_seconds"] > 0
    # the earbud runs int8: the export is quantized and passed its quality gate (never a silent fp32)
    assert result.manifest["precision"] == "int8-dynamic" and result.manifest["gate"]["passed"]


def test_infeasible_budget_exits_3(tiny_ckpt, tmp_path, cost_cache):
    pytest.importorskip("s2g_deploy.search")
    out = str(tmp_path / "out")
    _invoke_and_check_nothing_written(["export", str(tiny_ckpt), "--budget-macs", "1K", "--out", out], tmp_path, 3, "")


# --- artifacts ------------------------------------------------------------------------------------


def test_staged_directory_is_all_or_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError), StagedDirectory(target) as staging:
        (staging.path / "x").write_text("1")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with StagedDirectory(target) as staging:
        (staging.path / "x").write_text("1")
        write_sha256sums(staging.path)
        assert not target.exists()
        staging.commit()
    assert sorted(os.listdir(target)) == ["SHA256SUMS", "x"]
    assert subprocess.run(["sha256sum", "-c", "--strict", SHA256SUMS], cwd=target, capture_output=True).returncode == 0
    assert sorted(os.listdir(tmp_path / "a")) == ["b"]
