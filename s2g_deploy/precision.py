"""Precisions an export can store its weights in, what they cost in bytes, and when one is refused.

* ``fp32``: every weight float32 (the reference).
* ``int8-dynamic``: onnxruntime dynamic quantization (:mod:`s2g_deploy.export.quantize`): the weights of
  the network's Linear and LSTM layers stored as int8 with a float32 scale and an int8 zero point per
  output channel; activations quantized at run time; norms, biases and the STFT/iSTFT stay float32.
* ``fp16``: float16 weights. Refused for the CPU execution provider: onnxruntime's CPU kernels run
  float16 LSTMs and matmuls by converting them back to float32 (or not at all), so an fp16 file there is
  slower than fp32, never faster, and we do not ship that.

**Parameter bytes** are the bytes the network's parameters take at the stored precision: what a device
holds in memory for the network (the ``max_model_bytes`` budget). The in-graph STFT/iSTFT constants are
not parameters; the manifest lists the model file's size beside it. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from s2g_deploy.errors import InputError

PRECISIONS = ("fp32", "int8-dynamic", "fp16")
QUANTIZED = ("int8-dynamic",)
CPU = "CPUExecutionProvider"
# /proc/cpuinfo flags of the x86 instructions that multiply int8 x int8 into int32 in one step (VNNI).
# Without them onnxruntime's u8s8 kernels (AVX2 / AVX-512BW vpmaddubsw) add pairs of products into int16,
# which saturates for 8-bit weights: ``reduce_range`` (7-bit weights) avoids that.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
CHANNEL_BYTES = 4 + 1  # per output channel of a quantized weight: float32 scale + int8 zero point


def check_precision(value: Any, what: str = "--precision") -> str:
    """``value`` if it names a precision; else :class:`InputError` naming ``what`` (exit 2)."""
    if value not in PRECISIONS:
        raise InputError(f"{what} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


def check_runnable(precision: str, provider: str, what: str = "--precision") -> None:
    """Refuse a precision the execution provider would run slower than fp32 (fp16 on the CPU provider)."""
    if precision == "fp16" and provider == CPU:
        raise InputError(
            f"{what} fp16: onnxruntime's {CPU} has no fast float16 kernels for this model (it would run slower "
            "than fp32); use --precision int8-dynamic or fp32, or a profile whose execution_provider runs fp16"
        )
    if precision == "fp16":
        raise InputError(
            f"{what} fp16 for {provider}: not supported yet (an export is verified by running it, and this "
            "build verifies fp16 on no provider); use --precision int8-dynamic or fp32"
        )


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU flags that decide how int8 weights are stored, as read from ``/proc/cpuinfo``."""

    flags: tuple[str, ...]  # the VNNI_FLAGS found
    source: str  # where they were read, or why they could not be

    @property
    def vnni(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict:
        return {"vnni": self.vnni, "flags": list(self.flags), "checked": list(VNNI_FLAGS), "source": self.source}


def cpu_features(cpuinfo: str | None = None) -> CpuFeatures:
    """VNNI flags of this machine's CPU (``cpuinfo``: the text of ``/proc/cpuinfo``, read if None)."""
    source = "/proc/cpuinfo"
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                cpuinfo = f.read()
        except OSError:
            return CpuFeatures((), "/proc/cpuinfo unreadable: VNNI assumed absent")
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags |= set(line.split(":", 1)[-1].split())
    return CpuFeatures(tuple(f for f in VNNI_FLAGS if f in flags), source)


@dataclass(frozen=True)
class QuantizationSettings:
    """How ``int8-dynamic`` weights are made (the arguments of ``quantize_dynamic``), and why."""

    weight_type: str = "QInt8"
    activation_type: str = "QUInt8"  # dynamic: DynamicQuantizeLinear's uint8, computed per run
    per_channel: bool = True  # onnxruntime quantizes MatMul and LSTM weights per output channel
    reduce_range: bool = False
    reduce_range_reason: str = ""
    op_types: tuple[str, ...] = ("MatMul", "LSTM")  # the network's Linear (as MatMul) and LSTM layers
    cpu: CpuFeatures | None = None

    def to_dict(self) -> dict:
        return {
            "method": "onnxruntime.quantization.quantize_dynamic, after onnxsim",
            "weight_type": self.weight_type,
            "activation_type": self.activation_type,
            "per_channel": self.per_channel,
            "reduce_range": self.reduce_range,
            "reduce_range_reason": self.reduce_range_reason,
            "op_types_to_quantize": list(self.op_types),
            "kept_float": "STFT/iSTFT bases (Conv, ConvTranspose) and every other constant: norms, biases, windows",
            "cpu": self.cpu.to_dict() if self.cpu else None,
        }


def quantization_settings(cpu: CpuFeatures | None = None) -> QuantizationSettings:
    """Settings for this machine: ``reduce_range`` exactly when the CPU lacks VNNI."""
    cpu = cpu or cpu_features()
    if cpu.vnni:
        why = f"not needed: the CPU has {', '.join(cpu.flags)} (int8 products accumulate in int32)"
    else:
        why = (
            f"7-bit weights: the CPU has none of {', '.join(VNNI_FLAGS)} ({cpu.source}), so int8 products "
            "accumulate in int16 and full 8-bit weights could saturate"
        )
    return QuantizationSettings(reduce_range=not cpu.vnni, reduce_range_reason=why, cpu=cpu)


def parameter_bytes(config: Any, precision: str) -> int:
    """Bytes of the network's parameters of a dense model of ``config`` stored at ``precision``.

    int8-dynamic: the weights of Linear and LSTM layers one byte each plus :data:`CHANNEL_BYTES` per output
    channel, everything else float32; the closed form is checked against the quantized graph at export.
    """
    from s2g_deploy.models.registry import architecture_of

    arch = architecture_of(config)
    params = arch.count_params(config)
    if precision == "fp32":
        return 4 * params
    if precision == "fp16":
        return 2 * params
    elements, channels = arch.quantizable_weights(config)
    return 4 * (params - elements) + elements + CHANNEL_BYTES * channels
