"""Export one already chosen subnet, as named stages: validate, load, slice, export, parity, costs, manifest, commit.

Choosing the subnet (search, the latency model, measuring and retrying) is :mod:`s2g_deploy.deploy`'s
job, which calls the stages here; nothing here calls back up. Every check that can refuse the job
(:func:`validate`: arguments, output directory, checkpoint header, subnet) runs before any weight is
loaded or file written; the checkpoint is loaded once (:func:`load`) and handed down; all files go to
a staging directory (:func:`stage`) that becomes the output only at :meth:`Staged.commit`
(:mod:`s2g_deploy.artifacts`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import os
import platform
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2g_deploy.artifacts import (
    CARD_FILE,
    DENSE_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    MODEL_FILE,
    SHA256SUMS,
    StagedDirectory,
    check_target,
    sha256_file,
    verify_sha256sums,
    write_json,
    write_sha256sums,
)
from s2g_deploy.checkpoint import Checkpoint, CheckpointMeta, load_checkpoint, read_meta, save_checkpoint
from s2g_deploy.errors import InputError, VerificationError
from s2g_deploy.export import GRAPH_FORMAT, check_io, describe
from s2g_deploy.export.costs import export_costs
from s2g_deploy.export.onnx import (
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    io_spec,
    simplify,
    single_threaded,
    to_onnx,
)
from s2g_deploy.export.parity import (
    TOLERANCE_ABS,
    ParityReport,
    StageFailure,
    certify,
    check_final,
    default_lengths,
    parity_stages,
)
from s2g_deploy.models.registry import architecture_of
from s2g_deploy.precision import check_precision, check_runnable
from s2g_deploy.profiles import DEFAULT_MAX_QUALITY_DROP_DB
from s2g_deploy.quality import restrict, subnet_quality
from s2g_deploy.slicing import slice_subnet
from s2g_deploy.subnet import Subnet

__all__ = ["CARD_FILE", "DENSE_FILE", "MODEL_FILE", "ExportResult", "single_threaded"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ExportOptions:
    """What ``s2g export`` is asked for (see ``api.export``): the one argument list of an export."""

    out: str | os.PathLike
    checkpoint: str | os.PathLike | None = None  # default: the bundled supernet (the causal one for a stream)
    subnet: Subnet | str | None = None
    budgets: Any = None  # s2g_deploy.budgets.Budgets
    profile: Any = None  # a shipped name, a TOML path or a loaded Profile
    io: str | None = None  # default: stream for a streaming profile, else waveform
    overwrite: bool = False
    opset: int | None = None
    measure_latency: bool = True
    calibrate: bool = False  # a profile's latency budgets: calibrate this machine's latency model if it has none
    parity_seconds: tuple[float, ...] | None = None  # the lengths parity runs at (default: parity.PARITY_SECONDS)
    precision: str | None = None  # fp32 | int8-dynamic | fp16 (default: the profile's runtime.precision, else fp32)
    gate_data: str | os.PathLike | None = None  # held-out stems for the quality gate (default: rendered now)
    max_quality_drop_db: float | None = None  # the gate's limit (default: the profile's, else 0.5 dB)


@dataclass(frozen=True)
class ExportJob:
    """An export whose inputs have been checked: nothing that can refuse it is left but the weights."""

    options: ExportOptions
    out: Path
    checkpoint: Path
    meta: CheckpointMeta  # read from the header: no weights loaded yet
    profile: Any  # a loaded Profile, or None
    subnet: Subnet | None  # explicit; None: to be chosen
    opset: int
    notes: tuple[str, ...]
    precision: str = "fp32"  # resolved: the option, else the profile's
    max_quality_drop_db: float = DEFAULT_MAX_QUALITY_DROP_DB
    stream: Any = None  # export.stream.StreamSettings of a stream export (hops per call from the profile)
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, in the manifest

    @property
    def io(self) -> str:
        return self.options.io


@dataclass(frozen=True)
class Choice:
    """The subnet to export and the manifest's ``selection`` record of how it was chosen."""

    subnet: Subnet
    selection: Mapping[str, Any]


