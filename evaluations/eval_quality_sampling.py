#!/usr/bin/env python3
"""Scoring a sample of a file's DNSMOS windows against scoring every one of them.

Since issue 19 a file is scored on at most ``quality_windows`` (default
:data:`audiolib.perceptual.DEFAULT_QUALITY_WINDOWS`) of its 9.01 s windows: every ``k``-th speech
window, ``k = ceil(windows of the file / quality_windows)`` (:func:`audiolib.perceptual.sample_stride`).
This script measures what that changes. Each file below is analysed once with every speech window
scored (the analyzer with ``quality_windows=None``, the int8 model as the analyzer runs it); the
sampled results are then computed from the same window scores for each cap (``--caps``) and for
every one of the ``k`` phases of the systematic sample (the rule takes phase 0; the other phases
show the spread a file's content could give: a sample that starts one speech window later):

``mixed 60 min``, ``talk 60 min``
    bench_perceptual's programmes (espeak-ng speech, recorded music, speech over music, room noise;
    ~50 % and ~76 % speech), 10-minute cycles.
``varying noise 60 min``
    the talk programme's first 10 minutes six times over, with white or pink noise whose SNR changes
    every 3 minutes (clean, 30, 20, 10, 5, 0 dB, in a seeded order): quality that changes along the file.
``held-out clips 60 min``
    400 windows, each one of the 50 clips of testing/material/dnsmos.py's evaluation set (voices,
    noises and SNRs the int8 model was neither calibrated nor selected on), drawn at random: no two
    neighbouring windows alike, the hardest case for a sample.

and the first 10 and 20 minutes of each. Printed per file and cap: the stride, the windows scored,
the quality and noise averages with every window and with the sample (phase 0), the largest and
the RMS difference over every phase, and the worst window with every window against the sample's.
Nothing is asserted; the window scores are cached in ``--workdir`` (``--fresh`` recomputes them).

    taskset -c 0 .venv/bin/python -m evaluations.eval_quality_sampling [--caps 32,48,64,96,128] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiolib.perceptual import (
    DEFAULT_QUALITY_WINDOWS,
    DNSMOS_WINDOW_S,
    PerceptualAnalyzer,
    file_windows,
    mos_to_score,
    sample_stride,
)
from audiolib.speech import INPUT_RATE_HZ  # noqa: E402
from benchmarks.bench_perceptual import HERE, ensure_programme  # noqa: E402
from benchmarks.harness import header, print_table  # noqa: E402
from testing.material import dnsmos as dnsmos_material  # noqa: E402
from testing.material.media import with_noise  # noqa: E402

MINUTES = 60.0
SNR_STEPS_DB = (None, 30.0, 20.0, 10.0, 5.0, 0.0)
STEP_S = 180.0
SEED = 1919
EXCERPTS_MIN = (10.0, 20.0)


def _analyse(y: np.ndarray) -> dict:
    """Every speech window's MOS of 16 kHz mono ``y`` (the analyzer, every window scored)."""
    a = PerceptualAnalyzer(INPUT_RATE_HZ, ["M"], events=False, music=False, quality_windows=None)
    step = 1 << 18
    for i in range(0, y.size, step):
        a.push(y[np.newaxis, i:i + step])
    idx, mos = a.window_scores()
    return {"seconds": y.size / INPUT_RATE_HZ, "index": idx.tolist(), "mos": mos.tolist()}


def _material() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for kind in ("mixed", "talk"):
        out[f"{kind} 60 min"] = dnsmos_material.to_16k_mono(str(ensure_programme(HERE / "out", MINUTES, kind)))
    talk = out["talk 60 min"]
    ten = talk[: int(600 * INPUT_RATE_HZ)]
    rng = np.random.default_rng(SEED)
    parts = []
    step = int(STEP_S * INPUT_RATE_HZ)
    for k in range(int(MINUTES * 60 / STEP_S)):
        seg = np.resize(np.roll(ten, -k * step)[:step], step)
        snr = SNR_STEPS_DB[rng.integers(len(SNR_STEPS_DB))]
        kind = ("white", "pink")[k % 2]
        parts.append(seg if snr is None else with_noise(seg, kind, snr, rng))
    out["varying noise 60 min"] = np.concatenate(parts).astype(np.float32)
    clips = [c.audio for c in dnsmos_material.clips("evaluation")]
    n = int(MINUTES * 60 / DNSMOS_WINDOW_S)
    pick = rng.integers(len(clips), size=n)
    out["held-out clips 60 min"] = np.concatenate([clips[i] for i in pick]).astype(np.float32)
    return out


