"""The supernet shipped in the package: present, trained, and what commands use by default."""

import json

from typer.testing import CliRunner

from s2g_deploy.bundled import BUNDLED_SUPERNET
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
    # every shipped profile's chunk length is measured, for every subnet, on both splits
    chunks = {f"{load_profile(name).workload.chunk_seconds:g}" for name in shipped_profiles()}
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