@dataclass(frozen=True)
class ExportResult:
    """What ``api.export`` made: the directory, the subnet, its files and the facts in the manifest."""

    out: Path
    subnet: Subnet
    paths: dict[str, Path]
    parity: ParityReport
    costs: dict[str, Any]
    manifest: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "out": str(self.out),
            "subnet": str(self.subnet),
            "paths": {k: str(v) for k, v in self.paths.items()},
            "params": self.manifest["params"],
            "costs": self.costs,
            "parity": self.parity.to_dict(),
            "quality": self.manifest["quality"],
            "timings_s": self.manifest["timings_s"],
            "latency": self.manifest.get("latency"),
            "precision": self.manifest["precision"],
            "model_bytes": self.manifest["model"]["file_bytes"],
            "parameter_bytes": self.manifest["costs"]["parameter_bytes"]["graph"],
            "gate": self.manifest.get("gate"),
        }


# --- validate ----------------------------------------------------------------------------------------


def validate(options: ExportOptions, profile: Any = None, extra_notes: tuple[str, ...] = ()) -> ExportJob:
    """Every refusal that needs no weights, in the order a user meets them; ``profile``: already loaded."""
    prof = profile if profile is not None else load_profile(options.profile)
    if options.io is not None:
        check_io(options.io)
    if options.opset is not None:
        _check_opset(options.opset, "--opset")
    subnet = Subnet.parse(options.subnet) if isinstance(options.subnet, str) else options.subnet
    if subnet is not None and (options.budgets is not None or options.profile is not None):
        raise InputError("give either --subnet or budgets/--profile, not both")
    out = check_target(options.out, options.overwrite)
    ckpt_path, meta, io = _resolve_checkpoint(options, prof)
    options = dataclasses.replace(options, io=io)
    runtime = getattr(prof, "runtime", None)
    opset = options.opset
    if opset is None:
        opset = _check_opset(getattr(runtime, "opset", None) or DEFAULT_OPSET, f"profile {prof and prof.name!r} opset")
    notes = list(extra_notes)
    for note in extra_notes:
        log.warning("%s", note)
    stream = _check_architecture(ckpt_path, meta, options.io, prof)
    precision, max_drop = _check_precision(options, prof)
    _check_selection(ckpt_path, meta, subnet, options.budgets, prof)
    return ExportJob(
        options, out, ckpt_path, meta, prof, subnet, opset, tuple(notes), precision, max_drop, stream=stream
    )


def _resolve_checkpoint(options: ExportOptions, prof: Any) -> tuple[Path, CheckpointMeta, str]:
    """(checkpoint, its header, the I/O contract). Without ``--io``: a stream for a stream profile, or
    for a causal checkpoint and no profile, else waveform; without a checkpoint: the bundled supernet
    that serves that contract (the causal one for a stream)."""
    from s2g_deploy.bundled import default_checkpoint
    from s2g_deploy.models.registry import get_architecture
    from s2g_deploy.profiles import streams

    io = options.io
    if options.checkpoint is None:
        io = io or ("stream" if streams(prof) else "waveform")
        path = default_checkpoint(causal=io == "stream")
        return path, read_meta(path), io
    path = Path(options.checkpoint)
    meta = read_meta(path)  # fast: a bad file fails here, before search or loading weights
    if io is None:
        causal = get_architecture(meta.architecture).causal
        io = "stream" if streams(prof) or (prof is None and causal) else "waveform"
    return path, meta, io


def _check_architecture(ckpt_path: Path, meta: CheckpointMeta, io: str, prof: Any):
    """A causal checkpoint exports as a stream, an offline one as anything else; a profile's workload
    agrees. Returns the stream's settings (hops per call: the profile's chunk) or None."""
    from s2g_deploy.models.registry import get_architecture
    from s2g_deploy.profiles import check_architecture

    check_architecture(prof, meta.architecture, str(ckpt_path))  # first: the profile names the fix best
    causal = get_architecture(meta.architecture).causal
    if io == "stream" and not causal:
        raise InputError(
            f"{ckpt_path}: an offline ({meta.architecture}) checkpoint cannot stream; --io stream needs a causal "
            "supernet: omit the checkpoint to use the bundled causal one, or train one with "
            "s2g train --preset xsmall-causal"
        )
    if causal and io != "stream":
        raise InputError(f"{ckpt_path}: a causal ({meta.architecture}) checkpoint exports as --io stream, not {io}")
    if io != "stream":
        return None
    from s2g_deploy.runtime.stream import hops_per_call, stream_settings

    hops = 1
    if prof is not None:
        what = f"profile {prof.name!r} workload.chunk_seconds"
        hops = hops_per_call(prof.workload.chunk_seconds, meta.config.sample_rate_hz, meta.config.hop_length, what)
    return stream_settings(meta.config, hops)


