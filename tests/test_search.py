import json
import os
import subprocess
import sys

import pytest
from conftest import chunked, chunked_toml, make_supernet
from typer.testing import CliRunner

from s2g_deploy import api
from s2g_deploy.bundled import BUNDLED_CAUSAL_SUPERNET, BUNDLED_SUPERNET
from s2g_deploy.checkpoint import CheckpointMeta, save_checkpoint
from s2g_deploy.cli.app import app
from s2g_deploy.errors import BudgetInfeasibleError, InputError
from s2g_deploy.profiles import load_profile, shipped_profiles
from s2g_deploy.search import Budgets, search
from s2g_deploy.subnet import Subnet

runner = CliRunner()


def fake_quality(grid, score=lambda s: 3 + 0.75 * s.depth + 0.125 * s.width):
    """A quality table of the contract's shape; the default score is exact in binary (no accidental ties)."""
    return {
        "metric": "usdr_db",
        "data": {"description": "fake, for tests", "sha256": "0" * 64},
        "mixture": {"usdr_db": 0.0, "sisdr_db": -0.5},
        "subnets": {str(s): {"usdr_db": score(s), "sisdr_db": score(s) - 0.5} for s in grid},
    }


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("S2G_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """xsmall supernets (one set of weights) with a fake quality table, without one, and with half of one."""
    root = tmp_path_factory.mktemp("ckpt")
    model = make_supernet("xsmall")
    grid = model.space.grid()
    out = {}
    for name, quality in (
        ("quality", fake_quality(grid)),
        ("none", None),
        ("half", fake_quality([s for s in grid if s.width <= 16])),
        ("flat", fake_quality(grid, score=lambda s: 5.0)),
    ):
        out[name] = root / f"{name}.safetensors"
        save_checkpoint(out[name], model, CheckpointMeta(model.config, model.space, quality=quality))
    return out


# xsmall MACs per second of audio (network, 4 s counted) and the fake quality 3 + 0.75 d + 0.125 w:
#   1x8 16.8M 4.75 | 2x8 28.4M 5.5 | 3x8 40.1M 6.25 | 4x8 51.8M 7.0 | 1x16 57.8M 5.75 | 2x16 104M 6.5
#   1x24 123M 6.75 | 3x16 151M 7.25 | 4x16 198M 8.0 | 1x32 212M 7.75 | 2x24 228M 7.5 | 3x24 333M 8.25
#   2x32 399M 8.5 | 4x24 438M 9.0 | 3x32 586M 9.25 | 4x32 773M 10.0


def test_xsmall_cost_table(files):
    from s2g_deploy.cost import subnet_costs

    table = subnet_costs(files["quality"])
    assert len(table.entries) == 16
    for entry in table.entries:  # fvcore with RNN handles on every dense subnet against the closed form
        assert entry.macs_per_frame == entry.closed_form_macs_per_frame, entry.subnet
    smallest, full = table.get(Subnet(1, 8)), table.get(Subnet(4, 32))
    assert (smallest.macs_per_frame, full.macs_per_frame) == (133_776, 6_169_152)
    assert (smallest.params, full.params) == (50_648, 645_512)
    assert full.macs_per_second == 772_686_288.0  # 6,169,152 x 501 frames / 4 s


def test_shipped_profiles_pick_different_subnets(files):
    picks = {name: search(files["quality"], None, chunked(name)).chosen.subnet for name in shipped_profiles()}
    assert {k: str(v) for k, v in picks.items()} == {
        "earbud": "2x8",  # <= 30M MACs/s
        "watch": "4x8",  # <= 150M: 3x16 needs 151M
        "phone": "4x24",  # <= 500M
        "laptop": "4x32",  # everything fits
        "server": "4x32",
    }
    assert len(set(picks.values())) >= 3


def test_phone_result_in_full(files):
    result = search(files["quality"], None, chunked("phone"))
    chosen = result.chosen
    assert chosen.subnet == Subnet(4, 24) and chosen.quality == 9.0 and chosen.params == 394_024
    assert chosen.macs_per_second == 3_497_904 * 501 / 4  # closed form per frame x frames in 4 s / 4 s
    assert chosen.macs_per_chunk == 3_497_904 * 9  # 0.064 s = 1024 samples: 1 + 1024 // 128 = 9 frames
    assert chosen.metrics == {"usdr_db": 9.0, "sisdr_db": 8.5}
    assert not result.fallback and result.binding == ("max_macs_per_second",)
    assert result.budgets == Budgets(max_params=5_000_000, max_macs_per_second=500_000_000)
    assert result.budget_sources == {"max_params": "profile 'phone'", "max_macs_per_second": "profile 'phone'"}
    assert [str(c.subnet) for c in result.pareto] == [
        "1x8", "2x8", "3x8", "4x8", "3x16", "4x16", "3x24", "2x32", "4x24", "3x32", "4x32"
    ]  # fmt: skip
    assert [c.violates for c in result.candidates if not c.feasible] == [("max_macs_per_second",)] * 2
    assert any("latency p99 <= 16 ms per 0.064 s chunk is a measured budget" in n for n in result.notes)


def test_explicit_budgets_and_the_tighter_of_profile_and_explicit(files):
    assert search(files["quality"], Budgets(max_macs_per_second=300e6)).chosen.subnet == Subnet(4, 16)
    tighter = search(files["quality"], Budgets(max_macs_per_second=300e6), chunked("phone"))
    assert tighter.chosen.subnet == Subnet(4, 16)
    assert tighter.budget_sources == {"max_macs_per_second": "explicit", "max_params": "profile 'phone'"}
    looser = search(files["quality"], Budgets(max_macs_per_second=600e6), chunked("phone"))
    assert looser.chosen.subnet == Subnet(4, 24) and looser.budgets.max_macs_per_second == 500e6
    by_params = search(files["quality"], Budgets(max_params=60_000))
    assert by_params.chosen.subnet == Subnet(2, 8) and by_params.binding == ("max_params",)
    assert search(files["quality"]).binding == ()  # no budget: the best subnet overall


def test_ties_go_to_fewer_macs(files):
    result = search(files["flat"])  # every subnet scores 5.0
    assert result.chosen.subnet == Subnet(1, 8)
    assert [str(c.subnet) for c in result.pareto] == ["1x8"]


def test_without_quality_the_largest_feasible_subnet_is_a_fallback(files):
    result = search(files["none"], Budgets(max_macs_per_second=300e6))
    assert result.chosen.subnet == Subnet(2, 24)  # 228M: the most MACs under 300M
    assert result.fallback and result.chosen.quality is None and result.pareto == ()
    assert result.notes[0] == (
        "fallback: the checkpoint has no quality table; chose the largest feasible subnet (most MACs)"
    )
    assert result.binding == ("max_macs_per_second",)
    half = search(files["half"], Budgets(max_macs_per_second=300e6))
    assert half.chosen.subnet == Subnet(4, 16) and not half.fallback
    assert half.notes[0] == "feasible subnets without a quality entry, not ranked: 1x24, 1x32, 2x24"
    tiny = search(files["half"], Budgets(max_macs_per_second=20e6))  # only 1x8, which has a row
    assert tiny.chosen.subnet == Subnet(1, 8)


def test_infeasible_budgets_name_the_binding_budget_and_the_cheapest_cost(files):
    with pytest.raises(BudgetInfeasibleError) as info:
        search(files["quality"], Budgets(max_macs_per_second=10e6))
    assert str(info.value) == (
        "no subnet meets the budget: max_macs_per_second = 10.0M (explicit) is below the cheapest subnet, "
        "1x8, at 16.8M MACs per second of audio"
    )
    assert info.value.exit_code == 3
    with pytest.raises(BudgetInfeasibleError) as info:
        search(files["quality"], Budgets(max_params=10_000), chunked("earbud"))
    assert str(info.value) == (
        "no subnet meets the budget: max_params = 10.0K (explicit) is below the cheapest subnet, 1x8, at 50.6K params"
    )


def test_search_is_deterministic(files):
    first = search(files["quality"], Budgets(max_params=300_000), chunked("watch")).to_dict()
    second = search(files["quality"], Budgets(max_params=300_000), chunked("watch")).to_dict()
    assert first == second and json.loads(json.dumps(first)) == first


def test_malformed_quality_tables_and_budgets_are_input_errors(tmp_path, files):
    model = make_supernet("tiny")
    quality = fake_quality(model.space.grid())
    quality["subnets"]["9x9"] = {"usdr_db": 1.0}
    path = tmp_path / "bad.safetensors"
    save_checkpoint(path, model, CheckpointMeta(model.config, model.space, quality=quality))
    with pytest.raises(InputError) as info:
        search(path)
    assert str(info.value) == (
        f"{path}: malformed quality table: subnet '9x9': subnet 9x9 is not in this supernet's elastic space: "
        "depths 1,2 x widths 4,8"
    )
    with pytest.raises(InputError, match="budget max_params must be a positive number, got -1"):
        Budgets(max_params=-1)
    with pytest.raises(InputError, match="budget_macs: 'lots' is not a size"):
        api.search(files["quality"], budget_macs="lots")
    assert api.search(files["quality"], budget_macs="300M", profile=chunked("phone")).chosen.subnet == Subnet(4, 16)


def test_cli_table_json_and_exit_codes(files, tmp_path):
    result = runner.invoke(app, ["search", str(files["quality"]), "--profile", chunked_toml("phone", tmp_path)])
    assert result.exit_code == 0, result.output
    assert "chosen subnet 4x24" in result.stdout and "Pareto front" in result.stdout
    assert "4x24 *" in result.stdout and "binding: max_macs_per_second" in result.stdout

    result = runner.invoke(
        app, ["search", str(files["quality"]), "--budget-macs", "300M", "--budget-params", "1.5M", "--json"]
    )
    doc = json.loads(result.stdout)
    assert result.exit_code == 0 and doc["chosen"]["subnet"] == "4x16" and doc["fallback"] is False
    assert doc["budgets"]["max_params"] == {"value": 1_500_000, "source": "explicit"}
    assert doc["cost_model"]["counted_seconds"] == 4.0 and "rsqrt" in doc["cost_model"]["uncounted"]

    result = runner.invoke(app, ["search", str(files["none"]), "--budget-macs", "300M"])
    assert result.exit_code == 0 and "fallback" in result.stdout

    result = runner.invoke(app, ["search", str(files["quality"]), "--budget-macs", "10M"])
    assert result.exit_code == 3 and result.stdout == ""
    assert "max_macs_per_second = 10.0M (explicit) is below the cheapest subnet, 1x8" in result.stderr

    for bad, why in (("abc", "is not a size"), ("-5M", "is negative"), ("0", "is zero")):
        result = runner.invoke(app, ["search", str(files["quality"]), "--budget-macs", bad])
        assert result.exit_code == 2 and f"--budget-macs: '{bad}' {why}" in result.stderr
    result = runner.invoke(app, ["search", str(files["quality"]), "--budget-params", "1.2345K"])
    assert result.exit_code == 2 and "--budget-params: '1.2345K' is 1234.5, not a whole number" in result.stderr
    result = runner.invoke(app, ["search", str(files["quality"]), "--profile", "toaster"])
    assert result.exit_code == 2 and "unknown profile 'toaster'" in result.stderr


def test_warm_search_does_not_import_torch(files, cache_dir, tmp_path):
    search(files["quality"])  # warm the cache
    phone = chunked_toml("phone", tmp_path)
    code = (
        "import sys; from s2g_deploy.search import search, Budgets; from s2g_deploy.profiles import load_profile; "
        f"r = search({str(files['quality'])!r}, Budgets(), load_profile({phone!r})); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(r.chosen.subnet)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=os.environ)
    assert out.stdout.strip() == "4x24"


def test_bundled_supernet_costs_and_profiles():
    from s2g_deploy.checkpoint import read_meta
    from s2g_deploy.cost import subnet_costs

    for path in (None, BUNDLED_CAUSAL_SUPERNET):  # the offline and the causal bundled supernets
        table = subnet_costs(path)
        for entry in table.entries:  # fvcore with handles against the closed form, every subnet
            assert entry.macs_per_frame == entry.closed_form_macs_per_frame, entry.subnet
    assert read_meta(BUNDLED_SUPERNET).quality is not None and read_meta(BUNDLED_CAUSAL_SUPERNET).quality is not None
    picks = {search(None, None, load_profile(name)).chosen.subnet for name in shipped_profiles()}
    assert len(picks) >= 3
