"""Where output goes: results on stdout (rich, or one JSON document), everything else on stderr."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from s2g_deploy.errors import S2GError

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def fail(message: str, exit_code: int) -> typer.Exit:
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(exit_code)


def handles_errors(command: Callable) -> Callable:
    """Map the package's errors to their exit codes with a one-line message (the one place that does)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except S2GError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


@contextlib.contextmanager
def progress(verbose: bool):
    """The library's INFO log lines (progress) on stderr.

    On a terminal: one transient status line that disappears at the end, so a failure still ends
    with a single error line. Elsewhere (pipes, CI): silent unless ``--verbose``, then one line each.
    """
    import logging

    logger = logging.getLogger("s2g_deploy")
    status = None
    if verbose:

        def show(message: str) -> None:
            stderr.print(message, highlight=False, markup=False)

    elif stderr.is_terminal:
        status = stderr.status("working")
        status.start()

        def show(message: str) -> None:
            status.update(message)

    else:
        yield
        return

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            show(record.getMessage())

    handler, level = _Handler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        if status is not None:
            status.stop()
