"""The streaming profiles as they run: per-call latency, deadline misses, latency and quality, per profile.

For each stream profile (earbud, watch, phone) its static choice of the bundled causal supernet is
exported with ``s2g export``'s code (at the profile's precision, latency budgets not measured during the
export) and benchmarked with ``s2g bench``'s code: a fresh process, the profile's threads and protocol,
one call of the profile's hops per run with the states carried from call to call. Beside it, the
quality it streams (the causal supernet's whole-clip figure, equal to the stream by parity) and what the
same budget bought before streaming: the offline supernet's best subnet within the profile's MACs, cut
into chunks run on their own (the closest chunk length its quality table holds), and on whole clips
(which no real-time device can run). Then the price of causality per subnet: causal against offline
whole-clip uSDR for every subnet of the grid.

    python benchmarks/streaming.py            # the bundled supernets, every stream profile (a few minutes)
    python benchmarks/streaming.py --quick    # untrained tiny supernets, the earbud: a smoke test

Results: stdout and ``benchmarks/results/streaming.{md,json}``. Timing on a quiet machine only.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from results_io import log, machine_line, write_results

RESULTS = Path(__file__).resolve().parent / "results"
PROFILES = ("earbud", "watch", "phone")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny untrained supernets, the earbud: a smoke test")
    args = parser.parse_args()

    from s2g_deploy import api
    from s2g_deploy.bundled import BUNDLED_CAUSAL_SUPERNET, BUNDLED_SUPERNET
    from s2g_deploy.environment import environment
    from s2g_deploy.profiles import load_profile

    with tempfile.TemporaryDirectory(prefix="s2g-streaming-") as tmp:
        tmp = Path(tmp)
        causal, offline = BUNDLED_CAUSAL_SUPERNET, BUNDLED_SUPERNET
        profiles = [load_profile(name) for name in args.profiles.split(",")]
        if args.quick:
            causal, offline = tmp / "tiny-causal.safetensors", tmp / "tiny.safetensors"
            api.init("tiny-causal", causal, seed=0)
            api.init("tiny", offline, seed=0)
            profiles = [_quick_profile(load_profile("earbud"))]
        rows = [_row(api, prof, causal, offline, tmp) for prof in profiles]
        report = {
            "command": " ".join(sys.argv),
            "supernets": {"causal": str(causal), "offline": str(offline)},
            "rows": rows,
            "price_of_causality": _price(causal, offline),
            "environment": environment(),
        }
    write_results(args.results, "streaming_quick" if args.quick else "streaming", report, _markdown(report))
    return 0


def _quick_profile(prof):
    """The earbud with a short protocol at fp32 (an untrained model has nothing to gate)."""
    measurement = dataclasses.replace(prof.measurement, warmup_runs=5, timed_runs=50, min_duration_s=0.0)
    runtime = dataclasses.replace(prof.runtime, precision="fp32")
    # the tiny preset's hop is 2 ms: two hops per call
    workload = dataclasses.replace(prof.workload, chunk_seconds=0.004)
    return dataclasses.replace(prof, measurement=measurement, runtime=runtime, workload=workload)


def _row(api, prof, causal: Path, offline: Path, tmp: Path) -> dict:
    from s2g_deploy.search import search

    log(f"{prof.name}: export (stream of the causal supernet, {prof.runtime.precision})")
    result = api.export(causal, profile=prof, out=tmp / prof.name, measure_latency=False)
    m = result.manifest
    log(f"{prof.name}: bench {m['subnet']}")
    report = api.bench(tmp / prof.name, prof, write_manifest=False)
    lat, st, d = report.latency_ms, report.stream, report.deadline
    chunk_profile = dataclasses.replace(prof, workload=dataclasses.replace(prof.workload, mode="chunk"))
    before = search(offline, None, chunk_profile, latency_model=None, precision=prof.runtime.precision)
    chosen = str(before.chosen.subnet)
    offline_quality = _offline_at(offline, chosen, prof.workload.chunk_seconds)
    q = m["quality"] or {}
    row = (q.get("subnets") or {}).get(m["subnet"]) or {}
    return {
        "profile": prof.name,
        "subnet": m["subnet"],
        "precision": m["precision"],
        "params": m["params"],
        "parameter_bytes": m["costs"]["parameter_bytes"]["graph"],
        "macs_per_second": m["costs"]["macs_per_second"],
        "stream": m["stream"],
        "latency_ms": dict(lat),
        "statistic": report.statistic,
        "deadline": dict(d),
        "p99_over_hop": lat["p99"] / st["hop_ms"],
        "real_time_factor": report.real_time_factor,
        "budgets": {k: dict(v) for k, v in report.budgets.items()},
        "session": dict(report.session),
        "runs": report.protocol["runs"],
        "quality_stream": {k: row.get(k) for k in ("usdr_db", "csdr_db", "sisdr_db")},
        "quality_timbre_shift": (((q.get("splits") or {}).get("timbre-shift") or {}).get("subnets") or {}).get(
            m["subnet"]
        ),
        "mixture_usdr_db": (q.get("mixture") or {}).get("usdr_db"),
        "offline_same_budget": {"subnet": chosen, **offline_quality},
    }


def _offline_at(path: Path, subnet: str, call_seconds: float) -> dict:
    """The offline supernet's ``subnet`` on whole clips, and in chunks run on their own at the shortest
    chunk length of its quality table at least as long as the call (what a device without state hears)."""
    from s2g_deploy.checkpoint import read_meta

    q = read_meta(path).quality or {}
    whole = ((q.get("subnets") or {}).get(subnet) or {}).get("usdr_db")
    chunks = sorted(float(k) for k in (q.get("chunked") or {}))
    at = next((c for c in chunks if c >= call_seconds - 1e-9), None)
    chunked = None
    if at is not None:
        chunked = q["chunked"][f"{at:g}"]["subnets"].get(subnet, {}).get("usdr_db")
    return {"whole_clip_usdr_db": whole, "chunk_seconds": at, "chunked_usdr_db": chunked}


def _price(causal: Path, offline: Path) -> list[dict]:
    """Causal against offline whole-clip uSDR and cSDR for every subnet both grids hold (same recipe)."""
    from s2g_deploy.checkpoint import read_meta

    qc, qo = (read_meta(p).quality or {} for p in (causal, offline))
    rows = []
    for subnet, c in (qc.get("subnets") or {}).items():
        o = (qo.get("subnets") or {}).get(subnet)
        if o is None:
            continue
        rows.append(
            {
                "subnet": subnet,
                "causal_usdr_db": c["usdr_db"],
                "offline_usdr_db": o["usdr_db"],
                "price_db": o["usdr_db"] - c["usdr_db"],
                "causal_csdr_db": c.get("csdr_db"),
                "offline_csdr_db": o.get("csdr_db"),
            }
        )
    return rows


def _f(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _markdown(report: dict) -> str:
    lines = [
        "# Streaming profiles as they run",
        "",
        f"`{report['command']}`. Each stream profile's static choice of the causal supernet, exported at the "
        "profile's precision and benchmarked by `s2g bench`'s code: a fresh process, the profile's threads and "
        "protocol, one call (the profile's hops) per run, states carried from call to call. Deadline: the "
        "call's duration. Quality: uSDR on the rendered test split as the stream computes it (the causal "
        "model's whole-clip figure, equal by parity); 'offline, same budget': the offline supernet's choice "
        "under the same budgets, in chunks run on their own (the closest longer chunk its table holds) and "
        "on whole clips (not possible in real time).",
        "",
        "| profile | subnet | precision | call | algorithmic latency | p50 / p99 / max ms per call | p99 / hop "
        "| deadline misses | stream uSDR / cSDR | mixture | offline, same budget: chunked / whole clip |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        st, lat, d, q, o = r["stream"], r["latency_ms"], r["deadline"], r["quality_stream"], r["offline_same_budget"]
        lines.append(
            f"| {r['profile']} | {r['subnet']} | {r['precision']} | {st['call_ms']:g} ms | "
            f"{st['algorithmic_latency_ms']:g} ms | {lat['p50']:.3f} / {lat['p99']:.3f} / {lat['max']:.3f} | "
            f"{r['p99_over_hop']:.2f} | {d['misses']} of {d['runs']} | {_f(q['usdr_db'])} / {_f(q['csdr_db'])} | "
            f"{_f(r['mixture_usdr_db'])} | {o['subnet']}: {_f(o['chunked_usdr_db'])} at "
            f"{_f(o['chunk_seconds'], '{:g}')} s / {_f(o['whole_clip_usdr_db'])} |"
        )
    if report["price_of_causality"]:
        lines += [
            "",
            "The price of causality: whole-clip uSDR (cSDR) of every subnet, causal against offline (same data, "
            "recipe, steps, segments and seed):",
            "",
            "| subnet | causal uSDR | offline uSDR | price (dB) | causal cSDR | offline cSDR |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in report["price_of_causality"]:
            lines.append(
                f"| {r['subnet']} | {_f(r['causal_usdr_db'])} | {_f(r['offline_usdr_db'])} | {_f(r['price_db'])} | "
                f"{_f(r['causal_csdr_db'])} | {_f(r['offline_csdr_db'])} |"
            )
    lines += ["", machine_line(report["environment"]), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
