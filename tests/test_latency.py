"""The latency model: fit, MAPE, calibration subnets, the cache key, latency-aware search and export."""

import json
from types import SimpleNamespace

import pytest
from runtime_helpers import profile_toml, quick_profile, tiny_checkpoint
from typer.testing import CliRunner

from s2g_deploy import api, deploy
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError, VerificationError
from s2g_deploy.export import parity
from s2g_deploy.runtime import latency
from s2g_deploy.runtime.latency import FEATURES, Point, calibration_subnets, fit, mape
from s2g_deploy.search import search
from s2g_deploy.subnet import Subnet

runner = CliRunner()
TRUE = {"intercept": 2.0, "depth": 0.5, "block_mmacs": 0.03, "other_mmacs": 0.2}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("S2G_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(parity, "PARITY_SECONDS", (0.2, 0.45, 1.1))  # tiny model, hop 16: keep parity short


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("lat") / "tiny.safetensors")


def _points(coefficients, noise=()):
    rows = []
    for i, (depth, block, other) in enumerate([(1, 10, 2), (2, 40, 3), (3, 90, 5), (4, 160, 8), (2, 5, 1), (4, 20, 9)]):
        feats = {"intercept": 1.0, "depth": depth, "block_mmacs": block, "other_mmacs": other}
        y = sum(coefficients[n] * feats[n] for n in FEATURES) * (1 + (noise[i] if noise else 0))
        rows.append(Point(f"{depth}x{i}", feats, y))
    return rows


def test_fit_recovers_known_coefficients():
    found = fit(_points(TRUE))
    assert found == pytest.approx(TRUE, rel=1e-9)
    assert mape(found, _points(TRUE)) == pytest.approx(0, abs=1e-12)


def test_mape_by_hand():
    points = [Point("a", {"intercept": 1, "depth": 0, "block_mmacs": 0, "other_mmacs": 0}, y) for y in (2.0, 4.0)]
    assert mape({"intercept": 3.0, "depth": 0, "block_mmacs": 0, "other_mmacs": 0}, points) == pytest.approx(0.375)
    assert mape(TRUE, []) is None


def test_fit_keeps_coefficients_physical():
    # latency that falls with depth would need a negative per-block cost: that feature is dropped instead
    wrong = {"intercept": 20.0, "depth": -2.0, "block_mmacs": 0.03, "other_mmacs": 0.2}
    found = fit(_points(wrong))
    assert found["depth"] == 0.0 and min(found.values()) >= 0


def test_calibration_subnets_are_disjoint_and_spread():
    grid = [Subnet(d, w) for d in (1, 2, 3, 4) for w in (8, 16, 24, 32)]
    fitted, held = calibration_subnets(grid)
    assert {Subnet(1, 8), Subnet(1, 32), Subnet(4, 8), Subnet(4, 32)} <= set(fitted) and len(fitted) == 6
    assert len(held) == 6 and not set(fitted) & set(held)
    assert {s.depth for s in held} >= {1, 2, 3} and len({s.width for s in held}) >= 3
    fitted, held = calibration_subnets([Subnet(d, w) for d in (1, 2) for w in (4, 8)])
    assert len(fitted) == 4 and held == []


def test_cache_key_changes_with_profile_and_machine(tiny_ckpt, monkeypatch):
    profile = quick_profile()
    model = _synthetic_model(tiny_ckpt, profile)
    latency.store_model(model)
    assert latency.cached_model(tiny_ckpt, profile) is not None
    assert latency.cached_model(tiny_ckpt, quick_profile(timed_runs=6)) is None  # another protocol
    assert latency.cached_model(tiny_ckpt, quick_profile(runtime={"intra_op_threads": 2})) is None
    assert latency.cached_model(tiny_ckpt, profile, io="spectrogram") is None
    monkeypatch.setattr("s2g_deploy.environment.cpu_model", lambda: "another CPU")
    assert latency.cached_model(tiny_ckpt, profile) is None


