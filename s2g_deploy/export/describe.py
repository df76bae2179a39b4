"""What an export says about itself: ONNX ``metadata_props`` and the model card.

Both are built from one ``facts`` dict (see :mod:`s2g_deploy.export.pipeline`), so the file, the card and
``manifest.json`` cannot disagree. Neither holds dates or timings: the same inputs give the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from s2g_deploy.models.bsrnn import BSRNNConfig

AUTHOR = "s2g_deploy"
LICENSE = "MIT"  # the project's licence; the weights' own terms follow the supernet's training data
METADATA_VERSION = "1"


def stft_settings(config: BSRNNConfig) -> dict:
    """The STFT a spectrogram-export user must reproduce (and the one inside a waveform export)."""
    return {
        "n_fft": config.n_fft,
        "hop_length": config.hop_length,
        "win_length": config.n_fft,
        "window": "hann, periodic",
        "center": True,
        "pad_mode": "constant (zeros)",
        "onesided": True,
        "normalized": False,
        "frames": "1 + samples // hop_length",
        "layout": "(batch, bins, frames, 2): last axis real, imaginary",
        "torch": (
            f"torch.view_as_real(torch.stft(wav, {config.n_fft}, {config.hop_length}, "
            f"window=torch.hann_window({config.n_fft}), center=True, pad_mode='constant', return_complex=True))"
        ),
    }


def metadata_props(facts: dict[str, Any]) -> dict[str, str]:
    """ONNX ``metadata_props``: ``model_author``, ``model_license`` and ``s2g.*`` keys (JSON values)."""
    costs = facts["costs"]
    parity = facts["parity"]
    props = {
        "model_author": AUTHOR,
        "model_license": LICENSE,
        "s2g.metadata_version": METADATA_VERSION,
        "s2g.architecture": facts["architecture"],
        "s2g.subnet": facts["subnet"],
        "s2g.params": str(facts["params"]),
        "s2g.io": _json(facts["io"]),
        "s2g.sample_rate_hz": str(facts["sample_rate_hz"]),
        "s2g.stft": _json(facts["stft"]),
        "s2g.opset": str(facts["opset"]),
        "s2g.macs_per_second": _json(
            {
                **costs["macs_per_second"],
                "graph_total": round(costs["graph"]["total"] * facts["sample_rate_hz"] / costs["model"]["samples"]),
            }
        ),
        # rounded: the certificate's exact numbers are in manifest.json
        "s2g.parity": _json(
            {
                "passed": parity.passed,
                "tolerance_abs": parity.tolerance_abs,
                "max_abs": f"{parity.max_abs:.1e}",
                "stages": [s.stage for s in parity.stages],
                "reference": parity.reference,
                "lengths_samples": list(parity.lengths),
            }
        ),
        "s2g.quality": _json(facts["quality"]),
        "s2g.supernet_weights_sha256": facts["supernet_weights_sha256"] or "",
        "s2g.checkpoint_file_sha256": facts["checkpoint_file_sha256"],
        "s2g.dense_weights_sha256": facts["dense_weights_sha256"],
        "s2g.profile": facts["profile"] or "",
        "s2g.versions": _json(facts["versions"]),
        "s2g.precision": facts.get("precision", "fp32"),
        "s2g.parameter_bytes": str(costs.get("parameter_bytes", {}).get("graph", "")),
        **_precision_props(facts),
    }
    if facts.get("stream"):  # what a streaming caller needs besides the graph: the timing and the states
        props["s2g.stream"] = _json({**facts["stream"], "states": facts["io"]["states"]})
    target = (facts.get("training") or {}).get("target")
    if target:  # the source it separates: s2g separate names its outputs after it
        props["s2g.target"] = str(target)
    return props


def _precision_props(facts: dict[str, Any]) -> dict[str, str]:
    """How the weights were quantized, on which CPU features, and the quality gate's verdict (rounded)."""
    q, gate = facts.get("quantization"), facts.get("gate")
    if not q:
        return {}
    keep = (
        "method",
        "weight_type",
        "per_channel",
        "reduce_range",
        "reduce_range_reason",
        "op_types_to_quantize",
        "cpu",
    )
    return {
        "s2g.quantization": _json({k: q[k] for k in keep}),
        "s2g.macs_by_precision": _json(facts["costs"]["macs_by_precision"]),
        "s2g.gate": _json(
            {
                "passed": gate["passed"],
                "limit_usdr_drop_db": gate["limit_usdr_drop_db"],
                "drop": gate["drop"],
                "snr_db_vs_fp32": gate["snr_db_vs_fp32"],
                "workload": gate["workload"]["label"],
                "data": {k: gate["data"].get(k) for k in ("kind", "tracks", "seconds", "sha256")},
            }
        ),
    }


