"""An export's cost record: MACs per second from the cost model, checked against the exported graph's count.

The two counts are independent (fvcore with LSTM handles on the PyTorch model; a walk over the ONNX
graph's nodes) and must agree within :data:`MAC_AGREEMENT`, or the export fails: a count that silently
drops the LSTMs, the pitfall of several tools, cannot reach a manifest.
"""

from __future__ import annotations

import logging
from typing import Any

from s2g_deploy.errors import VerificationError
from s2g_deploy.export.graph_macs import GraphMacs, count_graph_macs
from s2g_deploy.export.onnx import framed_transforms
from s2g_deploy.export.stft import stft_macs
from s2g_deploy.models.bsrnn import BSRNN, BSRNNConfig
from s2g_deploy.models.registry import architecture_of

log = logging.getLogger(__name__)

MAC_AGREEMENT = 0.02  # graph count vs cost model, relative


def export_costs(dense: BSRNN, io: str, model_bytes: bytes, count_samples: int, prof: Any) -> dict:
    """MACs per second from the cost model and from the graph, and per chunk where a profile sets one."""
    config = dense.config
    seconds = count_samples / config.sample_rate_hz
    model = _model_macs(dense, io, count_samples)
    graph = _graph_macs(model_bytes, io, config, count_samples)
    agreement = abs(graph.total - model["total"]) / max(model["total"], 1)
    log.info(
        "MACs per %g s of audio: cost model %.4g, graph %.4g (%.2f%% apart)",
        seconds,
        model["total"],
        graph.total,
        100 * agreement,
    )
    if agreement > MAC_AGREEMENT:
        raise VerificationError(
            f"graph MAC count {graph.total:,} differs from the cost model's {model['total']:,} by "
            f"{100 * agreement:.1f}% (limit {100 * MAC_AGREEMENT:.0f}%)"
        )
    costs = {
        "macs_per_second": {
            "network": round(model["network"] / seconds),
            "stft_istft": round(model["stft_istft"] / seconds),
            "total": round(model["total"] / seconds),
        },
        "model": {**model, "samples": count_samples},
        "graph": graph.to_dict(),
        "graph_vs_model": agreement,
        "params": architecture_of(config).count_params(config),
        "not_counted": "norms, activations, element-wise ops (complex mask multiply, iSTFT normalisation)",
    }
    chunk_seconds = getattr(getattr(prof, "workload", None), "chunk_seconds", None)
    if chunk_seconds:
        n = round(chunk_seconds * config.sample_rate_hz)
        chunk = _model_macs(dense, io, n)
        costs["per_chunk"] = {"chunk_seconds": chunk_seconds, "samples": n, **chunk}
    return costs


def _model_macs(dense: BSRNN, io: str, n_samples: int) -> dict:
    network, source = network_macs(dense, n_samples)
    s = sum(stft_macs(dense.config, n_samples, framed_transforms(dense)).values()) if io != "spectrogram" else 0
    return {"network": network, "stft_istft": s, "total": network + s, "source": source}


def _graph_macs(model_bytes: bytes, io: str, config: BSRNNConfig, n_samples: int) -> GraphMacs:
    shape = (1, n_samples) if io != "spectrogram" else (1, config.n_bins, config.frames(n_samples), 2)
    return count_graph_macs(model_bytes, shape)


def network_macs(dense: BSRNN, n_samples: int) -> tuple[int, str]:
    """Network MACs (band split, blocks, mask estimation) of one channel of ``n_samples`` samples."""
    from s2g_deploy.cost import count_macs

    return count_macs(dense, n_samples).total, "s2g_deploy.cost (fvcore with LSTM handles)"
