"""Does one S2G supernet serve every size as well as subnets trained alone, and for how much less training?

Scores the runs of `benchmarks/study_runs.py` (each recipe's supernet and each compared grid subnet
trained alone, the same data, steps, batch, schedule and seeds) on the same held-out tracks: the
rendered test split and its timbre-shift twin (the same songs played by a soundfont training never
heard), uSDR / SI-SDR / cSDR on whole clips. Two comparisons:

- equal steps per model: each S2G subnet against the same subnet trained alone for as many steps;
- equal total compute (estimated): the alone-models of the whole grid together get one supernet's
  training time; each alone model's validation uSDR is read off its own curve at the step where its
  share runs out (the same cosine run, not re-annealed: an estimate) and set against the S2G subnet's
  validation uSDR at the end.

    python benchmarks/study_runs.py --data data/rendered --runs runs/study          # train (hours; resumable)
    python benchmarks/s2g_vs_independent.py --data data/rendered --runs runs/study  # score and report
    python benchmarks/s2g_vs_independent.py --quick                                 # smoke test, seconds

Writes benchmarks/results/s2g_vs_independent.{md,json,png} (or --results DIR).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from results_io import log, machine_line, write_results

from s2g_deploy.checkpoint import load_checkpoint
from s2g_deploy.environment import environment
from s2g_deploy.train.evaluate import data_hash, held_out_sets, score
from s2g_deploy.train.loop import TrainConfig, _validation_batch, train
from s2g_deploy.train.metrics import usdr
from s2g_deploy.train.stems import load_tracks

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).parent
TIMING_STEPS = 4


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="s2g-study-") as work:
        if args.quick:
            _quick_runs(args, Path(work))
        plan = json.loads((args.runs / "plan.json").read_text())
        settings = plan["args"]
        recipes, subnets, seeds = (settings[k].split(",") for k in ("recipes", "subnets", "seeds"))
        ckpts = {name: args.runs / name / "checkpoint.safetensors" for name, _ in plan["runs"]}
        missing = [n for n, p in ckpts.items() if not p.is_file() or not _finished(p, int(settings["steps"]))]
        if missing:
            log(f"not finished yet, left out: {', '.join(missing)}")
        sr = load_checkpoint(next(p for n, p in ckpts.items() if n not in missing)).meta.config.sample_rate_hz
        sets = held_out_sets(args.data, None, sr, 0, 0, "vocals")
        scores = _score_all(ckpts, missing, sets, sr, subnets)
        step_s = _seconds_per_step(args, settings, Path(work))
    report = _report(args, settings, recipes, subnets, seeds, scores, sets, step_s, missing, sr)
    stem = "s2g_vs_independent_quick" if args.quick else "s2g_vs_independent"
    _plot(report, args.results / f"{stem}.png")
    write_results(args.results, stem, report, _markdown(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/rendered"), help="rendered root: train/ valid/ test/")
    p.add_argument("--runs", type=Path, default=Path("runs/study"), help="folder of benchmarks/study_runs.py")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--quick", action="store_true", help="render, train and score a tiny study: a smoke test")
    return p


def _quick_runs(args, work: Path) -> None:
    """A tiny rendered set and a tiny study in ``work`` (the test suite's smoke test)."""
    from s2g_deploy.data.render import RenderRequest, render

    args.data, args.runs = work / "data", work / "runs"
    for split, tracks, folder in (
        ("train", 3, "train"),
        ("valid", 2, "valid"),
        ("test", 2, "test"),
        ("test", 2, "test-timbre"),
    ):
        render(
            RenderRequest(
                args.data / folder, tracks, 1.5, 16000, "TimGM6mb", seed=int(folder == "test-timbre"), split=split
            )
        )
    quick = ["--preset", "tiny", "--steps", "3", "--batch-size", "2", "--warmup-steps", "1", "--val-every", "1"]
    runs = ["--recipes", "paper,sandwich-mixed", "--subnets", "1x4,2x8", "--seeds", "0,1", "--jobs", "1"]
    subprocess.run(
        [
            sys.executable,
            str(HERE / "study_runs.py"),
            "--data",
            str(args.data),
            "--runs",
            str(args.runs),
            *quick,
            *runs,
        ],
        check=True,
    )


def _finished(path: Path, steps: int) -> bool:
    from s2g_deploy.checkpoint import read_meta

    return (read_meta(path).training or {}).get("steps_done") == steps


def _score_all(ckpts: dict, missing: list, sets, sr: int, compared: list[str]) -> dict:
    """run name -> {"training": ..., "scores": {split: {subnet: row}}, "valid_end": {subnet: uSDR}}.

    Scores are kept in each run folder (``scores.json``) under the weights' and the held-out data's
    hashes, so a report over a growing study scores only the runs that are new or changed.
    """
    out = {}
    data_key = {held.name: data_hash(held.examples) for held in sets}
    for name, path in ckpts.items():
        if name in missing:
            continue
        ckpt = load_checkpoint(path)
        training = ckpt.meta.training or {}
        key = {"weights_sha256": ckpt.meta.weights_sha256, "data": data_key, "compared": sorted(compared)}
        cache = path.parent / "scores.json"
        cached = json.loads(cache.read_text()) if cache.is_file() else {}
        if cached.get("key") == key:
            log(f"scores of {name}: from {cache}")
            entry = cached["entry"]
        else:
            log(f"scoring {name}")
            entry = _score_run(ckpt, training, sets, sr, compared)
            tmp = cache.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({"key": key, "entry": entry}))
            tmp.replace(cache)
        entry["training"] = _training_summary(training, path.parent)
        out[name] = entry
    return out


