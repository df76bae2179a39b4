"""The timing loop, run in a process of its own: ``python -m s2g_deploy.runtime.measure`` (JSON in, JSON out).

Why a child process per measurement: onnxruntime's intra-op threads keep spinning after ``run()``
returns and slow whatever else runs in the process, torch's thread pool does the same to onnxruntime,
and the first runs of a fresh session are much slower than later ones (GUIDE section 4 item 6). A
process that loads exactly one model and only times it sees none of that, and its peak resident
memory is that of the model under test (plus the interpreter and the runtime library).

The parent sends a job (:func:`measure`); the child builds the input, runs the model once (the
first-run latency, reported on its own), ``warmup_runs`` more times untimed, then times single runs
until it has at least ``timed_runs`` samples *and* ``min_duration_s`` seconds of them.
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from s2g_deploy import errors

KINDS = ("onnx", "torch_dense", "torch_supernet")
MAX_RUNS = 1_000_000  # a guard against a protocol of 0 timed runs and 0 seconds
INPUT_SCALE = 0.1  # audio-scale noise: about -20 dBFS RMS, peaks well inside [-1, 1]


def timing_loop(
    run: Callable[[], Any],
    warmup_runs: int,
    timed_runs: int,
    min_duration_s: float,
    cap_s: float | None = None,
    cap_min_runs: int = 20,
) -> tuple:
    """``(first_ms, samples_ms)``: one run timed alone, ``warmup_runs`` untimed, then the timed runs.

    Runs until there are at least ``timed_runs`` samples and their sum is at least ``min_duration_s``;
    with ``cap_s`` (calibration only: a model that takes seconds per run would take minutes per
    subnet), also stops once the samples sum to ``cap_s`` seconds and number at least ``cap_min_runs``.
    """
    clock = time.perf_counter_ns
    t = clock()
    run()
    first_ms = (clock() - t) / 1e6
    for _ in range(warmup_runs):
        run()
    samples: list[float] = []
    total_ns, min_ns, cap_ns = 0, min_duration_s * 1e9, (cap_s or math.inf) * 1e9
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection pause is the interpreter's, not the model's
    try:
        while (len(samples) < timed_runs or total_ns < min_ns) and len(samples) < MAX_RUNS:
            if total_ns >= cap_ns and len(samples) >= cap_min_runs:
                break
            t = clock()
            run()
            elapsed = clock() - t
            total_ns += elapsed
            samples.append(elapsed / 1e6)
    finally:
        if gc_was_enabled:
            gc.enable()
    return first_ms, samples


def make_input(shape: list[int], seed: int):
    """Seeded float32 noise of ``shape`` at audio scale (values do not change the work done)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return (INPUT_SCALE * rng.standard_normal(shape)).clip(-1, 1).astype(np.float32)


def _peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS)
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _runner(job: dict) -> tuple[Callable[[], Any], dict]:
    """A zero-argument callable that runs the model once on the job's input, and facts about it."""
    x = make_input(job["input_shape"], job.get("seed", 0))
    settings = job["session"]
    if job["kind"] == "onnx":
        from s2g_deploy.runtime.session import SessionSettings, build_session

        session = build_session(job["model"], SessionSettings(**settings))
        feed = {session.get_inputs()[0].name: x}
        if len(session.get_inputs()) > 1:
            return _stream_call(session, feed), {"providers": session.get_providers()}
        return (lambda: session.run(None, feed)), {"providers": session.get_providers()}
    import torch

    from s2g_deploy.checkpoint import load_checkpoint
    from s2g_deploy.models.elastic import ElasticBSRNN
    from s2g_deploy.subnet import Subnet

    torch.set_num_threads(settings["intra_op_threads"] or torch.get_num_threads())
    torch.set_num_interop_threads(settings["inter_op_threads"] or 1)
    model = load_checkpoint(job["model"]).model.eval()
    subnet = model.space.check(Subnet.parse(job["subnet"])) if isinstance(model, ElasticBSRNN) else None
    wav = torch.from_numpy(x)
    if job["kind"] == "torch_supernet":

        def forward(w):
            return model(w, subnet)
    else:
        if subnet is not None:  # no dense file at hand: cut it out here, and let the supernet go
            from s2g_deploy.slicing import slice_subnet

            model = slice_subnet(model, subnet).eval()
        forward = model  # type: ignore[assignment]

    def run():
        with torch.inference_mode():
            return forward(wav)

    return run, {"providers": ["torch " + torch.__version__], "torch_threads": torch.get_num_threads()}


