"""What a dense BSRNN costs: MACs (fvcore with RNN handles), parameters, and the closed form that checks them.

The convention (GUIDE section 3): one MAC is one multiply-accumulate of a weight matmul, convolution or
recurrent gate. An LSTM step costs 4 gates x (input + hidden) x hidden per direction and layer, a GRU
step 3 gates. Norms, activations and element-wise ops are not counted, and every count lists the ones
it saw. **Network MACs** cover band split, blocks and mask estimation: the count traces
``BSRNN.mask`` on a spectrogram, so the STFT, the complex mask multiply and the inverse STFT are outside
it (``NOT_NETWORK``); an ONNX export reports its in-graph STFT/iSTFT MACs separately.

MACs per second of audio are the MACs of ``COUNTED_SECONDS`` of audio (4 s: T = 1 + S // hop frames,
501 at 16 kHz with hop 128) divided by 4 s. Every counted op runs once per frame (the time LSTM steps
over frames, the band LSTM takes frames as its batch), so MACs are exactly T x MACs per frame, and a
chunk of any length costs its own T x MACs per frame. :func:`subnet_costs` therefore traces each
subnet at two short lengths (``TRACED_FRAMES``), requires the same MACs per frame from both (a check,
at run time, that the cost really is linear in frames), and scales to 4 s: the same number a 4 s trace
gives (tests compare the two), at a fraction of the time for large presets.

fvcore counts ``aten::lstm`` and ``aten::gru`` as zero with only a log warning (fvcore issue #98), so
:func:`rnn_macs` is registered for them. An op fvcore has no rule for inside a module that holds
weights raises :class:`CostModelError` rather than counting as zero.

Only the functions that trace import torch and fvcore; reading a cached :class:`CostTable` does not.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2g_deploy import costcache
from s2g_deploy.errors import CostModelError
from s2g_deploy.subnet import Subnet

if TYPE_CHECKING:
    from torch import nn

    from s2g_deploy.models.bsrnn import BSRNN, BSRNNConfig

log = logging.getLogger(__name__)

COUNTED_SECONDS = 4.0
# Bump when a counting rule changes: it is part of the cache key, so old cached tables are recounted.
COST_MODEL_VERSION = 2  # 2: tables record whether the supernet streams (frames per call)
# Computed by BSRNN.forward around the network proper; not network MACs.
NOT_NETWORK = ("stft", "complex mask multiply", "istft")

# Counted: fvcore's own handles for linear, addmm, bmm, matmul, mm, einsum and _convolution (its "flops"
# are MACs), and rnn_macs for the recurrent ops, which fvcore counts as zero.
_RNN_OPS = ("aten::lstm", "aten::gru", "aten::rnn_tanh", "aten::rnn_relu")


def _aten(names: str) -> frozenset[str]:
    return frozenset("aten::" + op for op in names.split())


# Arithmetic that is not a MAC by convention: seen, not counted, listed in every report.
_UNCOUNTED_OPS = _aten(
    "group_norm layer_norm batch_norm instance_norm native_group_norm native_layer_norm "
    "tanh tanh_ sigmoid sigmoid_ relu relu_ gelu glu silu elu leaky_relu hardtanh prelu softmax log_softmax "
    "add add_ sub sub_ mul mul_ div div_ neg abs exp log sqrt rsqrt pow reciprocal clamp clamp_ "
    "mean sum var std max min maximum minimum where masked_fill sin cos atan2 floor floor_divide remainder "
    "upsample_nearest2d upsample_bilinear2d adaptive_avg_pool1d adaptive_avg_pool2d avg_pool1d avg_pool2d "
    "max_pool1d max_pool2d grid_sampler eq ge gt le lt ne __and__ bitwise_not"
)
# Ops that only move, reshape or create data: no arithmetic, so neither counted nor listed.
_MOVEMENT_OPS = _aten(
    "Int ScalarImplicit Float size numel dim arange cat chunk constant_pad_nd pad contiguous copy_ clone "
    "detach dropout alpha_dropout empty empty_like expand expand_as flatten full full_like gather index "
    "index_put_ index_select narrow new_empty new_full new_zeros nonzero ones ones_like permute repeat "
    "reshape roll select slice split split_with_sizes squeeze stack t to transpose type_as unbind "
    "unflatten unsqueeze unsqueeze_ view view_as view_as_real view_as_complex zeros zeros_like real imag"
)


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass of a network on one input, with what went into them and what did not."""

    total: int
    by_operator: Mapping[str, int]  # e.g. {"linear": ..., "lstm": ...}
    by_module: Mapping[str, int]  # per direct child of the network, e.g. {"band_split": ..., "blocks": ...}
    params: int
    uncounted: tuple[str, ...]  # arithmetic ops seen but not MACs by convention (norms, activations, ...)


