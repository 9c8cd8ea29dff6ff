#!/usr/bin/env python
"""Build the int8 DNSMOS P.835 model: ``audiolib/models/dnsmos_sig_bak_ovr_int8.onnx``.

The float ``sig_bak_ovr.onnx`` inside the ``speechmos`` wheel (DNSMOS P.835, Reddy et al., ICASSP
2022) is quantised statically with onnxruntime's quantiser: weights to int8, activations to uint8
with ranges calibrated on representative 9.01 s clips generated here
(:mod:`testing.material.dnsmos`, set ``calibration``: six espeak-ng/flite voices at three
speech levels, clean and with white and pink noise at 30/15/5/-5 dB SNR, recorded music and speech
over a music bed, 60 clips, all through the analyzer's own soxr resampling to 16 kHz).

Usage::

    taskset -c 1 .venv/bin/python scripts/build_dnsmos_int8.py            # (re)build the committed model
    taskset -c 1 .venv/bin/python scripts/build_dnsmos_int8.py --check    # rebuild to a temp file, compare bytes
    taskset -c 1 .venv/bin/python scripts/build_dnsmos_int8.py --explore benchmarks/out/dnsmos_int8

Needs the ``onnx`` package (the ``build`` extra of pyproject.toml; the analyzer runs the result
with OpenVINO alone), espeak-ng, flite and extremetuxracer-data (scripts/setup.sh). The output is byte-for-byte
the same on every rebuild with the same onnxruntime, onnx, speechmos, espeak-ng, flite, FFmpeg
(PyAV) and soxr (``--check`` verifies it).

Graph
-----
The network's first two Conv nodes (``stft-real``, ``stft-imag``) are its STFT (a 320-tap
framed filter bank on the waveform); the log-power spectrogram follows (Mul, Add, Sqrt, Pow, Max,
Log), then the CNN (``conv2d`` .. ``conv2d_6`` with their Relu and MaxPool: 98.6 % of the float
model's time) and three small dense layers. Only the CNN is quantised (scope ``cnn``): its Conv
nodes with the Relu folded into their output range, and the MaxPool nodes, so activations stay
uint8 from the first Conv to the global max pooling. The STFT and the power chain stay float:
quantising the waveform or the power to 8 bits with one range per tensor leaves quiet speech and
background noise, exactly what BAK rates, a few quantisation steps (see ``cnn+stft`` and ``all``
below), and they cost about 1 % of the float time. The dense layers stay float (negligible time).
The pre-processed graph is moved from opset 12 to 13 (per-channel DequantizeLinear needs it for
QDQ; the float outputs are unchanged).

Variants tried (``--explore``; selection set of other voices, texts, SNRs and music)
------------------------------------------------------------------------------------
QOperator vs QDQ format, per-tensor vs per-channel weights, MinMax / Percentile (99.999th, 2048
bins: onnxruntime's defaults) / Entropy (128 bins, its default) calibration; then, for the most accurate
of these, 7-bit weights (``reduce_range``) and the STFT or every node quantised too. The selection
rule: the lowest mean absolute MOS difference to the float model (averaged over SIG, BAK and OVRL)
among the variants at least 2.5x faster than the float model.

Choice
------
``QDQ-perch-Percentile-cnn-7bit-unfold``: QDQ format, per-channel int8 weights reduced to 7 bits
(``reduce_range``), uint8 activations calibrated by the 99.999th percentile, CNN only, the first
Conv unfolded (:func:`unfold_first_conv`), run by OpenVINO (``audiolib.perceptual.OpenVinoSession``).

Until 2026-11-24 the committed model was ``QOperator-perch-Percentile-cnn-7bit`` run by
onnxruntime; the table below is that era's ``--explore`` (onnxruntime timings). onnxruntime 1.32's
wheel does not use this CPU's AMX tiles for int8 (115 GMAC/s on a 4096^3 MatMulInteger, the
VNNI rate; one AMX ``tdpbusd`` loop alone runs 1.7 TMAC/s here), and its profiler put 96 % of the
int8 model's time in QLinearConv. OpenVINO's CPU plugin (oneDNN ``brgconv_avx512_amx_I8``
kernels) runs the same quantised graph in QDQ form (its ONNX reader cannot take QOperator's
per-channel QLinearConv) with the same MOS to 4 decimals on 12 selection clips, within 0.003 on
the 50 of evaluations/eval_dnsmos_int8.py (and, on the selection set, mean |d| to the
float model 0.021/0.027/0.019, max 0.080/0.082/0.048, as in onnxruntime) at 55-79 ms a clip
against 180-195 ms for onnxruntime in the same run. Its profile then showed the first Conv
(one input channel) at 15-16 ms of ~65: oneDNN pads the input channels of an int8 Conv to a
vector; unfolding it into 9 channels brought it to 7 ms, with identical outputs. The 8-bit
weights were no faster in OpenVINO and less accurate (mean 0.033/0.035/0.024, max 0.166), so the
7-bit weights stay. ``--explore`` now builds QDQ variants only and times them in OpenVINO.

Old ``--explore`` on the selection set (32 clips; onnxruntime 1.32, one thread, median of 12 clips
with every model run in turn; float 0.483 s per clip)::

    variant                                KB  s/clip speedup mean|d| SIG   BAK  OVRL max|d| SIG   BAK  OVRL
    QOperator-pertensor-MinMax-cnn        646   0.164    2.94       0.047 0.038 0.030      0.231 0.126 0.119
    QOperator-perch-MinMax-cnn            648   0.161    2.99       0.039 0.036 0.027      0.356 0.175 0.178
    QDQ-pertensor-MinMax-cnn              654   0.161    2.99       0.047 0.038 0.030      0.231 0.126 0.119
    QDQ-perch-MinMax-cnn                  660   0.157    3.08       0.039 0.036 0.027      0.356 0.175 0.178
    QOperator-pertensor-Percentile-cnn    646   0.159    3.04       0.045 0.033 0.027      0.336 0.103 0.148
    QOperator-perch-Percentile-cnn        648   0.172    2.81       0.033 0.035 0.024      0.166 0.099 0.068
    QDQ-pertensor-Percentile-cnn          654   0.162    2.98       0.045 0.033 0.027      0.336 0.103 0.148
    QDQ-perch-Percentile-cnn              660   0.161    3.01       0.033 0.035 0.024      0.166 0.099 0.068
    QOperator-pertensor-Entropy-cnn       646   0.186    2.59       0.049 0.035 0.029      0.356 0.126 0.153
    QOperator-perch-Entropy-cnn           648   0.168    2.88       0.049 0.039 0.027      0.435 0.132 0.154
    QDQ-pertensor-Entropy-cnn             654   0.178    2.71       0.049 0.035 0.029      0.356 0.126 0.153
    QDQ-perch-Entropy-cnn                 660   0.161    3.01       0.049 0.039 0.027      0.435 0.132 0.154
    QOperator-perch-Percentile-cnn-7bit   648   0.173    2.79       0.021 0.027 0.019      0.080 0.082 0.048
    QOperator-perch-MinMax-cnn+stft       349   0.163    2.97       1.613 1.027 0.928      2.378 2.381 2.113
    QOperator-perch-MinMax-all            306   0.178    2.72       1.473 1.375 0.795      2.506 2.739 1.767

- QDQ and QOperator give the same numbers (onnxruntime fuses QDQ into the same QLinearConv
  kernels); their speed differences are within the timing noise of a shared machine (the
  ~0.155-0.19 s spread). QOperator was kept then: the graph is stored already fused (smaller, no
  fusion at load). OpenVINO needs QDQ.
- Per-channel weights and Percentile calibration each lower the error (MinMax ranges are set by
  the rare loudest activation; Entropy was no better than MinMax here).
- 7-bit weights were the most accurate of all (mean 0.02-0.03 MOS, max 0.08), not the least:
  with 8-bit weights and uint8 activations the u8 x s8 kernels can saturate their 16-bit pair
  sums (onnxruntime's quantize_static documentation recommends ``reduce_range`` for CPUs without
  VNNI for that reason), and 7 bits cannot. It is also the portable choice: the same error on a
  CPU without VNNI (this one has VNNI; not measured elsewhere).
- Leaving the CNN's first Conv in float (``cnn-conv1float``; added 2026-11-24, when
  onnxruntime's profiler showed the int8 kernel of that one-channel Conv taking 58 ms a clip
  against 18 ms for the float one) was slower as a whole, not faster: 0.245 against 0.193 s a
  clip in the same ``--explore`` run, where the committed variant measured 0.193 s (2.35x) and
  float 0.453 s; its SIG error was also larger (mean 0.034, max 0.287). The first Conv's float
  output has to be quantised for the next one and changes layout on the way. It stays int8.
  That run's speed-ups were 2.3-2.6x for every CNN variant (the ~0.17-0.19 s spread is timing
  noise on a shared host), so its ">= 2.5x" pick differs by chance; ``CHOSEN`` is fixed here.
- Quantising the STFT as well (``cnn+stft``, 349 KB) or everything (``all``: the waveform's
  Concat and the power's Mul/Add too) wrecks the scores (mean errors of 0.8-1.6 MOS): 8 bits of
  waveform or power cannot hold quiet speech and noise. The float STFT kernels (2 x 161 x 320)
  are 412 KB of the 648 KB file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audiolib.perceptual import DNSMOS_INT8_PATH, dnsmos_float_path, dnsmos_run, dnsmos_session  # noqa: E402
from testing.material import dnsmos as dnsmos_material  # noqa: E402

#: The network's STFT (Conv nodes on the raw waveform), left in float.
STFT_NODES = ("stft-real", "stft-imag")
#: What is quantised. ``cnn``: the CNN's Conv, Relu and MaxPool nodes (not the STFT, the log-power chain
#: or the dense layers); ``cnn+stft``: the STFT's Conv nodes too; ``all``: everything
#: onnxruntime can quantise (its default), including the input's Concat and the power's Mul/Add.
#: ``cnn-conv1float``: the CNN but its first Conv (one input channel: onnxruntime's int8 kernel
#: ran it 3x slower than the float one, 58 against 18 ms a clip, from its profiler).
FIRST_CONV_NODES = ("conv2d", "Relu6")
SCOPES = {"cnn": (["Conv", "Relu", "MaxPool"], list(STFT_NODES)), "cnn+stft": (["Conv", "Relu", "MaxPool"], []),
          "all": (None, []), "cnn-conv1float": (["Conv", "Relu", "MaxPool"], list(STFT_NODES + FIRST_CONV_NODES))}
#: Calibration clips run through the calibration model at once (its outputs are every activation
#: of the network in float, ~360 MB a clip, so one at a time).
CALIBRATION_STRIDE = 1
#: Selection clips every model is timed on (in turn, clip by clip).
TIMING_CLIPS = 12
#: The speed gain a variant needs to be considered (the brief: "at least ~2.5x").
MIN_SPEEDUP = 2.5


@dataclass(frozen=True)
class Variant:
    quant_format: str = "QOperator"  # or "QDQ"
    per_channel: bool = False
    calibrate_method: str = "MinMax"  # MinMax, Percentile, Entropy
    scope: str = "cnn"  # cnn, cnn+stft, all (see SCOPES)
    reduce_range: bool = False
    unfold: bool = False  # the first Conv as a 1x1 Conv over its 9 shifted inputs (unfold_first_conv)

    @property
    def name(self) -> str:
        return (f"{self.quant_format}-{'perch' if self.per_channel else 'pertensor'}-{self.calibrate_method}"
                f"-{self.scope}{'-7bit' if self.reduce_range else ''}{'-unfold' if self.unfold else ''}")


#: The variant committed as audiolib/models/dnsmos_sig_bak_ovr_int8.onnx (see the docstring).
CHOSEN = Variant(quant_format="QDQ", per_channel=True, calibrate_method="Percentile", reduce_range=True, unfold=True)
#: The CNN's first Conv (3x3, one input channel, 128 outputs, padding 1) and its input's size.
FIRST_CONV = "conv2d"
SPECTROGRAM_FRAMES, SPECTROGRAM_BINS = 900, 161


def unfold_first_conv(model):
    """Rewrite the QDQ graph's first Conv (3x3 over one channel) as a 1x1 Conv over 9 channels,
    the 9 shifted copies of its quantised input: the same integer products and sums, so the same
    outputs (checked: identical MOS), but an int8 kernel with 9 input channels instead of one, which
    OpenVINO's oneDNN runs ~2x faster (a one-channel 3x3 int8 Conv pads its channels to a full
    vector). The shifted copies are taken after DequantizeLinear and quantised again with the
    same scale and zero point (exact: they are already on that grid); the padding is 0.0, which
    quantises to the zero point, as the Conv's own zero padding does."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    conv = next(n for n in g.node if n.name == FIRST_CONV)
    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    if attrs["kernel_shape"] != [3, 3] or attrs["pads"] != [1, 1, 1, 1] or attrs.get("strides", [1, 1]) != [1, 1]:
        raise ValueError(f"{FIRST_CONV}: not a 3x3 Conv with padding 1 ({attrs})")
    producer = {o: n for n in g.node for o in n.output}
    quant = producer[producer[conv.input[0]].input[0]]  # input -> QuantizeLinear -> DequantizeLinear -> Conv
    if quant.op_type != "QuantizeLinear":
        raise ValueError(f"{FIRST_CONV}: input not quantised (QDQ format expected)")
    weights = next(i for i in g.initializer if i.name == producer[conv.input[1]].input[0])
    w = numpy_helper.to_array(weights)
    if w.shape[1] != 1:
        raise ValueError(f"{FIRST_CONV}: {w.shape[1]} input channels, 1 expected")
    kh, kw = w.shape[2:]
    # channel i*kw + j of the new input is the input shifted by (i, j): weight [o, 0, i, j]
    weights.CopyFrom(numpy_helper.from_array(w.reshape(w.shape[0], kh * kw, 1, 1), weights.name))
    p = f"{FIRST_CONV}_unfold"
    consts = {f"{p}_pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), f"{p}_zero": np.array(0.0, np.float32),
              f"{p}_axes": np.array([2, 3], np.int64)}
    nodes = [helper.make_node("Pad", [conv.input[0], f"{p}_pads", f"{p}_zero"], [f"{p}_padded"], name=f"{p}_pad",
                              mode="constant")]
    shifted = []
    for i in range(kh):
        for j in range(kw):
            name = f"{p}_{i}{j}"
            consts[f"{name}_starts"] = np.array([i, j], np.int64)
            consts[f"{name}_ends"] = np.array([i + SPECTROGRAM_FRAMES, j + SPECTROGRAM_BINS], np.int64)
            nodes.append(helper.make_node("Slice", [f"{p}_padded", f"{name}_starts", f"{name}_ends", f"{p}_axes"],
                                          [name], name=f"{name}_slice"))
            shifted.append(name)
    nodes += [helper.make_node("Concat", shifted, [f"{p}_concat"], name=f"{p}_concat", axis=1),
              helper.make_node("QuantizeLinear", [f"{p}_concat", quant.input[1], quant.input[2]], [f"{p}_q"],
                               name=f"{p}_quantize"),
              helper.make_node("DequantizeLinear", [f"{p}_q", quant.input[1], quant.input[2]], [f"{p}_dq"],
                               name=f"{p}_dequantize")]
    conv.input[0] = f"{p}_dq"
    for a in conv.attribute:
        if a.name == "kernel_shape":
            a.ints[:] = [1, 1]
        elif a.name == "pads":
            a.ints[:] = [0, 0, 0, 0]
    at = list(g.node).index(conv)
    for k, node in enumerate(nodes):
        g.node.insert(at + k, node)
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    onnx.checker.check_model(model)
    return model