def _stream_call(session, feed: dict) -> Callable[[], Any]:
    """One call of a stream export, its states carried from the call before (zeros at first), as a
    device runs it: the same chunk each call, the recurrent state evolving."""
    from s2g_deploy.runtime.stream import NEXT, session_step, zero_states

    _, shapes = session_step(session)
    batch = next(iter(feed.values())).shape[0]
    states = zero_states(shapes, batch)
    names = [o.name for o in session.get_outputs()]
    carried = [(i, name[len(NEXT) :]) for i, name in enumerate(names) if name.startswith(NEXT)]

    def run():
        out = session.run(names, {**feed, **states})
        for i, name in carried:
            states[name] = out[i]
        return out

    return run


def run_job(job: dict) -> dict:
    """Measure one job in this process; returns first-run latency, samples (ms) and memory (bytes)."""
    if job["kind"] not in KINDS:
        raise errors.InputError(f"measurement kind must be one of {', '.join(KINDS)}, got {job['kind']!r}")
    rss_before = _peak_rss_bytes()
    run, facts = _runner(job)
    first_ms, samples = timing_loop(run, job["warmup_runs"], job["timed_runs"], job["min_duration_s"], job.get("cap_s"))
    return {
        "first_ms": first_ms,
        "samples_ms": samples,
        "peak_rss_bytes": _peak_rss_bytes(),
        "peak_rss_before_model_bytes": rss_before,
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        **facts,
    }


STATISTICS = ("first", "mean", "std", "min", "p50", "p90", "p99", "max")


def latency_statistics(first_ms: float, samples_ms: Sequence[float]) -> dict[str, float]:
    """First-run latency and mean, std, min, p50, p90, p99, max of ``samples_ms`` (all in ms)."""
    import numpy as np

    if not samples_ms:
        raise ValueError("no timed runs to summarise")
    x = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {
        "first": float(first_ms),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "min": float(x.min()),
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(x.max()),
    }


def job_for(kind: str, model: Any, input_shape: list[int], profile: Any, **extra: Any) -> dict:
    """The job that measures ``model`` as ``profile`` runs it (its session settings and protocol);
    ``extra`` adds keys (``cap_s``, ``subnet``)."""
    from s2g_deploy.runtime.session import SessionSettings

    m = profile.measurement
    return {
        "kind": kind,
        "model": str(model),
        "input_shape": list(input_shape),
        "session": SessionSettings.of(profile.runtime).to_dict(),
        "warmup_runs": m.warmup_runs,
        "timed_runs": m.timed_runs,
        "min_duration_s": m.min_duration_s,
        "seed": 0,
        **extra,
    }


def measure(job: dict, timeout_s: float | None = None) -> dict:
    """Run ``job`` in a fresh Python process and return its result; its errors are raised here again."""
    command = [sys.executable, "-m", "s2g_deploy.runtime.measure"]
    try:
        done = subprocess.run(command, input=json.dumps(job), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise errors.VerificationError(f"measuring {job['model']} took longer than {timeout_s:g} s") from None
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise errors.S2GError(f"the measurement process for {job['model']} failed: {tail[0]}") from None
    if "error" in answer:
        cls = getattr(errors, answer["error"]["type"], errors.S2GError)
        raise cls(answer["error"]["message"])
    return answer


def main() -> int:
    job = json.loads(sys.stdin.read())
    try:
        answer = run_job(job)
    except errors.S2GError as exc:
        answer = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    except Exception as exc:  # any other failure, as one line for the parent to show
        answer = {"error": {"type": "S2GError", "message": f"{type(exc).__name__}: {exc}".splitlines()[0]}}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
