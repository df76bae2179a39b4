"""``s2g init`` and ``s2g slice``: create a supernet checkpoint and cut dense subnets out of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, esc, handles_errors, stdout
from s2g_deploy.cli.root import app


@app.command()
@handles_errors
def init(
    out: Annotated[Path, typer.Option(help="Where to write the supernet checkpoint (.safetensors).")],
    preset: Annotated[str, typer.Option(help="Architecture preset: paper, small, xsmall or tiny.")] = "xsmall",
    seed: Annotated[int, typer.Option(help="Random seed of the initial weights.")] = 0,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Write an untrained supernet of a preset (the starting point for `s2g train`)."""
    from s2g_deploy import api

    meta = api.init(preset, out, seed=seed)
    if json_:
        emit_json({"out": str(out), **meta.to_dict()})
    else:
        stdout.print(
            f"wrote untrained {esc(preset)} supernet to {esc(out)} (weights sha256 {meta.weights_sha256[:12]})"
        )


@app.command("slice")
@handles_errors
def slice_(
    checkpoint: Annotated[Path, typer.Argument(help="Supernet checkpoint (.safetensors).")],
    subnet: Annotated[str, typer.Option(help="DEPTHxWIDTH, e.g. 2x16.")],
    out: Annotated[Path, typer.Option(help="Where to write the dense checkpoint (.safetensors).")],
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Cut one subnet out of a supernet as a dense model with its own weights."""
    from s2g_deploy import api
    from s2g_deploy.models.config import count_params

    meta = api.slice_to_file(checkpoint, subnet, out)
    if json_:
        emit_json({"out": str(out), "params": count_params(meta.config), **meta.to_dict()})
    else:
        stdout.print(f"wrote dense subnet {meta.subnet} ({count_params(meta.config):,} params) to {esc(out)}")
