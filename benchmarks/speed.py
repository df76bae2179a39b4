"""Do fewer MACs become less latency? Speed of every grid subnet, of the runtimes, and of the toolkit itself.

Every figure is a ratio measured in one run of this script, on one machine:

- every grid subnet is exported (`s2g export --subnet`) and timed with `s2g bench --compare torch`, which
  runs the ONNX file in onnxruntime, the same subnet as a dense PyTorch model, and the supernet run at
  that subnet, each in its own process with the same thread count: latency against network MACs (rank
  correlation, and latency per MAC of the smallest against the largest subnet), and what slicing and
  ONNX buy over the masked supernet;
- the full model's achieved MACs per second against a large float32 matmul (the practical ceiling);
- wall time of `s2g search` (warm cost cache) and of `s2g export` at a mid budget;
- the three MAC counts of every subnet: fvcore with our RNN handles, the closed form, the ONNX graph.

    python benchmarks/speed.py            # bundled supernet, all 16 subnets, 5 rounds: about 20 minutes
    python benchmarks/speed.py --quick    # untrained tiny supernet: a smoke test

Writes benchmarks/results/speed.{md,json} (or --results DIR).
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
import time
from pathlib import Path

from results_io import log, write_results

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
# the last revision before the lean graphs (per-band op chains, Shape-driven reshapes, convolution STFT)
BASELINE_REVISION = "e6c21c7"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from s2g_deploy import api
    from s2g_deploy.environment import environment

    with tempfile.TemporaryDirectory(prefix="s2g-speed-") as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint
        if args.quick:
            checkpoint = tmp / "tiny.safetensors"
            api.init("tiny", checkpoint, seed=0)
            args.seconds, args.timed_runs, args.warmup_runs, args.min_duration = 0.25, 5, 1, 0.0
            args.mid_budget, args.rounds, args.matmul_size = "20M", 2, 512
        profile = _profile(tmp / "speed.toml", args, args.seconds)
        short_profile = _profile(tmp / "short.toml", args, args.short_chunk)
        table = api.costs(checkpoint)
        entries = table.entries
        if args.quick:  # the smallest and the largest subnet are enough to exercise every figure
            entries = (min(entries, key=lambda e: e.macs_per_second), max(entries, key=lambda e: e.macs_per_second))
        manifests = {}
        for entry in entries:
            log(f"{entry.subnet}: export")
            manifests[entry.subnet] = api.export(checkpoint, subnet=entry.subnet, out=tmp / str(entry.subnet)).manifest
        wanted = [str(e.subnet) for e in entries] if args.quick else args.baseline_subnets.split(",")
        baseline = _baseline_exports(args.baseline, checkpoint, wanted, tmp)
        benches, ceilings = _rounds(args, tmp, entries, (profile, short_profile), baseline)
        old_nodes = {
            name: json.loads((d / "manifest.json").read_text())["settings"]["simplify"]["nodes_after"]
            for name, d in baseline.items()
        }
        rows = [
            _row(e, manifests[e.subnet], benches[str(e.subnet)], table.hop_length, old_nodes.get(str(e.subnet)))
            for e in entries
        ]
        search_s = _wall(
            ["search", *_ckpt(checkpoint), "--budget-macs", args.mid_budget, "--json"],
            repeat=1 if args.quick else 3,
            warm_up=not args.quick,
        )
        export_s = _wall(
            [
                "export",
                *_ckpt(checkpoint),
                "--budget-macs",
                args.mid_budget,
                "--out",
                str(tmp / "mid"),
                "--overwrite",
                "--json",
            ],
            repeat=1 if args.quick else 3,
            warm_up=not args.quick,
        )
        report = _report(args, checkpoint, table, rows, max(ceilings), search_s, export_s, environment())
        report["baseline"] = {"revision": args.baseline, "made": sorted(baseline), "short_chunk_s": args.short_chunk}
    stem = "speed_quick" if args.quick else "speed"
    write_results(args.results, stem, report, _markdown(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="supernet (default: the bundled one)")
    p.add_argument("--seconds", type=float, default=1.0, help="audio per timed run (the chunk)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for every runtime and the matmul")
    p.add_argument("--warmup-runs", type=int, default=5)
    p.add_argument("--timed-runs", type=int, default=100)
    p.add_argument("--min-duration", type=float, default=2.0, help="seconds of timed runs, at least")
    p.add_argument("--rounds", type=int, default=5, help="bench every subnet this many times; keep the fastest")
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--mid-budget", default="300M", help="MACs per second for the timed `s2g export`")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny untrained supernet, few runs: a smoke test")
    p.add_argument(
        "--baseline",
        default=BASELINE_REVISION,
        help="git revision whose package exports the previous format ('none': skip)",
    )
    p.add_argument("--baseline-subnets", default="1x8,2x16,4x32", help="subnets exported in both formats")
    p.add_argument("--short-chunk", type=float, default=0.016, help="seconds: the short chunk both formats run")
    return p


def _baseline_exports(revision: str, checkpoint: Path | None, subnets: list[str], tmp: Path) -> dict[str, Path]:
    """Export ``subnets`` with the package as of git ``revision``, each in its own process: {subnet: dir}."""
    if revision == "none":
        return {}
    from s2g_deploy.bundled import BUNDLED_SUPERNET

    checkpoint = Path(checkpoint or BUNDLED_SUPERNET).resolve()  # the same weights, not that revision's bundled ones
    source = tmp / "baseline-src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "s2g_deploy"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {revision}: git archive failed: {archive.stderr.decode()[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    # run from inside the extracted tree: `python -m` puts the working directory first on sys.path, so
    # from the repository's root the current package would be imported instead
    env = {**os.environ, "PYTHONPATH": str(source)}
    where = subprocess.run(
        [sys.executable, "-c", "import s2g_deploy; print(s2g_deploy.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=source,
        check=True,
    ).stdout.strip()
    if not Path(where).resolve().is_relative_to(source.resolve()):
        raise SystemExit(f"--baseline {revision}: the extracted package is not the one imported ({where})")
    out = {}
    for subnet in subnets:
        log(f"{subnet}: export with the package as of {revision}")
        target = tmp / "baseline" / subnet
        command = [sys.executable, "-m", "s2g_deploy", "export", *_ckpt(checkpoint), "--subnet", subnet]
        done = subprocess.run(
            [*command, "--out", str(target), "--json"], capture_output=True, text=True, env=env, cwd=source
        )
        if done.returncode != 0:
            raise SystemExit(f"baseline export of {subnet} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        out[subnet] = target
    return out


def _rounds(args, tmp: Path, entries, profiles, baseline: dict[str, Path]) -> tuple[dict, list]:
    """Every subnet benched once per round (both formats where there is a baseline, their order alternating).

    Rounds over all subnets rather than repeats of one: a slow spell of a shared machine (whole processes
    here ran up to 2.3x slower now and then) then touches one round of many subnets. Returns
    {subnet: {"lean": [...], "baseline": [...], "lean_short": [...], "baseline_short": [...]}} and the
    matmul ceilings.
    """
    profile, short = profiles
    benches = {str(e.subnet): {"lean": [], "baseline": [], "lean_short": [], "baseline_short": []} for e in entries}
    ceilings = []
    for round_ in range(args.rounds):
        ceilings.append(_matmul_ceiling(args.threads, args.matmul_size))
        for entry in entries:
            name = str(entry.subnet)
            log(f"round {round_ + 1}/{args.rounds}: bench {name}")
            jobs = [("lean", tmp / name, profile, True)]
            if name in baseline:
                jobs += [("baseline", baseline[name], profile, False)]
                jobs += [("lean_short", tmp / name, short, False), ("baseline_short", baseline[name], short, False)]
            if round_ % 2:  # alternate which format runs first
                jobs.reverse()
            for kind, directory, prof, compare in jobs:
                command = ["bench", str(directory), "--device", str(prof), "--no-manifest", "--json"]
                benches[name][kind].append(_s2g([*command, *(["--compare", "torch"] if compare else [])]))
    return benches, ceilings


def _profile(path: Path, args, chunk_seconds: float) -> Path:
    """A device profile for this benchmark: the given threads and chunk, no budgets to pass or fail."""
    path.write_text(
        f"""schema_version = 1
