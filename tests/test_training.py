import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import s2g_deploy.train.loop as loop
from s2g_deploy.checkpoint import load_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError
from s2g_deploy.models.bsrnn import BSRNN
from s2g_deploy.subnet import Subnet
from s2g_deploy.train.evaluate import evaluate
from s2g_deploy.train.loop import TrainConfig, train
from s2g_deploy.train.recipe import Recipe

FAST = dict(preset="tiny", batch_size=4, segment_seconds=0.25, val_items=2, val_seconds=0.25)


def _weights(path):
    return load_checkpoint(path).model.state_dict()


def test_s2g_training_learns_and_writes_a_supernet(tmp_path):
    result = train(TrainConfig(out=tmp_path / "run", steps=8, val_every=4, save_every=4, **FAST), progress=False)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.meta.kind == "supernet"
    t = ckpt.meta.training
    assert t["mode"] == "s2g" and t["steps_done"] == 8 and t["seed"] == 0 and t["wall_time_s"] > 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [4, 8] and {"full_usdr_db", "smallest_usdr_db"} <= set(log[0])
    assert (tmp_path / "run" / "state.safetensors").is_file()


def test_resume_after_an_interruption_reaches_the_same_weights(tmp_path, monkeypatch):
    straight = train(TrainConfig(out=tmp_path / "a", steps=6, val_every=100, save_every=2, **FAST), progress=False)

    calls = {"n": 0}
    real = loop.separation_loss

    def dies_in_step_four(*args):
        calls["n"] += 1
        if calls["n"] > 3 * 2:  # two losses per step: step 4's first loss
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(loop, "separation_loss", dies_in_step_four)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=tmp_path / "b", steps=6, val_every=100, save_every=2, **FAST), progress=False)
    monkeypatch.setattr(loop, "separation_loss", real)
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists()  # only the state of step 2
    resumed = train(
        TrainConfig(out=tmp_path / "b", steps=6, val_every=100, save_every=2, resume=True, **FAST), progress=False
    )
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    train(TrainConfig(out=tmp_path / "run", steps=1, **FAST), progress=False)
    with pytest.raises(InputError, match="not empty"):
        train(TrainConfig(out=tmp_path / "run", steps=1, **FAST), progress=False)
    with pytest.raises(InputError, match="nothing to resume"):
        train(TrainConfig(out=tmp_path / "new", steps=1, resume=True, **FAST), progress=False)


def test_fixed_subnet_mode_trains_a_dense_model(tmp_path):
    result = train(TrainConfig(out=tmp_path / "run", steps=2, fixed_subnet=Subnet(1, 4), **FAST), progress=False)
    ckpt = load_checkpoint(result.checkpoint)
    assert type(ckpt.model) is BSRNN and ckpt.meta.subnet == Subnet(1, 4)
    assert ckpt.meta.training["mode"] == "fixed"
    with pytest.raises(InputError, match="not in this supernet's elastic space"):
        train(TrainConfig(out=tmp_path / "bad", steps=1, fixed_subnet=Subnet(5, 4), **FAST), progress=False)


def test_sandwich_and_distillation_change_the_update(tmp_path):
    runs = {}
    variants = {
        "plain": {},
        "sandwich": {"recipe": Recipe(sandwich=True)},
        "distill": {"recipe": Recipe(distill=1.0)},
    }
    for name, extra in variants.items():
        runs[name] = _weights(
            train(TrainConfig(out=tmp_path / name, steps=2, **FAST, **extra), progress=False).checkpoint
        )
    key = "blocks.0.time.lstm.weight_ih_l0"
    assert not torch.equal(runs["plain"][key], runs["sandwich"][key])
    assert not torch.equal(runs["plain"][key], runs["distill"][key])


def test_evaluate_writes_a_quality_table_for_every_subnet(tmp_path):
    ckpt = train(TrainConfig(out=tmp_path / "run", steps=1, **FAST), progress=False).checkpoint
    result = evaluate(ckpt, items=3, seconds=0.5)
    assert result.checkpoint == ckpt.with_suffix(".evaluated.safetensors")
    q = load_checkpoint(result.checkpoint).meta.quality
    assert set(q["subnets"]) == {"1x4", "1x8", "2x4", "2x8"} and q["data"]["split"] == "test"
    assert q["data"]["tracks"] == 3 and len(q["data"]["sha256"]) == 64
    assert q["mixture"]["usdr_db"] == pytest.approx(q["mixture"]["sisdr_db"], abs=0.01)  # identity estimate
    assert load_checkpoint(ckpt).meta.quality is None  # the original is untouched
    evaluate(ckpt, items=2, seconds=0.5, in_place=True)
    assert load_checkpoint(ckpt).meta.quality["data"]["tracks"] == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path):
    args = [
        "train",
        "--preset",
        "tiny",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--segment-seconds",
        "0.25",
        "--val-every",
        "100",
        "--save-every",
        "100",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "s2g_deploy",
        *args,
        "--out",
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "s2g_deploy", *args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = load_checkpoint(tmp_path / "ddp" / "checkpoint.safetensors")
    assert ddp.meta.training["world_size"] == 2 and ddp.meta.training["ranks_identical"] is True
    one = _weights(tmp_path / "one" / "checkpoint.safetensors")
    worst = max((ddp.model.state_dict()[k] - one[k]).abs().max().item() for k in one)
    assert worst < 1e-4
    # The comparison means nothing unless the three steps moved the weights away from their initialisation.
    init = loop._build_model(TrainConfig(out=tmp_path / "init", preset="tiny"))[0].state_dict()
    assert max((one[k] - init[k]).abs().max().item() for k in one) > 100 * worst


def test_cli_train_records_the_command(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
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
            "1",  # not auto: it would set torch's threads of this test process by the machine's load
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["steps"] == 1
    # from the parsed options, not sys.argv (which is pytest's here): every option spelled out
    command = load_checkpoint(out / "checkpoint.safetensors").meta.training["command"]
    assert command.startswith("s2g train ")
    assert "--preset tiny" in command and "--steps 1" in command and "--recipe sandwich-mixed" in command
    # the default recipe is the study's pick (tied best over two seeds) as the study ran it
    # (benchmarks/results/s2g_vs_independent.md)
    recipe = load_checkpoint(out / "checkpoint.safetensors").meta.training["recipe"]
    assert recipe["sandwich"] and recipe["subnets_per_step"] == 2 and recipe["distill"] == 0.5
    assert recipe["shrink_start"] == 0.1 and recipe["schedule"] == "cosine" and recipe["warmup_steps"] == 100
