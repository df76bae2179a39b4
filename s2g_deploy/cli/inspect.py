"""``s2g inspect``: what a checkpoint (or preset) holds, and every subnet's parameter count."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, esc, handles_errors, stdout
from s2g_deploy.cli.root import app


@app.command()
@handles_errors
def inspect(
    checkpoint: Annotated[Path | None, typer.Argument(help="Supernet or dense checkpoint (.safetensors).")] = None,
    preset: Annotated[str | None, typer.Option(help="Describe an untrained preset instead of a file.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Show the architecture, the elastic space and the parameter count of every subnet."""
    from s2g_deploy import api

    report = api.inspect(checkpoint, preset=preset)
    if json_:
        emit_json(report.to_dict())
        return
    _render(report)


def _render(report) -> None:
    from rich.table import Table

    meta, c = report.meta, report.meta.config
    stdout.print(f"[bold]{esc(report.source)}[/]: {meta.kind} {esc(meta.architecture)}")
    stdout.print(
        f"  {c.sample_rate_hz} Hz, n_fft {c.n_fft}, hop {c.hop_length}, {c.n_bands} bands; "
        f"N={c.feature_dim}, H={c.lstm_hidden}, mask hidden {c.mask_hidden}, {c.num_blocks} blocks; "
        f"{report.params:,} params"
    )
    if meta.subnet:
        stdout.print(f"  subnet {meta.subnet} of supernet {meta.parent_sha256[:12]}")
    if meta.weights_sha256:
        stdout.print(f"  weights sha256 {meta.weights_sha256}")
    if meta.training:
        facts = (f"{k}={v}" for k, v in meta.training.items() if not isinstance(v, dict | list))
        stdout.print("  training: " + ", ".join(facts), markup=False)
    if not report.subnets:
        return
    space = meta.space
    stdout.print(f"  elastic space: depths {list(space.depths)} x widths {list(space.widths)}")
    table = Table(title="Parameters per subnet (depth rows x width columns)")
    table.add_column("depth", justify="right")
    for w in space.widths:
        table.add_column(f"width {w}", justify="right")
    by_subnet = {s.subnet: s.params for s in report.subnets}
    for d in space.depths:
        table.add_row(str(d), *(f"{by_subnet[type(space.largest)(d, w)]:,}" for w in space.widths))
    stdout.print(table)
