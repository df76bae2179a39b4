"""onnxruntime sessions built from a profile's runtime settings, with no silent provider fallback.

Every session this package creates comes from :func:`build_session`: the benchmark, ``s2g separate``
and the export's parity check differ only in their settings. onnxruntime, given a provider it was not
built with, logs a warning and runs on the CPU; a benchmark of that would measure the wrong device.
So the provider is checked against the installed build before the session is created, and against
the providers the session actually got afterwards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from s2g_deploy.errors import InputError
from s2g_deploy.profiles import GRAPH_OPTIMIZATION_LEVELS, RuntimeSettings

CPU = "CPUExecutionProvider"
ALLOW_SPINNING = "session.intra_op.allow_spinning"  # onnxruntime's session config key


@dataclass(frozen=True)
class SessionSettings:
    """How one session runs: provider, threads (None: onnxruntime's default), graph optimisation and
    whether idle intra-op threads spin (onnxruntime's default; off: they sleep, saving CPU between runs)."""

    execution_provider: str = CPU
    intra_op_threads: int | None = None
    inter_op_threads: int | None = 1
    graph_optimization_level: str = "all"  # a key of profiles.GRAPH_OPTIMIZATION_LEVELS
    deterministic: bool = False  # onnxruntime's deterministic kernels (reproducible parity numbers)
    allow_spinning: bool = True  # session.intra_op.allow_spinning; matters only with intra_op_threads > 1

    @classmethod
    def of(cls, runtime: RuntimeSettings) -> SessionSettings:
        """The settings a device profile's ``[runtime]`` table asks for."""
        return cls(
            execution_provider=runtime.execution_provider,
            intra_op_threads=runtime.intra_op_threads,
            inter_op_threads=runtime.inter_op_threads,
            graph_optimization_level=runtime.graph_optimization_level,
            allow_spinning=runtime.allow_spinning,
        )

    def to_dict(self) -> dict:
        return {
            "execution_provider": self.execution_provider,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "graph_optimization_level": self.graph_optimization_level,
            "deterministic": self.deterministic,
            "allow_spinning": self.allow_spinning,
        }


def check_provider(provider: str) -> None:
    """Raise :class:`InputError` (exit 2) listing the available providers if ``provider`` is not one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in available:
        raise InputError(
            f"runtime.execution_provider: {provider} is not available in this onnxruntime "
            f"{ort.__version__} build; available: {', '.join(available)} (install the onnxruntime package "
            "built for that provider, or choose an available one in the profile)"
        )


def build_session(model: str | os.PathLike | bytes, settings: SessionSettings = SessionSettings()):
    """An ``onnxruntime.InferenceSession`` for ``model`` (a path or serialized bytes) with ``settings``.

    Raises :class:`InputError` when the provider is not installed, or when onnxruntime falls back to
    another provider than the one requested.
    """
    import onnxruntime as ort

    check_provider(settings.execution_provider)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about node placement are not ours to show
    options.use_deterministic_compute = settings.deterministic
    if settings.intra_op_threads is not None:
        options.intra_op_num_threads = settings.intra_op_threads
    if settings.inter_op_threads is not None:
        options.inter_op_num_threads = settings.inter_op_threads
    level = GRAPH_OPTIMIZATION_LEVELS[settings.graph_optimization_level]
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    # always set, so a session's options say what it ran with ("1" is onnxruntime's default)
    options.add_session_config_entry(ALLOW_SPINNING, "1" if settings.allow_spinning else "0")
    source = model if isinstance(model, bytes) else str(Path(model))
    session = ort.InferenceSession(source, options, providers=[settings.execution_provider])
    used = session.get_providers()
    if not used or used[0] != settings.execution_provider:
        raise InputError(
            f"runtime.execution_provider: requested {settings.execution_provider}, but onnxruntime runs the "
            f"model on {', '.join(used) or 'nothing'}; refusing to measure the wrong device"
        )
    return session
