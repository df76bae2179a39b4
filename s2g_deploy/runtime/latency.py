"""The per-device latency model: a subnet's latency under a profile on this machine, from a few measured.

Model, per run of the profile's workload (``batch`` chunks of ``chunk_seconds``), in ms::

    latency = a + b * depth + c * block_MMACs + e * other_MMACs

``a`` is the fixed cost of a run (the session call, the in-graph STFT/iSTFT, the many small per-band
ops of band split and mask estimation); ``b`` the fixed cost of a block (its two BLSTMs step through
the frames and the bands one step at a time, each step a kernel call whatever its width); ``c`` and
``e`` are ms per million MACs inside the blocks (LSTMs, projections) and outside them (band split,
mask estimation). MACs come from the cost model, per run. The fit minimises squared *relative* error
(what MAPE measures) with every coefficient non-negative (a feature whose coefficient comes out
negative is dropped and the rest refitted), so the model stays physical and extrapolates sanely.

Calibration exports a handful of subnets (the grid's corners and two interior points), measures each
under the profile exactly as ``s2g bench`` does (:mod:`s2g_deploy.runtime.measure`), fits, and reports
the mean absolute percentage error on other subnets it measured but did not fit on. The model is
cached (:mod:`s2g_deploy.costcache` layout, ``<cache dir>/latency/``) under a key holding the profile's
content, this machine's fingerprint (CPU model, usable CPUs, onnxruntime, torch and s2g versions),
the supernet's weights hash, the I/O contract, the opset and the exported graph's format: a change in
any of them is a miss.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from s2g_deploy import costcache
from s2g_deploy.cost import SubnetCost
from s2g_deploy.errors import InputError
from s2g_deploy.export import GRAPH_FORMAT
from s2g_deploy.profiles import Profile
from s2g_deploy.subnet import Subnet

log = logging.getLogger(__name__)

MODEL_VERSION = 1
FEATURES = ("intercept", "depth", "block_mmacs", "other_mmacs")
UNITS = {
    "intercept": "ms per run",
    "depth": "ms per block",
    "block_mmacs": "ms per million MACs in the blocks",
    "other_mmacs": "ms per million MACs outside the blocks",
}
HELD_OUT = 6  # subnets measured only to test the fit
# Calibration times each subnet with the profile's protocol, but stops after this many seconds of timed
# runs (or the protocol's minimum duration, if longer) once it has 20 runs: a server profile's batch
# of 8 s of audio can take a second per run, and 12 subnets x 50 runs would take many minutes.
CAP_S = 8.0


@dataclass(frozen=True)
class Point:
    """One measured subnet: its features (per run) and its latency statistic in ms."""

    subnet: str
    features: Mapping[str, float]
    latency_ms: float
    source: str = "calibration"  # or "export" (a measurement made after an export, folded in)

    def to_dict(self) -> dict:
        return {
            "subnet": self.subnet,
            "features": dict(self.features),
            "latency_ms": self.latency_ms,
            "source": self.source,
        }


def features(cost: SubnetCost, frames: int, batch: int) -> dict[str, float]:
    """The model's features of one subnet for one run of ``batch`` chunks of ``frames`` STFT frames."""
    blocks = cost.by_module.get("blocks", 0)
    return {
        "intercept": 1.0,
        "depth": float(cost.subnet.depth),
        "block_mmacs": blocks * frames * batch / 1e6,
        "other_mmacs": (cost.macs_per_frame - blocks) * frames * batch / 1e6,
    }


def fit(points: Sequence[Point]) -> dict[str, float]:
    """Non-negative coefficients minimising the squared relative error of ``points``."""
    import numpy as np

    if not points:
        raise ValueError("no measured points to fit")
    y = np.array([p.latency_ms for p in points])
    active = list(FEATURES)
    while True:
        x = np.array([[p.features[n] for n in active] for p in points]) / y[:, None]
        coef = np.linalg.lstsq(x, np.ones(len(points)), rcond=None)[0]  # (x . coef - y) / y -> 0
        if coef.min() >= 0 or len(active) == 1:
            break
        del active[int(coef.argmin())]
    found = dict(zip(active, (max(float(c), 0.0) for c in coef)))
    return {n: found.get(n, 0.0) for n in FEATURES}


