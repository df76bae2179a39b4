"""``s2g bench`` (measure a model as a device runs it) and ``s2g calibrate`` (the per-device latency model)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, esc, handles_errors, progress, stdout
from s2g_deploy.cli.root import app

_SHORT = {"onnx": "onnxruntime", "torch_dense": "torch dense", "torch_supernet": "torch supernet (masked)"}
_DEVICE = typer.Option("--device", "-d", help="Device profile: a shipped name (`s2g profiles list`) or a .toml path.")


@app.command()
@handles_errors
def bench(
    model: Annotated[Path, typer.Argument(help="An exported model.onnx or its export directory.")],
    device: Annotated[str, _DEVICE],
    compare: Annotated[
        str | None, typer.Option(help="Also measure the subnet in another implementation: torch.")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="With --compare: the supernet the model was cut from (default: found).")
    ] = None,
    no_manifest: Annotated[
        bool, typer.Option("--no-manifest", help="Do not record the results in the export's manifest.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress on stderr.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="One JSON document on stdout, with the raw samples.")] = False,
) -> None:
    """Measure latency, real-time factor, memory and the profile's budgets with onnxruntime.

    The model runs in a fresh process with the profile's provider, threads and graph optimisation, on
    its workload (chunk, batch) and protocol (warm-up, timed runs, minimum duration). Exit code 2 if the
    provider is not installed. Results of an export directory go into its manifest.json.
    """
    from s2g_deploy import api

    with progress(verbose):
        report = api.bench(model, device, write_manifest=not no_manifest, compare=compare, checkpoint=checkpoint)
    if json_:
        emit_json(report.to_dict())
        return
    render(report)


def render(report) -> None:
    from rich.table import Table

    from s2g_deploy.units import format_size

    lat, session = report.latency_ms, report.session
    stdout.print(
        f"[bold]{report.model}[/]: subnet {report.subnet} ({report.precision}), profile [bold]{report.profile}[/], "
        "input "
        f"{'x'.join(map(str, report.input_shape))} ({report.batch} x {report.chunk_seconds:g} s), "
        f"{session['execution_provider']}, {session['intra_op_threads']} intra-op / "
        f"{session['inter_op_threads']} inter-op threads, optimisation {session['graph_optimization_level']}, "
        f"spinning {'on' if session.get('allow_spinning', True) else 'off'}"
    )
    table = Table(
        title=f"Latency per run, ms ({report.protocol['runs']} timed runs, {report.protocol['timed_seconds']:.1f} s)"
    )
    rows = [
        {
            "kind": "onnx",
            "latency_ms": lat,
            "real_time_factor": report.real_time_factor,
            "peak_rss_bytes": report.peak_rss_bytes,
        },
        *report.compare,
    ]
    # statistics down, runtimes across: fits an 80-column terminal with --compare too
    table.add_column("statistic")
    for row in rows:
        table.add_column(_SHORT[row["kind"]], justify="right")
    for name in ("first", "mean", "std", "min", "p50", "p90", "p99", "max"):
        table.add_row(name, *(f"{row['latency_ms'][name]:.3f}" for row in rows))
    table.add_row(f"RTF ({report.statistic})", *(f"{row['real_time_factor']:.4f}" for row in rows))
    table.add_row("peak RSS (MiB)", *(f"{row['peak_rss_bytes'] / 2**20:.0f}" for row in rows))
    stdout.print(table)
    stdout.print(
        f"  headline {report.statistic} {lat[report.statistic]:.3f} ms; "
        f"real-time factor {report.real_time_factor:.4f}; "
        f"throughput {report.throughput['audio_seconds_per_second']:.1f} s of audio per s "
        f"({report.throughput['runs_per_second']:.1f} runs/s); model file {report.model_bytes:,} bytes"
    )
    d, st = report.deadline, report.stream
    if st:
        stdout.print(
            f"  stream: {st['hops_per_call']} hop(s) of {st['hop_ms']:g} ms per call, states carried; deadline "
            f"{d['deadline_ms']:g} ms per call: {d['misses']} of {d['runs']} calls missed it (worst "
            f"{d['worst_ms']:.3f} ms); p99 {lat['p99']:.3f} ms is {lat['p99'] / st['hop_ms']:.2f} of a hop; "
            f"algorithmic latency {st['algorithmic_latency_ms']:g} ms"
        )
    elif d:
        stdout.print(f"  deadline {d['deadline_ms']:g} ms per run: {d['misses']} of {d['runs']} runs missed it")
    if report.compare:
        for row in report.compare:
            ratio = row["latency_ms"]["p50"] / lat["p50"]
            stdout.print(f"  {row['implementation']}: {ratio:.2f}x the ONNX model's p50")
    budgets = Table(title=f"Budgets of profile {esc(report.profile)}")
    for column in ("budget", "limit", "measured", "verdict"):
        budgets.add_column(column, justify="left" if column == "budget" else "right")
    for name, b in report.budgets.items():
        stat = f" ({b['statistic']})" if b.get("statistic") else ""
        fmt = (lambda v: f"{v:.3f}") if name in ("latency_ms", "max_real_time_factor") else format_size
        measured = "-" if b["measured"] is None else fmt(b["measured"])
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "unknown"}[b["passed"]]
        budgets.add_row(f"{name}{stat}", fmt(b["limit"]), measured, verdict)
    stdout.print(budgets)
    stdout.print("[green]all budgets met[/]" if report.passed else "[red]budgets not met[/]")
    env, versions = report.environment, report.environment["versions"]
    stdout.print(
        f"  {env['cpu_model']}, {env['usable_cpus']} usable of {env['logical_cpus']} CPUs, "
        f"load {env['load_average_1m']}; onnxruntime {versions['onnxruntime']}, onnx {versions['onnx']}, "
        f"torch {versions['torch']}",
        highlight=False,
    )
    for note in report.notes:
        stdout.print(f"  note: {esc(note)}", highlight=False)


@app.command()
@handles_errors
def calibrate(
    device: Annotated[str, _DEVICE],
    checkpoint: Annotated[
        Path | None, typer.Argument(help="Supernet checkpoint; default: the bundled supernet.")
    ] = None,
    io: Annotated[
        str | None,
        typer.Option(help="The export's I/O contract: waveform, spectrogram or stream (default: the profile's)."),
    ] = None,
    repeats: Annotated[
        int, typer.Option(help="Measure each subnet this many times (fresh processes) and keep the median.")
    ] = 1,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress on stderr.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Fit this machine's latency model for a profile: measure a handful of subnets, test on others.

    The model (cached per profile, machine and supernet) lets `s2g search` and `s2g export` predict a
    subnet's latency; its accuracy is the mean absolute percentage error on subnets it was not fitted on.
    """
    from s2g_deploy import api
    from s2g_deploy.runtime.latency import cache_path

    with progress(verbose):
        model = api.calibrate(checkpoint, profile=device, io=io, repeats=repeats)
    if json_:
        emit_json({**model.to_dict(), "cache_file": str(cache_path(model))})
        return
    _render_model(model, cache_path(model))


