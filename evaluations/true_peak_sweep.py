#!/usr/bin/env python3
"""True peak of sines at every phase (issue 19, item 4): the meter against the analytic value,
BS.1770-4 Annex 2's example filter and FFmpeg's ebur128, and EBU Tech 3341 cases 15-23.

Sweep: fs/4 and fs/6 sines at 48 kHz, -6 dBFS (true peak -6.00 dBTP: the sine's amplitude), 1 s
with 50 ms raised-cosine fades (no onset overshoot), starting phase 0 to 90 degrees in 2.25-degree
steps, stereo. For each: the project's meter (``audiolib.loudness.measure``), the Annex 2 4-phase
interpolator (its Table 1, float64, with the sample peak, as the meter computed it until
ANALYSIS_VERSION 4), and FFmpeg's ``ebur128=peak=true`` (its frame metadata: the linear peak to
three decimals, 0.01 dB here) on the same signal written as 32-bit float WAV. Also the issue's
0 dBFS fs/4 sine at 56.25 degrees, and Tech 3341 cases 15-23 (the signals the conformance tests
build) read by the meter.

    .venv/bin/python -m evaluations.true_peak_sweep [--no-ffmpeg] [--skip-stats] [--alternatives] [--json OUT]

``--alternatives`` also evaluates interpolators that were tried and not kept (a 4x grid with better
filters, fewer taps on the 8x grid), on the same sweep (numpy, float64) and by their gain up to
20 kHz at 48 and at 44.1 kHz.

``--skip-stats`` also prints why the finer interpolator costs no speed: the share of 512-window
chunks whose bound could beat the signal's sample peak (those the meter interpolates; the others it
skips exactly) on 10 minutes of ``bench_loudness``'s programme and on the ten extremetuxracer
tracks, for the Annex 2 filter with its tap-sum bound (the meter before), the new taps with the
tap-sum bound alone, and the new taps with the second-difference bound as well (the meter now).

Prints tables; exit status is non-zero only on a crash (tests/test_loudness_conformance.py asserts
the tolerances).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from audiolib.io import write
from audiolib.loudness import _ANNEX2_PHASES, measure, true_peak_taps
from benchmarks.bench_remedy import ebur128_precise
from benchmarks.harness import header

FS = 48000
PHASES = [round(2.25 * k, 2) for k in range(41)]
UP, DOWN = 0.1, 0.2  # the target around the analytic value, dB


def faded_sine(period: float, dbfs: float, phase_deg: float, seconds: float = 1.0, fade_ms: float = 50.0) -> np.ndarray:
    n = np.arange(round(seconds * FS))
    x = 10 ** (dbfs / 20) * np.sin(2 * np.pi * n / period + math.radians(phase_deg))
    m = round(fade_ms * FS / 1000)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(m) / m)
    x[:m] *= ramp
    x[-m:] *= ramp[::-1]
    return np.tile(x, (2, 1))


def annex2_dbtp(y: np.ndarray) -> float:
    """max(|Annex 2 4x interpolation|, |samples|), dB, float64."""
    peak = float(np.abs(y).max())
    for ch in np.atleast_2d(y):
        for taps in _ANNEX2_PHASES:
            peak = max(peak, float(np.abs(np.convolve(ch, taps)).max()))
    return 20 * math.log10(peak)


def meter_dbtp(y: np.ndarray, channel_names: tuple[str, ...] = ("FL", "FR")) -> float:
    """The meter's true peak, dBTP (every signal here has one)."""
    tp = measure(y, FS, channel_names=channel_names).true_peak_dbtp
    if tp is None:
        raise RuntimeError("the meter measured no true peak")
    return tp


def ffmpeg_dbtp(y: np.ndarray, tmp: Path) -> float:
    path = tmp / "sine.wav"
    write(str(path), y.astype(np.float32), FS, codec="pcm_f32le", sample_fmt="flt", clip=False)
    return ebur128_precise(str(path))["TP"]




def chunk_bound_shares(x: np.ndarray, chunk: int = 512) -> tuple[float, float, float]:
    """Shares of the chunks of ``x`` (one channel) whose bound exceeds ``x``'s sample peak: Annex 2's
    tap-sum bound, the meter's tap-sum bound alone, and the meter's bounds (tap sum and second
    difference), as ``aq_true_peak_max`` computes them (windows of 24 samples; 12 for Annex 2)."""
    tp = true_peak_taps(FS)
    g_annex2 = float(np.abs(_ANNEX2_PHASES).sum(axis=1).max())
    floor = float(np.abs(x).max())
    d2 = np.abs(x[:-2] - 2 * x[1:-1] + x[2:])
    out = []
    for ntap, kind in ((12, "annex2"), (24, "gain"), (24, "both")):
        n_out = x.size - ntap + 1
        beat = 0
        starts = range(0, n_out, chunk)
        for lo in starts:
            hi = min(lo + chunk, n_out) + ntap - 1
            p = float(np.abs(x[lo:hi]).max())
            if kind == "annex2":
                b = g_annex2 * p
            elif kind == "gain":
                b = tp.bound_gain * p
            else:
                b = min(tp.bound_gain * p, tp.bound_lin * p + tp.bound_d2 * float(d2[lo:hi - 2].max()))
            beat += b > floor
        out.append(beat / len(starts))
    return out[0], out[1], out[2]


