"""Quality of every subnet of a checkpoint on held-out data: the checkpoint's quality table."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from s2g_deploy.checkpoint import load_checkpoint, save_checkpoint
from s2g_deploy.errors import InputError
from s2g_deploy.models.elastic import ElasticBSRNN
from s2g_deploy.train.data import SyntheticMusic
from s2g_deploy.train.metrics import si_sdr, usdr
from s2g_deploy.train.stems import StemFolder


@dataclass(frozen=True)
class EvaluationResult:
    checkpoint: Path  # the file the quality table was written to
    quality: dict  # the quality table, as stored in the checkpoint


def held_out_examples(data: Path | None, sample_rate_hz: int, items: int, seconds: float, target: str):
    """(examples, description) of the test split: ``items`` synthetic tracks, or every track in ``data``."""
    if data is None:
        source = SyntheticMusic(sample_rate_hz, seconds, "test", seed=0)
        return source.examples(items), source.describe()
    source = StemFolder.open(data, sample_rate_hz, seconds=0.0, target=target)
    return source.examples(), source.describe()


def data_hash(examples) -> str:
    digest = hashlib.sha256()
    for name, mix, target in examples:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(mix, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(target, dtype=np.float32).tobytes())
    return digest.hexdigest()


def score(run, examples, batch: int = 8) -> dict:
    """Mean uSDR and SI-SDR (dB) over tracks; equal-length tracks are batched."""
    u, s = [], []
    for i in range(0, len(examples), batch):
        chunk = examples[i : i + batch]
        same = len({len(m) for _, m, _ in chunk}) == 1
        groups = [chunk] if same else [[e] for e in chunk]
        for group in groups:
            mix = torch.from_numpy(np.stack([m for _, m, _ in group]))
            ref = torch.from_numpy(np.stack([t for _, _, t in group]))
            est = run(mix)
            u.append(usdr(est, ref))
            s.append(si_sdr(est, ref))
    return {"usdr_db": round(torch.cat(u).mean().item(), 3), "sisdr_db": round(torch.cat(s).mean().item(), 3)}


def evaluate(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike | None = None,
    items: int = 32,
    seconds: float = 4.0,
    target: str = "vocals",
    out: str | os.PathLike | None = None,
    in_place: bool = False,
) -> EvaluationResult:
    """uSDR / SI-SDR of every subnet (and of the unprocessed mixture) on held-out data.

    ``data`` is a folder of stems, or None for ``items`` synthetic test tracks of ``seconds`` seconds
    (a split never used in training). The table is written atomically into a copy of the checkpoint
    (``out``, default ``<name>.evaluated.safetensors``) or, with ``in_place``, into the checkpoint itself.
    """
    checkpoint = Path(checkpoint)
    if in_place and out is not None:
        raise InputError("give either --out or --in-place, not both")
    ckpt = load_checkpoint(checkpoint)
    model, meta = ckpt.model, ckpt.meta
    examples, description = held_out_examples(
        None if data is None else Path(data), meta.config.sample_rate_hz, items, seconds, target
    )
    subnets = meta.space.grid() if isinstance(model, ElasticBSRNN) else [meta.subnet]
    table = {}
    with torch.no_grad():
        for subnet in subnets:
            run = (lambda x, s=subnet: model(x, s)) if isinstance(model, ElasticBSRNN) else model
            key = str(subnet) if subnet else f"{meta.config.num_blocks}x{meta.config.feature_dim}"
            table[key] = score(run, examples)
    quality = {
        "metric": "usdr_db",
        "data": {**description, "tracks": len(examples), "sha256": data_hash(examples)},
        "mixture": score(lambda x: x, examples),
        "subnets": table,
    }
    target_path = checkpoint if in_place else Path(out or checkpoint.with_suffix(".evaluated.safetensors"))
    save_checkpoint(target_path, model, replace(meta, quality=json.loads(json.dumps(quality))))
    return EvaluationResult(target_path, quality)