def _check_precision(options: ExportOptions, prof: Any) -> tuple[str, float]:
    """The precision and the quality gate's limit this export uses; refusals name the option."""
    runtime = getattr(prof, "runtime", None)
    if options.precision is not None:
        precision = check_precision(options.precision, "--precision")
    else:
        precision = getattr(runtime, "precision", "fp32")
    check_runnable(precision, getattr(runtime, "execution_provider", "CPUExecutionProvider"), "--precision")
    if precision != "fp32" and options.io == "spectrogram":
        raise InputError(
            f"--precision {precision} needs --io waveform or stream: the quality gate separates audio with the file"
        )
    max_drop = options.max_quality_drop_db
    if max_drop is None:
        max_drop = getattr(runtime, "max_quality_drop_db", DEFAULT_MAX_QUALITY_DROP_DB)
    elif isinstance(max_drop, bool) or not isinstance(max_drop, int | float) or not 0 <= max_drop <= 100:
        raise InputError(f"--max-quality-drop must be a number of dB from 0 to 100, got {max_drop!r}")
    if options.gate_data is not None and not Path(options.gate_data).is_dir():
        raise InputError(f"--gate-data {options.gate_data}: no such directory (give a stems folder)")
    return precision, float(max_drop)


def _check_selection(ckpt_path: Path, meta: CheckpointMeta, subnet, budgets, prof) -> None:
    if meta.kind == "dense":
        own = dense_subnet(meta)
        if budgets is not None or prof is not None:
            raise InputError(f"{ckpt_path}: is a dense subnet ({own}); budgets and profiles need a supernet")
        if subnet is not None and subnet != own:
            raise InputError(f"{ckpt_path}: is the dense subnet {own}; it cannot give {subnet}")
    elif subnet is None:
        if budgets is None and prof is None:
            raise InputError(
                "say what to export: --subnet DEPTHxWIDTH, a budget (--budget-macs, --budget-params) or --profile"
            )
    else:
        meta.space.check(subnet)  # before loading any weights


def dense_subnet(meta: CheckpointMeta) -> Subnet:
    """The subnet a dense checkpoint holds."""
    return meta.subnet or Subnet(meta.config.num_blocks, meta.config.feature_dim)


def _check_opset(opset: Any, what: str) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"{what} must be an integer from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}")
    return opset


def load_profile(profile: Any) -> Any:
    """A loaded profile from a name, a TOML path or a loaded one; None stays None."""
    if profile is None or not isinstance(profile, str | os.PathLike):
        return profile
    from s2g_deploy.profiles import load_profile as _load

    return _load(profile)


# --- load and slice ----------------------------------------------------------------------------------


def load(job: ExportJob) -> Checkpoint:
    """The job's checkpoint with its weights: loaded once per command and handed to every stage."""
    t = time.perf_counter()
    ckpt = load_checkpoint(job.checkpoint)
    job.timings["load_checkpoint"] = time.perf_counter() - t
    return ckpt


def slice_dense(ckpt: Checkpoint, subnet: Subnet) -> tuple[Any, str, Any]:
    """(supernet or None, the supernet's weights hash, the dense model) for ``subnet`` of ``ckpt``."""
    if ckpt.meta.kind == "supernet":
        return ckpt.model, ckpt.meta.weights_sha256, slice_subnet(ckpt.model, subnet).eval()
    return None, ckpt.meta.parent_sha256, ckpt.model.eval()


# --- the staged export ---------------------------------------------------------------------------------