def predict(coefficients: Mapping[str, float], feats: Mapping[str, float]) -> float:
    return sum(coefficients[n] * feats[n] for n in FEATURES)


MAPE_WARNING = 0.15  # a held-out error above this is reported as a warning every time


def mape(coefficients: Mapping[str, float], points: Sequence[Point]) -> float | None:
    """Mean absolute percentage error (a fraction, 0.05 = 5%) on ``points``; None without points."""
    if not points:
        return None
    return sum(abs(predict(coefficients, p.features) - p.latency_ms) / p.latency_ms for p in points) / len(points)


@dataclass(frozen=True)
class LatencyModel:
    """A fitted latency model for one profile, machine, supernet and I/O contract."""

    profile: str
    statistic: str  # the latency statistic modelled (the profile's budget statistic)
    frames: int  # STFT frames per chunk
    batch: int
    coefficients: Mapping[str, float]
    fitted_on: tuple[Point, ...]
    held_out: tuple[Point, ...]
    mape_held_out: float | None  # measured at calibration, on held_out
    key: Mapping[str, Any] = field(repr=False)
    calibrated_utc: str = ""

    def predict(self, cost: SubnetCost) -> float:
        """Predicted latency statistic in ms per run for the subnet ``cost`` describes."""
        return predict(self.coefficients, features(cost, self.frames, self.batch))

    def with_measurement(self, cost: SubnetCost, latency_ms: float) -> LatencyModel:
        """The model refitted with one more measured subnet (e.g. an export that missed its budget)."""
        point = Point(str(cost.subnet), features(cost, self.frames, self.batch), latency_ms, "export")
        points = (*(p for p in self.fitted_on if p.subnet != point.subnet), point)
        return replace(self, fitted_on=points, coefficients=fit(points))

    def to_dict(self) -> dict:
        return {
            "profile": self.profile,
            "statistic": self.statistic,
            "frames": self.frames,
            "batch": self.batch,
            "form": "latency_ms = " + " + ".join(f"{n}*[{n}]" for n in FEATURES),
            "coefficients": dict(self.coefficients),
            "units": UNITS,
            "fitted_on": [p.to_dict() for p in self.fitted_on],
            "held_out": [p.to_dict() for p in self.held_out],
            "mape_held_out": self.mape_held_out,
            "calibrated_utc": self.calibrated_utc,
            "key": dict(self.key),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyModel:
        def points(rows):
            return tuple(Point(r["subnet"], dict(r["features"]), float(r["latency_ms"]), r["source"]) for r in rows)

        return cls(
            profile=data["profile"],
            statistic=data["statistic"],
            frames=int(data["frames"]),
            batch=int(data["batch"]),
            coefficients={n: float(data["coefficients"][n]) for n in FEATURES},
            fitted_on=points(data["fitted_on"]),
            held_out=points(data["held_out"]),
            mape_held_out=data["mape_held_out"],
            key=data["key"],
            calibrated_utc=data["calibrated_utc"],
        )


# --- the cache ---------------------------------------------------------------------------------------


def modelled_statistic(profile: Profile) -> str:
    return profile.budgets.latency_statistic or profile.measurement.statistic


def machine_fingerprint() -> dict[str, Any]:
    """What makes latencies of this machine comparable: CPU, usable CPUs and the code that runs the model."""
    from s2g_deploy.environment import cpu_model, usable_cpus, versions

    # torch: its exporter shapes the graph that is timed
    return {"cpu_model": cpu_model(), "usable_cpus": usable_cpus(), **versions("s2g_deploy", "onnxruntime", "torch")}


def cache_key(profile: Profile, weights_sha256: str, io: str) -> dict[str, Any]:
    content = {k: v for k, v in profile.to_dict().items() if k != "source"}
    return {
        "latency_model": MODEL_VERSION,
        "graph_format": GRAPH_FORMAT,
        "profile_sha256": hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest(),
        "profile": profile.name,
        "machine": machine_fingerprint(),
        "supernet_weights_sha256": weights_sha256,
        "io": io,
        "opset": profile.runtime.opset,
    }


def cached_model(checkpoint: str | os.PathLike | None, profile: Profile, io: str = "waveform") -> LatencyModel | None:
    """The cached model for this profile, machine and supernet, or None (no torch or onnxruntime import)."""
    from s2g_deploy.bundled import resolve_checkpoint

    summary = costcache.read_summary(resolve_checkpoint(checkpoint))
    document = costcache.load(cache_key(profile, summary.weights_sha256, io), kind="latency")
    if document is None:
        return None
    try:
        return LatencyModel.from_dict(document)
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring a malformed latency model in the cache (%s); recalibrating", exc)
        return None


def store_model(model: LatencyModel) -> Path | None:
    return costcache.store(model.key, model.to_dict(), kind="latency")


def cache_path(model: LatencyModel) -> Path:
    return costcache.entry_path(model.key, kind="latency")


# --- calibration -------------------------------------------------------------------------------------


def calibration_subnets(grid: Sequence[Subnet], held_out: int = HELD_OUT) -> tuple[list[Subnet], list[Subnet]]:
    """(fit, held out): the grid's four corners and two interior points; up to ``held_out`` others, spread."""
    depths = sorted({s.depth for s in grid})
    widths = sorted({s.width for s in grid})
    picks = [(depths[i], widths[j]) for i in (0, -1) for j in (0, -1)]
    picks += [
        (depths[len(depths) // 2], widths[len(widths) // 2]),
        (depths[len(depths) // 3], widths[len(widths) // 3]),
    ]
    fitted = [s for s in grid if (s.depth, s.width) in picks]
    rest = [s for s in grid if s not in fitted]
    count = min(held_out, len(rest))
    return fitted, [rest[i * len(rest) // count] for i in range(count)] if count else []


def calibrate(
    checkpoint: str | os.PathLike | None,
    profile: Profile,
    io: str = "waveform",
    held_out: int = HELD_OUT,
    repeats: int = 1,
    supernet: Any = None,
) -> LatencyModel:
    """Measure a handful of subnets under ``profile``, fit, test on held-out subnets, and cache the model.

    ``repeats`` > 1 measures every subnet that many times (round robin, each in a fresh process) and
    keeps the median of its statistic: tail statistics (p99, max) of one run vary from run to run.
    ``supernet``: the checkpoint's model, if the caller has already loaded it.
    """
    if repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {repeats}")
    from s2g_deploy.bundled import resolve_checkpoint
    from s2g_deploy.cost import subnet_costs

    path = resolve_checkpoint(checkpoint)
    costs = subnet_costs(path)
    fit_set, test_set = calibration_subnets([e.subnet for e in costs.entries], held_out)
    frames = costs.chunk_frames(profile.workload.chunk_seconds)
    batch = profile.workload.batch
    measured = _measure_subnets(path, [*fit_set, *test_set], profile, io, repeats, supernet)
    statistic = modelled_statistic(profile)

    def points(subnets):
        return tuple(
            Point(str(s), features(costs.get(s), frames, batch), statistics.median(m[statistic] for m in measured[s]))
            for s in subnets
        )

    fitted, tested = points(fit_set), points(test_set)
    coefficients = fit(fitted)
    model = LatencyModel(
        profile=profile.name,
        statistic=statistic,
        frames=frames,
        batch=batch,
        coefficients=coefficients,
        fitted_on=fitted,
        held_out=tested,
        mape_held_out=mape(coefficients, tested),
        key=cache_key(profile, costs.weights_sha256, io),
        calibrated_utc=_dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
    )
    if model.mape_held_out is not None and model.mape_held_out > MAPE_WARNING:
        log.warning(
            "the latency model for profile %r misses its held-out subnets by %.1f%% (MAPE, above %.0f%%): a loaded "
            "machine or unstable timings; predictions are rough, re-run `s2g calibrate` on an idle machine",
            profile.name,
            100 * model.mape_held_out,
            100 * MAPE_WARNING,
        )
    store_model(model)
    return model


def _measure_subnets(
    path: Path, subnets: list[Subnet], profile: Profile, io: str, repeats: int, supernet: Any = None
) -> dict:
    """Export each subnet to a temporary ONNX file (all first, so torch is idle), then measure each alone,
    ``repeats`` rounds; returns subnet -> one statistics dict per round."""
    from s2g_deploy.checkpoint import load_checkpoint
    from s2g_deploy.export.onnx import simplify, single_threaded, to_onnx
    from s2g_deploy.runtime.bench import latency_statistics
    from s2g_deploy.runtime.measure import job_for, measure
    from s2g_deploy.slicing import slice_subnet

    supernet = supernet if supernet is not None else load_checkpoint(path).model
    config = supernet.config
    samples = max(1, round(profile.workload.chunk_seconds * config.sample_rate_hz))
    batch = profile.workload.batch
    shape = [batch, samples] if io != "spectrogram" else [batch, config.n_bins, config.frames(samples), 2]
    cap_s = max(CAP_S, profile.measurement.min_duration_s)
    results: dict[Subnet, list[dict]] = {s: [] for s in subnets}
    with tempfile.TemporaryDirectory(prefix="s2g-calibrate-") as tmp, single_threaded():
        files = {}
        for i, subnet in enumerate(subnets, 1):
            log.info("exporting %s for calibration (%d of %d)", subnet, i, len(subnets))
            dense = slice_subnet(supernet, subnet).eval()
            simplified, _ = simplify(
                to_onnx(dense, io, profile.runtime.opset, config.sample_rate_hz + 5), io, dense.config
            )
            files[subnet] = Path(tmp) / f"{subnet}.onnx"
            files[subnet].write_bytes(_at_precision(simplified, profile, config))
        jobs = [item for _ in range(repeats) for item in files.items()]
        for i, (subnet, file) in enumerate(jobs, 1):
            log.info("measuring %s under profile %r (%d of %d)", subnet, profile.name, i, len(jobs))
            result = measure(job_for("onnx", file, shape, profile, cap_s=cap_s))
            results[subnet].append(latency_statistics(result["first_ms"], result["samples_ms"]))
    return results


def _at_precision(simplified: bytes, profile: Profile, config: Any) -> bytes:
    """The file timed for calibration at the profile's precision, as its exports will be (an int8 model's
    timing differs from its fp32 one); no quality gate: only its speed is measured here."""
    if profile.runtime.precision != "int8-dynamic":
        return simplified
    from s2g_deploy.export.compact import compute_basis_in_graph
    from s2g_deploy.export.quantize import quantize
    from s2g_deploy.precision import quantization_settings

    return compute_basis_in_graph(quantize(simplified, quantization_settings()).model, config.n_fft)[0]


# --- use in selection --------------------------------------------------------------------------------


def predicted_violations(model: LatencyModel, profile: Profile, cost: SubnetCost) -> tuple[float, tuple[str, ...]]:
    """The predicted latency (ms per run) of ``cost``'s subnet and the measured budgets it is predicted to miss.

    "Predicted to fit" allows for the model's own error: the prediction raised by its held-out MAPE must
    fit, so a subnet the model places just under the limit is not chosen over a safer one (and then
    missed when measured).
    """
    predicted = model.predict(cost)
    cautious = predicted * (1 + (model.mape_held_out or 0.0))
    b = profile.budgets
    misses = []  # the measured budgets (s2g_deploy.budgets.MEASURED_BUDGETS) predicted to be missed
    if b.latency_ms is not None and cautious > b.latency_ms:
        misses.append("latency_ms")
    audio_s = profile.workload.chunk_seconds * profile.workload.batch
    if b.max_real_time_factor is not None and cautious / 1000 / audio_s > b.max_real_time_factor:
        misses.append("max_real_time_factor")
    return predicted, tuple(misses)


def summary(model: LatencyModel) -> dict:
    """What a search result or manifest says about the model it used."""
    return {
        "statistic": model.statistic,
        "coefficients": dict(model.coefficients),
        "mape_held_out": model.mape_held_out,
        "held_out": [p.subnet for p in model.held_out],
        "fitted_on": [p.subnet for p in model.fitted_on],
        "calibrated_utc": model.calibrated_utc,
        "machine": dict(model.key["machine"]),
        "cache_file": str(cache_path(model)),
    }
