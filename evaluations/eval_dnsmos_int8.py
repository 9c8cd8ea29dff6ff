"""The int8 DNSMOS P.835 model against the float one: accuracy, the noise trend, speed.

Usage::

    taskset -c 1 .venv/bin/python -m evaluations.eval_dnsmos_int8 [--json OUT]

1. Per clip, on the ``evaluation`` set of :mod:`testing.material.dnsmos` (voices, texts, noise
   seeds, SNRs, levels and music files that neither the calibration nor the variant selection of
   ``scripts/build_dnsmos_int8.py`` used; 50 clips of 9.01 s): the MOS differences int8 - float
   for SIG, BAK and OVRL (mean signed, mean absolute, max absolute) and for the 0-10 scores the
   analyzer reports (``quality_score`` from OVRL, ``noise_score`` from BAK), overall and per kind
   of clip.
2. The noise trend through the analyzer (:class:`audiolib.perceptual.PerceptualAnalyzer`, VAD and
   window selection included) with each model: 36 s of the evaluation voices, clean and with white
   and pink noise at 20, 10 and 0 dB SNR; the quality and noise scores must fall monotonically.
3. Speed: both models in this process (the int8 one in OpenVINO, as the analyzer runs it, and
   also in onnxruntime), one thread, one clip per call, alternating clip by clip so that load from
   other processes hits them alike; the median seconds per clip and the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TypedDict

import numpy as np

from audiolib.perceptual import (
    DNSMOS_INT8_PATH,
    DNSMOS_WINDOW_S,
    QUALITY_MODELS,
    PerceptualAnalyzer,
    _dnsmos_session,
    dnsmos_mos,
    dnsmos_session,
    mos_to_score,
)
from audiolib.speech import INPUT_RATE_HZ
from testing.material import dnsmos as dnsmos_material
from testing.material.media import with_noise

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import header  # noqa: E402

TREND_SECONDS = 36.0
TREND_SNRS_DB = (20.0, 10.0, 0.0)
TREND_NOISE_SEED = 303
COLUMNS = ("SIG", "BAK", "OVRL", "quality", "noise")


#: The int8 model in onnxruntime (its runtime until 2026-11-24), timed alongside: the analyzer runs
#: it in OpenVINO.
INT8_ONNXRUNTIME = "int8 in onnxruntime"


def _per_clip(clips: list[dnsmos_material.Clip]) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """MOS (n, 3) per model (and of the int8 model in onnxruntime), and the seconds per call,
    all alternating clip by clip."""
    names = list(QUALITY_MODELS) + [INT8_ONNXRUNTIME]
    sessions = [_dnsmos_session(m) for m in QUALITY_MODELS] + [dnsmos_session(DNSMOS_INT8_PATH, "onnxruntime")]
    raw, seconds = dnsmos_material.alternating_runs(sessions, [c.audio for c in clips])
    return ({m: dnsmos_mos(r) for m, r in zip(names, raw, strict=True)}, dict(zip(names, seconds, strict=True)))


def _with_scores(mos: np.ndarray) -> np.ndarray:
    """(n, 5): SIG, BAK, OVRL MOS, then the quality (OVRL) and noise (BAK) scores 0-10."""
    return np.column_stack((mos, mos_to_score(mos[:, 2]), mos_to_score(mos[:, 1])))


def _stats(diff: np.ndarray) -> dict[str, dict[str, float]]:
    return {col: {"mean": float(diff[:, k].mean()), "mean_abs": float(np.abs(diff[:, k]).mean()),
                  "max_abs": float(np.abs(diff[:, k]).max())} for k, col in enumerate(COLUMNS)}


def _trend_speech() -> np.ndarray:
    """TREND_SECONDS of the evaluation voices, 16 kHz (their clean clips in turn)."""
    clean = [c.audio for c in dnsmos_material.clips("evaluation") if c.kind == "speech" and c.noise == "none"]
    y = np.concatenate([c / np.max(np.abs(c)) * 0.5 for c in clean])
    return np.resize(y, int(TREND_SECONDS * INPUT_RATE_HZ)).astype(np.float32)


def _analyse(y: np.ndarray, model: str) -> tuple[float, float]:
    a = PerceptualAnalyzer(INPUT_RATE_HZ, ["M"], events=False, music=False, quality_model=model)
    for i in range(0, y.size, 1 << 16):
        a.push(y[np.newaxis, i:i + (1 << 16)])
    r = a.results()
    quality, noise = r.quality.average, r.noise.average
    if quality is None or noise is None:
        raise RuntimeError(f"{model}: no quality or noise average over {y.size / INPUT_RATE_HZ:g} s of speech")
    return quality, noise


class _Trend(TypedDict):
    quality: list[float]
    noise: list[float]
    monotonic: bool


def trend() -> dict[str, _Trend]:
    clean = _trend_speech()
    out: dict[str, _Trend] = {}
    for kind in ("white", "pink"):
        rng = np.random.default_rng(TREND_NOISE_SEED)
        signals = [clean] + [with_noise(clean, kind, snr, rng) for snr in TREND_SNRS_DB]
        for m in QUALITY_MODELS:
            q, n = zip(*(_analyse(y, m) for y in signals), strict=True)
            out[f"{kind} {m}"] = {"quality": list(q), "noise": list(n),
                                  "monotonic": bool(list(q) == sorted(q, reverse=True)
                                                    and list(n) == sorted(n, reverse=True))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)
    print(header("eval_dnsmos_int8: int8 DNSMOS against the float model"), flush=True)
    clips = dnsmos_material.clips("evaluation")
    mos, seconds = _per_clip(clips)
    runtimes_max_abs_mos = float(np.abs(mos["int8"] - mos[INT8_ONNXRUNTIME]).max())
    full = {m: _with_scores(v) for m, v in mos.items() if m in QUALITY_MODELS}
    diff = full["int8"] - full["float"]
    groups = {"all clips": np.ones(len(clips), bool)}
    for label, pick in (("clean speech", lambda c: c.kind == "speech" and c.noise == "none"),
                        ("speech + white noise", lambda c: c.noise == "white"),
                        ("speech + pink noise", lambda c: c.noise == "pink"),
                        ("speech over music", lambda c: c.kind == "speech+music"),
                        ("music", lambda c: c.kind == "music")):
        groups[label] = np.array([pick(c) for c in clips])
    result: dict = {"clips": len(clips), "accuracy": {}, "per_clip": [], "trend": {}, "speed": {}}
    print(f"int8 - float on the evaluation set ({len(clips)} clips of 9.01 s): MOS (1-5) and scores (0-10)")
    head = f"{'clips':22} {'n':>3}  " + "  ".join(f"{c + ' mean|d| max|d|':>22}" for c in COLUMNS)
    print(head)
    print("-" * len(head))
    for label, mask in groups.items():
        st = _stats(diff[mask])
        result["accuracy"][label] = {"n": int(mask.sum()), **st}
        print(f"{label:22} {int(mask.sum()):3d}  "
              + "  ".join(f"{st[c]['mean_abs']:>14.3f} {st[c]['max_abs']:7.3f}" for c in COLUMNS))
    st = result["accuracy"]["all clips"]
    print("mean signed difference (bias), all clips: "
          + ", ".join(f"{c} {st[c]['mean']:+.3f}" for c in COLUMNS))
    for c, f, q in zip(clips, full["float"], full["int8"], strict=True):
        result["per_clip"].append({"clip": c.name, "float": [round(float(x), 4) for x in f],
                                   "int8": [round(float(x), 4) for x in q]})
    worst = int(np.argmax(np.abs(diff[:, :3]).max(axis=1)))
    print(f"largest MOS difference: {clips[worst].name}: float {np.round(full['float'][worst, :3], 2)}, "
          f"int8 {np.round(full['int8'][worst, :3], 2)}")

    print(f"\nnoise trend through the analyzer ({TREND_SECONDS:g} s of speech; clean, "
          + "/".join(f"{s:g}" for s in TREND_SNRS_DB) + " dB SNR)")
    tr = trend()
    result["trend"] = tr
    print(f"{'noise model':12} {'quality':>28} {'noise score':>28}  monotonic")
    for k, v in tr.items():
        print(f"{k:12} " + f"{' '.join(f'{x:6.2f}' for x in v['quality']):>28} "
              + f"{' '.join(f'{x:6.2f}' for x in v['noise']):>28}  {'yes' if v['monotonic'] else 'NO'}")

    med = {m: float(np.median(s)) for m, s in seconds.items()}
    result["speed"] = {"s_per_clip": med, "ratio": med["float"] / med["int8"],
                       "ratio_to_int8_in_onnxruntime": med[INT8_ONNXRUNTIME] / med["int8"],
                       "realtime_x": {m: DNSMOS_WINDOW_S / v
                                      for m, v in med.items()}}
    result["int8_runtimes_max_abs_mos"] = runtimes_max_abs_mos
    print(f"\nspeed (median of {len(clips)} calls each, one thread, alternating): float {med['float']:.3f} s per clip, "
          f"int8 {med['int8']:.3f} s per clip: {med['float'] / med['int8']:.2f}x; the int8 model in onnxruntime "
          f"{med[INT8_ONNXRUNTIME]:.3f} s ({med[INT8_ONNXRUNTIME] / med['int8']:.2f}x the analyzer's OpenVINO time), "
          f"its MOS within {runtimes_max_abs_mos:.4f} of OpenVINO's")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    ok = all(v["monotonic"] for v in tr.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
