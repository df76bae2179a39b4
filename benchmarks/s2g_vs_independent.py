"""Does one S2G supernet serve every size as well as subnets trained alone, and for how much less training?

For each seed, this trains one supernet the S2G way (the full network plus one sampled subnet per step)
and, with the same data stream, steps, batch and seed, each of a spread of grid subnets alone from
scratch (`s2g train --fixed-subnet`, the paper's baseline). All models are scored on the same held-out
tracks (uSDR and SI-SDR, dB). Training wall times are measured; the cost of training *every* grid subnet
alone is estimated from a short timed run of each subnet (steps x measured seconds per step).

    python benchmarks/s2g_vs_independent.py                 # the committed results: 75 min, one core
    python benchmarks/s2g_vs_independent.py --quick        # smoke test: tiny preset, seconds
    python benchmarks/s2g_vs_independent.py --data musdb16k/train --eval-data musdb16k/test

Writes benchmarks/results/s2g_vs_independent.{md,json} (or --results DIR).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from results_io import log, write_results

from s2g_deploy.checkpoint import load_checkpoint
from s2g_deploy.environment import environment
from s2g_deploy.models.registry import get_preset
from s2g_deploy.subnet import Subnet
from s2g_deploy.train.evaluate import data_hash, held_out_examples, score
from s2g_deploy.train.loop import TrainConfig, train

RESULTS = Path(__file__).parent / "results"
TIMING_STEPS = 4  # steps per subnet for the every-subnet-alone estimate (after one untimed step)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.preset, args.subnets, args.steps, args.seeds = "tiny", "1x4,2x4,2x8", 3, "0,1"
        args.batch_size, args.segment_seconds, args.eval_items, args.eval_seconds = 2, 0.25, 2, 0.5
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    subnets = [preset.space.check(Subnet.parse(s)) for s in args.subnets.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    examples, description = held_out_examples(
        args.eval_data, preset.config.sample_rate_hz, args.eval_items, args.eval_seconds, args.target
    )
    mixture = score(lambda x: x, examples)
    common = dict(
        preset=args.preset,
        data=args.data,
        target=args.target,
        steps=args.steps,
        batch_size=args.batch_size,
        segment_seconds=args.segment_seconds,
        val_every=10**9,  # the held-out score below replaces validation; the final one is kept tiny
        val_items=2,
        val_seconds=1.0,
        save_every=10**9,
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="s2g-vs-independent-") as work:
        for seed in seeds:
            log(f"seed {seed}: S2G supernet, {args.steps} steps")
            s2g = train(TrainConfig(out=Path(work) / f"s2g-{seed}", seed=seed, **common), progress=False)
            supernet = load_checkpoint(s2g.checkpoint).model.eval()
            run = {"seed": seed, "s2g_wall_time_s": s2g.wall_time_s, "s2g": {}, "independent": {}, "alone_s": {}}
            with torch.no_grad():
                for subnet in subnets:
                    run["s2g"][str(subnet)] = score(lambda x, m=supernet, s=subnet: m(x, s), examples)
            for subnet in subnets:
                log(f"seed {seed}: {subnet} alone, {args.steps} steps")
                alone = train(
                    TrainConfig(out=Path(work) / f"alone-{subnet}-{seed}", seed=seed, fixed_subnet=subnet, **common),
                    progress=False,
                )
                dense = load_checkpoint(alone.checkpoint).model.eval()
                with torch.no_grad():
                    run["independent"][str(subnet)] = score(dense, examples)
                run["alone_s"][str(subnet)] = alone.wall_time_s
            runs.append(run)
        log("timing every grid subnet alone for the all-subnets estimate")
        step_s = {str(s): _seconds_per_step(Path(work), s, common) for s in preset.space.grid()}
    report = _report(args, subnets, seeds, runs, mixture, description, len(examples), data_hash(examples), step_s)
    stem = "s2g_vs_independent_quick" if args.quick else "s2g_vs_independent"
    write_results(args.results, stem, report, _markdown(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="xsmall")
    p.add_argument("--subnets", default="1x8,1x16,2x16,3x24,4x32", help="comma-separated, smallest to full")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument("--data", type=Path, default=None, help="folder of stems for training (default: synthetic)")
    p.add_argument("--eval-data", type=Path, default=None, help="folder of stems for scoring (default: synthetic)")
    p.add_argument("--target", default="vocals")
    p.add_argument("--eval-items", type=int, default=32)
    p.add_argument("--eval-seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: runs are comparable on a busy machine)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny preset, 3 steps: a smoke test")
    return p


def _seconds_per_step(work: Path, subnet: Subnet, common: dict) -> float:
    """Measured seconds per training step of ``subnet`` alone (one untimed warm-up step first)."""
    short = {**common, "steps": 1 + TIMING_STEPS}
    # The train loop reports its wall time; a 1-step run measures the fixed costs to subtract.
    one = train(TrainConfig(out=work / f"t1-{subnet}", fixed_subnet=subnet, **{**short, "steps": 1}), progress=False)
    many = train(TrainConfig(out=work / f"tn-{subnet}", fixed_subnet=subnet, **short), progress=False)
    return max(many.wall_time_s - one.wall_time_s, 1e-9) / TIMING_STEPS


def _report(args, subnets, seeds, runs, mixture, description, tracks, digest, step_s) -> dict:
    rows = []
    for subnet in map(str, subnets):
        s2g = [r["s2g"][subnet]["usdr_db"] for r in runs]
        alone = [r["independent"][subnet]["usdr_db"] for r in runs]
        rows.append(
            {
                "subnet": subnet,
                "s2g_usdr_db": _spread(s2g),
                "independent_usdr_db": _spread(alone),
                "difference_db": _spread([a - b for a, b in zip(s2g, alone, strict=True)]),
                "s2g_sisdr_db": _spread([r["s2g"][subnet]["sisdr_db"] for r in runs]),
                "independent_sisdr_db": _spread([r["independent"][subnet]["sisdr_db"] for r in runs]),
                "independent_wall_time_s": _spread([r["alone_s"][subnet] for r in runs]),
            }
        )
    s2g_time = statistics.mean(r["s2g_wall_time_s"] for r in runs)
    spread_time = statistics.mean(sum(r["alone_s"].values()) for r in runs)
    all_alone = sum(step_s.values()) * args.steps
    return {
        "command": "python benchmarks/s2g_vs_independent.py " + shlex.join(sys.argv[1:]),
        "settings": {
            "preset": args.preset,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "segment_seconds": args.segment_seconds,
            "seeds": seeds,
            "torch_threads": args.threads,
            "train_data": str(args.data) if args.data else "synthetic (train split)",
        },
        "held_out": {**description, "tracks": tracks, "sha256": digest},
        "mixture": mixture,
        "rows": rows,
        "runs": runs,
        "training_time": {
            "s2g_supernet_s": round(s2g_time, 1),
            "independent_spread_s": round(spread_time, 1),
            "spread_subnets": len(subnets),
            "spread_over_s2g": round(spread_time / s2g_time, 2),
            "estimated_all_grid_alone_s": round(all_alone, 1),
            "grid_subnets": len(step_s),
            "estimated_all_grid_over_s2g": round(all_alone / s2g_time, 2),
            "seconds_per_step_alone": {k: round(v, 4) for k, v in step_s.items()},
        },
        "environment": environment(),
    }


def _spread(values: list[float]) -> dict:
    return {
        "mean": round(statistics.mean(values), 3),
        "std": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
        "values": [round(v, 3) for v in values],
    }


def _markdown(r: dict) -> str:
    s, t, env = r["settings"], r["training_time"], r["environment"]
    lines = [
        "# S2G supernet vs the same subnets trained alone",
        "",
        f"`{r['command']}`",
        "",
        f"Preset `{s['preset']}`, {s['steps']} steps, batch {s['batch_size']} x {s['segment_seconds']} s, "
        f"seeds {', '.join(map(str, s['seeds']))}, {s['torch_threads']} torch thread(s); training data: "
        f"{s['train_data']}. Held-out: {r['held_out']['tracks']} tracks ({r['held_out']['kind']}, "
        f"split {r['held_out'].get('split', '-')}), sha256 {r['held_out']['sha256'][:12]}. "
        f"Unprocessed mixture: {r['mixture']['usdr_db']:.2f} dB uSDR.",
        "",
        "uSDR in dB, mean ± standard deviation over seeds (per-seed values in the JSON):",
        "",
        "| subnet | S2G (cut from the supernet) | trained alone | S2G − alone | alone: training time (s) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['subnet']} | {_pm(row['s2g_usdr_db'])} | {_pm(row['independent_usdr_db'])} | "
            f"{_pm(row['difference_db'], sign=True)} | {row['independent_wall_time_s']['mean']:.1f} |"
        )
    lines += [
        "",
        "Training wall time (mean over seeds):",
        "",
        "| what | seconds | relative to the supernet |",
        "| --- | ---: | ---: |",
        f"| one S2G supernet (serves all {t['grid_subnets']} grid subnets) | {t['s2g_supernet_s']:.1f} | 1.00 |",
        f"| the {t['spread_subnets']} subnets above, each alone (measured) | {t['independent_spread_s']:.1f} | "
        f"{t['spread_over_s2g']:.2f} |",
        f"| all {t['grid_subnets']} grid subnets alone (estimated from timed steps) | "
        f"{t['estimated_all_grid_alone_s']:.1f} | {t['estimated_all_grid_over_s2g']:.2f} |",
        "",
        f"Machine: {env['cpu_model']}, {env['usable_cpus']} usable CPUs, load {env['load_average_1m']}; "
        f"torch {env['versions']['torch']}, s2g_deploy {env['versions']['s2g_deploy']}; {env['date_utc']}.",
    ]
    return "\n".join(lines) + "\n"


def _pm(spread: dict, sign: bool = False) -> str:
    mean = f"{spread['mean']:+.2f}" if sign else f"{spread['mean']:.2f}"
    return f"{mean} ± {spread['std']:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
