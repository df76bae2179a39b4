"""Budgeted subnet search: the best subnet of a supernet's grid that meets every static budget.

Static budgets are the ones a subnet's cost decides before it runs: parameters, network MACs per
second of audio and the bytes of the network's parameters at the precision the export will store
(:func:`s2g_deploy.precision.parameter_bytes`: the profile's ``runtime.precision`` unless told another).
A profile's budgets and explicit ones combine, the tighter of each winning. Among the
subnets that meet them, the one with the best measured quality in the checkpoint's quality table wins;
ties go to fewer MACs, then fewer parameters, then the shallower subnet. Without a quality table the
largest feasible subnet (most MACs) is chosen, and the result says it is a fallback. The search is
exhaustive over the grid (at most a few hundred subnets), so it is exact and deterministic.

Latency and real-time factor are measured budgets. When this machine has a calibrated latency model
for the profile (``s2g calibrate``, :mod:`s2g_deploy.runtime.latency`), each subnet's latency is
*predicted* and subnets predicted to miss are excluded like any other budget violation; without one,
they are carried in the result, and ``s2g export`` measures them after exporting.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from s2g_deploy.budgets import (
    COST_NAMES,
    MEASURED_BUDGETS,
    UNITS,
    Budgets,
    cheapest,
    combine,
    has_measured_budget,
    violations,
)
from s2g_deploy.cost import CostTable, subnet_costs
from s2g_deploy.costcache import read_summary
from s2g_deploy.errors import BudgetInfeasibleError, InputError, SubnetError
from s2g_deploy.profiles import Profile
from s2g_deploy.subnet import ElasticSpace, Subnet
from s2g_deploy.units import format_size


@dataclass(frozen=True)
class Candidate:
    """One subnet with its costs, its quality (None when the table has none) and its verdict."""

    subnet: Subnet
    params: int
    macs_per_second: float
    macs_per_chunk: int | None  # one chunk of the profile's chunk_seconds, one stream; None without a profile
    quality: float | None  # the quality table's metric, e.g. uSDR in dB
    metrics: Mapping[str, float] | None  # the subnet's whole row of the quality table
    violates: tuple[str, ...]  # names of the budgets it exceeds (latency ones: predicted to exceed)
    predicted_latency_ms: float | None = None  # per run of the profile's workload, by the latency model
    model_bytes: int | None = None  # the network's parameters at the search's precision, bytes

    @property
    def feasible(self) -> bool:
        return not self.violates

    def to_dict(self) -> dict:
        return {
            "subnet": str(self.subnet),
            "params": self.params,
            "model_bytes": self.model_bytes,
            "macs_per_second": self.macs_per_second,
            "macs_per_chunk": self.macs_per_chunk,
            "quality": self.quality,
            "metrics": dict(self.metrics) if self.metrics is not None else None,
            "feasible": self.feasible,
            "violates": list(self.violates),
            "predicted_latency_ms": self.predicted_latency_ms,
        }


@dataclass(frozen=True)
class SearchResult:
    """The chosen subnet, why, and what else was possible."""

    checkpoint: str
    weights_sha256: str
    profile: Profile | None
    budgets: Budgets  # combined: profile and explicit, the tighter of each
    budget_sources: Mapping[str, str]  # budget name -> "profile 'phone'" or "explicit"
    metric: str | None  # what quality means, e.g. "usdr_db"; None without a quality table
    chosen: Candidate
    fallback: bool  # True: no quality table for the feasible subnets; the largest feasible was chosen
    binding: tuple[str, ...]  # budgets that keep a better subnet out (empty: the best subnet overall won)
    pareto: tuple[Candidate, ...]  # quality vs MACs front of the whole grid, fewest MACs first
    candidates: tuple[Candidate, ...]  # the whole grid, in grid order
    costs: CostTable
    notes: tuple[str, ...] = field(default=())
    latency_model: Any = None  # the runtime.latency.LatencyModel that predicted latencies, if any
    precision: str = "fp32"  # what model_bytes are counted at

    @property
    def chunk_seconds(self) -> float | None:
        return self.profile.workload.chunk_seconds if self.profile else None

    def to_dict(self) -> dict:
        profile = self.profile
        measured = None
        if profile is not None:
            b = profile.budgets
            measured = {
                "latency_ms": b.latency_ms,
                "latency_statistic": b.latency_statistic,
                "max_real_time_factor": b.max_real_time_factor,
            }
        return {
            "checkpoint": self.checkpoint,
            "weights_sha256": self.weights_sha256,
            "profile": profile.name if profile else None,
            "chunk_seconds": self.chunk_seconds,
            "workload": profile.workload.mode if profile else None,
            "precision": self.precision,
            "budgets": {
                name: {"value": value, "source": self.budget_sources.get(name)} if value is not None else None
                for name, value in self.budgets.to_dict().items()
            },
            "measured_budgets": measured,
            "metric": self.metric,
            "chosen": self.chosen.to_dict(),
            "fallback": self.fallback,
            "binding": list(self.binding),
            "pareto": [c.to_dict() for c in self.pareto],
            "subnets": [c.to_dict() for c in self.candidates],
            "cost_model": {
                "counted_seconds": self.costs.counted_seconds,
                "uncounted": list(self.costs.uncounted),
                "not_network": list(self.costs.not_network),
                "versions": dict(self.costs.versions),
            },
            "notes": list(self.notes),
            "latency_model": _latency_summary(self.latency_model),
        }


def search(
    checkpoint_path: str | os.PathLike | None = None,
    budgets: Budgets | None = None,
    profile: Profile | None = None,
    latency_model: Any = "cached",
    precision: str | None = None,
) -> SearchResult:
    """The best subnet of the supernet at ``checkpoint_path`` (default: the bundled one) under the budgets.

    ``latency_model``: ``"cached"`` predicts latency budgets with this machine's cached model for the
    profile if there is one; a ``LatencyModel`` uses that one; None judges static budgets only.
    ``precision``: what model bytes are counted at (default: the profile's ``runtime.precision``, else fp32).
    Raises :class:`BudgetInfeasibleError` (exit code 3) when no subnet meets them, naming the binding
    budget and what the cheapest subnet costs.
    """
    from s2g_deploy.bundled import resolve_checkpoint
    from s2g_deploy.profiles import check_architecture, streams

    path = resolve_checkpoint(checkpoint_path, causal=streams(profile))
    summary = read_summary(path)
    check_architecture(profile, summary.architecture, str(path))
    costs = subnet_costs(path)
    combined, sources = combine(budgets or Budgets(), profile)
    chunk = profile.workload.chunk_seconds if profile else None
    quality, quality_note = _quality_at_workload(
        summary.quality, profile.workload.quality_chunk_seconds if profile else None
    )
    if streams(profile):
        quality_note = "quality ranked as the stream computes it: the causal supernet's whole-clip figures (parity)"
    metric, rows = quality_rows(quality, summary.space, str(summary.path))
    precision = precision or (profile.runtime.precision if profile else "fp32")
    model_bytes = _model_bytes(path, costs, precision)

    candidates = _candidates(costs, metric, rows, combined, chunk, model_bytes)
    notes = [quality_note] if quality_note else []
    model = _latency_model(latency_model, path, profile)
    if model is not None:
        candidates = _with_predictions(candidates, model, profile, costs)
        mape = f"{100 * model.mape_held_out:.1f}%" if model.mape_held_out is not None else "not measured"
        notes.append(
            f"latency predicted by this machine's latency model for profile {profile.name!r} ({model.statistic}, "
            f"MAPE {mape} on held-out subnets), not measured: s2g export measures it"
        )
    feasible = [c for c in candidates if c.feasible]
    if not feasible:
        raise BudgetInfeasibleError(_infeasible_message(candidates, combined, sources, profile, precision))
    chosen, fallback, better = _choose(candidates, feasible, metric, notes)
    if profile is not None and model is None:
        notes += _measured_budget_notes(profile)
    return SearchResult(
        checkpoint=str(summary.path),
        weights_sha256=summary.weights_sha256,
        profile=profile,
        budgets=combined,
        budget_sources=sources,
        metric=metric,
        chosen=chosen,
        fallback=fallback,
        binding=_binding(better),
        pareto=pareto_front(candidates),
        candidates=candidates,
        costs=costs,
        notes=tuple(notes),
        latency_model=model,
        precision=precision,
    )


def _model_bytes(path, costs: CostTable, precision: str) -> dict[Subnet, int]:
    """Every subnet's parameter bytes at ``precision`` (closed form, from the checkpoint's header)."""
    from s2g_deploy.checkpoint import read_meta
    from s2g_deploy.precision import check_precision, parameter_bytes

    check_precision(precision, "--precision")
    config = read_meta(path).config
    return {
        e.subnet: parameter_bytes(config.with_size(feature_dim=e.subnet.width, num_blocks=e.subnet.depth), precision)
        for e in costs.entries
    }


def _candidates(
    costs: CostTable, metric: str | None, rows: Mapping, budgets: Budgets, chunk: float | None, model_bytes: Mapping
) -> tuple:
    """Every subnet of the grid with its costs, quality and static-budget verdict, in grid order."""
    return tuple(
        Candidate(
            subnet=e.subnet,
            params=e.params,
            macs_per_second=e.macs_per_second,
            macs_per_chunk=costs.macs_per_chunk(e.subnet, chunk) if chunk is not None else None,
            quality=rows[e.subnet][metric] if e.subnet in rows else None,
            metrics=rows.get(e.subnet),
            violates=violations(e.params, e.macs_per_second, budgets, model_bytes[e.subnet]),
            model_bytes=model_bytes[e.subnet],
        )
        for e in costs.entries
    )


def _choose(candidates: tuple, feasible: list, metric: str | None, notes: list[str]) -> tuple[Candidate, bool, list]:
    """(chosen, fallback, the candidates better than it): best quality, else the largest; notes appended."""
    ranked = [c for c in feasible if c.quality is not None]
    if ranked:
        chosen = min(ranked, key=_by_quality)
        better = [c for c in candidates if c.quality is not None and _by_quality(c) < _by_quality(chosen)]
        unranked = [str(c.subnet) for c in feasible if c.quality is None]
        if unranked:
            notes.append(f"feasible subnets without a quality entry, not ranked: {', '.join(unranked)}")
        return chosen, False, better
    chosen = min(feasible, key=_by_size)
    why = "has no quality table" if metric is None else "has no quality entry for any feasible subnet"
    notes.append(f"fallback: the checkpoint {why}; chose the largest feasible subnet (most MACs)")
    return chosen, True, [c for c in candidates if _by_size(c) < _by_size(chosen)]


def _measured_budget_notes(profile: Profile) -> list[str]:
    """What search says about a profile's measured budgets when it has no latency model to predict them."""
    b, chunk, notes = profile.budgets, profile.workload.chunk_seconds, []
    if b.latency_ms is not None:
        notes.append(
            f"profile {profile.name!r}: latency {b.latency_statistic} <= {b.latency_ms:g} ms per "
            f"{chunk:g} s chunk is a measured budget: s2g export measures it; "
            f"`s2g calibrate --device {profile.name}` lets search predict it"
        )
    if b.max_real_time_factor is not None:
        notes.append(f"profile {profile.name!r}: real-time factor <= {b.max_real_time_factor:g} is a measured budget")
    return notes


