"""Export a dense BSRNN to ONNX: the waveform wrapper, the exporter call, onnxsim, and metadata.

Two I/O contracts:

* ``waveform`` (default): ``mixture`` (batch, samples) float32 -> ``target`` (batch, samples), with the
  STFT and iSTFT inside the graph as plain convolutions (:mod:`s2g_deploy.export.stft`).
* ``spectrogram``: ``spectrogram`` (batch, bins, frames, 2) -> ``mask`` (batch, bins, frames, 2), only
  ``BSRNN.mask``; the caller brings its own STFT with the settings written into the metadata.

We export with the TorchScript exporter (``dynamo=False``): the dynamo exporter can freeze the time axis
of a bidirectional LSTM while still declaring it dynamic (GUIDE section 4 item 3). Whatever the exporter
claims, :mod:`s2g_deploy.export.parity` runs the file at lengths other than the traced one.
"""

from __future__ import annotations

import contextlib
import io as _io
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from s2g_deploy.export import IO_MODES
from s2g_deploy.export.stft import ConvISTFT, ConvSTFT, FramedISTFT, FramedSTFT, framed
from s2g_deploy.models.bsrnn import BSRNN, complex_multiply
from s2g_deploy.runtime.stream import NEXT

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 11, 20  # all export and run (checked); the TorchScript exporter stops at 20
BATCH, SAMPLES, FRAMES = "batch", "samples", "frames"  # names of the dynamic axes


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


@dataclass(frozen=True)
class IOSpec:
    """Names, shapes and dynamic axes of one exported contract.

    ``states`` (a stream only): each state input's name and shape; its output is named ``next_`` + name.
    """

    io: str
    input_name: str
    output_name: str
    input_shape: tuple[str | int, ...]
    output_shape: tuple[str | int, ...]
    states: tuple[tuple[str, tuple[str | int, ...]], ...] = ()

    @property
    def inputs(self) -> tuple[tuple[str, tuple[str | int, ...]], ...]:
        return ((self.input_name, self.input_shape), *self.states)

    @property
    def outputs(self) -> tuple[tuple[str, tuple[str | int, ...]], ...]:
        return ((self.output_name, self.output_shape), *((NEXT + name, shape) for name, shape in self.states))

    @property
    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            name: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
            for name, shape in self.inputs + self.outputs
        }

    def to_dict(self) -> dict:
        out = {
            "io": self.io,
            "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": "float32"},
            "output": {"name": self.output_name, "shape": list(self.output_shape), "dtype": "float32"},
        }
        if self.states:
            from s2g_deploy.runtime.stream import STATE_DOCS

            out["states"] = [
                {
                    "name": name,
                    "output": NEXT + name,
                    "shape": list(shape),
                    "dtype": "float32",
                    "initial": "zeros",
                    "holds": STATE_DOCS.get(name, ""),
                }
                for name, shape in self.states
            ]
        return out


def io_spec(io: str, config) -> IOSpec:
    """The contract of ``io`` for a dense model of ``config``."""
    if io == "waveform":
        return IOSpec(io, "mixture", "target", (BATCH, SAMPLES), (BATCH, SAMPLES))
    if io == "spectrogram":
        n_bins = config.n_bins
        return IOSpec(io, "spectrogram", "mask", (BATCH, n_bins, FRAMES, 2), (BATCH, n_bins, FRAMES, 2))
    if io == "stream":
        from s2g_deploy.runtime.stream import state_shapes

        states = tuple(
            (name, tuple(BATCH if d == "batch" else d for d in shape)) for name, shape in state_shapes(config).items()
        )
        return IOSpec(io, "mixture", "target", (BATCH, SAMPLES), (BATCH, SAMPLES), states)
    raise ValueError(f"unknown io {io!r}; choose one of {', '.join(IO_MODES)}")


def framed_transforms(model: nn.Module) -> bool:
    """Whether :class:`WaveformSeparator` wraps ``model`` in the framed STFT/iSTFT (else the convolutions)."""
    c = model.config
    return framed(c.n_fft, c.hop_length) and hasattr(model, "mask_frames")