@dataclass
class Staged:
    """An export written into its staging directory, manifest not yet written: :meth:`commit` finishes it."""

    job: ExportJob
    staging: StagedDirectory
    subnet: Subnet
    parity: ParityReport
    costs: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def work(self) -> Path:
        return self.staging.path

    def commit(self, extra: Mapping[str, Any] | None = None) -> ExportResult:
        """Write the manifest (plus ``extra`` keys) and SHA256SUMS, check them, and move the directory into place."""
        manifest = {**self.manifest, **(extra or {})}
        write_json(self.work / MANIFEST, manifest)
        write_sha256sums(self.work)
        if verify_sha256sums(self.work):
            raise VerificationError(f"{SHA256SUMS} does not match the files just written")
        self.staging.commit()
        out = self.job.out
        log.info("wrote %s in %.1f s", out, time.perf_counter() - self.job.started)
        paths = {
            "model": out / MODEL_FILE,
            "manifest": out / MANIFEST,
            "model_card": out / CARD_FILE,
            "sha256sums": out / SHA256SUMS,
            "dense_checkpoint": out / DENSE_FILE,
        }
        return ExportResult(out, self.subnet, paths, self.parity, self.costs, manifest)


@contextlib.contextmanager
def stage(job: ExportJob, ckpt: Checkpoint, choice: Choice) -> Iterator[Staged]:
    """Slice, export, verify and describe ``choice`` into a staging directory; discarded unless committed."""
    subnet = choice.subnet
    supernet, parent_sha, dense = slice_dense(ckpt, subnet)
    config = dense.config
    trace_samples = config.sample_rate_hz + 5  # 1 s, off the hop grid; parity runs at other lengths
    if job.io == "stream":  # one call of 3 hops; parity streams 1 and 7 hops per call
        trace_samples = 3 * config.hop_length
    lengths = default_lengths(config.sample_rate_hz, trace_samples, job.options.parity_seconds)
    with StagedDirectory(job.out, job.options.overwrite) as staging:
        work = staging.path
        dense_sha = write_dense(work / DENSE_FILE, dense, subnet, parent_sha, ckpt.meta)
        raw, simplified, simplify_info = export_onnx(job, dense, subnet, trace_samples)
        parity, stages = verify_parity(job, supernet, subnet, dense, raw, simplified, lengths, trace_samples)
        shipped, lowered = apply_precision(job, simplified, config, lengths, ckpt.meta.training)
        costs, count_samples = count_costs(job, dense, simplified)
        costs.update(precision_costs(job, config, costs, shipped))
        facts = {
            "subnet": str(subnet),
            "params": architecture_of(config).count_params(config),
            "architecture": ckpt.meta.architecture,
            "io": io_spec(job.io, config).to_dict(),
            "sample_rate_hz": config.sample_rate_hz,
            "stft": describe.stft_settings(config),
            "stream": job.stream.to_dict() if job.stream is not None else None,
            "opset": job.opset,
            "costs": costs,
            "parity": parity,
            "quality": subnet_quality(
                ckpt.meta.quality, str(subnet), _chunk_seconds(job.profile), stream=job.stream is not None
            ),
            "supernet_weights_sha256": parent_sha,
            "checkpoint_file_sha256": sha256_file(job.checkpoint),
            "dense_weights_sha256": dense_sha,
            "profile": getattr(job.profile, "name", None),
            "versions": export_versions(),
            "training": dict(ckpt.meta.training),
            **lowered,
        }
        final = describe.with_metadata(shipped, facts)
        if job.precision == "fp32":
            check_final(final, job.io, config, stages[0][1], parity.tolerance_abs, lengths[0])
        else:
            from s2g_deploy.export.gate import check_same_outputs

            check_same_outputs(final, shipped, lengths[0], config.sample_rate_hz, job.stream)
        (work / MODEL_FILE).write_bytes(final)
        (work / CARD_FILE).write_text(describe.model_card(facts), encoding="utf-8")
        job.timings["total"] = time.perf_counter() - job.started
        settings = _settings(job, trace_samples, simplify_info, lengths, count_samples)
        manifest = build_manifest(job, ckpt, choice, facts, settings, work)
        yield Staged(job, staging, subnet, parity, costs, manifest)


