"""``s2g export`` from the top: choose a subnet, then export it. Never the other way up.

Choosing is search under the static budgets (:mod:`s2g_deploy.search`) and, for a profile with latency
budgets, the latency loop below; exporting is :mod:`s2g_deploy.export.pipeline`'s stages, called with
an already chosen subnet and the checkpoint loaded once.

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
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from s2g_deploy.budgets import MEASURED_BUDGETS, has_measured_budget
from s2g_deploy.errors import InputError, VerificationError
from s2g_deploy.export import pipeline
from s2g_deploy.export.onnx import single_threaded
from s2g_deploy.export.pipeline import Choice, ExportJob, ExportOptions, ExportResult

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


def export(options: ExportOptions, measure: Callable[[Path, Any], Any] | None = None) -> ExportResult:
    """Choose the subnet ``options`` ask for, then export it (see ``api.export``).

    ``measure(model_path, profile)``: how a staged model is timed for a profile's latency budgets
    (default: :func:`measure_staged`, as ``s2g bench`` does); returns a report with ``latency_ms`` and
    ``budgets`` verdicts.
    """
    with single_threaded():
        profile = pipeline.load_profile(options.profile)
        measured = options.measure_latency and options.subnet is None and profile is not None
        if measured and has_measured_budget(profile.budgets):
            return _export_measured(pipeline.validate(options, profile), measure or measure_staged)
        job = pipeline.validate(options, profile, _unverified(profile, options.measure_latency))
        choice = choose(job)
        ckpt = pipeline.load(job)
        with pipeline.stage(job, ckpt, choice) as staged:
            return staged.commit()


def _unverified(profile: Any, measure_latency: bool) -> tuple[str, ...]:
    if profile is None or not has_measured_budget(profile.budgets):
        return ()
    why = "--no-measure-latency" if not measure_latency else "an explicit --subnet"
    return (
        f"latency budgets of profile {profile.name!r} UNVERIFIED: not measured ({why}); "
        f"run `s2g bench DIR --device {profile.name}` on the device",
    )


# --- choose --------------------------------------------------------------------------------------------


def choose(job: ExportJob) -> Choice:
    """The subnet of a dense checkpoint, the explicit one, or the best within the static budgets."""
    if job.meta.kind == "dense":
        return Choice(pipeline.dense_subnet(job.meta), {"method": "dense checkpoint"})
    if job.subnet is not None:
        return Choice(job.subnet, {"method": "explicit"})
    t = time.perf_counter()
    result = _search(job)
    job.timings["search"] = time.perf_counter() - t
    return Choice(result.chosen.subnet, selection_record(result, job.profile))


def _search(job: ExportJob) -> Any:
    from s2g_deploy.search import search

    log.info("searching for the best subnet within the budgets")
    # latency budgets: the latency loop measures them; static budgets only here
    return search(job.checkpoint, job.options.budgets, job.profile, latency_model=None, precision=job.precision)


def selection_record(result: Any, prof: Any, chosen: Any = None) -> dict:
    """The manifest's ``selection``: how ``chosen`` (default: the search's own choice) was found."""
    chosen = chosen or result.chosen
    return {
        "method": "search",
        "budgets": result.budgets.to_dict(),  # profile and explicit combined, the tighter of each
        "budget_sources": dict(result.budget_sources),
        "profile": getattr(prof, "name", None),
        "metric": result.metric,
        "chosen": chosen.to_dict(),
        "fallback": result.fallback,
        "binding": list(result.binding),
        "notes": list(result.notes),
    }


# --- choose by measuring: predict, export, measure, retry -------------------------------------------------


class _Missed(Exception):
    """A staged export measured over its latency budgets (internal: unwinds the staging directory)."""

    def __init__(self, measured_ms: float):
        super().__init__("missed")
        self.measured_ms = measured_ms


def next_candidate(candidates, model, profile, costs, tried: set) -> tuple[Any, float] | None:
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


def measure_staged(model: Path, profile: Any) -> Any:
    """Time the staged ``model`` under ``profile`` in a fresh process, exactly as ``s2g bench`` does."""
    from s2g_deploy.runtime.bench import measure_model, read_model

    return measure_model(read_model(model), profile)


def _latency_model(job: ExportJob, ckpt: Any) -> tuple[Any, bool]:
    """This machine's latency model for the job's profile, calibrated now only if the options allow it."""
    from s2g_deploy.runtime.latency import cached_model, calibrate

    model = cached_model(job.checkpoint, job.profile, job.io)
    if model is not None:
        return model, False
    name = job.profile.name
    if not job.options.calibrate:
        raise InputError(
            f"profile {name!r} has latency budgets and this machine has no latency model for it: run "
            f"`s2g calibrate --device {name}` (or pass calibrate=True to calibrate now), or export the static "
            "choice with measure_latency=False (its latency budgets are then recorded as unverified)"
        )
    log.warning("calibrating the latency model for profile %r on this machine (once; cached)", name)
    return calibrate(job.checkpoint, job.profile, job.io, supernet=ckpt.model), True


def _export_measured(job: ExportJob, measure: Callable[[Path, Any], Any]) -> ExportResult:
    """The loop of the module docstring."""
    from s2g_deploy.runtime.latency import store_model, summary

    profile = job.profile
    t = time.perf_counter()
    result = _search(job)  # static budgets; exit 3 if none fits them
    job.timings["search"] = time.perf_counter() - t
    ckpt = pipeline.load(job)
    model, calibrated = _latency_model(job, ckpt)
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
        try:
            with pipeline.stage(job, ckpt, Choice(candidate.subnet, record)) as staged:
                return staged.commit(_measure(staged, measure, model.statistic, predicted, attempts))
        except _Missed as miss:
            log.warning(
                "%s measured %s %.2f ms (predicted %.2f ms): over the profile's budgets; refitting and trying the next",
                candidate.subnet,
                model.statistic,
                miss.measured_ms,
                predicted,
            )
            model = model.with_measurement(result.costs.get(candidate.subnet), miss.measured_ms)
            store_model(model)
    raise VerificationError(_all_missed(profile, model.statistic, attempts))


def _measure(staged: pipeline.Staged, measure: Callable, statistic: str, predicted: float, attempts: list) -> dict:
    """Measure the staged model; the manifest's ``latency`` and ``bench`` keys, or :class:`_Missed` (which
    discards the staging)."""
    profile, final = staged.job.profile, staged.job.out
    report = measure(staged.work, profile)
    verdicts = {k: dict(v) for k, v in report.budgets.items() if k in MEASURED_BUDGETS}
    passed = all(v["passed"] for v in verdicts.values())
    measured = report.latency_ms[statistic]
    attempts.append(
        {
            "subnet": str(staged.subnet),
            "predicted_ms": predicted,
            "measured_ms": measured,
            "statistic": statistic,
            "budgets": verdicts,
            "passed": passed,
        }
    )
    if not passed:
        raise _Missed(measured)
    bench = {**report.to_dict(samples=False), "model": str(final / pipeline.MODEL_FILE), "export_dir": str(final)}
    b = profile.budgets
    return {
        "latency": {
            "profile": profile.name,
            "statistic": statistic,
            "limit_ms": b.latency_ms,
            "max_real_time_factor": b.max_real_time_factor,
            "predicted_ms": predicted,
            "measured_ms": measured,
            "passed": True,
            "attempts": list(attempts),
            "measured_in": "a fresh process, the profile's runtime, workload and protocol (as s2g bench)",
        },
        "bench": {profile.name: bench},
    }


def _all_missed(profile: Any, statistic: str, attempts: list[dict]) -> str:
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
