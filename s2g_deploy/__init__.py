"""s2g_deploy: turn one elastic (Subnetwork-to-go) BSRNN into device-sized dense models.

Importing the package is cheap; torch is imported by the submodules that need it.
"""

__version__ = "0.1.0"

_LAZY = {
    "BSRNN": "s2g_deploy.models.bsrnn",
    "BSRNNConfig": "s2g_deploy.models.bsrnn",
    "ElasticBSRNN": "s2g_deploy.models.elastic",
    "Subnet": "s2g_deploy.subnet",
    "ElasticSpace": "s2g_deploy.subnet",
    "slice_subnet": "s2g_deploy.slicing",
    "load_checkpoint": "s2g_deploy.checkpoint",
    "save_checkpoint": "s2g_deploy.checkpoint",
    "CheckpointMeta": "s2g_deploy.checkpoint",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 's2g_deploy' has no attribute {name!r}")
