"""The supernet shipped inside the package, used when a command is given no checkpoint."""

from __future__ import annotations

from pathlib import Path

from s2g_deploy.errors import InputError

BUNDLED_SUPERNET = Path(__file__).parent / "assets" / "supernet.safetensors"


def default_checkpoint() -> Path:
    """Path of the bundled, trained supernet (see README: how it was trained)."""
    if not BUNDLED_SUPERNET.is_file():
        raise InputError(
            f"the bundled supernet {BUNDLED_SUPERNET} is missing; reinstall s2g_deploy or pass a checkpoint"
        )
    return BUNDLED_SUPERNET


def resolve_checkpoint(path: str | Path | None) -> Path:
    """``path`` if given, else the bundled supernet."""
    return Path(path) if path is not None else default_checkpoint()