class WaveformSeparator(nn.Module):
    """A dense BSRNN between exportable STFT and iSTFT: mixture (B, S) -> target (B, S).

    Where the STFT size allows (even n_fft that hop divides) and the network runs time-major
    (``mask_frames``), the transforms are :class:`FramedSTFT` / :class:`FramedISTFT`: half the MACs of
    the convolutions, and no layout changes between them and the network. Otherwise the convolutions.
    """

    def __init__(self, model: BSRNN):
        super().__init__()
        c = model.config
        self.model = model
        self.framed = framed_transforms(model)
        if self.framed:
            self.stft, self.istft = FramedSTFT(c.n_fft, c.hop_length), FramedISTFT(c.n_fft, c.hop_length)
        else:
            self.stft = ConvSTFT(c.n_fft, c.hop_length)
            self.istft = ConvISTFT(c.n_fft, c.hop_length, basis=self.stft.basis)  # one basis in the file

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.stft(wav)  # (T, B, 2, F) framed, else (B, F, T, 2)
        if self.framed:
            est = complex_multiply(self.model.mask_frames(spec), spec, dim=2)  # (T, B, 2, F)
        else:
            est = complex_multiply(self.model.mask(spec), spec)  # (B, F, T, 2)
        return self.istft(est, wav.shape[-1])  # (B, S)


class MaskNetwork(nn.Module):
    """Only the network: spectrogram (B, F, T, 2) -> complex mask (B, F, T, 2)."""

    def __init__(self, model: BSRNN):
        super().__init__()
        self.model = model

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.model.mask(spec)


def exportable(model: BSRNN, io: str) -> nn.Module:
    """The module that gets traced for ``io``, in eval mode."""
    if io == "stream":
        from s2g_deploy.export.stream import StreamingSeparator

        return StreamingSeparator(model).eval()
    module = WaveformSeparator(model) if io == "waveform" else MaskNetwork(model)
    return module.eval()


def example_input(model: BSRNN, io: str, n_samples: int) -> tuple[torch.Tensor, ...]:
    """Deterministic trace inputs of ``n_samples`` samples (or the frames they give), batch 1.

    A stream traces one call of ``n_samples`` rounded down to whole hops, from random states (zeros
    would let the exporter fold them away).
    """
    gen = torch.Generator().manual_seed(1234)
    if io == "stream":
        hops = max(1, n_samples // model.config.hop_length)
        wav = torch.randn(1, hops * model.config.hop_length, generator=gen).clamp(-3, 3) / 3
        shapes = io_spec(io, model.config).states
        return (
            wav,
            *(0.1 * torch.randn(*[1 if d == BATCH else d for d in shape], generator=gen) for _, shape in shapes),
        )
    wav = torch.randn(1, n_samples, generator=gen).clamp(-3, 3) / 3
    if io == "waveform":
        return (wav,)
    from s2g_deploy.models.bsrnn import stft

    return (stft(wav, model.config),)


def to_onnx(model: BSRNN, io: str, opset: int, trace_samples: int) -> bytes:
    """Trace ``model`` with the TorchScript exporter; returns the serialized ONNX model."""
    spec = io_spec(io, model.config)
    module = exportable(model, io)
    buffer = _io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice and tracer warnings about shape-derived Python
        # values are expected here: dynamic shapes are proved by parity at other lengths instead
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example_input(model, io, trace_samples),
            buffer,
            input_names=[name for name, _ in spec.inputs],
            output_names=[name for name, _ in spec.outputs],
            dynamic_axes=spec.dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model_bytes = _drop_zero_initial_states(_fold_initializer_identities(buffer.getvalue()))
    return _declare_contract(model_bytes, spec)


def _fold_initializer_identities(model_bytes: bytes) -> bytes:
    """Point consumers of ``Identity(initializer)`` at the initializer itself and drop the Identity.

    With equal-valued parameters (an untrained model's GroupNorm weights are all ones) the exporter's
    initializer deduplication keeps one tensor and names the others through Identity nodes; onnxruntime
    1.32's graph optimiser then loses such a name ("is not a graph input, initializer, or output of a
    previous node").
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs
    }
    if not alias:
        return model_bytes
    for node in [n for n in graph.node if n.op_type == "Identity" and n.output[0] in alias]:
        graph.node.remove(node)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    return model.SerializeToString()


def _drop_zero_initial_states(model_bytes: bytes) -> bytes:
    """Remove the all-zero initial states the exporter builds for every recurrent node.

    ``nn.LSTM`` without ``hx`` makes zeros of shape (directions, batch, H) at run time; the exporter
    turns that into Shape/Gather/Concat/Expand per LSTM, and on a time-major input it can freeze the
    batch size into that shape (onnxruntime then fails at other lengths). ONNX's LSTM and GRU default
    missing initial states to zeros, so the inputs are dropped and the nodes that only fed them go.
    Only inputs made by expanding a constant that is all zeros are dropped; parity checks the result.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def is_zeros(name: str) -> bool:
        node = producer.get(name)
        if node is None or node.op_type != "Expand":
            return False
        source = producer.get(node.input[0])
        if source is None or source.op_type != "Constant":
            return False
        value = numpy_helper.to_array(source.attribute[0].t)
        return value.size > 0 and not np.any(value)

    state_inputs = {"LSTM": (5, 6), "GRU": (5,)}  # initial_h (and initial_c)
    for node in graph.node:
        for index in state_inputs.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] and is_zeros(node.input[index]):
                node.input[index] = ""
        while node.input and node.input[-1] == "":
            node.input.pop()
    _prune_dead_nodes(graph)
    return model.SerializeToString()


