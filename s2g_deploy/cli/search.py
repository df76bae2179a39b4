"""``s2g search``: the best subnet of a supernet under MAC, parameter or device-profile budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, esc, handles_errors, stdout
from s2g_deploy.cli.root import app


@app.command()
@handles_errors
def search(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="Supernet checkpoint (.safetensors); default: the bundled supernet.")
    ] = None,
    budget_macs: Annotated[
        str | None,
        typer.Option(help="Max network MACs per second of audio, e.g. 300M (K/M/G/T = powers of 1000)."),
    ] = None,
    budget_params: Annotated[str | None, typer.Option(help="Max parameters, e.g. 1.5M.")] = None,
    profile: Annotated[
        str | None, typer.Option(help="Device profile: a shipped name (see `s2g profiles list`) or a .toml path.")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="Count model bytes at fp32, int8-dynamic or fp16 (default: the profile's precision)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Show every subnet of the grid, not only the front.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Pick the subnet with the best measured quality that meets every budget (ties: fewer MACs).

    A profile's budgets and explicit ones combine, the tighter winning. Exit code 3 when no subnet fits.
    """
    from s2g_deploy import api  # torch-free: a warm search must not import torch (benchmarks/search_speed.py)
    from s2g_deploy.budgets import Budgets

    budgets = Budgets.from_sizes(budget_macs, budget_params)
    result = api.search(checkpoint, budgets=budgets, profile=profile, precision=precision)
    if json_:
        emit_json(result.to_dict())
        return
    _render(result, show_all=all_)


def _render(result, show_all: bool) -> None:
    from rich.table import Table

    from s2g_deploy.units import format_size

    costs, chosen = result.costs, result.chosen
    stdout.print(
        f"[bold]{result.checkpoint}[/]: {len(result.candidates)} subnets, weights {result.weights_sha256[:12]}"
        + (f", profile [bold]{result.profile.name}[/]" if result.profile else "")
    )
    limits = [
        f"{name} <= {format_size(value)} ({result.budget_sources[name]})"
        for name, value in result.budgets.to_dict().items()
        if value is not None
    ]
    stdout.print("  budgets: " + ("; ".join(limits) if limits else "none (the best subnet overall)"))
    quality = f", {result.metric} {chosen.quality:.2f}" if chosen.quality is not None else ""
    chunk = (
        f", {format_size(chosen.macs_per_chunk)} MACs per {result.chunk_seconds:g} s chunk"
        if chosen.macs_per_chunk is not None
        else ""
    )
    stdout.print(
        f"[bold green]chosen subnet {chosen.subnet}[/]: {format_size(chosen.macs_per_second)} MACs per second "
        f"of audio{chunk}, {chosen.params:,} params ({chosen.model_bytes:,} bytes at {result.precision}){quality}"
    )
    if result.fallback:
        stdout.print("[yellow]  fallback: no quality table ranks the feasible subnets; this is the largest one[/]")
    if result.binding:
        stdout.print(f"  binding: {', '.join(result.binding)} (a better subnet exceeds it)")
    else:
        stdout.print("  binding: none (no budget excludes a better subnet)")

    rows = result.candidates if show_all else result.pareto
    title = "Every subnet" if show_all else f"Pareto front: {result.metric} against MACs"
    if rows:
        table = Table(title=title)
        predicted = result.latency_model is not None
        latency = [f"predicted {result.latency_model.statistic} ms"] if predicted else []
        columns = ("subnet", "MACs/s", "params", f"bytes ({result.precision})", *latency)
        for column in (*columns, result.metric or "quality", "feasible"):
            table.add_column(column, justify="left" if column == "subnet" else "right")
        for c in rows:
            mark = " *" if c.subnet == chosen.subnet else ""
            q = f"{c.quality:.2f}" if c.quality is not None else "-"
            feasible = "yes" if c.feasible else "no: " + ", ".join(c.violates)
            ms = [f"{c.predicted_latency_ms:.2f}"] if predicted else []
            size = format_size(c.model_bytes)
            table.add_row(f"{c.subnet}{mark}", format_size(c.macs_per_second), f"{c.params:,}", size, *ms, q, feasible)
        stdout.print(table)
    elif not show_all:
        stdout.print("  no Pareto front without a quality table (--all lists every subnet)")
    stdout.print(
        f"  MACs: network only, counted on {costs.counted_seconds:g} s of audio; not counted: "
        f"{', '.join(costs.uncounted)}; outside the network: {', '.join(costs.not_network)}"
    )
    for note in result.notes:
        if not note.startswith("fallback:"):
            stdout.print(f"  note: {esc(note)}", highlight=False)