def _score_run(ckpt, training: dict, sets, sr: int, compared: list[str]) -> dict:
    model = ckpt.model.eval()
    if ckpt.meta.space is not None:  # a supernet: every compared subnet is cut from it
        grid = [s for s in ckpt.meta.space.grid() if str(s) in compared]
        runs = {str(s): (lambda x, s=s, m=model: m(x, s)) for s in grid}
    else:
        runs = {str(ckpt.meta.subnet): model}
    val = _validation(training, sr)
    entry = {"scores": {}, "valid_end": {}}
    for held in sets:
        entry["scores"][held.name] = {k: score(run, held.examples, sr) for k, run in runs.items()}
    with torch.no_grad():
        for k, run in runs.items():
            entry["valid_end"][k] = round(usdr(run(val[0]), val[1]).mean().item(), 3)
    return entry


def _validation(training: dict, sr: int):
    """The validation batch the training loop used (same tracks, same crop)."""
    tracks = load_tracks(training["val_data"], sr, training["target"], 1)
    return _validation_batch(tracks, round(training["val_seconds"] * sr), training["val_items"])


def _training_summary(training: dict, folder: Path) -> dict:
    curve = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    return {
        "wall_time_s": training.get("wall_time_s"),
        "steps": training.get("steps_done"),
        "recipe": training.get("recipe"),
        "device": training.get("device_name"),
        "curve": [{k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()} for row in curve],
    }


def _seconds_per_step(args, settings: dict, work: Path) -> dict:
    """Measured seconds per training step of every grid subnet alone (one untimed step first)."""
    from s2g_deploy.models.registry import get_preset

    preset = get_preset(settings["preset"])
    # the small validation folder as training data: a step costs the same, and loading is seconds, not minutes
    common = dict(
        preset=settings["preset"], data=args.data / "valid", val_data=args.data / "valid",
        batch_size=int(settings["batch_size"]), val_every=10**9, val_items=1, val_seconds=0.5, save_every=10**9,
        threads=1,
    )  # fmt: skip
    out = {}
    for s in preset.space.grid():
        one = train(TrainConfig(out=work / f"t1-{s}", fixed_subnet=s, steps=1, **common), progress=False)
        many = train(TrainConfig(out=work / f"tn-{s}", fixed_subnet=s, steps=1 + TIMING_STEPS, **common), False)
        out[str(s)] = max(many.wall_time_s - one.wall_time_s, 1e-9) / TIMING_STEPS
    return out


