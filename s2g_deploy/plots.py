"""The release's figure: quality against MACs per second for every subnet, with each profile's choice.

Drawn from the release document alone (:mod:`s2g_deploy.release`), so the figure and ``release.json``
cannot disagree. The PNG is byte-stable for the same document and matplotlib version: no pyplot global
state (a bare ``Figure`` on the Agg canvas), a fixed size and DPI, matplotlib's bundled DejaVu font, and
no ``Software`` or date metadata in the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from s2g_deploy.units import format_size

SIZE_INCHES = (12.0, 6.5)
DPI = 120
# one colour and marker per profile, in the document's order (smallest MAC budget first)
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


def metric_label(metric: str | None) -> str:
    """Axis text for a quality metric name: ``usdr_db`` -> ``uSDR (dB)``."""
    if metric is None:
        return "quality (no quality table)"
    known = {"usdr_db": "uSDR (dB)", "sisdr_db": "SI-SDR (dB)", "sdr_db": "SDR (dB)"}
    if metric in known:
        return known[metric]
    return f"{metric.removesuffix('_db')} (dB)" if metric.endswith("_db") else metric


def pareto_png(document: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write the figure of release ``document`` (``release.json``'s content) to ``path`` as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = document["grid"]
    fig = Figure(figsize=SIZE_INCHES, dpi=DPI, layout="constrained")  # makes room for the legend outside
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    # subnets without a quality entry sit on the bottom edge (axes coordinates), so they still show
    edge = ax.get_xaxis_transform()
    causal = document.get("causal_grid") or []
    _draw_grid(ax, grid, edge)
    _label_subnets(ax, grid, edge)
    if causal:  # the stream profiles' supernet, beside the offline one
        _draw_grid(ax, causal, edge, colour=CAUSAL_COLOUR, what="causal subnet, streamed")
        _label_subnets(ax, causal, edge)
    handles, labels = ax.get_legend_handles_labels()  # the grid's entries; then one per profile
    grids = {"offline": {g["subnet"]: g for g in grid}, "causal": {g["subnet"]: g for g in causal}}
    for i, p in enumerate(document["profiles"]):
        handle = _draw_profile(ax, i, p, grids[p.get("supernet", "offline")], edge)
        handles.append(handle)
        labels.append(_legend_label(p))
    _finish_axes(ax, document, handles, labels)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


CAUSAL_COLOUR = "#c9a26b"


def _draw_grid(ax, grid: list, edge, colour: str = "#9a9a9a", what: str = "subnet of the grid") -> None:
    """Every subnet of the grid, and the Pareto front."""
    scored = [g for g in grid if g["quality"] is not None]
    ax.scatter(
        [g["macs_per_second"] for g in scored],
        [g["quality"] for g in scored],
        s=22,
        color=colour,
        zorder=2,
        label=f"{what} ({len(grid)})",
    )
    unscored = [g for g in grid if g["quality"] is None]
    if unscored:
        ax.scatter(
            [g["macs_per_second"] for g in unscored],
            [0.02] * len(unscored),
            transform=edge,
            marker="|",
            s=60,
            color=colour,
            zorder=2,
            label="subnet without a quality entry",
        )
    front = sorted((g for g in scored if g["pareto"]), key=lambda g: g["macs_per_second"])
    if front:
        ax.plot(
            [g["macs_per_second"] for g in front],
            [g["quality"] for g in front],
            color="#555555" if colour == "#9a9a9a" else colour,
            linewidth=1,
            linestyle="-",
            zorder=1,
            label="Pareto front" if colour == "#9a9a9a" else f"Pareto front ({what})",
        )


def _label_subnets(ax, grid: list, edge) -> None:
    """The subnet's name beside its point; above it where a neighbour would overlap."""
    qualities = [g["quality"] for g in grid if g["quality"] is not None] or [0.0]
    near_y = 0.03 * (max(qualities) - min(qualities) or 1.0)
    placed: list[tuple[float, float]] = []
    for g in sorted(grid, key=lambda g: g["macs_per_second"]):
        y, transform = (g["quality"], ax.transData) if g["quality"] is not None else (0.02, edge)
        x = math.log10(max(g["macs_per_second"], 1.0))
        # a neighbour closer than a twentieth of a decade at about the same height: this label goes above
        crowded = any(abs(x - px) < 0.05 and abs(y - py) < near_y for px, py in placed)
        placed.append((x, y))
        ax.annotate(
            g["subnet"],
            (g["macs_per_second"], y),
            xycoords=transform,
            xytext=(7, 5) if crowded else (7, -12),
            textcoords="offset points",
            fontsize=7,
            color="#666666",
        )


