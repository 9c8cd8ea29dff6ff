#!/usr/bin/env python3
"""Where a full diagnose spends its time: the decode pass of ``audiolib.diagnose`` run in this
process with a clock around every analyzer's ``push`` and ``result``, the decoder, and the parts of
the perceptual analyzer (DNSMOS, the VAD, the music detector, the speech events).

The README's "where the hour goes" table comes from this script, on bench_perceptual's 1-hour
programme (generated if missing). The clocks add a little overhead (~1 %); the shares, not the
sum, are the point. Timings are printed, never asserted.

    taskset -c 0 .venv/bin/python -m benchmarks.profile_diagnose [--minutes 60] [--programme mixed|talk]
        [--isa native|avx2] [--block-frames N] [--json OUT]

``--isa avx2`` runs the profile in a process that sees an AVX2-only CPU (benchmarks/isa.py: CPUID
masked; the header says so).

``--models`` adds, after the profile, where the two networks spend their time, node by node as
OpenVINO's CPU plugin reports it (``PERF_COUNT``): the Silero VAD's sequence network on a chunk of
1024 frames and the int8 DNSMOS on one window, each as the analyzer compiles it, with the kernel
each node ran in (``brgconv_avx512_I8``: oneDNN's vectorised int8 convolution; ``ref_*``: a
reference implementation). This says how much of each network is left to gain in its runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

t_start = time.perf_counter()

import numpy as np  # noqa: E402

import audiolib.music as music  # noqa: E402
import audiolib.perceptual as perceptual  # noqa: E402
import audiolib.speech as speech  # noqa: E402
import audiolib.speech_events as speech_events  # noqa: E402
from audiolib import diagnose as D  # noqa: E402
from audiolib import io  # noqa: E402
from benchmarks.bench_perceptual import HERE, ensure_programme  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import header  # noqa: E402

t_imports = time.perf_counter() - t_start
SECONDS: defaultdict[str, float] = defaultdict(float)


def _clocked(owner: Any, name: str, key: str) -> None:
    """Replace ``owner.name`` by a wrapper that adds its wall time to SECONDS[key]."""
    inner: Callable = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            SECONDS[key] += time.perf_counter() - t

    setattr(owner, name, wrapper)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=HERE / "out")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--programme", default="mixed", help="bench_perceptual's programme: mixed or talk")
    ap.add_argument("--isa", default="native", help="native, avx2 or avx512 (benchmarks/isa.py)")
    ap.add_argument("--models", action="store_true",
                    help="also print the VAD's and DNSMOS's time node by node (OpenVINO's performance counters)")
    ap.add_argument("--block-frames", type=int, default=io.DEFAULT_BLOCK_FRAMES,
                    help=f"frames per decoded block (default io.DEFAULT_BLOCK_FRAMES = {io.DEFAULT_BLOCK_FRAMES})")
    args = ap.parse_args(argv)
    if args.isa != "native" and os.environ.get("AQ_ISA_LIMIT") != args.isa:
        from benchmarks import isa

        os.execve(sys.executable, [sys.executable, "-m", "benchmarks.profile_diagnose", *sys.argv[1:]],
                  isa.env(args.isa))
    from audiolib.cpu import isa_level

    print(header("profile_diagnose: where a diagnose spends its time")
          + f"; the process sees {isa_level()}{' (emulated: benchmarks/isa.py)' if args.isa != 'native' else ''}",
          flush=True)
    path = str(ensure_programme(args.workdir, args.minutes, args.programme))
    # the perceptual analyzer's parts (it calls them; their time is inside its own push)
    _clocked(perceptual, "dnsmos_p835", "  DNSMOS P.835 (int8)")
    _clocked(speech.VoiceActivity, "push", "  Silero VAD (with its 16 -> 8 kHz resampling)")
    _clocked(music.MusicDetector, "push", "  music detector")
    _clocked(speech_events.SpeechEventDetector, "push", "  speech events")
    requested = D.parse_blocks(None)
    options = D.DiagnoseOptions()
    t0 = time.perf_counter()
    with io.stream(path, block_frames=args.block_frames) as s:
        shared: D.Shared = {}
        analyzers = {n: D.ANALYZERS[n](s, options, shared, requested) for n in requested if n in D.ANALYZERS}
        pushed = [(n, a) for n, a in analyzers.items() if not isinstance(a, D._View)] + list(shared.items())
        blocks = iter(s)
        while True:
            t = time.perf_counter()
            try:
                block = next(blocks)
            except StopIteration:
                break
            SECONDS["decode"] += time.perf_counter() - t
            for name, analyzer in pushed:
                t = time.perf_counter()
                analyzer.push(block)
                SECONDS[name] += time.perf_counter() - t
        for analyzer in analyzers.values():
            t = time.perf_counter()
            analyzer.result()
            SECONDS["results (all blocks)"] += time.perf_counter() - t
    total = time.perf_counter() - t0
    parts = ("  DNSMOS P.835 (int8)", "  Silero VAD (with its 16 -> 8 kHz resampling)", "  music detector",
             "  speech events")
    SECONDS["  downmix, 48 -> 16 kHz resampling, frame levels"] = SECONDS["perceptual"] - sum(SECONDS[p] for p in parts)
    duration_s = args.minutes * 60.0
    print(f"=== full diagnose of {path} in blocks of {args.block_frames} frames: {total:.2f} s in the decode pass "
          f"({duration_s / total:.0f}x realtime), imports {t_imports:.2f} s ===")
    rows = sorted(((k, v) for k, v in SECONDS.items() if not k.startswith("  ")), key=lambda kv: -kv[1])
    for key, value in rows:
        print(f"{value:7.2f} s  {100 * value / total:5.1f} %  {key}")
        if key == "perceptual":
            for sub, sv in sorted(((k, v) for k, v in SECONDS.items() if k.startswith("  ")), key=lambda kv: -kv[1]):
                print(f"{sv:7.2f} s  {100 * sv / total:5.1f} %  {sub}")
    nodes = profile_models() if args.models else None
    if args.json:
        args.json.write_text(json.dumps({"file": path, "total_s": total, "imports_s": t_imports,
                                         "seconds": {k.strip(): v for k, v in SECONDS.items()},
                                         "model_nodes": nodes}, indent=2))
    return 0


def _node_times(model: bytes | str, feeds: dict[str, np.ndarray], precision: str = "f32",
                rounds: int = 20) -> tuple[float, list[tuple[str, str, str, float]]]:
    """Seconds a call (mean of ``rounds`` after warm-up) of ``model`` compiled as the analyzer
    compiles it (speech.OpenVinoSession's settings) with performance counters on, and the last
    call's nodes: (name, type, kernel, seconds)."""
    import io as _io

    core = speech.import_openvino().Core()
    source = _io.BytesIO(model) if isinstance(model, bytes) else model
    config = dict(speech.OpenVinoSession.CONFIG, INFERENCE_PRECISION_HINT=precision, PERF_COUNT=True)
    request = core.compile_model(core.read_model(source), "CPU", config).create_infer_request()
    for _ in range(3):
        request.infer(feeds)
    t = time.perf_counter()
    for _ in range(rounds):
        request.infer(feeds)
    per_call = (time.perf_counter() - t) / rounds
    nodes = [(p.node_name, p.node_type, p.exec_type, p.real_time.total_seconds())
             for p in request.get_profiling_info() if p.real_time.total_seconds() > 0]
    return per_call, nodes


def conv_macs(model: bytes) -> dict[str, int]:
    """Multiply-adds of each ``Conv`` node of a model whose shapes are static apart from a batch of
    one (ONNX shape inference): output positions x output channels x input channels per group x
    kernel size."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load_from_string(model))
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    weights = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    out: dict[str, int] = {}
    for node in m.graph.node:
        if node.op_type != "Conv" or node.output[0] not in shapes:
            continue
        w = weights.get(node.input[1])
        if w is None:  # weights computed in the graph (the int8 model's dequantised kernels)
            producer = next((n for n in m.graph.node if n.output[0] == node.input[1]), None)
            w = weights.get(producer.input[0]) if producer is not None else None
        if w is None:
            continue
        y = shapes[node.output[0]]
        out[node.name] = int(np.prod(y[2:])) * int(np.prod(w))  # positions x (out x in/group x kernel)
    return out


def profile_models() -> dict[str, Any]:
    """Print and return where the VAD's and DNSMOS's calls go, node by node."""
    rng = np.random.default_rng(0)
    chunk = speech.CHUNK_FRAMES
    vad_feeds = {"frames": (0.05 * rng.standard_normal((chunk, 1, speech.FRAME_SAMPLES + speech.CONTEXT_SAMPLES)))
                 .astype(np.float32), "state": np.zeros((2, 1, speech.LSTM_HIDDEN), np.float32)}
    plan = perceptual.dnsmos_plan()
    dnsmos_feeds = {"input_1": (0.05 * rng.standard_normal((1, perceptual.DNSMOS_WINDOW_SAMPLES))).astype(np.float32)}
    cases = {
        f"Silero VAD sequence network, a chunk of {chunk} frames ({chunk * speech.FRAME_S:.1f} s)":
            (speech.silero_vad_8k_sequence_model(), vad_feeds, "f32"),
        "DNSMOS P.835 int8 (pruned), one 9.01 s window":
            (perceptual.prune_dnsmos_channels(perceptual.DNSMOS_INT8_PATH), dnsmos_feeds, plan["precision"]),
    }
    out: dict[str, Any] = {}
    for title, (model, feeds, precision) in cases.items():
        per_call, nodes = _node_times(model, feeds, precision)
        total = sum(n[3] for n in nodes)
        print(f"=== {title}: {per_call * 1e3:.2f} ms a call (OpenVINO, one thread, {precision}); "
              f"nodes sum to {total * 1e3:.2f} ms ===")
        for name, kind, kernel, sec in sorted(nodes, key=lambda n: -n[3])[:8]:
            print(f"{sec * 1e3:8.3f} ms  {100 * sec / total:5.1f} %  {kind:<14} {kernel:<26} {name[-60:]}")
        out[title] = {"ms_per_call": per_call * 1e3,
                      "nodes": [{"name": n, "type": k, "kernel": e, "ms": s * 1e3} for n, k, e, s in nodes]}
        if "DNSMOS" in title:  # static shapes: how fast its convolutions multiply-add
            macs = conv_macs(model)
            conv_s = sum(sec for _, kind, _, sec in nodes if kind == "Convolution")
            print(f"   its convolutions: {sum(macs.values()) / 1e9:.2f} G multiply-adds a window in "
                  f"{conv_s * 1e3:.1f} ms: {sum(macs.values()) / conv_s / 1e9:.0f} G multiply-adds a second "
                  f"({', '.join(f'{k} {v / 1e9:.2f} G' for k, v in sorted(macs.items(), key=lambda kv: -kv[1])[:4])})")
            out[title]["conv_gmacs"] = sum(macs.values()) / 1e9
            out[title]["conv_gmacs_per_s"] = sum(macs.values()) / conv_s / 1e9
    return out


if __name__ == "__main__":
    sys.exit(main())