def apply_precision(job: ExportJob, simplified: bytes, config: Any, lengths, training: Mapping) -> tuple[bytes, dict]:
    """(the model to ship, its facts: precision, quantization, gate). fp32 ships the simplified file.

    int8-dynamic: quantize (:mod:`~s2g_deploy.export.quantize`), compute the STFT basis in the graph
    (:mod:`~s2g_deploy.export.compact`), check the op types, then the quality gate against the simplified
    fp32 file and parity at the gate's tolerance (:mod:`~s2g_deploy.export.gate`); either failing is exit 4.
    """
    if job.precision == "fp32":
        return simplified, {"precision": "fp32", "quantization": None, "gate": None}
    from s2g_deploy.export import compact, gate, gate_data, quantize
    from s2g_deploy.precision import quantization_settings

    sr = config.sample_rate_hz
    t = time.perf_counter()
    quantized = quantize.quantize(simplified, quantization_settings())
    model, compacted = compact.compute_basis_in_graph(quantized.model, config.n_fft)
    quantize.check_quantized(model, simplified)
    job.timings["quantize"] = time.perf_counter() - t
    target = str(training.get("target") or (training.get("data_description") or {}).get("target") or "vocals")
    data = gate_data.gate_data(job.options.gate_data, sr, target)
    chunk = _chunk_seconds(job.profile) if job.stream is None else job.stream.call_samples / sr
    report = gate.run_gate(simplified, model, data, chunk, job.max_quality_drop_db, job.precision, job.stream)
    parity = gate.quantized_parity(simplified, model, lengths, sr, report.required_snr_db, job.stream)
    job.timings["gate"] = time.perf_counter() - t - job.timings["quantize"]
    record = {**quantized.to_dict(), "in_graph_basis": compacted.to_dict(), "parity": parity.to_dict()}
    return model, {"precision": job.precision, "quantization": record, "gate": report.to_dict()}


def precision_costs(job: ExportJob, config: Any, costs: Mapping, shipped: bytes) -> dict:
    """Parameter bytes at the stored precision (closed form, checked on the graph) and which MACs run as int8."""
    from s2g_deploy.export.quantize import check_parameter_bytes
    from s2g_deploy.precision import parameter_bytes

    expected = parameter_bytes(config, job.precision)
    eight_bit = None
    if job.precision == "int8-dynamic":
        elements, channels = architecture_of(config).quantizable_weights(config)
        eight_bit = elements + channels  # int8 weights and one int8 zero point per output channel
    mps = costs["macs_per_second"]
    # check_quantized proved every network MatMul and LSTM quantized: all network MACs run as int8
    int8 = mps["network"] if job.precision in ("int8-dynamic",) else 0
    return {
        "parameter_bytes": {
            "precision": job.precision,
            "closed_form": expected,
            "graph": check_parameter_bytes(shipped, expected, eight_bit),
            "counts": "the network's weights, biases and norm parameters as stored (int8 weights with a float32 "
            "scale and int8 zero point per output channel); not the STFT/iSTFT constants",
        },
        "macs_by_precision": {
            "int8": int8,
            "float32": mps["total"] - int8,
            "unit": "MACs per second of audio",
            "int8_ops": ["MatMulInteger", "DynamicQuantizeLSTM"] if int8 else [],
        },
    }


def _chunk_seconds(profile: Any) -> float | None:
    """The chunk the profile's quality is quoted at: None (whole clip) for offline and stream workloads,
    since a stream computes what the causal model computes on the whole signal (parity)."""
    return profile.workload.quality_chunk_seconds if profile else None


def write_dense(path: Path, dense: Any, subnet: Subnet, parent_sha: str, meta: CheckpointMeta) -> str:
    """The dense weights, for PyTorch users; returns their weights hash."""
    dense_meta = CheckpointMeta(
        dense.config,
        subnet=subnet,
        parent_sha256=parent_sha,
        training=meta.training,
        quality=restrict(meta.quality, str(subnet)),
    )
    return save_checkpoint(path, dense, dense_meta).weights_sha256


def export_onnx(job: ExportJob, dense: Any, subnet: Subnet, trace_samples: int) -> tuple[bytes, bytes, dict]:
    """(exported, simplified, what onnxsim did)."""
    log.info("exporting %s (%s, opset %d)", subnet, job.io, job.opset)
    t = time.perf_counter()
    raw = to_onnx(dense, job.io, job.opset, trace_samples)
    job.timings["export"] = time.perf_counter() - t
    log.info("simplifying with onnxsim")
    t = time.perf_counter()
    simplified, simplify_info = simplify(raw, job.io, dense.config)
    job.timings["simplify"] = time.perf_counter() - t
    return raw, simplified, simplify_info


