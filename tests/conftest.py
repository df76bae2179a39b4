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
    from s2g_deploy.models.registry import architecture_of

    p = get_preset(preset)
    torch.manual_seed(seed)
    model = architecture_of(p.config).load("supernet")(p.config, p.space)
    randomize_norms(model, seed)
    return model.eval()


@pytest.fixture(scope="session")
def tiny() -> ElasticBSRNN:
    return make_supernet("tiny")


@pytest.fixture(scope="session")
def xsmall() -> ElasticBSRNN:
    return make_supernet("xsmall")


# The chunk length each small device ran before it streamed: tests of *offline* supernets under those
# devices' budgets run them as chunk workloads (a stream profile refuses an offline supernet).
_CHUNK_OF = {"earbud": 0.016, "watch": 0.032, "phone": 0.064}


def chunked_text(name: str) -> str:
    """The shipped profile ``name``'s TOML with a chunk workload (same budgets, runtime and protocol)."""
    import re

    from s2g_deploy.profiles import shipped_profiles

    text = shipped_profiles()[name].read_text()
    if name in _CHUNK_OF:
        text = text.replace('mode = "stream"', 'mode = "chunk"')
        text = re.sub(r"chunk_seconds = [0-9.]+", f"chunk_seconds = {_CHUNK_OF[name]}", text)
    return text


def chunked(name: str):
    """:func:`chunked_text` as a loaded profile."""
    import tomllib

    from s2g_deploy.profiles import parse_profile

    return parse_profile(tomllib.loads(chunked_text(name)), f"<chunked {name}>")


def chunked_toml(name: str, directory) -> str:
    """:func:`chunked_text` written to ``directory/<name>.toml``; returns the path."""
    from pathlib import Path

    path = Path(directory) / f"{name}.toml"
    path.write_text(chunked_text(name))
    return str(path)