def with_metadata(model_bytes: bytes, facts: dict[str, Any]) -> bytes:
    """``model_bytes`` with our ``metadata_props``, doc string and graph name (the computation is unchanged)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata_props(facts))
    model.doc_string = _summary(facts)
    model.graph.name = f"{facts['architecture']}_{facts['subnet']}"
    model.model_version = 1
    return model.SerializeToString()


def _summary(facts: dict) -> str:
    io = facts["io"]
    return (
        f"{_title(facts)} subnet {facts['subnet']} ({facts['params']:,} params) exported by s2g_deploy: "
        f"{io['input']['name']} {io['input']['shape']} -> {io['output']['name']} {io['output']['shape']} "
        f"at {facts['sample_rate_hz']} Hz"
    )


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _fmt(n: float) -> str:
    """12_345_678 -> '12.3M' (decimal suffixes, as budgets are written)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def model_card(facts: dict[str, Any]) -> str:
    """``model_card.md``: what the model is, how to run it, what it costs, and the evidence."""
    sections = (
        _card_io,
        _card_usage,
        _card_cost,
        _card_verification,
        _card_precision,
        _card_quality,
        _card_provenance,
    )
    return "\n".join(line for section in sections for line in section(facts))


def _card_io(facts: dict[str, Any]) -> list[str]:
    io, stft, sr = facts["io"], facts["stft"], facts["sample_rate_hz"]
    lines = [
        f"# {_title(facts)} subnet {facts['subnet']}",
        "",
        f"A dense {_architecture(facts).description} cut out of an elastic (Subnetwork-to-go) supernet by "
        f"s2g_deploy and exported "
        f"to ONNX (opset {facts['opset']}). It separates one target source from a mono mixture at {sr} Hz.",
        "",
        "## Input and output",
        "",
        "| | name | shape | dtype |",
        "| --- | --- | --- | --- |",
        f"| input | `{io['input']['name']}` | {_shape(io['input']['shape'])} | float32 |",
        f"| output | `{io['output']['name']}` | {_shape(io['output']['shape'])} | float32 |",
        "",
    ]
    if io["io"] == "stream":
        st = facts["stream"]
        rows = [f"| state | `{x['name']}` -> `{x['output']}` | {_shape(x['shape'])} | float32 |" for x in io["states"]]
        return [
            *lines[:-1],
            *rows,
            "",
            f"A stream: each call takes the next k hops of a mono mixture at {sr} Hz (`samples` = k x "
            f"{st['hop_length']}, any k >= 1) and every state, and returns k hops of the target and every "
            "updated state (`next_...`), to be fed to the next call. Initial states are zeros; one stream per "
            f"batch row. Output sample n is the causal model's estimate of input sample n - {st['delay_samples']} "
            f"(delay {st['delay_ms']:g} ms); with {st['hops_per_call']} hop(s) per call "
            f"({st['call_ms']:g} ms) the algorithmic latency is {st['algorithmic_latency_samples']} samples "
            f"({st['algorithmic_latency_ms']:g} ms). STFT: n_fft {st['n_fft']}, hop {st['hop_length']}, "
            "periodic Hann analysis and synthesis windows, inside the graph. `s2g separate model.onnx song.wav "
            "--out stems/` streams a WAV file of any length and aligns the result with the input.",
        ]
    if io["io"] == "waveform":
        return [
            *lines,
            f"Mono waveforms at {sr} Hz, any batch size and any length of at least one sample; the output has "
            "the input's length. The STFT and inverse STFT are inside the graph. Stereo: put the channels in "
            "the batch axis. `s2g separate model.onnx song.wav --out stems/` runs it on a WAV file of any "
            "length in overlapping chunks.",
        ]
    return [
        *lines,
        "A complex spectrogram in, a complex mask out (last axis: real, imaginary). Multiply the mask with "
        "the spectrogram (complex product) and invert with the matching iSTFT. The STFT must be exactly:",
        "",
        f"    {stft['torch']}",
        "",
        "and the iSTFT `torch.istft` with the same window, `center=True` and `length=` the input length.",
    ]


