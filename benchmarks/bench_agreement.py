"""Does ``s2g bench`` measure what a plain onnxruntime loop measures? (issue 6: within 15%.)

For each round, in fresh processes one after the other: ``s2g bench EXPORT --device laptop --json``,
then an independent loop written here from scratch (its own session options from the profile's
numbers, its own input, ``time.perf_counter`` around ``session.run``, percentiles by Python's
``statistics.quantiles``) over the same ``model.onnx`` with the same threads, optimisation level,
input shape, warm-up and number of timed runs. Rounds alternate the order so drift in the machine's
state does not favour one side. The verdict compares the median over rounds of each statistic.

    python benchmarks/bench_agreement.py                       # bundled supernet, subnets 4x32 and 1x8
    python benchmarks/bench_agreement.py --rounds 5 --subnets 2x16

Results: stdout and ``benchmarks/results/bench_agreement.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from results_io import machine_line, write_results

from s2g_deploy.environment import environment

TOLERANCE = 0.15
STATS = ("mean", "p50", "p90", "p99")
RESULTS = Path(__file__).resolve().parent / "results"

INDEPENDENT = r"""
import json, statistics, sys, time
import numpy as np, onnxruntime as ort
path, threads, inter, samples, warmup, runs = sys.argv[1], *map(int, sys.argv[2:7])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = inter
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
x = (np.random.RandomState(7).randn(1, samples) * 0.1).astype(np.float32)
name = session.get_inputs()[0].name
for _ in range(warmup + 1):
    session.run(None, {name: x})
times = []
for _ in range(runs):
    t = time.perf_counter()
    session.run(None, {name: x})
    times.append((time.perf_counter() - t) * 1000)
q = statistics.quantiles(times, n=100, method="inclusive")
print(json.dumps({"mean": statistics.fmean(times), "p50": q[49], "p90": q[89], "p99": q[98], "runs": runs}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--subnets", default="4x32,1x8", help="comma-separated subnets of the bundled supernet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from s2g_deploy.profiles import load_profile

    profile = load_profile(args.profile)
    r, m = profile.runtime, profile.measurement
    samples = round(profile.workload.chunk_seconds * 16000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="s2g-agreement-") as tmp:
        for subnet in args.subnets.split(","):
            out = Path(tmp) / subnet
            _run([*_s2g(), "export", "--subnet", subnet, "--out", str(out), "--json"])
            rounds = []
            for i in range(args.rounds):
                order = ("s2g", "independent") if i % 2 == 0 else ("independent", "s2g")
                got = {}
                for side in order:
                    if side == "s2g":
                        doc = _run([*_s2g(), "bench", str(out), "--device", args.profile, "--json", "--no-manifest"])
                        got["s2g"] = {k: doc["latency_ms"][k] for k in STATS} | {"runs": doc["protocol"]["runs"]}
                    else:
                        runs = got.get("s2g", {}).get("runs", max(m.timed_runs, 200))
                        cmd = [sys.executable, "-c", INDEPENDENT, str(out / "model.onnx")]
                        cmd += map(str, (r.intra_op_threads, r.inter_op_threads, samples, m.warmup_runs, runs))
                        got["independent"] = _run(cmd)
                rounds.append(got)
            s2g = {k: statistics.median(g["s2g"][k] for g in rounds) for k in STATS}
            ind = {k: statistics.median(g["independent"][k] for g in rounds) for k in STATS}
            diff = {k: (s2g[k] - ind[k]) / ind[k] for k in STATS}
            rows.append({"subnet": subnet, "rounds": rounds, "s2g_ms": s2g, "independent_ms": ind, "relative": diff})
            print(f"{subnet}: " + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in diff.items()), file=sys.stderr)
    worst = max(abs(v) for row in rows for v in row["relative"].values())
    report = {
        "benchmark": "bench_agreement",
        "command": shlex.join([sys.executable, *sys.argv]),
        "profile": args.profile,
        "settings": {
            "intra_op_threads": r.intra_op_threads,
            "inter_op_threads": r.inter_op_threads,
            "graph_optimization_level": r.graph_optimization_level,
            "samples": samples,
            "warmup_runs": m.warmup_runs,
            "min_duration_s": m.min_duration_s,
        },
        "tolerance": TOLERANCE,
        "worst_relative_difference": worst,
        "passed": worst <= TOLERANCE,
        "rows": rows,
        "environment": environment(),
    }
    write_results(args.results, "bench_agreement", report, _markdown(report))
    return 0 if report["passed"] else 1


def _s2g() -> list[str]:
    return [sys.executable, "-m", "s2g_deploy"]


def _run(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)[:200]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _markdown(r: dict) -> str:
    env, s = r["environment"], r["settings"]
    lines = [
        f"# `s2g bench` against an independent onnxruntime loop ({r['profile']} profile)",
        "",
        f"`{r['command']}`. Bundled-supernet exports, {s['samples']} samples per run (batch 1), "
        f"{s['intra_op_threads']} intra-op / {s['inter_op_threads']} inter-op threads, optimisation "
        f"{s['graph_optimization_level']}, {s['warmup_runs']} warm-up runs; the independent loop times as many runs "
        "as `s2g bench` did (its protocol: at least 100 runs and 2 s). Each side a fresh process; "
        f"median over {len(r['rows'][0]['rounds'])} alternating rounds. Tolerance {100 * r['tolerance']:.0f}%: "
        f"**{'met' if r['passed'] else 'MISSED'}** (worst {100 * r['worst_relative_difference']:.1f}%).",
        "",
        "| subnet | statistic | s2g bench (ms) | independent (ms) | difference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in r["rows"]:
        for k in STATS:
            lines.append(
                f"| {row['subnet']} | {k} | {row['s2g_ms'][k]:.3f} | {row['independent_ms'][k]:.3f} | "
                f"{100 * row['relative'][k]:+.1f}% |"
            )
    lines += [
        "",
        machine_line(env),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
