"""``s2g separate``: run an exported waveform or stream model on audio files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, handles_errors, progress, stdout
from s2g_deploy.cli.root import app


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
    chunk_seconds: Annotated[
        float | None, typer.Option(help="Seconds of audio per model run (default: 10; waveform exports only).")
    ] = None,
    overlap_seconds: Annotated[
        float | None,
        typer.Option(
            help="Cross-faded overlap between chunks, seconds (default: 1, at most chunk/2; waveform exports only)."
        ),
    ] = None,
    hops_per_call: Annotated[
        int | None,
        typer.Option(help="Hops per call of a stream export (default: the export's own; stream exports only)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="onnxruntime intra-op threads, >= 1 (default: its own).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress on stderr.")] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="Print one JSON document on stdout (a list, one per input).")
    ] = False,
) -> None:
    """Separate audio files with an exported model: a waveform export in overlapping chunks, a stream
    export call by call with its states carried (flat memory either way).

    For each input, writes OUT/<name>/<source>.wav (the model's target, e.g. vocals) and OUT/<name>/no_<source>.wav.
    A model that does not record its source gives target.wav and residual.wav.
    Every input is checked before anything is written; a failing input leaves no file behind.
    """
    import contextlib

    from s2g_deploy import api

    fmt = {"int24": int24, "float32": float32, "flac": flac}
    view = _SeparateView(show_results=not json_)
    with progress(True) if verbose else contextlib.nullcontext(), view:
        results = api.separate_files(
            model,
            audio,
            out,
            chunk_seconds=chunk_seconds,
            overlap_seconds=overlap_seconds,
            hops_per_call=hops_per_call,
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
            how = ""
            if result.stream is not None:
                s = result.stream
                how = (
                    f" (streamed: {result.calls} calls of {s.hops_per_call} x {s.hop_length}-sample hops, "
                    f"delay {s.delay_samples} samples)"
                )
            stdout.print(f"{result.input} -> {result.target}, {result.residual}{how}", markup=False, highlight=False)

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
