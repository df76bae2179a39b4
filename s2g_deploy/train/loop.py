"""The S2G training loop (and its fixed-subnet baseline), single process or under torchrun.

Each step trains the full network plus the subnets its :class:`~s2g_deploy.train.recipe.Recipe` picks
(the paper: one sampled uniformly from the elastic grid, against the ground truth), all losses summed,
one backward pass (Li & Luo 2024). Everything a step uses — its batch, its subnets, its learning rate —
is a function of (seed, step), so a resumed run and a run split over several processes compute the
same thing as one uninterrupted process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s2g_deploy.artifacts import atomic_file
from s2g_deploy.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint, weights_sha256
from s2g_deploy.errors import InputError
from s2g_deploy.models.bsrnn import BSRNN
from s2g_deploy.models.elastic import ElasticBSRNN
from s2g_deploy.models.registry import architecture_of, get_preset
from s2g_deploy.subnet import Subnet
from s2g_deploy.train.data import SyntheticMusic
from s2g_deploy.train.losses import separation_loss
from s2g_deploy.train.metrics import usdr
from s2g_deploy.train.recipe import Recipe
from s2g_deploy.train.stems import StemFolder, load_tracks, split_tracks

CHECKPOINT = "checkpoint.safetensors"  # the model, in the project's format, usable by every command
STATE = "state.safetensors"  # model + optimizer + step: everything needed to resume exactly
LOG = "log.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    out: Path  # run directory
    preset: str = "xsmall"
    init: Path | None = None  # start from this supernet's architecture and weights instead of a preset
    data: Path | None = None  # a folder of stems (MUSDB18 layout); None: the synthetic set
    val_data: Path | None = None  # held-out stems for validation; None: see StemFolder / split_tracks
    target: str = "vocals"
    remix: bool = False
    steps: int = 2000
    batch_size: int = 8  # global, over all processes
    segment_seconds: float = 1.0
    recipe: Recipe = field(default_factory=Recipe)
    seed: int = 0
    fixed_subnet: Subnet | None = None  # baseline: train only this subnet, as a dense model, from scratch
    val_every: int = 250
    val_items: int = 16
    val_seconds: float = 4.0
    save_every: int = 250
    device: str = "cpu"
    threads: int | None = None  # torch intra-op threads per process (None: torch's default)
    resume: bool = False
    command: str = ""


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int  # the run's total
    steps_run: int  # steps this call ran (fewer than ``steps`` after --resume)
    wall_time_s: float  # this call's training time
    final_loss: float
    validation: list[dict] = field(default_factory=list)


class _S2GStep(nn.Module):
    """One training step's forward: the loss of every subnet of the step, summed.

    Wrapping both forwards in one module gives DistributedDataParallel exactly one forward per backward.
    """

    def __init__(self, model: BSRNN, distill: float, full_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.distill = distill  # weight of the full network's estimate in a subnet's target
        self.full_weight = full_weight

    def forward(self, mix: torch.Tensor, target: torch.Tensor, subnets: tuple[Subnet | None, ...]) -> torch.Tensor:
        config = self.model.config
        full = self.model(mix)  # the full network (or the fixed subnet's dense model)
        total = self.full_weight * separation_loss(full, target, config)
        teacher = full.detach()
        for subnet in subnets:
            estimate = self.model(mix, subnet)
            if self.distill < 1:
                total = total + (1 - self.distill) * separation_loss(estimate, target, config)
            if self.distill > 0:
                total = total + self.distill * separation_loss(estimate, teacher, config)
        return total


def _subnets_of_step(model: BSRNN, config: TrainConfig, step: int) -> tuple[Subnet, ...]:
    if not isinstance(model, ElasticBSRNN):
        return ()
    return config.recipe.subnets_of_step(model.space, config.seed, step, config.steps)


def _build_model(config: TrainConfig) -> tuple[BSRNN, CheckpointMeta]:
    torch.manual_seed(config.seed)
    if config.init is not None:
        ckpt = load_checkpoint(config.init)
        if isinstance(ckpt.model, ElasticBSRNN):
            model, arch, space = ckpt.model, ckpt.meta.config, ckpt.meta.space
        else:  # a trained dense model of the preset's full size: warm-start the supernet from it
            preset = get_preset(config.preset)
            arch, space = preset.config, preset.space
            if ckpt.meta.config != arch:
                raise InputError(
                    f"{config.init}: a dense {ckpt.meta.subnet} model; --init needs a supernet or a dense model of "
                    f"--preset {config.preset}'s full size ({space.largest})"
                )
            model = architecture_of(arch).load("supernet")(arch, space)
            model.load_state_dict(ckpt.model.state_dict(), strict=True)
    else:
        preset = get_preset(config.preset)
        arch, space = preset.config, preset.space
        model = architecture_of(arch).load("supernet")(arch, space)
    if config.fixed_subnet is not None:
        subnet = space.check(config.fixed_subnet)
        torch.manual_seed(config.seed)
        model = architecture_of(arch).load("dense")(arch.with_size(feature_dim=subnet.width, num_blocks=subnet.depth))
        return model, CheckpointMeta(model.config, subnet=subnet)
    return model, CheckpointMeta(arch, space)


def _datasets(config: TrainConfig, sample_rate_hz: int) -> tuple[object, tuple[torch.Tensor, torch.Tensor]]:
    """(training data, validation batch (mixture, target), each (items, samples))."""
    if config.data is None:
        if config.val_data is not None:
            raise InputError("--val-data needs --data (the synthetic set has its own validation split)")
        val = SyntheticMusic(sample_rate_hz, config.val_seconds, "valid", config.seed)
        return SyntheticMusic(sample_rate_hz, config.segment_seconds, "train", config.seed), val.batch(
            range(config.val_items)
        )
    n = round(config.segment_seconds * sample_rate_hz)
    train_tracks = load_tracks(config.data, sample_rate_hz, config.target, n)
    if config.val_data is not None:
        val_tracks = load_tracks(config.val_data, sample_rate_hz, config.target, 1)
    else:
        train_tracks, val_tracks = split_tracks(config.data, train_tracks)
    data = StemFolder(
        Path(config.data), sample_rate_hz, config.segment_seconds, config.target, config.remix, config.seed,
        train_tracks,
    )  # fmt: skip
    return data, _validation_batch(val_tracks, round(config.val_seconds * sample_rate_hz), config.val_items)


def _validation_batch(tracks, n: int, items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The middle ``n`` samples of channel 0 of the first ``items`` tracks (zero-padded when shorter)."""
    mixes, targets = [], []
    for track in tracks[:items]:
        start = max(0, (track.target.shape[1] - n) // 2)
        mix = np.zeros(n, np.float32)
        ref = np.zeros(n, np.float32)
        m, t = track.mixture[0, start : start + n], track.target[0, start : start + n]
        mix[: len(m)], ref[: len(t)] = m, t
        mixes.append(mix)
        targets.append(ref)
    return torch.from_numpy(np.stack(mixes)), torch.from_numpy(np.stack(targets))


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("S2G_NCCL") else "gloo")
    return dist.get_rank(), world


