import json
import subprocess
import sys

from typer.testing import CliRunner

from s2g_deploy import __version__
from s2g_deploy.cli.app import app

runner = CliRunner()


def test_help_does_not_import_torch():
    code = "import sys; from s2g_deploy.cli.app import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "inspect" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_init_slice_inspect_json(tmp_path):
    sn = tmp_path / "sn.safetensors"
    assert runner.invoke(app, ["init", "--preset", "tiny", "--out", str(sn)]).exit_code == 0
    result = runner.invoke(app, ["inspect", str(sn), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["kind"] == "supernet" and doc["params"] == 20696
    assert [s["subnet"] for s in doc["subnets"]] == ["1x4", "1x8", "2x4", "2x8"]
    assert doc["subnets"][-1]["params"] == 20696
    dense = tmp_path / "d.safetensors"
    result = runner.invoke(app, ["slice", str(sn), "--subnet", "1x4", "--out", str(dense), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params"] == doc["subnets"][0]["params"]
    doc = json.loads(runner.invoke(app, ["inspect", str(dense), "--json"]).stdout)
    assert doc["kind"] == "dense" and doc["subnet"] == "1x4" and doc["subnets"] == []


def test_inspect_renders_a_table_for_a_preset():
    result = runner.invoke(app, ["inspect", "--preset", "paper"])
    assert result.exit_code == 0
    assert "25,648,264" in result.stdout and "width 128" in result.stdout


def test_bad_checkpoint_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x02}q\x00.")
    result = runner.invoke(app, ["inspect", str(bad)])
    assert result.exit_code == 2
    assert "pickle" in result.stderr and str(bad.name) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_subnet_errors_exit_2(tmp_path):
    sn = tmp_path / "sn.safetensors"
    runner.invoke(app, ["init", "--preset", "tiny", "--out", str(sn)])
    out = tmp_path / "d.safetensors"
    result = runner.invoke(app, ["slice", str(sn), "--subnet", "3x8", "--out", str(out)])
    assert result.exit_code == 2 and "depths 1,2 x widths 4,8" in result.stderr
    result = runner.invoke(app, ["slice", str(sn), "--subnet", "banana", "--out", str(out)])
    assert result.exit_code == 2 and "DEPTHxWIDTH" in result.stderr
    assert not out.exists()


def test_unknown_preset_exits_2():
    result = runner.invoke(app, ["inspect", "--preset", "huge"])
    assert result.exit_code == 2 and "paper, small, xsmall, xsmall-causal, tiny-causal, tiny" in result.stderr
