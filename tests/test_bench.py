"""s2g bench: statistics, budget verdicts, the provider check, the manifest, --json, --compare torch."""

import json
import math
import subprocess
import time

import pytest
from runtime_helpers import quick_profile, tiny_checkpoint
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.artifacts import MANIFEST, SHA256SUMS
from s2g_deploy.budgets import budget_verdicts
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError
from s2g_deploy.export import parity
from s2g_deploy.runtime.bench import bench_model, latency_statistics
from s2g_deploy.runtime.measure import timing_loop
from s2g_deploy.runtime.session import ALLOW_SPINNING, SessionSettings, build_session

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parity, "PARITY_SECONDS", (0.2, 0.45, 1.1))  # tiny model, hop 16: keep parity short
        return api.export(tiny_checkpoint(root / "tiny.safetensors"), subnet="2x8", out=root / "out")


@pytest.fixture
def profile_file(tmp_path):
    def write(provider: str = "CPUExecutionProvider") -> str:
        path = tmp_path / "quick.toml"
        path.write_text(
            f"""schema_version = 1
name = "quick"
description = "test device"
[budgets]
max_params = "1M"
latency_ms = 1000.0
latency_statistic = "p90"
[runtime]
execution_provider = "{provider}"
intra_op_threads = 1
inter_op_threads = 1
graph_optimization_level = "all"
precision = "fp32"
opset = 17
[workload]
chunk_seconds = 0.032
batch = 2
[measurement]
warmup_runs = 1
timed_runs = 6
min_duration_s = 0.0
statistic = "p50"
"""
        )
        return str(path)

    return write


def test_statistics_by_hand():
    stats = latency_statistics(42.0, [float(v) for v in range(10, 0, -1)])  # 10 .. 1, unsorted on purpose
    # linear interpolation between order statistics: rank p/100 * (n - 1) of 1..10
    assert stats == pytest.approx(
        {
            "first": 42.0,
            "mean": 5.5,
            "std": math.sqrt(sum((v - 5.5) ** 2 for v in range(1, 11)) / 9),
            "min": 1.0,
            "p50": 5.5,
            "p90": 9.1,
            "p99": 9.91,
            "max": 10.0,
        }
    )
    assert latency_statistics(1.0, [3.0])["std"] == 0.0
    with pytest.raises(ValueError):
        latency_statistics(1.0, [])


def test_budget_verdicts():
    profile = quick_profile(
        budgets={
            "max_params": 100,
            "max_macs_per_second": "1M",
            "latency_ms": 9.0,
            "latency_statistic": "p90",
            "max_real_time_factor": 0.5,
        },
    )
    stats = latency_statistics(1.0, [float(v) for v in range(1, 11)])  # p90 9.1 ms
    verdicts = budget_verdicts(profile, stats, params=100, macs_per_second=None)
    assert verdicts["max_params"] == {"limit": 100, "measured": 100, "passed": True, "unit": "params"}
    assert verdicts["max_macs_per_second"]["passed"] is None  # the model cannot say: unknown, not a pass
    assert verdicts["latency_ms"]["measured"] == pytest.approx(9.1) and verdicts["latency_ms"]["passed"] is False
    rtf = verdicts["max_real_time_factor"]  # judged at the budget's statistic: 9.1 ms / 32 ms of audio
    assert rtf["statistic"] == "p90" and rtf["measured"] == pytest.approx(9.1 / 32) and rtf["passed"] is True
    assert set(budget_verdicts(quick_profile(budgets={}), stats, 1, 1.0)) == set()


def test_timing_loop_meets_runs_and_duration():
    first, samples = timing_loop(lambda: time.sleep(0.002), warmup_runs=2, timed_runs=3, min_duration_s=0.03)
    assert first >= 2 and len(samples) >= 3 and sum(samples) >= 30
    _, samples = timing_loop(lambda: None, warmup_runs=0, timed_runs=7, min_duration_s=0.0)
    assert len(samples) == 7
    _, samples = timing_loop(
        lambda: time.sleep(0.001), 0, timed_runs=1000, min_duration_s=0.0, cap_s=0.01, cap_min_runs=4
    )
    assert 4 <= len(samples) < 1000  # calibration's cap: enough seconds and runs, fewer than the protocol asks