def _report(args, settings, recipes, subnets, seeds, scores, sets, step_s, missing, sr: int) -> dict:
    splits = [h.name for h in sets]
    rows = []
    for split in splits:
        for subnet in subnets:
            alone = [scores.get(f"alone-{subnet}-s{s}", {}).get("scores", {}).get(split, {}).get(subnet) for s in seeds]
            row = {"split": split, "subnet": subnet, "alone": _metric_spreads(alone), "recipes": {}}
            for recipe in recipes:
                s2g = [scores.get(f"s2g-{recipe}-s{s}", {}).get("scores", {}).get(split, {}).get(subnet) for s in seeds]
                diff = [
                    {k: a[k] - b[k] for k in ("usdr_db", "csdr_db")} if a and b else None
                    for a, b in zip(s2g, alone, strict=True)
                ]
                row["recipes"][recipe] = {**_metric_spreads(s2g), "minus_alone": _metric_spreads(diff)}
            rows.append(row)
    timing = _timing(recipes, subnets, seeds, scores, step_s, int(settings["steps"]))
    timing["same_conditions"] = _same_conditions(settings, recipes, seeds, step_s)
    return {
        "command": "python benchmarks/s2g_vs_independent.py " + shlex.join(sys.argv[1:]),
        "settings": settings,
        "held_out": {h.name: h.description | {"tracks": len(h.examples)} for h in sets},
        "mixture": {h.name: score(lambda x: x, h.examples, sr) for h in sets},
        "rows": rows,
        "verdict": _verdict(rows, recipes, subnets),
        "equal_compute": _equal_compute(recipes, subnets, seeds, scores, timing),
        "trend": _trend(recipes, subnets, seeds, scores),
        "training_time": timing,
        "runs": scores,
        "left_out": missing,
        "environment": environment(),
    }


def _trend(recipes, subnets, seeds, scores) -> dict:
    """S2G - alone validation uSDR (dB) over training, for the full network and the smallest subnet.

    Both sides of each pair come from the same seed's runs, validated on the same batch at the same steps;
    the mean is over the seeds that have both. Says whether the gap opens or closes as training goes on.
    """
    out = {}
    for which, subnet, field in (("full", subnets[-1], "full_usdr_db"), ("smallest", subnets[0], "smallest_usdr_db")):
        for recipe in recipes:
            gaps: dict[int, list[float]] = {}
            for seed in seeds:
                s2g = scores.get(f"s2g-{recipe}-s{seed}", {}).get("training", {}).get("curve") or []
                alone = scores.get(f"alone-{subnet}-s{seed}", {}).get("training", {}).get("curve") or []
                by_step = {row["step"]: row["full_usdr_db"] for row in alone}
                for row in s2g:
                    if row["step"] in by_step and field in row:
                        gaps.setdefault(row["step"], []).append(row[field] - by_step[row["step"]])
            out.setdefault(which, {"subnet": subnet, "recipes": {}})["recipes"][recipe] = {
                str(step): round(statistics.mean(v), 3) for step, v in sorted(gaps.items())
            }
    return out


def _metric_spreads(rows: list) -> dict:
    return {k: _spread([r[k] for r in rows if r and r.get(k) is not None]) for k in ("usdr_db", "csdr_db")}


def _spread(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "values": []}
    return {
        "mean": round(statistics.mean(values), 3),
        "std": round(statistics.stdev(values), 3) if len(values) > 1 else None,  # one seed: no spread
        "values": [round(v, 3) for v in values],
    }


def _verdict(rows: list, recipes: list, subnets: list) -> dict:
    """Per recipe, on the test split: how many subnets match or beat alone (mean over seeds), mean gain."""
    out = {}
    for recipe in recipes:
        test = [r["recipes"][recipe]["minus_alone"]["usdr_db"] for r in rows if r["split"] == "test"]
        diffs = [d["mean"] for d in test if d["mean"] is not None]
        seeds = {len(d["values"]) for d in test if d["values"]}
        per_seed = (  # each seed's mean over the compared subnets, where every subnet has every seed
            [round(statistics.mean(v), 3) for v in zip(*(d["values"] for d in test), strict=True)]
            if len(seeds) == 1 and all(d["values"] for d in test)
            else []
        )
        out[recipe] = {
            "at_least_as_good": sum(d >= 0 for d in diffs),
            "compared": len(diffs),
            "mean_gain_db": round(statistics.mean(diffs), 3) if diffs else None,
            "seeds": max(seeds, default=0),
            "mean_gain_db_per_seed": per_seed,
        }
    return out