def _render_model(model, cache_file: Path) -> None:
    from rich.table import Table

    from s2g_deploy.runtime.latency import UNITS, predict

    table = Table(title=f"Latency model for profile {esc(model.profile)}: {model.statistic} in ms per run")
    for column in ("subnet", "set", "measured", "predicted", "error"):
        table.add_column(column, justify="left" if column in ("subnet", "set") else "right")
    for label, points in (("fit", model.fitted_on), ("held out", model.held_out)):
        for p in points:
            predicted = predict(model.coefficients, p.features)
            error = 100 * (predicted - p.latency_ms) / p.latency_ms
            table.add_row(p.subnet, label, f"{p.latency_ms:.3f}", f"{predicted:.3f}", f"{error:+.1f}%")
    stdout.print(table)
    held = ", ".join(p.subnet for p in model.held_out) or "none"
    mape = "n/a (the grid has no subnet left to hold out)"
    if model.mape_held_out is not None:
        mape = f"{100 * model.mape_held_out:.1f}%"
    stdout.print(f"[bold]MAPE on held-out subnets ({held}): {mape}[/]", highlight=False)
    for name, value in model.coefficients.items():
        stdout.print(f"  {name}: {value:.4g} {UNITS[name]}", highlight=False)
    stdout.print(f"  cached in {esc(cache_file)}", highlight=False)
