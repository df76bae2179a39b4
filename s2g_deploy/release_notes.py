"""``RELEASE.md``: a release document (``release.json``'s content) as a table a person reads.

Built from the document alone, so the two cannot disagree; no dates in it, so the same inputs give the
same text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from s2g_deploy.artifacts import RELEASE, SHA256SUMS
from s2g_deploy.units import format_size

NOTES = "RELEASE.md"
FIGURE = "pareto.png"


def markdown(document: Mapping[str, Any]) -> str:
    """``RELEASE.md``: one table line per profile, then what binds, notes and how to check the files."""

    s = document["supernet"]
    metric = s["quality_metric"] or "quality"
    bench = document["options"]["bench"]
    lines = [
        f"# s2g release: {len(document['profiles'])} device profiles",
        "",
        f"Supernet `{Path(s['checkpoint']).name}` (preset {s['preset'] or 'custom'}), weights sha256 "
        f"`{s['weights_sha256']}`. Quality: {metric} on {s['quality_data'] or 'the checkpoint quality table'}. "
        "MACs are network MACs per second of audio (the in-graph STFT/iSTFT is listed in each manifest). "
        + (
            "Latency measured on the release machine (not the device), under each profile's runtime and workload."
            if bench
            else "Latency not measured (`--no-bench`): run `s2g bench DIR --device PROFILE` on the device."
        ),
        "",
        f"| profile | status | subnet | params | MACs/s | {metric} (at) | latency (ms per run) | RTF | budgets |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in document["profiles"]:
        q, lat, rtf = p["quality"], p["latency"], p["budgets"].get("max_real_time_factor")
        rtf = rtf["measured"] if rtf and rtf["measured"] is not None else lat and lat["real_time_factor"]
        cells = [
            p["profile"],
            p["status"],
            p["subnet"] or "-",
            format_size(p["params"]) if p["params"] else "-",
            format_size(p["macs_per_second"]["network"]) if p["macs_per_second"] else "-",
            quality_text(q),
            latency_text(p),
            f"{rtf:.3f}" if rtf else "-",
            _verdict_text(p["budgets"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Per profile", ""]
    for p in document["profiles"]:
        if p["status"] == "infeasible":
            lines.append(f"- **{p['profile']}: infeasible.** {p['infeasible']['reason']}.")
            continue
        binding = ", ".join(p["selection"]["binding"]) or "none (the best subnet overall fits)"
        lines.append(
            f"- **{p['profile']}** -> `{p['directory']}/`: subnet {p['subnet']}, binding budget: {binding}; "
            f"parity max abs {p['parity_max_abs']:.1e}."
            + (f" Missed on this machine: {', '.join(p['missed'])}." if p["missed"] else "")
        )
        lines += [f"  - note: {n}" for n in [*p["notes"], *((p["latency"] or {}).get("notes") or [])]]
    versions = ", ".join(f"{k} {v}" for k, v in document["versions"].items())
    lines += [
        "",
        "## Files",
        "",
        f"`{RELEASE}` holds every number above (and the whole grid); `{FIGURE}` plots quality against MACs per "
        "second for every subnet with each profile's choice; each profile directory holds `model.onnx`, "
        "`dense.safetensors`, `manifest.json` and `model_card.md`. Check everything with "
        f"`sha256sum -c {SHA256SUMS}` here, or `s2g verify .` (checksums, and each ONNX against its dense model).",
        "",
        f"Built with {versions}.",
        "",
    ]
    return "\n".join(lines)


def latency_text(p: Mapping[str, Any]) -> str:
    """A profile entry's latency: at its latency budget's statistic, with the limit, else the headline one."""
    lat, budget = p["latency"], p["budgets"].get("latency_ms")
    if lat is None:
        return "not measured"
    statistic = budget["statistic"] if budget else lat["statistic"]
    text = f"{statistic} {lat['latency_ms'][statistic]:.2f}"
    return f"{text} (limit {budget['limit']:g})" if budget else text


def _verdict_text(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    marks = {True: "ok", False: "MISSED", None: "not measured"}
    short = {
        "max_params": "params",
        "max_macs_per_second": "MACs",
        "latency_ms": "latency",
        "max_real_time_factor": "RTF",
    }
    return ", ".join(f"{short[name]} {marks[v['passed']]}" for name, v in verdicts.items())


def quality_text(q: Mapping[str, Any] | None) -> str:
    """A release table's quality cell: the value and the workload it was measured at, or "unmeasured at"."""
    if not q:
        return "-"
    if q["value"] is None:
        return f"unmeasured at {q['workload']}"
    return f"{q['value']:.2f} ({q['workload']})"
