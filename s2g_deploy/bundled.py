"""The supernets shipped inside the package, used when a command is given no checkpoint: the offline
BSRNN, and the causal one for streaming (``--io stream``, streaming profiles)."""

from __future__ import annotations

from pathlib import Path

from s2g_deploy.errors import InputError

BUNDLED_SUPERNET = Path(__file__).parent / "assets" / "supernet.safetensors"
BUNDLED_CAUSAL_SUPERNET = Path(__file__).parent / "assets" / "supernet-causal.safetensors"


def default_checkpoint(causal: bool = False) -> Path:
    """Path of the bundled, trained supernet, offline or causal (see README: how they were trained)."""
    path = BUNDLED_CAUSAL_SUPERNET if causal else BUNDLED_SUPERNET
    if not path.is_file():
        raise InputError(f"the bundled supernet {path} is missing; reinstall s2g_deploy or pass a checkpoint")
    return path


def resolve_checkpoint(path: str | Path | None, causal: bool = False) -> Path:
    """``path`` if given, else the bundled supernet (the causal one for a stream)."""
    return Path(path) if path is not None else default_checkpoint(causal)
