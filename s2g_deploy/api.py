"""The library API: each CLI command is a thin layer over one function here.

Torch-free at import (``s2g --help`` and a warm ``s2g search`` never load it): every function imports
what it needs when called.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2g_deploy.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from s2g_deploy.errors import InputError
from s2g_deploy.models.registry import architecture_of, get_preset
from s2g_deploy.quality import restrict
from s2g_deploy.subnet import Subnet

if TYPE_CHECKING:
    from s2g_deploy.models.elastic import ElasticBSRNN


@dataclass(frozen=True)
class SubnetParams:
    subnet: Subnet
    params: int


@dataclass(frozen=True)
class InspectReport:
    """What ``s2g inspect`` shows: the checkpoint's metadata and the parameter count of every subnet."""

    source: str
    meta: CheckpointMeta
    params: int
    subnets: tuple[SubnetParams, ...]

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            **self.meta.to_dict(),
            "params": self.params,
            "subnets": [{"subnet": str(s.subnet), "params": s.params} for s in self.subnets],
        }


def new_supernet(preset: str, seed: int = 0) -> ElasticBSRNN:
    """A randomly initialised supernet of a named preset (``s2g_deploy.models.registry.PRESETS``)."""
    import torch

    p = get_preset(preset)
    torch.manual_seed(seed)
    return architecture_of(p.config).load("supernet")(p.config, p.space)


def init(preset: str, out: str | os.PathLike, seed: int = 0) -> CheckpointMeta:
    """Write an untrained supernet of ``preset`` to ``out`` (a starting point for training)."""
    model = new_supernet(preset, seed)
    training = {"status": "untrained", "preset": preset, "seed": seed}
    return save_checkpoint(out, model, CheckpointMeta(model.config, model.space, training=training))


def slice_to_file(checkpoint: str | os.PathLike, subnet: Subnet | str, out: str | os.PathLike) -> CheckpointMeta:
    """Cut ``subnet`` out of the supernet at ``checkpoint`` and save it as a dense checkpoint at ``out``."""
    from s2g_deploy.slicing import slice_subnet

    subnet = Subnet.parse(subnet) if isinstance(subnet, str) else subnet
    ckpt = load_checkpoint(checkpoint)
    if ckpt.meta.kind != "supernet":
        raise InputError(f"{checkpoint}: is a dense subnet ({ckpt.meta.subnet}), not a supernet; nothing to slice")
    dense = slice_subnet(ckpt.model, subnet)
    meta = CheckpointMeta(
        dense.config,
        subnet=subnet,
        parent_sha256=ckpt.meta.weights_sha256,
        training=ckpt.meta.training,
        quality=restrict(ckpt.meta.quality, str(subnet)),
    )
    return save_checkpoint(out, dense, meta)


def inspect(checkpoint: str | os.PathLike | None = None, preset: str | None = None) -> InspectReport:
    """Describe a checkpoint file (default: the bundled supernet), or an untrained ``preset`` instead."""
    if checkpoint is not None and preset is not None:
        raise InputError("give either a checkpoint file or --preset, not both")
    if checkpoint is None and preset is None:
        from s2g_deploy.bundled import default_checkpoint

        checkpoint = default_checkpoint()
    if preset is not None:
        p = get_preset(preset)
        meta = CheckpointMeta(p.config, p.space, training={"status": "untrained", "preset": preset})
        source = f"preset:{preset}"
    else:
        ckpt = load_checkpoint(checkpoint)
        meta, source = ckpt.meta, str(Path(checkpoint))
    grid = meta.space.grid() if meta.space else []
    count_params = architecture_of(meta.config).count_params
    subnets = tuple(
        SubnetParams(s, count_params(meta.config.with_size(feature_dim=s.width, num_blocks=s.depth))) for s in grid
    )
    return InspectReport(source, meta, count_params(meta.config), subnets)