def _validate(model: BSRNN, ema: _EMA, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device) -> dict:
    """Mean uSDR (dB) of the full network and the smallest subnet on the held-out validation batch."""
    mix, target = (t.to(device) for t in batch)
    result = {"mixture_usdr_db": usdr(mix, target).mean().item()}
    own = {k: v.clone() for k, v in model.state_dict().items()} if ema.decay else None
    if own is not None:
        model.load_state_dict(ema.shadow)
    model.eval()
    with torch.no_grad():
        result["full_usdr_db"] = usdr(model(mix), target).mean().item()
        if isinstance(model, ElasticBSRNN):
            result["smallest_usdr_db"] = usdr(model(mix, model.space.smallest), target).mean().item()
    model.train()
    if own is not None:
        model.load_state_dict(own)
    return result


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"--device {name}: {str(exc).splitlines()[0]}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: this torch build has no CUDA device (torch {torch.__version__}); use cpu")
    return device


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


class _EMA:
    """An exponential moving average of the weights (decay per step); empty when ``decay`` is 0."""

    def __init__(self, model: BSRNN, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()} if decay else {}

    @torch.no_grad()
    def update(self, model: BSRNN, step: int) -> None:
        # warm-up (as in TensorFlow's ExponentialMovingAverage with num_updates): early averages do not
        # keep the random initialisation (0.999 ** 1800 would still be 16% of it); a function of the step,
        # so a resumed run averages exactly as an uninterrupted one
        decay = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].mul_(decay).add_(v.detach(), alpha=1 - decay)
            else:
                self.shadow[k].copy_(v)


