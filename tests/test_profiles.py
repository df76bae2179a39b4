import json
import subprocess
import sys
import textwrap
import tomllib

import pytest
from typer.testing import CliRunner

from s2g_deploy.cli.app import app
from s2g_deploy.errors import ProfileError
from s2g_deploy.profiles import (
    EXECUTION_PROVIDERS,
    GRAPH_OPTIMIZATION_LEVELS,
    load_profile,
    parse_profile,
    read_profile,
    shipped_profile_dir,
    shipped_profiles,
)

runner = CliRunner()

GOOD = """
schema_version = 1
name = "kiosk"
description = "A test device."

[budgets]
max_params = "1.5M"
max_macs_per_second = 3e8
latency_ms = 20
latency_statistic = "p90"

[runtime]
execution_provider = "CPUExecutionProvider"
intra_op_threads = 2
inter_op_threads = 1
graph_optimization_level = "extended"
precision = "fp32"
opset = 17

[workload]
chunk_seconds = 0.5
batch = 2

[measurement]
warmup_runs = 0
timed_runs = 10
min_duration_s = 0
statistic = "mean"
"""

BAD = """
schema_version = 1
name = "Kiosk!"

[budgets]
max_parms = 100
max_macs_per_second = "abc"
latency_ms = -4

[runtime]
execution_provider = "CPUExecutionProvidr"
intra_op_threads = 0
inter_op_threads = true
graph_optimization_level = "full"
precision = "fp32"
opset = 13

[workload]
chunk_seconds = 0.5

[measurement]
warmup_runs = 1
timed_runs = 10
min_duration_s = 1
statistic = "p95"

[gpu]
memory = 4
"""


def test_shipped_profiles_validate_and_are_named_after_their_files():
    shipped = shipped_profiles()
    assert {"earbud", "watch", "phone", "laptop", "server"} <= set(shipped)
    for name, path in shipped.items():
        profile = read_profile(path)
        assert profile.name == name == path.stem
        assert profile.schema_version == 1 and len(profile.description) > 200  # reasoning, not a label
        assert profile.budgets.max_params and profile.budgets.max_macs_per_second
    assert shipped_profile_dir().name == "profiles"  # the source checkout's copy in this repository


def test_shipped_budgets_grow_with_the_device():
    order = ["earbud", "watch", "phone", "laptop", "server"]
    budgets = [load_profile(name).budgets for name in order]
    macs = [b.max_macs_per_second for b in budgets]
    params = [b.max_params for b in budgets]
    assert macs == sorted(macs) and len(set(macs)) == 5
    assert params == sorted(params) and len(set(params)) == 5
    assert 10e6 <= macs[0] <= 100e6  # earbud DSP: tens of MMAC/s
    assert macs[3] > 772_686_288  # the laptop runs the full xsmall network (772.7M MACs/s)


def test_names_in_the_schema_are_onnxruntime_names():
    ort = pytest.importorskip("onnxruntime")
    assert set(EXECUTION_PROVIDERS) <= set(ort.get_all_providers())
    for member in GRAPH_OPTIMIZATION_LEVELS.values():
        assert hasattr(ort.GraphOptimizationLevel, member)


