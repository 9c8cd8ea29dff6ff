#!/usr/bin/env python3
"""Why a steady synthetic voice read as music: the music detector's features on flite ``slt`` next
to speech, speech over music and music (issue 19, item 3; docs/accuracy-notes.md).

Runs the detector of ``--tree DIR`` (default: this tree; pass a checkout of the commit before the
fix to see the old features) in a process of its own over:

* flite ``slt`` reading ``eval_tts_speech.py``'s three paragraphs (each twice; its cached files);
* the TRAIN split of ``content_corpus.py`` (this tree's corpus), segments more than 2 s from a change
  of content, by kind: speech, speech over music, music;

and prints the mean of the features it names (those of that tree's ``FEATURE_NAMES``), for slt
also over the segments it calls music.

    .venv/bin/python -m evaluations.music_features_tts [--tree DIR] [--features a,b,c]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import header
from evaluations.eval_content import _boundary_distance
from evaluations.eval_tts_speech import build
from testing.material.content_corpus import build_split

REPO = Path(__file__).resolve().parent.parent
DEFAULT = "peaks,peaks_off_comb,stable,births,flatness,grid_3s"

FEATURES = r"""
import json, sys
import numpy as np
import soundfile as sf
from audiolib import music
out = {"names": list(music.FEATURE_NAMES), "rows": []}
for path in json.load(open(sys.argv[1])):
    y = np.fromfile(path, np.float32) if path.endswith(".f32") else sf.read(path, dtype="float32")[0]
    det = music.MusicDetector(16000)
    for i in range(0, y.size, 48000):
        det.push(y[i:i + 48000])
    f = det.features()
    out["rows"].append({"features": f.tolist(), "music": det.decisions().tolist()})
json.dump(out, open(sys.argv[2], "w"))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", type=Path, default=REPO)
    ap.add_argument("--features", default=DEFAULT)
    args = ap.parse_args(argv)
    items = build()
    slt = [it["path"] for name, it in items.items() if it["group"] == "tts" and it["voice"] == "flite:slt"]
    clips = build_split("train")
    paths = slt + [c["path"] for c in clips]
    with tempfile.TemporaryDirectory() as tmp:
        listing, result = Path(tmp) / "in.json", Path(tmp) / "out.json"
        listing.write_text(json.dumps(paths))
        subprocess.run([sys.executable, "-P", "-c", FEATURES, str(listing), str(result)], check=True,
                       env=dict(os.environ, PYTHONPATH=str(args.tree.resolve())))
        out = json.loads(result.read_text())
    names = out["names"]
    wanted = [n for n in args.features.split(",") if n in names]
    col = [names.index(n) for n in wanted]
    groups: dict[str, list[np.ndarray]] = {"flite slt": [], "flite slt, segments called music": []}
    for row in out["rows"][: len(slt)]:
        f, d = np.array(row["features"]), np.array(row["music"], bool)
        groups["flite slt"].append(f[:, col])
        groups["flite slt, segments called music"].append(f[d][:, col])
    labels = {"speech": "speech (TRAIN)", "mixture": "speech over music (TRAIN)", "music": "music (TRAIN)"}
    for row, clip in zip(out["rows"][len(slt):], clips, strict=True):
        f = np.array(row["features"])
        far = np.array(_boundary_distance(clip["segments"])) > 2
        for k, label in labels.items():
            sel = far & np.array([s["kind"] == k for s in clip["segments"]])
            groups.setdefault(label, []).append(f[sel][:, col])
    print(header("music_features_tts: the music detector's features on flite slt"))
    print(f"tree: {args.tree.resolve()}; features missing from that tree: "
          f"{[n for n in args.features.split(',') if n not in names] or 'none'}")
    print(f"{'':36}" + "".join(f" {n:>15}" for n in wanted) + "  segments")
    for label, parts in groups.items():
        a = np.concatenate(parts) if parts else np.zeros((0, len(col)))
        print(f"{label:36}" + "".join(f" {v:15.3f}" for v in (a.mean(0) if len(a) else [np.nan] * len(col)))
              + f"  {len(a)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
