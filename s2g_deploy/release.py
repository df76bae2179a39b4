"""``s2g release``: one supernet and a set of device profiles -> a directory of verified, documented models.

Layout (all of it written in a staging directory and moved into place only when complete, see
:class:`s2g_deploy.artifacts.StagedDirectory`)::

    dist/
      release.json      every profile: subnet, params, MACs per second, quality, latency, budget verdicts,
                        file hashes; the supernet's hashes; library versions
      RELEASE.md        the same, one table line per profile
      pareto.png        quality vs MACs per second of every subnet, each profile's choice, MAC budgets
      SHA256SUMS        every file below, subdirectories included (``sha256sum -c SHA256SUMS``)
      <profile>/        an ``s2g export --profile <profile>`` directory, with its own SHA256SUMS

Selection uses the static budgets only (parameters, MACs per second): they depend on the supernet and
the profile, not on the machine, so the same inputs give the same subnets on any machine and, with
the same library versions, byte-identical ONNX files. Latency budgets describe the device; this
machine is usually not it. With ``bench`` each export is benchmarked here under its profile and the
verdicts are reported; a miss is written like the rest and ends the command with exit code 4, like
any measured miss. A profile no subnet satisfies is recorded with the budget that binds and what the
cheapest subnet costs, the rest is built, and the command ends with exit code 3.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from s2g_deploy import artifacts
from s2g_deploy.budgets import budget_verdicts, cheapest
from s2g_deploy.errors import BudgetInfeasibleError, InputError, S2GError, VerificationError
from s2g_deploy.profiles import Profile, load_profile, read_profile, shipped_profile_dir, streams

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ReleaseResult:
    """What :func:`build_release` wrote: the directory and the content of its ``release.json``."""

    out: Path
    document: Mapping[str, Any] = field(repr=False)

    def names(self, status: str) -> list[str]:
        """Profiles with this status: ``ok``, ``infeasible`` (no subnet meets the static budgets) or
        ``missed`` (benchmarked here over a latency budget)."""
        return [p["profile"] for p in self.document["profiles"] if p["status"] == status]

    def failure(self) -> S2GError | None:
        """The error the release ends with (infeasible: exit 3, before missed: exit 4), or None.

        None as well when the release was built with ``allow_infeasible``; the files report either way.
        """
        if self.document["options"]["allow_infeasible"]:
            return None
        where = f"the release in {self.out} reports it"
        infeasible, missed = self.names("infeasible"), self.names("missed")
        if infeasible:
            why = "; ".join(p["infeasible"]["reason"] for p in self.document["profiles"] if p["status"] == "infeasible")
            return BudgetInfeasibleError(
                f"{len(infeasible)} profile(s) cannot be satisfied ({why}); {where}; --allow-infeasible exits 0"
            )
        if missed:
            return VerificationError(
                f"profile(s) {', '.join(missed)} missed a latency budget when benchmarked on this machine; "
                f"{where}; --allow-infeasible exits 0"
            )
        return None

    def to_dict(self) -> dict:
        return {"out": str(self.out), **self.document}


def collect_profiles(specs: Iterable[str | os.PathLike | Profile] | None) -> list[Profile]:
    """Profiles from directories (every ``*.toml``), files, shipped names or loaded profiles; default: the
    shipped ones.

    Ordered smallest MAC budget first (then by name), whatever the order given, so the same set gives
    the same release. Raises :class:`InputError` for none found or two profiles with one name.
    """
    profiles: list[Profile] = []
    for spec in specs or [shipped_profile_dir()]:
        if isinstance(spec, Profile):
            profiles.append(spec)
        elif Path(spec).is_dir():
            found = sorted(Path(spec).glob("*.toml"))
            if not found:
                raise InputError(f"--profiles {spec}: the directory holds no .toml profile")
            profiles += [read_profile(f) for f in found]
        else:
            profiles.append(load_profile(spec))  # a shipped name or a file
    seen: dict[str, str] = {}
    for p in profiles:
        if p.name in seen:
            raise InputError(f"two profiles are named {p.name!r} ({seen[p.name]}, {p.source}); names must differ")
        seen[p.name] = str(p.source)
    if not profiles:
        raise InputError("--profiles: no profile given")
    return sorted(profiles, key=lambda p: (p.budgets.max_macs_per_second or math.inf, p.name))


def build_release(
    checkpoint: str | os.PathLike | None,
    profiles: Iterable[str | os.PathLike | Profile] | None,
    out: str | os.PathLike,
    *,
    bench: bool = True,
    allow_infeasible: bool = False,
    overwrite: bool = False,
    gate_data: str | os.PathLike | None = None,
    causal_checkpoint: str | os.PathLike | None = None,
) -> ReleaseResult:
    """Export the best subnet for each profile into ``out`` and describe them (see the module docstring).

    ``checkpoint``: the offline supernet, for chunk and offline workloads (default: the bundled one);
    ``causal_checkpoint``: the causal supernet, streamed by profiles with a stream workload (default:
    the bundled causal one; read only if such a profile is released). ``profiles``: loaded profiles, or directories,
    files and shipped names (default: every shipped profile). Returns the result even when a profile is
    infeasible or missed its latency budget; :meth:`ReleaseResult.failure` is the error to exit with.
    Raises :class:`InputError` before writing anything for bad inputs; on any error ``out`` is untouched.
    """
    from s2g_deploy.bundled import resolve_checkpoint
    from s2g_deploy.export.onnx import single_threaded
    from s2g_deploy.plots import pareto_png
    from s2g_deploy.release_notes import FIGURE, NOTES, markdown
    from s2g_deploy.search import search

    # --- every refusal before any file is written ---------------------------------------------------
    profs = collect_profiles(profiles)
    ckpt_path, meta = _supernet(resolve_checkpoint(checkpoint), causal=False)
    causal = None  # (path, meta) of the causal supernet, if a profile streams
    if any(streams(p) for p in profs):
        causal = _supernet(resolve_checkpoint(causal_checkpoint, causal=True), causal=True)
    if bench:
        _check_providers(profs)
    out = artifacts.check_target(out, overwrite, (artifacts.RELEASE_FORMAT,))
    grid = search(ckpt_path, None, None, latency_model=None)  # the whole grid, with quality and costs
    causal_grid = search(causal[0], None, None, latency_model=None) if causal else None

    staged = artifacts.StagedDirectory(out, overwrite, replaces=(artifacts.RELEASE_FORMAT,))
    with staged as staging, single_threaded():
        work = staging.path
        entries = []
        for i, prof in enumerate(profs, 1):
            log.info("release: profile %s (%d of %d)", prof.name, i, len(profs))
            path = causal[0] if streams(prof) else ckpt_path
            entries.append(_release_profile(path, prof, work, out, bench, gate_data))
        document = _document(ckpt_path, meta, grid, entries, bench, allow_infeasible)
        if causal:
            document["causal_supernet"] = _supernet_record(causal[0], causal[1], causal_grid)
            document["causal_grid"] = _grid_record(causal_grid)
        artifacts.write_json(work / artifacts.RELEASE, document)
        (work / NOTES).write_text(markdown(document), encoding="utf-8")
        pareto_png(document, work / FIGURE)
        artifacts.write_sha256sums(work, recursive=True)
        if artifacts.verify_sha256sums(work):
            raise VerificationError(f"{artifacts.SHA256SUMS} does not match the files just written")
        staging.commit()
    result = ReleaseResult(out, document)
    s = document["summary"]
    log.info("wrote %s: %d ok, %d infeasible, %d missed", out, len(s["ok"]), len(s["infeasible"]), len(s["missed"]))
    return result


def _supernet(path: Path, causal: bool) -> tuple[Path, Any]:
    """(path, header) of a release's offline or causal supernet; :class:`InputError` if it is not one."""
    from s2g_deploy.checkpoint import read_meta
    from s2g_deploy.models.registry import get_architecture

    meta = read_meta(path)
    if meta.kind != "supernet":
        raise InputError(f"{path}: is a dense subnet ({meta.subnet}); a release needs a supernet")
    if get_architecture(meta.architecture).causal != causal:
        option = "--causal-checkpoint" if causal else "the checkpoint"
        want = (
            "a causal supernet (streaming profiles)" if causal else "an offline supernet (chunk and offline profiles)"
        )
        raise InputError(f"{path}: is a {meta.architecture} supernet; {option} must be {want}")
    return path, meta


