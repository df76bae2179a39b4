"""``s2g data render``: rendered multitrack music in the MUSDB18 layout, for training and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, handles_errors, stderr, stdout
from s2g_deploy.cli.root import app

data_app = typer.Typer(
    name="data",
    help="Training and evaluation data: rendered multitracks (FluidSynth + a General-MIDI soundfont).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_app, name="data")


@data_app.command("render")
@handles_errors
def render(
    out: Annotated[Path, typer.Option(help="Output folder: one folder per track, plus manifest.json.")],
    tracks: Annotated[int, typer.Option(help="Number of tracks.")] = 100,
    seconds: Annotated[float, typer.Option(help="Length of every track, seconds.")] = 30.0,
    sample_rate: Annotated[int, typer.Option(help="Sample rate of the WAVs, Hz.")] = 16000,
    soundfont: Annotated[
        str, typer.Option(help="FluidR3_GM, TimGM6mb, MuseScore_General, or a path to an .sf2/.sf3 file.")
    ] = "FluidR3_GM",
    seed: Annotated[int, typer.Option(help="Seed of the compositions and the mix.")] = 0,
    split: Annotated[str, typer.Option(help="train, valid or test: disjoint streams of compositions.")] = "train",
    jobs: Annotated[int, typer.Option(help="Tracks rendered in parallel (processes).")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace a previous render in --out.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Compose songs and render each stem with FluidSynth: vocals.wav, bass.wav, drums.wav, other.wav, mixture.wav.

    The same arguments give byte-identical files. Render the test split again with another soundfont
    (e.g. --soundfont TimGM6mb) for a timbre-shift test set that training never heard.
    """
    import time

    from s2g_deploy import api
    from s2g_deploy.data.render import RenderRequest

    request = RenderRequest(out, tracks, seconds, sample_rate, soundfont, seed, split, jobs, overwrite)
    started = time.perf_counter()
    with _progress(tracks) as on_track:
        result = api.render_data(request, on_track)
    wall = time.perf_counter() - started
    if json_:
        emit_json(
            {
                "out": str(result.out),
                "tracks": result.tracks,
                "seconds_per_track": result.seconds,
                "total_seconds": result.total_seconds,
                "wall_s": wall,
            }
        )
        return
    stdout.print(
        f"rendered {result.tracks} tracks ({result.total_seconds / 60:.1f} min of audio) in {wall:.0f} s -> ",
        str(result.out),
        sep="",
        markup=False,
        highlight=False,
    )


class _progress:
    """A progress bar of tracks on a terminal; a line every 10% otherwise (stderr)."""

    def __init__(self, total: int):
        self.total = total
        self.bar = None

    def __enter__(self):
        if stderr.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                "render", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=stderr
            )
            task = self.bar.add_task("render", total=self.total)
            self.bar.start()
            return lambda done: self.bar.update(task, completed=done)
        step = max(1, self.total // 10)
        return lambda done: done % step == 0 and stderr.print(f"rendered {done}/{self.total} tracks", markup=False)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
