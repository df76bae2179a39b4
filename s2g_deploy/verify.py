"""``s2g verify DIR``: check a release or export directory after it left the machine that built it.

For every directory: ``SHA256SUMS`` matches and lists every file; for every export: ``manifest.json``
parses and agrees with the files, ``dense.safetensors`` loads (its weights hash checked), ``model.onnx``
loads in a fresh onnxruntime session and matches the dense PyTorch model on a fresh random input (a
seed and length none of the export's own parity checks used, batch of two) within the export's
tolerance (for a quantized export: at least the SNR its quality gate set for parity). For a release
also: ``release.json`` parses and lists exactly the export directories there.
Every problem is collected; one :class:`VerificationError` (exit 4) names them all.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from s2g_deploy.artifacts import (
    MANIFEST,
    MANIFEST_FORMAT,
    RELEASE,
    SHA256SUMS,
    is_export_dir,
    is_release_dir,
    sha256_file,
    verify_sha256sums,
)
from s2g_deploy.errors import InputError, S2GError, VerificationError

FRESH_SECONDS = 1.37  # off the export's parity lengths (0.5, 3, 10 s) and its 1 s trace length


@dataclass(frozen=True)
class ExportCheck:
    """One export's fresh-input comparison: ONNX against the dense PyTorch model, waveform units."""

    directory: str
    subnet: str
    io: str
    input_shape: tuple[int, ...]
    max_abs: float
    tolerance_abs: float
    snr_db: float | None = None  # quantized exports: output SNR against the dense model
    required_snr_db: float | None = None  # ... and what its quality gate demands


@dataclass(frozen=True)
class VerifyReport:
    """A directory that passed: what it was, how many checksummed files, each export's comparison."""

    path: str
    kind: str  # "release" or "export"
    checksums: int  # lines of all its SHA256SUMS files checked (a release's top one lists every file)
    sums_files: int  # SHA256SUMS files checked
    seed: int
    exports: tuple[ExportCheck, ...]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "kind": self.kind,
            "passed": True,
            "checksums": self.checksums,
            "sums_files": self.sums_files,
            "seed": self.seed,
            "exports": [vars(e) | {"input_shape": list(e.input_shape)} for e in self.exports],
        }


def verify(path: str | os.PathLike, seed: int | None = None) -> VerifyReport:
    """Verify the release or export directory at ``path``; ``seed`` (default: random) draws the input.

    Raises :class:`InputError` if ``path`` is neither, :class:`VerificationError` listing every problem.
    """
    from s2g_deploy.export.onnx import single_threaded

    path = Path(path)
    if not (is_release_dir(path) or is_export_dir(path)):
        raise InputError(f"{path}: not an s2g release or export directory (no s2g {RELEASE} or {MANIFEST})")
    kind = "release" if is_release_dir(path) else "export"
    seed = secrets.randbelow(2**31) if seed is None else seed
    problems: list[str] = []
    checksums, sums_files = _checksums(path, problems), 1
    exports = []
    with single_threaded():
        for directory in _release(path, problems) if kind == "release" else [path]:
            if directory != path:
                checksums += _checksums(directory, problems)
                sums_files += 1
            check = _export(directory, seed, problems)
            if check is not None:
                exports.append(check)
    if problems:
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise VerificationError(f"{path}: {count} (seed {seed}): " + "; ".join(problems))
    return VerifyReport(str(path), kind, checksums, sums_files, seed, tuple(exports))


def _checksums(directory: Path, problems: list[str]) -> int:
    """Check ``directory/SHA256SUMS`` (recursive listings too); every file there must be listed."""
    sums = directory / SHA256SUMS
    if not sums.is_file():
        problems.append(f"{directory}: no {SHA256SUMS}")
        return 0
    try:
        bad = verify_sha256sums(directory)
        listed = {line.split("  ", 1)[1] for line in sums.read_text(encoding="utf-8").splitlines()}
    except (ValueError, IndexError, UnicodeDecodeError):
        problems.append(f"{sums}: malformed (expected '<sha256>  <name>' lines)")
        return 0
    problems += [f"{directory / name}: missing or differs from {SHA256SUMS}" for name in bad]
    recursive = any("/" in name for name in listed)
    present = directory.rglob("*") if recursive else directory.iterdir()
    names = {p.relative_to(directory).as_posix() for p in present if p.is_file()}
    if not recursive:  # an export's SHA256SUMS covers its own files; a release's covers the tree
        names = {n for n in names if "/" not in n}
    problems += [f"{directory / n}: not listed in {SHA256SUMS}" for n in sorted(names - listed - {SHA256SUMS})]
    return len(listed)


def _release(path: Path, problems: list[str]) -> list[Path]:
    """The export directories ``release.json`` lists; they must be exactly the subdirectories there."""
    try:
        document = json.loads((path / RELEASE).read_text(encoding="utf-8"))
        entries = document["profiles"]
        expected = {e["directory"]: e.get("files") or {} for e in entries if e["directory"]}
    except (ValueError, KeyError, TypeError) as exc:
        problems.append(f"{path / RELEASE}: does not parse as an s2g release ({exc})")
        return []
    present = {p.name for p in path.iterdir() if p.is_dir()}
    problems += [f"{path / d}: listed in {RELEASE} but missing" for d in sorted(set(expected) - present)]
    problems += [f"{path / d}: a directory {RELEASE} does not list" for d in sorted(present - set(expected))]
    for directory, files in expected.items():  # release.json's own record of each file
        for name, digest in files.items():
            f = path / directory / name
            if f.is_file() and sha256_file(f) != digest:
                problems.append(f"{f}: differs from the hash {RELEASE} records")
    return [path / d for d in sorted(expected) if d in present]


