"""Device profiles: one TOML file per device, with the budgets, runtime, workload and measurement it implies.

Schema version 1 (every key below; unknown keys are errors, every problem is reported at once with its
key path)::

    schema_version = 1
    name = "phone"                      # lower-case slug; a shipped profile is named as its file
    description = "..."                 # what the device is, and why these budgets

    [budgets]                           # each optional; search uses the static ones (params, MACs)
    max_params = 5_000_000              # or "5M"
    max_macs_per_second = 500e6         # network MACs per second of audio, or "500M"
    latency_ms = 32.0                   # limit on the time to process one chunk (needs latency_statistic)
    latency_statistic = "p99"           # p50 | p90 | p99 | mean | max, over the timed runs
    max_real_time_factor = 0.5          # processing time / audio time of one run (chunk_seconds x batch)
    max_model_bytes = "128K"            # bytes of the network's parameters at runtime.precision

    [runtime]                           # how onnxruntime runs the exported model
    execution_provider = "CPUExecutionProvider"   # must be available at run time: no silent CPU fallback
    intra_op_threads = 2                # >= 1 (0, onnxruntime's "all cores", is not reproducible)
    inter_op_threads = 1
    graph_optimization_level = "all"    # disable | basic | extended | all
    allow_spinning = true               # optional: intra-op threads spin-wait for work between runs
                                        # (onnxruntime's default); false trades latency for idle CPU.
                                        # Only matters with intra_op_threads > 1
    precision = "fp32"                  # fp32 | int8-dynamic (onnxruntime dynamic quantization) | fp16
                                        # (fp16: not on CPUExecutionProvider, where it runs slower than fp32)
    max_quality_drop_db = 0.5           # optional: the largest uSDR drop a quantized export may have
                                        # against its own fp32 model (the quality gate); default 0.5
    opset = 17                          # >= 17 (the ONNX STFT op)

    [workload]
    mode = "chunk"                      # chunk (default) | offline | stream: see Workload
    chunk_seconds = 0.064               # audio per run and stream (stream: per call, whole hops)
    batch = 1                           # streams per run

    [measurement]                       # the benchmark protocol
    warmup_runs = 10                    # untimed runs first (the first runs are much slower)
    timed_runs = 100                    # at least this many timed runs ...
    min_duration_s = 2.0                # ... and at least this long in total
    statistic = "p50"                   # the headline latency statistic a report shows

Shipped profiles live in the repository's top-level ``profiles/`` directory; a wheel carries copies in
``s2g_deploy/_profiles/`` (``setup.py`` copies them at build time), so both a source checkout (editable
install) and an installed wheel find them by name.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from s2g_deploy.errors import InputError, ProfileError
from s2g_deploy.precision import CPU, PRECISIONS
from s2g_deploy.units import parse_size

SCHEMA_VERSION = 1
WORKLOAD_MODES = ("chunk", "offline", "stream")
STATISTICS = ("p50", "p90", "p99", "mean", "max")
DEFAULT_MAX_QUALITY_DROP_DB = 0.5  # the quality gate's default: uSDR dB against the export's own fp32 model
MIN_OPSET = 17  # the first opset with the STFT op
# profile spelling -> onnxruntime.GraphOptimizationLevel member
GRAPH_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
# onnxruntime.get_all_providers() of onnxruntime 1.32: every provider name a build can have. Whether the
# installed build has it is checked when a session is created, which fails rather than falling back.
EXECUTION_PROVIDERS = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "VitisAIExecutionProvider",
    "QNNExecutionProvider",
    "NnapiExecutionProvider",
    "VSINPUExecutionProvider",
    "JsExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "RknpuExecutionProvider",
    "WebNNExecutionProvider",
    "WebGpuExecutionProvider",
    "XnnpackExecutionProvider",
    "CANNExecutionProvider",
    "AzureExecutionProvider",
)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class ProfileBudgets:
    """Limits a subnet must meet on the device. None: no limit."""

    max_params: int | None = None
    max_macs_per_second: int | None = None  # network MACs per second of audio
    latency_ms: float | None = None  # per chunk, judged by latency_statistic
    latency_statistic: str | None = None
    max_real_time_factor: float | None = None  # processing time / audio time (chunk_seconds x batch)
    max_model_bytes: int | None = None  # bytes of the network's parameters at the runtime's precision


@dataclass(frozen=True)
class RuntimeSettings:
    """How onnxruntime runs the exported model on the device."""

    execution_provider: str
    intra_op_threads: int
    inter_op_threads: int
    graph_optimization_level: str  # one of GRAPH_OPTIMIZATION_LEVELS
    precision: str  # one of PRECISIONS
    opset: int
    max_quality_drop_db: float = DEFAULT_MAX_QUALITY_DROP_DB  # quality gate of quantized exports, uSDR dB
    allow_spinning: bool = True  # intra-op threads spin-wait between runs (onnxruntime's default)

    @property
    def ort_graph_optimization_level(self) -> str:
        """The ``onnxruntime.GraphOptimizationLevel`` member name, e.g. ``"ORT_ENABLE_ALL"``."""
        return GRAPH_OPTIMIZATION_LEVELS[self.graph_optimization_level]


@dataclass(frozen=True)
class Workload:
    """What one run processes: ``batch`` streams of ``chunk_seconds`` of audio each, run as ``mode``.

    ``chunk``: each chunk separated on its own (a waveform export); ``offline``: whole tracks (latency
    measured on ``chunk_seconds``); ``stream``: one call of a stream export per ``chunk_seconds``, its
    states carried from call to call (a causal supernet; chunk_seconds a whole number of its hops).
    """

    chunk_seconds: float
    batch: int
    mode: str = "chunk"

    @property
    def quality_chunk_seconds(self) -> float | None:
        """The chunk length quality is quoted at: None (the whole clip) unless chunks run on their own."""
        return self.chunk_seconds if self.mode == "chunk" else None


@dataclass(frozen=True)
class Measurement:
    """The benchmark protocol: untimed warm-up, then at least ``timed_runs`` and ``min_duration_s``."""

    warmup_runs: int
    timed_runs: int
    min_duration_s: float
    statistic: str  # the headline latency statistic


@dataclass(frozen=True)
class Profile:
    """One device: its budgets, how the model runs there, on what workload, and how to measure it."""

    name: str
    description: str
    budgets: ProfileBudgets
    runtime: RuntimeSettings
    workload: Workload
    measurement: Measurement
    schema_version: int = SCHEMA_VERSION
    source: str | None = None  # the file it was read from

    def to_dict(self) -> dict:
        """The profile as its TOML holds it (plus ``source``); None budgets are omitted in TOML."""
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "description": self.description,
            "budgets": _as_dict(self.budgets),
            "runtime": _as_dict(self.runtime),
            "workload": _as_dict(self.workload),
            "measurement": _as_dict(self.measurement),
            "source": self.source,
        }


def _as_dict(section: Any) -> dict:
    return {f.name: getattr(section, f.name) for f in fields(section)}


# ---- validation ------------------------------------------------------------------------------------


class _Bad(Exception):
    """One problem with one value; the message follows the key path."""


def _integer(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"must be an integer, got {v!r}")
    return v


def _at_least(low: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if _integer(v) < low:
            raise _Bad(f"must be at least {low}, got {v}")
        return v

    return check


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(f"must be a finite number, got {v!r}")
    return float(v)


def _positive_number(v: Any) -> float:
    if _number(v) <= 0:
        raise _Bad(f"must be positive, got {v}")
    return float(v)


def _non_negative_number(v: Any) -> float:
    if _number(v) < 0:
        raise _Bad(f"must not be negative, got {v}")
    return float(v)


def _boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"must be true or false, got {v!r}")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f"must be a non-empty string, got {v!r}")
    return v.strip()


def _one_of(options: tuple[str, ...] | Mapping[str, str]) -> Callable[[Any], str]:
    options = tuple(options)

    def check(v: Any) -> str:
        if v not in options:
            hint = difflib.get_close_matches(str(v), options, n=1)
            guess = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise _Bad(f"must be one of {', '.join(options)}; got {v!r}{guess}")
        return v

    return check


def _name(v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise _Bad(f"must be a lower-case slug (letters, digits, '-', '_'), got {v!r}")
    return v


def _schema_version(v: Any) -> int:
    if isinstance(v, bool) or v != SCHEMA_VERSION:
        raise _Bad(f"must be {SCHEMA_VERSION} (this s2g reads profile schema version {SCHEMA_VERSION}), got {v!r}")
    return SCHEMA_VERSION


def _size(path: str) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise _Bad(f"must be a number or a size such as '300M', got {v!r}")
        try:
            return parse_size(v, path)
        except InputError as exc:  # its message already starts with the key path
            raise _Bad(str(exc).removeprefix(f"{path}: ")) from None

    return check


def _quality_drop(v: Any) -> float:
    if _non_negative_number(v) > 100:
        raise _Bad(f"must be at most 100 dB, got {v}")
    return float(v)


def _chunk_seconds(v: Any) -> float:
    if _positive_number(v) > 3600:
        raise _Bad(f"must be at most 3600 (one hour), got {v}")
    return float(v)


# section -> key -> (required, check)
_SCHEMA: dict[str, dict[str, tuple[bool, Callable[[Any], Any]]]] = {
    "": {
        "schema_version": (True, _schema_version),
        "name": (True, _name),
        "description": (True, _text),
    },
    "budgets": {
        "max_params": (False, _size("budgets.max_params")),
        "max_macs_per_second": (False, _size("budgets.max_macs_per_second")),
        "latency_ms": (False, _positive_number),
        "latency_statistic": (False, _one_of(STATISTICS)),
        "max_real_time_factor": (False, _positive_number),
        "max_model_bytes": (False, _size("budgets.max_model_bytes")),
    },
    "runtime": {
        "execution_provider": (True, _one_of(EXECUTION_PROVIDERS)),
        "intra_op_threads": (True, _at_least(1)),
        "inter_op_threads": (True, _at_least(1)),
        "graph_optimization_level": (True, _one_of(GRAPH_OPTIMIZATION_LEVELS)),
        "precision": (True, _one_of(PRECISIONS)),
        "opset": (True, _at_least(MIN_OPSET)),
        "max_quality_drop_db": (False, _quality_drop),
        "allow_spinning": (False, _boolean),
    },
    "workload": {
        "mode": (False, _one_of(WORKLOAD_MODES)),
        "chunk_seconds": (True, _chunk_seconds),
        "batch": (True, _at_least(1)),
    },
    "measurement": {
        "warmup_runs": (True, _at_least(0)),
        "timed_runs": (True, _at_least(1)),
        "min_duration_s": (True, _non_negative_number),
        "statistic": (True, _one_of(STATISTICS)),
    },
}
_SECTIONS = {
    "budgets": ProfileBudgets,
    "runtime": RuntimeSettings,
    "workload": Workload,
    "measurement": Measurement,
}


def parse_profile(data: Mapping[str, Any], source: str = "<profile>") -> Profile:
    """Validate parsed TOML ``data``; raises :class:`ProfileError` listing every problem with its key path."""
    problems: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    top_keys = set(_SCHEMA[""]) | set(_SECTIONS)
    for section, keys in _SCHEMA.items():
        table = data if section == "" else data.get(section)
        prefix = f"{section}." if section else ""
        if table is None:
            problems.append(f"{section}: missing table [{section}]")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{section}: must be a table [{section}], got {table!r}")
            continue
        values[section] = {}
        for key, (required, check) in keys.items():
            if key not in table:
                if required:
                    problems.append(f"{prefix}{key}: missing")
                continue
            try:
                values[section][key] = check(table[key])
            except _Bad as exc:
                problems.append(f"{prefix}{key}: {exc}")
        if section == "budgets":  # a latency limit means nothing without its statistic, and vice versa
            given = set(table) & {"latency_ms", "latency_statistic"}
            if len(given) == 1:
                (key,) = given
                (other,) = {"latency_ms", "latency_statistic"} - given
                problems.append(f"budgets.{other}: required when budgets.{key} is set")
        if section == "runtime" and table.get("precision") == "fp16" and table.get("execution_provider") == CPU:
            problems.append(f"runtime.precision: fp16 runs slower than fp32 on {CPU}; use int8-dynamic or fp32")
        known = top_keys if section == "" else set(keys)
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, sorted(known), n=1)
                guess = f"; did you mean {hint[0]!r}?" if hint else f"; expected one of {', '.join(sorted(known))}"
                problems.append(f"{prefix}{key}: unknown key{guess}")
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise ProfileError(f"{source}: invalid profile, {count}:\n  " + "\n  ".join(problems), tuple(problems))
    top = values[""]
    sections = {name: cls(**values[name]) for name, cls in _SECTIONS.items()}
    return Profile(
        name=top["name"],
        description=top["description"],
        schema_version=top["schema_version"],
        source=source,
        **sections,
    )


def check_architecture(profile: Profile | None, architecture: str, source: str) -> None:
    """A stream workload needs a causal supernet and a chunk or offline workload an offline one;
    :class:`InputError` (exit 2) naming the fix otherwise."""
    from s2g_deploy.models.registry import get_architecture

    if profile is None:
        return
    causal, mode = get_architecture(architecture).causal, profile.workload.mode
    if mode == "stream" and not causal:
        raise InputError(
            f"{source}: an offline ({architecture}) supernet cannot stream; profile {profile.name!r} runs a stream "
            "workload: omit the checkpoint to use the bundled causal supernet, or train one with "
            "s2g train --preset xsmall-causal"
        )
    if mode != "stream" and causal:
        raise InputError(
            f"{source}: a causal ({architecture}) supernet exports as a stream; profile {profile.name!r} runs a "
            f"{mode} workload: give it an offline supernet (or omit the checkpoint for the bundled one)"
        )


def streams(profile: Profile | None) -> bool:
    """Whether ``profile`` runs a stream workload (its default checkpoint is the bundled causal supernet)."""
    return profile is not None and profile.workload.mode == "stream"


# ---- finding and reading ---------------------------------------------------------------------------


def shipped_profile_dir() -> Path:
    """Where the shipped profiles are: inside an installed wheel, else the source checkout's ``profiles/``."""
    installed = Path(__file__).parent / "_profiles"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "profiles"


