"""``s2g env``: the machine and software, for bug reports and release records."""

from __future__ import annotations

from typing import Annotated

import typer

from s2g_deploy.cli.output import emit_json, handles_errors, stdout
from s2g_deploy.cli.root import app

# variables that change how many threads torch and onnxruntime use, hence every timing
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "S2G_CACHE_DIR")


@app.command()
@handles_errors
def env(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
) -> None:
    """Print versions, onnxruntime providers, CPU, platform and thread settings (paste into bug reports)."""
    from s2g_deploy import api

    document = api.environment(THREAD_VARIABLES)
    if json_:
        emit_json(document)
        return
    rows = [
        ("platform", document["platform"]),
        ("python", document["python"]),
        ("cpu", f"{document['cpu_model']} ({document['machine']})"),
        ("cpus", f"{document['usable_cpus']} usable of {document['logical_cpus']} logical"),
        ("load", f"{document['load_average_1m']} (1 min average)"),
        ("onnxruntime providers", ", ".join(document["onnxruntime_providers"]) or "none (onnxruntime missing)"),
        ("torch threads", "{intra_op} intra-op, {inter_op} inter-op".format(**document["torch_threads"])),
        *((f"${k}", v) for k, v in document["variables"].items() if v is not None),
        *document["versions"].items(),
        ("date", document["date_utc"]),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        stdout.print(f"{key:<{width}}  {value}", highlight=False, markup=False)