def _latency_model(choice: Any, path, profile: Profile | None) -> Any:
    """The latency model to predict with: None without a profile with latency budgets or a cached model."""
    if choice is None or profile is None:
        return None
    if not has_measured_budget(profile.budgets):
        return None
    if choice != "cached":
        return choice
    from s2g_deploy.profiles import streams
    from s2g_deploy.runtime.latency import cached_model

    return cached_model(path, profile, "stream" if streams(profile) else "waveform")


def _with_predictions(candidates: tuple[Candidate, ...], model: Any, profile: Profile, costs: CostTable) -> tuple:
    from s2g_deploy.runtime.latency import predicted_violations

    out = []
    for c in candidates:
        predicted, misses = predicted_violations(model, profile, costs.get(c.subnet))
        out.append(replace(c, predicted_latency_ms=predicted, violates=c.violates + misses))
    return tuple(out)


def _latency_summary(model: Any) -> dict | None:
    if model is None:
        return None
    from s2g_deploy.runtime.latency import summary

    return summary(model)


def _binding(better: list[Candidate]) -> tuple[str, ...]:
    """The budgets that keep a better subnet out: those that alone exclude one, else those that do jointly."""
    alone = {c.violates[0] for c in better if len(c.violates) == 1}
    jointly = {name for c in better for name in c.violates}
    return tuple(name for name in UNITS if name in (alone or jointly))


