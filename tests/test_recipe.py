"""S2G recipes: subnet sampling, learning-rate schedule, distillation, EMA, warm start; exact resume."""

import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch

import s2g_deploy.train.loop as loop
from s2g_deploy.api import slice_to_file
from s2g_deploy.checkpoint import load_checkpoint
from s2g_deploy.errors import InputError
from s2g_deploy.models.registry import get_preset
from s2g_deploy.subnet import Subnet
from s2g_deploy.train.loop import TrainConfig, train
from s2g_deploy.train.losses import separation_loss
from s2g_deploy.train.metrics import usdr
from s2g_deploy.train.recipe import RECIPES, Recipe, resolve_recipe

FAST = dict(preset="tiny", batch_size=2, segment_seconds=0.25, val_items=2, val_seconds=0.25)
SPACE = get_preset("tiny").space  # depths 1, 2 x widths 4, 8


def _weights(path):
    return load_checkpoint(path).model.state_dict()


def _interrupted_at_step_four(config: TrainConfig, monkeypatch) -> None:
    """Run ``config`` until Ctrl-C arrives in its fourth step (as a user would press it)."""
    real = loop._subnets_of_step

    def dies_at_step_four(model, cfg, step):
        if step == 3:
            raise KeyboardInterrupt
        return real(model, cfg, step)

    monkeypatch.setattr(loop, "_subnets_of_step", dies_at_step_four)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.setattr(loop, "_subnets_of_step", real)


