"""``s2g train`` and ``s2g evaluate``: S2G training and per-subnet quality."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, handles_errors, stdout
from s2g_deploy.cli.root import app


@app.command()
@handles_errors
def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint.safetensors, state.safetensors, log.jsonl.")],
    preset: Annotated[str, typer.Option(help="Architecture preset of a new supernet.")] = "xsmall",
    init: Annotated[Path | None, typer.Option(help="Start from this supernet checkpoint instead.")] = None,
    data: Annotated[Path | None, typer.Option(help="Folder of stems (MUSDB18 layout); default: synthetic.")] = None,
    val_data: Annotated[
        Path | None, typer.Option(help="Held-out stems for validation; default: every 10th track of --data.")
    ] = None,
    target: Annotated[str, typer.Option(help="Target source name in --data folders.")] = "vocals",
    remix: Annotated[bool, typer.Option(help="Random-remix augmentation for --data.")] = False,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per step, over all processes.")] = 8,
    segment_seconds: Annotated[float, typer.Option(min=0.05, help="Training segment length, seconds.")] = 1.0,
    recipe: Annotated[
        str,
        typer.Option(
            help="S2G recipe (README: Training): paper, sandwich, sandwich-weighted, sandwich-distill, "
            "sandwich-mixed (the default: tied best of the study, cosine schedule, 100 warm-up steps), "
            "sandwich-mixed-weighted."
        ),
    ] = "sandwich-mixed",
    subnets_per_step: Annotated[int | None, typer.Option(help="Subnets sampled per step. [recipe]")] = None,
    sandwich: Annotated[bool | None, typer.Option(help="Also train the smallest subnet every step. [recipe]")] = None,
    distill: Annotated[
        float | None, typer.Option(help="Weight of the full network's estimate in subnets' target, 0-1. [recipe]")
    ] = None,
    shrink_start: Annotated[
        float | None, typer.Option(help="Fraction of steps training the full network alone first. [recipe]")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak Adam learning rate. [recipe]")] = None,
    schedule: Annotated[str | None, typer.Option(help="Learning-rate schedule: constant or cosine. [recipe]")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="Linear learning-rate warm-up steps. [recipe]")] = None,
    clip_norm: Annotated[float | None, typer.Option(help="Gradient norm clipping, 0 = off. [recipe]")] = None,
    ema: Annotated[float | None, typer.Option(help="Weight EMA decay per step, 0 = off. [recipe]")] = None,
    full_weight: Annotated[float | None, typer.Option(help="Loss weight of the full network. [recipe]")] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, data and subnet sampling.")] = 0,
    fixed_subnet: Annotated[
        str | None, typer.Option(help="Baseline: train only this subnet (DEPTHxWIDTH) from scratch.")
    ] = None,
    val_every: Annotated[int, typer.Option(min=1, help="Validate every N steps.")] = 250,
    save_every: Annotated[int, typer.Option(min=1, help="Save resumable state every N steps.")] = 250,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    threads: Annotated[
        str,
        typer.Option(
            help="Torch threads per process, or auto: every core with OpenMP's own spinning when the machine is "
            "idle (other processes use < 0.25 cores), else 1 passive thread (benchmarks/results/train_speed.md)."
        ),
    ] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last saved state.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Train a supernet the S2G way: the full network plus the recipe's subnets every step.

    Options marked [recipe] override the chosen --recipe. Runs under `torchrun --nproc_per_node N` too
    (DistributedDataParallel, gloo on CPU).
    """
    import os

    torch_threads = _resolve_threads(threads)  # before the first torch import: OpenMP reads its policy once
    from s2g_deploy import api
    from s2g_deploy.subnet import Subnet
    from s2g_deploy.train.loop import TrainConfig
    from s2g_deploy.train.recipe import resolve_recipe

    overrides = {
        "subnets_per_step": subnets_per_step,
        "sandwich": sandwich,
        "distill": distill,
        "shrink_start": shrink_start,
        "lr": lr,
        "schedule": schedule,
        "warmup_steps": warmup_steps,
        "clip_norm": clip_norm,
        "ema": ema,
        "full_weight": full_weight,
    }

    config = TrainConfig(
        out=out,
        preset=preset,
        init=init,
        data=data,
        val_data=val_data,
        target=target,
        remix=remix,
        steps=steps,
        batch_size=batch_size,
        segment_seconds=segment_seconds,
        recipe=resolve_recipe(recipe, overrides),
        seed=seed,
        fixed_subnet=Subnet.parse(fixed_subnet) if fixed_subnet else None,
        val_every=val_every,
        save_every=save_every,
        device=device,
        threads=torch_threads,
        resume=resume,
        command=_replay_command(ctx),
    )
    result = api.train(config)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports: one result, one JSON document
        return
    doc = {
        "checkpoint": str(result.checkpoint),
        "steps": result.steps,
        "steps_run": result.steps_run,
        "wall_time_s": round(result.wall_time_s, 1),
        "final_loss": result.final_loss,
        "validation": result.validation,
    }
    if json_:
        emit_json(doc)
    else:
        last = result.validation[-1] if result.validation else {}
        resumed = (
            f" (resumed: {result.steps_run} of {result.steps} steps run now)"
            if result.steps_run != result.steps
            else ""
        )
        stdout.print(
            f"trained {result.steps_run} steps in {result.wall_time_s:.0f} s{resumed} -> ",
            str(result.checkpoint),
            sep="",
            markup=False,
            highlight=False,
        )
        if last:
            stdout.print(", ".join(f"{k} {v:.2f}" for k, v in last.items() if k.endswith("_db")))