def preference(c: Candidate) -> tuple:
    """Sort key, best first: subnets with a quality entry by quality (as search ranks them), then the rest
    largest first (search's fallback order)."""
    return (0, *_by_quality(c)) if c.quality is not None else (1, *_by_size(c))


def _by_quality(c: Candidate) -> tuple:
    """Best first: highest quality, then fewest MACs, fewest params, shallowest, narrowest."""
    return (-c.quality, c.macs_per_second, c.params, c.subnet.depth, c.subnet.width)


def _by_size(c: Candidate) -> tuple:
    """Largest first: most MACs, then most params, then the shallower subnet (for determinism)."""
    return (-c.macs_per_second, -c.params, c.subnet.depth, c.subnet.width)


def _infeasible_message(
    candidates: tuple[Candidate, ...],
    budgets: Budgets,
    sources: Mapping[str, str],
    profile: Profile | None = None,
    precision: str = "fp32",
) -> str:
    """Name the budget no subnet meets and what the cheapest subnet costs against it."""
    static_ok = [c for c in candidates if not set(c.violates) - set(MEASURED_BUDGETS)]
    if static_ok and profile is not None:  # only the predicted latency excludes them
        fastest = min(static_ok, key=lambda c: c.predicted_latency_ms)
        b = profile.budgets
        return (
            f"no subnet is predicted to meet profile {profile.name!r}'s latency budgets on this machine "
            f"({b.latency_statistic} <= {b.latency_ms} ms per run, real-time factor <= {b.max_real_time_factor}): "
            f"the fastest within the static budgets, {fastest.subnet}, is predicted at "
            f"{fastest.predicted_latency_ms:.2f} ms, plus the model's error as margin (s2g bench measures an export)"
        )
    parts = []
    for name, limit in budgets.to_dict().items():
        if limit is None:
            continue
        least, cost = cheapest(candidates, name)
        if cost > limit:
            parts.append(
                f"{name} = {format_size(limit)} ({sources[name]}) is below the cheapest subnet, "
                f"{least.subnet}, at {format_size(cost)} {COST_NAMES[name]}"
                + (f" at {precision}" if name == "max_model_bytes" else "")
            )
    if parts:
        return "no subnet meets the budget: " + "; ".join(parts)
    # Each budget alone can be met, but not together.
    set_ = [name for name, limit in budgets.to_dict().items() if limit is not None]
    limits = " and ".join(f"{n} = {format_size(getattr(budgets, n))} ({sources[n]})" for n in set_)
    least = []
    for name in set_:
        c, cost = cheapest(candidates, name)
        others = ", ".join(f"{format_size(_cost_of(c, o))} {COST_NAMES[o]}" for o in set_ if o != name)
        least.append(f"the cheapest by {COST_NAMES[name]}, {c.subnet}, needs {others}")
    return f"no subnet meets {limits} together: " + "; ".join(least)