class _Reader:
    """The calibration clips as onnxruntime's CalibrationDataReader, in ranges (``set_range``)."""

    def __init__(self, clips: list[np.ndarray]) -> None:
        self.clips = clips
        self.start, self.end, self.i = 0, len(clips), 0

    def __len__(self) -> int:
        return len(self.clips)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.i = start_index, end_index, start_index

    def get_next(self):
        if self.i >= self.end:
            return None
        x = self.clips[self.i][np.newaxis, :].astype(np.float32)
        self.i += 1
        return {"input_1": x}


def build(variant: Variant, out: str | Path, work: str | Path, calibration: list[np.ndarray]) -> None:
    """Quantise the float model into ``out`` (``work``: a directory for the pre-processed model
    and the calibration caches, shared between variants)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = Path(work)
    pre = work / "pre.onnx"
    if not pre.exists():
        import onnx
        from onnx import version_converter

        # shape inference and graph optimisation; the symbolic pass fails on this graph and is not needed
        quant_pre_process(dnsmos_float_path(), str(work / "pre12.onnx"), skip_symbolic_shape=True)
        # opset 12 -> 13: DequantizeLinear takes per-channel scales (an ``axis``) from opset 13 on,
        # which QDQ with per-channel weights needs; the float outputs are unchanged (checked)
        onnx.save(version_converter.convert_version(onnx.load(str(work / "pre12.onnx")), 13), str(pre))
    op_types, exclude = SCOPES[variant.scope]
    method = getattr(CalibrationMethod, variant.calibrate_method)
    quantize_static(
        str(pre), str(out), _Reader(calibration),
        quant_format=getattr(QuantFormat, variant.quant_format),
        per_channel=variant.per_channel, reduce_range=variant.reduce_range,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        op_types_to_quantize=op_types, nodes_to_exclude=exclude,
        calibrate_method=method,
        # one calibration per method: the activation ranges do not depend on the format or the weights
        calibration_cache_path=str(work / f"ranges-{variant.calibrate_method}-{variant.scope}.json"),
        extra_options={"CalibStridedMinMax": CALIBRATION_STRIDE},  # any method: collect_data per stride
    )
    if variant.unfold:
        import onnx

        onnx.save(unfold_first_conv(onnx.load(str(out))), str(out))


def calibration_clips() -> list[np.ndarray]:
    return [c.audio for c in dnsmos_material.clips("calibration")]


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _runtime(path: str) -> str:
    """The float model runs as shipped, in onnxruntime; every int8 variant in OpenVINO, the
    analyzer's runtime for it."""
    return "onnxruntime" if str(path) == dnsmos_float_path() else "openvino"


