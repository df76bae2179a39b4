"""The quality table: metrics, workloads (whole clip and chunks as s2g separate runs them), splits, and
what manifests and search quote from it."""

import dataclasses

import numpy as np
import pytest
import torch
from conftest import chunked, make_supernet
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.bundled import BUNDLED_SUPERNET
from s2g_deploy.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import InputError
from s2g_deploy.profiles import load_profile
from s2g_deploy.quality import subnet_quality
from s2g_deploy.search import search
from s2g_deploy.separate import ArraySource, overlap_add
from s2g_deploy.subnet import Subnet
from s2g_deploy.train.evaluate import evaluate
from s2g_deploy.train.metrics import usdr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A rendered root with test/ and test-timbre/ (two 1.5-s tracks each; TimGM6mb for speed)."""
    root = tmp_path_factory.mktemp("rendered")
    runner = CliRunner()
    for split, name in (("test", "test"), ("test", "test-timbre")):
        args = ["data", "render", "--split", split, "--tracks", "2", "--seconds", "1.5", "--soundfont", "TimGM6mb"]
        seed = ["--seed", "1"] if name == "test-timbre" else []
        result = runner.invoke(app, [*args, *seed, "--out", str(root / name)])
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    api.init("tiny", path, seed=0)
    return path


@pytest.fixture(scope="module")
def evaluated(tiny, rendered, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "evaluated.safetensors"
    return evaluate(tiny, data=rendered, chunk_seconds=(0.05, 0.016, 0.05), out=out)


def test_table_holds_every_metric_workload_and_split(evaluated):
    q = evaluated.quality
    grid = {"1x4", "1x8", "2x4", "2x8"}
    assert q["metric"] == "usdr_db" and q["metrics"]["museval"].startswith("museval ")
    assert set(q["subnets"]) == grid and q["data"]["tracks"] == 2 and q["data"]["kind"] == "stems"
    assert set(q["chunked"]) == {"0.016", "0.05"}  # sorted, duplicates dropped
    assert q["chunked"]["0.016"]["overlap_seconds"] == 0.008  # s2g separate: min(1 s, chunk / 2)
    for row in [*q["subnets"].values(), *(r for e in q["chunked"].values() for r in e["subnets"].values())]:
        assert set(row) == {"usdr_db", "sisdr_db", "csdr_db"} and all(np.isfinite(v) for v in row.values())
    timbre = q["splits"]["timbre-shift"]
    assert set(timbre["subnets"]) == grid and set(timbre["chunked"]) == {"0.016", "0.05"}
    assert timbre["data"]["sha256"] != q["data"]["sha256"]
    # cutting the identity into cross-faded chunks changes nothing: one mixture row for every workload
    assert q["chunked"]["0.016"]["mixture"] == q["mixture"]


def test_chunked_score_is_what_s2g_separate_hears(evaluated, tiny, rendered):
    """The table's 16 ms figure equals separating each track chunk by chunk with overlap_add itself."""
    from s2g_deploy.train.evaluate import held_out_sets

    model = load_checkpoint(tiny).model.eval()
    examples = held_out_sets(rendered, None, 16000, 0, 0, "vocals")[0].examples
    values = []
    for _, mix, ref in examples:
        pieces: list = []

        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(np.ascontiguousarray(x)), Subnet(1, 4)).numpy()

        overlap_add(ArraySource(mix[:, None], 16000), run, 256, 128, lambda s, y, x, p=pieces: p.append(y))
        est = np.concatenate(pieces)[:, 0]
        values.append(usdr(torch.from_numpy(est), torch.from_numpy(ref)).item())
    assert evaluated.quality["chunked"]["0.016"]["subnets"]["1x4"]["usdr_db"] == pytest.approx(
        np.mean(values), abs=1.5e-3
    )
    whole = evaluated.quality["subnets"]["1x4"]["usdr_db"]
    assert whole != evaluated.quality["chunked"]["0.016"]["subnets"]["1x4"]["usdr_db"]  # chunking is not free