def test_cosine_schedule_with_warmup_follows_its_formula():
    r = Recipe(lr=1e-3, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1)
    assert r.lr_at(0, 100) == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak
    assert r.lr_at(9, 100) == pytest.approx(1e-3)
    assert r.lr_at(10, 100) == pytest.approx(1e-3)  # cosine starts at the peak
    assert r.lr_at(99, 100) == pytest.approx(1e-4)  # and ends at min_lr_ratio * lr
    middle = 10 + 89 / 2  # span = 100 - 10 - 1 steps; cos(pi / 2) = 0 halfway
    assert r.lr_at(int(middle), 100) > 0.55e-3 > r.lr_at(int(middle) + 1, 100)
    lrs = [r.lr_at(s, 100) for s in range(10, 100)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert Recipe(lr=2e-3).lr_at(57, 100) == 2e-3  # constant


def test_subnets_of_a_step_follow_the_recipe():
    full = SPACE.largest
    paper = RECIPES["paper"]
    for step in range(20):
        chosen = paper.subnets_of_step(SPACE, 0, step, 20)
        assert len(chosen) == 1 and chosen[0] != full and chosen[0] in SPACE
    sandwich = Recipe(subnets_per_step=2, sandwich=True)
    for step in range(20):
        chosen = sandwich.subnets_of_step(SPACE, 0, step, 20)
        assert chosen[0] == SPACE.smallest and len(set(chosen)) == 3 and full not in chosen
    assert Recipe(subnets_per_step=9).subnets_of_step(SPACE, 0, 0, 1) == tuple(s for s in SPACE.grid() if s != full)
    late = Recipe(shrink_start=0.5)
    assert [bool(late.subnets_of_step(SPACE, 0, s, 10)) for s in range(10)] == [False] * 5 + [True] * 5
    # a pure function of (seed, step): resumed and multi-process runs draw the same subnets
    assert paper.subnets_of_step(SPACE, 3, 7, 20) == paper.subnets_of_step(SPACE, 3, 7, 20)
    draws = {paper.subnets_of_step(SPACE, 0, s, 20) for s in range(20)}
    assert len(draws) == 3  # every non-full subnet of the tiny grid gets drawn


@pytest.mark.parametrize(
    ("field", "value"),
    [("distill", 1.5), ("shrink_start", 1.0), ("schedule", "linear"), ("lr", 0.0), ("ema", 1.0), ("warmup_steps", -1)],
)
def test_bad_recipe_options_name_the_option(field, value):
    flag = "--" + field.replace("_", "-")
    with pytest.raises(InputError, match=flag):
        Recipe(**{field: value})


def test_named_recipes_and_overrides():
    r = resolve_recipe("sandwich-mixed", {"lr": 5e-4, "ema": None})
    assert r.sandwich and r.distill == 0.5 and r.lr == 5e-4 and r.ema == 0.0
    with pytest.raises(InputError, match="--recipe 'nope' is not one of paper"):
        resolve_recipe("nope", {})


def test_mixed_distillation_weights_ground_truth_and_teacher():
    model, _ = loop._build_model(TrainConfig(out=None, preset="tiny"))
    torch.manual_seed(0)
    mix, target = torch.randn(2, 800), torch.randn(2, 800)
    sub = Subnet(1, 4)
    step = loop._S2GStep(model, 0.25)
    got = step(mix, target, (sub,))
    with torch.no_grad():
        full = model(mix)
        est = model(mix, sub)
        cfg = model.config
        want = separation_loss(full, target, cfg) + 0.75 * separation_loss(est, target, cfg)
        want = want + 0.25 * separation_loss(est, full, cfg)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("recipe", ["paper", "sandwich-mixed"])
def test_resume_is_exact_with_schedule_ema_and_recipe(tmp_path, monkeypatch, recipe):
    rec = resolve_recipe(recipe, {"schedule": "cosine", "warmup_steps": 2, "ema": 0.9})
    common = dict(steps=6, val_every=100, save_every=2, recipe=rec, **FAST)
    straight = train(TrainConfig(out=tmp_path / "a", **common), progress=False)
    _interrupted_at_step_four(TrainConfig(out=tmp_path / "b", **common), monkeypatch)
    resumed = train(TrainConfig(out=tmp_path / "b", resume=True, **common), progress=False)
    assert resumed.steps_run == 4 and resumed.steps == 6
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ema_checkpoint_holds_the_average(tmp_path):
    init = loop._build_model(TrainConfig(out=None, preset="tiny"))[0].state_dict()
    plain = _weights(train(TrainConfig(out=tmp_path / "a", steps=1, **FAST), progress=False).checkpoint)
    ema = _weights(
        train(TrainConfig(out=tmp_path / "b", steps=1, recipe=Recipe(ema=0.75), **FAST), progress=False).checkpoint
    )
    decay = min(0.75, (1 + 0) / (10 + 0))  # the EMA's warm-up at step 0
    for k in init:
        assert torch.allclose(ema[k], decay * init[k] + (1 - decay) * plain[k], atol=1e-7), k


def test_warm_start_from_a_dense_full_size_model(tmp_path):
    run = train(TrainConfig(out=tmp_path / "s", steps=1, **FAST), progress=False)
    slice_to_file(run.checkpoint, "2x8", tmp_path / "full.safetensors")
    slice_to_file(run.checkpoint, "1x4", tmp_path / "small.safetensors")
    warm = loop._build_model(TrainConfig(out=None, preset="tiny", init=tmp_path / "full.safetensors"))[0]
    for k, v in _weights(run.checkpoint).items():
        assert torch.equal(warm.state_dict()[k], v), k
    with pytest.raises(InputError, match="full size"):
        train(TrainConfig(out=tmp_path / "bad", init=tmp_path / "small.safetensors", steps=1, **FAST), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before the run directory was made


def _stems(root, tracks, seconds=1.0, sr=16000):
    rng = np.random.default_rng(0)
    for i in range(tracks):
        folder = root / f"t{i}"
        folder.mkdir(parents=True)
        for name in ("vocals", "drums"):
            sf.write(folder / f"{name}.wav", (0.1 * rng.standard_normal(round(seconds * sr))).astype(np.float32), sr)


def test_validation_uses_held_out_tracks_of_the_data(tmp_path):
    _stems(tmp_path / "stems", 3)
    run = train(TrainConfig(out=tmp_path / "run", data=tmp_path / "stems", steps=1, **FAST), progress=False)
    training = load_checkpoint(run.checkpoint).meta.training
    assert training["data_description"]["tracks"] == 2  # one of three held out
    # the logged mixture uSDR is that of the held-out track's middle crop, channel 0
    vocals, _ = sf.read(tmp_path / "stems" / "t2" / "vocals.wav", dtype="float32")
    drums, _ = sf.read(tmp_path / "stems" / "t2" / "drums.wav", dtype="float32")
    n = 4000  # 0.25 s at 16 kHz
    start = (len(vocals) - n) // 2
    ref = torch.from_numpy(vocals[start : start + n])
    mix = torch.from_numpy(vocals[start : start + n] + drums[start : start + n])
    log = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert log["mixture_usdr_db"] == pytest.approx(usdr(mix, ref).item(), abs=1e-4)


def test_bad_inputs_leave_no_run_directory(tmp_path):
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device cuda: this torch build has no CUDA device"):
            train(TrainConfig(out=tmp_path / "cuda", steps=1, device="cuda", **FAST), progress=False)
    with pytest.raises(InputError, match="no such data folder"):
        train(TrainConfig(out=tmp_path / "data", steps=1, data=tmp_path / "missing", **FAST), progress=False)
    with pytest.raises(InputError, match="not in this supernet's elastic space"):
        train(TrainConfig(out=tmp_path / "fixed", steps=1, fixed_subnet=Subnet(9, 4), **FAST), progress=False)
    assert not any(tmp_path.iterdir())


def test_resume_refuses_other_settings_and_a_finished_run(tmp_path):
    train(TrainConfig(out=tmp_path / "r", steps=4, save_every=2, val_every=1, **FAST), progress=False)
    with pytest.raises(InputError, match="already trained 4 steps of --steps 4"):
        train(TrainConfig(out=tmp_path / "r", steps=4, resume=True, **FAST), progress=False)
    with pytest.raises(InputError, match=r"other settings .*--seed 0 -> 1"):
        train(TrainConfig(out=tmp_path / "r", steps=6, seed=1, resume=True, **FAST), progress=False)
    with pytest.raises(InputError, match=r"--steps 4 -> 6"):
        train(TrainConfig(out=tmp_path / "r", steps=6, resume=True, **FAST), progress=False)


def test_resume_rewrites_validations_after_the_saved_state(tmp_path, monkeypatch):
    common = dict(steps=4, save_every=2, val_every=1, **FAST)
    _interrupted_at_step_four(TrainConfig(out=tmp_path / "r", **common), monkeypatch)
    log = tmp_path / "r" / "log.jsonl"
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2, 3]  # step 3: after the state
    train(TrainConfig(out=tmp_path / "r", resume=True, **common), progress=False)
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2, 3, 4]  # no repeated step


@pytest.mark.parametrize(("busy", "threads", "policy"), [(0.05, 2, None), (0.9, 1, "PASSIVE")])
def test_threads_auto_spins_every_core_only_when_nothing_else_runs(monkeypatch, busy, threads, policy):
    import os

    import s2g_deploy.cli.train as cli_train
    import s2g_deploy.environment as environment

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(environment, "usable_cpus", lambda: 2)  # a 2-core machine
    monkeypatch.setattr(environment, "busy_cores", lambda: busy)
    assert cli_train._resolve_threads("auto") == threads
    assert os.environ.get("OMP_WAIT_POLICY") == policy


def test_busy_cores_is_the_busy_share_of_the_ticks_between_two_samples(monkeypatch):
    import os

    from s2g_deploy.environment import busy_cores

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # (busy, total) ticks: 100 of the 400 ticks between the samples were busy -> a quarter of 2 cores
    samples = iter([(1000, 5000), (1100, 5400)])
    assert busy_cores(0.3, ticks=lambda: next(samples), sleep=lambda s: None) == pytest.approx(0.5)

    def unreadable():
        raise OSError("no /proc/stat")

    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    assert busy_cores(0.3, ticks=unreadable, sleep=lambda s: None) == 1.5
