"""Which onnxruntime session options matter for small recurrent models? Latency and CPU per call, measured.

Graphs: subnets 1x8, 2x16 and 4x32 of the bundled offline supernet (waveform exports, 1.0 s chunks,
batch 1, fp32) and, for each streaming device (earbud, watch, phone), the bundled causal supernet's stream
export as ``s2g export --profile <device>`` picks it (``api.export``, the CLI's own call, at the profile's
precision; the profile's static choice unless ``--latency-aware``, which also calibrates and measures as
the CLI does: the latency budgets are far from binding, see streaming.md, so the subnet is the same).

Settings: graph_optimization_level in {disable, basic, extended, all} x {1 intra-op thread, 2 threads with
spinning on, 2 threads with spinning off}, plus the reference if the grid lacks it. The reference is
what the shipped profile runs now: the device's own [runtime] for a stream, the laptop's (``--reference``)
for the offline graphs. Every setting of every graph is measured by ``s2g bench``'s own code
(``runtime.bench.bench_model`` on a profile TOML with those settings and no budgets): a fresh child
process per measurement, untimed warm-up, then at least ``--timed-runs`` runs and ``--min-duration``
seconds; a stream runs one call of its profile's hops per run with the states carried. The only change
is the child's entry point, which also reads the process's CPU time (all threads) over the timing
loop: CPU ms per call = that / the calls it made (first run and warm-up included, a few percent at
most), since spinning trades CPU for latency. Rounds run every setting of every graph, the order of
the settings reversed every other round; a figure is the median over rounds, a ratio the median over
rounds of the per-round ratio to the reference.

    python benchmarks/session_options.py          # 6 graphs x 12 settings x 3 rounds: about 15-20 minutes
    python benchmarks/session_options.py --quick  # untrained tiny supernets, 2 graphs, 2 levels: a smoke test

Writes benchmarks/results/session_options.{md,json} (``--quick``: session_options_quick; or --results DIR).
Timing on a quiet machine only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import log, machine_line, write_results

RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = ("disable", "basic", "extended", "all")
STREAM_PROFILES = ("earbud", "watch", "phone")


@dataclasses.dataclass(frozen=True)
class Setting:
    level: str
    threads: int
    spinning: bool

    @property
    def label(self) -> str:
        spin = "" if self.threads == 1 else f", spinning {'on' if self.spinning else 'off'}"
        return f"{self.level}, {self.threads} thread{'s' if self.threads > 1 else ''}{spin}"

    def runtime(self) -> dict:
        return {
            "graph_optimization_level": self.level,
            "intra_op_threads": self.threads,
            "allow_spinning": self.spinning,
        }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return _child()
    from s2g_deploy import api
    from s2g_deploy.bundled import BUNDLED_CAUSAL_SUPERNET, BUNDLED_SUPERNET
    from s2g_deploy.environment import environment
    from s2g_deploy.profiles import load_profile

    levels, threads = args.levels.split(","), [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory(prefix="s2g-session-options-") as tmp:
        tmp = Path(tmp)
        offline, causal = args.checkpoint or BUNDLED_SUPERNET, args.causal_checkpoint or BUNDLED_CAUSAL_SUPERNET
        subnets = args.subnets.split(",")
        streams = [load_profile(name) for name in args.profiles.split(",") if name]
        if args.quick:
            offline, causal = tmp / "tiny.safetensors", tmp / "tiny-causal.safetensors"
            api.init("tiny", offline, seed=0)
            api.init("tiny-causal", causal, seed=0)
            subnets, streams, levels = ["2x8"], [_quick_stream(load_profile("earbud"))], ["disable", "all"]
            args.warmup_runs, args.timed_runs, args.min_duration, args.rounds = 2, 10, 0.0, 2
        reference = load_profile(args.reference)
        # the export's parity check at its default lengths, or short ones for the smoke test
        parity = {"parity_seconds": (0.2, 0.45, 1.1)} if args.quick else {}
        graphs = [_offline_graph(api, offline, s, args.seconds, reference, tmp, parity) for s in subnets]
        graphs += [_stream_graph(api, causal, prof, args.latency_aware, tmp, parity) for prof in streams]
        grid = [
            Setting(level, t, spin)
            for level in levels
            for t in threads
            for spin in ((True,) if t == 1 else (True, False))
        ]
        for g in graphs:
            g["settings"] = list(dict.fromkeys([*grid, g["reference"]]))  # the reference, once, even off the grid
        measured = _rounds(args, graphs, tmp)
        report = _report(args, graphs, measured, environment())
    write_results(args.results, "session_options_quick" if args.quick else "session_options", report, _markdown(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="offline supernet (default: the bundled one)")
    p.add_argument("--causal-checkpoint", type=Path, default=None, help="causal supernet (default: the bundled one)")
    p.add_argument("--subnets", default="1x8,2x16,4x32", help="offline subnets, exported as waveform models")
    p.add_argument("--seconds", type=float, default=1.0, help="audio per run of the offline graphs (the chunk)")
    p.add_argument("--profiles", default=",".join(STREAM_PROFILES), help="stream profiles ('' for none)")
    p.add_argument("--reference", default="laptop", help="profile whose [runtime] the offline graphs are compared to")
    p.add_argument("--levels", default=",".join(LEVELS), help="graph optimisation levels")
    p.add_argument("--threads", default="1,2", help="intra-op thread counts (spinning on and off above 1)")
    p.add_argument("--warmup-runs", type=int, default=20)
    p.add_argument("--timed-runs", type=int, default=100)
    p.add_argument("--min-duration", type=float, default=2.0, help="seconds of timed runs, at least")
    p.add_argument("--rounds", type=int, default=3, help="measure every setting of every graph this many times")
    p.add_argument("--latency-aware", action="store_true", help="export streams exactly as the CLI (calibrating)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny untrained supernets, few runs: a smoke test")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # the measuring process
    return p


# ---- the graphs ------------------------------------------------------------------------------------


def _setting_of(runtime) -> Setting:
    return Setting(runtime.graph_optimization_level, runtime.intra_op_threads, runtime.allow_spinning)


def _offline_graph(api, checkpoint, subnet: str, seconds: float, reference, tmp: Path, parity: dict) -> dict:
    log(f"{subnet}: export (waveform)")
    out = tmp / f"offline-{subnet}"
    m = api.export(checkpoint, subnet=subnet, out=out, **parity).manifest
    base = {
        "schema_version": 1,
        "name": "session-options",
        "description": f"benchmarks/session_options.py: {subnet}, {seconds} s chunks",
        "budgets": {},
        "runtime": {**dataclasses.asdict(reference.runtime), "precision": m["precision"]},
        "workload": {"mode": "chunk", "chunk_seconds": seconds, "batch": 1},
    }
    what = f"offline {subnet}, {seconds:g} s chunks"
    return _graph(what, out, m, base, _setting_of(reference.runtime), f"{reference.name}'s")


def _stream_graph(api, checkpoint, prof, latency_aware: bool, tmp: Path, parity: dict) -> dict:
    log(f"{prof.name}: export (stream, {prof.runtime.precision}{', latency-aware' if latency_aware else ''})")
    out = tmp / f"stream-{prof.name}"
    m = api.export(checkpoint, profile=prof, out=out, measure_latency=latency_aware, calibrate=True, **parity).manifest
    base = {
        "schema_version": 1,
        "name": "session-options",
        "description": f"benchmarks/session_options.py: profile {prof.name}'s stream",
        "budgets": {},
        "runtime": dataclasses.asdict(prof.runtime),
        "workload": dataclasses.asdict(prof.workload),
    }
    what = f"{prof.name} stream {m['subnet']}, {1000 * prof.workload.chunk_seconds:g} ms calls"
    return _graph(what, out, m, base, _setting_of(prof.runtime), f"{prof.name}'s")


def _graph(what: str, out: Path, m: dict, base: dict, reference: Setting, reference_of: str) -> dict:
    return {
        "graph": what,
        "dir": out,
        "subnet": m["subnet"],
        "io": m["settings"]["io"],
        "precision": m["precision"],
        "nodes": m["settings"]["simplify"]["nodes_after"],
        "base": base,
        "reference": reference,
        "reference_of": reference_of,
    }


def _quick_stream(prof):
    """The earbud with the tiny preset's 2 ms hops (two per call) at fp32 (an untrained model has nothing to gate)."""
    runtime = dataclasses.replace(prof.runtime, precision="fp32")
    workload = dataclasses.replace(prof.workload, chunk_seconds=0.004)
    return dataclasses.replace(prof, runtime=runtime, workload=workload)


