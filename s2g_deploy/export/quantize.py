"""int8 dynamic quantization of a simplified fp32 export: the network's weights only.

onnxruntime's ``quantize_dynamic`` runs on the onnxsim-simplified graph, where every LSTM weight is an
initializer (GUIDE section 4 item 7: it quantizes only those, into ``DynamicQuantizeLSTM``). Its integer
mode has no Gemm rule, and the exporter writes most of BSRNN's Linear layers as ``Gemm``, so those are
first rewritten as ``MatMul`` (the weight transposed where ``transB``) plus ``Add`` for the bias: the
same arithmetic, which the quantizer turns into ``MatMulInteger``. Only these nodes are quantized, by
name: the network's MatMul and LSTM nodes with constant weights. The STFT ``Conv`` and iSTFT
``ConvTranspose`` are not (left alone, the quantizer turns the STFT basis into a ``ConvInteger``), nor is
any other constant. :func:`check_quantized` proves it on the result.

Parameter bytes of the result (:func:`graph_parameter_bytes`) are counted on the graph and checked
against the closed form of :func:`s2g_deploy.precision.parameter_bytes`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s2g_deploy.errors import VerificationError
from s2g_deploy.precision import QuantizationSettings

log = logging.getLogger(__name__)

DSP_SCOPES = ("/stft/", "/istft/", "/stft_basis/")  # node-name prefixes of the in-graph STFT/iSTFT
QUANTIZED_OPS = ("DynamicQuantizeLSTM", "MatMulInteger")
FORBIDDEN_OPS = ("ConvInteger", "QLinearConv")  # a quantized STFT/iSTFT basis
BYTES_AGREEMENT = 0.01  # graph count vs closed form of the parameter bytes, relative


@dataclass(frozen=True)
class Quantized:
    """An int8 model and what was done to get it."""

    model: bytes
    settings: QuantizationSettings
    quantized_nodes: tuple[str, ...]  # names in the fp32 graph (after the Gemm rewrite)
    gemms_rewritten: int
    op_counts: dict[str, int] = field(default_factory=dict)  # of the quantized graph

    def to_dict(self) -> dict:
        return {
            **self.settings.to_dict(),
            "nodes_quantized": len(self.quantized_nodes),
            "gemm_rewritten_as_matmul": self.gemms_rewritten,
            "op_counts": {k: self.op_counts.get(k, 0) for k in (*QUANTIZED_OPS, "DynamicQuantizeLinear", "Conv")},
        }


def quantize(model_bytes: bytes, settings: QuantizationSettings) -> Quantized:
    """``model_bytes`` (simplified fp32) with int8 weights in its network's MatMul and LSTM nodes."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model, rewritten = as_matmul(onnx.load_from_string(model_bytes))
    nodes = network_weight_nodes(model, settings.op_types)
    # onnxruntime's integer MatMul takes per-channel zero points only for a 2-D weight; the batched
    # per-band weights (bands, in, out) get one scale per tensor (a run of equal-width bands)
    batched = set(_batched_weight_nodes(model, nodes))
    passes = [(tuple(n for n in nodes if n not in batched), settings.per_channel), (tuple(sorted(batched)), False)]
    with tempfile.TemporaryDirectory(prefix="s2g-quantize-") as tmp, _quiet_root_logger():
        for i, (names, per_channel) in enumerate(p for p in passes if p[0]):
            out = Path(tmp) / f"int8-{i}.onnx"  # quantize_dynamic writes a file
            quantize_dynamic(
                model,
                out,
                op_types_to_quantize=list(settings.op_types),
                nodes_to_quantize=list(names),
                per_channel=per_channel,
                reduce_range=settings.reduce_range,
                weight_type=getattr(QuantType, settings.weight_type),
            )
            model = onnx.load(os.fspath(out))
        quantized = model
    del quantized.metadata_props[:]  # the quantizer's bookkeeping; the file's metadata is ours
    counts = dict(collections.Counter(n.op_type for n in quantized.graph.node))
    log.info("quantized %d nodes: %s", len(nodes), ", ".join(f"{counts.get(k, 0)} {k}" for k in QUANTIZED_OPS))
    return Quantized(quantized.SerializeToString(), settings, nodes, rewritten, counts)


@contextlib.contextmanager
def _quiet_root_logger():
    """The quantizer advises "pre-processing" through ``logging.warning``, which also installs a handler on the
    root logger (so every later log line prints twice). onnxsim has already done that pre-processing; the
    advice goes to a handler that drops it, and the root logger is left as it was."""
    root = logging.getLogger()
    handler = logging.NullHandler()

    def advice(record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()

    root.addHandler(handler)
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)
        root.removeHandler(handler)