def _cost_of(c: Candidate, name: str) -> float:
    return {"max_params": c.params, "max_macs_per_second": c.macs_per_second, "max_model_bytes": c.model_bytes}[name]


def pareto_front(candidates: tuple[Candidate, ...] | list[Candidate]) -> tuple[Candidate, ...]:
    """Subnets no other subnet beats on both quality (higher) and MACs (fewer), fewest MACs first.

    Subnets without a quality entry are left out; the front is empty without a quality table.
    """
    scored = sorted((c for c in candidates if c.quality is not None), key=lambda c: (c.macs_per_second, -c.quality))
    front: list[Candidate] = []
    for c in scored:
        if not front or c.quality > front[-1].quality:
            front.append(c)
    return tuple(front)


def quality_rows(
    quality: Mapping[str, Any] | None, space: ElasticSpace, source: str
) -> tuple[str | None, dict[Subnet, dict[str, float]]]:
    """The quality table's metric name and its rows by subnet; raises :class:`InputError` if malformed.

    Expected form: ``{"metric": "usdr_db", "subnets": {"4x32": {"usdr_db": 9.1, ...}, ...}, ...}``.
    """
    if quality is None:
        return None, {}

    def bad(why: str) -> InputError:
        return InputError(f"{source}: malformed quality table: {why}")

    if not isinstance(quality, Mapping):
        raise bad("not a mapping")
    metric = quality.get("metric")
    subnets = quality.get("subnets")
    if not isinstance(metric, str) or not metric:
        raise bad("no 'metric' name")
    if not isinstance(subnets, Mapping):
        raise bad("no 'subnets' mapping")
    rows = {}
    for key, row in subnets.items():
        if row is None:  # not evaluated
            continue
        try:
            subnet = space.check(Subnet.parse(key))
        except SubnetError as exc:
            raise bad(f"subnet {key!r}: {exc}") from None
        if not isinstance(row, Mapping) or metric not in row:
            raise bad(f"subnet {key!r} has no {metric!r} value")
        values = {}
        for name, value in row.items():
            if value is None and name != metric:  # e.g. cSDR of a split whose references are all silent
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise bad(f"subnet {key!r}: {name} = {value!r} is not a finite number")
            values[str(name)] = float(value)
        rows[subnet] = values
    return metric, rows


def _quality_at_workload(quality: Mapping[str, Any] | None, chunk: float | None) -> tuple[Any, str | None]:
    """The table to rank by: the one measured at the profile's chunk length, else whole-clip with a note."""
    from s2g_deploy.quality import table_at, workload_label

    if not quality or chunk is None:
        return quality, None
    at = table_at(quality, chunk)
    if at is not None:
        return {**quality, **at}, f"quality ranked as measured at the profile's workload ({workload_label(chunk)})"
    return quality, (
        f"quality unmeasured at the profile's workload ({workload_label(chunk)}): ranked by whole-clip quality, "
        f"which does not hold there (s2g evaluate --chunk-seconds {chunk:g} measures it)"
    )