def _export(directory: Path, seed: int, problems: list[str]) -> ExportCheck | None:
    """Manifest, dense checkpoint and ONNX of one export, and the fresh-input comparison."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        model_file, io = manifest["model"]["file"], manifest["settings"]["io"]
        subnet, tolerance = manifest["subnet"], manifest["settings"]["tolerance_abs"]
        avoid = {manifest["settings"]["trace_samples"], *manifest["settings"]["parity_lengths_samples"]}
        dense_sha = manifest["hashes"]["dense_weights_sha256"]
        recorded = dict(manifest["hashes"]["files"])
        quantization = manifest.get("quantization")
        required = quantization["parity"]["required_snr_db"] if quantization else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{directory / MANIFEST}: does not parse as an s2g export manifest ({exc})")
        return None
    for name, digest in recorded.items():  # the manifest's own record, beside SHA256SUMS
        f = directory / name
        if not f.is_file() or sha256_file(f) != digest:
            problems.append(f"{f}: missing or differs from the hash {MANIFEST} records")
    try:
        return _compare(directory, model_file, io, subnet, dense_sha, (tolerance, required), avoid, seed, problems)
    except S2GError as exc:
        problems.append(f"{directory}: {exc}")
        return None


def _compare(directory, model_file, io, subnet, dense_sha, limits, avoid, seed, problems) -> ExportCheck | None:
    """``limits``: (absolute tolerance, the quantized export's required SNR in dB or None)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from s2g_deploy.artifacts import DENSE_FILE
    from s2g_deploy.checkpoint import load_checkpoint
    from s2g_deploy.export.onnx import exportable
    from s2g_deploy.export.parity import unit_noise
    from s2g_deploy.models.bsrnn import stft

    dense = load_checkpoint(directory / DENSE_FILE)  # checks the weights against their recorded hash
    if dense.meta.kind != "dense" or str(dense.meta.subnet) != subnet or dense.meta.weights_sha256 != dense_sha:
        problems.append(f"{directory / DENSE_FILE}: is not the dense {subnet} the manifest records")
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(directory / model_file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        problems.append(f"{directory / model_file}: onnxruntime cannot load it ({str(exc).splitlines()[0]})")
        return None
    props = session.get_modelmeta().custom_metadata_map
    if props.get("s2g.subnet") != subnet or props.get("s2g.dense_weights_sha256") != dense_sha:
        problems.append(f"{directory / model_file}: its s2g metadata does not match {MANIFEST}")
    config = dense.model.config
    n = round(FRESH_SECONDS * config.sample_rate_hz) + 1
    while n in avoid:
        n += 1
    x = torch.from_numpy(np.stack([unit_noise(n, seed), 0.5 * unit_noise(n, seed + 1)]))
    model = dense.model.eval()
    with torch.no_grad():
        if io in ("waveform", "stream"):
            feed, reference = x, model(x)  # torch.stft/istft: independent of the exported STFT rewrite
        else:
            feed = stft(x, config)
            reference = exportable(model, io)(feed)
    if io == "stream":  # streamed call by call (the export's own call size), aligned by the stated delay
        from s2g_deploy.runtime.stream import session_runner, stream_settings

        hops = int(json.loads(props.get("s2g.stream", "{}")).get("hops_per_call", 1))
        got = session_runner(session, stream_settings(config, hops))(feed.numpy())
    else:
        got = session.run(None, {session.get_inputs()[0].name: feed.numpy()})[0]
    err = float(np.abs(got - reference.numpy()).max())
    tolerance, required = limits
    if required is not None:  # int8: the SNR the quality gate set, as the export's own parity demanded
        from s2g_deploy.export.gate import snr_db

        snr = min(snr_db(a, b) for a, b in zip(reference.numpy(), got, strict=True))
        if not snr >= required:
            problems.append(f"{directory / model_file}: SNR {snr:.1f} dB against {DENSE_FILE} < {required:.1f} dB")
        return ExportCheck(directory.name, subnet, io, tuple(feed.shape), err, tolerance, snr, required)
    if not err <= tolerance:
        problems.append(f"{directory / model_file}: differs from {DENSE_FILE} by {err:.2e} > {tolerance:g}")
    return ExportCheck(directory.name, subnet, io, tuple(feed.shape), err, tolerance)


def describe(report: VerifyReport) -> list[str]:
    """One line per check, for the CLI."""
    lines = [
        f"{report.path}: {report.kind} verified: {report.checksums} checksums in {report.sums_files} "
        f"{SHA256SUMS} file(s) match"
    ]
    for e in report.exports:
        shape = "x".join(map(str, e.input_shape))
        verdict = (
            f"SNR {e.snr_db:.1f} dB >= {e.required_snr_db:.1f} dB (quantized)"
            if e.required_snr_db is not None
            else f"max abs {e.max_abs:.1e} <= {e.tolerance_abs:g}"
        )
        lines.append(
            f"  {e.directory}: {e.subnet}, ONNX vs dense model on a fresh {shape} input (seed {report.seed}): {verdict}"
        )
    return lines
