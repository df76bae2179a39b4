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
        f"`{s['weights_sha256']}`"
        + (
            f"; stream profiles stream the causal supernet `{Path(c['checkpoint']).name}` (preset "
            f"{c['preset'] or 'custom'}), weights sha256 `{c['weights_sha256']}`"
            if (c := document.get("causal_supernet"))
            else ""
        )
        + f". Quality: {metric} on {s['quality_data'] or 'the checkpoint quality table'}. "
        "MACs are network MACs per second of audio (the in-graph STFT/iSTFT is listed in each manifest). "
        + (
            "Latency measured on the release machine (not the device), under each profile's runtime and workload."
            if bench
            else "Latency not measured (`--no-bench`): run `s2g bench DIR --device PROFILE` on the device."
        ),
        "",
        f"| profile | status | subnet | params | precision | model file | {metric} drop vs fp32 | MACs/s | "
        f"{metric} (at) | latency (ms per run) | RTF | budgets |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in document["profiles"]:
        q, lat, rtf = p["quality"], p["latency"], p["budgets"].get("max_real_time_factor")
        rtf = rtf["measured"] if rtf and rtf["measured"] is not None else lat and lat["real_time_factor"]
        cells = [
            p["profile"],
            p["status"],
            p["subnet"] or "-",
            format_size(p["params"]) if p["params"] else "-",
            p.get("precision") or "-",
            f"{format_size(p['model_bytes'])}B" if p.get("model_bytes") else "-",
            drop_text(p.get("gate")),
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
        st = p.get("stream")
        lines.append(
            f"- **{p['profile']}** -> `{p['directory']}/`: "
            + (
                f"a stream of the causal subnet {p['subnet']} ({st['hops_per_call']} hop(s) of {st['hop_ms']:g} ms "
                f"per call, algorithmic latency {st['algorithmic_latency_ms']:g} ms), "
                if st
                else f"subnet {p['subnet']}, "
            )
            + f"stored as {p.get('precision', 'fp32')} "
            f"({p.get('parameter_bytes') or 0:,} bytes of parameters, model file {p.get('model_bytes') or 0:,} "
            f"bytes), binding budget: {binding}; parity max abs {p['parity_max_abs']:.1e}."
            + (_gate_line(p["gate"]) if p.get("gate") else "")
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


def _gate_line(gate: Mapping[str, Any]) -> str:
    d, data = gate["drop"], gate["data"]
    return (
        f" Quality gate: uSDR drop {d['usdr_db_worst_track']:.3f} dB on the worst of {data['tracks']} held-out tracks "
        f"({d['usdr_db']:.3f} dB mean, cSDR {d.get('csdr_db', float('nan')):.3f} dB) at "
        f"{gate['workload']['label']}, {data['kind']}."
    )


def drop_text(gate: Mapping[str, Any] | None) -> str:
    """A quantized profile's quality drop against its own fp32 model (worst gate track), or '-' for fp32."""
    if not gate:
        return "-"
    d = gate["drop"]
    return (
        f"{d['usdr_db_worst_track']:.3f} dB (limit {gate['limit_usdr_drop_db']:g}; SNR {gate['snr_db_vs_fp32']:.1f} dB)"
    )


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
        "max_model_bytes": "bytes",
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
