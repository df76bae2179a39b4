"""The on-disk cost cache, and the torch-free reads that keep a warm ``s2g search`` under 2 s.

Importing torch takes about 2 s on a laptop CPU: the whole budget of a warm search. So the warm path
reads the checkpoint's header with :func:`s2g_deploy.checkpoint.read_meta` (torch-free) and library
versions from package metadata, and only a cold count (:func:`s2g_deploy.cost.subnet_costs`) imports
torch. A cache hit implies the checkpoint was fully loaded and verified once:
the table was counted from it, and the key holds its weights hash and architecture.

Layout: ``<cache dir>/costs/<sha256 of the key>.json``, one JSON document with the key and the table.
The cache dir is ``$S2G_CACHE_DIR``, else ``$XDG_CACHE_HOME/s2g_deploy``, else ``~/.cache/s2g_deploy``.
Writes are atomic (temporary file, then rename); a file that does not parse, or holds another key, is
ignored and rewritten; an unwritable cache dir costs speed, not correctness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2g_deploy.artifacts import atomic_file
from s2g_deploy.errors import InputError
from s2g_deploy.subnet import ElasticSpace

log = logging.getLogger(__name__)

_FORMAT = "s2g_deploy.costs"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class SupernetSummary:
    """What costing and search need from a supernet checkpoint, read from its header alone."""

    path: Path
    weights_sha256: str
    config: Mapping[str, Any]  # BSRNNConfig.to_dict()
    space: ElasticSpace
    quality: Mapping[str, Any] | None
    architecture: str = "bsrnn"  # the registry's name (models.registry)

    @property
    def sample_rate_hz(self) -> int:
        return int(self.config["sample_rate_hz"])

    @property
    def hop_length(self) -> int:
        return int(self.config["hop_length"])


def read_summary(path: str | os.PathLike) -> SupernetSummary:
    """Summarise the supernet at ``path`` from its header alone (:func:`s2g_deploy.checkpoint.read_meta`:
    no weights, no torch).

    Raises :class:`CheckpointError` for an unreadable or truncated file and :class:`InputError` for a
    dense subnet, which has no grid to cost or search.
    """
    from s2g_deploy.checkpoint import read_meta

    path = Path(path)
    meta = read_meta(path)
    if meta.space is None:
        raise InputError(f"{path}: is a dense subnet ({meta.subnet}), not a supernet; costs and search need a supernet")
    return SupernetSummary(
        path=path,
        weights_sha256=meta.weights_sha256,
        config=meta.config.to_dict(),
        space=meta.space,
        quality=meta.quality,
        architecture=meta.architecture,
    )


def library_versions() -> dict[str, str]:
    """Versions of the code that counts MACs, read from package metadata (no imports)."""
    from s2g_deploy.environment import versions

    return versions("s2g_deploy", "torch", "fvcore")


def cache_dir() -> Path:
    """``$S2G_CACHE_DIR``, else ``$XDG_CACHE_HOME/s2g_deploy``, else ``~/.cache/s2g_deploy``."""
    if os.environ.get("S2G_CACHE_DIR"):
        return Path(os.environ["S2G_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "s2g_deploy"
    return Path.home() / ".cache" / "s2g_deploy"


def entry_path(key: Mapping[str, Any], kind: str = "costs") -> Path:
    """Where the table for ``key`` (a JSON-able mapping) is cached; ``kind`` names the sub-directory."""
    digest = hashlib.sha256(_canonical(key).encode()).hexdigest()
    return cache_dir() / kind / f"{digest}.json"


def load(key: Mapping[str, Any], kind: str = "costs") -> dict | None:
    """The cached table of ``kind`` for ``key``, or None when there is none or the file is unusable.

    ``kind`` is ``"costs"`` (this module's tables) or another cache sharing the layout (``"latency"``).
    """
    path = entry_path(key, kind)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the %s cache file %s (%s); recomputing", _label(kind), path, exc)
        return None
    try:
        document = json.loads(text)
        if document["format"] != _format(kind) or document["format_version"] != _FORMAT_VERSION:
            raise ValueError(f"format {document['format']!r} version {document['format_version']!r}")
        if document["key"] != json.loads(_canonical(key)):
            raise ValueError("it holds the costs of another key")
        table = document["table"]
        if not isinstance(table, dict):
            raise TypeError("no table")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the corrupt %s cache file %s (%s); recomputing", _label(kind), path, exc)
        return None
    return table


def store(key: Mapping[str, Any], table: Mapping[str, Any], kind: str = "costs") -> Path | None:
    """Write ``table`` under ``key`` atomically; returns the file, or None if the cache is not writable."""
    path = entry_path(key, kind)
    document = {"format": _format(kind), "format_version": _FORMAT_VERSION, "key": key, "table": table}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(document, indent=1), encoding="utf-8")
    except OSError as exc:
        log.warning(
            "cannot write the %s cache in %s (%s); it will be recomputed next time", _label(kind), path.parent, exc
        )
        return None
    return path


def _format(kind: str) -> str:
    return _FORMAT if kind == "costs" else f"s2g_deploy.{kind}"


def _label(kind: str) -> str:
    return "cost" if kind == "costs" else kind


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