def _mos(path: str, clips: list[np.ndarray]) -> np.ndarray:
    """MOS (n, 3) of the clips with the model at ``path`` (one thread, one clip per call)."""
    return dnsmos_run(dnsmos_session(path, _runtime(path)), np.stack(clips))


def _seconds(paths: list[str], clips: list[np.ndarray]) -> list[float]:
    """Median seconds per clip of each model, all run in turn clip by clip."""
    _, seconds = dnsmos_material.alternating_runs([dnsmos_session(p, _runtime(p)) for p in paths], clips)
    return [float(np.median(t)) for t in seconds]


def explore(dest: Path, calibration: list[np.ndarray]) -> Variant:
    """Build every variant into ``dest``, compare them with the float model on the selection set."""
    dest.mkdir(parents=True, exist_ok=True)
    selection = [c.audio for c in dnsmos_material.clips("selection")]
    # QDQ only: OpenVINO's ONNX reader cannot take QOperator's per-channel QLinearConv, and in
    # onnxruntime the two formats gave the same scores (the table in the docstring)
    grid = [Variant("QDQ", pc, m) for m in ("MinMax", "Percentile", "Entropy") for pc in (False, True)]
    ref = _mos(dnsmos_float_path(), selection)

    def accuracy(v: Variant) -> dict:
        path = dest / f"{v.name}.onnx"
        if not path.exists():
            build(v, path, dest, calibration)
        d = np.abs(_mos(str(path), selection) - ref)
        print(f"  built and scored {v.name}", flush=True)
        return dict(variant=v, path=str(path), kb=path.stat().st_size / 1024, mean=d.mean(axis=0), max=d.max(axis=0))

    rows = [accuracy(v) for v in grid]
    # what the most accurate grid variant loses with 7-bit weights, and with the STFT or everything
    # quantised (those two calibrated with MinMax, the cheap calibration: they fail by far anyway)
    top = min(rows, key=lambda r: (float(r["mean"].mean()), float(r["max"].max())))["variant"]
    rows += [accuracy(v) for v in (replace(top, reduce_range=True), replace(top, reduce_range=True, unfold=True),
                                   replace(top, reduce_range=True, scope="cnn-conv1float"),
                                   replace(top, calibrate_method="MinMax", scope="cnn+stft"),
                                   replace(top, calibrate_method="MinMax", scope="all"))]
    t = _seconds([dnsmos_float_path()] + [r["path"] for r in rows], selection[:TIMING_CLIPS])
    for r, s in zip(rows, t[1:], strict=True):
        r["s"], r["speedup"] = s, t[0] / s
    print(f"selection set: {len(selection)} clips; float model {t[0]:.3f} s per clip "
          f"(median of {TIMING_CLIPS}, all models in turn)")
    head = (f"{'variant':44} {'KB':>5} {'s/clip':>7} {'speedup':>7} {'mean|d| SIG':>11} {'BAK':>6} {'OVRL':>6}"
            f" {'max|d| SIG':>10} {'BAK':>6} {'OVRL':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['variant'].name:44} {r['kb']:5.0f} {r['s']:7.3f} {r['speedup']:7.2f} "
              + " ".join(f"{x:{w}.3f}" for x, w in zip(r["mean"], (11, 6, 6), strict=True))
              + " " + " ".join(f"{x:{w}.3f}" for x, w in zip(r["max"], (10, 6, 6), strict=True)))
    fast = [r for r in rows if r["speedup"] >= MIN_SPEEDUP]
    best = min(fast or rows, key=lambda r: (float(r["mean"].mean()), float(r["max"].max())))["variant"]
    print(f"most accurate at >= {MIN_SPEEDUP}x: {best.name}")
    return best


