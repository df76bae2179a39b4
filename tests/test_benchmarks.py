"""The benchmark scripts' --quick modes: they run, and their tables hold what the full runs report."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def _quick(script: str, results: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick", "--results", str(results), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_s2g_vs_independent_quick(tmp_path):
    done = _quick("s2g_vs_independent.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "s2g_vs_independent_quick.json").read_text())
    assert [row["subnet"] for row in report["rows"]] == ["1x4", "2x4", "2x8"]
    for row in report["rows"]:
        assert len(row["s2g_usdr_db"]["values"]) == len(row["independent_usdr_db"]["values"]) == 2
        s2g, alone = row["s2g_usdr_db"]["values"], row["independent_usdr_db"]["values"]
        assert row["difference_db"]["values"] == [round(a - b, 3) for a, b in zip(s2g, alone, strict=True)]
    t = report["training_time"]
    assert t["grid_subnets"] == 4 and t["s2g_supernet_s"] > 0 and t["estimated_all_grid_alone_s"] > 0
    assert "| 2x8 |" in (tmp_path / "s2g_vs_independent_quick.md").read_text()


def test_s2g_vs_independent_quick_on_a_folder_of_stems(tmp_path):
    import numpy as np
    import soundfile as sf

    from s2g_deploy.models.registry import get_preset

    rate = get_preset("tiny").config.sample_rate_hz
    rng = np.random.default_rng(0)
    for split, tracks in (("train", ("a", "b")), ("test", ("c", "d"))):
        for track in tracks:
            for source in ("vocals", "drums", "bass", "other"):
                path = tmp_path / "stems" / split / track / f"{source}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, 0.1 * rng.standard_normal((rate, 2)), rate)
    stems = tmp_path / "stems"
    done = _quick("s2g_vs_independent.py", tmp_path, "--data", str(stems / "train"), "--eval-data", str(stems / "test"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "s2g_vs_independent_quick.json").read_text())
    assert report["settings"]["train_data"] == str(stems / "train")
    assert str(stems / "test") in json.dumps(report["held_out"])


def test_speed_quick(tmp_path):
    done = _quick("speed.py", tmp_path)
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
    assert "| 2x8 |" in (tmp_path / "speed_quick.md").read_text()
