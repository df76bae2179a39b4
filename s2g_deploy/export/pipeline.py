"""``s2g export`` end to end: select, slice, export, simplify, verify, describe, commit.

Every check that can refuse the job (arguments, output directory, checkpoint, subnet) runs before
any file is written; all files go to a staging directory that becomes the output only at the end
(:mod:`s2g_deploy.artifacts`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2g_deploy.artifacts import (
    MANIFEST,
    MANIFEST_FORMAT,
    SHA256SUMS,
    StagedDirectory,
    check_target,
    sha256_file,
    verify_sha256sums,
    write_json,
    write_sha256sums,
)
from s2g_deploy.checkpoint import CheckpointMeta, library_versions, load_checkpoint, read_meta, save_checkpoint
from s2g_deploy.errors import InputError, VerificationError
from s2g_deploy.export import describe
from s2g_deploy.export.costs import export_costs
from s2g_deploy.export.onnx import (
    DEFAULT_OPSET,
    IO_MODES,
    MAX_OPSET,
    MIN_OPSET,
    io_spec,
    simplify,
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
from s2g_deploy.models.bsrnn import count_params
from s2g_deploy.models.elastic import ElasticBSRNN
from s2g_deploy.quality import restrict, subnet_quality
from s2g_deploy.slicing import slice_subnet
from s2g_deploy.subnet import Subnet

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
DENSE_FILE = "dense.safetensors"
CARD_FILE = "model_card.md"
FORMAT_VERSION = 1


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
        }


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread, restoring the setting afterwards.

    Export runs small matrices (an LSTM step of a subnet is a few hundred MACs per row): threads buy
    nothing, and on a loaded 2-core machine OpenMP's spinning workers made one forward pass 300x
    slower (9 s instead of 25 ms, measured while a training job ran).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_export(
    checkpoint: str | os.PathLike | None,
    *,
    subnet: Subnet | str | None,
    budgets: Any,
    profile: Any,
    out: str | os.PathLike,
    io: str,
    overwrite: bool,
    opset: int | None,
    measure_latency: bool = True,
) -> ExportResult:
    """Export one subnet (see ``api.export``).

    With ``measure_latency`` and a searched subnet under a profile with latency budgets, the choice is
    latency-aware (:mod:`s2g_deploy.runtime.select`): predicted, exported, measured, retried on a miss.
    Without it, those budgets are recorded as unverified, as search notes them.
    """
    with single_threaded():
        prof = _load_profile(profile) if profile is not None else None
        if measure_latency and subnet is None and prof is not None:
            from s2g_deploy.runtime.select import has_latency_budget, latency_aware_export

            if has_latency_budget(prof):

                def export_one(chosen: tuple, before_commit) -> ExportResult:
                    return _run_export(
                        checkpoint, None, budgets, prof, out, io, overwrite, opset, chosen, before_commit
                    )

                return latency_aware_export(export_one, checkpoint, budgets, prof, io=io, out=out, overwrite=overwrite)
        unverified = ()
        if prof is not None and (prof.budgets.latency_ms is not None or prof.budgets.max_real_time_factor is not None):
            why = "--no-measure-latency" if not measure_latency else "an explicit --subnet"
            unverified = (
                f"latency budgets of profile {prof.name!r} UNVERIFIED: not measured ({why}); "
                f"run `s2g bench DIR --device {prof.name}` on the device",
            )
        return _run_export(checkpoint, subnet, budgets, prof, out, io, overwrite, opset, extra_notes=unverified)


def _run_export(
    checkpoint, subnet, budgets, profile, out, io, overwrite, opset, chosen=None, before_commit=None, extra_notes=()
) -> ExportResult:
    """``chosen``: (subnet, selection record) already selected; ``before_commit(work, out)``: measures the
    staged files and returns extra manifest keys, or raises to discard them."""
    started = time.perf_counter()
    timings: dict[str, float] = {}

    # --- everything that can refuse the job, before any file is written --------------------------
    if io not in IO_MODES:
        raise InputError(f"--io must be one of {', '.join(IO_MODES)}, got {io!r}")
    if opset is not None:
        _check_opset(opset, "--opset")
    if isinstance(subnet, str):
        subnet = Subnet.parse(subnet)
    if subnet is not None and (budgets is not None or profile is not None):
        raise InputError("give either --subnet or budgets/--profile, not both")
    out = check_target(out, overwrite)

    from s2g_deploy.bundled import resolve_checkpoint

    ckpt_path = resolve_checkpoint(checkpoint)
    meta = read_meta(ckpt_path)  # fast: a bad file fails here, before search or loading weights
    prof = _load_profile(profile) if profile is not None else None
    runtime = getattr(prof, "runtime", None)
    if opset is None:
        opset = _check_opset(getattr(runtime, "opset", None) or DEFAULT_OPSET, f"profile {prof and prof.name!r} opset")
    notes: list[str] = list(extra_notes)
    for note in extra_notes:
        log.warning("%s", note)
    precision = getattr(runtime, "precision", "fp32")
    if precision != "fp32":  # said out loud, never silently: quantization is a separate step
        notes.append(f"profile {prof.name!r} runs {precision}; this export is fp32 and must be quantized separately")
        log.warning("%s", notes[-1])
    selection: dict[str, Any] = {"method": "explicit"}
    if meta.kind == "dense":
        own = meta.subnet or Subnet(meta.config.num_blocks, meta.config.feature_dim)
        if budgets is not None or prof is not None:
            raise InputError(f"{ckpt_path}: is a dense subnet ({own}); budgets and profiles need a supernet")
        if subnet is not None and subnet != own:
            raise InputError(f"{ckpt_path}: is the dense subnet {own}; it cannot give {subnet}")
        subnet, selection = own, {"method": "dense checkpoint"}
    elif subnet is None:
        if budgets is None and prof is None:
            raise InputError(
                "say what to export: --subnet DEPTHxWIDTH, a budget (--budget-macs, --budget-params) or --profile"
            )
        t = time.perf_counter()
        subnet, selection = chosen if chosen is not None else _search(ckpt_path, budgets, prof)
        timings["search"] = time.perf_counter() - t
    else:
        meta.space.check(subnet)  # before loading any weights
    t = time.perf_counter()
    ckpt = load_checkpoint(ckpt_path)
    timings["load_checkpoint"] = time.perf_counter() - t
    if isinstance(ckpt.model, ElasticBSRNN):
        supernet, parent_sha = ckpt.model, ckpt.meta.weights_sha256
        dense = slice_subnet(supernet, subnet).eval()
    else:
        supernet, parent_sha, dense = None, ckpt.meta.parent_sha256, ckpt.model.eval()
    config = dense.config
    sr = config.sample_rate_hz
    trace_samples = sr + 5  # 1 s, off the hop grid; parity runs at other lengths
    lengths = default_lengths(sr, trace_samples)
    quality = subnet_quality(ckpt.meta.quality, str(subnet), prof.workload.chunk_seconds if prof else None)

    with StagedDirectory(out, overwrite) as staging:
        work = staging.path
        # --- the dense weights, for PyTorch users ---------------------------------------------
        dense_meta = save_checkpoint(
            work / DENSE_FILE,
            dense,
            CheckpointMeta(
                config,
                subnet=subnet,
                parent_sha256=parent_sha,
                training=ckpt.meta.training,
                quality=restrict(ckpt.meta.quality, str(subnet)),
            ),
        )
        # --- export and simplify --------------------------------------------------------------
        log.info("exporting %s (%s, opset %d)", subnet, io, opset)
        t = time.perf_counter()
        raw = to_onnx(dense, io, opset, trace_samples)
        timings["export"] = time.perf_counter() - t
        log.info("simplifying with onnxsim")
        t = time.perf_counter()
        simplified, simplify_info = simplify(raw, io, config.n_bins)
        timings["simplify"] = time.perf_counter() - t
        # --- parity certificate ---------------------------------------------------------------
        log.info("verifying parity at %s", ", ".join(f"{n / sr:.2f} s" for n in lengths))
        t = time.perf_counter()
        stages = parity_stages(supernet, subnet, dense, io, raw, simplified)
        try:
            parity = certify(stages, lengths, sr, trace_samples)
        except StageFailure as exc:
            raise VerificationError(f"parity failed: {exc}") from None
        timings["parity"] = time.perf_counter() - t
        if not parity.passed:
            raise VerificationError(f"parity failed: {parity.summary()}")
        # --- costs: the cost model and an independent count on the graph ----------------------
        t = time.perf_counter()
        from s2g_deploy.cost import COUNTED_SECONDS  # per-second figures use the cost model's convention

        count_samples = round(COUNTED_SECONDS * sr)
        costs = export_costs(dense, io, simplified, count_samples, prof)
        timings["costs"] = time.perf_counter() - t
        # --- describe ---------------------------------------------------------------------------
        facts = {
            "subnet": str(subnet),
            "params": count_params(config),
            "io": io_spec(io, config.n_bins).to_dict(),
            "sample_rate_hz": sr,
            "stft": describe.stft_settings(config),
            "opset": opset,
            "costs": costs,
            "parity": parity,
            "quality": quality,
            "supernet_weights_sha256": parent_sha,
            "checkpoint_file_sha256": sha256_file(ckpt_path),
            "dense_weights_sha256": dense_meta.weights_sha256,
            "profile": getattr(prof, "name", None),
            "versions": _versions(),
            "training": dict(ckpt.meta.training),
        }
        final = describe.with_metadata(simplified, facts)
        check_final(final, io, config, stages[0][1], parity.tolerance_abs, lengths[0])
        (work / MODEL_FILE).write_bytes(final)
        card = describe.model_card(facts)
        (work / CARD_FILE).write_text(card, encoding="utf-8")
        timings["total"] = time.perf_counter() - started
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": FORMAT_VERSION,
            "created_utc": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
            "inputs": {
                "checkpoint": str(ckpt_path),
                "checkpoint_kind": ckpt.meta.kind,
                "subnet": str(subnet) if selection["method"] == "explicit" else None,
                "budgets": _jsonable(budgets),
                "profile": getattr(prof, "name", None) if prof is not None else None,
                "io": io,
                "opset": opset,
            },
            "settings": {
                "exporter": "torch.onnx.export(dynamo=False)",
                "precision": "fp32",
                "opset": opset,
                "io": io,
                "trace_samples": trace_samples,
                "simplifier": "onnxsim",
                "simplify": simplify_info,
                "parity_lengths_samples": list(lengths),
                "tolerance_abs": TOLERANCE_ABS,
                "macs_counted_on_samples": count_samples,
            },
            "model": {"file": MODEL_FILE, **facts["io"], "sample_rate_hz": sr, "stft": facts["stft"]},
            "subnet": str(subnet),
            "selection": selection,
            "params": facts["params"],
            "costs": costs,
            "parity": parity.to_dict(),
            "quality": quality,
            "profile": facts["profile"],
            "training": facts["training"],
            "notes": notes,
            "versions": facts["versions"],
            "hashes": {
                "supernet_weights_sha256": parent_sha,
                "checkpoint_file_sha256": facts["checkpoint_file_sha256"],
                "dense_weights_sha256": dense_meta.weights_sha256,
                "files": {n: sha256_file(work / n) for n in (MODEL_FILE, DENSE_FILE, CARD_FILE)},
            },
            "timings_s": {k: round(v, 3) for k, v in timings.items()},
        }
        if before_commit is not None:
            manifest.update(before_commit(work, out))
        write_json(work / MANIFEST, manifest)
        write_sha256sums(work)
        if verify_sha256sums(work):
            raise VerificationError(f"{SHA256SUMS} does not match the files just written")
        staging.commit()
    log.info("wrote %s in %.1f s", out, time.perf_counter() - started)
    paths = {
        "model": out / MODEL_FILE,
        "manifest": out / MANIFEST,
        "model_card": out / CARD_FILE,
        "sha256sums": out / SHA256SUMS,
        "dense_checkpoint": out / DENSE_FILE,
    }
    return ExportResult(out, subnet, paths, parity, costs, manifest)


# --- selection ---------------------------------------------------------------------------------------


def _check_opset(opset: Any, what: str) -> int:
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise InputError(f"{what} must be an integer from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}")
    return opset


def _load_profile(profile: Any) -> Any:
    if not isinstance(profile, str | os.PathLike):
        return profile  # already a Profile
    try:
        from s2g_deploy.profiles import load_profile
    except ImportError:
        raise InputError("--profile needs s2g_deploy.profiles, which this installation lacks") from None
    return load_profile(profile)


def _search(ckpt_path: Path, budgets: Any, prof: Any) -> tuple[Subnet, dict]:
    try:
        from s2g_deploy.search import search
    except ImportError:
        raise InputError("budgets need s2g_deploy.search, which this installation lacks; pass --subnet") from None
    log.info("searching for the best subnet within the budgets")
    result = search(ckpt_path, budgets, prof, latency_model=None)  # latency budgets: runtime.select measures
    return result.chosen.subnet, selection_record(result, prof)


def selection_record(result: Any, prof: Any, chosen: Any = None) -> dict:
    """The manifest's ``selection``: how ``chosen`` (default: the search's own choice) was found."""
    chosen = chosen or result.chosen
    return {
        "method": "search",
        "budgets": result.budgets.to_dict(),  # profile and explicit combined, the tighter of each
        "budget_sources": dict(result.budget_sources),
        "profile": getattr(prof, "name", None),
        "metric": result.metric,
        "chosen": chosen.to_dict(),
        "fallback": result.fallback,
        "binding": list(result.binding),
        "notes": list(result.notes),
    }


# --- parity stages -------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxsim

    return {
        **library_versions(),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxsim": str(onnxsim.__version__).lstrip("v"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(value)
    return str(value)
