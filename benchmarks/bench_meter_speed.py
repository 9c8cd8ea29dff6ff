#!/usr/bin/env python3
"""Speed of the loudness measurement, this tree against another tree, in the same run (issue 19,
item 4: the new true-peak interpolator must keep the measurement within 5 % of the previous one).

On ``benchmarks/bench_loudness.py``'s seeded programme file (stereo 48 kHz 16-bit WAV, ``--minutes``
long, generated once into ``benchmarks/out/``), each tree is timed in processes of its own
(``PYTHONPATH=TREE python -P``), in turn, ``--rounds`` times, fastest kept:

* ``meter``: :class:`audiolib.loudness.LoudnessMeter` (K-weighting, gating, LRA, maxima, true peak)
  over the file's blocks, already decoded into memory by that tree's ``audiolib.io`` (decoding not
  timed): the part this change touches;
* ``meter, no true peak``: the same with ``true_peak=False``, so the true peak's own cost shows;
* ``audioqc loudness``: the whole command (start-up, decoding, the meter), wall time.

Run it pinned to one core, with the other tree a copy of this one without the change (for issue 19:
the working tree with audiolib/_dsp.c, _kernels.py, loudness.py, normalize.py, music.py and
__init__.py from HEAD, its C kernels built the way setup.py builds them)::

    taskset -c 0 .venv/bin/python -m benchmarks.bench_meter_speed --baseline-tree /tmp/aq_today

Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_loudness import ensure_file
from benchmarks.harness import cpu_model, header

REPO = Path(__file__).resolve().parent.parent

METER = r"""
import json, sys, time
import numpy as np
from audiolib import io
from audiolib.loudness import LoudnessMeter
path, true_peak = sys.argv[1], sys.argv[2] == "1"
with io.stream(path) as s:
    blocks = [np.ascontiguousarray(b) for b in s]
    sr, names = s.sample_rate, s.channel_names
t = time.perf_counter()
meter = LoudnessMeter(sr, names, true_peak=true_peak)
for b in blocks:
    meter.push(b)
r = meter.result()
print(json.dumps({"s": time.perf_counter() - t, "I": r.integrated_lufs, "TP": r.true_peak_dbtp}))
"""


def run_meter(tree: Path, path: Path, true_peak: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-P", "-c", METER, str(path), "1" if true_peak else "0"],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(tree: Path, path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-P", "-m", "audioqc.cli", "loudness", str(path)],
                         capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - t
    d = json.loads(out.stdout)
    return {"s": wall, "I": d.get("measured"), "TP": d.get("true_peak")}




def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-tree", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    path = ensure_file(REPO / "benchmarks" / "out", args.minutes, "wav", 1770, shutil.which("ffmpeg") or "ffmpeg")
    trees = {"this tree": REPO, "baseline": args.baseline_tree.resolve()}
    cases = {"meter": lambda t: run_meter(t, path, True), "meter, no true peak": lambda t: run_meter(t, path, False),
             "audioqc loudness": lambda t: run_cli(t, path)}
    affinity = sorted(os.sched_getaffinity(0))
    print(header("bench_meter_speed: the loudness meter, this tree against a baseline tree"))
    print(f"cores allowed: {affinity}; file: {path.name} ({args.minutes:g} min); baseline: {trees['baseline']}")
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for case, fn in cases.items():
            for label, tree in order:
                runs.setdefault((case, label), []).append(fn(tree))
        print(f"  round {r + 1} done", flush=True)
    print(f"\n{'case':22} {'tree':10} {'fastest s':>9} {'x realtime':>10} {'I LUFS':>8} {'TP dBTP':>8}  every round s")
    res = {"cpu": cpu_model(), "minutes": args.minutes, "trees": {k: str(v) for k, v in trees.items()}, "cases": {}}
    for case in cases:
        best = {}
        for label in trees:
            rs = runs[(case, label)]
            b = min(rs, key=lambda x: x["s"])
            best[label] = b["s"]
            tp = "-" if b["TP"] is None else f"{b['TP']:.3f}"
            print(f"{case:22} {label:10} {b['s']:9.2f} {args.minutes * 60 / b['s']:10.0f} {b['I']:8.3f} {tp:>8}  "
                  + " ".join(f"{x['s']:.2f}" for x in rs))
            res["cases"].setdefault(case, {})[label] = [x for x in rs]
        print(f"{'':22} this tree / baseline: {best['this tree'] / best['baseline']:.3f} "
              f"({100 * (best['this tree'] / best['baseline'] - 1):+.1f} %)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
