#!/usr/bin/env python3
"""audioqc's loudness against FFmpeg's ebur128 filter on the same files (the README's table).

Material: programme with espeak-ng speech in nine codecs/rates, and recorded music from a Debian
package in four (see testing/material/media.py). FFmpeg prints I and LRA to 0.1 LU and measures the
true peak by resampling to 192 kHz; audioqc interpolates an 8x grid of 24-tap fractional delays
(audiolib.loudness.true_peak_taps; until ANALYSIS_VERSION 4, the BS.1770-4 Annex 2 4x filter).

    .venv/bin/python evaluations/accuracy_ffmpeg.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiolib.diagnose import diagnose  # noqa: E402
from testing.material.media import ffmpeg_ebur128, music_variants, programme_variants  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = {**programme_variants(Path(tmp) / "p"), **music_variants(Path(tmp) / "m")}
        print("| file | audioqc I | ffmpeg I | dI | audioqc LRA | ffmpeg LRA | dLRA | audioqc TP | ffmpeg TP | dTP |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        worst = {"I": 0.0, "LRA": 0.0, "TP": 0.0}
        for name, path in files.items():
            r = diagnose(path, only="loudness").blocks["loudness"]
            f = ffmpeg_ebur128(path)
            ours = {"I": r.integrated_lufs, "LRA": r.loudness_range_lu, "TP": r.true_peak_dbtp}
            cells = [name]
            for key in ("I", "LRA", "TP"):
                d = ours[key] - f[key]
                worst[key] = max(worst[key], abs(d))
                cells += [f"{ours[key]:.2f}", f"{f[key]:.1f}", f"{d:+.2f}"]
            print("| " + " | ".join(cells) + " |")
        print(f"\nlargest |difference|: I {worst['I']:.2f} LU, LRA {worst['LRA']:.2f} LU, TP {worst['TP']:.2f} dB "
              f"({len(files)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
