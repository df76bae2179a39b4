"""Quality of every subnet of a checkpoint on held-out data, the way it will run: the quality table.

Three metrics per subnet, in dB: uSDR (MDX challenge: 10 log10 |s|^2 / |s - s_hat|^2 per track, mean over
tracks), SI-SDR (mean over tracks) and cSDR (BSSEval v4 via museval: median over 1-s windows per track,
then median over tracks, the SiSEC/MUSDB convention).

Workloads: the whole clip (each track in one call), and for every ``chunk_seconds`` the track cut into
chunks exactly as ``s2g separate --chunk-seconds X`` cuts it (overlap min(1 s, X / 2), linear cross-fade;
:func:`s2g_deploy.separate.separate_batched`), each chunk separated on its own as a device runs it.

The table, stored in the checkpoint's metadata::

    {"metric": "usdr_db", "metrics": {...definitions...}, "data": {...}, "mixture": {...}, "subnets": {...},
     "chunked": {"0.016": {"chunk_seconds": 0.016, "overlap_seconds": 0.008, "mixture": {...}, "subnets": {...}}},
     "splits": {"timbre-shift": {"data": {...}, "mixture": {...}, "subnets": {...}, "chunked": {...}}}}

``subnets`` / ``mixture`` at the top are the whole-clip figures on the test split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from s2g_deploy.bundled import BUNDLED_SUPERNET
from s2g_deploy.checkpoint import load_checkpoint, save_checkpoint
from s2g_deploy.errors import InputError
from s2g_deploy.models.elastic import ElasticBSRNN
from s2g_deploy.quality import TIMBRE_SPLIT, chunk_key, overlap_for
from s2g_deploy.train.data import SyntheticMusic
from s2g_deploy.train.metrics import csdr, require_museval, si_sdr, usdr
from s2g_deploy.train.stems import StemFolder

METRICS = {
    "usdr_db": "uSDR, mean over tracks (MDX challenge)",
    "sisdr_db": "SI-SDR, mean over tracks",
    "csdr_db": "cSDR: BSSEval v4 SDR (museval) median over 1-s windows, then median over tracks",
}
_BATCH = 8  # whole tracks per forward
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    checkpoint: Path  # the file the quality table was written to
    quality: dict  # the quality table, as stored in the checkpoint


@dataclass(frozen=True)
class HeldOut:
    name: str  # "test" or "timbre-shift"
    examples: list  # (name, mixture, target), mono float32
    description: dict


def held_out_examples(data: Path | None, sample_rate_hz: int, items: int, seconds: float, target: str):
    """(examples, description) of the test split: ``items`` synthetic tracks, or every track in ``data``."""
    if data is None:
        source = SyntheticMusic(sample_rate_hz, seconds, "test", seed=0)
        return source.examples(items), source.describe()
    source = StemFolder.open(data, sample_rate_hz, seconds=0.0, target=target)
    return source.examples(), source.describe()


def held_out_sets(data, timbre_data, sample_rate_hz: int, items: int, seconds: float, target: str) -> list[HeldOut]:
    """The test split and, where there is one, the timbre-shift split.

    ``data`` may be a folder of tracks or a rendered root holding ``test/`` (and ``test-timbre/``, used
    as the timbre-shift split unless ``timbre_data`` names another folder).
    """
    if data is None and timbre_data is not None:
        raise InputError("--timbre-data needs --data (the synthetic set has no timbre-shift split)")
    test = None if data is None else Path(data)
    if test is not None and (test / "test").is_dir():
        root, test = test, test / "test"
        if timbre_data is None and (root / "test-timbre").is_dir():
            timbre_data = root / "test-timbre"
    sets = [HeldOut("test", *held_out_examples(test, sample_rate_hz, items, seconds, target))]
    if timbre_data is not None:
        sets.append(HeldOut(TIMBRE_SPLIT, *held_out_examples(Path(timbre_data), sample_rate_hz, 0, 0, target)))
    return sets


def data_hash(examples) -> str:
    digest = hashlib.sha256()
    for name, mix, target in examples:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(mix, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(target, dtype=np.float32).tobytes())
    return digest.hexdigest()


def separate_examples(run: Callable, examples, sample_rate_hz: int, chunk_seconds: float | None = None) -> list:
    """Estimates for every example: whole tracks in batches, or chunked as ``s2g separate`` runs them."""
    from s2g_deploy.separate import separate_batched

    def call(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return run(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    estimates: list = [None] * len(examples)
    by_length: dict[int, list[int]] = {}
    for i, (_, mix, _) in enumerate(examples):
        by_length.setdefault(len(mix), []).append(i)
    for indices in by_length.values():
        for k in range(0, len(indices), _BATCH):
            group = indices[k : k + _BATCH]
            mix = np.stack([examples[i][1] for i in group])
            if chunk_seconds is None:
                out = call(mix)
            else:
                chunk = max(1, round(chunk_seconds * sample_rate_hz))
                overlap = min(round(overlap_for(chunk_seconds) * sample_rate_hz), chunk // 2)  # as separate does
                out = separate_batched(call, mix, chunk, overlap)
            for i, est in zip(group, out, strict=True):
                estimates[i] = est
    return estimates


def score_estimates(examples, estimates, sample_rate_hz: int, with_csdr: bool = True) -> dict:
    """uSDR and SI-SDR (mean over tracks) and cSDR (median over tracks), dB, rounded to 0.001."""
    ref = [torch.from_numpy(np.asarray(t, np.float32)) for _, _, t in examples]
    est = [torch.from_numpy(np.asarray(e, np.float32)) for e in estimates]
    row = {
        "usdr_db": round(float(np.mean([usdr(e, r).item() for e, r in zip(est, ref, strict=True)])), 3),
        "sisdr_db": round(float(np.mean([si_sdr(e, r).item() for e, r in zip(est, ref, strict=True)])), 3),
    }
    if with_csdr:
        tracks = [csdr(e, t, sample_rate_hz) for e, (_, _, t) in zip(estimates, examples, strict=True)]
        tracks = [c for c in tracks if math.isfinite(c)]
        row["csdr_db"] = round(float(np.median(tracks)), 3) if tracks else None
    return row


def score(run: Callable, examples, sample_rate_hz: int, chunk_seconds: float | None = None, with_csdr=True) -> dict:
    """The quality row of ``run`` (B, S) -> (B, S) on ``examples`` at one workload."""
    estimates = separate_examples(run, examples, sample_rate_hz, chunk_seconds)
    return score_estimates(examples, estimates, sample_rate_hz, with_csdr)


def evaluate(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | None = None,
    items: int = 32,
    seconds: float = 4.0,
    target: str = "vocals",
    out: str | os.PathLike | None = None,
    in_place: bool = False,
    chunk_seconds: tuple[float, ...] = (),
    timbre_data: str | os.PathLike | None = None,
) -> EvaluationResult:
    """uSDR / SI-SDR / cSDR of every subnet (and of the unprocessed mixture) on held-out data.

    ``data`` is a folder of stems (or a rendered root with ``test/``), or None for ``items`` synthetic
    test tracks of ``seconds`` seconds (a split never used in training). Every subnet is scored on the
    whole clip and at every ``chunk_seconds``. The table is written atomically into a copy of the
    checkpoint (``out``, default ``<name>.evaluated.safetensors``) or, with ``in_place``, into the
    checkpoint itself — never into the installed package.
    """
    checkpoint = Path(checkpoint)
    if in_place and out is not None:
        raise InputError("give either --out or --in-place, not both")
    chunks = tuple(sorted({_check_chunk(c) for c in chunk_seconds}))
    target_path = checkpoint if in_place else Path(out or checkpoint.with_suffix(".evaluated.safetensors"))
    if target_path.absolute().parent.resolve() == BUNDLED_SUPERNET.parent.resolve():
        raise InputError(
            f"refusing to write {target_path}: that is the installed package's bundled supernet; "
            "give --out PATH for the evaluated copy"
        )
    require_museval()  # before any work: cSDR is part of every row
    ckpt = load_checkpoint(checkpoint)
    model, meta = ckpt.model.eval(), ckpt.meta
    sr = meta.config.sample_rate_hz
    sets = held_out_sets(None if data is None else Path(data), timbre_data, sr, items, seconds, target)
    if isinstance(model, ElasticBSRNN):
        runs = {str(s): (lambda x, s=s: model(x, s)) for s in meta.space.grid()}
    else:
        runs = {f"{meta.config.num_blocks}x{meta.config.feature_dim}": model}
    tables = [_table(held, runs, sr, chunks) for held in sets]
    quality = {"metric": "usdr_db", "metrics": {**METRICS, "museval": _museval_version()}, **tables[0]}
    if len(tables) > 1:
        quality["splits"] = {sets[1].name: tables[1]}
    quality = json.loads(json.dumps(quality))
    save_checkpoint(target_path, model, replace(meta, quality=quality))
    return EvaluationResult(target_path, quality)


def _table(held: HeldOut, runs: dict, sr: int, chunks: tuple[float, ...]) -> dict:
    """One split's part of the quality table: whole clip, then each chunk length."""
    examples = held.examples
    mixture = score_estimates(examples, [m for _, m, _ in examples], sr)  # chunking the identity changes nothing
    table = {
        "data": {**held.description, "tracks": len(examples), "sha256": data_hash(examples)},
        "mixture": mixture,
        "subnets": {},
        "chunked": {},
    }
    total, done = len(runs) * (1 + len(chunks)), 0
    for key, run in runs.items():
        done += 1
        log.info("scoring %s on the %s split: whole clip (%d of %d)", key, held.name, done, total)
        table["subnets"][key] = score(run, examples, sr)
    for chunk in chunks:
        entry = {"chunk_seconds": chunk, "overlap_seconds": overlap_for(chunk), "mixture": mixture, "subnets": {}}
        for key, run in runs.items():
            done += 1
            log.info("scoring %s on the %s split: %g s chunks (%d of %d)", key, held.name, chunk, done, total)
            entry["subnets"][key] = score(run, examples, sr, chunk)
        table["chunked"][chunk_key(chunk)] = entry
    return table


def _check_chunk(seconds: float) -> float:
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"--chunk-seconds must be positive, got {seconds}")
    return float(seconds)


def _museval_version() -> str:
    from importlib.metadata import version

    return f"museval {version('museval')}"