def _scores(idx: np.ndarray, mos: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quality and noise scores (0-10) of the windows and their durations (a last partial window
    weighs its real length, as the analyzer does)."""
    dur = np.full(idx.size, DNSMOS_WINDOW_S)
    whole = int(seconds // DNSMOS_WINDOW_S)
    dur[idx == whole] = seconds - whole * DNSMOS_WINDOW_S
    return mos_to_score(mos[:, 2]), mos_to_score(mos[:, 1]), dur


def _compare(idx: np.ndarray, mos: np.ndarray, seconds: float, cap: int) -> dict:
    q, nz, dur = _scores(idx, mos, seconds)
    k = sample_stride(seconds, cap)
    full = {"quality": float(np.sum(q * dur) / dur.sum()), "noise": float(np.sum(nz * dur) / dur.sum()),
            "worst": float(q.min())}
    rank = np.arange(idx.size)
    phases = []
    for r in range(k):
        m = rank % k == r
        if not m.any():
            continue
        phases.append({"quality": float(np.sum(q[m] * dur[m]) / dur[m].sum()),
                       "noise": float(np.sum(nz[m] * dur[m]) / dur[m].sum()), "worst": float(q[m].min()),
                       "windows": int(m.sum())})
    d = {key: np.array([p[key] - full[key] for p in phases]) for key in ("quality", "noise", "worst")}
    return {"cap": cap, "stride": k, "windows_all": int(idx.size), "windows_scored": phases[0]["windows"],
            "full": full, "sampled": phases[0],
            "max_abs": {key: float(np.abs(v).max()) for key, v in d.items()},
            "rms": {key: float(np.sqrt(np.mean(v ** 2))) for key, v in d.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--caps", default="32,48,64,96,128")
    ap.add_argument("--workdir", type=Path, default=HERE / "out")
    ap.add_argument("--fresh", action="store_true", help="recompute the cached window scores")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    print(header("eval_quality_sampling: a sample of the DNSMOS windows against every window"), flush=True)
    caps = [int(c) for c in args.caps.split(",")]
    cache = args.workdir / "quality_sampling_windows.json"
    if cache.exists() and not args.fresh:
        windows = json.loads(cache.read_text())
    else:
        windows = {}
        for name, y in _material().items():
            print(f"  scoring every speech window of {name} ...", flush=True)
            windows[name] = _analyse(y)
        args.workdir.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(windows))
    results = []
    rows = []
    for name, w in windows.items():
        idx, mos = np.asarray(w["index"], np.int64), np.asarray(w["mos"], np.float64).reshape(-1, 3)
        spans = [(name, w["seconds"])]
        spans += [(name.replace("60 min", f"first {m:g} min"), m * 60.0) for m in EXCERPTS_MIN]
        for label, seconds in spans:
            keep = idx < file_windows(seconds) if seconds < w["seconds"] else np.ones(idx.size, bool)
            for cap in caps:
                r = _compare(idx[keep], mos[keep], seconds, cap)
                r["file"] = label
                results.append(r)
                rows.append([label, str(cap), str(r["stride"]), f"{r['windows_scored']}/{r['windows_all']}",
                             f"{r['full']['quality']:.2f}", f"{r['sampled']['quality']:.2f}",
                             f"{r['max_abs']['quality']:.2f}",
                             f"{r['rms']['quality']:.2f}", f"{r['full']['noise']:.2f}", f"{r['sampled']['noise']:.2f}",
                             f"{r['max_abs']['noise']:.2f}", f"{r['rms']['noise']:.2f}",
                             f"{r['full']['worst']:.2f}/{r['sampled']['worst']:.2f}"])
    print(f"\nquality and noise scores (0-10): every speech window against the sample (phase 0: the rule), and the "
          f"largest / RMS difference over every phase of the sample; default cap {DEFAULT_QUALITY_WINDOWS}")
    print_table(["file", "cap", "stride", "scored", "quality all", "sample", "max|d|", "rms", "noise all", "sample",
                 "max|d|", "rms", "worst all/sample"], rows)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