def rnn_macs(inputs: list, outputs: list) -> int:
    """fvcore handle for ``aten::lstm``, ``aten::gru``, ``aten::rnn_tanh`` and ``aten::rnn_relu``.

    Each layer and direction multiplies every step's input and recurrent state by its gate weights
    (LSTM: 4H x I and 4H x H; GRU: 3H x ...; ``proj_size``: also P x H), once per step and sequence.
    So MACs = (steps x sequences) x (element count of all 2-D weights), and steps x sequences is the
    input's element count over its feature size whatever its layout: batch-first or not, unbatched,
    or the data of a packed sequence. Biases (1-D) are additions, not MACs.
    """
    import torch
    from fvcore.nn.jit_handles import get_shape

    node = outputs[0].node()
    names = [a.name for a in torch._C.parse_schema(node.schema()).arguments]
    data = inputs[names.index("data" if "data" in names else "input")]
    params = inputs[names.index("params")]
    shape = get_shape(data)
    if not shape or params.node().kind() != "prim::ListConstruct":
        raise CostModelError(f"cannot read the input shape or weights of {node.kind()} from the traced graph")
    weights = [get_shape(v) for v in params.node().inputs()]
    if any(w is None for w in weights):
        raise CostModelError(f"cannot read the weight shapes of {node.kind()} from the traced graph")
    rows = 1
    for d in shape[:-1]:
        rows *= d
    return rows * sum(w[0] * w[1] for w in weights if len(w) == 2)


def count_module_macs(module: nn.Module, inputs: tuple, parts_of: str = "") -> MacCount:
    """Trace ``module(*inputs)`` with fvcore and count its MACs by the convention above.

    ``by_module`` breaks the total down over the direct children of submodule ``parts_of`` (default:
    ``module`` itself). Raises :class:`CostModelError` for an op with no MAC rule inside a module that
    holds weights.
    """
    import torch

    with warnings.catch_warnings():  # fvcore's import torch.jit.script-s its focal loss, which torch deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis, jit_analysis

    seen_uncounted: Counter[str] = Counter()

    def recorder(kind: str):
        def handle(inputs, outputs) -> int:
            if kind in _UNCOUNTED_OPS:
                seen_uncounted[kind.removeprefix("aten::")] += 1
            return 0

        return handle

    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    # Route every op fvcore knows into exactly one class: counted, listed as uncounted, or data movement
    # (fvcore would otherwise count norms and upsampling in its own units, and drop some ops silently).
    fvcore_ignored = getattr(jit_analysis, "_IGNORED_OPS", set())
    for kind in _UNCOUNTED_OPS | _MOVEMENT_OPS | set(fvcore_ignored):
        analysis.set_op_handle(kind, recorder(kind))
    for kind in _RNN_OPS:
        analysis.set_op_handle(kind, rnn_macs)
    threads = torch.get_num_threads()
    # A count needs the trace, not speed: one thread avoids OpenMP spin-waits, which make tiny LSTMs
    # 100x slower on a busy CPU.
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            total = int(analysis.total())
    finally:
        torch.set_num_threads(threads)
    _check_unknown_ops(module, analysis)
    prefix = f"{parts_of}." if parts_of else ""
    parts = module.get_submodule(parts_of).named_children()
    by_module = {name: int(analysis.total(prefix + name)) for name, _ in parts}
    by_operator = {k: int(v) for k, v in sorted(analysis.by_operator().items())}
    unknown = {k.removeprefix("aten::") for k in analysis.unsupported_ops()}
    params = sum(p.numel() for p in module.parameters())
    return MacCount(total, by_operator, by_module, params, tuple(sorted(set(seen_uncounted) | unknown)))


def _check_unknown_ops(module: nn.Module, analysis) -> None:
    """An op without a MAC rule is only acceptable where no weights can flow into it."""
    for name, mod in module.named_modules():
        if not any(True for _ in mod.parameters(recurse=False)):
            continue
        own = Counter(analysis.unsupported_ops(name))  # this module's ops, minus its children's
        for child, _ in mod.named_children():
            own -= Counter(analysis.unsupported_ops(f"{name}.{child}" if name else child))
        if own:
            where = f"module {name!r}" if name else "the top-level module"
            raise CostModelError(
                f"cannot count MACs of {', '.join(sorted(own))} in {where} ({type(mod).__name__}), which holds "
                "weights: no MAC rule for this op (add one in s2g_deploy/cost.py)"
            )


def count_macs(model: BSRNN, n_samples: int) -> MacCount:
    """Network MACs of a dense BSRNN on one input of ``n_samples`` samples (batch 1), traced by fvcore."""
    import torch

    from s2g_deploy.export.onnx import MaskNetwork  # the network proper: spectrogram in, complex mask out

    c = model.config
    weight = next(model.parameters())
    # Values do not matter to a count; zeros keep it free of randomness.
    spec = torch.zeros(1, c.n_bins, c.frames(n_samples), 2, dtype=weight.dtype, device=weight.device)
    return count_module_macs(MaskNetwork(model), (spec,), parts_of="model")


