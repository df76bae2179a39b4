"""Reading a checkpoint's quality table: which figure holds for a subnet at a profile's workload.

The table (written by ``s2g evaluate``, layout in :mod:`s2g_deploy.train.evaluate`) holds whole-clip
figures and, per chunk length, the figures of the model run in chunks as ``s2g separate`` runs it. A
device that runs 16 ms chunks gets the 16 ms figure, not the whole-clip one: where the table has no
entry for a workload, the quality there is *unmeasured*, and everything that quotes quality says so.
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_OVERLAP_SECONDS = 1.0  # s2g separate's default overlap between chunks
TIMBRE_SPLIT = "timbre-shift"


def overlap_for(chunk_seconds: float, overlap_seconds: float = DEFAULT_OVERLAP_SECONDS) -> float:
    """The overlap ``s2g separate --chunk-seconds X`` uses: the requested one, at most half a chunk."""
    return min(overlap_seconds, chunk_seconds / 2)


def chunk_key(chunk_seconds: float) -> str:
    """The quality table's key of a chunk length: ``0.016``, ``1``."""
    return f"{chunk_seconds:g}"


def workload_label(chunk_seconds: float | None) -> str:
    return "whole clip" if chunk_seconds is None else f"{chunk_seconds:g} s chunks"


def table_at(quality: Mapping[str, Any] | None, chunk_seconds: float | None) -> Mapping[str, Any] | None:
    """The part of one split's table for a workload (``subnets`` and ``mixture``), or None if unmeasured."""
    if not quality:
        return None
    if chunk_seconds is None:
        return quality
    return (quality.get("chunked") or {}).get(chunk_key(chunk_seconds))


STREAM_LABEL = "streamed: the causal model's whole-clip figure, which a stream reproduces exactly"


def subnet_quality(
    quality: Mapping[str, Any] | None, subnet: str, chunk_seconds: float | None, stream: bool = False
) -> dict | None:
    """What a manifest, model card or release quotes for ``subnet`` run at ``chunk_seconds`` (None: offline;
    ``stream``: a causal model streamed, whose output is its whole-clip output, so that figure holds).

    ``subnets`` holds the row measured at that workload, or None with ``measured`` false and a note when
    the table has no entry for it; the whole-clip row is kept under ``whole_clip``, labelled as such.
    """
    if not quality:
        return None
    at = table_at(quality, chunk_seconds)
    row = ((at or {}).get("subnets") or {}).get(subnet)
    label = STREAM_LABEL if stream else workload_label(chunk_seconds)
    record = {
        "metric": quality.get("metric", "usdr_db"),
        "metrics": quality.get("metrics"),
        "data": quality.get("data"),
        "workload": {
            "label": label,
            "chunk_seconds": chunk_seconds,
            "overlap_seconds": (at or {}).get("overlap_seconds") if chunk_seconds is not None else None,
        },
        "measured": row is not None,
        "mixture": (at or {}).get("mixture"),
        "subnets": {subnet: row},
        "whole_clip": (quality.get("subnets") or {}).get(subnet),
    }
    if row is None:
        record["note"] = f"quality unmeasured at this chunk length ({label}); the whole-clip figure does not hold here"
    for name, split in (quality.get("splits") or {}).items():
        split_at = table_at(split, chunk_seconds)
        record.setdefault("splits", {})[name] = {
            "data": split.get("data"),
            "mixture": (split_at or {}).get("mixture"),
            "subnets": {subnet: ((split_at or {}).get("subnets") or {}).get(subnet)},
        }
    return record


def describe_row(row: Mapping[str, Any] | None) -> str:
    """``uSDR 8.12 dB, SI-SDR 7.90 dB, cSDR 8.40 dB`` (metrics present only)."""
    if not row:
        return "unmeasured"
    names = {"usdr_db": "uSDR", "sisdr_db": "SI-SDR", "csdr_db": "cSDR"}
    return ", ".join(f"{names.get(k, k)} {v:.2f} dB" for k, v in row.items() if isinstance(v, int | float))


def restrict(quality: Mapping[str, Any] | None, subnet: str) -> dict | None:
    """The table in ``s2g evaluate``'s layout with only ``subnet``'s rows: what a dense checkpoint carries.

    Every workload and split is kept, so a dense model exported for a device still finds its figure.
    """
    if not quality:
        return None

    def cut(table: Mapping[str, Any]) -> dict:
        out = {k: v for k, v in table.items() if k not in ("subnets", "chunked", "splits")}
        out["subnets"] = {subnet: (table.get("subnets") or {}).get(subnet)}
        if "chunked" in table:
            out["chunked"] = {key: cut(entry) for key, entry in (table.get("chunked") or {}).items()}
        return out

    restricted = cut(quality)
    if "splits" in quality:
        restricted["splits"] = {name: cut(split) for name, split in (quality.get("splits") or {}).items()}
    return restricted