def _draw_profile(ax, i: int, p: Mapping[str, Any], by_subnet: Mapping[str, Any], edge) -> Any:
    """Profile ``i``'s MAC budget line and chosen subnet; returns its legend handle."""
    from matplotlib.lines import Line2D

    colour, marker = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
    budget = p["budgets"].get("max_macs_per_second")
    if budget is not None:
        ax.axvline(budget["limit"], color=colour, linestyle="--", linewidth=1.2, alpha=0.8, zorder=1)
        ax.annotate(  # the profile's name above the plot, where no point can hide it
            p["profile"],
            (budget["limit"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
            color=colour,
        )
    line = Line2D([], [], color=colour, linestyle="--", linewidth=1.2)
    chosen = by_subnet.get(p["subnet"]) if p["subnet"] else None
    if chosen is None:  # infeasible: only the budget line, and the legend says so
        return line
    y, transform = (chosen["quality"], ax.transData) if chosen["quality"] is not None else (0.02, edge)
    # later profiles draw smaller, so two profiles that chose the same subnet both stay visible
    point = ax.scatter(
        [chosen["macs_per_second"]],
        [y],
        transform=transform,
        s=max(40, 190 - 30 * i),
        marker=marker,
        facecolors="none",
        edgecolors=colour,
        linewidths=2,
        zorder=3 + i,
    )
    return (point, line) if budget is not None else point


def _finish_axes(ax, document: Mapping[str, Any], handles: list, labels: list) -> None:
    """Scales, ticks, limits, labels, title, grid lines and the legend."""
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tick(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    _pad_limits(ax, [g["macs_per_second"] for g in document["grid"]] + _budget_limits(document["profiles"]))
    ax.set_xlabel("network MACs per second of audio (log scale; K, M, G = 10^3, 10^6, 10^9)")
    ax.set_ylabel(f"quality: {metric_label(document['supernet']['quality_metric'])}, higher is better")
    supernet = document["supernet"]
    ax.set_title(
        f"Quality vs compute of every subnet, and each profile's choice\n"
        f"supernet {supernet['weights_sha256'][:12]} ({supernet.get('preset') or 'custom'}), "
        f"quality on {supernet.get('quality_data') or 'the checkpoint quality table'}",
        fontsize=10,
        pad=16,
    )
    ax.margins(y=0.12)  # room above the best subnets for the budget labels
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    ax.legend(
        handles,
        labels,
        handler_map={tuple: HandlerTuple(ndivide=None)},
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="profile: chosen subnet (budgets: dashed)",
        title_fontsize=8,
    )


def _legend_label(p: Mapping[str, Any]) -> str:
    limits = []
    for name, unit in (("max_macs_per_second", " MACs/s"), ("max_params", " params")):
        budget = p["budgets"].get(name)
        if budget is not None:
            limits.append(f"<= {format_size(budget['limit'])}{unit}")
    limit = f" ({', '.join(limits)})" if limits else ""
    if p["status"] == "infeasible":
        return f"{p['profile']}: infeasible{limit}"
    return f"{p['profile']}: {p['subnet']}{limit}"


def _tick(value: float) -> str:
    """Axis tick text in powers of 1000: 10M, 100M, 1G."""
    for power, suffix in ((12, "T"), (9, "G"), (6, "M"), (3, "K")):
        if value >= 10**power:
            return f"{value / 10**power:g}{suffix}"
    return f"{value:g}"


def _budget_limits(profiles) -> list[float]:
    return [p["budgets"]["max_macs_per_second"]["limit"] for p in profiles if "max_macs_per_second" in p["budgets"]]


def _pad_limits(ax, xs: list[float]) -> None:
    """Show every subnet and every budget line, with a margin of a fifth of a decade either side."""
    xs = [x for x in xs if x > 0]
    if xs:
        low, high = math.log10(min(xs)), math.log10(max(xs))
        ax.set_xlim(10 ** (low - 0.2), 10 ** (high + 0.2))
