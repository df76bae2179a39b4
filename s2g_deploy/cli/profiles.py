"""``s2g profiles list | show NAME | validate FILE``: the device profiles shipped with s2g, and yours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, esc, handles_errors, stdout
from s2g_deploy.cli.root import app

profiles_app = typer.Typer(
    name="profiles",
    help="Device profiles: budgets, runtime settings, workload and measurement protocol per device.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(profiles_app, name="profiles")


@profiles_app.command("list")
@handles_errors
def list_(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """List the shipped profiles, smallest MAC budget first."""
    from rich.table import Table

    from s2g_deploy import api
    from s2g_deploy.units import format_size

    profiles = api.profiles()
    if json_:
        emit_json([p.to_dict() for p in profiles])
        return
    table = Table(title="Shipped device profiles")
    for column in ("name", "max MACs/s", "max params", "latency", "workload", "runtime", "device"):
        table.add_column(column, justify="right" if column.startswith(("max", "lat", "work")) else "left")
    for p in profiles:
        b, r = p.budgets, p.runtime
        table.add_row(
            p.name,
            format_size(b.max_macs_per_second) if b.max_macs_per_second else "-",
            format_size(b.max_params) if b.max_params else "-",
            f"{b.latency_statistic} <= {b.latency_ms:g} ms" if b.latency_ms else "-",
            f"{p.workload.mode} {1000 * p.workload.chunk_seconds:g} ms x {p.workload.batch}",
            f"{r.execution_provider.removesuffix('ExecutionProvider')}, {r.intra_op_threads} thr, {r.precision}",
            p.description.split(".")[0].split("(")[0].strip(),
        )
    stdout.print(table)


@profiles_app.command("show")
@handles_errors
def show(
    name: Annotated[str, typer.Argument(help="A shipped profile name, or the path of a .toml file.")],
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Show every field of one profile."""
    from s2g_deploy import api

    profile = api.profile(name)
    if json_:
        emit_json(profile.to_dict())
        return
    _render(profile)


@profiles_app.command("validate")
@handles_errors
def validate(
    file: Annotated[Path, typer.Argument(help="A profile file (.toml).")],
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Check a profile file; lists every problem with its key path (exit code 2) or says it is valid."""
    from s2g_deploy import api
    from s2g_deploy.errors import ProfileError

    try:
        profile = api.validate_profile(file)
    except ProfileError as exc:
        if json_:  # the problems as data too; the message still goes to stderr and the exit code is 2
            emit_json({"valid": False, "file": str(file), "problems": list(exc.problems) or [str(exc)]})
        raise
    if json_:
        emit_json({"valid": True, "profile": profile.to_dict()})
    else:
        stdout.print(f"{esc(file)}: valid profile {esc(repr(profile.name))} (schema version {profile.schema_version})")


def _render(profile) -> None:
    from rich.table import Table

    data = profile.to_dict()
    stdout.print(f"[bold]{esc(profile.name)}[/] (schema version {profile.schema_version}, {esc(profile.source)})")
    stdout.print(profile.description, highlight=False, markup=False)
    table = Table(show_header=True)
    table.add_column("key")
    table.add_column("value", justify="right")
    for section in ("budgets", "runtime", "workload", "measurement"):
        for key, value in data[section].items():
            table.add_row(f"{section}.{key}", "-" if value is None else esc(value))
    stdout.print(table)