def _check_providers(profiles: Sequence[Profile]) -> None:
    from s2g_deploy.environment import onnxruntime_providers

    available = onnxruntime_providers()
    for p in profiles:
        if p.runtime.execution_provider not in available:
            raise InputError(
                f"profile {p.name!r} ({p.source}) runs on {p.runtime.execution_provider}, which this onnxruntime "
                f"lacks (it has {', '.join(available)}); benchmark on the device, or release with --no-bench"
            )


# --- one profile --------------------------------------------------------------------------------------


def _release_profile(ckpt_path: Path, prof: Profile, work: Path, out: Path, bench: bool, gate_data: Any) -> dict:
    from s2g_deploy.deploy import export
    from s2g_deploy.export.pipeline import ExportOptions

    head = {
        "profile": prof.name,
        "description": " ".join(prof.description.split()),
        "source": prof.source,
        "workload": prof.workload.mode,
    }
    options = ExportOptions(work / prof.name, ckpt_path, profile=prof, measure_latency=False, gate_data=gate_data)
    try:
        # static budgets only: machine-independent selection, hence a reproducible release (module docstring)
        result = export(options)
    except BudgetInfeasibleError as exc:
        log.warning("release: profile %s is infeasible: %s", prof.name, exc)
        return {**head, **_infeasible(prof, ckpt_path, str(exc))}
    manifest = result.manifest
    parameter_bytes = manifest["costs"]["parameter_bytes"]["graph"]
    network_macs = manifest["costs"]["macs_per_second"]["network"]
    verdicts = budget_verdicts(prof, None, manifest["params"], network_macs, parameter_bytes)
    latency = None
    if bench:
        report = _bench(work / prof.name, prof, out / prof.name)
        verdicts = {name: dict(v) for name, v in report.budgets.items()}
        latency = {
            "statistic": report.statistic,
            "latency_ms": dict(report.latency_ms),
            "real_time_factor": report.real_time_factor,
            "throughput": dict(report.throughput),
            "input_shape": list(report.input_shape),
            "session": dict(report.session),
            "runs": report.protocol["runs"],
            "notes": list(report.notes),
        }
    missed = [name for name, v in verdicts.items() if v["passed"] is False]
    return {
        **head,
        "status": "missed" if missed else "ok",
        "directory": prof.name,
        "supernet": "causal" if streams(prof) else "offline",
        "io": manifest["model"]["io"],
        "stream": manifest.get("stream"),
        "subnet": manifest["subnet"],
        "params": manifest["params"],
        "precision": manifest["precision"],
        "parameter_bytes": parameter_bytes,
        "model_bytes": manifest["model"]["file_bytes"],
        "gate": _release_gate(manifest.get("gate")),
        "macs_per_second": dict(manifest["costs"]["macs_per_second"]),
        "macs_per_chunk": manifest["costs"].get("per_chunk"),
        "quality": _release_quality(manifest["quality"], manifest["subnet"]),
        "selection": {k: manifest["selection"][k] for k in ("binding", "fallback")},
        "budgets": verdicts,
        "missed": missed,
        "latency": latency,
        "parity_max_abs": manifest["parity"]["max_abs"],
        "notes": list(manifest["notes"]),
        # the model files' hashes (the manifest's own record): the same for the same inputs, unlike the
        # manifest's, which holds its date and timings (the top-level SHA256SUMS covers every file)
        "files": dict(manifest["hashes"]["files"]),
        "infeasible": None,
    }


