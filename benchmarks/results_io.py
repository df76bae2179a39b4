"""What every benchmark in this directory writes: ``results/<name>.{json,md}`` and the machine line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def machine_line(env: dict) -> str:
    """One sentence naming the CPU, the CPUs usable, the load and the versions that produced a number."""
    v = env["versions"]
    return (
        f"Machine: {env['cpu_model']}, {env['usable_cpus']} usable of {env['logical_cpus']} CPUs, 1-minute load "
        f"average {env['load_average_1m']} (at the end); onnxruntime {v['onnxruntime']}, onnx {v['onnx']}, "
        f"torch {v['torch']}; {env['date_utc']}."
    )


def write_results(directory: Path, name: str, report: dict, markdown: str) -> None:
    """``<directory>/<name>.json`` (the report) and ``<name>.md`` (the table), then the table on stdout."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (directory / f"{name}.md").write_text(markdown)
    print(markdown)


def log(message: str) -> None:
    """A time-stamped progress line on stderr (results go to stdout and the files)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
