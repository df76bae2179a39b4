"""``s2g train`` and ``s2g evaluate``: S2G training and per-subnet quality."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.app import app
from s2g_deploy.cli.output import emit_json, handles_errors, stdout


@app.command()
@handles_errors
def train(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Run directory: checkpoint.safetensors, state.safetensors, log.jsonl.")],
    preset: Annotated[str, typer.Option(help="Architecture preset of a new supernet.")] = "xsmall",
    init: Annotated[Path | None, typer.Option(help="Start from this supernet checkpoint instead.")] = None,
    data: Annotated[Path | None, typer.Option(help="Folder of stems (MUSDB18 layout); default: synthetic.")] = None,
    target: Annotated[str, typer.Option(help="Target source name in --data folders.")] = "vocals",
    remix: Annotated[bool, typer.Option(help="Random-remix augmentation for --data.")] = False,
    steps: Annotated[int, typer.Option(min=1, help="Optimizer steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per step, over all processes.")] = 8,
    segment_seconds: Annotated[float, typer.Option(min=0.05, help="Training segment length, seconds.")] = 1.0,
    lr: Annotated[float, typer.Option(min=0.0, help="Adam learning rate.")] = 1e-3,
    clip_norm: Annotated[float, typer.Option(min=0.0, help="Gradient norm clipping.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Seed of weights, data and subnet sampling.")] = 0,
    sandwich: Annotated[bool, typer.Option(help="Sandwich rule: also train the smallest subnet.")] = False,
    distill: Annotated[bool, typer.Option(help="In-place distillation from the full network.")] = False,
    fixed_subnet: Annotated[
        str | None, typer.Option(help="Baseline: train only this subnet (DEPTHxWIDTH) from scratch.")
    ] = None,
    val_every: Annotated[int, typer.Option(min=1, help="Validate every N steps.")] = 250,
    save_every: Annotated[int, typer.Option(min=1, help="Save resumable state every N steps.")] = 250,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last saved state.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Train a supernet the S2G way: the full network plus one sampled subnet every step.

    Runs under `torchrun --nproc_per_node N` too (DistributedDataParallel, gloo on CPU).
    """
    from s2g_deploy.subnet import Subnet
    from s2g_deploy.train.loop import TrainConfig
    from s2g_deploy.train.loop import train as run

    config = TrainConfig(
        out=out,
        preset=preset,
        init=init,
        data=data,
        target=target,
        remix=remix,
        steps=steps,
        batch_size=batch_size,
        segment_seconds=segment_seconds,
        lr=lr,
        clip_norm=clip_norm,
        seed=seed,
        sandwich=sandwich,
        distill=distill,
        fixed_subnet=Subnet.parse(fixed_subnet) if fixed_subnet else None,
        val_every=val_every,
        save_every=save_every,
        device=device,
        resume=resume,
        command=_replay_command(ctx),
    )
    result = run(config)
    doc = {
        "checkpoint": str(result.checkpoint),
        "steps": result.steps,
        "wall_time_s": round(result.wall_time_s, 1),
        "final_loss": result.final_loss,
        "validation": result.validation,
    }
    if json_:
        emit_json(doc)
    else:
        last = result.validation[-1] if result.validation else {}
        stdout.print(f"trained {result.steps} steps in {result.wall_time_s:.0f} s -> {result.checkpoint}")
        if last:
            stdout.print(", ".join(f"{k} {v:.2f}" for k, v in last.items() if k.endswith("_db")))


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
    data: Annotated[Path | None, typer.Option(help="Folder of stems (MUSDB18 layout); default: synthetic.")] = None,
    items: Annotated[int, typer.Option(min=1, help="Synthetic test tracks.")] = 32,
    seconds: Annotated[float, typer.Option(min=0.1, help="Length of each synthetic track, seconds.")] = 4.0,
    target: Annotated[str, typer.Option(help="Target source name in --data folders.")] = "vocals",
    out: Annotated[Path | None, typer.Option(help="Write the evaluated checkpoint here.")] = None,
    in_place: Annotated[bool, typer.Option(help="Write the quality table into CHECKPOINT itself.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Measure uSDR and SI-SDR of every subnet on held-out data; store the quality table."""
    from s2g_deploy.bundled import resolve_checkpoint
    from s2g_deploy.train.evaluate import evaluate as run

    if checkpoint is None and out is None and not in_place:
        out = Path("supernet.evaluated.safetensors")  # never write into the installed package
    result = run(resolve_checkpoint(checkpoint), data, items, seconds, target, out, in_place)
    if json_:
        emit_json({"checkpoint": str(result.checkpoint), "quality": result.quality})
        return
    render_quality(result.quality)
    stdout.print(f"quality table written to {result.checkpoint}")


def render_quality(quality: dict) -> None:
    """A depth x width table of uSDR (and SI-SDR) in dB, with the mixture as the floor."""
    from rich.table import Table

    from s2g_deploy.subnet import Subnet

    rows = {Subnet.parse(k): v for k, v in quality["subnets"].items()}
    depths = sorted({s.depth for s in rows})
    widths = sorted({s.width for s in rows})
    data = quality["data"]
    title = f"uSDR / SI-SDR in dB on {data['tracks']} held-out {data['kind']} tracks"
    table = Table(
        title=title,
        caption=f"unprocessed mixture: {quality['mixture']['usdr_db']:.2f} / {quality['mixture']['sisdr_db']:.2f} dB",
    )
    table.add_column("depth", justify="right")
    for w in widths:
        table.add_column(f"width {w}", justify="right")
    for d in depths:
        cells = [rows.get(Subnet(d, w)) for w in widths]
        table.add_row(str(d), *(f"{c['usdr_db']:.2f} / {c['sisdr_db']:.2f}" if c else "-" for c in cells))
    stdout.print(table)
