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
from rich.markup import escape

from s2g_deploy.errors import S2GError

SIGPIPE_EXIT = 128 + 13  # what a shell reports for a process ended by a closed pipe (`s2g search | head`)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich's default exits 1, which the README reserves for bugs; end quietly as Unix tools do
        _quiet_stdout()
        raise SystemExit(SIGPIPE_EXIT)


stdout = _Console(soft_wrap=True)
stderr = _Console(stderr=True, soft_wrap=True)


def esc(value: Any) -> str:
    """User text (paths, names, notes) for a markup-enabled print: shown as written, never as markup."""
    return escape(str(value))


_emitted: list[bool] = []  # a JSON document is already on stdout (a result that ends with exit 3 or 4)


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
    _emitted.append(True)


def fail(message: str, exit_code: int, as_json: bool = False) -> typer.Exit:
    """One line on stderr (user text is never markup); with --json also a JSON error document on stdout."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    if as_json and not _emitted:  # one document per command: a result that says why it failed stands alone
        emit_json({"error": {"message": message, "exit_code": exit_code}})
    return typer.Exit(exit_code)


def os_error_message(exc: OSError) -> str:
    """``path: cause`` for an operating-system error (full disk, name too long, a directory in the way...)."""
    cause = exc.strerror or type(exc).__name__
    path = exc.filename if exc.filename is not None else None
    return f"{path}: {cause}" if path is not None else cause


def handles_errors(command: Callable) -> Callable:
    """Map errors to exit codes with a one-line message: the one place that does.

    The package's own errors carry their code; operating-system errors (a full disk, a name too long, a
    directory where a file goes) are invalid input, exit 2, naming the path; a closed stdout ends quietly;
    Ctrl-C is 130. With ``--json``, failures also print ``{"error": {"message", "exit_code"}}`` on stdout.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        as_json = bool(kwargs.get("json_"))
        _emitted.clear()
        try:
            return command(*args, **kwargs)
        except S2GError as exc:
            raise fail(str(exc), exc.exit_code, as_json) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130, as_json) from None
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(SIGPIPE_EXIT) from None
        except OSError as exc:
            raise fail(os_error_message(exc), 2, as_json) from None

    return wrapper


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


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
            if record.levelno >= logging.WARNING:  # a warning stays on screen, above any live display
                stderr.print(f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False)
            else:
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