def _synthetic_model(ckpt, profile, coefficients=None):
    """A latency model with given coefficients (default: slower the bigger), keyed for ``profile``."""
    from s2g_deploy.cost import subnet_costs

    costs = subnet_costs(ckpt)
    frames = costs.chunk_frames(profile.workload.chunk_seconds)
    coefficients = coefficients or {"intercept": 1.0, "depth": 1.0, "block_mmacs": 0.0, "other_mmacs": 0.0}
    return latency.LatencyModel(
        profile=profile.name,
        statistic=latency.modelled_statistic(profile),
        frames=frames,
        batch=1,
        coefficients=coefficients,
        fitted_on=tuple(
            Point(str(e.subnet), latency.features(e, frames, 1), 1.0 + e.subnet.depth) for e in costs.entries
        ),
        held_out=(),
        mape_held_out=None,
        key=latency.cache_key(profile, costs.weights_sha256, "waveform"),
    )


def test_calibrate_measures_fits_and_caches(tiny_ckpt):
    profile = quick_profile()
    result = runner.invoke(app, ["calibrate", str(tiny_ckpt), "--device", _toml(profile), "--repeats", "2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted(p["subnet"] for p in doc["fitted_on"]) == ["1x4", "1x8", "2x4", "2x8"]
    assert all(p["latency_ms"] > 0 for p in doc["fitted_on"]) and doc["statistic"] == "p90"
    cached = latency.cached_model(tiny_ckpt, profile)
    assert cached is not None and cached.coefficients == doc["coefficients"]


def _toml(profile) -> str:
    return str(profile_toml(profile, latency.costcache.cache_dir()))


def test_search_uses_a_cached_model(tiny_ckpt):
    profile = quick_profile(budgets={"latency_ms": 2.5, "latency_statistic": "p90"})
    assert search(tiny_ckpt, profile=profile).chosen.subnet == Subnet(2, 8)  # no model: static budgets only
    latency.store_model(_synthetic_model(tiny_ckpt, profile))  # predicts 1 + depth ms
    result = search(tiny_ckpt, profile=profile)
    assert result.chosen.subnet == Subnet(1, 8) and result.chosen.predicted_latency_ms == pytest.approx(2.0)
    assert "latency_ms" in result.binding and result.to_dict()["latency_model"]["statistic"] == "p90"
    strict = quick_profile(budgets={"latency_ms": 1.5, "latency_statistic": "p90"})
    latency.store_model(_synthetic_model(tiny_ckpt, strict))
    result = runner.invoke(app, ["search", str(tiny_ckpt), "--profile", _toml(strict)])
    assert result.exit_code == 3 and "predicted" in result.stderr


def _fake_measurements(monkeypatch, measured: dict):
    """Make the export's measurement report ``measured[subnet]`` ms (p90) instead of timing."""
    calls = []

    def fake(facts, profile):
        ms = measured[facts.subnet]
        calls.append(facts.subnet)
        limit = profile.budgets.latency_ms
        budgets = {"latency_ms": {"limit": limit, "measured": ms, "passed": ms <= limit, "statistic": "p90"}}
        stats = {"p90": ms, "p50": ms}
        return SimpleNamespace(latency_ms=stats, budgets=budgets, to_dict=lambda samples=True: {"latency_ms": stats})

    monkeypatch.setattr("s2g_deploy.runtime.bench.measure_model", fake)
    return calls


def test_export_retries_after_a_measured_miss(tiny_ckpt, tmp_path, monkeypatch):
    profile = quick_profile(budgets={"latency_ms": 2.5, "latency_statistic": "p90"})
    latency.store_model(_synthetic_model(tiny_ckpt, profile))  # 1x8 and 1x4 predicted 2 ms, 2x* 3 ms
    calls = _fake_measurements(monkeypatch, {"1x8": 2.9, "1x4": 2.2})
    result = api.export(tiny_ckpt, profile=profile, out=tmp_path / "out")
    assert calls == ["1x8", "1x4"] and result.subnet == Subnet(1, 4)
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [a["subnet"] for a in m["latency"]["attempts"]] == ["1x8", "1x4"]
    assert m["latency"]["attempts"][0]["predicted_ms"] == pytest.approx(2.0)
    assert m["latency"]["measured_ms"] == 2.2 and m["latency"]["predicted_ms"] > 2.0  # refitted after the miss
    assert m["selection"]["chosen"]["subnet"] == "1x4" and m["bench"]["quick"]["model"].endswith("out/model.onnx")
    refit = latency.cached_model(tiny_ckpt, profile)  # the miss was folded into the cached model
    assert any(p.source == "export" and p.subnet == "1x8" for p in refit.fitted_on)


def test_export_exits_4_when_every_candidate_misses(tiny_ckpt, tmp_path, monkeypatch):
    profile = quick_profile(budgets={"latency_ms": 2.5, "latency_statistic": "p90"})
    latency.store_model(_synthetic_model(tiny_ckpt, profile))
    calls = _fake_measurements(monkeypatch, {"1x8": 2.9, "1x4": 2.7, "2x4": 4.0, "2x8": 5.0})
    result = runner.invoke(app, ["export", str(tiny_ckpt), "--profile", _toml(profile), "--out", str(tmp_path / "o")])
    assert result.exit_code == 4, result.output
    assert len(calls) == deploy.MAX_ATTEMPTS and "closest miss 1x4" in result.stderr and "2.700" in result.stderr
    assert not (tmp_path / "o").exists()
    with pytest.raises(VerificationError):
        api.export(tiny_ckpt, profile=profile, out=tmp_path / "o")


def test_no_measure_latency_skips_prediction(tiny_ckpt, tmp_path, monkeypatch):
    profile = quick_profile(budgets={"latency_ms": 0.001, "latency_statistic": "p90"})
    monkeypatch.setattr(latency, "calibrate", lambda *a, **k: pytest.fail("calibrated"))
    result = api.export(tiny_ckpt, profile=profile, out=tmp_path / "o", measure_latency=False)
    assert result.subnet == Subnet(2, 8) and "latency" not in result.manifest


def test_predicted_to_fit_allows_for_the_model_error(tiny_ckpt):
    from dataclasses import replace

    from s2g_deploy.cost import subnet_costs

    profile = quick_profile(budgets={"latency_ms": 2.5, "latency_statistic": "p90"})
    cost = subnet_costs(tiny_ckpt).get(Subnet(1, 8))
    exact = _synthetic_model(tiny_ckpt, profile)  # predicts 2 ms for depth 1
    assert latency.predicted_violations(exact, profile, cost) == (pytest.approx(2.0), ())
    unsure = replace(exact, mape_held_out=0.3)  # 2 ms * 1.3 > 2.5 ms: not safely inside
    assert latency.predicted_violations(unsure, profile, cost) == (pytest.approx(2.0), ("latency_ms",))


def test_the_library_calibrates_only_when_asked(tiny_ckpt, tmp_path, monkeypatch):
    profile = quick_profile(budgets={"latency_ms": 2.5, "latency_statistic": "p90"})  # no latency model cached
    monkeypatch.setattr(latency, "calibrate", lambda *a, **k: pytest.fail("calibrated"))
    with pytest.raises(InputError, match="no latency model"):
        api.export(tiny_ckpt, profile=profile, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_export_takes_its_measurer_and_parity_lengths(tiny_ckpt, tmp_path):
    from s2g_deploy.export.pipeline import ExportOptions

    profile = quick_profile(budgets={"latency_ms": 2.5, "latency_statistic": "p90"})
    latency.store_model(_synthetic_model(tiny_ckpt, profile))  # 1x8 predicted 2 ms: the first candidate
    seen = []

    def measure(model, prof):
        seen.append(model)
        ms = {"p90": 2.2, "p50": 2.0}
        budgets = {"latency_ms": {"limit": 2.5, "measured": 2.2, "passed": True, "statistic": "p90"}}
        return SimpleNamespace(latency_ms=ms, budgets=budgets, to_dict=lambda samples=True: {"latency_ms": ms})

    options = ExportOptions(tmp_path / "o", tiny_ckpt, profile=profile, parity_seconds=(0.3, 0.7, 1.3))
    result = deploy.export(options, measure=measure)
    assert result.subnet == Subnet(1, 8) and len(seen) == 1 and result.manifest["latency"]["measured_ms"] == 2.2
    assert result.manifest["settings"]["parity_lengths_samples"] == [round(s * 16000) + 3 for s in (0.3, 0.7, 1.3)]
