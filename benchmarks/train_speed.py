"""Seconds per `s2g train` step under each thread setting, on an idle machine and beside another job.

Each setting runs in a fresh process (OpenMP reads OMP_WAIT_POLICY once, at start): one warm-up run of
`--steps 1` and a timed run of `1 + STEPS` steps; the difference over STEPS is the time per step. "Loaded"
runs the same with one single-threaded training process busy beside it, as on a shared machine or a
second run of a study. The default (`--threads auto`) is timed like the rest, so the table says how far
it is from the fastest setting in each condition.

    python benchmarks/train_speed.py --data data/rendered      # about 4 minutes here
    python benchmarks/train_speed.py --quick                   # tiny preset, synthetic data: a smoke test

Writes benchmarks/results/train_speed.{md,json}.
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

RESULTS = Path(__file__).parent / "results"
SETTINGS = {  # name -> (--threads, OpenMP environment; {} for OpenMP's own default)
    "auto (the default)": ("auto", {}),
    "1 thread, passive": ("1", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "2 threads, passive": ("2", {"OMP_WAIT_POLICY": "PASSIVE"}),
    "2 threads, brief spin (GOMP_SPINCOUNT=10000)": ("2", {"GOMP_SPINCOUNT": "10000"}),
    "2 threads, spinning": ("2", {"OMP_WAIT_POLICY": "ACTIVE"}),
}
OPENMP_VARS = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")


def _train_args(args) -> list[str]:
    if args.quick:
        return ["--preset", "tiny", "--batch-size", "2", "--segment-seconds", "0.25"]
    # the small validation split as training data too: a step costs the same, and loading takes seconds
    data = ["--data", str(args.data / "valid"), "--val-data", str(args.data / "valid")]
    return [*data, "--preset", "xsmall", "--batch-size", "8", "--val-every", "100000", "--save-every", "100000"]


def _run(args, threads: str, openmp: dict, steps: int, out: Path) -> float:
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_VARS} | openmp
    cmd = [sys.executable, "-m", "s2g_deploy", "train", *_train_args(args), "--threads", threads]
    done = subprocess.run(
        [*cmd, "--steps", str(steps), "--out", str(out), "--json"], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed: {done.stderr[-2000:]}")
    from s2g_deploy.checkpoint import read_meta

    training = read_meta(out / "checkpoint.safetensors").training
    used = {"torch_threads": training["torch_threads"], "omp_wait_policy": training["omp_wait_policy"]}
    return json.loads(done.stdout)["wall_time_s"], used


def _per_step(args, threads: str, openmp: dict, work: Path) -> tuple[float, dict]:
    one, _ = _run(args, threads, openmp, 1, work / f"one-{time.monotonic_ns()}")
    many, used = _run(args, threads, openmp, 1 + args.steps, work / f"many-{time.monotonic_ns()}")
    return max(many - one, 1e-9) / args.steps, used


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/rendered"))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 4
    rows = {}
    settings = dict(list(SETTINGS.items())[:2]) if args.quick else SETTINGS
    conditions = ("idle",) if args.quick else ("idle", "loaded")
    with tempfile.TemporaryDirectory(prefix="s2g-train-speed-") as work:
        work = Path(work)
        for condition in conditions:
            busy = None
            if condition == "loaded":  # a single-threaded training process beside the measured one
                env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
                cmd = [sys.executable, "-m", "s2g_deploy", "train", *_train_args(args), "--threads", "1"]
                busy = subprocess.Popen([*cmd, "--steps", "100000", "--out", str(work / "busy")], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
                time.sleep(5)
            try:
                for name, (threads, openmp) in settings.items():
                    log(f"{condition}: {name}")
                    seconds, used = _per_step(args, threads, openmp, work)
                    rows.setdefault(name, {})[condition] = round(seconds, 6)
                    rows[name][f"{condition}_used"] = used  # what the run recorded it ran with
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    best = {c: min(r[c] for r in rows.values()) for c in conditions}
    report = {
        "command": "python benchmarks/train_speed.py " + shlex.join(sys.argv[1:]),
        "steps_timed": args.steps,
        "seconds_per_step": rows,
        "fastest": best,
        # a timing of a few tiny steps can round to nothing on a loaded machine: no ratio rather than a crash
        "default_over_fastest": {
            c: round(rows["auto (the default)"][c] / best[c], 3) if best[c] > 1e-6 else None for c in best
        },
        "environment": environment(),
    }
    write_results(args.results, "train_speed_quick" if args.quick else "train_speed", report, _markdown(report))
    return 0


def _markdown(r: dict) -> str:
    lines = [
        "# Training speed by thread setting",
        "",
        f"`{r['command']}`: seconds per step ({r['steps_timed']} timed steps after a warm-up run, fresh process "
        "per setting); 'loaded' has one single-threaded training process running beside it.",
        "",
        "| setting | idle (s/step) | loaded (s/step) |",
        "| --- | ---: | ---: |",
    ]
    for name, row in r["seconds_per_step"].items():
        lines.append(f"| {name} | {row['idle']:.3f} | " + (f"{row['loaded']:.3f} |" if "loaded" in row else "- |"))
    d = r["default_over_fastest"]
    auto = r["seconds_per_step"]["auto (the default)"]
    chose = [f"{auto[c + '_used']['torch_threads']} thread(s), OMP_WAIT_POLICY "
             f"{auto[c + '_used']['omp_wait_policy'] or 'unset'} {c}" for c in d if c + "_used" in auto]  # fmt: skip
    lines += [
        "",
        "Auto chose " + " and ".join(chose) + ".",
        "",
        "The default is "
        + " and ".join(f"{v:.2f}x the fastest setting {c}" if v else f"unmeasured {c}" for c, v in d.items())
        + ".",
        "",
        machine_line(r["environment"]),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
