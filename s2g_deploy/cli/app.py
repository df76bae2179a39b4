"""The typer application and its global options. Commands live in one module each."""

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


def _register() -> None:
    # Importing the command modules registers them on `app`; they import torch only when run.
    from s2g_deploy.cli import bench, data, env, export, inspect, models, profiles, release, search, train  # noqa: F401


_register()


def run() -> None:
    """Console-script entry point: usage errors are one line and exit 2, like every other error."""
    import sys

    try:
        code = app(standalone_mode=False, prog_name="s2g")
    except Exception as exc:  # the CLI framework's own errors (typer bundles click; import nothing from it)
        if not hasattr(exc, "format_message") or getattr(exc, "exit_code", None) != 2:
            raise
        from s2g_deploy.cli.output import stderr

        message = exc.format_message()
        if not message:  # `s2g` alone: the help was printed
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        stderr.print(f"error: {message}{hint}", markup=False, highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:  # before a command took over (e.g. while importing)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