def closed_form_macs(config: BSRNNConfig, n_samples: int) -> int:
    """Network MACs of a dense model on ``n_samples`` samples, from its hyper-parameters alone."""
    return config.frames(n_samples) * closed_form_macs_per_frame(config)


def closed_form_macs_per_frame(config: BSRNNConfig) -> int:
    """Network MACs per STFT frame (batch 1), by the architecture's own formula (for BSRNN:
    :func:`s2g_deploy.models.config.macs_per_frame`); see the module docstring for why cost is linear
    in frames."""
    from s2g_deploy.models.registry import architecture_of

    return architecture_of(config).macs_per_frame(config)


@dataclass(frozen=True)
class SubnetCost:
    """One subnet's cost: parameters and network MACs, per frame and per second of audio."""

    subnet: Subnet
    params: int
    macs_per_frame: int  # batch 1
    macs_per_second: float  # MACs of COUNTED_SECONDS of audio / COUNTED_SECONDS
    closed_form_macs_per_frame: int  # the independent formula, for the cross-check
    by_module: Mapping[str, int] = field(default_factory=dict)  # MACs per frame of band_split, blocks, ...

    def to_dict(self) -> dict:
        return {
            "subnet": str(self.subnet),
            "params": self.params,
            "macs_per_frame": self.macs_per_frame,
            "macs_per_second": self.macs_per_second,
            "closed_form_macs_per_frame": self.closed_form_macs_per_frame,
            "by_module": dict(self.by_module),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetCost:
        return cls(
            subnet=Subnet.parse(data["subnet"]),
            params=_whole(data["params"]),
            macs_per_frame=_whole(data["macs_per_frame"]),
            macs_per_second=float(data["macs_per_second"]),
            closed_form_macs_per_frame=_whole(data["closed_form_macs_per_frame"]),
            by_module={str(k): _whole(v) for k, v in dict(data["by_module"]).items()},
        )


@dataclass(frozen=True)
class CostTable:
    """The cost of every subnet of a supernet's grid, in grid order (smallest depth first)."""

    weights_sha256: str
    sample_rate_hz: int
    hop_length: int
    counted_samples: int  # the input length MACs per second refer to
    entries: tuple[SubnetCost, ...]
    uncounted: tuple[str, ...]  # ops seen but not MACs by convention, over the whole grid
    versions: Mapping[str, str]  # libraries that did the counting
    not_network: tuple[str, ...] = NOT_NETWORK
    streams: bool = False  # a causal supernet: one frame per hop of a stream, not a centred STFT's 1 + n // hop

    @property
    def counted_seconds(self) -> float:
        return self.counted_samples / self.sample_rate_hz

    @property
    def counted_frames(self) -> int:
        return self._frames(self.counted_samples)

    def _frames(self, samples: int) -> int:
        return -(-samples // self.hop_length) if self.streams else 1 + samples // self.hop_length

    def get(self, subnet: Subnet) -> SubnetCost:
        for entry in self.entries:
            if entry.subnet == subnet:
                return entry
        raise KeyError(f"subnet {subnet} is not in this cost table")

    def chunk_frames(self, chunk_seconds: float) -> int:
        """STFT frames of one chunk of ``chunk_seconds`` (centred STFT: 1 + samples // hop; a stream's call:
        one per hop)."""
        return self._frames(round(chunk_seconds * self.sample_rate_hz))

    def macs_per_chunk(self, subnet: Subnet, chunk_seconds: float) -> int:
        """Network MACs of one chunk of ``chunk_seconds`` of one stream (batch 1)."""
        return self.chunk_frames(chunk_seconds) * self.get(subnet).macs_per_frame

    def to_dict(self) -> dict:
        return {
            "weights_sha256": self.weights_sha256,
            "sample_rate_hz": self.sample_rate_hz,
            "hop_length": self.hop_length,
            "counted_samples": self.counted_samples,
            "counted_seconds": self.counted_seconds,
            "counted_frames": self.counted_frames,
            "streams": self.streams,
            "convention": "1 MAC = one multiply-accumulate of a weight matmul, convolution or recurrent gate",
            "uncounted": list(self.uncounted),
            "not_network": list(self.not_network),
            "versions": dict(self.versions),
            "subnets": [e.to_dict() for e in self.entries],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostTable:
        """Inverse of :meth:`to_dict`; raises KeyError, TypeError or ValueError on a malformed document."""
        return cls(
            weights_sha256=str(data["weights_sha256"]),
            sample_rate_hz=_whole(data["sample_rate_hz"]),
            hop_length=_whole(data["hop_length"]),
            counted_samples=_whole(data["counted_samples"]),
            entries=tuple(SubnetCost.from_dict(e) for e in data["subnets"]),
            uncounted=tuple(str(op) for op in data["uncounted"]),
            versions={str(k): str(v) for k, v in dict(data["versions"]).items()},
            not_network=tuple(str(op) for op in data["not_network"]),
            streams=bool(data.get("streams", False)),
        )


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


# Frame counts of the two short traces behind every table entry: per-frame MACs must agree exactly,
# which checks, at run time, that cost is linear in frames (and so that T x per-frame = a trace of T frames).
TRACED_FRAMES = (4, 7)


def subnet_costs(
    checkpoint_path: str | os.PathLike | None = None,
    *,
    counted_seconds: float = COUNTED_SECONDS,
    use_cache: bool = True,
) -> CostTable:
    """Parameters and network MACs of every subnet of a supernet's grid, cached on disk.

    ``checkpoint_path`` defaults to the bundled supernet. The cache (see :mod:`s2g_deploy.costcache`)
    is keyed by the weights' SHA-256, the architecture, the grid, the counted length and the versions
    of s2g_deploy, torch and fvcore; a warm lookup reads only the checkpoint's header and never
    imports torch. Each subnet is sliced out of the supernet and counted as a dense model.
    """
    from s2g_deploy.bundled import resolve_checkpoint

    path = resolve_checkpoint(checkpoint_path)
    summary = costcache.read_summary(path)
    counted_samples = round(counted_seconds * summary.sample_rate_hz)
    if counted_samples < 1:
        raise ValueError(f"counted_seconds must be positive, got {counted_seconds}")
    key = {
        "cost_model": COST_MODEL_VERSION,
        "weights_sha256": summary.weights_sha256,
        "config": dict(summary.config),
        "grid": [str(s) for s in summary.space.grid()],
        "counted_samples": counted_samples,
        "traced_frames": list(TRACED_FRAMES),
        "versions": costcache.library_versions(),
    }
    if use_cache:
        document = costcache.load(key)
        if document is not None:
            try:
                table = CostTable.from_dict(document)
                if [str(e.subnet) for e in table.entries] != key["grid"]:
                    raise ValueError("its subnets are not the supernet's grid")
                return table
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a malformed cost cache entry for %s (%s); recounting", path, exc)
    table = _count_grid(path, summary.weights_sha256, counted_samples, key["versions"])
    if use_cache:
        costcache.store(key, table.to_dict())
    return table


def _count_grid(path: Path, sha256: str, counted_samples: int, versions: Mapping[str, str]) -> CostTable:
    from s2g_deploy.checkpoint import load_checkpoint
    from s2g_deploy.slicing import slice_subnet

    log.info("counting the MACs of every subnet of %s (once; cached afterwards)", path)
    ckpt = load_checkpoint(path)  # verifies the weights against the hash the cache is keyed by
    if ckpt.meta.weights_sha256 != sha256:
        raise CostModelError(f"{path}: changed while its costs were being counted; run again")
    supernet = ckpt.model
    config = supernet.config
    entries, uncounted = [], set()
    for subnet in supernet.space.grid():
        dense = slice_subnet(supernet, subnet)
        per_frame = {}
        for frames in TRACED_FRAMES:
            count = count_macs(dense, config.samples_for_frames(frames))
            per_frame[frames] = (count.total, count.by_module)
            uncounted.update(count.uncounted)
        macs_per_frame = {total // f if total % f == 0 else None for f, (total, _) in per_frame.items()}
        if len(macs_per_frame) != 1 or None in macs_per_frame:
            detail = ", ".join(f"{total} MACs at {f} frames" for f, (total, _) in per_frame.items())
            raise CostModelError(f"subnet {subnet}: MACs are not proportional to STFT frames ({detail})")
        (mpf,) = macs_per_frame
        by_module = {k: v // TRACED_FRAMES[0] for k, v in per_frame[TRACED_FRAMES[0]][1].items()}
        sub_config = config.with_size(feature_dim=subnet.width, num_blocks=subnet.depth)
        entries.append(
            SubnetCost(
                subnet=subnet,
                params=sum(p.numel() for p in dense.parameters()),
                macs_per_frame=mpf,
                macs_per_second=mpf * config.frames(counted_samples) / (counted_samples / config.sample_rate_hz),
                closed_form_macs_per_frame=closed_form_macs_per_frame(sub_config),
                by_module=by_module,
            )
        )
    return CostTable(
        weights_sha256=sha256,
        sample_rate_hz=config.sample_rate_hz,
        hop_length=config.hop_length,
        counted_samples=counted_samples,
        entries=tuple(entries),
        uncounted=tuple(sorted(uncounted)),
        versions=dict(versions),
        streams=getattr(supernet, "causal", False),
    )