def test_bench_report_and_manifest(tiny_export):
    profile = quick_profile(budgets={"max_params": "1M", "latency_ms": 1000.0, "latency_statistic": "p90"})
    report = bench_model(tiny_export.out, profile)
    d = report.to_dict()
    assert set(d["latency_ms"]) == {"first", "mean", "std", "min", "p50", "p90", "p99", "max"}
    lat = d["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert len(d["samples_ms"]) >= 5 and d["input_shape"] == [1, 512]  # 0.032 s at 16 kHz
    assert d["real_time_factor"] == pytest.approx(lat["p50"] / 32)
    assert d["budgets"]["latency_ms"]["passed"] and d["budgets"]["max_params"]["passed"] and d["passed"]
    assert d["session"]["providers_used"] == ["CPUExecutionProvider"] and d["peak_rss_bytes"] > 10e6
    assert d["model_bytes"] == (tiny_export.out / "model.onnx").stat().st_size
    assert {"cpu_model", "usable_cpus", "versions", "threads"} <= set(d["environment"])
    manifest = json.loads((tiny_export.out / MANIFEST).read_text())
    assert manifest["bench"]["quick"]["latency_ms"] == lat and "samples_ms" not in manifest["bench"]["quick"]
    assert subprocess.run(["sha256sum", "-c", SHA256SUMS], cwd=tiny_export.out, capture_output=True).returncode == 0


def test_cli_json_is_one_document_with_samples(tiny_export, profile_file):
    result = runner.invoke(app, ["bench", str(tiny_export.paths["model"]), "--device", profile_file(), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["input_shape"] == [2, 512] and len(doc["samples_ms"]) == doc["protocol"]["runs"] >= 6
    assert doc["export_dir"] == str(tiny_export.out) and doc["passed"] is True


def test_cli_table(tiny_export, profile_file):
    result = runner.invoke(app, ["bench", str(tiny_export.out), "--device", profile_file(), "--no-manifest"])
    assert result.exit_code == 0, result.output
    assert "p99" in result.stdout and "latency_ms (p90)" in result.stdout and "all budgets met" in result.stdout


def test_missing_provider_exits_2_listing_the_available_ones(tiny_export, profile_file):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is installed here")
    result = runner.invoke(app, ["bench", str(tiny_export.out), "--device", profile_file("CUDAExecutionProvider")])
    assert result.exit_code == 2
    assert "CUDAExecutionProvider is not available" in result.stderr and "CPUExecutionProvider" in result.stderr
    with pytest.raises(InputError, match=r"available: .*CPUExecutionProvider"):
        build_session(tiny_export.paths["model"], SessionSettings(execution_provider="CUDAExecutionProvider"))


def test_a_changed_export_is_not_recertified(tiny_export, tmp_path, profile_file):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_export.out, copy)
    with (copy / "model_card.md").open("a") as f:
        f.write("edited\n")
    result = runner.invoke(app, ["bench", str(copy), "--device", profile_file()])
    assert result.exit_code == 4 and "model_card.md" in result.stderr


def test_not_an_s2g_model_exits_2(tmp_path, profile_file):
    bogus = tmp_path / "m.onnx"
    bogus.write_bytes(b"not onnx")
    result = runner.invoke(app, ["bench", str(bogus), "--device", profile_file()])
    assert result.exit_code == 2 and "m.onnx" in result.stderr


def test_compare_torch(tiny_export, profile_file):
    result = runner.invoke(
        app,
        ["bench", str(tiny_export.out), "--device", profile_file(), "--compare", "torch", "--json", "--no-manifest"],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["compare"]
    assert [r["kind"] for r in rows] == ["torch_dense", "torch_supernet"]
    assert all(r["latency_ms"]["p50"] > 0 and r["threads"] == 1 for r in rows)
    assert rows[0]["model"].endswith("dense.safetensors")


def test_allow_spinning_reaches_the_session_and_the_report(tiny_export):
    model = tiny_export.paths["model"]
    for spin, entry in ((True, "1"), (False, "0")):
        session = build_session(model, SessionSettings(intra_op_threads=2, allow_spinning=spin))
        assert session.get_session_options().get_session_config_entry(ALLOW_SPINNING) == entry
    profile = quick_profile(runtime={"intra_op_threads": 2, "allow_spinning": False})
    assert SessionSettings.of(profile.runtime).allow_spinning is False
    assert SessionSettings.of(quick_profile().runtime).allow_spinning is True  # onnxruntime's default
    session = bench_model(tiny_export.out, profile, write_manifest=False).to_dict()["session"]
    assert session["allow_spinning"] is False and session["intra_op_threads"] == 2
