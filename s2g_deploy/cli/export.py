"""``s2g export``: a verified, self-describing ONNX directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, esc, handles_errors, progress, stdout
from s2g_deploy.cli.root import app


@app.command()
@handles_errors
def export(
    out: Annotated[Path, typer.Option(help="Output directory (must be new or empty, unless --overwrite).")],
    checkpoint: Annotated[
        Path | None, typer.Argument(help="Supernet (or dense) checkpoint; default: the bundled supernet.")
    ] = None,
    subnet: Annotated[str | None, typer.Option(help="Export this subnet, DEPTHxWIDTH, e.g. 4x32.")] = None,
    budget_macs: Annotated[str | None, typer.Option(help="Max network MACs per second of audio, e.g. 300M.")] = None,
    budget_params: Annotated[str | None, typer.Option(help="Max parameters, e.g. 1.5M.")] = None,
    profile: Annotated[str | None, typer.Option(help="Device profile name or TOML file.")] = None,
    io: Annotated[
        str | None,
        typer.Option(
            help="waveform: samples in and out; spectrogram: only the mask network; stream: a causal supernet's "
            "stream, states in and out. Default: stream for a stream profile or a causal checkpoint, else waveform."
        ),
    ] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the profile's, else 17).")] = None,
    precision: Annotated[
        str | None,
        typer.Option(help="fp32, int8-dynamic or fp16 (default: the profile's runtime.precision, else fp32)."),
    ] = None,
    gate_data: Annotated[
        Path | None,
        typer.Option(help="Held-out stems folder for the int8 quality gate (default: tracks rendered now)."),
    ] = None,
    max_quality_drop: Annotated[
        float | None,
        typer.Option(help="Largest uSDR drop (dB) the quality gate accepts (default: the profile's, else 0.5)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing export directory.")] = False,
    measure_latency: Annotated[
        bool,
        typer.Option(help="With a profile's latency budget: predict, export, measure and retry (else: unverified)."),
    ] = True,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress on stderr.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Select, slice, export, simplify, verify and describe one subnet as an ONNX directory.

    With --profile and a latency budget, the subnet is the best one predicted to fit this machine's
    latency model (calibrated once per profile and machine), measured after export: exit code 4 when
    no candidate meets the budget when measured.
    """
    from s2g_deploy import api

    budgets = None
    if budget_macs is not None or budget_params is not None:
        budgets = _budgets(budget_macs, budget_params)
    with progress(verbose):
        result = api.export(
            checkpoint,
            subnet=subnet,
            budgets=budgets,
            profile=profile,
            out=out,
            io=io,
            overwrite=overwrite,
            opset=opset,
            measure_latency=measure_latency,
            calibrate=True,  # the command calibrates a profile's latency model when it has none (README)
            precision=precision,
            gate_data=gate_data,
            max_quality_drop_db=max_quality_drop,
        )
    if json_:
        emit_json(result.to_dict())
        return
    _render_export(result)


def _budgets(budget_macs: str | None, budget_params: str | None):
    from s2g_deploy.budgets import Budgets

    return Budgets.from_sizes(budget_macs, budget_params)


def _render_precision(m: dict) -> None:
    pb = m["costs"]["parameter_bytes"]
    stdout.print(
        f"  precision {m['precision']}: {pb['graph']:,} bytes of network parameters, model file "
        f"{m['model']['file_bytes']:,} bytes",
        highlight=False,
    )
    gate = m.get("gate")
    if gate:
        d, q = gate["drop"], m["quantization"]
        stdout.print(
            f"  quality gate ({gate['workload']['label']}, {gate['data']['tracks']} tracks, {gate['data']['kind']}): "
            f"uSDR drop {d['usdr_db_worst_track']:.3f} dB worst track, {d['usdr_db']:.3f} dB mean (limit "
            f"{gate['limit_usdr_drop_db']:g} dB), SNR vs fp32 {gate['snr_db_vs_fp32']:.1f} dB: [green]passed[/]; "
            f"reduce_range {q['reduce_range']}",
            highlight=False,
        )


def _render_export(result) -> None:
    from rich.table import Table

    m = result.manifest
    mps = result.costs["macs_per_second"]
    stdout.print(
        f"[bold]{esc(result.out)}[/]: subnet {result.subnet}, {m['params']:,} params, {m['settings']['io']} I/O"
    )
    stdout.print(
        f"  MACs per second: network {mps['network']:,}, STFT/iSTFT {mps['stft_istft']:,}, total {mps['total']:,} "
        f"(graph count within {100 * result.costs['graph_vs_model']:.2f}%)"
    )
    quality = m.get("quality")
    if quality:
        from s2g_deploy.quality import describe_row

        row = quality["subnets"].get(str(result.subnet))
        stdout.print(f"  quality at {quality['workload']['label']}: {describe_row(row)}", markup=False)
        if not quality["measured"]:
            stdout.print(f"  [yellow]{esc(quality['note'])}[/]")
    p = result.parity
    table = Table(title=f"Parity vs {p.reference} (tolerance {p.tolerance_abs:.0e} abs, unit-scale audio)")
    table.add_column("stage")
    table.add_column("max abs", justify="right")
    table.add_column("max rel", justify="right")
    for n in p.lengths:
        table.add_column(f"{n / m['model']['sample_rate_hz']:.2f} s", justify="right")
    for s in p.stages:
        table.add_row(s.stage, f"{s.max_abs:.1e}", f"{s.max_rel:.1e}", *(f"{s.by_length[n]:.1e}" for n in p.lengths))
    stdout.print(table)
    _render_precision(m)
    latency = m.get("latency")
    if latency:
        tries = len(latency["attempts"])
        stdout.print(
            f"  latency ({latency['profile']}): {latency['statistic']} measured {latency['measured_ms']:.2f} ms, "
            f"predicted {latency['predicted_ms']:.2f} ms, budget {latency['limit_ms']} ms: [green]met[/] "
            f"(attempt {tries} of at most 3)",
            highlight=False,
        )
    for name, path in result.paths.items():
        stdout.print(f"  {name}: {esc(path)}")
