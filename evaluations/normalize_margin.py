#!/usr/bin/env python3
"""How far over the limiter's threshold do the meters read its output? (audiolib.normalize)

The limiter holds its detector's reading of the output at its threshold (the ceiling minus
``SAFETY_MARGIN_DB``). Two meters then read the output: the project's (whose phases are the
detector's, so it cannot read more) and FFmpeg's ``ebur128=peak=true``
(a 32-tap resampler to 192 kHz: other points, another filter, and the signal mirrored before the
first sample). This script pushes a battery of signals 4 to 10 dB over a -1 dBTP ceiling and prints,
per signal, ``meter reading - threshold`` for both meters: the largest of these is what the safety
margin has to cover.

Battery: sines of 100 Hz .. 19.5 kHz at three phases and 44.1 / 48 / 96 kHz (20 ms fades), an fs/4
sine starting abruptly at full level, white and hard-clipped full-band noise (several seeds),
square waves, synthetic programme, espeak-ng speech and recorded music (plain and hard-clipped).

    .venv/bin/python evaluations/normalize_margin.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audiolib import io  # noqa: E402
from audiolib.loudness import measure  # noqa: E402
from audiolib.normalize import SAFETY_MARGIN_DB, LoudnessNormalizer  # noqa: E402
from benchmarks.bench_remedy import ebur128_precise  # noqa: E402
from testing.material.media import REAL_MUSIC_DIR, programme  # noqa: E402

CEILING = -1.0


def fade(x: np.ndarray, sr: int, ms: float = 20.0) -> np.ndarray:
    n = int(sr * ms / 1000)
    w = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    x = np.array(x, dtype=np.float64, copy=True)
    x[..., :n] *= w
    x[..., -n:] *= w[::-1]
    return x


def _reading(x: float | None) -> float:
    """A true peak these signals have (None only for digital silence)."""
    if x is None:
        raise RuntimeError("no true peak measured")
    return x


def over_threshold(y: np.ndarray, sr: int, over_db: float, tmp: str) -> tuple[float, float, float]:
    """Limit ``y`` pushed ``over_db`` over the ceiling; (FFmpeg - threshold, project - threshold, GR)."""
    y = np.atleast_2d(y).astype(np.float32)
    gain = CEILING + over_db - _reading(measure(y, sr).true_peak_dbtp)
    norm = LoudnessNormalizer(sr, y.shape[0], gain_db=gain, true_peak_max_dbtp=CEILING)
    out = np.concatenate([norm.push(y), norm.flush()], axis=1)
    res = norm.result()
    path = os.path.join(tmp, "margin.wav")
    io.write(path, out, sr, codec="pcm_f32le", sample_fmt="flt", clip=False)
    thr = res.limiter_threshold_dbtp
    return ebur128_precise(path)["TP"] - thr, _reading(res.output_true_peak_dbtp) - thr, res.max_gain_reduction_db


def battery():
    for sr in (44100, 48000, 96000):
        t = np.arange(2 * sr) / sr
        for f in (100, 997, 3000, 6000, 9000, 11025 if sr == 44100 else 12000, 15000, 18000, 19500):
            for ph in (0.0, np.pi / 4, 0.3):
                yield "sine", f"{f} Hz ph {ph:.2f}", fade(np.sin(2 * np.pi * f * t + ph), sr), sr, 6.0
        yield "abrupt start", "fs/4 at 45 deg", np.sin(np.pi / 2 * np.arange(sr) + np.pi / 4), sr, 6.0
        for f in (997, 3100):
            yield "square", f"{f} Hz", fade(0.5 * np.sign(np.sin(2 * np.pi * f * t + 0.1)), sr), sr, 4.0
        for seed in range(3):
            x = np.random.default_rng(seed + 20).standard_normal((2, 3 * sr)) * 0.25
            yield "white noise", f"seed {seed}", fade(x, sr), sr, 8.0
            yield "clipped noise", f"seed {seed}", fade(np.clip(x, -0.4, 0.4), sr), sr, 4.0
    yield "programme", "synthetic", programme(20.0), 48000, 10.0
    from tests.conftest import espeak_speech

    yield "speech", "espeak-ng", espeak_speech(20.0), 48000, 8.0
    for name in ("race1-jt.ogg", "freezingpoint.ogg"):
        with io.stream(os.path.join(REAL_MUSIC_DIR, name)) as s:
            y = np.concatenate(list(s), axis=1)[:, : 30 * s.sample_rate]
            sr = s.sample_rate
        yield "music", name, y, sr, 6.0
        yield "music", name + " abrupt cut", y[:, 7 * sr:20 * sr], sr, 6.0
        yield "clipped music", name + " +12 dB clipped", np.clip(4 * y / np.abs(y).max(), -1, 1), sr, 4.0


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name, y, sr, over in battery():
            ff, own, gr = over_threshold(y, sr, over, tmp)
            rows.append((kind, name, sr, ff, own, gr))
            print(f"{kind:14s} {name:32s} {sr:6d}  FFmpeg {ff:+.3f}  project {own:+.3f}  (GR {gr:.1f} dB)", flush=True)
    print(f"\nmeter reading - limiter threshold, dB (threshold = ceiling - {SAFETY_MARGIN_DB} dB), largest per kind:")
    for kind in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == kind]
        print(
            f"  {kind:14s} FFmpeg {max(r[3] for r in sel):+.3f}  project {max(r[4] for r in sel):+.3f}  "
            f"({len(sel)} signals)"
        )
    worst = max(r[3] for r in rows)
    print(f"largest: FFmpeg {worst:+.3f}, project {max(r[4] for r in rows):+.3f}; margin {SAFETY_MARGIN_DB} dB "
          f"{'covers' if worst <= SAFETY_MARGIN_DB else 'DOES NOT cover'} it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