def test_a_valid_profile_with_sizes_as_strings_and_numbers(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(GOOD)
    profile = load_profile(path)
    assert profile.budgets.max_params == 1_500_000 and profile.budgets.max_macs_per_second == 300_000_000
    assert profile.budgets.latency_ms == 20.0 and profile.budgets.max_real_time_factor is None
    assert profile.runtime.ort_graph_optimization_level == "ORT_ENABLE_EXTENDED"
    assert profile.workload.batch == 2 and profile.measurement.min_duration_s == 0.0
    assert profile.source == str(path)
    assert load_profile(str(path)) == profile


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(ProfileError) as info:
        read_profile(path)
    assert info.value.problems == (
        "name: must be a lower-case slug (letters, digits, '-', '_'), got 'Kiosk!'",
        "description: missing",
        "gpu: unknown key; expected one of budgets, description, measurement, name, runtime, schema_version, workload",
        "budgets.max_macs_per_second: 'abc' is not a size; expected a positive number with an optional K, M, G "
        "or T suffix (powers of 1000), e.g. 300M or 1.5M",
        "budgets.latency_ms: must be positive, got -4",
        "budgets.latency_statistic: required when budgets.latency_ms is set",
        "budgets.max_parms: unknown key; did you mean 'max_params'?",
        "runtime.execution_provider: must be one of " + ", ".join(EXECUTION_PROVIDERS) + "; got "
        "'CPUExecutionProvidr' (did you mean 'CPUExecutionProvider'?)",
        "runtime.intra_op_threads: must be at least 1, got 0",
        "runtime.inter_op_threads: must be an integer, got True",
        "runtime.graph_optimization_level: must be one of disable, basic, extended, all; got 'full'",
        "runtime.opset: must be at least 17, got 13",
        "workload.batch: missing",
        "measurement.statistic: must be one of p50, p90, p99, mean, max; got 'p95' (did you mean 'p99'?)",
    )
    assert str(info.value).startswith(f"{path}: invalid profile, 14 problems:\n  name: must be")


def test_missing_tables_schema_version_and_bad_toml(tmp_path):
    with pytest.raises(ProfileError) as info:
        parse_profile({"schema_version": 2, "name": "x", "description": "d", "runtime": 3}, "mem")
    assert info.value.problems == (
        "schema_version: must be 1 (this s2g reads profile schema version 1), got 2",
        "budgets: missing table [budgets]",
        "runtime: must be a table [runtime], got 3",
        "workload: missing table [workload]",
        "measurement: missing table [measurement]",
    )
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ProfileError, match=r"broken.toml: not valid TOML \(Invalid value \(at line 1, column 8\)\)"):
        read_profile(path)
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "nothere.toml")
    assert str(info.value) == f"{tmp_path / 'nothere.toml'}: no such profile file"


def test_unknown_profile_name_suggests_and_lists():
    with pytest.raises(ProfileError) as info:
        load_profile("phnoe")
    assert str(info.value) == (
        "unknown profile 'phnoe'; did you mean 'phone'? shipped profiles: earbud, laptop, phone, server, watch "
        "(or give the path of a .toml file)"
    )


def test_cli_list_show_validate(tmp_path):
    result = runner.invoke(app, ["profiles", "list"])
    assert result.exit_code == 0, result.output
    for name in ("earbud", "watch", "phone", "laptop", "server"):
        assert name in result.stdout
    docs = json.loads(runner.invoke(app, ["profiles", "list", "--json"]).stdout)
    assert [d["name"] for d in docs] == ["earbud", "watch", "phone", "laptop", "server"]  # smallest budget first

    result = runner.invoke(app, ["profiles", "show", "phone", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == load_profile("phone").to_dict()
    result = runner.invoke(app, ["profiles", "show", "phone"])
    assert "runtime.execution_provider" in result.stdout and "CPUExecutionProvider" in result.stdout

    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    result = runner.invoke(app, ["profiles", "validate", str(good)])
    assert result.exit_code == 0 and "valid profile 'kiosk'" in result.stdout
    result = runner.invoke(app, ["profiles", "validate", str(bad)])
    assert result.exit_code == 2 and result.stdout == ""
    assert "14 problems" in result.stderr and "runtime.opset: must be at least 17, got 13" in result.stderr
    result = runner.invoke(app, ["profiles", "validate", str(bad), "--json"])
    doc = json.loads(result.stdout)
    assert result.exit_code == 2 and doc["valid"] is False and len(doc["problems"]) == 14
    result = runner.invoke(app, ["profiles", "show", "nope"])
    assert result.exit_code == 2 and "unknown profile 'nope'" in result.stderr


def test_profiles_do_not_need_torch():
    code = "import sys; from s2g_deploy.profiles import load_profile; load_profile('earbud'); " + textwrap.dedent(
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_allow_spinning_is_optional_and_must_be_a_boolean(tmp_path):
    assert parse_profile(tomllib.loads(GOOD)).runtime.allow_spinning is True  # onnxruntime's default
    off = GOOD.replace("opset = 17\n", "opset = 17\nallow_spinning = false\n")
    assert parse_profile(tomllib.loads(off)).runtime.allow_spinning is False
    assert parse_profile(tomllib.loads(off)).to_dict()["runtime"]["allow_spinning"] is False
    for value, shown in (('"yes"', "'yes'"), ("1", "1")):
        path = tmp_path / "spin.toml"
        path.write_text(GOOD.replace("opset = 17\n", f"opset = 17\nallow_spinning = {value}\n"))
        with pytest.raises(ProfileError) as info:
            read_profile(path)
        assert info.value.problems == (f"runtime.allow_spinning: must be true or false, got {shown}",)
