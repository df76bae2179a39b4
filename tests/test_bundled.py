"""The supernet shipped in the package: present, trained, and what commands use by default."""

import json

from typer.testing import CliRunner

from s2g_deploy.bundled import BUNDLED_SUPERNET
from s2g_deploy.checkpoint import read_meta
from s2g_deploy.cli.app import app


def test_bundled_supernet_is_trained_and_its_quality_table_holds_the_claims():
    meta = read_meta(BUNDLED_SUPERNET)
    assert BUNDLED_SUPERNET.stat().st_size < 5_000_000
    assert meta.kind == "supernet" and meta.training["mode"] == "s2g" and meta.training["steps_done"] > 0
    assert meta.training["command"].startswith("s2g train ") and meta.training["wall_time_s"] > 0
    q = meta.quality
    assert q["data"]["split"] == "test" and q["data"]["tracks"] >= 16
    mixture = q["mixture"]["usdr_db"]
    scores = {s: v["usdr_db"] for s, v in q["subnets"].items()}
    assert len(scores) == len(meta.space.grid())
    assert scores[str(meta.space.largest)] >= mixture + 6.0
    assert min(scores.values()) > mixture  # one set of weights serves every size
    for depth in meta.space.depths:  # wider is better at every depth
        row = [scores[f"{depth}x{width}"] for width in meta.space.widths]
        assert row == sorted(row), (depth, row)


def test_export_without_a_checkpoint_uses_the_bundled_supernet(tmp_path):
    result = CliRunner().invoke(app, ["export", "--budget-macs", "300M", "--out", str(tmp_path / "phone"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    manifest = json.loads((tmp_path / "phone" / "manifest.json").read_text())
    meta = read_meta(BUNDLED_SUPERNET)
    assert manifest["hashes"]["supernet_weights_sha256"] == meta.weights_sha256
    assert doc["subnet"] == manifest["subnet"] == "2x24"  # the best subnet within 300M in the README quality table
    assert manifest["costs"]["macs_per_second"]["network"] <= 300_000_000
    assert manifest["quality"]["subnets"]["2x24"]["usdr_db"] == round(meta.quality["subnets"]["2x24"]["usdr_db"], 3)