def verify_parity(job, supernet, subnet, dense, raw, simplified, lengths, trace_samples) -> tuple[ParityReport, Any]:
    """The parity certificate at every stage; raises :class:`VerificationError` (exit 4) when it fails."""
    sr = dense.config.sample_rate_hz
    log.info("verifying parity at %s", ", ".join(f"{n / sr:.2f} s" for n in lengths))
    t = time.perf_counter()
    stages = parity_stages(supernet, subnet, dense, job.io, raw, simplified)
    try:
        parity = certify(stages, lengths, sr, trace_samples)
    except StageFailure as exc:
        raise VerificationError(f"parity failed: {exc}") from None
    job.timings["parity"] = time.perf_counter() - t
    if not parity.passed:
        raise VerificationError(f"parity failed: {parity.summary()}")
    return parity, stages


def count_costs(job: ExportJob, dense: Any, simplified: bytes) -> tuple[dict, int]:
    """The cost model's figures and an independent count on the graph; (costs, samples counted on)."""
    from s2g_deploy.cost import COUNTED_SECONDS  # per-second figures use the cost model's convention

    t = time.perf_counter()
    count_samples = round(COUNTED_SECONDS * dense.config.sample_rate_hz)
    costs = export_costs(dense, job.io, simplified, count_samples, job.profile)
    job.timings["costs"] = time.perf_counter() - t
    return costs, count_samples


# --- the manifest ----------------------------------------------------------------------------------------


def _settings(job: ExportJob, trace_samples: int, simplify_info: dict, lengths, count_samples: int) -> dict:
    return {
        "exporter": "torch.onnx.export(dynamo=False)",
        "graph_format": GRAPH_FORMAT,
        "precision": job.precision,
        "opset": job.opset,
        "io": job.io,
        "trace_samples": trace_samples,
        "simplifier": "onnxsim",
        "simplify": simplify_info,
        "parity_lengths_samples": list(lengths),
        "tolerance_abs": TOLERANCE_ABS,
        "macs_counted_on_samples": count_samples,
    }


def build_manifest(job: ExportJob, ckpt: Checkpoint, choice: Choice, facts: dict, settings: dict, work: Path) -> dict:
    """``manifest.json`` of the staged files in ``work``."""
    options, parity = job.options, facts["parity"]
    return {
        "format": MANIFEST_FORMAT,
        "format_version": FORMAT_VERSION,
        "created_utc": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "inputs": {
            "checkpoint": str(job.checkpoint),
            "checkpoint_kind": ckpt.meta.kind,
            "subnet": facts["subnet"] if choice.selection["method"] == "explicit" else None,
            "budgets": options.budgets.to_dict() if options.budgets is not None else None,
            "profile": facts["profile"],
            "precision": options.precision,
            "gate_data": str(options.gate_data) if options.gate_data is not None else None,
            "io": job.io,
            "opset": job.opset,
        },
        "settings": settings,
        "model": {
            "file": MODEL_FILE,
            "file_bytes": (work / MODEL_FILE).stat().st_size,
            **facts["io"],
            "sample_rate_hz": facts["sample_rate_hz"],
            "stft": facts["stft"],
        },
        "stream": facts["stream"],
        "precision": facts["precision"],
        "quantization": facts["quantization"],
        "gate": facts["gate"],
        "subnet": facts["subnet"],
        "selection": dict(choice.selection),
        "params": facts["params"],
        "costs": facts["costs"],
        "parity": parity.to_dict(),
        "quality": facts["quality"],
        "profile": facts["profile"],
        "training": facts["training"],
        "notes": list(job.notes),
        "versions": facts["versions"],
        "hashes": {
            "supernet_weights_sha256": facts["supernet_weights_sha256"],
            "checkpoint_file_sha256": facts["checkpoint_file_sha256"],
            "dense_weights_sha256": facts["dense_weights_sha256"],
            "files": {n: sha256_file(work / n) for n in (MODEL_FILE, DENSE_FILE, CARD_FILE)},
        },
        "timings_s": {k: round(v, 3) for k, v in job.timings.items()},
    }


def export_versions() -> dict[str, str]:
    """The libraries an export depends on, as the manifest and the ONNX metadata record them."""
    from s2g_deploy.environment import versions

    return {
        **versions("s2g_deploy", "torch", "safetensors", "onnx", "onnxruntime", "onnxsim", "numpy"),
        "python": platform.python_version(),
    }
