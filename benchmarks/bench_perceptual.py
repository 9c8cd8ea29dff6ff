#!/usr/bin/env python3
"""Full diagnose (every block, perceptual ones included) on 1-hour programmes, on one core, on each
instruction-set level.

The targets (issue 19): at least 100x realtime for the full diagnose with the default options on a
CPU with AVX2 alone, and at least 400x where AMX exists (issue 5's was 100x on the CPU it met).
inaSpeechSegmenter, the usual open speech/music segmenter, runs about 10x realtime on a CPU; it is
not run here: it needs TensorFlow and downloads its models at run time, which this machine's
rules forbid.

The programmes (generated, cached under benchmarks/out/, not committed; :data:`PROGRAMMES`) repeat
a 10-minute cycle of espeak-ng speech (several voices, pauses), real recorded music (Ogg Vorbis from
Debian's extremetuxracer-data), speech over that music 15 dB down and room noise: ``mixed`` (~50 %
speech: the README's programme since issue 5) and ``talk`` (~76 % speech, the kind of file of
issue 19). Stereo 48 kHz 16-bit WAV.

Each command runs in its own process pinned to CPU 0 (``taskset -c 0``) with one thread for
numpy/onnxruntime (``OMP_NUM_THREADS=1``; audiolib's sessions use one thread anyway), through
harness.py's launcher (exact peak RSS), once per level of ``--isa``: ``native`` (this CPU),
``avx2`` (an AVX2-only CPU emulated by masking CPUID: benchmarks/isa.py; the header says which
level each set of runs saw and how). Cases:

* ``audioqc diagnose FILE``: every block with the default options;
* ``audioqc diagnose FILE --quality-stride N`` (``--strides``);
* ``audioqc diagnose FILE --only <signal blocks>``: the signal blocks alone (what the perceptual
  blocks add is the difference).

Timings are printed, never asserted. This host's speed drifts, and other processes share it, so a
change is measured against the code before it in the same run: ``--baseline-tree DIR`` runs every
case also with the code of DIR (a checkout of an earlier revision, e.g. ``git worktree add
/tmp/base REV``, with its C extension built in place), through this venv's Python with
``PYTHONPATH=DIR``, the two in turn, ``--rounds`` times; the tables have the fastest run of each and
the ratio per round.

    .venv/bin/python benchmarks/bench_perceptual.py [--minutes 60] [--programmes mixed,talk]
        [--isa native,avx2] [--strides 4] [--baseline-tree DIR] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_loudness import _default_audioqc, print_table, rss_floor_mb, run_measured  # noqa: E402
from benchmarks.harness import header  # noqa: E402

HERE = Path(__file__).resolve().parent
SR = 48000
GEN_VERSION = 1
CYCLE_S = 600.0
from audiolib.diagnose import SIGNAL_BLOCKS as _SIGNAL  # noqa: E402

SIGNAL_BLOCKS = ",".join(_SIGNAL)
TARGET_X_REALTIME = 100.0
TEXTS = (
    "Audio quality control at collection scale means that every file is measured without a person "
    "listening. Loudness, clipping, silence and the channel format come from the signal itself.",
    "The speech detector marks where people talk, and the quality score predicts what listeners "
    "would say about the sound. Noise, reverberation and codec artefacts all lower it.",
    "A nightly audit of the incoming deliveries writes one row per file into a Parquet report, "
    "which analysts then query to see whether quality drifts over the weeks.",
)
VOICES = ("en", "en-us+f2", "en+m3", "en-gb+f4")


def _decode(path: str, sr: int = SR) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-ac", "2", "-ar", str(sr),
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.float32).reshape(-1, 2).T.copy()


def _speech(seconds: float, tmp: Path) -> np.ndarray:
    parts, total, i = [], 0, 0
    while total < seconds * SR:
        wav = tmp / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", VOICES[i % len(VOICES)], "-s", str(140 + 10 * (i % 4)), "-w", str(wav),
                        TEXTS[i % len(TEXTS)]], check=True, capture_output=True)
        y = _decode(str(wav))
        pause = np.zeros((2, int((0.4 + 0.3 * (i % 3)) * SR)), np.float32)
        parts += [y, pause]
        total += y.shape[1] + pause.shape[1]
        i += 1
    y = np.concatenate(parts, axis=1)[:, : int(seconds * SR)]
    return 0.4 * y / np.max(np.abs(y))


def _music(seconds: float) -> np.ndarray:
    songs = sorted(Path("/usr/share/games/etr/music").glob("*.ogg"))
    if not songs:
        raise SystemExit("needs /usr/share/games/etr/music (apt package extremetuxracer-data; scripts/setup.sh)")
    parts, total = [], 0
    for song in songs:
        y = _decode(str(song))
        parts.append(y)
        total += y.shape[1]
        if total >= seconds * SR:
            break
    y = np.concatenate(parts, axis=1)
    reps = int(np.ceil(seconds * SR / y.shape[1]))
    y = np.tile(y, reps)[:, : int(seconds * SR)]
    return 0.4 * y / np.max(np.abs(y))


#: The programmes (10-minute cycles, repeated): ``mixed`` (the README's since issue 5: 4 min of speech,
#: 3 min of music, 2 min of speech over music, 1 min of room noise; ~50 % speech frames) and ``talk``
#: (issue 19's kind of file, ~76 % speech: 8 min of speech, 1 min of speech over music, 1 min of music).
PROGRAMMES = ("mixed", "talk")


def ensure_programme(workdir: Path, minutes: float, kind: str = "mixed") -> Path:
    if kind not in PROGRAMMES:
        raise ValueError(f"programme {kind!r}: one of {', '.join(PROGRAMMES)}")
    name = "perceptual_programme" if kind == "mixed" else f"perceptual_{kind}"
    path = workdir / f"{name}_{minutes:g}min_g{GEN_VERSION}.wav"
    if path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"generating {path.name} ...", flush=True)
    rng = np.random.default_rng(1770)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if kind == "mixed":
            speech = _speech(360.0, tmp)
            music = _music(300.0)
            bed = music[:, 180 * SR:300 * SR] * 10 ** (-15 / 20)
            over = speech[:, 240 * SR:360 * SR] + bed
            room = (rng.standard_normal((2, 60 * SR)) * 0.003).astype(np.float32)
            cycle = np.concatenate((speech[:, : 240 * SR], music[:, : 180 * SR], over, room), axis=1)
        else:
            speech = _speech(540.0, tmp)
            music = _music(120.0)
            over = speech[:, 480 * SR:540 * SR] + music[:, 60 * SR:120 * SR] * 10 ** (-15 / 20)
            cycle = np.concatenate((speech[:, : 480 * SR], over, music[:, : 60 * SR]), axis=1)
        cycle += (rng.standard_normal(cycle.shape) * 1e-4).astype(np.float32)  # no exact-zero pauses
        cycle_path = tmp / "cycle.wav"
        pcm = (np.clip(cycle, -1, 1) * 32767).astype("<i2").T.tobytes()
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", str(SR), "-ac", "2", "-i", "-",
                        str(cycle_path)], input=pcm, check=True)
        loops = int(np.ceil(minutes * 60 / CYCLE_S))
        partial = tmp / "out.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", str(loops - 1),
                        "-i", str(cycle_path), "-t", str(minutes * 60), "-c", "copy", str(partial)], check=True)
        shutil.move(str(partial), path)
    return path


def _run_case(cmd: list[str], tmp: Path, tag: str, duration_s: float, env: dict | None = None) -> dict:
    r = run_measured(cmd, tmp, tag, env=env)
    ok = r["returncode"] == 0
    case = {"cmd": cmd, "ok": ok, "wall_s": r["wall_s"], "cpu_s": r["user_s"] + r["sys_s"],
            "x_realtime": duration_s / r["wall_s"], "peak_rss_mb": r["peak_rss_mb"]}
    if ok and "--only" not in cmd:
        d = json.loads(r["stdout"])
        case["blocks"] = {k: d[k] for k in ("speech", "music", "other")}
        case["quality_average"] = d["quality_score"]["average"]
        case["noise_average"] = d["noise_score"]["average"]
        case["quality_scored_windows"] = d["quality_score"]["scored_windows"]
        case["speech_percentage"] = d["speech"]["percentage"]
        case["music_percentage"] = d["music"]["percentage"]
    elif not ok:
        case["stderr"] = r["stderr"][-500:]
    return case


#: Targets of issue 19 (one core, default options): x realtime by the level the runs see.
TARGETS = {"AVX2": 100.0, "AMX": 400.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--programmes", default="mixed,talk", help=f"comma-separated, of {', '.join(PROGRAMMES)}")
    ap.add_argument("--isa", default="native,avx2",
                    help="instruction-set levels the runs see, comma-separated: native, avx2, avx512 "
                         "(benchmarks/isa.py: emulated by masking CPUID)")
    ap.add_argument("--strides", default="", help="explicit --quality-stride values to run too (default none)")
    ap.add_argument("--workdir", type=Path, default=HERE / "out")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="also run every case with the code in this checkout (PYTHONPATH), in turn")
    ap.add_argument("--rounds", type=int, default=1, help="times every case runs (default 1)")
    args = ap.parse_args(argv)
    from benchmarks import isa

    print(header("bench_perceptual: full diagnose, perceptual blocks included"), flush=True)
    levels = [lv.strip() for lv in args.isa.split(",") if lv.strip()]
    seen = {}
    for level in levels:
        seen[level] = isa.check(level)
        print(f"  ISA {level}: {isa.describe(level)}", flush=True)
    strides = [int(x) for x in args.strides.split(",") if x.strip()]
    aq = _default_audioqc()
    duration_s = args.minutes * 60.0
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    variants = {"this tree": [aq]}
    if args.baseline_tree is not None:
        # -P: not the working directory first on sys.path (it may be this tree), so PYTHONPATH decides
        variants["baseline"] = ["env", f"PYTHONPATH={args.baseline_tree.resolve()}", sys.executable, "-P", "-m",
                                "audioqc.cli"]
    programmes = {k: ensure_programme(args.workdir, args.minutes, k) for k in args.programmes.split(",")}
    out: dict = {"minutes": args.minutes, "pinned": bool(pin), "rounds": args.rounds, "isa": seen,
                 "baseline_tree": str(args.baseline_tree) if args.baseline_tree else None, "cases": []}
    verdicts = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"peak-RSS measurement floor: {rss_floor_mb(tmp):.1f} MB; "
              f"one core: {'taskset -c 0' if pin else 'NOT pinned'}")
        for kind, path in programmes.items():
            for level in levels:
                env = isa.env(level)
                cases = [("full (defaults)", ["diagnose", str(path)])]
                cases += [(f"full (stride {k})", ["diagnose", str(path), "--quality-stride", str(k)]) for k in strides]
                cases += [("signal blocks only", ["diagnose", str(path), "--only", SIGNAL_BLOCKS])]
                for prefix in variants.values():
                    run_measured(pin + prefix + ["diagnose", str(path), "--end", "20"], tmp, "warmup", env=env)
                runs: dict[tuple[str, str], list[dict]] = {}
                for rnd in range(args.rounds):
                    for name, cmd in cases:
                        for variant, prefix in variants.items():
                            print(f"  {kind}, {seen[level]}, round {rnd + 1}: {name}, {variant} ...", flush=True)
                            case = _run_case(pin + prefix + cmd, tmp, f"{name}_{variant}".replace(" ", "_"), duration_s,
                                             env=env)
                            case.update(case=name, variant=variant, round=rnd + 1, programme=kind, isa=seen[level],
                                        isa_emulated=level != "native")
                            out["cases"].append(case)
                            runs.setdefault((name, variant), []).append(case)
                best = {k: min(v, key=lambda c: c["wall_s"] if c["ok"] else float("inf")) for k, v in runs.items()}
                rows = []
                for name, _ in cases:
                    for variant in variants:
                        c = best[(name, variant)]
                        rows.append([name, variant, f"{c['wall_s']:.1f}", f"{c['x_realtime']:.0f}",
                                     f"{c['peak_rss_mb']:.0f}", str(c.get("quality_scored_windows", "-")),
                                     str(c.get("quality_average", "-")), str(c.get("noise_average", "-")),
                                     " ".join(f"{r['wall_s']:.1f}" for r in runs[(name, variant)]),
                                     "ok" if all(r["ok"] for r in runs[(name, variant)]) else "FAILED"])
                full = best[(cases[0][0], "this tree")]
                print(f"\n=== {kind} programme, {args.minutes:g} min stereo 48 kHz WAV, one core, "
                      f"{seen[level]}{' (emulated)' if level != 'native' else ''}; fastest of {args.rounds}"
                      + (f"; speech {full.get('speech_percentage')} %, music {full.get('music_percentage')} %"
                         if full["ok"] else "") + " ===")
                print_table(["case", "code", "wall s", "x-realtime", "peak RSS MB", "DNSMOS windows", "quality avg",
                             "noise avg", "every round s", "status"], rows)
                if "baseline" in variants:
                    for name, _ in cases:
                        per_round = [b["wall_s"] / a["wall_s"] for a, b in
                                     zip(runs[(name, "this tree")], runs[(name, "baseline")], strict=True)]
                        fastest = best[(name, "baseline")]["wall_s"] / best[(name, "this tree")]["wall_s"]
                        out.setdefault("speedup", {})[f"{kind} {seen[level]} {name}"] = {
                            "fastest": fastest, "per_round": per_round}
                        print(f"  baseline / this tree, {name}: {fastest:.2f}x fastest against fastest; per round "
                              + ", ".join(f"{r:.2f}x" for r in per_round))
                target = TARGETS.get(seen[level])
                if full["ok"] and target:
                    verdict = "meets" if full["x_realtime"] >= target else "misses"
                    emulated = " (emulated on this CPU)" if level != "native" else ""
                    line = (f"{kind}, {seen[level]}{emulated}: full diagnose "
                            f"{full['x_realtime']:.0f}x realtime [{verdict} target >= {target:.0f}x]")
                    verdicts.append(line)
    print("\n" + "\n".join(verdicts))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0 if all(c["ok"] for c in out["cases"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