def _resolve_threads(threads: str) -> int:
    """``--threads``: a count, or auto. Sets OMP_WAIT_POLICY=PASSIVE (unless the user set it) where needed.

    Spinning OpenMP threads are the fastest on an idle machine and 2-3.7x slower than one passive thread
    when anything else runs (measured on a 2-core machine), so auto looks at what the other processes use
    now, before it starts. The load average cannot tell: it still counts the command that just finished.
    """
    import os

    from s2g_deploy.environment import busy_cores, usable_cpus
    from s2g_deploy.errors import InputError

    if threads == "auto":
        cores = usable_cpus() // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))  # torchrun: per process
        if cores > 1 and busy_cores() < 0.25:
            return cores
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return 1
    if not (threads.isascii() and threads.isdigit() and int(threads) >= 1):
        raise InputError(f"--threads must be a whole number >= 1 or auto, got {threads!r}")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return int(threads)


def _replay_command(ctx: typer.Context) -> str:
    """The current command with every option spelled out, so the run can be repeated exactly.

    Built from the parsed options rather than ``sys.argv``, which holds the caller's argv (pytest's, say)
    when the CLI is invoked in-process.
    """
    words = ["s2g", ctx.info_name or "train"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or param.name == "json_" or param.param_type_name != "option":
            continue
        if param.is_flag:
            flag = param.opts[0] if value else (param.secondary_opts or [None])[0]
            if flag:
                words.append(flag)
        else:
            words += [param.opts[0], str(value)]
    return shlex.join(words)


@app.command()
@handles_errors
def evaluate(
    checkpoint: Annotated[Path | None, typer.Argument(help="Checkpoint; default: the bundled supernet.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Stems (MUSDB18 layout) or a rendered root with test/; default: synthetic.")
    ] = None,
    timbre_data: Annotated[
        Path | None, typer.Option(help="Timbre-shift split (default: test-timbre/ beside --data's test/).")
    ] = None,
    chunk_seconds: Annotated[
        list[float] | None, typer.Option(help="Also score at this chunk length, as s2g separate runs it (repeatable).")
    ] = None,
    items: Annotated[int, typer.Option(min=1, help="Synthetic test tracks.")] = 32,
    seconds: Annotated[float, typer.Option(min=0.1, help="Length of each synthetic track, seconds.")] = 4.0,
    target: Annotated[str, typer.Option(help="Target source name in --data folders.")] = "vocals",
    out: Annotated[Path | None, typer.Option(help="Write the evaluated checkpoint here.")] = None,
    in_place: Annotated[bool, typer.Option(help="Write the quality table into CHECKPOINT itself.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Measure uSDR, SI-SDR and cSDR (museval) of every subnet on held-out data; store the quality table.

    Each --chunk-seconds X scores the model cut into chunks exactly as `s2g separate --chunk-seconds X`
    cuts it (overlap min(1 s, X/2), linear cross-fade), the way a device running X-second chunks hears it.
    """
    from s2g_deploy import api
    from s2g_deploy.cli.output import progress

    with progress(False):
        result = api.evaluate(
            checkpoint,
            data,
            items=items,
            seconds=seconds,
            target=target,
            out=out,
            in_place=in_place,
            chunk_seconds=chunk_seconds or (),
            timbre_data=timbre_data,
        )
    if json_:
        emit_json({"checkpoint": str(result.checkpoint), "quality": result.quality})
        return
    render_quality(result.quality)
    stdout.print("quality table written to ", str(result.checkpoint), sep="", markup=False, highlight=False)


def render_quality(quality: dict) -> None:
    """Depth x width tables of uSDR / cSDR in dB per split and workload, with the mixture as the floor."""
    from s2g_deploy.quality import workload_label

    splits = [("test", quality), *((quality.get("splits") or {}).items())]
    for name, split in splits:
        _quality_table(name, split["data"], split["mixture"], split["subnets"], workload_label(None))
        for entry in (split.get("chunked") or {}).values():
            label = f"{workload_label(entry['chunk_seconds'])} (overlap {entry['overlap_seconds']:g} s)"
            _quality_table(name, split["data"], entry["mixture"], entry["subnets"], label)


def _quality_table(split: str, data: dict, mixture: dict, subnets: dict, workload: str) -> None:
    from rich.table import Table

    from s2g_deploy.subnet import Subnet

    rows = {Subnet.parse(k): v for k, v in subnets.items()}
    depths = sorted({s.depth for s in rows})
    widths = sorted({s.width for s in rows})

    def cell(row: dict | None) -> str:
        if not row:
            return "-"
        c = row.get("csdr_db")
        return f"{row['usdr_db']:.2f} / " + (f"{c:.2f}" if c is not None else "-")

    table = Table(
        title=f"uSDR / cSDR in dB, {split} split ({data['tracks']} held-out {data['kind']} tracks), {workload}",
        caption=f"unprocessed mixture: {cell(mixture)} dB",
    )
    table.add_column("depth", justify="right")
    for w in widths:
        table.add_column(f"width {w}", justify="right")
    for d in depths:
        table.add_row(str(d), *(cell(rows.get(Subnet(d, w))) for w in widths))
    stdout.print(table)