def export(
    checkpoint: str | os.PathLike | None = None,
    *,
    subnet: Subnet | str | None = None,
    budgets=None,
    profile=None,
    out: str | os.PathLike,
    io: str | None = None,
    overwrite: bool = False,
    opset: int | None = None,
    measure_latency: bool = True,
    calibrate: bool = False,
    parity_seconds: tuple[float, ...] | None = None,
    precision: str | None = None,
    gate_data: str | os.PathLike | None = None,
    max_quality_drop_db: float | None = None,
):
    """Export one subnet as a verified, self-describing ONNX directory; returns an ``ExportResult``.

    The subnet is ``subnet``, or the best one within ``budgets`` (``s2g_deploy.budgets.Budgets``) and/or
    ``profile`` (a name, a TOML path or a loaded profile). ``checkpoint`` defaults to the bundled supernet.
    ``io`` (default: ``"stream"`` for a stream profile or a causal checkpoint, else ``"waveform"``) is
    ``"stream"`` (a causal supernet's stream: k hops and every state in, k hops and the updated states
    out; see ``export.stream``), ``"waveform"`` (samples in and out, STFT inside the graph) or
    ``"spectrogram"`` (the mask network only). Raises ``InputError`` (bad input, exit 2),
    ``BudgetInfeasibleError`` (3) or ``VerificationError`` (parity or MAC-count check failed, 4); on any
    error ``out`` is left as it was.

    A searched subnet under a profile with latency budgets is chosen latency-aware when
    ``measure_latency``: predicted by this machine's latency model, exported, measured in a fresh
    process, and the next candidate tried on a miss (``s2g_deploy.deploy``); every measured miss is
    ``VerificationError``. Without a latency model for the profile on this machine that is an
    ``InputError``, unless ``calibrate`` (then one is fitted first: it exports and times a dozen
    subnets; ``s2g export`` does). With ``measure_latency=False`` latency budgets are recorded as
    unverified. ``parity_seconds``: the lengths parity is checked at (default 0.5, 3 and 10 s).

    ``precision``: ``fp32``, ``int8-dynamic`` or ``fp16`` (default: the profile's ``runtime.precision``, else
    fp32; fp16 on the CPU provider is an ``InputError``). A quantized export must pass the quality gate
    against its own fp32 model on held-out tracks at the profile's workload (``gate_data``: a stems folder;
    default: tracks rendered now with TimGM6mb) within ``max_quality_drop_db`` (default: the profile's,
    else 0.5 dB uSDR), else ``VerificationError`` and nothing is written.
    """
    from s2g_deploy.deploy import export as _export
    from s2g_deploy.export.pipeline import ExportOptions

    options = ExportOptions(
        out,
        checkpoint,
        subnet,
        budgets,
        profile,
        io,
        overwrite,
        opset,
        measure_latency,
        calibrate,
        parity_seconds,
        precision,
        gate_data,
        max_quality_drop_db,
    )
    return _export(options)


def bench(
    model: str | os.PathLike,
    profile,
    *,
    write_manifest: bool = True,
    compare: str | None = None,
    checkpoint: str | os.PathLike | None = None,
):
    """Benchmark an exported model (``.onnx`` or export directory) as device ``profile`` runs it.

    Returns a ``s2g_deploy.runtime.bench.BenchReport`` (latency statistics in ms, real-time factor,
    memory, budget verdicts, environment); an export directory's manifest records it. ``compare="torch"``
    also times the dense PyTorch subnet and the supernet at it (``checkpoint``: that supernet; default:
    found). Raises ``InputError`` (exit 2) for a bad model or profile, or an execution provider that is
    not installed.
    """
    from s2g_deploy.runtime.bench import bench_model

    return bench_model(model, profile, write_manifest=write_manifest, compare=compare, checkpoint=checkpoint)


def calibrate(checkpoint: str | os.PathLike | None = None, *, profile, io: str | None = None, repeats: int = 1):
    """Fit and cache this machine's latency model for ``profile``; returns a ``LatencyModel``.

    Its ``mape_held_out`` is the mean absolute percentage error on measured subnets it was not fitted on.
    ``io`` defaults to ``stream`` for a stream profile (and its default checkpoint is then the bundled
    causal supernet), else ``waveform``.
    """
    from s2g_deploy.bundled import resolve_checkpoint
    from s2g_deploy.export import check_io
    from s2g_deploy.profiles import Profile, check_architecture, load_profile, streams
    from s2g_deploy.runtime.latency import calibrate as _calibrate

    profile = profile if isinstance(profile, Profile) else load_profile(profile)
    io = check_io(io or ("stream" if streams(profile) else "waveform"))
    path = resolve_checkpoint(checkpoint, causal=io == "stream")
    from s2g_deploy.checkpoint import read_meta

    check_architecture(profile, read_meta(path).architecture, str(path))
    return _calibrate(path, profile, io, repeats=repeats)