def skip_stats() -> None:
    from benchmarks.bench_loudness import ProgrammeGenerator
    from testing.material.media import REAL_MUSIC_DIR, run_ffmpeg

    print("\nchunks (512 windows) whose bound beats the sample peak: interpolated; the rest skipped exactly")
    print(f"{'signal':28} {'Annex 2, tap sum':>17} {'new taps, tap sum':>18} {'new taps, both bounds':>22}")
    gen = ProgrammeGenerator(600.0, 1770)
    prog = np.concatenate([c[:, 0] for c in gen.chunks()])
    prog = (np.clip(np.round(prog * 32767), -32768, 32767) / 32768).astype(np.float32)
    a, g, b = chunk_bound_shares(prog)
    print(f"{'programme, 10 min (left)':28} {100 * a:16.2f}% {100 * g:17.2f}% {100 * b:21.3f}%")
    with tempfile.TemporaryDirectory() as tmp:
        for song in sorted(Path(REAL_MUSIC_DIR).glob("*.ogg")):
            raw = Path(tmp) / "x.f32"
            run_ffmpeg("-i", str(song), "-ac", "1", "-ar", str(FS), "-f", "f32le", str(raw))
            a, g, b = chunk_bound_shares(np.fromfile(raw, np.float32))
            print(f"{song.name:28} {100 * a:16.2f}% {100 * g:17.2f}% {100 * b:21.3f}%")


