"""The latency model and latency-aware export, per shipped profile with a latency budget (issue 6).

For each profile, with a fresh cache (so the model is calibrated now, on this machine):
1. ``s2g calibrate --device P --json``: the held-out MAPE (target: at most 10%);
2. ``s2g export --profile P --out DIR --json``: latency-aware selection, predicted then measured;
3. ``s2g bench DIR --device P --json`` in a fresh process: does the export meet the latency budget
   when measured again?

    python benchmarks/latency_model.py                          # every shipped profile with a latency budget
    python benchmarks/latency_model.py --profiles laptop,phone

Results: stdout and ``benchmarks/results/latency_model.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import log, machine_line, write_results

from s2g_deploy.environment import environment

MAPE_TARGET = 0.10
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    from s2g_deploy.profiles import load_profile, shipped_profiles

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", help="comma-separated (default: every shipped one with a latency budget)")
    parser.add_argument("--repeats", type=int, default=1, help="s2g calibrate --repeats (median of N runs)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    names = args.profiles.split(",") if args.profiles else list(shipped_profiles())
    profiles = [p for p in map(load_profile, names) if p.budgets.latency_ms is not None]
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="s2g-latency-") as tmp:
        env = {**os.environ, "S2G_CACHE_DIR": str(Path(tmp) / "cache")}
        for profile in profiles:
            started = time.perf_counter()
            log(f"{profile.name}: calibrating")
            model = _run(["calibrate", "--device", profile.name, "--repeats", str(args.repeats), "--json"], env)[1]
            calibrate_s = time.perf_counter() - started
            log(f"{profile.name}: MAPE {model['mape_held_out']:.3f}; latency-aware export")
            out = Path(tmp) / profile.name
            code, doc, stderr = _run(
                ["export", "--profile", profile.name, "--out", str(out), "--json"], env, ok=(0, 3, 4)
            )
            row = {
                "profile": profile.name,
                "statistic": model["statistic"],
                "limit_ms": profile.budgets.latency_ms,
                "max_real_time_factor": profile.budgets.max_real_time_factor,
                "chunk_seconds": profile.workload.chunk_seconds,
                "batch": profile.workload.batch,
                "threads": profile.runtime.intra_op_threads,
                "mape_held_out": model["mape_held_out"],
                "held_out": [p["subnet"] for p in model["held_out"]],
                "fitted_on": [p["subnet"] for p in model["fitted_on"]],
                "coefficients": model["coefficients"],
                "calibrate_s": round(calibrate_s, 1),
                "export_exit_code": code,
            }
            if code == 0:
                latency = doc["latency"]
                row |= {
                    "subnet": doc["subnet"],
                    "predicted_ms": latency["predicted_ms"],
                    "export_measured_ms": latency["measured_ms"],
                    "attempts": latency["attempts"],
                }
                log(f"{profile.name}: exported {doc['subnet']}; re-measuring with s2g bench")
                bench = _run(["bench", str(out), "--device", profile.name, "--json", "--no-manifest"], env)[1]
                row["rebench_ms"] = bench["latency_ms"][model["statistic"]]
                row["rebench_budgets"] = bench["budgets"]
                row["rebench_passed"] = all(
                    bench["budgets"][k]["passed"]
                    for k in ("latency_ms", "max_real_time_factor")
                    if k in bench["budgets"]
                )
            else:
                row["error"] = stderr.strip().splitlines()[-1] if stderr.strip() else f"exit {code}"
            rows.append(row)
    report = {
        "benchmark": "latency_model",
        "command": shlex.join([sys.executable, *sys.argv]),
        "mape_target": MAPE_TARGET,
        "load_average_1m_before": round(load_before, 2),
        "rows": rows,
        "environment": environment(),
    }
    write_results(args.results, "latency_model", report, _markdown(report))
    return 0


def _run(command: list[str], env: dict, ok: tuple[int, ...] = (0,)) -> tuple[int, dict | None, str]:
    full = [sys.executable, "-m", "s2g_deploy", *command]
    done = subprocess.run(full, capture_output=True, text=True, env=env)
    if done.returncode not in ok:
        raise SystemExit(f"{shlex.join(full)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.returncode, json.loads(done.stdout) if done.returncode == 0 else None, done.stderr


def _markdown(r: dict) -> str:
    env = r["environment"]
    lines = [
        "# Latency model accuracy and latency-aware export, per shipped profile",
        "",
        f"`{r['command']}`, fresh cache. MAPE: mean absolute percentage error of the calibrated model on "
        f"measured subnets it was not fitted on (target at most {100 * r['mape_target']:.0f}%). Export: "
        "`s2g export --profile P` (predict, export, measure, retry); re-measured: `s2g bench` on the export "
        "in a fresh process.",
        "",
        "| profile | statistic | MAPE (held-out subnets) | chosen | predicted (ms) | measured at export (ms) | "
        "re-measured (ms) | budget (ms) | verdict |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in r["rows"]:
        mape = f"{100 * row['mape_held_out']:.1f}% ({', '.join(row['held_out'])})"
        if row["export_exit_code"] == 0:
            verdict = "pass" if row["rebench_passed"] else "FAIL"
            tries = len(row["attempts"])
            lines.append(
                f"| {row['profile']} | {row['statistic']} | {mape} | {row['subnet']} (attempt {tries}) | "
                f"{row['predicted_ms']:.2f} | {row['export_measured_ms']:.2f} | {row['rebench_ms']:.2f} | "
                f"{row['limit_ms']:g} | {verdict} |"
            )
        else:
            lines.append(
                f"| {row['profile']} | {row['statistic']} | {mape} | exit {row['export_exit_code']} | - | - | - | "
                f"{row['limit_ms']:g} | {row['error']} |"
            )
    lines += ["", "Coefficients (ms per run; per block; per million block MACs; per million other MACs):", ""]
    for row in r["rows"]:
        c = row["coefficients"]
        lines.append(
            f"- {row['profile']} ({row['batch']} x {row['chunk_seconds']:g} s, {row['threads']} thread(s), "
            f"calibrated in {row['calibrate_s']:.0f} s): {c['intercept']:.3f} + {c['depth']:.3f} d + "
            f"{c['block_mmacs']:.4f} block + {c['other_mmacs']:.4f} other; fitted on {', '.join(row['fitted_on'])}"
        )
    lines += [
        "",
        f"1-minute load average before: {r['load_average_1m_before']}. " + machine_line(env),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
