"""Latency-aware export: predict, export, measure; on a miss, learn from it and try the next subnet.

A latency budget only means something once the exported file has been measured where it will run
(GUIDE section 5: "predicted 200 ms, measured 270 ms"). So ``s2g export --profile P`` with latency
budgets: (1) loads this machine's latency model for P, calibrating it first if there is none;
(2) among the subnets that meet the static budgets, picks the best-quality one predicted to fit;
(3) exports it into the staging directory and measures the staged ``model.onnx`` in a fresh process,
exactly as ``s2g bench`` does; (4) on a pass, records predicted and measured latency in the manifest
and commits; on a miss, discards the staging, refits the model with the measurement and goes back to
(2) without the subnets already tried. After :data:`MAX_ATTEMPTS` misses it fails with exit code 4,
naming the closest miss's measured numbers; nothing is written. When no subnet is predicted to fit,
the one predicted fastest is still tried: a prediction is not a measurement.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s2g_deploy.errors import InputError, VerificationError
from s2g_deploy.profiles import Profile

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
MEASURED_BUDGETS = ("latency_ms", "max_real_time_factor")


def has_latency_budget(profile: Profile) -> bool:
    return profile.budgets.latency_ms is not None or profile.budgets.max_real_time_factor is not None


class _Missed(Exception):
    """A staged export measured over its latency budgets (internal: unwinds the staging directory)."""

    def __init__(self, report: Any):
        super().__init__("missed")
        self.report = report


def next_candidate(candidates, model, profile: Profile, costs, tried: set) -> tuple[Any, float] | None:
    """The best untried candidate predicted to fit, else the one predicted fastest; with its prediction."""
    from s2g_deploy.runtime.latency import predicted_violations
    from s2g_deploy.search import preference

    scored = [(c, *predicted_violations(model, profile, costs.get(c.subnet))) for c in candidates]
    scored = [s for s in scored if s[0].subnet not in tried]
    if not scored:
        return None
    fits = [(c, ms) for c, ms, misses in scored if not misses]
    if fits:
        return min(fits, key=lambda s: preference(s[0]))
    c, ms, _ = min(scored, key=lambda s: (s[1], preference(s[0])))
    return c, ms


def latency_aware_export(
    export_one: Callable[[tuple, Callable], Any],
    checkpoint: str | os.PathLike | None,
    budgets: Any,
    profile: Profile,
    *,
    io: str,
    out: str | os.PathLike,
    overwrite: bool,
):
    """Run the loop above; ``export_one((subnet, selection), before_commit)`` is one staged export."""
    from dataclasses import replace

    from s2g_deploy.artifacts import check_target
    from s2g_deploy.bundled import resolve_checkpoint
    from s2g_deploy.export.onnx import IO_MODES
    from s2g_deploy.export.pipeline import selection_record
    from s2g_deploy.runtime.latency import load_or_calibrate, store_model, summary
    from s2g_deploy.search import search

    # the cheap refusals first: calibration measures for a minute
    if io not in IO_MODES:
        raise InputError(f"--io must be one of {', '.join(IO_MODES)}, got {io!r}")
    check_target(out, overwrite)
    path = resolve_checkpoint(checkpoint)
    result = search(path, budgets, profile, latency_model=None)  # static budgets; exit 3 if none fits them
    model, calibrated = load_or_calibrate(path, profile, io)
    feasible = [c for c in result.candidates if c.feasible]
    attempts: list[dict] = []
    tried: set = set()
    while len(attempts) < MAX_ATTEMPTS:
        nxt = next_candidate(feasible, model, profile, result.costs, tried)
        if nxt is None:
            break
        candidate, predicted = nxt
        tried.add(candidate.subnet)
        candidate = replace(candidate, predicted_latency_ms=predicted)
        record = {
            **selection_record(result, profile, candidate),
            "method": "search + latency model, measured after export",
            "latency_model": {**summary(model), "calibrated_during_this_export": calibrated},
        }
        log.info("exporting %s (predicted %s %.2f ms per run)", candidate.subnet, model.statistic, predicted)
        check = _measure_before_commit(profile, model.statistic, candidate.subnet, predicted, attempts)
        try:
            return export_one((candidate.subnet, record), check)
        except _Missed as miss:
            measured = miss.report.latency_ms[model.statistic]
            log.warning(
                "%s measured %s %.2f ms (predicted %.2f ms): over the profile's budgets; refitting and trying the next",
                candidate.subnet,
                model.statistic,
                measured,
                predicted,
            )
            model = model.with_measurement(result.costs.get(candidate.subnet), measured)
            store_model(model)
    raise VerificationError(_all_missed(profile, model.statistic, attempts))


def _measure_before_commit(profile: Profile, statistic: str, subnet, predicted: float, attempts: list) -> Callable:
    from s2g_deploy.runtime.bench import measure_model, read_model

    def check(work: Path, final: Path) -> dict:
        report = measure_model(read_model(work), profile)
        verdicts = {k: dict(v) for k, v in report.budgets.items() if k in MEASURED_BUDGETS}
        passed = all(v["passed"] for v in verdicts.values())
        attempts.append(
            {
                "subnet": str(subnet),
                "predicted_ms": predicted,
                "measured_ms": report.latency_ms[statistic],
                "statistic": statistic,
                "budgets": verdicts,
                "passed": passed,
            }
        )
        if not passed:
            raise _Missed(report)
        bench = {**report.to_dict(samples=False), "model": str(final / "model.onnx"), "export_dir": str(final)}
        b = profile.budgets
        return {
            "latency": {
                "profile": profile.name,
                "statistic": statistic,
                "limit_ms": b.latency_ms,
                "max_real_time_factor": b.max_real_time_factor,
                "predicted_ms": predicted,
                "measured_ms": report.latency_ms[statistic],
                "passed": True,
                "attempts": list(attempts),
                "measured_in": "a fresh process, the profile's runtime, workload and protocol (as s2g bench)",
            },
            "bench": {profile.name: bench},
        }

    return check


def _all_missed(profile: Profile, statistic: str, attempts: list[dict]) -> str:
    b = profile.budgets

    def overshoot(a: dict) -> float:
        return max(v["measured"] / v["limit"] for v in a["budgets"].values())

    closest = min(attempts, key=overshoot)
    measured = "; ".join(
        f"{k} {v['measured']:.3f} > {v['limit']:g}" for k, v in closest["budgets"].items() if not v["passed"]
    )
    tried = ", ".join(f"{a['subnet']} ({a['measured_ms']:.2f} ms)" for a in attempts)
    return (
        f"no subnet met the latency budgets of profile {profile.name!r} when measured ({statistic} <= "
        f"{b.latency_ms} ms per run, real-time factor <= {b.max_real_time_factor}); closest miss {closest['subnet']}: "
        "measured "
        f"{measured} (predicted {closest['predicted_ms']:.2f} ms); tried {tried}; nothing was written"
    )