def _prune_dead_nodes(graph) -> None:
    """Remove nodes none of whose outputs reach a graph output, repeatedly."""
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def _declare_contract(model_bytes: bytes, spec: IOSpec) -> bytes:
    """Write the contract's shapes on the graph's input and output.

    The exporter names the dynamic axes but leaves some static ones symbolic (e.g. the mask's bins
    come out of a Concat as ``Concatmask_dim_1``). Declaring the sizes we know is safe: parity checks
    the shapes the file actually produces.
    """
    import onnx

    model = onnx.load_from_string(model_bytes)
    shapes = dict(spec.inputs + spec.outputs)
    for vi in [*model.graph.input, *model.graph.output]:
        shape = shapes.get(vi.name)
        if shape is None:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise RuntimeError(f"exported {vi.name!r} has rank {len(dims)}, expected {len(shape)}")
        for dim, want in zip(dims, shape):
            dim.Clear()
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want
    return model.SerializeToString()


def declared_shape(model, name: str) -> list[str | int | None]:
    """The shape an ONNX model declares for input or output ``name``: dim_param names or sizes."""
    for vi in [*model.graph.input, *model.graph.output]:
        if vi.name == name:
            dims = vi.type.tensor_type.shape.dim
            return [
                d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else None)
                for d in dims
            ]
    raise KeyError(name)


def check_declared_axes(model, spec: IOSpec, what: str) -> None:
    """The file must declare exactly the contract's shapes, dynamic axes by name."""
    from s2g_deploy.errors import VerificationError

    for name, shape in spec.inputs + spec.outputs:
        found = declared_shape(model, name)
        if found != list(shape):
            raise VerificationError(f"{what}: {name!r} is declared as {found}, expected {list(shape)}")


def simplify(model_bytes: bytes, io: str, config) -> tuple[bytes, dict]:
    """onnxsim with the dynamic axes left dynamic; returns the simplified model and a summary.

    onnxsim's ``check`` only says the graph is valid (GUIDE section 4 item 4); the parity certificate
    tests the numbers. onnxsim's own bookkeeping in ``metadata_props`` is dropped: the file's
    metadata is ours (:mod:`s2g_deploy.export.describe`).
    """
    import onnx
    import onnxsim

    from s2g_deploy.errors import VerificationError

    spec = io_spec(io, config)
    model = onnx.load_from_string(model_bytes)
    check_declared_axes(model, spec, "exported ONNX")
    nodes_before = len(model.graph.node)
    simplified, ok = onnxsim.simplify(model)  # no input shapes given: dynamic axes stay symbolic
    if not ok:
        raise VerificationError("onnxsim could not validate the simplified graph")
    check_declared_axes(simplified, spec, "simplified ONNX")
    del simplified.metadata_props[:]
    by_op = Counter(node.op_type for node in simplified.graph.node)
    return simplified.SerializeToString(), {
        "nodes_before": nodes_before,
        "nodes_after": len(simplified.graph.node),
        "nodes_by_op": dict(sorted(by_op.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
