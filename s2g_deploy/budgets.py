"""Budgets: what a subnet must meet, how budgets combine, which ones a subnet violates, verdicts, units.

Two kinds. **Static** budgets (parameters, network MACs per second of audio, bytes of the network's
parameters at the stored precision) are decided by a subnet's
cost before it runs: search judges them exactly. **Measured** budgets (latency in ms per run at a
statistic, real-time factor) are properties of a model running on a device: a latency model can
predict them, only a measurement decides them. A profile's budgets and explicit ones combine, the
tighter of each winning. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from s2g_deploy.errors import InputError

# budget name -> the unit its limit and verdict are in
STATIC_BUDGETS = {
    "max_params": "params",
    "max_macs_per_second": "network MACs per second of audio",
    "max_model_bytes": "bytes of the network's parameters at the stored precision",
}
MEASURED_BUDGETS = {"latency_ms": "ms per run", "max_real_time_factor": "processing time / audio time"}
UNITS = {**STATIC_BUDGETS, **MEASURED_BUDGETS}
# what a static budget limits, as messages name a subnet's cost ("1x8, at 16.8M MACs per second of audio")
COST_NAMES = {"max_params": "params", "max_macs_per_second": "MACs per second of audio", "max_model_bytes": "bytes"}
_COST: dict[str, Callable[[Any], float]] = {
    "max_params": lambda c: c.params,
    "max_macs_per_second": lambda c: c.macs_per_second,
    "max_model_bytes": lambda c: c.model_bytes,
}


@dataclass(frozen=True)
class Budgets:
    """Static budgets; None means no limit. MACs are network MACs per second of audio; model bytes are the
    network's parameters at the precision the export stores (:func:`s2g_deploy.precision.parameter_bytes`)."""

    max_params: int | None = None
    max_macs_per_second: float | None = None
    max_model_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in STATIC_BUDGETS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0 or not math.isfinite(value)):
                raise InputError(f"budget {name} must be a positive number, got {value!r}")

    @classmethod
    def from_sizes(cls, macs: Any, params: Any, names: tuple[str, str] = ("--budget-macs", "--budget-params")):
        """Budgets from sizes as users write them (``"300M"``); ``names`` are the options errors name."""
        from s2g_deploy.units import parse_size

        return cls(
            max_params=parse_size(params, names[1]) if params is not None else None,
            max_macs_per_second=parse_size(macs, names[0]) if macs is not None else None,
        )

    def intersect(self, other: Budgets) -> Budgets:
        """The tighter of each budget."""
        return Budgets(*(_tighter(getattr(self, n), getattr(other, n)) for n in STATIC_BUDGETS))

    @classmethod
    def of_profile(cls, profile: Any) -> Budgets:
        b = profile.budgets
        return cls(b.max_params, b.max_macs_per_second, b.max_model_bytes)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in STATIC_BUDGETS}


def _tighter(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def combine(budgets: Budgets, profile: Any) -> tuple[Budgets, dict[str, str]]:
    """Explicit ``budgets`` and ``profile``'s (may be None), the tighter of each; with where each came from."""
    sources = {name: "explicit" for name in STATIC_BUDGETS if getattr(budgets, name) is not None}
    if profile is None:
        return budgets, sources
    from_profile = Budgets.of_profile(profile)
    for name in STATIC_BUDGETS:
        mine, theirs = getattr(budgets, name), getattr(from_profile, name)
        if theirs is not None and (mine is None or theirs < mine):
            sources[name] = f"profile {profile.name!r}"
    return budgets.intersect(from_profile), sources


def has_measured_budget(profile_budgets: Any) -> bool:
    """Whether a profile's budgets hold a latency or real-time-factor limit."""
    return profile_budgets.latency_ms is not None or profile_budgets.max_real_time_factor is not None


def violations(
    params: int, macs_per_second: float, budgets: Budgets, model_bytes: int | None = None
) -> tuple[str, ...]:
    """The static budgets a subnet of these costs exceeds."""
    costs = {"max_params": params, "max_macs_per_second": macs_per_second, "max_model_bytes": model_bytes}
    return tuple(n for n in STATIC_BUDGETS if getattr(budgets, n) is not None and costs[n] > getattr(budgets, n))


def cheapest(subnets: Iterable[Any], name: str) -> tuple[Any, float]:
    """The subnet (anything with ``.subnet``, ``.params``, ``.macs_per_second``, ``.model_bytes``) cheapest in
    the static budget ``name``, ties to the shallower, then narrower; with its cost."""
    cost_of = _COST[name]
    best = min(subnets, key=lambda c: (cost_of(c), c.subnet.depth, c.subnet.width))
    return best, cost_of(best)


def budget_verdicts(
    profile: Any,
    latency_ms: Mapping[str, float] | None,
    params: int | None,
    macs_per_second: float | None,
    model_bytes: int | None = None,
) -> dict[str, dict]:
    """``{budget: {"limit", "measured", "passed", "unit"[, "statistic"]}}`` for each budget the profile sets.

    ``latency_ms``: the measured statistics, or None for static verdicts only (latency budgets then get
    ``measured`` and ``passed`` None). The real-time factor is judged at the latency budget's statistic
    (else the headline one); a static budget with no figure given gets ``measured`` and ``passed`` None.
    """
    b = profile.budgets
    latency = rtf = rtf_statistic = None
    if latency_ms is not None:
        audio_s = profile.workload.chunk_seconds * profile.workload.batch
        rtf_statistic = b.latency_statistic or profile.measurement.statistic
        latency = latency_ms.get(b.latency_statistic or "")
        rtf = latency_ms[rtf_statistic] / 1000 / audio_s
    measured = {
        "max_params": (params, None),
        "max_macs_per_second": (macs_per_second, None),
        "max_model_bytes": (model_bytes, None),
        "latency_ms": (latency, b.latency_statistic),
        "max_real_time_factor": (rtf, rtf_statistic),
    }
    verdicts = {}
    for name, unit in UNITS.items():
        limit = getattr(b, name)
        if limit is None:
            continue
        value, statistic = measured[name]
        verdicts[name] = {
            "limit": limit,
            "measured": value,
            "passed": None if value is None else bool(value <= limit),
            "unit": unit,
            **({"statistic": statistic} if statistic else {}),
        }
    return verdicts
