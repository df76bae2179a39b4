"""Every class of bad input and fault a user can hit: one clear line, the documented exit code, nothing left.

A reviewer can run this file against any future command: each test names a class of error (markup in user
text, operating-system errors, non-ASCII numbers, interrupts, overwrite safety, rank-0 output, JSON errors,
usage errors, closed pipes, special files, self-contradicting checkpoints).
"""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import chunked
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.artifacts import MANIFEST, MANIFEST_FORMAT, SHA256SUMS, StagedDirectory, check_target
from s2g_deploy.checkpoint import FORMAT
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError, SubnetError
from s2g_deploy.subnet import Subnet
from s2g_deploy.units import parse_size

runner = CliRunner()


def _s2g(*args, **kwargs) -> subprocess.CompletedProcess:
    """The real console entry point (``run()``), as a user's shell calls it."""
    return subprocess.run([sys.executable, "-m", "s2g_deploy", *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    api.init("tiny", path, seed=0)
    return path


# --- user text is never markup ----------------------------------------------------------------------


def test_markup_in_values_and_paths_is_shown_as_written(tiny_ckpt, tmp_path):
    result = runner.invoke(app, ["search", str(tiny_ckpt), "--budget-macs", "[/]"])
    assert result.exit_code == 2 and "'[/]' is not a size" in result.stderr
    out = tmp_path / "song[live].safetensors"
    result = runner.invoke(app, ["init", "--preset", "tiny", "--out", str(out)])
    assert result.exit_code == 0 and "song[live].safetensors" in result.stdout
    result = runner.invoke(app, ["profiles", "validate", str(tmp_path / "[bold]x.toml")])
    assert result.exit_code == 2 and "[bold]x.toml" in result.stderr


# --- operating-system errors: exit 2 naming the path and the cause ---------------------------------------


def test_os_errors_name_the_path_and_the_cause(tiny_ckpt, tmp_path):
    (tmp_path / "taken").mkdir()
    result = runner.invoke(app, ["slice", str(tiny_ckpt), "--subnet", "1x4", "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2 and "taken" in result.stderr and "Traceback" not in result.output
    long = tmp_path / ("a" * 300 + ".safetensors")
    result = runner.invoke(app, ["init", "--preset", "tiny", "--out", str(long)])
    assert result.exit_code == 2 and "File name too long" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-written beside them


def test_a_full_disk_is_exit_2_with_nothing_left(tmp_path, monkeypatch):
    def full(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("safetensors.torch.save_file", full)
    result = runner.invoke(app, ["init", "--preset", "tiny", "--out", str(tmp_path / "x.safetensors")])
    assert result.exit_code == 2 and "No space left on device" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- numbers are ASCII -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["٣٠٠M", "３００M", "3\u0663"])
def test_non_ascii_digits_are_refused(text):
    with pytest.raises(InputError, match="is not a size"):
        parse_size(text, "--budget-macs")
    with pytest.raises(SubnetError):
        Subnet.parse("٢x١٦")
    assert parse_size("300M", "--budget-macs") == 300_000_000 and Subnet.parse("2x16") == Subnet(2, 16)


# --- interrupts ----------------------------------------------------------------------------------------


def test_an_interrupt_swallowed_by_native_code_still_stops_the_commit(tmp_path):
    """onnxsim's C++ catches a KeyboardInterrupt raised in a Python callback; the staging remembers it."""
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), StagedDirectory(target) as staging:
        (staging.path / "model.onnx").write_bytes(b"x")
        with contextlib.suppress(KeyboardInterrupt):  # what the native code does
            os.kill(os.getpid(), signal.SIGINT)  # delivered now, in the main thread
        staging.commit()
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


# --- overwrite never deletes what s2g did not write ----------------------------------------------------------


def test_overwrite_refuses_an_export_holding_a_users_file(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT}))
    (out / "model.onnx").write_bytes(b"onnx")
    (out / SHA256SUMS).write_text(f"{'0' * 64}  {MANIFEST}\n{'0' * 64}  model.onnx\n")
    assert check_target(out, overwrite=True) == out
    (out / "my notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"holds files s2g did not write \(my notes.txt\)"):
        check_target(out, overwrite=True)


# --- output conventions ----------------------------------------------------------------------------------


def test_json_failures_print_an_error_document(tiny_ckpt):
    result = runner.invoke(app, ["search", str(tiny_ckpt), "--budget-macs", "1K", "--json"])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["error"]["exit_code"] == 3 and "no subnet meets the budget" in doc["error"]["message"]


def test_usage_errors_are_one_line_and_exit_2():
    done = _s2g("search", "--bogus", timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: No such option: --bogus (see 's2g search --help')"]


def test_a_closed_stdout_ends_quietly(tiny_ckpt):
    cmd = f"{sys.executable} -m s2g_deploy search {tiny_ckpt} --all | true; echo ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "141" and "Traceback" not in done.stderr and "error" not in done.stderr


def test_only_rank_0_reports_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    args = [
        "train",
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--segment-seconds",
        "0.25",
        "--threads",
        "1",
    ]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r1"), "--json"])
    assert result.exit_code == 0 and result.stdout == ""
    monkeypatch.setenv("RANK", "0")
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r0"), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["steps"] == 1


# --- special files and self-contradicting inputs -------------------------------------------------------------


def test_a_fifo_profile_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "device.toml"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["profiles", "validate", str(fifo)])
    assert result.exit_code == 2 and "not a regular file" in result.stderr


def test_checkpoint_metadata_contradicting_itself_is_invalid_input(tiny_ckpt, tmp_path):
    with safe_open(tiny_ckpt, framework="pt") as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta = json.loads(header[FORMAT])
    meta["elastic_space"]["depths"] = [1, 2, 3]  # a space beyond the model's two blocks
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata={FORMAT: json.dumps(meta)})
    result = runner.invoke(app, ["export", str(bad), "--subnet", "1x4", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "describes no valid model" in result.stderr
    assert not (tmp_path / "o").exists()


def test_no_measure_latency_marks_latency_unverified(tiny_ckpt, tmp_path):
    result = api.export(tiny_ckpt, profile=chunked("phone"), out=tmp_path / "o", measure_latency=False)
    assert any("UNVERIFIED" in n and "--no-measure-latency" in n for n in result.manifest["notes"])
