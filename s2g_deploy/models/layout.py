"""Reshapes that export to ONNX with constant shapes (the dense model's and the framed STFT's).

The TorchScript exporter rebuilds the target shape of every ``reshape`` / ``flatten`` / ``unflatten``
from Shape, Gather, Slice and Concat nodes whenever an input axis is dynamic, even where the target is
fixed but for one ``-1``. :func:`reshape` takes ONNX Reshape's own convention instead (0 keeps that
axis, -1 is inferred), so the graph gets one Reshape with a constant shape; :func:`split_frames` is the
one reshape that needs a run-time size (splitting merged frames and batch), made from one Shape.
In eager mode (training, the supernet) both are plain ``torch.reshape``.
"""

from __future__ import annotations

import torch

__all__ = ["reshape", "split_frames"]


class _OnnxReshape(torch.autograd.Function):
    """Export-time :func:`reshape`: one ONNX Reshape whose shape is a constant (0 copies that axis)."""

    @staticmethod
    def forward(ctx, x, shape):
        return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])

    @staticmethod
    def symbolic(g, x, shape):
        return g.op("Reshape", x, g.op("Constant", value_t=torch.tensor(shape, dtype=torch.int64)))


class _OnnxSplitFrames(torch.autograd.Function):
    """Export-time :func:`split_frames`: Reshape to (lead..., T, -1, tail...), T read off ``frames``."""

    @staticmethod
    def forward(ctx, x, frames, lead, tail, at, batch_first):
        middle = (-1, frames.shape[at]) if batch_first else (frames.shape[at], -1)
        return x.reshape(*lead, *middle, *tail)

    @staticmethod
    def symbolic(g, x, frames, lead, tail, at, batch_first):
        first = [g.op("Constant", value_t=torch.tensor([i], dtype=torch.int64)) for i in (at, at + 1)]
        t = g.op("Slice", g.op("Shape", frames), *first)  # (1,) int64: T (Shape's start/end need opset 15)
        before = g.op("Constant", value_t=torch.tensor([*lead, *([-1] if batch_first else [])], dtype=torch.int64))
        after = g.op("Constant", value_t=torch.tensor([*([] if batch_first else [-1]), *tail], dtype=torch.int64))
        out = g.op("Reshape", x, g.op("Concat", before, t, after, axis_i=0))
        # the exporter cannot infer a shape computed at run time: give the nodes after it the rank
        # and the sizes that are known
        out.setType(x.type().with_sizes([*lead, None, None, *tail]))
        return out


def reshape(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``x.reshape(shape)`` where a 0 keeps x's size on that axis (ONNX Reshape's convention).

    Sizes are Python ints (config sizes), so the exported Reshape gets a constant shape; the tracer
    would otherwise rebuild every shape from Shape/Gather/Concat at run time.
    """
    if torch.onnx.is_in_onnx_export():
        shape = list(shape)
        if -1 not in shape and 0 in shape:  # the exporter's shape inference wants a -1 beside 0s
            shape[len(shape) - 1 - shape[::-1].index(0)] = -1
        return _OnnxReshape.apply(x, tuple(shape))
    return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape)])


def split_frames(
    x: torch.Tensor,
    frames: torch.Tensor,
    lead: tuple[int, ...],
    tail: tuple[int, ...],
    at: int = 0,
    batch_first: bool = False,
) -> torch.Tensor:
    """Split x's merged (T*B) axis into (T, B): x (lead..., T*B, tail...) -> (lead..., T, B, tail...).

    ``frames`` is any tensor whose axis ``at`` is T; ``lead`` and ``tail`` are x's other sizes.
    ``batch_first``: the merged axis is (B*T) and splits into (B, T).
    """
    if torch.onnx.is_in_onnx_export():
        return _OnnxSplitFrames.apply(x, frames, tuple(lead), tuple(tail), at, batch_first)
    middle = (-1, frames.shape[at]) if batch_first else (frames.shape[at], -1)
    return x.reshape(*lead, *middle, *tail)