def _card_usage(facts: dict[str, Any]) -> list[str]:
    io, sr = facts["io"], facts["sample_rate_hz"]
    lines = [
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        'session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])',
    ]
    if io["io"] == "stream":
        hop = facts["stream"]["hop_length"]
        lines += [
            "inputs = {i.name: i for i in session.get_inputs()}",
            "states = {n: np.zeros([1 if isinstance(d, str) else d for d in i.shape], np.float32)",
            '          for n, i in inputs.items() if n != "mixture"}',
            f"hop = {hop}  # samples per hop; a call takes any whole number of hops",
            "names = [o.name for o in session.get_outputs()]",
            "for chunk in np.zeros((100, 1, hop), np.float32):  # (batch, hop) at a time, from the audio device",
            '    outs = dict(zip(names, session.run(names, {"mixture": chunk, **states})))',
            '    target = outs["target"]  # (batch, hop): the separated stream, delayed by the stated delay',
            '    states = {n: outs["next_" + n] for n in states}',
        ]
    elif io["io"] == "waveform":
        lines += [
            f"mixture = np.zeros((1, {sr}), np.float32)  # (batch, samples), {sr} Hz",
            f'target = session.run(None, {{"{io["input"]["name"]}": mixture}})[0]  # same shape',
        ]
    else:
        lines += [
            "spectrogram = ...  # (batch, bins, frames, 2) float32, the STFT above",
            f'mask = session.run(None, {{"{io["input"]["name"]}": spectrogram}})[0]',
        ]
    return [*lines, "```"]


def _card_cost(facts: dict[str, Any]) -> list[str]:
    costs = facts["costs"]
    mps = costs["macs_per_second"]
    waveform = facts["io"]["io"] == "waveform"
    return [
        "",
        "## Size and cost",
        "",
        f"- Subnet `{facts['subnet']}` (depth x width): {facts['params']:,} parameters.",
        f"- MACs per second of audio (one channel): network {_fmt(mps['network'])}"
        + (f", in-graph STFT/iSTFT {_fmt(mps['stft_istft'])}, total {_fmt(mps['total'])}" if waveform else "")
        + f"; {costs['model']['source']}.",
        f"- An independent count of the exported graph's MatMul/Gemm/Conv/ConvTranspose/LSTM nodes agrees "
        f"within {100 * costs['graph_vs_model']:.2f}%.",
        f"- Not counted: {costs['not_counted']}.",
    ]


def _card_verification(facts: dict[str, Any]) -> list[str]:
    parity, sr = facts["parity"], facts["sample_rate_hz"]
    return [
        "",
        "## Verification",
        "",
        f"The shipped file was run in onnxruntime beside the {parity.reference} and every intermediate stage on "
        f"white noise and a synthetic music-like signal (peak 1, batch 2) at "
        f"{', '.join(f'{n / sr:.2f} s' for n in parity.lengths)} — none the traced length, so the dynamic axes "
        f"are proven, not just declared. Tolerance: {parity.tolerance_abs:.0e} absolute.",
        "",
        f"| stage | max abs error vs {parity.reference} | relative |",
        "| --- | --- | --- |",
        *(f"| {s.stage} | {s.max_abs:.1e} | {s.max_rel:.1e} |" for s in parity.stages),
    ]


def _card_precision(facts: dict[str, Any]) -> list[str]:
    """What precision the weights are stored in and, for a quantized model, the gate that admitted it."""
    pb = facts["costs"].get("parameter_bytes") or {}
    q, gate = facts.get("quantization"), facts.get("gate")
    lines = [
        "",
        "## Precision",
        "",
        f"Weights stored as **{facts.get('precision', 'fp32')}**: {pb.get('graph', 0):,} bytes of network parameters.",
    ]
    if not q:
        return lines
    cpu = q["cpu"] or {}
    g, d = gate, gate["drop"]
    lines += [
        "",
        f"Quantized with onnxruntime `quantize_dynamic` after onnxsim: {q['weight_type']} weights, per-channel "
        f"{q['per_channel']}, reduce_range {q['reduce_range']} ({q['reduce_range_reason']}); CPU VNNI flags "
        f"found: {', '.join(cpu.get('flags') or []) or 'none'}. {q['op_counts']['DynamicQuantizeLSTM']} "
        f"DynamicQuantizeLSTM and {q['op_counts']['MatMulInteger']} MatMulInteger nodes; the STFT/iSTFT basis "
        "stays float32 (computed in the graph when the session loads). Every network MAC runs as int8 "
        f"({_fmt(facts['costs']['macs_by_precision']['int8'])} per second); the STFT/iSTFT runs in float32. "
        "`DynamicQuantizeLSTM` is an onnxruntime operator: other runtimes need the fp32 export.",
        "",
        f"Quality gate (against this model's own fp32 export, {g['workload']['label']}, {g['data']['tracks']} "
        f"held-out tracks of {g['data']['seconds']:g} s, {g['data']['kind']}): uSDR drop "
        f"{d['usdr_db_worst_track']:.3f} dB on the worst track (limit {g['limit_usdr_drop_db']:g} dB), "
        f"{d['usdr_db']:.3f} dB on average, cSDR drop {d.get('csdr_db', float('nan')):.3f} dB; output SNR against "
        f"fp32 {g['snr_db_vs_fp32']:.1f} dB. Parity against the fp32 file required SNR >= "
        f"{q['parity']['required_snr_db']:.1f} dB at {len(q['parity']['lengths_samples'])} lengths and measured "
        f"{q['parity']['min_snr_db']:.1f} dB.",
    ]
    return lines


