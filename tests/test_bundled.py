"""The supernet shipped in the package: present, trained, and what commands use by default."""

import json

from typer.testing import CliRunner

from s2g_deploy.bundled import BUNDLED_CAUSAL_SUPERNET, BUNDLED_SUPERNET
from s2g_deploy.checkpoint import read_meta
from s2g_deploy.cli.app import app
from s2g_deploy.profiles import load_profile, shipped_profiles


def test_bundled_supernet_is_trained_and_its_quality_table_holds_the_claims():
    """What the README says of the shipped supernet (section "The bundled supernet")."""
    meta = read_meta(BUNDLED_SUPERNET)
    assert BUNDLED_SUPERNET.stat().st_size < 5_000_000
    assert meta.kind == "supernet" and meta.training["mode"] == "s2g" and meta.training["steps_done"] == 1800
    assert meta.training["command"].startswith("s2g train ") and meta.training["wall_time_s"] > 0
    assert meta.training["data_description"]["kind"] == "stems"  # rendered music, not the synthetic set
    q = meta.quality
    assert q["data"]["split"] == "test" and q["data"]["rendered"]["soundfont"] == "FluidR3_GM.sf2"
    assert q["data"]["tracks"] >= 16 and q["splits"]["timbre-shift"]["data"]["rendered"]["soundfont"] == "TimGM6mb.sf2"
    mixture = q["mixture"]["usdr_db"]
    scores = {s: v["usdr_db"] for s, v in q["subnets"].items()}
    assert len(scores) == len(meta.space.grid())
    assert scores[str(meta.space.largest)] >= mixture + 6.0
    assert min(scores.values()) > mixture  # one set of weights serves every size
    # every shipped chunk profile's chunk length is measured, for every subnet, on both splits (stream
    # profiles stream the causal supernet, whose whole-clip figure is what a stream computes)
    chunk_profiles = [p for p in map(load_profile, shipped_profiles()) if p.workload.mode == "chunk"]
    assert {p.name for p in chunk_profiles} == {"laptop", "server"}
    chunks = {f"{p.workload.chunk_seconds:g}" for p in chunk_profiles}
    assert chunks <= set(q["chunked"]) and chunks <= set(q["splits"]["timbre-shift"]["chunked"])
    for key in chunks:
        assert set(q["chunked"][key]["subnets"]) == set(scores)
    # wider is better at every depth on whole clips and where the chunks are long enough to hear it
    for key in ("whole clip", "0.128", "1"):
        rows = scores if key == "whole clip" else {s: v["usdr_db"] for s, v in q["chunked"][key]["subnets"].items()}
        for depth in meta.space.depths:
            row = [rows[f"{depth}x{width}"] for width in meta.space.widths]
            assert row == sorted(row), (key, depth, row)


def test_export_without_a_checkpoint_uses_the_bundled_supernet(tmp_path):
    result = CliRunner().invoke(app, ["export", "--budget-macs", "300M", "--out", str(tmp_path / "phone"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    manifest = json.loads((tmp_path / "phone" / "manifest.json").read_text())
    meta = read_meta(BUNDLED_SUPERNET)
    assert manifest["hashes"]["supernet_weights_sha256"] == meta.weights_sha256
    assert doc["subnet"] == manifest["subnet"] == "1x32"  # the best whole-clip subnet within 300M (README table)
    assert manifest["costs"]["macs_per_second"]["network"] <= 300_000_000
    assert manifest["quality"]["subnets"]["1x32"]["usdr_db"] == round(meta.quality["subnets"]["1x32"]["usdr_db"], 3)
    card = (tmp_path / "phone" / "model_card.md").read_text()
    limits = card.split("## Training data and limits")[1].split("##")[0]
    assert "240 tracks of General-MIDI songs" in limits and "soundfont FluidR3_GM.sf2, split train" in limits
    assert "not a MUSDB18-trained separator" in limits and "- Target: `vocals`" in limits
    assert "A 16 kHz model: nothing above 8 kHz reaches the target" in limits


def test_bundled_causal_supernet_is_trained_and_beats_the_mixture():
    """What the README says of the shipped causal supernet (section "Streaming")."""
    meta = read_meta(BUNDLED_CAUSAL_SUPERNET)
    assert BUNDLED_CAUSAL_SUPERNET.stat().st_size < 5_000_000
    assert meta.architecture == "bsrnn-causal" and meta.kind == "supernet"
    assert meta.training["mode"] == "s2g" and meta.training["steps_done"] == 1800
    assert "--preset xsmall-causal" in meta.training["command"]
    q = meta.quality
    assert (
        q["data"]["split"] == "test" and q["splits"]["timbre-shift"]["data"]["rendered"]["soundfont"] == "TimGM6mb.sf2"
    )
    mixture = q["mixture"]["usdr_db"]
    scores = {s: v["usdr_db"] for s, v in q["subnets"].items()}
    assert len(scores) == len(meta.space.grid()) and all("csdr_db" in v for v in q["subnets"].values())
    assert scores[str(meta.space.largest)] >= mixture + 4.0  # the bar: 4 dB over the mixture
    assert min(scores.values()) > mixture


def test_bundled_causal_stream_reproduces_its_dense_model(tmp_path):
    """Stream parity on the bundled causal supernet: the earbud's subnet, hop by hop and 7 hops per call."""
    profile = load_profile("earbud")
    result = CliRunner().invoke(
        app, ["export", "--profile", "earbud", "--precision", "fp32", "--no-measure-latency", "--json",
              "--out", str(tmp_path / "earbud")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "earbud" / "manifest.json").read_text())
    assert manifest["hashes"]["supernet_weights_sha256"] == read_meta(BUNDLED_CAUSAL_SUPERNET).weights_sha256
    assert manifest["model"]["io"] == "stream" and manifest["parity"]["passed"]
    assert manifest["parity"]["max_abs"] <= 1e-4 and "onnx_simplified_1hop" in str(manifest["parity"]["stages"])
    stream = manifest["stream"]
    assert stream["hops_per_call"] * stream["hop_length"] == round(profile.workload.chunk_seconds * 16000)
    assert stream["algorithmic_latency_ms"] == 16.0 and stream["delay_samples"] == 128
    assert manifest["quality"]["workload"]["label"].startswith("stream")