def test_manifest_quality_names_its_workload_or_says_unmeasured(evaluated):
    q = evaluated.quality
    at = subnet_quality(q, "2x8", 0.016)
    assert at["measured"] and at["subnets"]["2x8"] == q["chunked"]["0.016"]["subnets"]["2x8"]
    assert at["workload"] == {"label": "0.016 s chunks", "chunk_seconds": 0.016, "overlap_seconds": 0.008}
    assert (
        at["splits"]["timbre-shift"]["subnets"]["2x8"]
        == q["splits"]["timbre-shift"]["chunked"]["0.016"]["subnets"]["2x8"]
    )
    missing = subnet_quality(q, "2x8", 0.064)
    assert not missing["measured"] and missing["subnets"]["2x8"] is None
    assert "quality unmeasured at this chunk length (0.064 s chunks)" in missing["note"]
    assert missing["whole_clip"] == q["subnets"]["2x8"]
    offline = subnet_quality(q, "2x8", None)
    assert offline["measured"] and offline["subnets"]["2x8"] == q["subnets"]["2x8"]


def test_search_ranks_by_the_quality_at_the_profiles_chunk_length(tmp_path, monkeypatch):
    monkeypatch.setenv("S2G_CACHE_DIR", str(tmp_path / "cache"))
    model = make_supernet("xsmall")
    grid = model.space.grid()
    chunk = chunked("phone").workload.chunk_seconds
    # whole clip: wider is better; at the phone's chunk length: deeper is better (a made-up table)
    whole = {str(s): {"usdr_db": 1.0 + s.width / 8} for s in grid}
    at_chunk = {str(s): {"usdr_db": 1.0 + s.depth} for s in grid}
    quality = {
        "metric": "usdr_db",
        "data": {"kind": "fake"},
        "mixture": {"usdr_db": 0.0},
        "subnets": whole,
        "chunked": {f"{chunk:g}": {"chunk_seconds": chunk, "overlap_seconds": chunk / 2, "subnets": at_chunk}},
    }
    path = tmp_path / "q.safetensors"
    save_checkpoint(path, model, CheckpointMeta(model.config, model.space, quality=quality))
    phone = search(path, None, chunked("phone"), latency_model=None)
    assert phone.chosen.quality == at_chunk[str(phone.chosen.subnet)]["usdr_db"]
    assert any("ranked as measured at the profile's workload (0.064 s chunks)" in n for n in phone.notes)
    laptop = search(path, None, load_profile("laptop"), latency_model=None)  # 0.128 s: not in the table
    assert laptop.chosen.quality == whole[str(laptop.chosen.subnet)]["usdr_db"]
    assert any("quality unmeasured at the profile's workload (0.128 s chunks)" in n for n in laptop.notes)
    # the made-up tables disagree, so the two rankings pick differently for the same budget
    phone_like = dataclasses.replace(load_profile("laptop"), workload=chunked("phone").workload)
    assert search(path, None, phone_like, latency_model=None).chosen.subnet.depth == 4


def test_evaluate_never_writes_into_the_installed_package(tiny):
    with pytest.raises(InputError, match="bundled supernet"):
        evaluate(tiny, items=1, seconds=0.5, out=BUNDLED_SUPERNET)
    with pytest.raises(InputError, match="bundled supernet"):
        evaluate(BUNDLED_SUPERNET, items=1, seconds=0.5, in_place=True)


def test_bad_chunk_lengths_and_timbre_without_data(tiny):
    with pytest.raises(InputError, match="--chunk-seconds must be positive"):
        evaluate(tiny, items=1, seconds=0.5, chunk_seconds=(0.0,))
    with pytest.raises(InputError, match="--timbre-data needs --data"):
        evaluate(tiny, items=1, seconds=0.5, timbre_data="x")