def separate(
    model: str | os.PathLike,
    audio: str | os.PathLike,
    out: str | os.PathLike,
    *,
    chunk_seconds: float | None = None,
    overlap_seconds: float | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    hops_per_call: int | None = None,
):
    """Separate ``audio`` with an exported model (file or export directory): a waveform export in
    overlapping chunks (default 10 s), a stream export by streaming it, ``hops_per_call`` hops per call
    (default: the export's own), its output aligned with the input.

    Writes ``out/<stem>/<source>.wav`` and ``out/<stem>/no_<source>.wav`` (32-bit float WAV at the input's
    rate and channels; ``<source>`` as the export records it, else ``target`` / ``residual``); returns a
    ``SeparationResult``. Other sample rates are resampled to the model's and back. Several files, other
    output formats and progress: :func:`s2g_deploy.separate.separate_files`.
    """
    from s2g_deploy.separate import separate as _separate

    return _separate(
        model,
        audio,
        out,
        chunk_seconds=chunk_seconds,
        overlap_seconds=overlap_seconds,
        overwrite=overwrite,
        threads=threads,
        hops_per_call=hops_per_call,
    )


def open_stream(model: str | os.PathLike, *, batch: int = 1, threads: int = 1):
    """A ``s2g_deploy.runtime.stream.Streamer`` over a stream export (file or export directory): call
    ``process(chunk)`` with each (batch, k x hop) float32 block; states are carried and validated."""
    from s2g_deploy.runtime.session import SessionSettings, build_session
    from s2g_deploy.runtime.stream import Streamer
    from s2g_deploy.separate import resolve_model

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a whole number of at least 1, got {batch!r}")
    session = build_session(resolve_model(model), SessionSettings(intra_op_threads=threads, inter_op_threads=1))
    return Streamer(session, batch)


def search(
    checkpoint: str | os.PathLike | None = None,
    *,
    budget_macs: int | float | str | None = None,
    budget_params: int | float | str | None = None,
    profile=None,
    budgets=None,
    precision: str | None = None,
):
    """The best subnet within the budgets; returns a ``s2g_deploy.search.SearchResult``.

    ``budget_macs`` (network MACs per second of audio) and ``budget_params`` accept numbers or sizes such
    as ``"300M"``, or ``budgets`` is a ``s2g_deploy.budgets.Budgets``; ``profile`` is a shipped name, a
    TOML path or a loaded ``Profile``; the tighter of a profile's budget and an explicit one wins. Model
    bytes (the ``max_model_bytes`` budget) are counted at ``precision`` (default: the profile's, else fp32).
    ``checkpoint`` defaults to the bundled supernet. Raises ``InputError`` (exit 2) or
    ``BudgetInfeasibleError`` (3, naming the binding budget).
    """
    from s2g_deploy.budgets import Budgets
    from s2g_deploy.profiles import Profile, load_profile
    from s2g_deploy.search import search as _search

    if budgets is None:
        budgets = Budgets.from_sizes(budget_macs, budget_params, ("budget_macs", "budget_params"))
    elif budget_macs is not None or budget_params is not None:
        raise InputError("give either budgets or budget_macs/budget_params, not both")
    if profile is not None and not isinstance(profile, Profile):
        profile = load_profile(profile)
    return _search(checkpoint, budgets, profile, precision=precision)


def costs(checkpoint: str | os.PathLike | None = None, *, counted_seconds: float = 4.0):
    """Parameters and network MACs per second of every subnet; returns a ``s2g_deploy.cost.CostTable``.

    Counted once per checkpoint and cached on disk (``$S2G_CACHE_DIR``, default ``~/.cache/s2g_deploy``).
    """
    from s2g_deploy.cost import subnet_costs

    return subnet_costs(checkpoint, counted_seconds=counted_seconds)


def release(
    checkpoint: str | os.PathLike | None = None,
    profiles=None,
    out: str | os.PathLike = "dist",
    *,
    bench: bool = True,
    allow_infeasible: bool = False,
    overwrite: bool = False,
    gate_data: str | os.PathLike | None = None,
    causal_checkpoint: str | os.PathLike | None = None,
):
    """Export the best subnet for every profile into ``out``, with release.json, RELEASE.md, pareto.png and
    SHA256SUMS; returns a ``s2g_deploy.release.ReleaseResult``.

    ``checkpoint`` (default: the bundled supernet) serves chunk and offline profiles; stream profiles
    stream ``causal_checkpoint`` (default: the bundled causal supernet).

    ``profiles``: directories of ``.toml`` files, files, shipped names or loaded profiles (default: every
    shipped profile). A profile no subnet satisfies is reported and the rest built; ``result.failure()``
    is the error the CLI exits with (``BudgetInfeasibleError``, or ``VerificationError`` for a latency
    budget missed when benchmarked here), None with ``allow_infeasible``. Each profile's export is stored at
    its ``runtime.precision``; quantized ones pass the quality gate on ``gate_data`` (see :func:`export`).
    """
    from s2g_deploy.release import build_release

    return build_release(
        checkpoint,
        profiles,
        out,
        bench=bench,
        allow_infeasible=allow_infeasible,
        overwrite=overwrite,
        gate_data=gate_data,
        causal_checkpoint=causal_checkpoint,
    )


