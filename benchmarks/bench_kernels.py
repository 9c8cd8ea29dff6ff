#!/usr/bin/env python3
"""The per-sample loops of a diagnose, one by one, against a numpy/scipy computation of the same
thing in the same run, in seconds per hour of stereo 48 kHz audio (one thread):

* K-weighting (``_kernels.kweighted_power``) against ``scipy.signal.sosfilt`` in float64;
* the true-peak interpolator (``_kernels.true_peak_max``) with every chunk interpolated (the
  worst case: no chunk skipped) against numpy's polyphase product: the meter's 7 phases of 24 taps
  (an 8x grid), and BS.1770-4 Annex 2's 4 phases of 12 taps (the meter's until ANALYSIS_VERSION 4);
* the momentary and short-term maxima (``_kernels.sliding_sum_max2``) against numpy's sliding
  sums from a cumulative sum;
* the speech events' 4-10 kHz band-pass (``iir.sosfilt``, float32, mono) against
  ``scipy.signal.sosfilt`` in float32;
* demuxing and decoding a WAV (``io.stream``) with FFmpeg's 4 KiB packets and with
  ``io.WAV_PACKET_BYTES``, on a generated 10-minute file.

Timings are printed, never asserted.

    taskset -c 0 .venv/bin/python -m benchmarks.bench_kernels [--rounds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.signal

from audiolib import _kernels, iir, io
from audiolib.loudness import _ANNEX2_PHASES, k_weighting_sos, true_peak_taps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import header  # noqa: E402

SR = 48000
BLOCK = 1 << 18
HOUR_FRAMES = 3600 * SR


def _per_hour(fn: Callable[[], object], frames: int, rounds: int) -> float:
    """Fastest of ``rounds`` runs of ``fn`` (which processes ``frames`` frames), scaled to an hour."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * HOUR_FRAMES / frames


def _decode_row(rounds: int) -> tuple[str, float, str, float]:
    """WAV decode of ten minutes of stereo noise: our packet size against FFmpeg's default."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "ten_minutes.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"anoisesrc=d=600:r={SR}:a=0.2:s=7",
                        "-ac", "2", "-c:a", "pcm_s16le", str(wav)], check=True)
        frames = 600 * SR

        def decode(packet_bytes: int) -> Callable[[], None]:
            def run() -> None:
                saved = io.WAV_PACKET_BYTES
                io.WAV_PACKET_BYTES = packet_bytes
                try:
                    with io.stream(str(wav)) as s:
                        for _ in s:
                            pass
                finally:
                    io.WAV_PACKET_BYTES = saved
            return run

        return (
            f"WAV decode, {io.WAV_PACKET_BYTES >> 10} KiB packets",
            _per_hour(decode(io.WAV_PACKET_BYTES), frames, rounds),
            "FFmpeg's default 4 KiB packets",
            _per_hour(decode(4096), frames, rounds),
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(header("bench_kernels: C kernels against numpy/scipy"), flush=True)
    rng = np.random.default_rng(1770)
    x = (rng.standard_normal((2, BLOCK)) * 0.2).astype(np.float32)
    rows: list[tuple[str, float, str, float]] = []

    sos = k_weighting_sos(SR)
    weights = np.ones(2)

    def kw_ours():
        _kernels.kweighted_power(x, sos, np.zeros((2, 2, 2)), weights)

    def kw_scipy():
        sum(scipy.signal.sosfilt(sos, x[c].astype(np.float64)) ** 2 for c in range(2))

    rows.append(("K-weighting, 2 channels", _per_hour(kw_ours, BLOCK, args.rounds),
                 "scipy.signal.sosfilt, float64", _per_hour(kw_scipy, BLOCK, args.rounds)))

    for label, taps in (("8x grid, 7 x 24 taps", true_peak_taps(SR).taps),
                        ("Annex 2, 4 x 12 taps", np.ascontiguousarray(_ANNEX2_PHASES[:, ::-1], dtype=np.float32))):
        def tp_ours(taps=taps):  # a huge bound gain: no chunk can be skipped
            for c in range(2):
                _kernels.true_peak_max(x[c], taps, 1e30, 0.0, 512)

        def tp_numpy(taps=taps):
            for c in range(2):
                np.max(np.abs(np.lib.stride_tricks.sliding_window_view(x[c], taps.shape[1]) @ taps.T))

        rows.append((f"true peak {label}, no chunk skipped", _per_hour(tp_ours, BLOCK, args.rounds),
                     "numpy polyphase (float32 matmul)", _per_hour(tp_numpy, BLOCK, args.rounds)))

    power = _kernels.kweighted_power(x, sos, np.zeros((2, 2, 2)), weights)
    wa, wb = int(0.4 * SR), int(3.0 * SR)

    def slide_ours():
        _kernels.sliding_sum_max2(power, np.zeros(wa), np.zeros(5), np.zeros(wb), np.zeros(5))

    def slide_numpy():
        c = np.concatenate(([0.0], np.cumsum(power)))
        return np.max(c[wa:] - c[:-wa]), np.max(c[wb:] - c[:-wb])

    rows.append(("momentary + short-term maxima", _per_hour(slide_ours, BLOCK, args.rounds),
                 "numpy cumulative-sum windows", _per_hour(slide_numpy, BLOCK, args.rounds)))

    band = iir.butter_sos(2, (4000.0, 10000.0), "bandpass", SR).astype(np.float32)
    mono = x[0]

    def bp_ours():
        iir.sosfilt(band, mono, np.zeros((2, 2), np.float32))

    def bp_scipy():
        scipy.signal.sosfilt(band, mono, zi=np.zeros((2, 2), np.float32))

    # mono: an hour is HOUR_FRAMES samples of one channel, as the detector filters the downmix
    rows.append(("4-10 kHz band-pass, mono", _per_hour(bp_ours, BLOCK, args.rounds),
                 "scipy.signal.sosfilt, float32", _per_hour(bp_scipy, BLOCK, args.rounds)))

    rows.append(_decode_row(args.rounds))

    print(f"seconds per hour of stereo {SR} Hz audio, one thread, fastest of {args.rounds}:")
    print(f"{'loop':50} {'audioqc':>8}   {'peer':32} {'peer s':>7}  ratio")
    for name, ours, peer, theirs in rows:
        print(f"{name:50} {ours:8.2f}   {peer:32} {theirs:7.2f}  {theirs / ours:5.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
