"""The ``s2g`` entry point: the root application (:mod:`s2g_deploy.cli.root`) with every command module
registered on it. Commands live in one module each."""

from __future__ import annotations

import importlib

from s2g_deploy.cli.root import app

__all__ = ["app", "run"]

# One module per command (or command group), registered on `app` when imported, in this order: the order
# of `s2g --help`. They import torch only when run.
COMMAND_MODULES = (
    "bench",
    "data",
    "env",
    "export",
    "separate",
    "inspect",
    "models",
    "profiles",
    "release",
    "search",
    "train",
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"s2g_deploy.cli.{_name}")


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