def as_matmul(model):
    """``model`` with every network ``Gemm`` of constant weight rewritten as ``MatMul`` (+ ``Add``); and the
    count. Only the plain form the exporter writes (alpha = beta = 1, no transA) is rewritten."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes, count, used = [], 0, set()
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or node.input[1] not in inits or not plain or _is_dsp(node):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        name = f"{node.input[1]}_as_matmul" + ("_t" if attrs.get("transB", 0) else "")
        if name not in used:
            matrix = weight.T if attrs.get("transB", 0) else weight
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(matrix), name))
            used.add(name)
        product = node.output[0] + ("_matmul" if len(node.input) > 2 else "")
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_matmul"))
        if len(node.input) > 2 and node.input[2]:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_bias"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    _drop_unused_initializers(model)
    return model, count


def _drop_unused_initializers(model) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _is_dsp(node) -> bool:
    return node.name.startswith(DSP_SCOPES)


def _batched_weight_nodes(model, names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that are MatMuls with a weight of more than two axes."""
    dims = {t.name: len(t.dims) for t in model.graph.initializer}
    wanted = set(names)
    return [n.name for n in model.graph.node if n.name in wanted and n.op_type == "MatMul" and dims[n.input[1]] > 2]


def network_weight_nodes(model, op_types: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the network's nodes of ``op_types`` whose weights (input 1, and 2 for LSTM) are initializers."""
    inits = {t.name for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type not in op_types or _is_dsp(node) or not node.name:
            continue
        weights = node.input[1:3] if node.op_type == "LSTM" else node.input[1:2]
        if all(w in inits for w in weights):
            names.append(node.name)
    return tuple(names)


def check_quantized(model_bytes: bytes, fp32_bytes: bytes) -> dict[str, int]:
    """Every network LSTM and Linear quantized, nothing else; raises :class:`VerificationError`. Returns op counts."""
    import onnx

    model, fp32 = onnx.load_from_string(model_bytes), onnx.load_from_string(fp32_bytes)
    counts = collections.Counter(n.op_type for n in model.graph.node)
    expected = collections.Counter(n.op_type for n in fp32.graph.node if not _is_dsp(n))
    problems = []
    if counts["DynamicQuantizeLSTM"] != expected["LSTM"]:
        problems.append(f"{counts['DynamicQuantizeLSTM']} DynamicQuantizeLSTM for {expected['LSTM']} LSTM")
    if counts["MatMulInteger"] == 0:
        problems.append("no MatMulInteger")
    left = [n.name for n in model.graph.node if n.op_type in ("LSTM", "Gemm", "MatMul") and not _is_dsp(n)]
    if left:
        problems.append(f"float network nodes left: {', '.join(left[:3])}")
    problems += [f"{counts[op]} {op} (a quantized STFT/iSTFT basis)" for op in FORBIDDEN_OPS if counts[op]]
    for op in ("Conv", "ConvTranspose"):  # the STFT/iSTFT, float as before
        before = sum(n.op_type == op for n in fp32.graph.node)
        if counts[op] != before:
            problems.append(f"{counts[op]} {op} where the fp32 graph has {before}")
    if problems:
        raise VerificationError("int8 export: " + "; ".join(problems))
    return dict(counts)


def graph_parameter_bytes(model_bytes: bytes, eight_bit_only: bool = False) -> int:
    """Bytes of the network's stored constants: every initializer or Constant of a float or 8-bit type (only
    8-bit with ``eight_bit_only``) that some network node (not the STFT/iSTFT) reads; integer shape
    constants (int32/int64) are plumbing. A tensor counts once however many nodes read it."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load_from_string(model_bytes)
    kinds = (TensorProto.INT8, TensorProto.UINT8)
    if not eight_bit_only:
        kinds += (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
    read = {name for node in model.graph.node if not _is_dsp(node) for name in node.input}
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [(n.output[0], n.attribute[0].t) for n in model.graph.node if n.op_type == "Constant" and n.attribute]
    return sum(numpy_helper.to_array(t).nbytes for name, t in tensors if t.data_type in kinds and name in read)


def check_parameter_bytes(model_bytes: bytes, expected: int, eight_bit: int | None = None) -> int:
    """The graph's parameter bytes, checked against the closed form ``expected``; returns them.

    The closed form is an upper bound: onnxsim may merge equal tensors or fold away identity norms (an
    untrained model's ones and zeros), so the graph may hold less, never more. ``eight_bit``: the int8
    weights and zero points the closed form expects, which must all be there, exactly.
    """
    counted = graph_parameter_bytes(model_bytes)
    problems = []
    if counted > (1 + BYTES_AGREEMENT) * expected:
        problems.append(
            f"the graph stores {counted:,} bytes of network parameters, above the closed form's {expected:,}"
        )
    if eight_bit is not None and graph_parameter_bytes(model_bytes, eight_bit_only=True) != eight_bit:
        found = graph_parameter_bytes(model_bytes, eight_bit_only=True)
        problems.append(f"the graph stores {found:,} int8 bytes, the closed form says {eight_bit:,}")
    if problems:
        raise VerificationError("; ".join(problems))
    return counted