def verify(path: str | os.PathLike, seed: int | None = None):
    """Check a release or export directory: checksums, manifests, and every ONNX model against its dense
    model on a fresh random input; returns a ``s2g_deploy.verify.VerifyReport`` or raises
    ``VerificationError`` (exit 4) naming every problem."""
    from s2g_deploy.verify import verify as _verify

    return _verify(path, seed)


def separate_files(
    model: str | os.PathLike,
    audio: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    output_format: Any = None,
    **options: Any,
):
    """Separate several files with one exported waveform model (``s2g separate``): every input checked
    before anything is written; returns one ``SeparationResult`` per input.

    ``output_format``: a ``s2g_deploy.separate.OutputFormat`` (default: 32-bit float WAV), or a mapping
    of ``int24``, ``float32`` and ``flac`` flags as the CLI takes them. ``options``: ``chunk_seconds``,
    ``overlap_seconds``, ``overwrite``, ``threads`` and the ``on_start`` / ``on_progress`` / ``on_result``
    callbacks of :func:`s2g_deploy.separate.separate_files`.
    """
    from s2g_deploy.separate import FLOAT_WAV
    from s2g_deploy.separate import output_format as _output_format
    from s2g_deploy.separate import separate_files as _separate_files

    if output_format is None:
        output_format = FLOAT_WAV
    elif isinstance(output_format, dict):
        output_format = _output_format(**output_format)
    return _separate_files(model, audio, out, output_format=output_format, **options)


def evaluate(
    checkpoint: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    *,
    out: str | os.PathLike | None = None,
    in_place: bool = False,
    **options: Any,
):
    """Score every subnet (uSDR, SI-SDR, cSDR) and write the quality table into a checkpoint; returns an
    ``s2g_deploy.train.evaluate.EvaluationResult``. ``checkpoint`` defaults to the bundled supernet, which
    is never written: the table then goes to ``out`` (default ``supernet.evaluated.safetensors``).
    ``options``: ``items``, ``seconds``, ``target``, ``chunk_seconds``, ``timbre_data`` of
    :func:`s2g_deploy.train.evaluate.evaluate`."""
    from s2g_deploy.bundled import resolve_checkpoint
    from s2g_deploy.train.evaluate import evaluate as _evaluate

    if checkpoint is None and out is None and not in_place:
        out = Path("supernet.evaluated.safetensors")  # never write into the installed package
    if "chunk_seconds" in options:
        options["chunk_seconds"] = tuple(options["chunk_seconds"])
    return _evaluate(resolve_checkpoint(checkpoint), data, out=out, in_place=in_place, **options)


def train(config):
    """Train a supernet (or one fixed subnet) as ``config`` (a ``s2g_deploy.train.loop.TrainConfig``) says;
    returns a ``TrainResult``. Set torch's threads and ``OMP_WAIT_POLICY`` before torch is first imported."""
    from s2g_deploy.train.loop import train as _train

    return _train(config)


def render_data(request, on_track: Callable[[int], None] | None = None):
    """Render multitracks (``s2g data render``) as ``request`` (a ``s2g_deploy.data.render.RenderRequest``)
    asks; ``on_track(done)`` after each track. Returns a ``RenderResult``."""
    from s2g_deploy.data.render import render

    return render(request, on_track)


def environment(variables: Sequence[str] = ()) -> dict:
    """This machine and its software (``s2g env``): :func:`s2g_deploy.environment.environment`, torch's
    thread settings, and the environment ``variables`` named."""
    import torch

    from s2g_deploy.environment import environment as _environment

    return {
        **_environment(),
        "torch_threads": {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        "variables": {name: os.environ.get(name) for name in variables},
    }


def profiles() -> list:
    """The shipped device profiles, smallest MAC budget first (no budget last), then by name."""
    from s2g_deploy.profiles import load_profile, shipped_profiles

    return sorted(
        (load_profile(name) for name in shipped_profiles()),
        key=lambda p: (p.budgets.max_macs_per_second is None, p.budgets.max_macs_per_second or 0, p.name),
    )


def profile(name_or_path: str | os.PathLike):
    """One device profile: a shipped name or a TOML file (``ProfileError``, exit 2, lists every problem)."""
    from s2g_deploy.profiles import load_profile

    return load_profile(name_or_path)


def validate_profile(path: str | os.PathLike):
    """Read and validate the profile file at ``path`` (never a shipped name); raises ``ProfileError``."""
    from s2g_deploy.profiles import read_profile

    return read_profile(path)