def _card_quality(facts: dict[str, Any]) -> list[str]:
    lines = ["", "## Quality", "", *_quality_lines(facts["quality"], facts["subnet"])]
    training = facts.get("training") or {}
    lines += ["", "## Training data and limits", ""]
    lines += _limits_lines(training.get("data_description"), facts["sample_rate_hz"])
    if training:
        simple = {k: v for k, v in training.items() if isinstance(v, str | int | float | bool)}
        lines += ["", f"Training: {', '.join(f'{k}={v}' for k, v in simple.items())}."]
    return lines


def _card_provenance(facts: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Provenance",
        "",
        f"- Supernet weights SHA-256: `{facts['supernet_weights_sha256']}`",
        f"- Checkpoint file SHA-256: `{facts['checkpoint_file_sha256']}`",
        f"- Dense weights SHA-256: `{facts['dense_weights_sha256']}` (`dense.safetensors`, for PyTorch)",
    ]
    if facts["profile"]:
        lines.append(f"- Device profile: `{facts['profile']}`")
    lines.append("- Tools: " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items()))
    return [
        *lines,
        "",
        "## Files",
        "",
        "`model.onnx` (the model; its `metadata_props` repeat these facts), `dense.safetensors` (the same "
        "subnet in s2g's checkpoint format), `manifest.json` (everything above, machine-readable), "
        "`SHA256SUMS` (check with `sha256sum -c SHA256SUMS`).",
        "",
    ]


def _architecture(facts: dict[str, Any]) -> Any:
    from s2g_deploy.models.registry import get_architecture

    return get_architecture(facts["architecture"])


def _title(facts: dict[str, Any]) -> str:
    return _architecture(facts).title


def _shape(shape: list) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _quality_lines(quality: dict | None, subnet: str) -> list[str]:
    """The model card's quality section: the figures at the workload this model is exported for."""
    from s2g_deploy.quality import describe_row

    if not quality:
        return ["The supernet carries no quality measurement for this subnet."]
    label = quality["workload"]["label"]
    data = quality.get("data") or {}
    where = f"{data.get('tracks', '?')} held-out {data.get('kind', '')} tracks".replace("  ", " ")
    lines = []
    if quality["measured"]:
        mixture = describe_row(quality.get("mixture"))
        lines.append(
            f"Measured at this model's workload ({label}) on {where}: "
            f"{describe_row(quality['subnets'][subnet])} (unprocessed mixture: {mixture})."
        )
    else:
        lines.append(
            f"**{quality['note']}.** Whole-clip figure, for reference only: {describe_row(quality['whole_clip'])}."
        )
    for name, split in (quality.get("splits") or {}).items():
        lines.append(f"On the {name} split ({label}): {describe_row(split['subnets'].get(subnet))}.")
    lines.append(
        "uSDR and SI-SDR are means over tracks; cSDR is BSSEval v4 (museval), median over 1-s windows, then over "
        "tracks." + _data_caveat(data.get("kind"))
    )
    return lines


def _limits_lines(data: dict | None, sr: int) -> list[str]:
    """What the model was trained on and what that means it is not."""
    data = data or {}
    rendered = data.get("rendered")
    if data.get("kind") == "synthetic":
        trained = "the built-in synthetic set (tones, clicks and noise): a demonstration, not a music separator"
    elif rendered:
        trained = (
            f"{data.get('tracks', '?')} tracks of General-MIDI songs composed and rendered with FluidSynth by "
            f"`s2g data render` (soundfont {rendered.get('soundfont')}, split {rendered.get('split')}). It is not "
            "a MUSDB18-trained separator and has never heard a recording: expect less on commercial music"
        )
    elif data.get("kind") == "stems":
        trained = f"{data.get('tracks', '?')} tracks of the stems folder `{data.get('root')}`"
    else:
        trained = "data that the checkpoint does not record"
    return [
        f"- Trained on {trained}.",
        (
            f"- Target: `{data['target']}`; everything else is the residual."
            if data.get("target")
            else "- The checkpoint does not record which source it was trained to separate."
        ),
        f"- A {sr / 1000:g} kHz model: nothing above {sr / 2000:g} kHz reaches the target. `s2g separate` "
        f"resamples other rates to {sr} Hz and back, and leaves what lies above {sr / 2000:g} kHz in the residual.",
    ]


def _data_caveat(kind: str | None) -> str:
    if kind == "synthetic":
        return " The data is the built-in synthetic set (tones, clicks, noise): a demonstration, not music."
    if kind == "stems":
        return (
            " Measured on the stems folder named above; if it is rendered General-MIDI music (s2g data render), "
            "it is a proxy for real recordings: compare models with it, do not expect its numbers on commercial music."
        )
    return ""