_RUN_DEFINING = (
    "preset",
    "init",
    "data",
    "target",
    "remix",
    "steps",
    "batch_size",
    "segment_seconds",
    "recipe",
    "seed",
    "fixed_subnet",
)  # fmt: skip  (what decides the weights; resume must not change them)


def _run_identity(config: TrainConfig) -> str:
    values = asdict(config)
    return json.dumps({k: _jsonable(values[k]) for k in _RUN_DEFINING}, sort_keys=True)


def _save_state(path: Path, model: BSRNN, optimizer, step: int, ema: _EMA, wall_s: float, run: str) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.shadow.items()})
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": str(step), "param_groups": json.dumps(opt["param_groups"]), "wall_s": repr(wall_s), "run": run}
    with atomic_file(path, overwrite=True) as tmp:
        save_file(tensors, tmp, metadata=meta)


def _load_state(path: Path, model: BSRNN, optimizer, ema: _EMA, run: str) -> tuple[int, float]:
    """Restore a run's state; returns (steps done, training seconds so far)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:
        raise InputError(f"{path}: cannot resume from this training state ({str(exc).splitlines()[0]})") from None
    if "run" in meta and meta["run"] != run:  # states written before this check carry no identity
        saved, now = json.loads(meta["run"]), json.loads(run)
        changed = ", ".join(
            f"--{k.replace('_', '-')} {saved.get(k)!r} -> {now[k]!r}" for k in now if saved.get(k) != now[k]
        )
        raise InputError(f"{path}: --resume with other settings than the run was started with ({changed})")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    shadow = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    if set(shadow) != set(ema.shadow):
        raise InputError(f"{path}: this state was saved with a different --ema setting; resume with the same recipe")
    for k, v in shadow.items():
        ema.shadow[k].copy_(v)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, index, key = k.split(".", 2)
            state.setdefault(int(index), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), float(meta.get("wall_s", "nan"))


def train(config: TrainConfig, progress: bool | None = None) -> TrainResult:
    """Train a supernet the S2G way (or one fixed subnet) and write the run directory ``config.out``.

    The run directory holds ``checkpoint.safetensors`` (the model), ``state.safetensors`` (for
    ``resume``) and ``log.jsonl`` (one line per validation). Returns the final checkpoint's path.
    """
    # LSTM state decays into subnormal floats within a few steps; on CPUs they are ~10x slower
    # (measured here: 6 s per step instead of 1.2 s on the xsmall preset).
    torch.set_flush_denormal(True)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    rank, world = _distributed()
    if config.batch_size % world:
        raise InputError(f"--batch-size {config.batch_size} must be divisible by the {world} processes")
    device = _device(config.device)
    out = Path(config.out)
    state_path, ckpt_path, log_path = out / STATE, out / CHECKPOINT, out / LOG
    _check_run_dir(config, out, state_path)

    # every input is checked (model, data) before the run directory is created
    model, meta = _build_model(config)
    data, val_batch = _datasets(config, model.config.sample_rate_hz)
    model.to(device).train()
    recipe = config.recipe
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    ema = _EMA(model, recipe.ema)
    start, wall_before = 0, 0.0
    if config.resume:
        start, wall_before = _load_state(state_path, model, optimizer, ema, _run_identity(config))
        if start >= config.steps:
            raise InputError(f"{out}: already trained {start} steps of --steps {config.steps}; nothing to resume")
        _truncate_log(log_path, start)  # validations after the last saved state are redone
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    step_module = _step_module(model, config, world)
    local = config.batch_size // world

    history: list[dict] = []
    loss_value = float("nan")
    started = time.perf_counter()
    bar = _Progress(config.steps, start, enabled=progress if progress is not None else sys.stderr.isatty())
    try:
        for step in range(start, config.steps):
            first = step * config.batch_size + rank * local
            batch = tuple(t.to(device) for t in data.batch(range(first, first + local)))
            loss_value = _step(step_module, model, optimizer, ema, config, step, batch)
            done = step + 1
            if rank == 0 and (done % config.val_every == 0 or done == config.steps):
                row = {"step": done, "loss": loss_value, **_validate(model, ema, val_batch, device)}
                history.append(row)
                with log_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            if rank == 0 and (done % config.save_every == 0 or done == config.steps):
                wall_s = wall_before + time.perf_counter() - started
                _save_state(state_path, model, optimizer, done, ema, wall_s, _run_identity(config))
            bar.update(done, loss_value, history[-1] if history else None)
    finally:
        bar.close()
    wall = time.perf_counter() - started
    if recipe.ema:
        model.load_state_dict(ema.shadow)  # what ships is the average
    ranks_agree = _ranks_agree(model, world)
    if rank == 0:
        run = {"world_size": world, "ranks_identical": ranks_agree, "wall_time_s": round(wall_before + wall, 1)}
        training = _training_record(config, data, device, run, loss_value, history)
        save_checkpoint(ckpt_path, model.cpu(), replace(meta, training=training))
    return TrainResult(ckpt_path, config.steps, config.steps - start, wall, loss_value, history)


def _step_module(model: BSRNN, config: TrainConfig, world: int) -> nn.Module:
    """What one step runs: the recipe's losses, wrapped for DistributedDataParallel under torchrun."""
    module: nn.Module = _S2GStep(model, config.recipe.distill, config.recipe.full_weight)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        module = DistributedDataParallel(module)
    return module


