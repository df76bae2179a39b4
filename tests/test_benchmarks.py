"""The benchmark scripts' --quick modes: they run, and their tables hold what the full runs report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def _quick(script: str, results: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--results", str(results), *extra],
        capture_output=True,
        text=True,
        timeout=1500,  # minutes on a loaded machine; about one idle
    )


def test_s2g_vs_independent_quick(tmp_path):
    """Render, train (study_runs.py: real `s2g train` processes) and score a tiny study end to end."""
    done = _quick("s2g_vs_independent.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "s2g_vs_independent_quick.json").read_text())
    assert {(r["split"], r["subnet"]) for r in report["rows"]} == {
        (split, subnet) for split in ("test", "timbre-shift") for subnet in ("1x4", "2x8")
    }
    for row in report["rows"]:
        alone = row["alone"]["usdr_db"]["values"]
        for recipe in ("paper", "sandwich-mixed"):
            s2g = row["recipes"][recipe]["usdr_db"]["values"]
            assert len(s2g) == len(alone) == 2  # two seeds each
            diff = row["recipes"][recipe]["minus_alone"]["usdr_db"]["values"]
            assert diff == pytest.approx([a - b for a, b in zip(s2g, alone, strict=True)], abs=2e-3)
        assert row["recipes"]["paper"]["csdr_db"]["mean"] is not None
    t = report["training_time"]
    assert len(t["grid_alone_s"]) == 4 and t["s2g_s"]["paper"]["mean"] > 0 and t["grid_alone_total_s_estimated"] > 0
    assert set(report["verdict"]) == {"paper", "sandwich-mixed"} and report["left_out"] == []
    assert report["equal_compute"]["paper"]["share_of_steps"] > 0
    md = (tmp_path / "s2g_vs_independent_quick.md").read_text()
    assert "| 2x8 |" in md and "timbre-shift" in md
    assert (tmp_path / "s2g_vs_independent_quick.png").stat().st_size > 1000


def test_train_speed_quick(tmp_path):
    done = _quick("train_speed.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "train_speed_quick.json").read_text())
    rows = report["seconds_per_step"]
    assert set(rows) == {"auto (the default)", "1 thread, passive"}
    # each setting ran as it says (recorded by the run itself), and the ratio is the table's own
    assert rows["1 thread, passive"]["idle_used"] == {"torch_threads": 1, "omp_wait_policy": "PASSIVE"}
    assert rows["auto (the default)"]["idle_used"]["torch_threads"] >= 1
    fastest = min(r["idle"] for r in rows.values())
    ratio = report["default_over_fastest"]["idle"]
    assert ratio is None if fastest <= 1e-6 else ratio == round(rows["auto (the default)"]["idle"] / fastest, 3)


def test_speed_quick(tmp_path):
    # the last commit stands in for the previous format: the mechanism, not the numbers, is under test
    done = _quick("speed.py", tmp_path, "--baseline", "HEAD")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "speed_quick.json").read_text())
    assert [row["subnet"] for row in report["rows"]] == ["1x4", "2x8"]
    for row in report["rows"]:
        # each runtime was timed in its own process and gave a latency
        assert set(row["latency_ms"]) == {"onnx", "torch_dense", "torch_supernet"}
        assert all(ms > 0 for ms in row["latency_ms"].values())
        # the three MAC counts are independent computations of one number
        counts = row["macs_per_frame"]
        assert counts["fvcore"] == counts["closed_form"] == counts["onnx_graph"]
    assert report["mac_counts_max_relative_difference"] == 0
    assert 0 < report["ceiling"]["fraction_of_ceiling"] < 1
    assert report["toolkit_wall_s"]["search_warm"]["median_s"] > 0
    for row in report["rows"]:  # both formats side by side, at the chunk and at the short chunk
        old = row["baseline"]
        assert old["nodes"] > 0 and row["nodes"] > 0
        for chunk in ("chunk", "short_chunk"):
            assert old[chunk]["baseline_ms"] > 0 and old[chunk]["lean_ms"] > 0
            assert old[chunk]["speedup_median_of_rounds"] > 0
    assert report["baseline"]["made"] == ["1x4", "2x8"]
    assert report["latency_vs_macs"]["total_macs"]["smallest_over_largest"] > 0
    md = (tmp_path / "speed_quick.md").read_text()
    assert "| 2x8 |" in md and "previous export format" in md


def test_quantization_quick(tmp_path):
    done = _quick("quantization.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "quantization_quick.json").read_text())
    assert [row["case"] for row in report["rows"]] == ["earbud", "2x8 @ 1 s"]
    for row in report["rows"]:
        assert row["latency_ms"]["fp32"] > 0 and row["latency_ms"]["int8"] > 0
        assert len(row["latency_ms"]["rounds"]["fp32"]) == len(row["latency_ms"]["rounds"]["int8-dynamic"]) == 2
        assert row["int8_speedup"] == row["latency_ms"]["fp32"] / row["latency_ms"]["int8"]
        assert row["file_bytes"]["int8"] < row["file_bytes"]["fp32"] and row["gate"]["passed"]
    assert "| earbud | 2x8 | 0.008 s |" in (tmp_path / "quantization_quick.md").read_text()  # the causal tiny, streamed


def test_streaming_quick(tmp_path):
    done = _quick("streaming.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "streaming_quick.json").read_text())
    (row,) = report["rows"]
    assert row["profile"] == "earbud" and row["stream"]["hops_per_call"] == 2  # 4 ms calls of 2 ms hops
    assert row["stream"]["algorithmic_latency_ms"] == 6.0  # the tiny preset's 2 ms delay plus the 4 ms call
    assert row["deadline"]["deadline_ms"] == 4.0 and row["deadline"]["runs"] == row["runs"] >= 50
    assert row["p99_over_hop"] == row["latency_ms"]["p99"] / 2.0
    assert "| earbud | 2x8 | fp32 | 4 ms | 6 ms |" in (tmp_path / "streaming_quick.md").read_text()


def test_session_options_quick(tmp_path):
    done = _quick("session_options.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "session_options_quick.json").read_text())
    assert [(g["subnet"], g["io"]) for g in report["graphs"]] == [("2x8", "waveform"), ("2x8", "stream")]
    grid = {
        (level, threads, spin) for level in ("disable", "all") for threads, spin in ((1, True), (2, True), (2, False))
    }
    for graph in report["graphs"]:
        rows = graph["rows"]
        assert {(r["level"], r["threads"], r["spinning"]) for r in rows} == grid
        (reference,) = [r for r in rows if r["reference"]]  # the profile's current setting is in the grid
        assert reference["setting"] == graph["reference"] and reference["p50_ratio"] == reference["cpu_ratio"] == 1
        for r in rows:
            assert len(r["rounds"]["p50_ms"]) == 2 and all(n >= 10 for n in r["runs"])
            assert 0 < r["p50_ms"] <= r["p99_ms"] and r["cpu_ms_per_call"] > 0 and r["p50_ratio"] > 0
    assert [g["reference"] for g in report["graphs"]] == ["all, 2 threads, spinning on", "all, 1 thread"]
    md = (tmp_path / "session_options_quick.md").read_text()
    assert "| all, 2 threads, spinning off |" in md and "| all, 1 thread * |" in md
