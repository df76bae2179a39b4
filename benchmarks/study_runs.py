"""The training runs of the S2G-versus-alone study, each an `s2g train` process in a persistent folder.

Every run is a plain, resumable `s2g train` command (one torch thread, `nice`), so a study that does not
finish in one sitting continues where it stopped: a finished run is skipped, an interrupted one is
resumed (exactly), a missing one is started. `--jobs` runs go at a time.

    python benchmarks/study_runs.py --data data/rendered --runs runs/study --jobs 2
    python benchmarks/study_runs.py --print            # the commands, without running them

`benchmarks/s2g_vs_independent.py --runs runs/study` evaluates what these runs produced.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from results_io import log

RECIPES = ("paper", "sandwich", "sandwich-distill", "sandwich-mixed")
SUBNETS = ("1x8", "1x16", "2x16", "3x24", "4x32")


def plan(args) -> list[tuple[str, list[str]]]:
    """(run name, s2g train arguments) for every run, in the order they should start."""
    common = [
        "--data", str(args.data / "train"), "--val-data", str(args.data / "valid"),
        "--preset", args.preset, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
        "--schedule", args.schedule, "--warmup-steps", str(args.warmup_steps),
        "--val-every", str(args.val_every), "--save-every", str(args.val_every), "--threads", "1",
    ]  # fmt: skip
    runs = []
    for seed in args.seeds.split(","):
        # the full size and the first recipes first: the capacity table needs alone 1x8/2x16/4x32
        order = [("alone", "4x32"), ("s2g", "paper"), ("alone", "1x8"), ("s2g", "sandwich-mixed"), ("alone", "2x16")]
        order += [("s2g", r) for r in args.recipes.split(",") if ("s2g", r) not in order]
        order += [("alone", s) for s in args.subnets.split(",") if ("alone", s) not in order]
        for kind, what in order:
            if kind == "alone" and what not in args.subnets.split(","):
                continue
            if kind == "s2g" and what not in args.recipes.split(","):
                continue
            extra = ["--fixed-subnet", what] if kind == "alone" else ["--recipe", what]
            runs.append((f"{kind}-{what}-s{seed}", [*common, "--seed", seed, *extra]))
    first = [n for n in args.first.split(",") if n]
    return sorted(runs, key=lambda r: first.index(r[0]) if r[0] in first else len(first))


def status(folder: Path, steps: int) -> str:
    """done, partial (resumable) or new."""
    ckpt = folder / "checkpoint.safetensors"
    if ckpt.is_file():
        from s2g_deploy.checkpoint import read_meta

        training = read_meta(ckpt).training or {}
        if training.get("steps_done") == steps:
            return "done"
    return "partial" if (folder / "state.safetensors").is_file() else "new"


def run_one(args, name: str, argv: list[str]) -> dict:
    folder = args.runs / name
    state = status(folder, args.steps)
    if state == "done":
        return {"run": name, "status": "done before"}
    pid_file = args.runs / f"{name}.pid"
    if _alive(pid_file):
        return {"run": name, "status": "running elsewhere"}
    if state == "new" and folder.exists():
        for p in folder.iterdir():  # a start that died before its first saved state
            p.unlink()
    command = ["nice", "-n", "10", sys.executable, "-m", "s2g_deploy", "train", *argv, "--out", str(folder)] + (
        ["--resume"] if state == "partial" else []
    )
    log(f"{name}: {'resuming' if state == 'partial' else 'starting'}")
    started = time.perf_counter()
    with open(args.runs / f"{name}.log", "a") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        )
        pid_file.write_text(str(proc.pid))
        code = proc.wait()
    log(f"{name}: exit {code} after {time.perf_counter() - started:.0f} s")
    return {"run": name, "status": "ok" if code == 0 else f"exit {code}"}


def _alive(pid_file: Path) -> bool:
    """A run another study_runs process started and is still training."""
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/rendered"), help="folder with train/ and valid/")
    p.add_argument("--runs", type=Path, default=Path("runs/study"))
    p.add_argument("--preset", default="xsmall")
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--subnets", default=",".join(SUBNETS))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--first", default="", help="comma-separated run names to start before the others")
    p.add_argument("--print", action="store_true", help="print the commands and exit")
    args = p.parse_args(argv)
    runs = plan(args)
    if args.print:
        for name, a in runs:
            print(shlex.join(["s2g", "train", *a, "--out", str(args.runs / name)]))
        return 0
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "plan.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}))
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda r: run_one(args, *r), runs))
    failed = [r for r in results if r["status"].startswith("exit")]
    for r in results:
        log(f"{r['run']}: {r['status']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