def _timing(recipes, subnets, seeds, scores, step_s: dict, steps: int) -> dict:
    def wall(name):
        return (scores.get(name) or {}).get("training", {}).get("wall_time_s")

    s2g = {r: _spread([w for s in seeds if (w := wall(f"s2g-{r}-s{s}")) is not None]) for r in recipes}
    alone = {n: _spread([w for s in seeds if (w := wall(f"alone-{n}-s{s}")) is not None]) for n in subnets}
    measured = sum(v["mean"] for v in alone.values() if v["mean"] is not None)
    # the grid subnets not trained here: timed steps x steps, scaled by how the compared ones' timed
    # steps relate to their measured runs (load differs between the short timing and the long runs)
    ratio = [alone[n]["mean"] / (step_s[n] * steps) for n in subnets if alone[n]["mean"] and n in step_s]
    scale = statistics.mean(ratio) if ratio else 1.0
    grid = {n: (alone[n]["mean"] if alone.get(n, {}).get("mean") else step_s[n] * steps * scale) for n in step_s}
    return {
        "s2g_s": s2g,
        "alone_s": alone,
        "compared_alone_total_s": round(measured, 1),
        "grid_alone_total_s_estimated": round(sum(grid.values()), 1),
        "grid_alone_s": {k: round(v, 1) for k, v in grid.items()},
        "seconds_per_step_timed": {k: round(v, 4) for k, v in step_s.items()},
        "timed_to_measured_scale": round(scale, 3),
    }


def _same_conditions(settings: dict, recipes: list, seeds: list, step_s: dict) -> dict:
    """Claim B from timed steps alone, both sides in the same conditions (estimated).

    A supernet step costs about the sum of the steps of the subnets it trains (the full network plus the
    recipe's subnets of that step, summed over the run's actual schedule); the grid alone costs every
    subnet's step times the steps. Both use the same timed steps, so load during the long runs, which
    differs between runs, cancels. The sum over-counts the supernet a little (one data load per step,
    not one per subnet), which only makes the claim harder.
    """
    from s2g_deploy.models.registry import get_preset
    from s2g_deploy.train.recipe import resolve_recipe

    space = get_preset(settings["preset"]).space
    steps = int(settings["steps"])
    grid_total = sum(step_s.values()) * steps
    out = {"grid_alone_s": round(grid_total, 1), "recipes": {}}
    for name in recipes:
        recipe = resolve_recipe(name, {})
        per_seed = [
            sum(
                step_s[str(space.largest)]
                + sum(step_s[str(x)] for x in recipe.subnets_of_step(space, int(seed), i, steps))
                for i in range(steps)
            )
            for seed in seeds
        ]
        cost = statistics.mean(per_seed)
        out["recipes"][name] = {"s2g_s": round(cost, 1), "fraction_of_grid": round(cost / grid_total, 3)}
    return out


def _equal_compute(recipes, subnets, seeds, scores, timing) -> dict:
    """S2G subnet's final validation uSDR vs the alone model's at its share of the supernet's time."""
    grid_total = timing["grid_alone_total_s_estimated"]
    out = {}
    for recipe in recipes:
        w = timing["s2g_s"][recipe]["mean"]
        if not w or not grid_total:
            continue
        share = w / grid_total  # fraction of its schedule each alone model gets
        rows = {}
        for n in subnets:
            pairs = []
            for s in seeds:
                a, b = scores.get(f"alone-{n}-s{s}"), scores.get(f"s2g-{recipe}-s{s}")
                if not a or not b:
                    continue
                curve = a["training"]["curve"]
                target_step = share * a["training"]["steps"]
                steps = [0, *(c["step"] for c in curve)]
                values = [curve[0]["mixture_usdr_db"], *(c["full_usdr_db"] for c in curve)]
                alone_val = float(np.interp(target_step, steps, values))
                pairs.append((b["valid_end"][n], alone_val))
            if pairs:
                rows[n] = {
                    "s2g": _spread([p[0] for p in pairs]),
                    "alone_at_share": _spread([p[1] for p in pairs]),
                    "minus_alone": _spread([p[0] - p[1] for p in pairs]),
                }
        out[recipe] = {"share_of_steps": round(share, 3), "subnets": rows}
    return out


