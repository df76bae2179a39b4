"""Export a dense subnet to a verified, self-describing ONNX file (``s2g export``).

* :mod:`~s2g_deploy.export.stft`: STFT / iSTFT from convolutions, so they live inside the graph
* :mod:`~s2g_deploy.export.onnx`: the waveform wrapper, the exporter call and onnxsim
* :mod:`~s2g_deploy.export.parity`: the parity certificate (supernet, dense, ONNX, simplified ONNX)
* :mod:`~s2g_deploy.export.graph_macs`: an independent MAC count on the ONNX graph
* :mod:`~s2g_deploy.export.describe`: ONNX metadata and the model card
* :mod:`~s2g_deploy.export.pipeline`: all of it end to end, behind ``s2g_deploy.api.export``
"""
