"""Shared helpers of the runtime tests (bench, latency model): a tiny supernet and quick profiles."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from conftest import make_supernet

from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint
from s2g_deploy.profiles import Profile, load_profile, parse_profile

QUALITY = {
    "metric": "usdr_db",
    "subnets": {"1x4": {"usdr_db": 3.0}, "1x8": {"usdr_db": 4.0}, "2x4": {"usdr_db": 5.0}, "2x8": {"usdr_db": 6.0}},
}


def tiny_checkpoint(path: Path) -> Path:
    """A tiny supernet (grid 1x4, 1x8, 2x4, 2x8; the bigger, the better) saved at ``path``."""
    model = make_supernet("tiny")
    save_checkpoint(path, model, CheckpointMeta(model.config, model.space, quality=QUALITY))
    return path


def quick_profile(
    name: str = "quick", *, budgets: dict | None = None, runtime: dict | None = None, **measurement
) -> Profile:
    """A valid profile with a protocol of a few runs (tests check behaviour, not timing)."""
    return parse_profile(
        {
            "schema_version": 1,
            "name": name,
            "description": "test device",
            "budgets": budgets if budgets is not None else {"latency_ms": 1000.0, "latency_statistic": "p90"},
            "runtime": {
                "execution_provider": "CPUExecutionProvider",
                "intra_op_threads": 1,
                "inter_op_threads": 1,
                "graph_optimization_level": "all",
                "precision": "fp32",
                "opset": 17,
                **(runtime or {}),
            },
            "workload": {"chunk_seconds": 0.032, "batch": 1},
            "measurement": {
                "warmup_runs": 1,
                "timed_runs": 5,
                "min_duration_s": 0.0,
                "statistic": "p50",
                **measurement,
            },
        },
        f"<{name}>",
    )


def profile_toml(profile: Profile, directory: Path) -> Path:
    """Write ``profile`` as a TOML file in ``directory`` (checked to read back as the same profile)."""
    d = profile.to_dict()
    path = Path(directory) / f"{profile.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"schema_version = 1\nname = {json.dumps(d['name'])}\ndescription = {json.dumps(d['description'])}"]
    for section in ("budgets", "runtime", "workload", "measurement"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in d[section].items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    assert replace(load_profile(path), source=None) == replace(profile, source=None)
    return path
