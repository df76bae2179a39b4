"""s2g release, s2g verify and s2g env: layout, checksums, infeasible profiles, reproducibility, refusals."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_supernet
from runtime_helpers import profile_toml, quick_profile
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.artifacts import write_sha256sums
from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import BudgetInfeasibleError, InputError, VerificationError
from s2g_deploy.export import parity
from s2g_deploy.units import parse_size

runner = CliRunner()
QUALITY = {
    "metric": "usdr_db",
    "data": {"kind": "synthetic", "split": "test", "tracks": 4, "seconds": 1.0},
    "subnets": {"1x4": {"usdr_db": 3.25, "sisdr_db": 2.5}, "2x8": {"usdr_db": 5.5, "sisdr_db": 4.75}},
    # the test profiles run 32 ms chunks: what a release quotes is the figure measured there
    "chunked": {
        "0.032": {
            "chunk_seconds": 0.032,
            "overlap_seconds": 0.016,
            "subnets": {"1x4": {"usdr_db": 2.0}, "2x8": {"usdr_db": 4.0}},
        }
    },
}
# tiny's grid: 1x4 9.3M, 2x4 15.9M, 1x8 32.4M, 2x8 59.0M network MACs per second; quality for 1x4 and 2x8
BUDGETS = {"small": "20M", "big": "100M", "impossible": "1K"}


def write_profile(directory: Path, name: str, macs: str, latency_ms: float = 1000.0) -> Path:
    """A quick test profile (a few timed runs) with a MAC budget, as a TOML file in ``directory``."""
    budgets = {"max_macs_per_second": parse_size(macs, name), "latency_ms": latency_ms, "latency_statistic": "p90"}
    return profile_toml(quick_profile(name, budgets=budgets), directory)


@pytest.fixture(scope="module", autouse=True)
def fast_and_isolated(tmp_path_factory):
    """Short parity lengths for the tiny model (as in test_export) and a private cost cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parity, "PARITY_SECONDS", (0.2, 0.45, 1.1))
        mp.setenv("S2G_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    model = make_supernet("tiny")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    meta = CheckpointMeta(model.config, model.space, training={"preset": "tiny"}, quality=QUALITY)
    save_checkpoint(path, model, meta)
    return path


@pytest.fixture(scope="module")
def profile_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("profiles")
    for name, macs in BUDGETS.items():
        write_profile(directory, name, macs)
    return directory


@pytest.fixture(scope="module")
def release_a(tiny_ckpt, profile_dir, tmp_path_factory):
    return api.release(tiny_ckpt, [profile_dir], tmp_path_factory.mktemp("a") / "dist", bench=False)


@pytest.fixture(scope="module")
def release_b(tiny_ckpt, profile_dir, tmp_path_factory):
    """The same release again, through the CLI, from a different working directory and output path."""
    where = tmp_path_factory.mktemp("b")
    args = ["release", str(tiny_ckpt), "--profiles", str(profile_dir), "--no-bench", "--out", "elsewhere/dist"]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)  # a relative --out from another directory
        result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output  # 'impossible' cannot be satisfied; the rest is built
    assert "impossible" in result.stderr and "1.00K" in result.stderr
    return where / "elsewhere" / "dist"


