#!/usr/bin/env python3
"""Evidence for the perceptual blocks: scores against known degradations, content shares.

1. 60 s of clean espeak-ng speech, and the same speech with white and with pink noise added at
   20, 10 and 0 dB SNR (noise power against the power of the active speech samples): the
   ``quality_score`` and ``noise_score`` averages must fall monotonically, and the estimated SNR
   follow the added noise.
2. Speech files (espeak-ng, flite) and music files (real recordings from Debian's
   extremetuxracer-data; MIDI rendered by fluidsynth with the GM soundfont comes from
   testing/material/content_corpus.py's evaluation): ``speech.percentage`` and ``music.percentage``.

Prints tables (the README's); ``--json OUT`` writes them too. Exit status is non-zero only if a
measurement fails; nothing is asserted here (tests/test_perceptual.py asserts the monotonicity).

    .venv/bin/python evaluations/evidence_perceptual.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiolib.diagnose import diagnose  # noqa: E402
from audiolib.io import write  # noqa: E402
from benchmarks.bench_loudness import print_table  # noqa: E402
from benchmarks.bench_perceptual import SR, _decode, _speech  # noqa: E402
from testing.material.media import with_noise  # noqa: E402

BLOCKS = "quality_score,noise_score,speech,music,other"


def _save(path: Path, y: np.ndarray) -> str:
    write(str(path), np.clip(np.atleast_2d(y), -1, 1).astype(np.float32), SR, codec="pcm_s24le", sample_fmt="s32")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    out: dict = {"snr": [], "content": []}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        clean = _speech(60.0, tmp)[0]
        rows = []
        for kind in ("white", "pink"):
            for snr in (None, 20, 10, 0):
                if snr is None and kind == "pink":
                    continue
                y = clean.copy() if snr is None else with_noise(clean, kind, snr, np.random.default_rng(7))
                d = diagnose(_save(tmp / "x.wav", y), only=BLOCKS).to_dict()
                r = {
                    "noise": "none" if snr is None else kind,
                    "snr_db": snr,
                    "quality": d["quality_score"]["average"],
                    "noise_score": d["noise_score"]["average"],
                    "estimated_snr_db": d["noise_score"]["snr"],
                    "noise_floor_dbfs": d["noise_score"]["noise_floor"],
                    "worst_quality": d["quality_score"]["worst_segment"]["score"],
                    "speech_pct": d["speech"]["percentage"],
                }
                out["snr"].append(r)
                rows.append([r["noise"], "clean" if snr is None else f"{snr} dB", f"{r['quality']:.2f}",
                             f"{r['noise_score']:.2f}", f"{r['estimated_snr_db']:.1f}", f"{r['noise_floor_dbfs']:.1f}",
                             f"{r['speech_pct']:.1f}"])
        print("=== 60 s espeak-ng speech, noise added at a known SNR ===")
        print_table(["noise", "SNR", "quality", "noise score", "est. SNR dB", "floor dBFS", "speech %"], rows)
        files: list[tuple[str, str, str]] = []
        for voice in ("en", "de", "fr"):
            wav = tmp / f"espeak_{voice}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav),
                            "Dies ist ein Test. " * 3 if voice == "de" else "Ceci est un essai de parole. " * 3
                            if voice == "fr" else "This is a test of the speech detector. " * 3], check=True)
            files.append(("speech", f"espeak-ng {voice}", str(wav)))
        if shutil.which("flite"):
            for voice in ("slt", "rms"):
                wav = tmp / f"flite_{voice}.wav"
                subprocess.run(
                    [
                        "flite",
                        "-voice",
                        voice,
                        "-t",
                        "Quality control needs to know where people speak. " * 3,
                        "-o",
                        str(wav),
                    ],
                    check=True,
                )
                files.append(("speech", f"flite {voice}", str(wav)))
        for song in sorted(Path("/usr/share/games/etr/music").glob("*.ogg"))[:6]:
            files.append(("music", f"etr {song.stem}", str(song)))
        rows = []
        for label, name, path in files:
            d = diagnose(path, only="speech,music,other").to_dict()
            dur = _decode(path).shape[1] / SR
            r = {"label": label, "file": name, "seconds": dur, "speech_pct": d["speech"]["percentage"],
                 "music_pct": d["music"]["percentage"], "other_pct": d["other"]["percentage"]}
            out["content"].append(r)
            rows.append(
                [label, name, f"{dur:.0f}", f"{r['speech_pct']:.1f}", f"{r['music_pct']:.1f}", f"{r['other_pct']:.1f}"]
            )
        print("\n=== content shares ===")
        print_table(["truth", "file", "s", "speech %", "music %", "other %"], rows)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
