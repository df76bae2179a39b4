"""The STFT/iSTFT bases of a quantized export, computed in the graph instead of stored.

The convolution STFT/iSTFT's windowed DFT basis (:mod:`s2g_deploy.export.stft`, for sizes the framed
transforms cannot take) takes 1.05 MB of float32 at n_fft 512, more than the int8 weights of any
subnet a small device gets. (The framed transforms' Cooley-Tukey constants, 271 KB at n_fft 512, stay
stored.) It is a signal-processing constant, and it stays float32: this step replaces each stored copy
by the few nodes that compute it (``Range``, ``Mod``, ``Cos``, ``Sin``, the periodic Hann window) in
float64 and cast it to
float32. All their inputs are constants, so onnxruntime folds them once when the session is created
(checked in the tests: no ``Cos`` is left in the optimised graph); with graph optimisation disabled they
would run on every call. Each computed basis is compared with the stored one before the swap (at most
:data:`MAX_BASIS_DIFFERENCE` apart), and the model's output is checked unchanged in the tests.

Only a constant equal to the basis (in any layout of the same elements) is replaced; a graph that
holds none is left as it was, and the record says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from s2g_deploy.errors import VerificationError

PREFIX = "/stft_basis/"  # names of the nodes and constants this step adds
MAX_BASIS_DIFFERENCE = 1e-7  # computed vs stored basis, absolute (float32 rounding of values <= 1 is 6e-8)


@dataclass(frozen=True)
class Compacted:
    """What the step did: the tensors it replaced, the bytes saved, and how far the computed basis is off."""

    replaced: tuple[str, ...]
    bytes_saved: int
    max_abs_difference: float | None

    def to_dict(self) -> dict:
        return {
            "what": "DFT bases of the STFT/iSTFT computed in the graph (float64 -> float32) at session load",
            "replaced": list(self.replaced),
            "bytes_saved": self.bytes_saved,
            "max_abs_difference_vs_stored": self.max_abs_difference,
        }


def dft_basis(n_fft: int) -> np.ndarray:
    """(2F, 1, n_fft) float32: [Re; Im] rows of the periodic-Hann-windowed onesided DFT (as the STFT stores it)."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = 2 * math.pi * np.remainder(k * n[None, :], n_fft) / n_fft
    window = 0.5 - 0.5 * np.cos(2 * math.pi * n / n_fft)
    return (np.concatenate([np.cos(angle), -np.sin(angle)]) * window)[:, None, :].astype(np.float32)