# ---- measuring -------------------------------------------------------------------------------------


def _profile_toml(path: Path, base: dict, setting: Setting, args) -> Path:
    """``base`` (budgets, runtime, workload) with ``setting``'s runtime and this script's protocol, as TOML."""
    doc = {
        **base,
        "runtime": {**base["runtime"], **setting.runtime()},
        "measurement": {
            "warmup_runs": args.warmup_runs,
            "timed_runs": args.timed_runs,
            "min_duration_s": args.min_duration,
            "statistic": "p50",
        },
    }
    lines = [f"{k} = {json.dumps(doc[k])}" for k in ("schema_version", "name", "description")]
    for section in ("budgets", "runtime", "workload", "measurement"):
        lines.append(f"\n[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in doc[section].items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def _rounds(args, graphs: list[dict], tmp: Path) -> dict:
    """{(graph index, setting): [one result per round]}: every setting of every graph once per round."""
    from s2g_deploy.runtime import bench

    measured: dict = {}
    last: dict = {}

    def measure_with_cpu(job: dict, timeout_s: float | None = None) -> dict:  # bench's measure, this entry point
        command = [sys.executable, str(Path(__file__).resolve()), "--child"]
        done = subprocess.run(command, input=json.dumps(job), capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise SystemExit(f"measuring {job['model']} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        last.clear()
        last.update(json.loads(done.stdout))
        return dict(last)

    bench.measure = measure_with_cpu  # measure_model's child: the same job, the same run_job, plus CPU time
    for round_ in range(args.rounds):
        for gi, g in enumerate(graphs):
            order = g["settings"][::-1] if round_ % 2 else g["settings"]
            log(f"round {round_ + 1}/{args.rounds}: {g['graph']}: {len(order)} settings")
            for setting in order:
                toml = _profile_toml(tmp / "session-options.toml", g["base"], setting, args)
                report = bench.bench_model(g["dir"], toml, write_manifest=False)
                s = report.session
                asked = (s["graph_optimization_level"], s["intra_op_threads"], s["allow_spinning"])
                if asked != (setting.level, setting.threads, setting.spinning):
                    raise SystemExit(f"{g['graph']}: the session ran {asked}, not {setting}")
                measured.setdefault((gi, setting), []).append(
                    {
                        "p50_ms": report.latency_ms["p50"],
                        "p99_ms": report.latency_ms["p99"],
                        "mean_ms": report.latency_ms["mean"],
                        "runs": report.protocol["runs"],
                        "cpu_ms_per_call": 1000 * last["cpu_s"] / last["calls"],
                        "cpu_cores": last["cpu_s"] / last["wall_s"],  # CPUs kept busy while it ran
                        "notes": list(report.notes),
                    }
                )
    return measured


def _child() -> int:
    """The measuring process: ``runtime.measure.run_job`` on the job from stdin, with the process CPU time
    (every thread) over its timing loop beside the answer."""
    from s2g_deploy.runtime import measure

    loop, cpu = measure.timing_loop, {}

    def timing_loop(run, warmup_runs, *rest, **kw):
        wall, start = time.perf_counter(), time.process_time()
        first_ms, samples = loop(run, warmup_runs, *rest, **kw)
        cpu.update(
            cpu_s=time.process_time() - start, wall_s=time.perf_counter() - wall, calls=1 + warmup_runs + len(samples)
        )
        return first_ms, samples

    measure.timing_loop = timing_loop
    answer = measure.run_job(json.loads(sys.stdin.read()))
    sys.stdout.write(json.dumps({**answer, **cpu}))
    return 0


# ---- the report ------------------------------------------------------------------------------------


def _report(args, graphs: list[dict], measured: dict, env: dict) -> dict:
    out, spreads = [], []
    for gi, g in enumerate(graphs):
        ref = measured[(gi, g["reference"])]
        rows = []
        for setting in g["settings"]:
            rounds = measured[(gi, setting)]
            spreads.append(max(r["p50_ms"] for r in rounds) / min(r["p50_ms"] for r in rounds))

            rows.append(
                {
                    "setting": setting.label,
                    **dataclasses.asdict(setting),
                    "reference": setting == g["reference"],
                    "p50_ms": _median(rounds, "p50_ms"),
                    "p99_ms": _median(rounds, "p99_ms"),
                    "p50_ratio": _ratio(rounds, ref, "p50_ms"),
                    "p99_ratio": _ratio(rounds, ref, "p99_ms"),
                    "cpu_ms_per_call": _median(rounds, "cpu_ms_per_call"),
                    "cpu_ratio": _ratio(rounds, ref, "cpu_ms_per_call"),
                    "cpu_cores": _median(rounds, "cpu_cores"),
                    "runs": [r["runs"] for r in rounds],
                    "rounds": {k: [r[k] for r in rounds] for k in ("p50_ms", "p99_ms", "cpu_ms_per_call")},
                    "notes": sorted({n for r in rounds for n in r["notes"]}),
                }
            )
        best = min(rows, key=lambda r: r["p50_ms"])
        out.append(
            {
                **{k: g[k] for k in ("graph", "subnet", "io", "precision", "nodes", "reference_of")},
                "reference": g["reference"].label,
                "fastest_p50": best["setting"],
                "rows": rows,
            }
        )
    return {
        "command": "python benchmarks/session_options.py " + shlex.join(sys.argv[1:]),
        "supernets": "untrained tiny supernets" if args.quick else "the bundled supernets (or as given)",
        "protocol": {
            "warmup_runs": args.warmup_runs,
            "timed_runs": args.timed_runs,
            "min_duration_s": args.min_duration,
            "rounds": args.rounds,
            "inter_op_threads": 1,
            "statistic": "median over rounds; ratios: median over rounds of the per-round ratio to the reference",
        },
        "graphs": out,
        # how much one setting's p50 moved between rounds (max / min): the noise floor of every ratio
        "round_spread": {"median": round(statistics.median(spreads), 3), "worst": round(max(spreads), 3)},
        "environment": env,
    }


def _median(rounds: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def _ratio(rounds: list[dict], reference: list[dict], key: str) -> float:
    """The median over rounds of this round's figure over the reference's in the same round."""
    return round(statistics.median(r[key] / q[key] for r, q in zip(rounds, reference, strict=True)), 3)


def _markdown(report: dict) -> str:
    p = report["protocol"]
    lines = [
        "# onnxruntime session options for small recurrent models",
        "",
        f"`{report['command']}` on {report['supernets']}. Each setting measured by `s2g bench`'s code in a fresh "
        f"process: {p['warmup_runs']} warm-up runs, then at least {p['timed_runs']} runs and {p['min_duration_s']} s; "
        f"{p['inter_op_threads']} inter-op thread; a stream runs one call per run with its states carried. Figures: "
        f"median over {p['rounds']} rounds (settings in alternating order); ratio: median of the per-round ratio to "
        "the reference (the profile's current setting, marked *). CPU: process CPU time (all threads) per call over "
        "the timing loop, back to back; cores: CPU time / wall time.",
    ]
    for g in report["graphs"]:
        lines += [
            "",
            f"## {g['graph']} ({g['precision']}, {g['nodes']} nodes)",
            "",
            f"Reference: {g['reference']} ({g['reference_of']}); fastest p50: {g['fastest_p50']}.",
            "",
            "| setting | p50 (ms) | p99 (ms) | p50 / ref | p99 / ref | CPU per call (ms) | CPU / ref | cores |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in g["rows"]:
            mark = " *" if r["reference"] else ""
            lines.append(
                f"| {r['setting']}{mark} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p50_ratio']:.2f} | "
                f"{r['p99_ratio']:.2f} | {r['cpu_ms_per_call']:.3f} | {r['cpu_ratio']:.2f} | {r['cpu_cores']:.2f} |"
            )
    notes = sorted({n for g in report["graphs"] for r in g["rows"] for n in r["notes"]})
    spread = report["round_spread"]
    lines += [
        "",
        f"Round-to-round spread of a setting's p50 (max / min over {p['rounds']} rounds): median "
        f"{spread['median']:.2f}x, worst {spread['worst']:.2f}x: ratios closer to 1 than that are noise.",
        *(f"- {n}" for n in notes),
        "",
        machine_line(report["environment"]),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
