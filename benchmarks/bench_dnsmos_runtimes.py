#!/usr/bin/env python3
"""DNSMOS P.835 per window on each instruction-set level: runtimes, precisions, batching, pruning.

The evidence behind :data:`audiolib.perceptual.DNSMOS_PLANS` (the runtime, precision and batch the
analyzer picks from the level the CPU reports). For each level asked for (``--levels``: this CPU's
own, and AVX2 emulated by ``benchmarks/isa.py``), one child process pinned to CPU 0, one thread,
runs every configuration below on the same 9.01 s windows (the first minutes of bench_perceptual's
talk programme), the configurations in turn window by window so that load from other processes
hits them alike, after a warm-up; printed: the median seconds per window, the ratio to the
analyzer's configuration, and the largest MOS difference to the whole int8 model in OpenVINO.

* the analyzer's: the int8 model without its inactive ``conv2d_1`` channels
  (:func:`audiolib.perceptual.prune_dnsmos_channels`) in OpenVINO, float parts in f32, one window a call;
* the same model whole (as before issue 19), in OpenVINO and in onnxruntime;
* the pruned model in onnxruntime; in OpenVINO with 4 windows a call; with bf16 float parts
  (where the CPU has BF16);
* the float model as shipped, in onnxruntime (``--quality-model float``) and in OpenVINO.

Timings are printed, never asserted.

    .venv/bin/python -m benchmarks.bench_dnsmos_runtimes [--levels native,avx2] [--windows 12] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import isa  # noqa: E402
from benchmarks.harness import header, print_table  # noqa: E402

ANALYZER = "OpenVINO int8 pruned (analyzer)"


def _windows(n: int) -> np.ndarray:
    from audiolib import io
    from audiolib.perceptual import DNSMOS_WINDOW_S, DNSMOS_WINDOW_SAMPLES
    from audiolib.speech import INPUT_RATE_HZ, resampler
    from benchmarks.bench_perceptual import HERE, ensure_programme

    parts = []
    with io.stream(str(ensure_programme(HERE / "out", 60.0, "talk")), end=n * DNSMOS_WINDOW_S + 1) as s:
        rs = resampler(s.sample_rate, INPUT_RATE_HZ)
        for block in s:
            parts.append(rs.resample_chunk(np.ascontiguousarray(block.mean(axis=0, dtype=np.float32))))
    y = np.concatenate(parts)[: n * DNSMOS_WINDOW_SAMPLES]
    return y.reshape(n, DNSMOS_WINDOW_SAMPLES).astype(np.float32)


def child(n: int) -> dict:
    from audiolib.cpu import cpu_features, isa_level
    from audiolib.perceptual import (
        DNSMOS_INT8_PATH,
        dnsmos_float_path,
        dnsmos_mos,
        dnsmos_session,
        prune_dnsmos_channels,
    )
    from audiolib.speech import OpenVinoSession, onnx_session

    x = _windows(n)
    pruned = prune_dnsmos_channels(DNSMOS_INT8_PATH)
    configs = {
        ANALYZER: (OpenVinoSession(pruned), 1),
        "OpenVINO int8 whole": (OpenVinoSession(DNSMOS_INT8_PATH), 1),
        "onnxruntime int8 pruned": (onnx_session(pruned, arena=False), 1),
        "onnxruntime int8 whole": (onnx_session(DNSMOS_INT8_PATH, arena=False), 1),
        "OpenVINO int8 pruned, 4 windows a call": (OpenVinoSession(pruned), 4),
    }
    if cpu_features()["avx512_bf16"] or cpu_features()["amx"]:
        configs["OpenVINO int8 pruned, bf16 float parts"] = (OpenVinoSession(pruned, precision="bf16"), 1)
    configs["onnxruntime float (as shipped)"] = (dnsmos_session(dnsmos_float_path(), "onnxruntime"), 1)
    configs["OpenVINO float f32"] = (OpenVinoSession(dnsmos_float_path()), 1)
    seconds: dict[str, list[float]] = {k: [] for k in configs}
    mos: dict[str, list[np.ndarray]] = {k: [] for k in configs}
    for session, b in configs.values():
        session.run(None, {"input_1": x[:b]})
    for i in range(0, n, 4):
        for name, (session, b) in configs.items():
            for j in range(i, min(i + 4, n), b):
                t0 = time.perf_counter()
                out = session.run(None, {"input_1": x[j:j + b]})[0]
                seconds[name].append((time.perf_counter() - t0) / out.shape[0])
                mos[name].append(dnsmos_mos(out))
    ref = np.concatenate(mos["OpenVINO int8 whole"])
    return {"isa": isa_level(), "features": cpu_features(), "windows": n,
            "s_per_window": {k: float(np.median(v)) for k, v in seconds.items()},
            "max_abs_mos_vs_whole_int8": {k: float(np.abs(np.concatenate(v) - ref).max()) for k, v in mos.items()
                                          if "int8" in k}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--levels", default="native,avx2", help=f"comma-separated, of {', '.join(isa.LEVELS)}")
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.windows)))
        return 0
    from audiolib.perceptual import dnsmos_plan

    print(header("bench_dnsmos_runtimes: DNSMOS P.835 per 9.01 s window, one thread"), flush=True)
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    results = {}
    for level in args.levels.split(","):
        print(f"  {level}: {isa.describe(level)}", flush=True)
        out = subprocess.run(pin + [sys.executable, "-m", "benchmarks.bench_dnsmos_runtimes", "--child",
                                    "--windows", str(args.windows)],
                             env=isa.env(level), capture_output=True, text=True, cwd=str(isa.HERE.parent))
        if out.returncode != 0:
            print(out.stderr[-2000:])
            return 1
        results[level] = json.loads(out.stdout.strip().splitlines()[-1])
    for level, r in results.items():
        plan = dnsmos_plan(r["isa"])
        base = r["s_per_window"][ANALYZER]
        print(f"\n=== {r['isa']} ({level}; {isa.describe(level).split(' (')[0]}), median of {r['windows']} windows; "
              f"the plan for {r['isa']}: {plan['runtime']}, {plan['precision']}, {plan['batch']} a call ===")
        rows = [[name, f"{s:.3f}", f"{s / base:.2f}", f"{r['max_abs_mos_vs_whole_int8'].get(name, float('nan')):.4f}"]
                for name, s in r["s_per_window"].items()]
        print_table(["configuration", "s/window", "x analyzer", "max|dMOS| vs whole int8 OpenVINO"], rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
