"""Wall time of ``s2g export`` at a mid budget, end to end as a user runs it (target: under 20 s).

Each run is a fresh process, timed from launch to exit (Python start-up, imports, search, slicing,
export, onnxsim, the parity certificate at 0.5 s / 3 s / 10 s, both MAC counts, writing and
checksumming). The per-stage split comes from the export's own ``manifest.json``. The cost cache
lives in a temporary directory, filled by one untimed run first, as on a user's second export.
Results go to stdout and to ``benchmarks/results/export_speed.{md,json}``.

    python benchmarks/export_speed.py                       # bundled supernet, else an xsmall stand-in
    python benchmarks/export_speed.py CKPT --budget-macs 300M --runs 5 --check   # exit 1 over 20 s

Without the bundled supernet (it is trained separately), the stand-in is an untrained xsmall supernet
(the bundled one's size and grid). 300M network MACs per second is mid-grid for xsmall (16.8M to 0.7G).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s2g_deploy.environment import environment

TARGET_S = 20.0
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="supernet checkpoint (default: bundled, else a stand-in)")
    parser.add_argument("--budget-macs", default="300M", help="network MACs per second of audio (default 300M)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs")
    parser.add_argument("--check", action="store_true", help="exit 1 if the median is over the target")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="s2g-export-speed-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "S2G_CACHE_DIR": str(tmp / "cache")}
        checkpoint, source = _checkpoint(args.checkpoint, tmp)
        command = [*_s2g_command(), "export", checkpoint, "--budget-macs", args.budget_macs, "--json"]
        _run([*command, "--out", str(tmp / "warm")], env)  # untimed: fills the cost cache
        times, docs = [], []
        for i in range(args.runs):
            out = tmp / f"run{i}"
            start = time.perf_counter()
            doc = _run([*command, "--out", str(out)], env)
            times.append(time.perf_counter() - start)
            docs.append({**doc, "onnx_bytes": (out / "model.onnx").stat().st_size})
        identical = len({(tmp / f"run{i}" / "model.onnx").read_bytes() for i in range(args.runs)}) == 1
    last = docs[-1]
    stages = {k: statistics.median(d["timings_s"][k] for d in docs) for k in last["timings_s"]}
    report = {
        "benchmark": "export_speed",
        "target_s": TARGET_S,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": args.runs,
        "passed": statistics.median(times) < TARGET_S,
        "checkpoint": source,
        "budget_macs": args.budget_macs,
        "subnet": last["subnet"],
        "params": last["params"],
        "macs_per_second": last["costs"]["macs_per_second"],
        "graph_vs_model": last["costs"]["graph_vs_model"],
        "parity_max_abs": last["parity"]["max_abs"],
        "parity_lengths_seconds": last["parity"]["lengths_seconds"],
        "onnx_bytes": last["onnx_bytes"],
        "byte_identical_across_runs": identical,
        "stages_median_s": stages,
        "environment": environment(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = _markdown(report)
    (RESULTS / "export_speed.md").write_text(markdown)
    print(markdown)
    return 1 if args.check and not report["passed"] else 0


def _checkpoint(given: str | None, tmp: Path) -> tuple[str, str]:
    if given:
        return given, given
    from s2g_deploy.bundled import BUNDLED_SUPERNET

    if BUNDLED_SUPERNET.is_file():
        return str(BUNDLED_SUPERNET), "bundled supernet"
    from s2g_deploy import api

    path = tmp / "xsmall-standin.safetensors"
    api.init("xsmall", path, seed=0)
    return str(path), "untrained xsmall stand-in (seed 0, 16 subnets)"


def _s2g_command() -> list[str]:
    script = Path(sys.executable).parent / "s2g"  # the console script of this environment
    if script.is_file():
        return [str(script)]
    found = shutil.which("s2g")
    return [found] if found else [sys.executable, "-m", "s2g_deploy"]


def _run(command: list[str], env: dict) -> dict:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


def _markdown(r: dict) -> str:
    env = r["environment"]
    mps = r["macs_per_second"]
    lines = [
        f"# `s2g export --budget-macs {r['budget_macs']}` wall time, end to end",
        "",
        f"Checkpoint: {r['checkpoint']}. Chose subnet {r['subnet']} ({r['params']:,} params; MACs per second: "
        f"network {mps['network']:,}, STFT/iSTFT {mps['stft_istft']:,}, total {mps['total']:,}; graph count "
        f"within {100 * r['graph_vs_model']:.2f}%). Target: median under {r['target_s']:g} s: "
        f"**{'met' if r['passed'] else 'MISSED'}**.",
        "",
        "| runs | median (s) | min (s) | max (s) | ONNX bytes | parity max abs | byte-identical |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        f"| {r['runs']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} | {r['onnx_bytes']:,} | "
        f"{r['parity_max_abs']:.1e} | {'yes' if r['byte_identical_across_runs'] else 'NO'} |",
        "",
        "Inside the process (median over runs, from the manifests):",
        "",
        "| stage | seconds |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in r["stages_median_s"].items()]
    lines += [
        "",
        f"Parity lengths: {', '.join(f'{s:g} s' for s in r['parity_lengths_seconds'])}. "
        f"Python {env['python']} on {env['platform']} ({env['cpu_model']}), {env['usable_cpus']} usable of "
        f"{env['logical_cpus']} CPUs, 1-minute load average "
        f"{env['load_average_1m']}; "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + f"; {env['date_utc']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