def wls_delay(delay: float, ntap: int, band: float, low_band: float = 0.35, low_weight: float = 4.0) -> np.ndarray:
    """``ntap`` correlation taps for the value at ``ntap/2 - 1 + delay``: weighted least squares over
    0 .. ``band`` cycles per sample (``audiolib.loudness.fractional_delay``'s design, any length)."""
    f = np.linspace(0.0, band, 800)
    w = np.where(f < low_band, low_weight, 1.0)
    a = np.exp(-2j * np.pi * f[:, None] * np.arange(ntap)[None, :]) * w[:, None]
    b = np.exp(-2j * np.pi * f * (ntap // 2 - 1 + delay)) * w
    ar = np.vstack([a.real, a.imag])
    return np.linalg.solve(ar.T @ ar, ar.T @ np.concatenate([b.real, b.imag]))


def alternatives() -> None:
    print("\ninterpolators tried (the sample and grid - 1 fractional delays per sample): sweep range, dB from "
          "analytic, and the phases' gain")
    print(
        f"{'design':34} {'fs/4 sweep':>17} {'fs/6 sweep':>17} {'gain to 20 kHz @48k':>21} {'gain @ 20 kHz, 44.1k':>21}"
    )
    designs = [(4, 12, 0.40), (4, 12, 0.45), (4, 12, 0.47), (4, 24, 0.47), (8, 16, 0.40), (8, 24, 0.47)]
    for grid, ntap, band in designs:
        phases = [wls_delay(j / grid, ntap, band) for j in range(1, grid)]
        cells = []
        for period in (4, 6):
            v = []
            for ph in PHASES:
                x = faded_sine(period, -6.0, ph)[0]
                view = np.lib.stride_tricks.sliding_window_view(x, ntap)
                peak = max(float(np.abs(x).max()), float(np.abs(view @ np.array(phases).T).max()))
                v.append(20 * math.log10(peak) + 6.0)
            cells.append(f"{min(v):+.3f} .. {max(v):+.3f}")
        k = np.arange(ntap)

        def gain(f: float, k: np.ndarray = k, phases: list[np.ndarray] = phases) -> np.ndarray:
            return np.array([20 * math.log10(abs(np.sum(h * np.exp(-2j * np.pi * f * k)))) for h in phases])

        g48 = np.array([gain(f) for f in np.linspace(0.001, 20000 / 48000, 200)])
        g44 = gain(20000 / 44100)
        name = f"{grid}x grid, {ntap} taps fitted to {band}" + (
            "  (the meter)" if (grid, ntap, band) == (8, 24, 0.47) else ""
        )
        print(f"{name:34} {cells[0]:>17} {cells[1]:>17} {g48.min():+8.2f} .. {g48.max():+.2f} "
              f"{g44.min():+9.2f} .. {g44.max():+.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-ffmpeg", action="store_true", help="skip FFmpeg's readings")
    ap.add_argument("--skip-stats", action="store_true", help="also print the share of chunks interpolated")
    ap.add_argument("--alternatives", action="store_true", help="also evaluate the interpolators tried")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    tp = true_peak_taps(FS)
    print(header("true_peak_sweep: true peak of sines at every phase"))
    print(f"meter grid: {tp.grid} points per sample, {tp.taps.shape[0]} phases x {tp.taps.shape[1]} taps; skipping "
          f"bounds: tap sum {tp.bound_gain:.4f} (Annex 2: {np.abs(_ANNEX2_PHASES).sum(axis=1).max():.4f}), "
          f"second-difference form {tp.bound_lin:.4f} P + {tp.bound_d2:.4f} D")

    def gain_db(h: np.ndarray, f: float) -> float:
        return 20 * math.log10(abs(np.sum(h * np.exp(-2j * np.pi * f * np.arange(h.size)))))

    print("gain of each phase (dB) at DC, fs/6, fs/4:")
    for label, phases in (("Annex 2", _ANNEX2_PHASES), ("meter", tp.taps.astype(np.float64))):
        for i, h in enumerate(phases):
            print(f"  {label:8} phase {i}: " + "  ".join(f"{gain_db(h, f):+.3f}" for f in (0.0, 1 / 6, 0.25)))
    rows: list[tuple[int, float, float, float, float]] = []
    res: dict[str, Any] = {"sweep": []}  # the --json document
    with tempfile.TemporaryDirectory() as tmp:
        for period in (4, 6):
            for ph in PHASES:
                y = faded_sine(period, -6.0, ph)
                ours = meter_dbtp(y) + 6.0
                ref = annex2_dbtp(y[:1].astype(np.float32)) + 6.0
                ff = math.nan if args.no_ffmpeg else ffmpeg_dbtp(y, Path(tmp)) + 6.0
                rows.append((period, ph, ours, ref, ff))
                res["sweep"].append({"period": period, "phase_deg": ph, "meter_db": ours, "annex2_db": ref,
                                     "ffmpeg_db": ff})
        y = faded_sine(4, 0.0, 56.25)
        full = (meter_dbtp(y), annex2_dbtp(y[:1].astype(np.float32)),
                math.nan if args.no_ffmpeg else ffmpeg_dbtp(y, Path(tmp)))
    print(f"\nsweep, -6 dBFS sines, reading - analytic (dB); target +{UP}/-{DOWN}")
    print(f"{'sine':5} {'phase':>6} {'meter':>7} {'Annex 2':>8} {'FFmpeg':>7}")
    for period, ph, ours, ref, ff in rows:
        print(f"fs/{period:<3} {ph:6.2f} {ours:+7.3f} {ref:+8.3f} {ff:+7.3f}")
    print("\nrange over the phases (min .. max, dB from analytic):")
    for period in (4, 6):
        sel = [r for r in rows if r[0] == period]
        for name, col in (("meter", 2), ("Annex 2", 3), ("FFmpeg", 4)):
            v = np.array([r[col] for r in sel])
            within = np.sum((v <= UP) & (v >= -DOWN))
            print(
                f"  fs/{period} {name:8} {v.min():+.3f} .. {v.max():+.3f}  within +{UP}/-{DOWN}: {within} of {v.size}"
            )
    print(f"\n0 dBFS fs/4 sine at 56.25 deg (true peak 0.00 dBTP): meter {full[0]:+.3f}, Annex 2 {full[1]:+.3f}, "
          f"FFmpeg {full[2]:+.3f} dBTP")
    res["fs4_0dbfs_56.25"] = dict(zip(("meter", "annex2", "ffmpeg"), full, strict=True))

    from tests import test_loudness_conformance as T

    print("\nEBU Tech 3341 true-peak cases (expected +0.2/-0.4 dB):")
    cases = []
    for cid, per, pk, ph, e in T.TP_SINE_CASES:
        y = T.tp_sine(per, pk, ph)
        cases.append(
            (cid, e, meter_dbtp(y, T.STEREO), annex2_dbtp(y[:1].astype(np.float32)))
        )
    src = T.case20_bandlimited_4fs()
    for k in range(4):
        y = np.tile(src[k::4], (2, 1))
        cases.append((f"case{20 + k} (offset {k}, approx.)", 0.0, meter_dbtp(y, T.STEREO),
                      annex2_dbtp(y[:1].astype(np.float32))))
    for cid, e, ours, ref in cases:
        ok = e - 0.4 <= ours <= e + 0.2
        print(f"  {cid:32} expected {e:+.1f}  meter {ours:+.3f}  Annex 2 {ref:+.3f}  {'pass' if ok else 'FAIL'}")
    res["tech3341"] = [dict(zip(("case", "expected", "meter", "annex2"), c, strict=True)) for c in cases]
    if args.skip_stats:
        skip_stats()
    if args.alternatives:
        alternatives()
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