def _bench(staged: Path, prof: Profile, final: Path) -> Any:
    """Benchmark the staged export under ``prof`` (a fresh process) and record it in its manifest."""
    from s2g_deploy.runtime.bench import bench_model, record_in_manifest

    report = bench_model(staged, prof, write_manifest=False)
    # the manifest names where the files will be, not the staging directory they were measured in
    report = replace(report, model=str(final / artifacts.MODEL_FILE), export_dir=str(final))
    record_in_manifest(staged, report)
    return report


def _release_gate(gate: dict | None) -> dict | None:
    """The release's record of a quantized export's quality gate: the drops, the SNR, the limit."""
    if gate is None:
        return None
    keep = ("passed", "limit_usdr_drop_db", "drop", "snr_db_vs_fp32", "workload", "data")
    return {k: gate[k] for k in keep}


def _infeasible(prof: Profile, ckpt_path: Path, reason: str) -> dict:
    """Which static budget binds and what the cheapest subnet costs against each one (bytes at the
    profile's precision)."""
    from s2g_deploy.budgets import STATIC_BUDGETS
    from s2g_deploy.search import search

    # the whole grid, unjudged, its bytes at this profile's precision
    candidates = search(ckpt_path, None, None, latency_model=None, precision=prof.runtime.precision).candidates
    least = {}
    for name in STATIC_BUDGETS:
        limit = getattr(prof.budgets, name)
        if limit is None:
            continue
        entry, cost = cheapest(candidates, name)
        least[name] = {"limit": limit, "subnet": str(entry.subnet), "cost": cost}
    alone = [name for name, c in least.items() if c["cost"] > c["limit"]]
    verdicts = budget_verdicts(prof, None, None, None)
    for name, c in least.items():  # judged on the cheapest subnet: what shows which budget binds
        verdicts[name].update(measured=c["cost"], passed=c["cost"] <= c["limit"], of=f"cheapest subnet {c['subnet']}")
    nothing = (
        *("directory", "subnet", "params", "parameter_bytes", "model_bytes", "gate", "macs_per_second"),
        *("macs_per_chunk", "quality", "selection"),
    )
    return {
        "status": "infeasible",
        **dict.fromkeys(nothing),  # the same keys as a built profile's entry, so readers need no special case
        "precision": prof.runtime.precision,
        "budgets": verdicts,
        "missed": [],
        "latency": None,
        "parity_max_abs": None,
        "notes": [],
        "files": None,
        "infeasible": {"reason": reason, "binding": alone or list(least), "cheapest": least},
        "supernet": "causal" if streams(prof) else "offline",
        "io": None,
        "stream": None,
    }


