"""fp32 against int8-dynamic exports of the same subnet, per device profile, on this machine.

For each profile its static choice of the bundled supernet is exported twice with ``s2g export``'s code
(``--profile P --precision int8-dynamic``, latency budgets not measured, then the same subnet by name
at fp32, whose bytes may exceed the profile's byte budget), plus the 4x32
subnet at 1 s and one thread (the issue's speed claim). Reported per row: latency of each file on the
profile's workload (chunk length, threads), each measurement in a fresh process running only
onnxruntime (GUIDE section 4 item 6), warm-up runs first, the median over timed runs, rounds alternating
which file goes first, the median over rounds; the files' sizes; and the int8 export's own quality gate
(uSDR drop on the worst and on the mean held-out track, cSDR drop, SNR against the fp32 output, the
gate's wall time), as its manifest records it.

    python benchmarks/quantization.py                 # every shipped profile and 4x32 @ 1 s (about 6 min)
    python benchmarks/quantization.py --quick         # untrained tiny supernet, one profile: a smoke test

Results: stdout and ``benchmarks/results/quantization.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from results_io import log, machine_line, write_results

RESULTS = Path(__file__).resolve().parent / "results"
PROFILES = ("earbud", "watch", "phone", "laptop", "server")

TIMER = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
path, threads, inter, samples, warmup, runs = sys.argv[1], *map(int, sys.argv[2:7])
min_s, max_s = float(sys.argv[7]), float(sys.argv[8])
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = threads, inter
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
x = (np.random.RandomState(7).randn(1, samples) * 0.1).astype(np.float32)
inputs = session.get_inputs()
feed = {inputs[0].name: x}
# a stream export: its states start at zeros and every call carries them into the next, as on a device
feed.update({i.name: np.zeros([1 if isinstance(d, str) else d for d in i.shape], np.float32) for i in inputs[1:]})
names = [o.name for o in session.get_outputs()]
carry = [(k, n[len("next_"):]) for k, n in enumerate(names) if n.startswith("next_")]


def run():
    out = session.run(names, feed)
    for k, name in carry:
        feed[name] = out[k]


for _ in range(warmup):
    run()
times, start = [], time.perf_counter()
# at least `runs` runs and `min_s` seconds, unless a slow model passes `max_s` first (then at least 10 runs)
while (len(times) < runs or time.perf_counter() - start < min_s) and (
    len(times) < 10 or time.perf_counter() - start < max_s
):
    t = time.perf_counter()
    run()
    times.append((time.perf_counter() - t) * 1000)
print(json.dumps({"median_ms": sorted(times)[len(times) // 2], "runs": len(times)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny untrained supernet, one profile: a smoke test")
    args = parser.parse_args()

    from s2g_deploy import api
    from s2g_deploy.environment import environment
    from s2g_deploy.profiles import load_profile, streams

    with tempfile.TemporaryDirectory(prefix="s2g-quantization-") as tmp:
        tmp = Path(tmp)
        checkpoints, subnet_row = {False: None, True: None}, "4x32"  # offline, causal: None is the bundled one
        timing = {"warmup": 20, "runs": 200, "min_s": 1.5, "max_s": 4.0}
        if args.quick:
            checkpoints = {False: tmp / "tiny.safetensors", True: tmp / "tiny-causal.safetensors"}
            api.init("tiny", checkpoints[False], seed=0)
            api.init("tiny-causal", checkpoints[True], seed=0)
            args.profiles, args.rounds, subnet_row = "earbud", 2, "2x8"
            timing = {"warmup": 2, "runs": 5, "min_s": 0.0, "max_s": 1.0}
        cases = [(load_profile(name), None) for name in args.profiles.split(",")]
        cases.append((None, subnet_row))
        rows = [_row(api, checkpoints[streams(prof)], prof, subnet, tmp, args.rounds, timing) for prof, subnet in cases]
        report = {
            "command": " ".join(sys.argv),
            "checkpoint": "untrained tiny supernets" if args.quick else "the bundled supernets",
            "supernets": "stream profiles: the causal supernet, streamed (states carried); others: the offline one",
            "protocol": {
                "rounds": args.rounds,
                **timing,
                "statistic": "median of the per-round medians; each measurement a fresh onnxruntime-only process",
                "order": "alternating: fp32 first in even rounds, int8 first in odd rounds",
                "input": "seeded noise x 0.1, batch 1, the profile's chunk length (a stream: one call)",
            },
            "rows": rows,
            "environment": environment(),
        }
    write_results(args.results, "quantization_quick" if args.quick else "quantization", report, _markdown(report))
    return 0


def _row(api, checkpoint, prof, subnet, tmp: Path, rounds: int, timing: dict) -> dict:
    name = prof.name if prof else f"{subnet} @ 1 s"
    manifests = {}
    log(f"{name}: export int8-dynamic")
    manifests["int8-dynamic"] = api.export(
        checkpoint,
        subnet=subnet,
        profile=prof,
        precision="int8-dynamic",
        out=tmp / _dir(name, "int8-dynamic"),
        measure_latency=False,
    ).manifest
    # the same subnet in fp32, by name: at fp32 it may not meet the profile's byte budget (the earbud's)
    log(f"{name}: export fp32")
    same = manifests["int8-dynamic"]["subnet"]
    manifests["fp32"] = api.export(checkpoint, subnet=same, precision="fp32", out=tmp / _dir(name, "fp32")).manifest
    chunk = prof.workload.chunk_seconds if prof else 1.0
    threads = (prof.runtime.intra_op_threads, prof.runtime.inter_op_threads) if prof else (1, 1)
    samples = round(chunk * manifests["fp32"]["model"]["sample_rate_hz"])
    times: dict[str, list[float]] = {"fp32": [], "int8-dynamic": []}
    for r in range(rounds):
        order = ("fp32", "int8-dynamic") if r % 2 == 0 else ("int8-dynamic", "fp32")
        for precision in order:
            path = tmp / _dir(name, precision) / "model.onnx"
            times[precision].append(_time(path, threads, samples, timing))
        log(f"{name}: round {r + 1}: fp32 {times['fp32'][-1]:.3f} ms, int8 {times['int8-dynamic'][-1]:.3f} ms")
    fp32_ms, int8_ms = (statistics.median(times[p]) for p in ("fp32", "int8-dynamic"))
    m32, m8 = manifests["fp32"], manifests["int8-dynamic"]
    return {
        "case": name,
        "profile": prof.name if prof else None,
        "subnet": m8["subnet"],
        "chunk_seconds": chunk,
        "threads": {"intra_op": threads[0], "inter_op": threads[1]},
        "latency_ms": {"fp32": fp32_ms, "int8": int8_ms, "rounds": times},
        "int8_speedup": fp32_ms / int8_ms,
        "file_bytes": {"fp32": m32["model"]["file_bytes"], "int8": m8["model"]["file_bytes"]},
        "file_ratio": m32["model"]["file_bytes"] / m8["model"]["file_bytes"],
        "parameter_bytes": {
            "fp32": m32["costs"]["parameter_bytes"]["graph"],
            "int8": m8["costs"]["parameter_bytes"]["graph"],
        },
        "gate": m8["gate"],
        "quantization": {
            k: m8["quantization"][k] for k in ("reduce_range", "reduce_range_reason", "per_channel", "cpu")
        },
        "in_graph_basis_bytes_saved": m8["quantization"]["in_graph_basis"]["bytes_saved"],
    }


def _dir(name: str, precision: str) -> str:
    return f"{name.replace(' ', '_').replace('@', 'at')}-{precision}"


def _time(path: Path, threads: tuple[int, int], samples: int, timing: dict) -> float:
    counts = [timing[k] for k in ("warmup", "runs", "min_s", "max_s")]
    argv = [str(path), *map(str, threads), str(samples), *map(str, counts)]
    done = subprocess.run([sys.executable, "-c", TIMER, *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"timing {path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)["median_ms"]


def _markdown(report: dict) -> str:
    lines = [
        "# fp32 against int8-dynamic, per profile",
        "",
        f"{report['checkpoint']}; `{report['command']}`. Latency: ms per run of one chunk (batch 1) at the profile's "
        f"threads, {report['protocol']['statistic']}, {report['protocol']['rounds']} rounds, "
        f"{report['protocol']['order']}. Speed-up = fp32 / int8 (above 1: int8 faster). Quality: the int8 "
        "export's own gate against its fp32 model (uSDR drop on the worst and the mean held-out track, cSDR drop, "
        "output SNR against fp32; negative drop: int8 scored higher).",
        "",
        "| case | subnet | chunk | threads | fp32 ms | int8 ms | int8 speed-up | fp32 file | int8 file | smaller | "
        "params fp32 -> int8 | uSDR drop worst / mean | cSDR drop | SNR vs fp32 | gate data | gate s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in report["rows"]:
        g, d = r["gate"], r["gate"]["drop"]
        lines.append(
            f"| {r['case']} | {r['subnet']} | {r['chunk_seconds']:g} s | {r['threads']['intra_op']} | "
            f"{r['latency_ms']['fp32']:.3f} | {r['latency_ms']['int8']:.3f} | {r['int8_speedup']:.2f}x | "
            f"{r['file_bytes']['fp32']:,} | {r['file_bytes']['int8']:,} | {r['file_ratio']:.2f}x | "
            f"{r['parameter_bytes']['fp32']:,} -> {r['parameter_bytes']['int8']:,} | "
            f"{d['usdr_db_worst_track']:.3f} / {d['usdr_db']:.3f} dB | {d['csdr_db']:.3f} dB | "
            f"{g['snr_db_vs_fp32']:.1f} dB | {g['data']['tracks']} x {g['data']['seconds']:g} s, {g['data']['kind']} | "
            f"{g['seconds']:.1f} |"
        )
    q = report["rows"][0]["quantization"]
    lines += [
        "",
        f"Quantization: per-channel {q['per_channel']}, reduce_range {q['reduce_range']} ({q['reduce_range_reason']}). "
        "File sizes: the int8 file computes the STFT/iSTFT basis in the graph (float64, cast to float32, folded "
        f"at session load) instead of storing it ({report['rows'][0]['in_graph_basis_bytes_saved']:,} bytes saved "
        "at this n_fft); 'params' are the network's parameter bytes alone.",
        "",
        machine_line(report["environment"]),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
