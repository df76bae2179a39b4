"""The root typer application and its global options; every command module registers on it (cli/app.py
imports them all)."""

from __future__ import annotations

from typing import Annotated

import typer

from s2g_deploy import __version__

app = typer.Typer(
    name="s2g",
    help="Turn one elastic (Subnetwork-to-go) BSRNN into device-sized dense models.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals hold tensors
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"s2g_deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Turn one elastic (Subnetwork-to-go) BSRNN into device-sized dense models."""