def _plot(report: dict, path: Path) -> None:
    """Validation uSDR against steps: S2G full/smallest vs alone largest/smallest, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = report["settings"]
    subnets, seeds = settings["subnets"].split(","), settings["seeds"].split(",")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=False)
    for ax, (which, alone_subnet, key) in zip(
        axes,
        [("full network", subnets[-1], "full_usdr_db"), ("smallest subnet", subnets[0], "smallest_usdr_db")],
        strict=True,
    ):
        for name, label, field in [(f"alone-{alone_subnet}", f"{alone_subnet} alone", "full_usdr_db")] + [
            (f"s2g-{r}", f"S2G {r}", key) for r in settings["recipes"].split(",")
        ]:
            curves = [
                report["runs"][f"{name}-s{s}"]["training"]["curve"] for s in seeds if f"{name}-s{s}" in report["runs"]
            ]
            if not curves:
                continue
            steps = [c["step"] for c in curves[0]]
            values = np.mean([[c[field] for c in curve[: len(steps)]] for curve in curves], axis=0)
            ax.plot(steps, values, label=label, linestyle="--" if "alone" in name else "-")
        ax.set_title(f"{which} ({alone_subnet})")
        ax.set_xlabel("training step")
        ax.set_ylabel("validation uSDR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Held-out (validation split) uSDR during training, mean over seeds")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _markdown(r: dict) -> str:
    s, t = r["settings"], r["training_time"]
    recipes = s["recipes"].split(",")
    lines = [
        "# S2G supernet vs the same subnets trained alone",
        "",
        f"`{r['command']}` over the runs of `benchmarks/study_runs.py` ({s['runs']}).",
        "",
        f"Preset `{s['preset']}`, {s['steps']} steps, batch {s['batch_size']}, {s['schedule']} schedule with "
        f"{s['warmup_steps']} warm-up steps, seeds {s['seeds']}, one torch thread per run; training data "
        f"{s['data']}/train. Every S2G subnet and every alone model sees the same batches.",
        "",
    ]
    for split, held in r["held_out"].items():
        mix = r["mixture"][split]
        lines.append(
            f"- `{split}`: {held['tracks']} tracks ({held.get('root', held.get('kind'))}); unprocessed mixture "
            f"uSDR {mix['usdr_db']:.2f} dB, cSDR {mix['csdr_db']:.2f} dB."
        )
    if r["left_out"]:
        lines += ["", f"**Not finished, left out:** {', '.join(r['left_out'])}."]
    for split in r["held_out"]:
        lines += [
            "",
            f"## Equal steps per model, `{split}` split: uSDR / cSDR in dB, mean ± std over seeds",
            "",
            "| subnet | alone | " + " | ".join(f"S2G {x} | {x} − alone" for x in recipes) + " |",
            "| --- | ---: | " + " | ".join("---: | ---:" for _ in recipes) + " |",
        ]
        for row in (x for x in r["rows"] if x["split"] == split):
            cells = [row["subnet"], _pair(row["alone"])]
            for x in recipes:
                rec = row["recipes"][x]
                cells += [_pair(rec), _pair(rec["minus_alone"], sign=True)]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Verdict (test split, uSDR, mean over seeds)", ""]
    for recipe, v in r["verdict"].items():
        gain = f"{v['mean_gain_db']:+.2f} dB" if v["mean_gain_db"] is not None else "-"
        per_seed = ", ".join(f"{g:+.2f}" for g in v["mean_gain_db_per_seed"])
        lines.append(
            f"- `{recipe}` ({v['seeds']} seed{'s' if v['seeds'] != 1 else ''}): at least as good as alone at "
            f"{v['at_least_as_good']}/{v['compared']} subnets; mean S2G − alone {gain}"
            + (f" (per seed: {per_seed})." if per_seed else ".")
        )
    lines += [
        "",
        "## Equal total compute (estimated)",
        "",
        "The grid's alone-models together get one supernet's training time; each alone model's validation uSDR is "
        "read off its own curve at its share of the steps (the same cosine run, not re-annealed: an estimate).",
        "",
        "| recipe | share of steps | " + " | ".join(s["subnets"].split(",")) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in s["subnets"].split(",")) + " |",
    ]
    for recipe, e in r["equal_compute"].items():
        cells = [
            f"{e['subnets'][n]['minus_alone']['mean']:+.2f}" if n in e["subnets"] else "-"
            for n in s["subnets"].split(",")
        ]
        lines.append(f"| {recipe} (S2G − alone, dB) | {e['share_of_steps']:.2f} | " + " | ".join(cells) + " |")
    lines += _trend_lines(r["trend"], int(s["steps"]))
    lines += [
        "",
        "## Training time (s, mean over seeds)",
        "",
        "| model | seconds |",
        "| --- | ---: |",
    ]
    lines += [
        f"| S2G {k} (serves all {len(t['grid_alone_s'])} grid subnets) | {_num(v['mean'])} |"
        for k, v in t["s2g_s"].items()
    ]
    lines += [f"| {k} alone | {_num(v['mean'])} |" for k, v in t["alone_s"].items()]
    lines += [
        f"| the {len(t['alone_s'])} compared subnets alone, together (measured) | {t['compared_alone_total_s']:.0f} |",
        f"| all {len(t['grid_alone_s'])} grid subnets alone (estimated from timed steps) | "
        f"{t['grid_alone_total_s_estimated']:.0f} |",
        "",
        "",
        "Claim B in the same conditions (estimated from the timed steps above: a supernet step costs the sum of "
        "its subnets' steps; wall times of the long runs differ with the load beside them):",
        "",
        f"| recipe | supernet (s) | fraction of the {len(t['grid_alone_s'])} grid subnets alone |",
        "| --- | ---: | ---: |",
        *(
            f"| {k} | {v['s2g_s']:.0f} | {v['fraction_of_grid']:.2f} |"
            for k, v in t["same_conditions"]["recipes"].items()
        ),
        "",
        f"![validation uSDR against steps](s2g_vs_independent{'_quick' if 'quick' in r['command'] else ''}.png)",
        "",
        machine_line(r["environment"]),
    ]
    return "\n".join(lines) + "\n"


def _trend_lines(trend: dict, steps: int) -> list[str]:
    marks = [str(round(steps * f / 6 / 100) * 100) for f in range(1, 7)]
    lines = [
        "",
        "## The gap over training (validation split, uSDR, S2G − alone in dB, mean over seeds)",
        "",
        "Each S2G subnet against the same subnet trained alone, both validated on the same batch at the same "
        "step: a gap that shrinks towards the end would close with longer training; one that grows would not.",
        "",
        "| recipe | subnet | " + " | ".join(f"step {m}" for m in marks) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in marks) + " |",
    ]
    for which in ("full", "smallest"):
        t = trend.get(which)
        if not t:
            continue
        for recipe, gaps in t["recipes"].items():
            cells = [f"{gaps[m]:+.2f}" if m in gaps else "-" for m in marks]
            lines.append(f"| {recipe} | {t['subnet']} ({which}) | " + " | ".join(cells) + " |")
    return lines


def _num(v) -> str:
    return f"{v:.0f}" if v is not None else "-"


def _pair(spreads: dict, sign: bool = False) -> str:
    def one(x):
        if x["mean"] is None:
            return "-"
        spread = f" ± {x['std']:.2f}" if x["std"] is not None else ""
        return (f"{x['mean']:+.2f}" if sign else f"{x['mean']:.2f}") + spread

    return f"{one(spreads['usdr_db'])} / {one(spreads['csdr_db'])}"


if __name__ == "__main__":
    raise SystemExit(main())