def compute_basis_in_graph(model_bytes: bytes, n_fft: int) -> tuple[bytes, Compacted]:
    """``model_bytes`` with every stored copy of a DFT basis replaced by its in-graph computation.

    The basis is the convolution STFT/iSTFT's one windowed basis, :func:`dft_basis`.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    nodes, initializers, saved, differences, replaced = [], [], 0, [], []
    for tag, reference, build in _candidates(n_fft):
        stored = _stored_copies(model, reference)
        if not stored:
            continue
        made, consts = build(f"{PREFIX}{tag}/")
        computed = _evaluate(made, consts, f"{PREFIX}{tag}/basis", reference.shape)
        difference = float(np.abs(computed - reference).max())
        if not difference <= MAX_BASIS_DIFFERENCE:
            raise VerificationError(f"the in-graph STFT basis {tag} differs from the stored one by {difference:.1e}")
        nodes += made
        initializers += consts
        differences.append(difference)
        for name, tensor, holder in stored:
            saved += numpy_helper.to_array(tensor).nbytes
            _drop(model, holder)
            shape = numpy_helper.from_array(np.array(tensor.dims, np.int64), f"{PREFIX}shape_{len(initializers)}")
            initializers.append(shape)
            nodes.append(
                onnx.helper.make_node("Reshape", [f"{PREFIX}{tag}/basis", shape.name], [name], name=f"{PREFIX}{name}")
            )
            replaced.append(name)
    if not replaced:
        return model_bytes, Compacted((), 0, None)
    kept = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*nodes, *kept])  # the bases first: the graph stays topologically sorted
    model.graph.initializer.extend(initializers)
    onnx.checker.check_model(model)
    return model.SerializeToString(), Compacted(tuple(replaced), saved, max(differences))


def _candidates(n_fft: int) -> list:
    """(tag, float32 reference, node builder) of every basis an export of this n_fft may store."""
    return [("windowed", dft_basis(n_fft), lambda p: _basis_nodes(n_fft, p))]


def _stored_copies(model, reference: np.ndarray) -> list:
    """(value name, tensor, initializer or Constant node) of every float constant equal to ``reference``."""
    from onnx import numpy_helper

    found = []
    candidates = [(t.name, t, t) for t in model.graph.initializer]
    candidates += [
        (n.output[0], n.attribute[0].t, n)
        for n in model.graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    ]
    for name, tensor, holder in candidates:
        size = math.prod(tensor.dims)
        if size != reference.size or tensor.data_type != 1:  # float32 only
            continue
        if np.array_equal(numpy_helper.to_array(tensor).reshape(reference.shape), reference):
            found.append((name, tensor, holder))
    return found


def _drop(model, holder) -> None:
    if holder in model.graph.initializer:
        model.graph.initializer.remove(holder)
    else:
        model.graph.node.remove(holder)


def _dft_rows(p: str, n_fft: int, samples: int, first_bin: int, bin_step: int, extra: dict) -> tuple:
    """(node maker, nodes, initializers) computing ``{p}rows``, float64 (2 x bins, samples):
    [cos; -sin] of 2 pi ((k n) mod n_fft) / n_fft for k = first_bin, first_bin + bin_step, ... <= n_fft / 2
    and n < samples; plus the constants in ``extra``."""
    from onnx import TensorProto, helper, numpy_helper

    consts = {
        "zero": np.array(0, np.int64),
        "one": np.array(1, np.int64),
        "first": np.array(first_bin, np.int64),
        "bin_step": np.array(bin_step, np.int64),
        "samples": np.array(samples, np.int64),
        "bins": np.array(n_fft // 2 + 1, np.int64),
        "n_fft": np.array(n_fft, np.int64),
        "step": np.array(2 * math.pi / n_fft, np.float64),
        "axis0": np.array([0], np.int64),
        "axis1": np.array([1], np.int64),
        **extra,
    }
    initializers = [numpy_helper.from_array(v, p + k) for k, v in consts.items()]

    def node(op, inputs, output, **attrs):
        return helper.make_node(op, [p + i for i in inputs], [p + output], name=p + output, **attrs)

    nodes = [
        node("Range", ["zero", "samples", "one"], "n"),
        node("Range", ["first", "bins", "bin_step"], "k"),
        node("Unsqueeze", ["k", "axis1"], "k_col"),
        node("Unsqueeze", ["n", "axis0"], "n_row"),
        node("Mul", ["k_col", "n_row"], "kn"),
        node("Mod", ["kn", "n_fft"], "kn_mod"),  # keeps the angle small, as the stored basis was computed
        node("Cast", ["kn_mod"], "kn_double", to=TensorProto.DOUBLE),
        node("Mul", ["kn_double", "step"], "angle"),
        node("Cos", ["angle"], "cos"),
        node("Sin", ["angle"], "sin"),
        node("Neg", ["sin"], "minus_sin"),
        node("Concat", ["cos", "minus_sin"], "rows", axis=0),
    ]
    return node, nodes, initializers


def _basis_nodes(n_fft: int, p: str) -> tuple[list, list]:
    """Nodes computing ``{p}basis`` (2F, 1, n_fft) float32 (the convolution STFT's), and their constants."""
    from onnx import TensorProto

    node, nodes, initializers = _dft_rows(p, n_fft, n_fft, 0, 1, {"half": np.array(0.5, np.float64)})
    nodes += [
        node("Cast", ["n"], "n_double", to=TensorProto.DOUBLE),
        node("Mul", ["n_double", "step"], "window_angle"),
        node("Cos", ["window_angle"], "window_cos"),
        node("Mul", ["window_cos", "half"], "window_half"),
        node("Sub", ["half", "window_half"], "window"),  # periodic Hann
        node("Mul", ["rows", "window"], "windowed"),
        node("Unsqueeze", ["windowed", "axis1"], "basis_double"),
        node("Cast", ["basis_double"], "basis", to=TensorProto.FLOAT),
    ]
    return nodes, initializers


def _evaluate(nodes: list, initializers: list, output: str, shape: tuple[int, ...]) -> np.ndarray:
    """A basis as onnxruntime computes it."""
    import onnx
    from onnx import TensorProto, helper

    from s2g_deploy.runtime.session import SessionSettings, build_session

    info = helper.make_tensor_value_info(output, TensorProto.FLOAT, list(shape))
    graph = helper.make_graph(nodes, "stft_basis", [], [info], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session = build_session(model.SerializeToString(), SessionSettings(intra_op_threads=1, inter_op_threads=1))
    return session.run(None, {})[0]
