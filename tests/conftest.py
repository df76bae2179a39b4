import os
import shutil
import tempfile

import pytest
import torch

from s2g_deploy.models.elastic import ElasticBSRNN
from s2g_deploy.models.registry import get_preset

_CACHE = tempfile.mkdtemp(prefix="s2g-test-cache-")


def pytest_configure(config):
    # Tests use tiny models, where intra-op threads only contend with each other (and with the subprocesses
    # some tests start): one thread makes the suite several times faster on a 2-core machine.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    # Tests never write into the user's ~/.cache/s2g_deploy (nor into an S2G_CACHE_DIR the user set):
    # every cost cache and latency model of the session goes to a private directory, removed at the end.
    os.environ["S2G_CACHE_DIR"] = _CACHE


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE, ignore_errors=True)


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """GroupNorm affine parameters start at 1 and 0; randomise them so slicing mistakes show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=g))


def make_supernet(preset: str, seed: int = 0) -> ElasticBSRNN:
    p = get_preset(preset)
    torch.manual_seed(seed)
    model = ElasticBSRNN(p.config, p.space)
    randomize_norms(model, seed)
    return model.eval()


@pytest.fixture(scope="session")
def tiny() -> ElasticBSRNN:
    return make_supernet("tiny")


@pytest.fixture(scope="session")
def xsmall() -> ElasticBSRNN:
    return make_supernet("xsmall")