#: The convolution whose inactive output channels the analyzer leaves out (see :func:`inactive_channels`).
PRUNED_CONV, NEXT_CONV = "conv2d_1", "conv2d_2"


def _edge_clips() -> list[np.ndarray]:
    """Inputs at the edges of the range: digital silence, a full-scale square wave, white noise at
    full scale and at -100 dBFS, a full-scale 1 kHz sine, clicks."""
    rng = np.random.default_rng(2022)
    n = dnsmos_material.DNSMOS_WINDOW_SAMPLES
    t = np.arange(n) / 16000.0
    clicks = np.zeros(n, np.float32)
    clicks[::1601] = 1.0
    return [np.zeros(n, np.float32), np.sign(np.sin(2 * np.pi * 250 * t)).astype(np.float32),
            np.clip(rng.standard_normal(n), -1, 1).astype(np.float32),
            (1e-5 * rng.standard_normal(n)).astype(np.float32),
            np.sin(2 * np.pi * 1000 * t).astype(np.float32), clicks]


def inactive_channels(clips: list[np.ndarray]) -> tuple[tuple[int, ...], np.ndarray]:
    """Output channels of the int8 model's ``conv2d_1`` (after its ReLU, quantised: uint8 with zero
    point 0) that are 0 at every position of every clip, and each channel's largest quantised value.

    Such a channel adds exactly 0 to ``conv2d_2``'s integer sums, so the analyzer leaves it out of
    both convolutions (:func:`audiolib.perceptual.prune_dnsmos_channels`): the same outputs with
    ~30 % fewer multiply-adds."""
    import onnx
    from onnx import TensorProto, helper

    from audiolib.speech import onnx_session

    model = onnx.load(DNSMOS_INT8_PATH)
    quant = next(n for n in model.graph.node if n.op_type == "QuantizeLinear"
                 and n.input[0] == next(c for c in model.graph.node if c.name == PRUNED_CONV).output[0])
    model.graph.output.append(helper.make_tensor_value_info(quant.output[0], TensorProto.UINT8, None))
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "probe.onnx")
        onnx.save(model, path)
        session = onnx_session(path, arena=False)
        peak: np.ndarray | None = None
        for x in clips:
            q = session.run([quant.output[0]], {"input_1": x[np.newaxis, :].astype(np.float32)})[0]
            m = q[0].reshape(q.shape[1], -1).max(axis=1)
            peak = m if peak is None else np.maximum(peak, m)
    assert peak is not None, "no clips"
    return tuple(int(c) for c in np.flatnonzero(peak == 0)), peak


