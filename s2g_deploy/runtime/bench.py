"""``s2g bench``: measure an exported model the way a device profile runs it, and judge its budgets.

The measurement itself runs in a child process (:mod:`s2g_deploy.runtime.measure`); this module
decides what to run (the profile's session settings, workload and protocol, the model's sample rate
and I/O contract from its ``s2g.*`` metadata), turns the samples into statistics and budget verdicts,
and records them in the export directory's manifest.

Statistics are over the timed runs, in milliseconds per run (one run = ``batch`` streams of
``chunk_seconds`` each). Percentiles interpolate linearly between order statistics (numpy's default,
Hyndman-Fan type 7); ``std`` is the sample standard deviation (n - 1). The real-time factor is a
latency statistic divided by the audio one run holds (``chunk_seconds x batch``); throughput is audio
seconds processed per second of wall time at the mean latency.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from s2g_deploy.budgets import budget_verdicts
from s2g_deploy.errors import InputError
from s2g_deploy.profiles import Profile, load_profile
from s2g_deploy.runtime.compare import compare_torch
from s2g_deploy.runtime.measure import job_for, latency_statistics, measure
from s2g_deploy.runtime.session import SessionSettings

log = logging.getLogger(__name__)

_QUANTIZED_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM", "QLinearMatMul", "ConvInteger"}


@dataclass(frozen=True)
class ModelFacts:
    """What a benchmark needs from an exported model's ``s2g.*`` metadata."""

    path: Path
    export_dir: Path | None  # the export directory holding it, if any
    subnet: str | None
    io: str
    input_shape: tuple  # the declared shape, e.g. ("batch", "samples")
    sample_rate_hz: int
    hop_length: int
    params: int | None
    macs_per_second: float | None  # network MACs per second of audio
    quantized: bool
    bytes: int  # model file size (and external data, if any)
    precision: str = "fp32"  # as the export records it (s2g.precision), else read off the graph's ops
    stream: Mapping[str, Any] | None = None  # s2g.stream of a stream export: hop, delay, latency, states
    parameter_bytes: int | None = None  # the network's parameter bytes as stored (s2g.parameter_bytes)

    def input_for(self, chunk_seconds: float, batch: int) -> list[int]:
        """The input shape of one run: ``batch`` chunks of ``chunk_seconds`` at the model's rate."""
        samples = max(1, round(chunk_seconds * self.sample_rate_hz))
        if self.io in ("waveform", "stream"):  # a stream: one call (checked to be whole hops)
            return [batch, samples]
        return [batch, int(self.input_shape[1]), 1 + samples // self.hop_length, 2]  # centred STFT frames


def read_model(model: str | os.PathLike) -> ModelFacts:
    """Facts about ``model`` (an ``.onnx`` file or an export directory); raises :class:`InputError`."""
    import onnx

    from s2g_deploy.artifacts import MANIFEST, is_export_dir
    from s2g_deploy.separate import resolve_model

    path = resolve_model(model)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InputError(f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in ("s2g.sample_rate_hz", "s2g.io", "s2g.stft") if k not in props]
    if missing:
        raise InputError(f"{path}: not an s2g export (no {', '.join(missing)} metadata); export it with s2g export")
    io = json.loads(props["s2g.io"])
    macs = json.loads(props.get("s2g.macs_per_second", "{}")).get("network")
    parent = path.parent
    listed = (
        is_export_dir(parent) and json.loads((parent / MANIFEST).read_text()).get("model", {}).get("file") == path.name
    )
    size = path.stat().st_size + sum(f.stat().st_size for f in parent.glob(f"{path.name}.data"))
    quantized = any(n.op_type in _QUANTIZED_OPS for n in proto.graph.node)
    return ModelFacts(
        path=path,
        export_dir=parent if listed else None,
        subnet=props.get("s2g.subnet"),
        io=io["io"],
        input_shape=tuple(io["input"]["shape"]),
        sample_rate_hz=int(props["s2g.sample_rate_hz"]),
        hop_length=int(json.loads(props["s2g.stft"])["hop_length"]),
        params=int(props["s2g.params"]) if "s2g.params" in props else None,
        macs_per_second=float(macs) if macs is not None else None,
        quantized=quantized,
        bytes=size,
        precision=props.get("s2g.precision") or ("int8-dynamic" if quantized else "fp32"),
        stream=json.loads(props["s2g.stream"]) if io["io"] == "stream" and "s2g.stream" in props else None,
        parameter_bytes=int(props["s2g.parameter_bytes"]) if props.get("s2g.parameter_bytes", "").isdigit() else None,
    )


def check_workload(facts: ModelFacts, profile: Profile) -> int | None:
    """A stream export runs only a stream workload (and the reverse), in whole hops per call; returns
    the hops per call of a stream (None otherwise). :class:`InputError` (exit 2) names the fix."""
    mode = profile.workload.mode
    if (facts.io == "stream") != (mode == "stream"):
        if facts.io == "stream":
            raise InputError(
                f"{facts.path}: a stream export (states carried between calls) cannot run profile "
                f"{profile.name!r}'s {mode} workload; bench it with a stream profile (earbud, watch, phone) or "
                "export an offline supernet with --io waveform for this profile"
            )
        raise InputError(
            f"{facts.path}: a {facts.io} export cannot run profile {profile.name!r}'s stream workload; export "
            "a causal supernet with --io stream for it (s2g export --profile " + profile.name + ")"
        )
    if mode != "stream":
        return None
    from s2g_deploy.runtime.stream import hops_per_call

    what = f"profile {profile.name!r} workload.chunk_seconds"
    return hops_per_call(profile.workload.chunk_seconds, facts.sample_rate_hz, facts.hop_length, what)


@dataclass(frozen=True)
class BenchReport:
    """One benchmark of one model under one profile. Latencies in ms per run; memory and sizes in bytes."""

    model: str
    export_dir: str | None
    profile: str
    subnet: str | None
    io: str
    input_shape: tuple[int, ...]
    chunk_seconds: float
    batch: int
    session: Mapping[str, Any]  # SessionSettings.to_dict() and the providers the session used
    protocol: Mapping[str, Any]  # warm-up and timed runs asked for, runs done, seconds timed
    latency_ms: Mapping[str, float]  # first, mean, std, min, p50, p90, p99, max
    statistic: str  # the headline statistic (the profile's measurement.statistic)
    real_time_factor: float  # headline latency / audio per run
    throughput: Mapping[str, float]  # audio seconds per second, runs per second (at the mean)
    peak_rss_bytes: int  # peak resident memory of the measuring process
    model_bytes: int
    budgets: Mapping[str, Mapping[str, Any]]
    environment: Mapping[str, Any]
    samples_ms: tuple[float, ...] = field(repr=False)
    notes: tuple[str, ...] = ()
    compare: tuple[Mapping[str, Any], ...] = ()  # --compare torch rows
    precision: str = "fp32"  # the model's stored precision (the profile's is in the notes when it differs)
    deadline: Mapping[str, Any] = field(default_factory=dict)  # runs slower than the audio they hold
    stream: Mapping[str, Any] | None = None  # a stream: hops per call, delay and algorithmic latency

    @property
    def passed(self) -> bool:
        """Every budget judged and met (a budget the model cannot answer counts as not passed)."""
        return all(v["passed"] is True for v in self.budgets.values())

    def to_dict(self, samples: bool = True) -> dict:
        document = {
            "model": self.model,
            "export_dir": self.export_dir,
            "profile": self.profile,
            "subnet": self.subnet,
            "precision": self.precision,
            "io": self.io,
            "input_shape": list(self.input_shape),
            "chunk_seconds": self.chunk_seconds,
            "batch": self.batch,
            "session": dict(self.session),
            "protocol": dict(self.protocol),
            "latency_ms": dict(self.latency_ms),
            "statistic": self.statistic,
            "real_time_factor": self.real_time_factor,
            "throughput": dict(self.throughput),
            "peak_rss_bytes": self.peak_rss_bytes,
            "model_bytes": self.model_bytes,
            "budgets": {k: dict(v) for k, v in self.budgets.items()},
            "passed": self.passed,
            "environment": dict(self.environment),
            "notes": list(self.notes),
            "deadline": dict(self.deadline),
            "stream": dict(self.stream) if self.stream else None,
        }
        if self.compare:
            document["compare"] = [dict(row) for row in self.compare]
        if samples:
            document["samples_ms"] = list(self.samples_ms)
        return document


COMPARE = ("torch",)  # what ``compare`` may name: other implementations of the same subnet


def bench_model(
    model: str | os.PathLike,
    profile: Profile | str | os.PathLike,
    *,
    write_manifest: bool = True,
    compare: str | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> BenchReport:
    """Benchmark ``model`` (``.onnx`` or export directory) as ``profile`` runs it, in a child process.

    ``compare="torch"`` also measures the dense PyTorch subnet and the supernet at it
    (:mod:`s2g_deploy.runtime.compare`; ``checkpoint``: the supernet, default: found). With
    ``write_manifest`` and a model inside an export directory, the summary (without raw samples) goes
    into its ``manifest.json`` under ``bench.<profile>``, and ``SHA256SUMS`` is rewritten to match.
    Raises :class:`InputError` (exit 2) for a bad model or profile or a provider that is not installed.
    """
    if compare is not None and compare not in COMPARE:
        raise InputError(f"--compare must be 'torch', got {compare!r}")
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    facts = read_model(model)
    if compare and facts.io == "stream":
        raise InputError(
            f"{facts.path}: --compare torch times chunks on their own; a stream's torch counterpart (one call "
            "with its states carried) is not implemented: benchmark the stream export without --compare"
        )
    report = measure_model(facts, prof)
    if compare:
        report = with_compare(report, compare_torch(facts, prof, checkpoint))
    if write_manifest and facts.export_dir is not None:
        record_in_manifest(facts.export_dir, report)
    return report


def measure_model(facts: ModelFacts, profile: Profile) -> BenchReport:
    """Measure ``facts.path`` under ``profile`` in a fresh process; nothing is written."""
    from s2g_deploy.environment import environment, usable_cpus

    settings = SessionSettings.of(profile.runtime)
    notes = []
    cpus = usable_cpus()
    if settings.intra_op_threads > cpus:
        notes.append(
            f"profile {profile.name!r} asks for {settings.intra_op_threads} intra-op threads but this process "
            f"may use {cpus} CPUs: threads share cores, so latencies are pessimistic for the device"
        )
        log.warning("%s", notes[-1])
    if profile.runtime.precision != facts.precision:
        notes.append(
            f"profile {profile.name!r} runs {profile.runtime.precision}, but this model is {facts.precision}: "
            f"measured as given (export it with --precision {profile.runtime.precision})"
        )
        log.warning("%s", notes[-1])
    hops = check_workload(facts, profile)
    shape = facts.input_for(profile.workload.chunk_seconds, profile.workload.batch)
    job = job_for("onnx", facts.path, shape, profile)
    # the subnet, not the path: during export and release the file still sits in a staging directory
    what = f"subnet {facts.subnet}" if facts.subnet else facts.path.name
    log.info("measuring %s under profile %r (input %s)", what, profile.name, "x".join(map(str, shape)))
    result = measure(job)
    return _report(facts, profile, job, result, environment(), tuple(notes), hops)


def _report(
    facts: ModelFacts, profile: Profile, job: dict, result: dict, env: dict, notes: tuple, hops: int | None = None
) -> BenchReport:
    stats = latency_statistics(result["first_ms"], result["samples_ms"])
    audio_s = profile.workload.chunk_seconds * profile.workload.batch
    statistic = profile.measurement.statistic
    session = {**job["session"], "providers_used": result["providers"]}
    env = {**env, "usable_cpus_measuring": result["usable_cpus"], "threads": session}
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS")
    return BenchReport(
        model=str(facts.path),
        export_dir=str(facts.export_dir) if facts.export_dir else None,
        profile=profile.name,
        subnet=facts.subnet,
        io=facts.io,
        input_shape=tuple(job["input_shape"]),
        chunk_seconds=profile.workload.chunk_seconds,
        batch=profile.workload.batch,
        session=session,
        protocol={
            "warmup_runs": job["warmup_runs"],
            "timed_runs": job["timed_runs"],
            "min_duration_s": job["min_duration_s"],
            "runs": len(result["samples_ms"]),
            "timed_seconds": math.fsum(result["samples_ms"]) / 1000,
            "input": f"seeded noise (seed {job['seed']}), float32",
            "process": "a fresh child process per measurement",
        },
        latency_ms=stats,
        statistic=statistic,
        real_time_factor=stats[statistic] / 1000 / audio_s,
        throughput={
            "audio_seconds_per_second": audio_s / (stats["mean"] / 1000),
            "runs_per_second": 1000 / stats["mean"],
        },
        peak_rss_bytes=result["peak_rss_bytes"],
        model_bytes=facts.bytes,
        budgets=budget_verdicts(profile, stats, facts.params, facts.macs_per_second, facts.parameter_bytes),
        environment=env,
        samples_ms=tuple(result["samples_ms"]),
        notes=notes,
        precision=facts.precision,
        deadline=deadline_misses(result["samples_ms"], 1000 * profile.workload.chunk_seconds),
        stream=_stream_facts(facts, hops),
    )


def deadline_misses(samples_ms: Sequence[float], deadline_ms: float) -> dict:
    """Timed runs that took longer than ``deadline_ms`` (the audio one run holds: a real-time device
    would have dropped or repeated audio), with their count and share."""
    misses = sum(1 for s in samples_ms if s > deadline_ms)
    return {
        "deadline_ms": deadline_ms,
        "misses": misses,
        "runs": len(samples_ms),
        "miss_rate": misses / len(samples_ms) if samples_ms else None,
        "worst_ms": max(samples_ms) if samples_ms else None,
    }


def _stream_facts(facts: ModelFacts, hops: int | None) -> dict | None:
    """A stream's call facts; ``hops``: its hops per call, as :func:`check_workload` found them."""
    if hops is None:
        return None
    sr = facts.sample_rate_hz
    delay = int((facts.stream or {}).get("delay_samples", 0))
    call = hops * facts.hop_length
    return {
        "hops_per_call": hops,
        "hop_ms": 1000 * facts.hop_length / sr,
        "call_ms": 1000 * call / sr,
        "delay_samples": delay,
        "algorithmic_latency_ms": 1000 * (delay + call) / sr,
        "states": "carried from call to call, zeros at the first call",
    }


def record_in_manifest(export_dir: str | os.PathLike, report: BenchReport, **extra: Any) -> dict:
    """Write ``report`` (no raw samples) into the manifest under ``bench.<profile>``, plus ``extra`` keys."""
    from s2g_deploy.artifacts import update_manifest

    def update(manifest: dict) -> None:
        manifest.setdefault("bench", {})[report.profile] = report.to_dict(samples=False)
        manifest.update(extra)

    return update_manifest(export_dir, update)


def with_compare(report: BenchReport, rows: Sequence[Mapping[str, Any]]) -> BenchReport:
    return replace(report, compare=tuple(rows))