# --- the release document -----------------------------------------------------------------------------


def _document(ckpt_path: Path, meta: Any, grid: Any, entries: list[dict], bench: bool, allow: bool) -> dict:
    from s2g_deploy.environment import environment, package_versions

    by_status = {s: [e["profile"] for e in entries if e["status"] == s] for s in ("ok", "infeasible", "missed")}
    code = 0 if allow else 3 if by_status["infeasible"] else 4 if by_status["missed"] else 0
    return {
        "format": artifacts.RELEASE_FORMAT,
        "format_version": FORMAT_VERSION,
        "created_utc": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "supernet": _supernet_record(ckpt_path, meta, grid),
        "options": {
            "io": "waveform for chunk and offline profiles, stream (the causal supernet) for stream profiles",
            "bench": bench,
            "allow_infeasible": allow,
            "selection": "best quality within the static budgets (params, MACs per second); machine-independent",
        },
        "versions": {**package_versions(), "python": platform.python_version()},
        "platform": platform.platform(),
        "bench_environment": environment() if bench else None,
        "summary": {"profiles": len(entries), **by_status, "exit_code": code},
        "profiles": entries,
        "grid": _grid_record(grid),
    }


def _supernet_record(path: Path, meta: Any, grid: Any) -> dict:
    return {
        "checkpoint": str(path),
        "architecture": meta.architecture,
        "file_sha256": artifacts.sha256_file(path),
        "weights_sha256": meta.weights_sha256,
        "preset": (meta.training or {}).get("preset"),
        "quality_metric": grid.metric,
        "quality_data": _describe_data((meta.quality or {}).get("data")),
        "grid": [str(s) for s in meta.space.grid()],
    }


def _grid_record(grid: Any) -> list[dict]:
    front = {str(c.subnet) for c in grid.pareto}
    return [
        {
            "subnet": str(c.subnet),
            "params": c.params,
            "macs_per_second": c.macs_per_second,
            "quality": c.quality,
            "pareto": str(c.subnet) in front,
        }
        for c in grid.candidates
    ]


def _describe_data(data: Any) -> str | None:
    if not isinstance(data, Mapping):
        return None
    parts = [f"{data['kind']} data" if data.get("kind") else "data"]
    if data.get("split"):
        parts.append(f"{data['split']} split")
    if data.get("tracks") and data.get("seconds"):
        parts.append(f"{data['tracks']} tracks x {data['seconds']:g} s")
    return ", ".join(parts)


def _release_quality(quality: dict | None, subnet: str) -> dict | None:
    """The release's quality cell: the figure at the profile's workload, or why there is none."""
    if not quality:
        return None
    row = quality["subnets"].get(subnet)
    at = quality.get("workload", {}).get("label", "whole clip")
    if row is None:
        return {"metric": quality["metric"], "value": None, "workload": at, "note": quality.get("note")}
    return {"metric": quality["metric"], "value": row[quality["metric"]], "workload": at, **row}
