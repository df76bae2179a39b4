"""The machine and software a measurement ran on: for `s2g env`, benchmarks and release records.

Latencies mean nothing without the CPU, the cores the process may use, the load beside it and the
library versions that produced them, so every timing this toolkit writes carries this record.
"""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata

PACKAGES = ("s2g_deploy", "torch", "onnx", "onnxruntime", "onnxsim", "fvcore", "numpy", "safetensors")


def versions(*packages: str) -> dict[str, str]:
    """The installed version of each package, in the order given, read from package metadata (nothing is
    imported); ``"not installed"`` if absent. The one version collector: checkpoints, cost and latency
    caches, manifests, releases and ``s2g env`` all record versions through it."""
    found = {}
    for package in packages:
        if package == "s2g_deploy":  # this code, installed or not
            from s2g_deploy import __version__

            found[package] = __version__
            continue
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def package_versions() -> dict[str, str]:
    """Installed version of each package this toolkit measures with (``"not installed"`` if absent)."""
    return versions(*PACKAGES)


def cpu_model() -> str:
    """The CPU's marketing name, e.g. ``AMD EPYC 9554 64-Core Processor`` (``unknown`` if not found)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``taskset`` and containers shrink it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat's first line."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(fields) - fields[3] - fields[4], sum(fields)


def busy_cores(seconds: float = 0.3, ticks=_cpu_ticks, sleep=time.sleep) -> float:
    """Cores' worth of CPU the machine spends now, over ``seconds`` (the caller sleeps meanwhile, so it is
    the other processes' use). Where /proc/stat is missing, the 1-minute load average stands in, and
    where that is missing too, 0."""
    try:
        busy0, total0 = ticks()
        sleep(seconds)
        busy1, total1 = ticks()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)


def onnxruntime_providers() -> list[str]:
    """Execution providers compiled into the installed onnxruntime ([] if it is missing)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def environment() -> dict:
    """A JSON-ready record of this machine, its load and the library versions, stamped with UTC time."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        # other work on the machine shows up here; latencies are sensitive to it
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "versions": package_versions(),
        "onnxruntime_providers": onnxruntime_providers(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