def adversarial_peaks(channels: tuple[int, ...], steps: int = 300, starts: int = 512) -> np.ndarray:
    """The largest pre-activation of each of ``channels`` of the float model's ``conv2d_1`` that
    projected gradient ascent finds over its 5x5 patch of the log-power spectrogram, every value
    anywhere in the spectrogram's range (log10 power from -12, the model's floor, to 4.6, a
    full-scale input): how far from active the channel can be pushed by any input at all, natural
    or not (compare with the quantisation step of the int8 model's activation, 0.0456)."""
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(dnsmos_float_path()).graph.initializer}
    k0, b0 = w["conv2d/kernel:0"].reshape(-1, 9), w["conv2d/bias:0"]
    k1, b1 = w["conv2d_1/kernel:0"], w["conv2d_1/bias:0"]
    lo, hi = -12.0, 4.6
    rng = np.random.default_rng(1)
    out = []
    for o in channels:
        x = rng.uniform(lo, hi, (starts, 5, 5))
        for _ in range(steps + 1):
            value = np.full(starts, b1[o])
            grad = np.zeros_like(x)
            for i in range(3):
                for j in range(3):
                    z = x[:, i:i + 3, j:j + 3].reshape(starts, 9) @ k0.T + b0
                    value += np.maximum(z, 0) @ k1[o, :, i, j]
                    grad[:, i:i + 3, j:j + 3] += (((z > 0) * k1[o, :, i, j]) @ k0).reshape(starts, 3, 3)
            x = np.clip(x + 0.3 * np.sign(grad), lo, hi)
        out.append(float(value.max()))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DNSMOS_INT8_PATH, help="output model (default: the committed one)")
    ap.add_argument("--check", action="store_true", help="rebuild to a temporary file and compare with --out")
    ap.add_argument("--explore", metavar="DIR", default=None,
                    help="build every variant into DIR and compare them on the selection set")
    ap.add_argument("--inactive", action="store_true",
                    help=f"list {PRUNED_CONV}'s output channels that are 0 on every clip of every set "
                         "(and edge inputs)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.inactive:
        clips = [c.audio for which in dnsmos_material.SETS for c in dnsmos_material.clips(which)] + _edge_clips()
        channels, peak = inactive_channels(clips)
        from audiolib.perceptual import DNSMOS_INACTIVE_CHANNELS

        print(f"{PRUNED_CONV}: {len(channels)} of {peak.size} output channels are 0 on all {len(clips)} clips "
              f"(the three sets and {len(_edge_clips())} edge inputs): {channels}")
        print(f"the other channels' smallest peak: {int(np.min(np.delete(peak, channels)))} quantisation steps")
        adv = adversarial_peaks(channels)
        print(f"largest pre-activation gradient ascent reaches on them: {adv.max():.3f} "
              f"(mean {adv.mean():.3f}); audiolib.perceptual.DNSMOS_INACTIVE_CHANNELS "
              f"{'matches' if channels == DNSMOS_INACTIVE_CHANNELS else 'DIFFERS'}")
        return 0 if channels == DNSMOS_INACTIVE_CHANNELS else 1
    calibration = calibration_clips()
    if args.explore:
        explore(Path(args.explore), calibration)
        return 0
    with tempfile.TemporaryDirectory(prefix="dnsmos-int8-") as work:
        target = Path(work) / "model.onnx" if args.check else Path(args.out)
        target.parent.mkdir(parents=True, exist_ok=True)
        build(CHOSEN, target, work, calibration)
        print(f"{CHOSEN.name}: {target.stat().st_size} bytes, sha256 {sha256(target)} "
              f"({time.perf_counter() - t0:.0f} s)")
        if args.check:
            same = Path(args.out).exists() and sha256(target) == sha256(args.out)
            print(f"{args.out}: {'identical' if same else 'DIFFERENT'}")
            return 0 if same else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
