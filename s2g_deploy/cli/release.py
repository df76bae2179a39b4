"""``s2g release`` (every profile's model, documented and checksummed) and ``s2g verify`` (check one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, esc, handles_errors, progress, stdout
from s2g_deploy.cli.root import app


@app.command()
@handles_errors
def release(
    out: Annotated[Path, typer.Option(help="Release directory, e.g. dist/ (must be new or empty, or --overwrite).")],
    checkpoint: Annotated[Path | None, typer.Argument(help="Supernet checkpoint; default: the bundled one.")] = None,
    profiles: Annotated[
        list[str] | None,
        typer.Option(
            "--profiles",
            "-p",
            help="A directory of .toml profiles, a .toml file or a shipped name; repeatable. Default: all shipped.",
        ),
    ] = None,
    bench: Annotated[
        bool, typer.Option(help="Benchmark each model on this machine under its profile (--no-bench: skip).")
    ] = True,
    allow_infeasible: Annotated[
        bool,
        typer.Option(help="Exit 0 even if a profile cannot be satisfied or misses a latency budget (still reported)."),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing release directory.")] = False,
    gate_data: Annotated[
        Path | None,
        typer.Option(
            help="Held-out stems folder for the quality gate of int8 profiles (default: tracks rendered now)."
        ),
    ] = None,
    causal_checkpoint: Annotated[
        Path | None,
        typer.Option(help="Causal supernet for the stream profiles (earbud, watch, phone); default: the bundled one."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress on stderr.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print release.json's content on stdout.")] = False,
) -> None:
    """Export the best subnet for every device profile, with release.json, RELEASE.md, pareto.png, SHA256SUMS.

    Subnets are chosen by the static budgets (params, MACs per second), so releases are reproducible
    on any machine. A profile no subnet satisfies is reported and the rest are built; the exit code is
    then 3 (4 if a benchmarked model missed a latency budget here) unless --allow-infeasible.
    """
    from s2g_deploy import api

    with progress(verbose):
        result = api.release(
            checkpoint,
            profiles,
            out,
            bench=bench,
            allow_infeasible=allow_infeasible,
            overwrite=overwrite,
            gate_data=gate_data,
            causal_checkpoint=causal_checkpoint,
        )
    if json_:
        emit_json(result.to_dict())
    else:
        _render(result)
    failure = result.failure()
    if failure is not None:
        raise failure


def _render(result) -> None:
    from rich.table import Table

    from s2g_deploy.release_notes import drop_text, latency_text, quality_text
    from s2g_deploy.units import format_size

    doc = result.document
    table = Table(title=f"{esc(result.out)}: release of supernet {doc['supernet']['weights_sha256'][:12]}")
    metric = doc["supernet"]["quality_metric"] or "quality"
    columns = ("profile", "status", "subnet", "params", "precision", "file", "drop vs fp32", "MACs/s", metric)
    for column in columns:
        table.add_column(
            column, justify="right" if column not in ("profile", "status", "subnet", "precision") else "left"
        )
    table.add_column("latency, ms", justify="right")
    colours = {"ok": "green", "infeasible": "red", "missed": "yellow"}
    for p in doc["profiles"]:
        table.add_row(
            p["profile"],
            f"[{colours[p['status']]}]{p['status']}[/]",
            p["subnet"] or "-",
            format_size(p["params"]) if p["params"] else "-",
            p["precision"] or "-",
            f"{format_size(p['model_bytes'])}B" if p["model_bytes"] else "-",
            drop_text(p["gate"]),
            format_size(p["macs_per_second"]["network"]) if p["macs_per_second"] else "-",
            quality_text(p["quality"]),
            latency_text(p),
        )
    stdout.print(table)
    for p in doc["profiles"]:
        if p["status"] == "infeasible":
            stdout.print(f"  [red]{esc(p['profile'])}[/]: {esc(p['infeasible']['reason'])}", highlight=False)
    stdout.print(
        f"  check: (cd {esc(result.out)} && sha256sum -c SHA256SUMS), or s2g verify {esc(result.out)}", highlight=False
    )


@app.command()
@handles_errors
def verify(
    path: Annotated[Path, typer.Argument(help="A release directory (s2g release) or an export directory.")],
    seed: Annotated[int | None, typer.Option(help="Seed of the fresh random input (default: random).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Check checksums and manifests, and every ONNX model against its dense model on a fresh input.

    Exit code 4, naming every problem, if anything does not match.
    """
    from s2g_deploy import api
    from s2g_deploy.verify import describe

    report = api.verify(path, seed)
    if json_:
        emit_json(report.to_dict())
        return
    for line in describe(report):
        stdout.print(line, highlight=False, markup=False)