def _training_record(config: TrainConfig, data, device, run: dict, loss_value: float, history: list) -> dict:
    """The checkpoint's training metadata. ``run``: world_size, ranks_identical, wall_time_s (over every
    session of the run, resumes included)."""
    return {
        "command": config.command,
        "mode": "fixed" if config.fixed_subnet else "s2g",
        **{k: _jsonable(v) for k, v in asdict(config).items() if k not in ("out", "command", "resume")},
        "data_description": data.describe(),
        "steps_done": config.steps,
        "world_size": run["world_size"],
        "ranks_identical": run["ranks_identical"],
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "device_name": _device_name(device),
        "wall_time_s": run["wall_time_s"],
        "final_loss": loss_value,
        "validation": history[-1] if history else None,
    }


def _check_run_dir(config: TrainConfig, out: Path, state_path: Path) -> None:
    if not config.resume and out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: run directory is not empty; pass --resume to continue it or pick a new --out")
    if config.resume and not state_path.is_file():
        raise InputError(f"{state_path}: nothing to resume (no training state in {out})")


def _step(step_module: nn.Module, model: BSRNN, optimizer, ema: _EMA, config: TrainConfig, step: int, batch) -> float:
    """One optimisation step on ``batch`` (mixture, target); returns its loss."""
    recipe = config.recipe
    mix, target = batch
    loss = step_module(mix, target, _subnets_of_step(model, config, step))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if recipe.clip_norm:
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_norm)
    for group in optimizer.param_groups:
        group["lr"] = recipe.lr_at(step, config.steps)
    optimizer.step()
    if recipe.ema:
        ema.update(model, step)
    return loss.item()


def _ranks_agree(model: BSRNN, world: int) -> bool | None:
    """Whether every process ends with the same weights (None when there is one process)."""
    if world == 1:
        return None
    import torch.distributed as dist

    # DDP keeps replicas in step by construction; check it, since a silent divergence would ship.
    hashes = [None] * world
    dist.all_gather_object(hashes, weights_sha256(model.state_dict()))
    if len(set(hashes)) != 1:
        raise RuntimeError(f"replicas diverged during distributed training: weight hashes {hashes}")
    return True


def _truncate_log(path: Path, step: int) -> None:
    if path.is_file():
        rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        with atomic_file(path, overwrite=True) as tmp:
            tmp.write_text("".join(row + "\n" for row in rows))


def _jsonable(value):
    if isinstance(value, Path | Subnet):
        return str(value)
    return value


class _Progress:
    """A rich progress bar on a terminal; otherwise a log line on stderr now and then."""

    def __init__(self, total: int, start: int, enabled: bool):
        self.total, self.enabled, self.last_print = total, enabled, time.monotonic()
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from s2g_deploy.cli.output import stderr

            self.bar = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=stderr,
            )
            self.task = self.bar.add_task("train", total=total, completed=start, info="")
            self.bar.start()

    def update(self, done: int, loss: float, val: dict | None) -> None:
        info = f"loss {loss:.4f}" + (f"  val uSDR {val['full_usdr_db']:.2f} dB" if val else "")
        if self.bar is not None:
            self.bar.update(self.task, completed=done, info=info)
        elif time.monotonic() - self.last_print > 30 or done == self.total:
            self.last_print = time.monotonic()
            print(f"step {done}/{self.total}  {info}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
