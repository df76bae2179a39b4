"""onnxruntime sessions, the benchmark loop, and the per-device latency model.

:mod:`~s2g_deploy.runtime.session` builds sessions from a profile's runtime settings;
:mod:`~s2g_deploy.runtime.measure` is the timing loop, run in a child process of its own;
:mod:`~s2g_deploy.runtime.bench` turns its samples into a report with budget verdicts;
:mod:`~s2g_deploy.runtime.latency` predicts a subnet's latency from a handful of measured ones.
Nothing here imports torch or onnxruntime at module level.
"""
