#!/usr/bin/env python3
"""Full signal diagnose against one FFmpeg command doing loudness, silence and statistics.

In one run, on the same generated file (benchmarks/bench_loudness.py's seeded programme), times

* ``audioqc diagnose FILE --only SIGNAL_BLOCKS`` (every signal block: media_info, loudness with
  true peak, silence, clipping, channel format with ST 337 scan, DC offset, phase, bandwidth,
  dropouts; the perceptual blocks have their own benchmark, bench_perceptual.py), and
* ``ffmpeg -i FILE -af ebur128=peak=true,silencedetect,astats -f null -``,

each in its own process with its exact peak RSS (the launcher of bench_loudness.py), and prints
x-realtime, peak RSS and the speed ratio (target: audioqc at least as fast, memory flat).
``--memory-sweep`` runs audioqc on 10, 60 and 180 minute files.

    .venv/bin/python benchmarks/bench_diagnose.py [--minutes 60] [--memory-sweep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_loudness import (  # noqa: E402
    SR,
    _default_audioqc,
    ensure_file,
    print_table,
    rss_floor_mb,
    run_measured,
    warm_page_cache,
)
from benchmarks.harness import header  # noqa: E402

SWEEP_MINUTES = (10, 60, 180)
from audiolib.diagnose import SIGNAL_BLOCKS as _SIGNAL  # noqa: E402

SIGNAL_BLOCKS = ",".join(_SIGNAL)


def run_peer(name: str, cmd: list[str], tmp: Path, duration_s: float) -> dict:
    print(f"  running {name} ...", flush=True)
    run = run_measured(cmd, tmp, name)
    return {
        "peer": name,
        "cmd": cmd,
        "ok": run["returncode"] == 0,
        "wall_s": run["wall_s"],
        "cpu_s": run["user_s"] + run["sys_s"],
        "x_realtime": duration_s / run["wall_s"] if run["wall_s"] else None,
        "peak_rss_mb": run["peak_rss_mb"],
        "stderr_tail": run["stderr"].strip().splitlines()[-1:] if run["returncode"] else [],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=1770)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--memory-sweep", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    print(header("bench_diagnose: signal diagnose against FFmpeg"), flush=True)
    audioqc = _default_audioqc()
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    args.workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"minutes": args.minutes}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        path = ensure_file(args.workdir, args.minutes, "wav", args.seed, ffmpeg)
        duration_s = args.minutes * 60.0
        warm_page_cache(path)
        print(f"peak-RSS measurement floor: {rss_floor_mb(tmp):.1f} MB")
        run_measured([audioqc, "diagnose", str(path), "--end", "1"], tmp, "warmup")
        peers = [
            run_peer("audioqc", [audioqc, "diagnose", str(path), "--only", SIGNAL_BLOCKS], tmp, duration_s),
            run_peer("ffmpeg", [ffmpeg, "-nostats", "-hide_banner", "-i", str(path), "-af",
                                "ebur128=peak=true,silencedetect,astats", "-f", "null", "-"], tmp, duration_s),
        ]
        out["peers"] = peers
        print(f"\n=== full signal diagnose: {args.minutes:g} min stereo {SR} Hz wav ===")
        print_table(["peer", "wall s", "cpu s", "x-realtime", "peak RSS MB", "status"],
                    [[p["peer"], f"{p['wall_s']:.2f}", f"{p['cpu_s']:.2f}", f"{p['x_realtime']:.0f}",
                      f"{p['peak_rss_mb']:.0f}", "ok" if p["ok"] else f"FAILED {p['stderr_tail']}"] for p in peers])
        a, f = peers
        if a["ok"] and f["ok"]:
            ratio = f["wall_s"] / a["wall_s"]
            out["speed_vs_ffmpeg"] = ratio
            print(f"\naudioqc diagnose speed vs ffmpeg ebur128+silencedetect+astats: {ratio:.2f}x "
                  f"[{'meets' if ratio >= 1.0 else 'misses'} target (>= 1.0)]")
        if args.memory_sweep:
            rows, sweep = [], []
            for minutes in SWEEP_MINUTES:
                p = ensure_file(args.workdir, minutes, "wav", args.seed, ffmpeg)
                warm_page_cache(p)
                r = run_peer(f"audioqc-{minutes}min", [audioqc, "diagnose", str(p), "--only", SIGNAL_BLOCKS], tmp,
                             minutes * 60.0)
                sweep.append({"minutes": minutes, **r})
                rows.append([str(minutes), f"{r['wall_s']:.2f}", f"{r['x_realtime']:.0f}", f"{r['peak_rss_mb']:.0f}",
                             "ok" if r["ok"] else "FAILED"])
            out["sweep"] = sweep
            print("\n=== memory sweep: audioqc diagnose alone ===")
            print_table(["minutes", "wall s", "x-realtime", "peak RSS MB", "status"], rows)
            rss = [s["peak_rss_mb"] for s in sweep]
            print(f"peak RSS spread across durations: {max(rss) - min(rss):.0f} MB (max {max(rss):.0f} MB)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(p["ok"] for p in out["peers"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
