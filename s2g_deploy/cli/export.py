"""``s2g export`` (a verified, self-describing ONNX directory) and ``s2g separate`` (run one on a WAV)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.app import app
from s2g_deploy.cli.output import emit_json, esc, handles_errors, progress, stdout


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
        str, typer.Option(help="waveform: samples in and out; spectrogram: only the mask network.")
    ] = "waveform",
    opset: Annotated[int | None, typer.Option(help="ONNX opset (default: the profile's, else 17).")] = None,
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
        )
    if json_:
        emit_json(result.to_dict())
        return
    _render_export(result)


def _budgets(budget_macs: str | None, budget_params: str | None):
    from s2g_deploy.units import parse_size

    macs = parse_size(budget_macs, "--budget-macs") if budget_macs is not None else None
    params = parse_size(budget_params, "--budget-params") if budget_params is not None else None
    try:
        from s2g_deploy.search import Budgets
    except ImportError:
        from s2g_deploy.errors import InputError

        raise InputError("budgets need s2g_deploy.search, which this installation lacks; pass --subnet") from None
    return Budgets(max_params=params, max_macs_per_second=macs)


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


@app.command()
@handles_errors
def separate(
    model: Annotated[Path, typer.Argument(help="An exported model.onnx or its export directory.")],
    audio: Annotated[
        list[Path], typer.Argument(help="Audio files (WAV, FLAC, ...), any length, rate and channels; one or more.")
    ],
    out: Annotated[Path, typer.Option(help="Directory for <name>/<source>.wav and <name>/no_<source>.wav.")],
    int24: Annotated[bool, typer.Option("--int24", help="24-bit PCM output (default: 16-bit PCM).")] = False,
    float32: Annotated[
        bool, typer.Option("--float32", help="32-bit float WAV output: never clips (default: 16-bit PCM).")
    ] = False,
    flac: Annotated[bool, typer.Option("--flac", help="FLAC output, 16-bit or 24-bit with --int24.")] = False,
    chunk_seconds: Annotated[float, typer.Option(help="Seconds of audio per model run.")] = 10.0,
    overlap_seconds: Annotated[
        float | None, typer.Option(help="Cross-faded overlap between chunks, seconds (default: 1, at most chunk/2).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads, >= 1 (default: its own).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress on stderr.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout (a list, one per input).")
    ] = False,
) -> None:
    """Separate audio files with an exported waveform model, in overlapping chunks (flat memory).

    For each input, writes OUT/<name>/<source>.wav (the model's target, e.g. vocals) and OUT/<name>/no_<source>.wav.
    A model that does not record its source gives target.wav and residual.wav.
    Every input is checked before anything is written; a failing input leaves no file behind.
    """
    import contextlib

    from s2g_deploy.separate import output_format, separate_files

    fmt = output_format(int24=int24, float32=float32, flac=flac)
    view = _SeparateView(show_results=not json_)
    with progress(True) if verbose else contextlib.nullcontext(), view:
        results = separate_files(
            model,
            audio,
            out,
            chunk_seconds=chunk_seconds,
            overlap_seconds=overlap_seconds,
            overwrite=overwrite,
            threads=threads,
            output_format=fmt,
            on_start=view.start,
            on_progress=view.advance,
            on_result=view.done,
        )
    if json_:
        emit_json([r.to_dict() for r in results])


class _SeparateView:
    """What ``s2g separate`` shows: a progress bar per input on a terminal, notes and warnings on stderr,
    one result line per input on stdout. User text is never markup."""

    def __init__(self, show_results: bool):
        from s2g_deploy.cli.output import stderr

        self.stderr = stderr
        self.show_results = show_results
        self.bar = None
        self.task = None
        self.noted = False

    def __enter__(self) -> _SeparateView:
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def start(self, job) -> None:
        if not self.stderr.is_terminal:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Column

        rates = f" ({job.sample_rate_hz} -> {job.model_sample_rate_hz} Hz and back)" if job.resampled else ""
        self.bar = Progress(
            TextColumn("{task.description}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis")),
            BarColumn(),
            _audio_seconds_column(),
            TimeElapsedColumn(),
            console=self.stderr,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.task = self.bar.add_task(f"{job.input.name}{rates}", total=job.frames, rate=job.sample_rate_hz)
        self.bar.start()

    def advance(self, done_frames: int, total_frames: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done_frames, total=total_frames)

    def done(self, result) -> None:
        self._stop()
        rate = result.model_sample_rate_hz
        if result.sample_rate_hz > rate and not self.noted:  # once per run, after the first such output
            self.noted = True
            self.stderr.print(
                f"note: model rate {rate} Hz (a {rate / 1000:g} kHz model): content above {rate / 2:g} Hz is not "
                f"separated and is left in {result.residual.name}",
                markup=False,
                highlight=False,
            )
        if result.clipped_samples:
            self.stderr.print(
                f"warning: {result.input}: {result.clipped_samples} samples clipped to [-1, 1] in the "
                f"{result.subtype[4:]}-bit output; pass --float32 for float WAV, which never clips",
                markup=False,
                highlight=False,
            )
        if self.show_results:
            stdout.print(f"{result.input} -> {result.target}, {result.residual}", markup=False, highlight=False)

    def _stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _audio_seconds_column():
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class AudioSeconds(ProgressColumn):
        """Seconds of audio done out of the total."""

        def render(self, task) -> Text:
            rate = task.fields.get("rate") or 1
            total = task.total or 0
            return Text(f"{task.completed / rate:.1f}/{total / rate:.1f} s of audio", style="progress.download")

    return AudioSeconds(table_column=Column(no_wrap=True))
