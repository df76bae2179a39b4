"""``s2g bench --compare torch``: the same subnet as PyTorch runs it, dense and as a masked supernet.

What slicing and ONNX buy is only visible beside what a user would otherwise run: the dense subnet in
PyTorch (slicing without ONNX) and the whole supernet asked for that subnet (neither). Each runs in a
process of its own (:mod:`s2g_deploy.runtime.measure`) with the profile's thread count, input and
protocol, so the rows differ only in the implementation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2g_deploy.artifacts import DENSE_FILE
from s2g_deploy.errors import InputError
from s2g_deploy.profiles import Profile
from s2g_deploy.runtime.measure import job_for, latency_statistics, measure

if TYPE_CHECKING:
    from s2g_deploy.runtime.bench import ModelFacts


def find_supernet(facts: ModelFacts, checkpoint: str | os.PathLike | None) -> Path:
    """The supernet the model was cut from: ``checkpoint``, the export's recorded input, or the bundled one.

    A candidate counts only if its weights hash is the one the export recorded.
    """
    import onnx

    from s2g_deploy.bundled import BUNDLED_SUPERNET
    from s2g_deploy.costcache import read_summary

    props = {p.key: p.value for p in onnx.load(str(facts.path), load_external_data=False).metadata_props}
    want = props.get("s2g.supernet_weights_sha256") or None
    candidates = [Path(checkpoint)] if checkpoint is not None else []
    if facts.export_dir is not None and checkpoint is None:
        manifest = json.loads((facts.export_dir / "manifest.json").read_text())
        candidates.append(Path(manifest["inputs"]["checkpoint"]))
    if checkpoint is None:
        candidates.append(BUNDLED_SUPERNET)
    for path in candidates:
        if path.is_file() and (want is None or read_summary(path).weights_sha256 == want):
            return path
    if checkpoint is not None:
        raise InputError(f"{checkpoint}: is not the supernet {facts.path} was cut from (weights hash differs)")
    raise InputError(
        f"{facts.path}: cannot find the supernet it was cut from (weights {str(want)[:12]}); pass --checkpoint"
    )


def compare_torch(
    facts: ModelFacts, profile: Profile, checkpoint: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """Rows for the dense PyTorch subnet and the supernet run at it, measured like the ONNX model."""
    if facts.io != "waveform":
        raise InputError(f"{facts.path}: --compare torch needs a waveform export (this one is {facts.io})")
    if facts.subnet is None:
        raise InputError(f"{facts.path}: has no s2g.subnet metadata; cannot build the PyTorch equivalents")
    supernet = find_supernet(facts, checkpoint)
    dense = facts.export_dir / DENSE_FILE if facts.export_dir is not None else None
    dense = dense if dense is not None and dense.is_file() else supernet  # sliced in the child if need be
    m, w = profile.measurement, profile.workload
    shape = facts.input_for(w.chunk_seconds, w.batch)
    rows = []
    for kind, label, path in (
        ("torch_dense", "PyTorch dense (the sliced subnet)", dense),
        ("torch_supernet", "PyTorch supernet (at the subnet, masked)", supernet),
    ):
        result = measure(job_for(kind, path, shape, profile, subnet=facts.subnet))
        stats = latency_statistics(result["first_ms"], result["samples_ms"])
        rows.append(
            {
                "implementation": label,
                "kind": kind,
                "model": str(path),
                "latency_ms": stats,
                "real_time_factor": stats[m.statistic] / 1000 / (w.chunk_seconds * w.batch),
                "peak_rss_bytes": result["peak_rss_bytes"],
                "runs": len(result["samples_ms"]),
                "threads": result.get("torch_threads"),
            }
        )
    return rows