name = "speed-benchmark"
description = "benchmarks/speed.py: {args.threads} thread(s), {chunk_seconds} s chunks"

[budgets]

[runtime]
execution_provider = "CPUExecutionProvider"
intra_op_threads = {args.threads}
inter_op_threads = 1
graph_optimization_level = "all"
precision = "fp32"
opset = 17

[workload]
chunk_seconds = {chunk_seconds}
batch = 1

[measurement]
warmup_runs = {args.warmup_runs}
timed_runs = {args.timed_runs}
min_duration_s = {args.min_duration}
statistic = "p50"
"""
    )
    return path


def _matmul_ceiling(threads: int, size: int) -> float:
    """MACs per second of a (size x size) @ (size x size) float32 matmul (median of 30): the practical peak."""
    code = (
        "import time, torch\n"
        f"torch.set_num_threads({threads}); a = torch.randn({size}, {size}); b = torch.randn({size}, {size})\n"
        "for _ in range(3): a @ b\n"
        "times = []\n"
        "for _ in range(30):\n"
        "    t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)\n"
        "print(sorted(times)[len(times) // 2])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return size**3 / float(done.stdout)


def _s2g(arguments: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "s2g_deploy", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"s2g {shlex.join(arguments)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def _wall(arguments: list[str], repeat: int, warm_up: bool = True) -> dict:
    """Wall seconds of an `s2g` command in a fresh process (after one untimed run that warms caches).

    The cost cache is already warm either way (the costs were counted above); the untimed run warms the
    operating system's file cache and Python's bytecode.
    """
    if warm_up:
        _s2g(arguments)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        _s2g(arguments)
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 3), "runs": [round(t, 3) for t in times]}


def _ckpt(checkpoint: Path | None) -> list[str]:
    return [] if checkpoint is None else [str(checkpoint)]


def _row(entry, manifest: dict, bench: dict, hop_length: int, baseline_nodes: int | None) -> dict:
    graph = manifest["costs"]["graph"]
    frames = 1 + graph["input_shape"][-1] // hop_length  # centred STFT
    rounds = {}
    for result in bench["lean"]:
        for name, runtime in _runtimes(result).items():
            rounds.setdefault(name, []).append(_p50(runtime))
    row = {
        "subnet": str(entry.subnet),
        "params": entry.params,
        "network_macs_per_second": entry.macs_per_second,
        "total_macs_per_second": manifest["costs"]["macs_per_second"]["total"],
        "nodes": manifest["settings"]["simplify"]["nodes_after"],
        "latency_ms": {name: min(values) for name, values in rounds.items()},
        "latency_ms_per_round": rounds,
        "macs_per_frame": {
            "fvcore": entry.macs_per_frame,
            "closed_form": entry.closed_form_macs_per_frame,
            "onnx_graph": graph["network"] / frames,
        },
    }
    if bench["baseline"]:
        row["baseline"] = {"nodes": baseline_nodes, **_against_baseline(bench)}
    return row


def _against_baseline(bench: dict) -> dict:
    """Previous format against the lean one: fastest p50s, and the median over rounds of the per-round ratio."""
    out = {}
    for suffix in ("", "_short"):
        old = [_p50(r) for r in bench["baseline" + suffix]]
        new = [_p50(r) for r in bench["lean" + suffix]]
        out["chunk" if not suffix else "short_chunk"] = {
            "baseline_ms": min(old),
            "lean_ms": min(new),
            "speedup_median_of_rounds": round(statistics.median(o / n for o, n in zip(old, new, strict=True)), 3),
        }
    return out


def _runtimes(bench: dict) -> dict:
    """The three implementations of one `s2g bench --compare torch --json` document, ONNX first."""
    return {"onnx": bench, **{row["kind"]: row for row in bench["compare"]}}


def _p50(result: dict) -> float:
    return result["latency_ms"]["p50"]


def _spearman(x: list[float], y: list[float]) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def _report(args, checkpoint, table, rows, ceiling, search_s, export_s, env) -> dict:
    macs = [r["network_macs_per_second"] for r in rows]
    onnx_ms = [r["latency_ms"]["onnx"] for r in rows]
    small, large = (
        min(rows, key=lambda r: r["network_macs_per_second"]),
        max(rows, key=lambda r: r["network_macs_per_second"]),
    )
    chunk = args.seconds

    def ms_per_gmac(r: dict, key: str = "network_macs_per_second") -> float:  # latency per billion MACs
        return r["latency_ms"]["onnx"] / (r[key] * chunk / 1e9)

    total = "total_macs_per_second"  # network + in-graph STFT/iSTFT: all the device computes

    # achieved: everything the graph computes (network + STFT/iSTFT) per second of wall time
    achieved = large["total_macs_per_second"] * chunk / (large["latency_ms"]["onnx"] / 1e3)
    agreement = max(
        abs(r["macs_per_frame"][k] - r["macs_per_frame"]["closed_form"]) / r["macs_per_frame"]["closed_form"]
        for r in rows
        for k in ("fvcore", "onnx_graph")
    )
    spreads = [max(v) / min(v) for r in rows for v in r["latency_ms_per_round"].values()]
    return {
        "command": "python benchmarks/speed.py " + shlex.join(sys.argv[1:]),
        "checkpoint": "untrained tiny supernet" if args.quick else str(checkpoint or "the bundled supernet"),
        "settings": {
            "chunk_seconds": chunk,
            "threads": args.threads,
            "warmup_runs": args.warmup_runs,
            "timed_runs": args.timed_runs,
            "min_duration_s": args.min_duration,
            "rounds": args.rounds,
            "statistic": "the fastest round's p50",
        },
        "rows": rows,
        "latency_vs_macs": {
            "spearman": round(_spearman(macs, onnx_ms), 3),
            "ms_per_gmac_smallest": round(ms_per_gmac(small), 2),
            "ms_per_gmac_largest": round(ms_per_gmac(large), 2),
            "smallest_over_largest": round(ms_per_gmac(small) / ms_per_gmac(large), 2),
            "smallest": small["subnet"],
            "largest": large["subnet"],
            "total_macs": {
                "spearman": round(_spearman([r[total] for r in rows], onnx_ms), 3),
                "ms_per_gmac_smallest": round(ms_per_gmac(small, total), 2),
                "ms_per_gmac_largest": round(ms_per_gmac(large, total), 2),
                "smallest_over_largest": round(ms_per_gmac(small, total) / ms_per_gmac(large, total), 2),
            },
        },
        "runtimes_vs_onnx": {
            name: round(statistics.median(r["latency_ms"][name] / r["latency_ms"]["onnx"] for r in rows), 2)
            for name in rows[0]["latency_ms"]
        },
        "ceiling": {
            "matmul_size": args.matmul_size,
            "matmul_macs_per_second": round(ceiling),
            "full_model_macs_per_second": round(achieved),
            "fraction_of_ceiling": round(achieved / ceiling, 4),
            "subnet": large["subnet"],
        },
        "toolkit_wall_s": {"search_warm": search_s, "export_mid_budget": export_s, "mid_budget": args.mid_budget},
        "mac_counts_max_relative_difference": agreement,
        # how much one subnet's p50 moved between rounds (max / min): the noise floor of every figure
        "round_spread": {
            "median": round(statistics.median(spreads), 3),
            "worst": round(max(spreads), 3),
        },
        "environment": env,
    }


def _markdown(r: dict) -> str:
    s, lv, c, w, env = r["settings"], r["latency_vs_macs"], r["ceiling"], r["toolkit_wall_s"], r["environment"]
    names = list(r["rows"][0]["latency_ms"])
    t = lv["total_macs"]
    lines = [
        "# Speed: latency against MACs, runtimes, and the toolkit",
        "",
        f"`{r['command']}` on {r['checkpoint']}; {s['chunk_seconds']} s of audio per run, batch 1, "
        f"{s['threads']} thread(s); p50 of at least {s['timed_runs']} runs and {s['min_duration_s']} s after "
        f"{s['warmup_runs']} warm-up runs, the fastest of {s['rounds']} rounds over all subnets; "
        "each runtime in its own process.",
        "",
        "| subnet | params | network MACs/s | total MACs/s | nodes | "
        + " | ".join(f"{n} p50 (ms)" for n in names)
        + " |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in names) + " |",
    ]
    for row in sorted(r["rows"], key=lambda row: row["network_macs_per_second"]):
        lat = " | ".join(f"{row['latency_ms'][n]:.2f}" for n in names)
        lines.append(
            f"| {row['subnet']} | {row['params']:,} | {row['network_macs_per_second'] / 1e6:,.1f}M | "
            f"{row['total_macs_per_second'] / 1e6:,.1f}M | {row['nodes']} | {lat} |"
        )
    lines += _baseline_lines(r)
    lines += [
        "",
        f"- Latency against network MACs: Spearman rank correlation **{lv['spearman']:.3f}** over "
        f"{len(r['rows'])} subnets. Latency per billion MACs: {lv['ms_per_gmac_smallest']:.1f} ms for the "
        f"smallest ({lv['smallest']}), {lv['ms_per_gmac_largest']:.1f} ms for the largest ({lv['largest']}): "
        f"{lv['smallest_over_largest']:.2f}x. Against total MACs (network + STFT/iSTFT, what the device computes): "
        f"Spearman **{t['spearman']:.3f}**, {t['ms_per_gmac_smallest']:.1f} against {t['ms_per_gmac_largest']:.1f} "
        f"ms per billion: {t['smallest_over_largest']:.2f}x.",
        "- Median latency relative to the exported ONNX: "
        + ", ".join(f"{n} {v:.2f}x" for n, v in r["runtimes_vs_onnx"].items())
        + ".",
        f"- The full model ({c['subnet']}, network + STFT/iSTFT) achieves {c['full_model_macs_per_second'] / 1e9:.2f} "
        f"GMAC/s in onnxruntime; a {c['matmul_size']}x{c['matmul_size']} float32 matmul reaches "
        f"{c['matmul_macs_per_second'] / 1e9:.1f} GMAC/s in torch with the same threads: "
        f"{100 * c['fraction_of_ceiling']:.1f}% of the ceiling.",
        f"- `s2g search --budget-macs {w['mid_budget']}` (warm cache): {w['search_warm']['median_s']:.2f} s; "
        f"`s2g export --budget-macs {w['mid_budget']}`: {w['export_mid_budget']['median_s']:.2f} s (median, fresh "
        "processes).",
        f"- Round-to-round spread of a subnet's p50 (max / min over {s['rounds']} rounds): median "
        f"{r['round_spread']['median']:.2f}x, worst {r['round_spread']['worst']:.2f}x.",
        f"- MAC counts per frame (fvcore with our RNN handles, closed form, ONNX graph) differ by at most "
        f"{100 * r['mac_counts_max_relative_difference']:.4f}% over all subnets.",
        "",
        f"Machine: {env['cpu_model']}, {env['usable_cpus']} usable CPUs, load {env['load_average_1m']}; "
        f"onnxruntime {env['versions']['onnxruntime']}, torch {env['versions']['torch']}; {env['date_utc']}.",
    ]
    return "\n".join(lines) + "\n"


def _baseline_lines(r: dict) -> list[str]:
    rows = [row for row in r["rows"] if "baseline" in row]
    if not rows:
        return []
    b, short = r["baseline"], r["baseline"]["short_chunk_s"]
    lines = [
        "",
        f"Lean graphs against the previous export format (the package as of `{b['revision']}`, same checkpoint "
        f"and subnets), ONNX p50 in ms, fastest round; speed-up = median over rounds of the per-round ratio, "
        "the two formats alternating which runs first:",
        "",
        f"| subnet | nodes before / now | {r['settings']['chunk_seconds']} s: before | now | speed-up | "
        f"{short * 1000:g} ms chunk: before | now | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        o, c, s = row["baseline"], row["baseline"]["chunk"], row["baseline"]["short_chunk"]
        lines.append(
            f"| {row['subnet']} | {o['nodes']} / {row['nodes']} | {c['baseline_ms']:.2f} | {c['lean_ms']:.2f} | "
            f"{c['speedup_median_of_rounds']:.2f}x | {s['baseline_ms']:.3f} | {s['lean_ms']:.3f} | "
            f"{s['speedup_median_of_rounds']:.2f}x |"
        )
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