def shipped_profiles() -> dict[str, Path]:
    """Shipped profile name -> file, by name."""
    directory = shipped_profile_dir()
    return {p.stem: p for p in sorted(directory.glob("*.toml"))} if directory.is_dir() else {}


def read_profile(path: str | os.PathLike) -> Profile:
    """Read and validate the profile file at ``path``."""
    path = Path(path)
    if path.exists() and not path.is_file():  # a FIFO or device would block forever, a folder fails oddly
        raise ProfileError(f"{path}: not a regular file; give a profile .toml file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the profile ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc})") from None
    return parse_profile(data, str(path))


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """A shipped profile by name (``"phone"``), or a profile file by path (``"my/device.toml"``)."""
    text = str(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith(".toml") or "/" in text or os.sep in text:
        return read_profile(name_or_path)
    shipped = shipped_profiles()
    if text in shipped:
        profile = read_profile(shipped[text])
        if profile.name != text:
            raise ProfileError(f"{shipped[text]}: shipped profile is named {profile.name!r}, not after its file")
        return profile
    if Path(text).is_file():
        return read_profile(text)
    hint = difflib.get_close_matches(text, list(shipped), n=1)
    guess = f"did you mean {hint[0]!r}? " if hint else ""
    raise ProfileError(
        f"unknown profile {text!r}; {guess}shipped profiles: {', '.join(shipped) or 'none found'} "
        "(or give the path of a .toml file)"
    )
