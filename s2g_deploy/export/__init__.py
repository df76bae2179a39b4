"""Export a dense subnet to a verified, self-describing ONNX file (``s2g export``).

* :mod:`~s2g_deploy.export.stft`: STFT / iSTFT from MatMuls (or convolutions), so they live inside the graph
* :mod:`~s2g_deploy.export.onnx`: the waveform wrapper, the exporter call and onnxsim
* :mod:`~s2g_deploy.export.parity`: the parity certificate (supernet, dense, ONNX, simplified ONNX)
* :mod:`~s2g_deploy.export.graph_macs`: an independent MAC count on the ONNX graph
* :mod:`~s2g_deploy.export.describe`: ONNX metadata and the model card
* :mod:`~s2g_deploy.export.pipeline`: the stages of one export, which :mod:`s2g_deploy.deploy` calls

This package module itself is torch-free: it names the I/O contracts an export can have.
"""

from s2g_deploy.errors import InputError

# samples in and out (STFT in the graph), the mask network only, or a causal model's stream (states in and out)
IO_MODES = ("waveform", "spectrogram", "stream")
# The layout of exported graphs; part of every latency calibration's key, since latency is the graph's.
# 1: per-band op chains, convolution STFT/iSTFT. 2: lean graphs (batched bands, constant shapes, framed STFT).
# 3: the framed STFT/iSTFT as a two-stage Cooley-Tukey DFT (two fifths of format 2's MACs at n_fft 512).
GRAPH_FORMAT = 3


def check_io(io: str) -> str:
    """``io`` if it names an I/O contract; else :class:`InputError` (exit 2)."""
    if io not in IO_MODES:
        raise InputError(f"--io must be one of {', '.join(IO_MODES)}, got {io!r}")
    return io