def _sha256sum_c(directory: Path) -> None:
    proc = subprocess.run(["sha256sum", "-c", "--strict", "SHA256SUMS"], cwd=directory, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_release_layout_checksums_and_document(release_a):
    out = release_a.out
    assert sorted(p.name for p in out.iterdir()) == [
        "RELEASE.md", "SHA256SUMS", "big", "pareto.png", "release.json", "small"
    ]  # fmt: skip
    _sha256sum_c(out)
    for d in ("small", "big"):
        _sha256sum_c(out / d)
    top = (out / "SHA256SUMS").read_text()
    assert "  small/model.onnx\n" in top and "  big/SHA256SUMS\n" in top and "  release.json\n" in top

    doc = json.loads((out / "release.json").read_text())
    assert doc == release_a.document
    assert [p["profile"] for p in doc["profiles"]] == ["impossible", "small", "big"]  # smallest budget first
    impossible, small, big = doc["profiles"]
    assert (small["status"], small["subnet"], big["status"], big["subnet"]) == ("ok", "1x4", "ok", "2x8")
    assert small["quality"] == {"metric": "usdr_db", "value": 2.0, "workload": "0.032 s chunks", "usdr_db": 2.0}
    assert big["quality"]["value"] == 4.0 and big["quality"]["workload"] == "0.032 s chunks"  # not the whole-clip 5.5
    assert small["budgets"]["max_macs_per_second"]["passed"] is True
    assert small["budgets"]["latency_ms"] == {
        "limit": 1000.0, "measured": None, "passed": None, "unit": "ms per run", "statistic": "p90"
    }  # fmt: skip
    assert small["latency"] is None and small["files"]["model.onnx"] in top
    assert impossible["status"] == "infeasible" and impossible["directory"] is None
    assert set(impossible) == set(small)  # one shape for every entry
    assert impossible["infeasible"]["binding"] == ["max_macs_per_second"]
    assert impossible["infeasible"]["cheapest"]["max_macs_per_second"]["subnet"] == "1x4"
    summary = {"profiles": 3, "ok": ["small", "big"], "infeasible": ["impossible"], "missed": [], "exit_code": 3}
    assert doc["summary"] == summary
    assert doc["supernet"]["weights_sha256"] and doc["versions"]["onnxruntime"]
    assert {g["subnet"] for g in doc["grid"]} == {"1x4", "1x8", "2x4", "2x8"}
    assert isinstance(release_a.failure(), BudgetInfeasibleError)

    md = (out / "RELEASE.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| profile")]
    assert [r.split(" | ")[0] for r in rows] == ["| impossible", "| small", "| big"]
    assert "1.00K" in md and "cheapest subnet, 1x4" in md
    png = (out / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"matplotlib" not in png  # no Software/version stamp


def test_two_releases_are_reproducible(release_a, release_b):
    """Byte-identical models; manifests equal apart from the date and timings; no staging names."""
    a, b = release_a.out, release_b
    for d in ("small", "big"):
        for name in ("model.onnx", "dense.safetensors", "model_card.md"):
            assert (a / d / name).read_bytes() == (b / d / name).read_bytes(), f"{d}/{name}"
        ma, mb = (json.loads((x / d / "manifest.json").read_text()) for x in (a, b))
        for m in (ma, mb):
            m.pop("created_utc"), m.pop("timings_s")
        assert ma == mb
    ra, rb = (json.loads((x / "release.json").read_text()) for x in (a, b))
    ra.pop("created_utc"), rb.pop("created_utc")
    assert ra == rb
    for name in ("RELEASE.md", "pareto.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for f in b.rglob("*"):
        if f.is_file():
            assert b"s2g-tmp" not in f.read_bytes(), f  # the staging directory's name leaks nowhere


def test_verify_passes_and_catches_tampering(release_a, release_b, tmp_path):
    report = api.verify(release_a.out, seed=7)
    assert report.kind == "release" and [e.directory for e in report.exports] == ["big", "small"]
    assert all(e.max_abs <= 1e-4 for e in report.exports)
    assert api.verify(release_a.out / "small").kind == "export"
    result = runner.invoke(app, ["verify", str(release_b), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True

    broken = tmp_path / "broken"
    shutil.copytree(release_b, broken)
    dense = broken / "small" / "dense.safetensors"
    dense.write_bytes(dense.read_bytes()[:-1] + b"\x00")
    result = runner.invoke(app, ["verify", str(broken)])
    assert result.exit_code == 4 and "small/dense.safetensors" in result.stderr

    # a consistent forgery: another profile's model with every SHA256SUMS rewritten to match
    forged = tmp_path / "forged"
    shutil.copytree(release_b, forged)
    shutil.copyfile(forged / "big" / "model.onnx", forged / "small" / "model.onnx")
    write_sha256sums(forged / "small")
    write_sha256sums(forged, recursive=True)
    with pytest.raises(VerificationError, match=r"small/model.onnx: differs from the hash release.json records"):
        api.verify(forged)


def test_infeasible_only_release_and_allow_infeasible(tiny_ckpt, profile_dir, tmp_path):
    out = tmp_path / "dist"
    args = ["release", str(tiny_ckpt), "-p", str(profile_dir / "impossible.toml"), "--no-bench", "--out", str(out)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 3 and json.loads(result.stdout)["summary"]["infeasible"] == ["impossible"]
    assert sorted(p.name for p in out.iterdir()) == ["RELEASE.md", "SHA256SUMS", "pareto.png", "release.json"]
    result = runner.invoke(app, [*args, "--allow-infeasible"])
    assert result.exit_code == 2 and "--overwrite" in result.stderr  # never mixes into an old release
    result = runner.invoke(app, [*args, "--allow-infeasible", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "release.json").read_text())["summary"]["exit_code"] == 0
    _sha256sum_c(out)


def test_refusals_write_nothing(tiny_ckpt, profile_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    base = ["release", str(tiny_ckpt), "-p", str(profile_dir), "--no-bench"]
    result = runner.invoke(app, [*base, "--out", str(mine), "--overwrite"])
    assert result.exit_code == 2 and "--overwrite replaces only a release" in result.stderr
    twice = ["release", str(tiny_ckpt), "-p", str(profile_dir / "small.toml"), "-p", str(profile_dir / "small.toml")]
    result = runner.invoke(app, [*twice, "--no-bench", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "two profiles are named 'small'" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["release", str(tiny_ckpt), "-p", str(empty), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no .toml profile" in result.stderr
    dense = tmp_path / "dense.safetensors"
    api.slice_to_file(tiny_ckpt, "1x4", dense)
    with pytest.raises(InputError, match="needs a supernet"):
        api.release(dense, [profile_dir], tmp_path / "o", bench=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.safetensors", "empty", "mine"]
    result = runner.invoke(app, ["verify", str(mine)])
    assert result.exit_code == 2 and "not an s2g release or export" in result.stderr


def test_interrupted_release_leaves_nothing(tiny_ckpt, profile_dir, tmp_path, monkeypatch):
    import s2g_deploy.plots

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(s2g_deploy.plots, "pareto_png", interrupt)
    with pytest.raises(KeyboardInterrupt):
        api.release(tiny_ckpt, [profile_dir / "impossible.toml"], tmp_path / "new" / "dist", bench=False)
    assert list(tmp_path.iterdir()) == []


def test_benchmarked_release_records_latency(tiny_ckpt, tmp_path):
    pytest.importorskip("s2g_deploy.runtime.bench")
    profiles = tmp_path / "profiles"
    write_profile(profiles, "fast", "20M", latency_ms=10_000.0)
    write_profile(profiles, "strict", "20M", latency_ms=1e-6)
    result = api.release(tiny_ckpt, [profiles], tmp_path / "dist", bench=True)
    fast, strict = result.document["profiles"]
    assert fast["status"] == "ok" and fast["budgets"]["latency_ms"]["passed"] is True
    assert set(fast["latency"]["latency_ms"]) >= {"first", "mean", "p50", "p90", "p99", "max"}
    assert strict["status"] == "missed" and strict["missed"] == ["latency_ms"]
    assert isinstance(result.failure(), VerificationError)  # measured miss: exit 4
    assert result.document["bench_environment"]["onnxruntime_providers"]
    manifest = json.loads((result.out / "fast" / "manifest.json").read_text())
    assert manifest["bench"]["fast"]["export_dir"] == str(result.out / "fast")  # the final path, not staging
    _sha256sum_c(result.out)
    _sha256sum_c(result.out / "fast")


def test_env_json():
    result = runner.invoke(app, ["env", "--json"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.stdout)
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert env["versions"]["onnxruntime"] and env["cpu_model"] and env["platform"]
    assert env["torch_threads"]["intra_op"] >= 1
    result = runner.invoke(app, ["env"])
    assert result.exit_code == 0 and "onnxruntime providers" in result.stdout


def test_a_quality_unmeasured_at_the_workload_is_said_so_in_the_release_table():
    from s2g_deploy.quality import subnet_quality
    from s2g_deploy.release import _release_quality
    from s2g_deploy.release_notes import quality_text

    record = _release_quality(subnet_quality(QUALITY, "2x8", 0.064), "2x8")
    assert record["value"] is None and "quality unmeasured at this chunk length" in record["note"]
    assert quality_text(record) == "unmeasured at 0.064 s chunks"
    assert quality_text(_release_quality(subnet_quality(QUALITY, "2x8", 0.032), "2x8")) == "4.00 (0.032 s chunks)"
