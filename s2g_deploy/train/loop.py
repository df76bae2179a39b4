"""The S2G training loop (and its fixed-subnet baseline), single process or under torchrun.

Each step trains the full network plus one subnet sampled uniformly from the elastic grid: both
losses against the ground truth, summed, one backward pass (Li & Luo 2024). Everything a step uses —
its batch and its subnet — is a function of (seed, step), so a resumed run and a run split over
several processes compute the same thing as one uninterrupted process.
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
from s2g_deploy.models.registry import get_preset
from s2g_deploy.subnet import Subnet
from s2g_deploy.train.data import SyntheticMusic
from s2g_deploy.train.losses import separation_loss
from s2g_deploy.train.metrics import usdr
from s2g_deploy.train.stems import StemFolder

CHECKPOINT = "checkpoint.safetensors"  # the model, in the project's format, usable by every command
STATE = "state.safetensors"  # model + optimizer + step: everything needed to resume exactly
LOG = "log.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    out: Path  # run directory
    preset: str = "xsmall"
    init: Path | None = None  # start from this supernet's architecture and weights instead of a preset
    data: Path | None = None  # a folder of stems (MUSDB18 layout); None: the synthetic set
    target: str = "vocals"
    remix: bool = False
    steps: int = 2000
    batch_size: int = 8  # global, over all processes
    segment_seconds: float = 1.0
    lr: float = 1e-3
    clip_norm: float = 5.0
    seed: int = 0
    sandwich: bool = False  # also train the smallest subnet every step
    distill: bool = False  # subnets learn the full network's (detached) output
    fixed_subnet: Subnet | None = None  # baseline: train only this subnet, as a dense model, from scratch
    val_every: int = 250
    val_items: int = 16
    val_seconds: float = 4.0
    save_every: int = 250
    device: str = "cpu"
    resume: bool = False
    command: str = ""


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    steps: int
    wall_time_s: float
    final_loss: float
    validation: list[dict] = field(default_factory=list)


class _S2GStep(nn.Module):
    """One training step's forward: the loss of every subnet of the step, summed.

    Wrapping both forwards in one module gives DistributedDataParallel exactly one forward per backward.
    """

    def __init__(self, model: BSRNN, distill: bool):
        super().__init__()
        self.model = model
        self.distill = distill

    def forward(self, mix: torch.Tensor, target: torch.Tensor, subnets: tuple[Subnet | None, ...]) -> torch.Tensor:
        config = self.model.config
        full = self.model(mix)  # the full network (or the fixed subnet's dense model)
        total = separation_loss(full, target, config)
        teacher = full.detach() if self.distill else target
        for subnet in subnets:
            total = total + separation_loss(self.model(mix, subnet), teacher, config)
        return total


def _subnets_of_step(model: BSRNN, config: TrainConfig, step: int) -> tuple[Subnet, ...]:
    if not isinstance(model, ElasticBSRNN):
        return ()
    grid = model.space.grid()
    sampled = grid[np.random.default_rng([config.seed, 101, step]).integers(len(grid))]
    return (model.space.smallest, sampled) if config.sandwich else (sampled,)


def _build_model(config: TrainConfig) -> tuple[BSRNN, CheckpointMeta]:
    torch.manual_seed(config.seed)
    if config.init is not None:
        ckpt = load_checkpoint(config.init)
        if not isinstance(ckpt.model, ElasticBSRNN):
            raise InputError(f"{config.init}: --init needs a supernet checkpoint")
        model, arch, space = ckpt.model, ckpt.meta.config, ckpt.meta.space
    else:
        preset = get_preset(config.preset)
        arch, space = preset.config, preset.space
        model = ElasticBSRNN(arch, space)
    if config.fixed_subnet is not None:
        subnet = space.check(config.fixed_subnet)
        torch.manual_seed(config.seed)
        model = BSRNN(arch.with_size(feature_dim=subnet.width, num_blocks=subnet.depth))
        return model, CheckpointMeta(model.config, subnet=subnet)
    return model, CheckpointMeta(arch, space)


def _dataset(config: TrainConfig, sample_rate_hz: int):
    if config.data is None:
        return SyntheticMusic(sample_rate_hz, config.segment_seconds, "train", config.seed)
    return StemFolder.open(
        config.data, sample_rate_hz, config.segment_seconds, config.target, config.remix, config.seed
    )


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() and os.environ.get("S2G_NCCL") else "gloo")
    return dist.get_rank(), world


def _validate(model: BSRNN, config: TrainConfig, device: torch.device) -> dict:
    """Mean uSDR (dB) of the full network and the smallest subnet on the validation split."""
    data = SyntheticMusic(model.config.sample_rate_hz, config.val_seconds, "valid", config.seed)
    mix, target = data.batch(range(config.val_items))
    mix, target = mix.to(device), target.to(device)
    result = {"mixture_usdr_db": usdr(mix, target).mean().item()}
    model.eval()
    with torch.no_grad():
        result["full_usdr_db"] = usdr(model(mix), target).mean().item()
        if isinstance(model, ElasticBSRNN):
            result["smallest_usdr_db"] = usdr(model(mix, model.space.smallest), target).mean().item()
    model.train()
    return result


def _save_state(path: Path, model: BSRNN, optimizer: torch.optim.Optimizer, step: int) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": str(step), "param_groups": json.dumps(opt["param_groups"])}
    with atomic_file(path, overwrite=True) as tmp:
        save_file(tensors, tmp, metadata=meta)


def _load_state(path: Path, model: BSRNN, optimizer: torch.optim.Optimizer) -> int:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:
        raise InputError(f"{path}: cannot resume from this training state ({str(exc).splitlines()[0]})") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, index, key = k.split(".", 2)
            state.setdefault(int(index), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"])


def train(config: TrainConfig, progress: bool | None = None) -> TrainResult:
    """Train a supernet the S2G way (or one fixed subnet) and write the run directory ``config.out``.

    The run directory holds ``checkpoint.safetensors`` (the model), ``state.safetensors`` (for
    ``resume``) and ``log.jsonl`` (one line per validation). Returns the final checkpoint's path.
    """
    # LSTM state decays into subnormal floats within a few steps; on CPUs they are ~10x slower
    # (measured here: 6 s per step instead of 1.2 s on the xsmall preset).
    torch.set_flush_denormal(True)
    rank, world = _distributed()
    if config.batch_size % world:
        raise InputError(f"--batch-size {config.batch_size} must be divisible by the {world} processes")
    device = torch.device(config.device)
    out = Path(config.out)
    state_path, ckpt_path, log_path = out / STATE, out / CHECKPOINT, out / LOG
    if rank == 0:
        if not config.resume and out.exists() and any(out.iterdir()):
            raise InputError(f"{out}: run directory is not empty; pass --resume to continue it or pick a new --out")
        out.mkdir(parents=True, exist_ok=True)

    model, meta = _build_model(config)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    start = 0
    if config.resume:
        if not state_path.is_file():
            raise InputError(f"{state_path}: nothing to resume (no training state in {out})")
        start = _load_state(state_path, model, optimizer)
    data = _dataset(config, model.config.sample_rate_hz)
    step_module: nn.Module = _S2GStep(model, config.distill)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        step_module = DistributedDataParallel(step_module)
    local = config.batch_size // world

    history: list[dict] = []
    loss_value = float("nan")
    started = time.perf_counter()
    bar = _Progress(config.steps, start, enabled=progress if progress is not None else sys.stderr.isatty())
    try:
        for step in range(start, config.steps):
            first = step * config.batch_size + rank * local
            mix, target = (t.to(device) for t in data.batch(range(first, first + local)))
            loss = step_module(mix, target, _subnets_of_step(model, config, step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            loss_value = loss.item()
            done = step + 1
            if rank == 0 and (done % config.val_every == 0 or done == config.steps):
                history.append({"step": done, "loss": loss_value, **_validate(model, config, device)})
                with log_path.open("a") as f:
                    f.write(json.dumps(history[-1]) + "\n")
            if rank == 0 and (done % config.save_every == 0 or done == config.steps):
                _save_state(state_path, model, optimizer, done)
            bar.update(done, loss_value, history[-1] if history else None)
    finally:
        bar.close()
    wall = time.perf_counter() - started
    ranks_agree = None
    if world > 1:
        import torch.distributed as dist

        # DDP keeps replicas in step by construction; check it, since a silent divergence would ship.
        hashes = [None] * world
        dist.all_gather_object(hashes, weights_sha256(model.state_dict()))
        ranks_agree = len(set(hashes)) == 1
        if not ranks_agree:
            raise RuntimeError(f"replicas diverged during distributed training: weight hashes {hashes}")
    if rank == 0:
        training = {
            "command": config.command,
            "mode": "fixed" if config.fixed_subnet else "s2g",
            **{k: _jsonable(v) for k, v in asdict(config).items() if k not in ("out", "command", "resume")},
            "data_description": data.describe(),
            "steps_done": config.steps,
            "world_size": world,
            "ranks_identical": ranks_agree,
            "torch_threads": torch.get_num_threads(),
            "wall_time_s": round(wall, 1) if not config.resume else None,
            "final_loss": loss_value,
            "validation": history[-1] if history else None,
        }
        save_checkpoint(ckpt_path, model.cpu(), replace(meta, training=training))
    return TrainResult(ckpt_path, config.steps, wall, loss_value, history)


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
