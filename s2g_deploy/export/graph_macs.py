"""An independent MAC count of an ONNX graph: MatMul, Gemm, Conv, ConvTranspose, LSTM and GRU nodes.

It knows nothing of PyTorch, fvcore or BSRNN: the input's dynamic axes are fixed to a concrete size,
ONNX shape inference (with data propagation, so ``Shape -> Reshape`` chains resolve) gives every
tensor's shape (what it cannot resolve is read off one onnxruntime run at that size), and each
counted node contributes by the convention of GUIDE section 3 (one MAC per
multiply-accumulate of a weight product; LSTM 4 gates x (input + hidden) x hidden per step and
direction, GRU 3 gates). Element-wise ops, norms and activations are not counted: :data:`NOT_COUNTED`.
A counted node whose shapes do not resolve is an error, never a silent zero.

Nodes are attributed to the in-graph STFT/iSTFT when the exporter named them from the ``stft`` or
``istft`` submodule (``/stft/...``, ``/istft/...``), otherwise to the network.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import onnx
from onnx import shape_inference

COUNTED = ("MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU")
NOT_COUNTED = "element-wise ops (Add, Mul, Div, Sub), InstanceNormalization, Tanh, Sigmoid, data movement"
_STFT_SCOPES = ("/stft/", "/istft/")


@dataclass(frozen=True)
class GraphMacs:
    """MACs of one run of the graph on the input shape ``input_shape``."""

    input_shape: tuple[int, ...]
    network: int
    stft: int  # in-graph STFT and iSTFT (0 for a spectrogram export)
    by_op: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)  # counted nodes per op type

    @property
    def total(self) -> int:
        return self.network + self.stft

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "network": self.network,
            "stft_istft": self.stft,
            "total": self.total,
            "by_op": dict(self.by_op),
            "nodes": dict(self.nodes),
            "not_counted": NOT_COUNTED,
        }


class GraphCountError(RuntimeError):
    """A counted node whose shapes could not be resolved."""


def count_graph_macs(model: onnx.ModelProto | bytes, input_shape: tuple[int, ...]) -> GraphMacs:
    """Count the MACs of ``model`` for its (first) input of ``input_shape``."""
    model = onnx.load_from_string(model) if isinstance(model, bytes | bytearray) else _copy(model)
    # the first real input gets ``input_shape``; any others (a stream's states) share its named batch axis
    feeds = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    inp = feeds[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ValueError(f"input {inp.name!r} has rank {len(dims)}, got shape {input_shape}")
    batch_axis = dims[0].dim_param if dims and dims[0].HasField("dim_param") else None
    for dim, size in zip(dims, input_shape):
        dim.Clear()
        dim.dim_value = int(size)
    for other in feeds[1:]:
        for dim in other.type.tensor_type.shape.dim:
            if batch_axis and dim.HasField("dim_param") and dim.dim_param == batch_axis:
                dim.Clear()
                dim.dim_value = int(input_shape[0])
    feed_shapes = {
        i.name: tuple(d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim)
        for i in feeds
    }
    inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    shapes = _shapes(inferred)
    counted = [n for n in inferred.graph.node if n.op_type in COUNTED]
    unresolved = sorted(
        {x for n in counted for x in (*n.input[:2], n.output[0]) if x and None in shapes.get(x, (None,))}
    )
    if unresolved and all(None not in shape for shape in feed_shapes.values()):  # every feed concrete: run it
        shapes.update(_run_shapes(model, feed_shapes, unresolved))
    attrs = {n.name: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in inferred.graph.node}

    network = stft = 0
    by_op: Counter[str] = Counter()
    nodes: Counter[str] = Counter()
    for node in inferred.graph.node:
        if node.op_type not in COUNTED:
            continue
        macs = _node_macs(node, shapes, attrs[node.name])
        by_op[node.op_type] += macs
        nodes[node.op_type] += 1
        if node.name.startswith(_STFT_SCOPES):
            stft += macs
        else:
            network += macs
    return GraphMacs(tuple(int(s) for s in input_shape), network, stft, dict(sorted(by_op.items())), dict(nodes))


def _run_shapes(model: onnx.ModelProto, feed_shapes: dict[str, tuple], names: list[str]) -> dict[str, tuple]:
    """Shapes of ``names`` read off one onnxruntime run on zeros of ``feed_shapes`` (input name: shape).

    ONNX's static inference stops at sizes computed from the input's length (e.g. the framed STFT's
    frame count, ``1 + samples // hop``); running the graph once resolves them exactly.
    """
    import numpy as np
    import onnxruntime as ort

    probe = _copy(model)
    for name in names:
        probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every named tensor
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(names, {name: np.zeros(shape, dtype=np.float32) for name, shape in feed_shapes.items()})
    return {name: tuple(v.shape) for name, v in zip(names, values)}


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int | None, ...]]:
    shapes: dict[str, tuple[int | None, ...]] = {}
    for vi in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for node in model.graph.node:  # Constant nodes carry their shape in the attribute
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            shapes[node.output[0]] = tuple(node.attribute[0].t.dims)
    return shapes


def _shape(node: onnx.NodeProto, name: str, shapes: dict) -> tuple[int, ...]:
    shape = shapes.get(name)
    if shape is None or any(d is None for d in shape):
        raise GraphCountError(f"{node.op_type} node {node.name!r}: shape of {name!r} unresolved ({shape})")
    return shape


def _node_macs(node: onnx.NodeProto, shapes: dict, attrs: dict) -> int:
    op = node.op_type
    if op == "MatMul":
        a = _shape(node, node.input[0], shapes)
        out = _shape(node, node.output[0], shapes)
        return math.prod(out) * a[-1]  # every output element is a dot product over a's last axis
    if op == "Gemm":
        a, b = (_shape(node, x, shapes) for x in node.input[:2])
        m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
        n = b[0] if attrs.get("transB", 0) else b[1]
        return m * k * n
    if op == "Conv":
        w = _shape(node, node.input[1], shapes)  # (C_out, C_in / group, *kernel)
        out = _shape(node, node.output[0], shapes)  # (B, C_out, *spatial)
        return math.prod(out) * math.prod(w[1:])
    if op == "ConvTranspose":
        x = _shape(node, node.input[0], shapes)  # (B, C_in, *spatial)
        w = _shape(node, node.input[1], shapes)  # (C_in, C_out / group, *kernel)
        return math.prod(x) * math.prod(w[1:])
    if op in ("LSTM", "GRU"):
        gates = 4 if op == "LSTM" else 3
        x = _shape(node, node.input[0], shapes)  # (seq, batch, input) unless layout=1
        w = _shape(node, node.input[1], shapes)  # (directions, gates * hidden, input)
        seq, batch = (x[1], x[0]) if attrs.get("layout", 0) else (x[0], x[1])
        directions, hidden = w[0], w[1] // gates
        return directions * seq * batch * gates * hidden * (w[2] + hidden)
    raise AssertionError(op)
