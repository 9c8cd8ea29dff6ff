#!/usr/bin/env python3
"""Benchmark the loudness remedy (:mod:`audiolib.normalize`) against FFmpeg ``loudnorm`` two-pass.

In one run, on the same files, for each (file, target, ceiling):

* **audioqc**, in one process as an audit worker runs it: decode with ``audiolib.io.stream`` and
  measure with the project's loudness meter (the ``measure`` step: it stands for the diagnose's
  measurement, which an audit already has, so it is timed apart), then
  :func:`audiolib.normalize.normalize_file` (decode, gain + true-peak limiter, measure the output on
  the fly, a correcting pass over the written output if it is off by more than 0.05 LU, FLAC out
  through ``audiolib.io``'s streaming writer, 24-bit for the 24-bit and lossy inputs): the
  ``remedy`` step. The process's own wall time (start-up and imports too)
  is what the speed ratio uses.
* **loudnorm** the way ffmpeg-normalize runs it (``--keep-lra-above-loudness-range-target``, so
  linear mode is not refused for a wide LRA; ``-ar`` the input rate): pass 1
  ``loudnorm=I=..:TP=..:LRA=7:offset=0:print_format=json`` to null, pass 2 with ``measured_I``,
  ``measured_TP``, ``measured_LRA``, ``measured_thresh``, ``offset``, ``linear=true``, 24-bit FLAC
  out. loudnorm itself falls back to its dynamic mode where the linear gain would break the TP
  limit; the table says which mode it used.

Each run is its own child process, reaped with ``os.wait4`` (exact peak RSS: ru_maxrss).
FFmpeg's ``ebur128=peak=true`` judges both outputs (integrated loudness from its frame metadata,
3 decimals; true peak from its linear metadata, 3 decimals). ``--codec-check`` also encodes the
audioqc outputs for one target (-16/-1, where the limiter works) to AAC and MP3 (128 kb/s) and
reads their true peak: what a lossy encode after the remedy adds (the reason for
``codec_margin_db``).

Material (generated once into ``--workdir``, git-ignored): espeak-ng speech, recorded music (the
Debian package extremetuxracer-data, 44.1 kHz) and a speech-over-music mix, each made too loud
(sample peak 0 dBFS) and encoded as 24-bit WAV, FLAC, MP3 and AAC (192 kb/s); plus one long
generated programme (``--long-minutes``, FLAC, benchmarks/bench_loudness.py's generator) for speed.

Run pinned to one core, as docs/normalize.md's figures were::

    taskset -c 0 .venv/bin/python benchmarks/bench_remedy.py --json benchmarks/out/remedy.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOUDNORM_LRA = 7.0  # ffmpeg-normalize's default loudness range target
class _WriteArgs(TypedDict, total=False):
    """Keywords of :func:`audiolib.io.write`."""

    codec: str
    sample_fmt: str
    bit_rate: int


CODECS: dict[str, tuple[str, _WriteArgs]] = {  # name: (extension, audiolib.io.write keywords)
    "wav": ("wav", _WriteArgs(codec="pcm_s24le", sample_fmt="s32")),
    "flac": ("flac", _WriteArgs(codec="flac", sample_fmt="s32")),
    "mp3": ("mp3", _WriteArgs(codec="libmp3lame", bit_rate=192000)),
    "aac": ("m4a", _WriteArgs(codec="aac", bit_rate=192000)),
}
MUSIC_TRACKS = ("race1-jt.ogg", "freezingpoint.ogg", "credits1-cp.ogg", "options1-jt.ogg")


# --------------------------------------------------------------------------------------------
# the judge
# --------------------------------------------------------------------------------------------
def ebur128_precise(path: str) -> dict[str, float]:
    """FFmpeg's ``ebur128=peak=true`` reading of ``path``'s first audio stream.

    The summary prints one decimal; the frame metadata (``metadata=1``) has the running integrated
    loudness with three (the last frame's is the summary's value) and the running true peak,
    linear, with three (0.001 at -1 dBTP is 0.01 dB).

    Returns
    -------
    dict
        ``I`` (LUFS, -inf for silence), ``TP`` (dBTP, -inf for silence), ``I_summary`` and
        ``TP_summary`` (the summary's one-decimal values, for reference).
    """
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", path, "-map", "0:a:0", "-af",
         "ebur128=peak=true:metadata=1,ametadata=mode=print:file=/dev/stdout", "-f", "null", "-"],
        capture_output=True, text=True, check=True)
    lufs = re.findall(r"lavfi\.r128\.I=(-?[\d.]+|-?inf)", proc.stdout)
    peaks = [float(v) for v in re.findall(r"lavfi\.r128\.true_peak=([\d.]+)", proc.stdout)]
    summary = proc.stderr[proc.stderr.rindex("Summary:"):]
    s_i = re.search(r"I:\s+(-?[\d.]+|-inf)\s+LUFS", summary)
    s_tp = re.search(r"Peak:\s+(-?[\d.]+|-inf)\s+dBFS", summary)
    top = max(peaks) if peaks else 0.0
    return {
        "I": float(lufs[-1]) if lufs else -math.inf,
        "TP": 20.0 * math.log10(top) if top > 0 else -math.inf,
        "I_summary": float(s_i.group(1)) if s_i else math.nan,
        "TP_summary": float(s_tp.group(1)) if s_tp else math.nan,
    }


# --------------------------------------------------------------------------------------------
# children (run as subprocesses, timed)
# --------------------------------------------------------------------------------------------
def child_measure(path: str) -> dict[str, Any]:
    """Decode with audiolib.io.stream and measure with the project's meter (the diagnose's part)."""
    from audiolib import io
    from audiolib.loudness import LoudnessMeter

    with io.stream(path) as s:
        meter = LoudnessMeter(s.sample_rate, s.channel_names)
        for block in s:
            meter.push(block)
    r = meter.result()
    return {"I": r.integrated_lufs, "TP": r.true_peak_dbtp, "duration_s": r.duration_s}


def child_remedy(path: str, dest: str, target: float, ceiling: float) -> dict[str, Any]:
    """One process, as an audit worker runs it: the measurement (the diagnose's), then the remedy;
    each step timed apart."""
    import time

    from audiolib.normalize import normalize_file

    t0 = time.perf_counter()
    meas = child_measure(path)
    t1 = time.perf_counter()
    measured = meas["I"] if meas["I"] is not None and math.isfinite(meas["I"]) else None
    res = normalize_file(path, dest, measured_lufs=measured, target_lufs=target, true_peak_max_dbtp=ceiling,
                         format="flac").to_dict()
    t2 = time.perf_counter()
    return {"measured": meas, "result": res, "measure_s": t1 - t0, "remedy_s": t2 - t1}


# --------------------------------------------------------------------------------------------
# material
# --------------------------------------------------------------------------------------------
def _peak_normalise(y):
    import numpy as np

    return (y / np.abs(y).max()).astype(np.float32)


def make_material(workdir: Path, minutes: float) -> list[tuple[str, str, Path]]:
    """(material, codec, path) for speech, music and mix in every codec; generated once."""
    import numpy as np
    import soxr

    from audiolib import io
    from testing.material.media import REAL_MUSIC_DIR

    workdir.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, str, Path]] = []
    tag = f"{minutes:g}min"
    needed = {(m, c): workdir / f"{m}_{tag}.{CODECS[c][0]}" for m in ("speech", "music", "mix") for c in CODECS}
    if not all(p.exists() for p in needed.values()):
        sys.path.insert(0, str(REPO))
        from tests.conftest import espeak_speech

        seconds = minutes * 60.0
        speech = espeak_speech(seconds)  # mono 48 kHz, deterministic
        parts = []
        for name in MUSIC_TRACKS:
            with io.stream(os.path.join(REAL_MUSIC_DIR, name)) as s:
                y = np.concatenate(list(s), axis=1)
                if s.sample_rate != 44100:
                    y = soxr.resample(y.T, s.sample_rate, 44100).T
                parts.append(y.astype(np.float32))
        music = np.concatenate(parts, axis=1)
        while music.shape[1] < seconds * 44100:
            music = np.concatenate([music, music], axis=1)
        music = music[:, : int(seconds * 44100)]
        music48 = soxr.resample(music.T, 44100, 48000).T.astype(np.float32)[:, : speech.size]
        mix = 0.25 * music48 / np.abs(music48).max() + speech[np.newaxis, :]
        signals = {"speech": (speech[np.newaxis, :], 48000), "music": (music, 44100), "mix": (mix, 48000)}
        for (m, c), path in needed.items():
            if not path.exists():
                y, sr = signals[m]
                tmp = path.with_name("partial_" + path.name)
                io.write(str(tmp), _peak_normalise(y), sr, **CODECS[c][1])
                os.replace(tmp, path)
    for (m, c), path in needed.items():
        out.append((m, c, path))
    return out


def long_file(workdir: Path, minutes: float) -> Path:
    from benchmarks.bench_loudness import ensure_file

    return ensure_file(workdir, minutes, "flac", 1770, shutil.which("ffmpeg") or "ffmpeg")


# --------------------------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------------------------
def _measured(cmd: list[str], tmp: Path, tag: str) -> dict[str, Any]:
    from benchmarks.bench_loudness import run_measured

    run = run_measured(cmd, tmp, tag)
    if run["returncode"] != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({run['returncode']}): {run['stderr'][-800:]}")
    return run


def _loudnorm_json(stderr: str) -> dict[str, Any]:
    start = stderr.rindex("{")
    return json.loads(stderr[start:stderr.index("}", start) + 1])


def run_audioqc(path: Path, dest: Path, target: float, ceiling: float, tmp: Path) -> dict[str, Any]:
    me = [sys.executable, str(Path(__file__).resolve())]
    run = _measured([*me, "_remedy", str(path), str(dest), "--target", repr(target), "--ceiling", repr(ceiling)],
                    tmp, "aq_remedy")
    out = json.loads(run["stdout"])
    return {"process": run, **out, "judge": ebur128_precise(str(dest))}


def run_loudnorm(path: Path, dest: Path, sr: int, target: float, ceiling: float, tmp: Path) -> dict[str, Any]:
    ff = shutil.which("ffmpeg") or "ffmpeg"
    p1 = _measured([ff, "-nostdin", "-hide_banner", "-y", "-i", str(path), "-map", "0:a:0", "-filter_complex",
                    f"loudnorm=i={target}:lra={LOUDNORM_LRA}:tp={ceiling}:offset=0.0:print_format=json",
                    "-vn", "-sn", "-f", "null", os.devnull], tmp, "ln_pass1")
    st = _loudnorm_json(p1["stderr"])
    lra = max(LOUDNORM_LRA, float(st["input_lra"]))  # --keep-lra-above-loudness-range-target

    def clamp(v: Any, lo: float, hi: float) -> float:
        return min(max(float(v), lo), hi)

    opts = (f"loudnorm=i={target}:lra={lra}:tp={ceiling}:offset={clamp(st['target_offset'], -99, 99)}"
            f":measured_i={clamp(st['input_i'], -99, 0)}:measured_lra={clamp(st['input_lra'], 0, 99)}"
            f":measured_tp={clamp(st['input_tp'], -99, 99)}:measured_thresh={clamp(st['input_thresh'], -99, 0)}"
            ":linear=true:print_format=json")
    p2 = _measured([ff, "-nostdin", "-hide_banner", "-y", "-i", str(path), "-map", "0:a:0", "-filter_complex", opts,
                    "-ar", str(sr), "-c:a", "flac", "-sample_fmt", "s32", str(dest)], tmp, "ln_pass2")
    st2 = _loudnorm_json(p2["stderr"])
    return {"pass1": p1, "pass2": p2, "mode": st2.get("normalization_type", "?"), "judge": ebur128_precise(str(dest))}


def codec_check(path: Path, tmp: Path) -> dict[str, float]:
    """True peak after a lossy encode of the remedy's output (128 kb/s)."""
    out = {}
    for name, args, ext in (("aac", ["-c:a", "aac", "-b:a", "128k"], "m4a"),
                            ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"], "mp3")):
        dest = tmp / f"codec_check.{ext}"
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(path), *args,
                        str(dest)], check=True)
        out[name] = ebur128_precise(str(dest))["TP"]
    return out


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------



def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def report(rows: list[dict[str, Any]]) -> None:
    head = ["file", "codec", "min", "target", "aq I err", "aq TP", "lim %", "corr", "aq meas s/h", "aq rem s/h",
            "aq proc s/h", "aq RSS MB", "ln mode", "ln I err", "ln TP", "ln p1 s/h", "ln p2 s/h", "ln RSS MB",
            "x total"]
    table = [head]
    for r in rows:
        h = r["duration_s"] / 3600.0
        aq, ln = r["audioqc"], r["loudnorm"]
        p1, p2 = ln["pass1"]["wall_s"], ln["pass2"]["wall_s"]
        table.append([
            r["material"], r["codec"], f"{r['duration_s'] / 60:.1f}", f"{r['target']:g}/{r['ceiling']:g}",
            f"{aq['judge']['I'] - r['target']:+.3f}", _fmt(aq["judge"]["TP"], "+.2f"),
            f"{100 * aq['result']['limited_fraction']:.1f}", str(aq["result"]["correction_passes"]),
            f"{aq['measure_s'] / h:.1f}", f"{aq['remedy_s'] / h:.1f}", f"{aq['process']['wall_s'] / h:.1f}",
            f"{aq['process']['peak_rss_mb']:.0f}",
            ln["mode"], f"{ln['judge']['I'] - r['target']:+.3f}", _fmt(ln["judge"]["TP"], "+.2f"),
            f"{p1 / h:.1f}", f"{p2 / h:.1f}", f"{max(ln['pass1']['peak_rss_mb'], ln['pass2']['peak_rss_mb']):.0f}",
            f"{(p1 + p2) / aq['process']['wall_s']:.1f}",
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print()

    def err(r: dict[str, Any], peer: str) -> float:
        return abs(r[peer]["judge"]["I"] - r["target"])

    worse = [r for r in rows if err(r, "audioqc") > err(r, "loudnorm")]
    print(f"I error (FFmpeg ebur128): audioqc max {max(err(r, 'audioqc') for r in rows):.3f} LU, "
          f"loudnorm max {max(err(r, 'loudnorm') for r in rows):.3f} LU")
    print(f"files where audioqc's I error is larger than loudnorm's: {len(worse)} "
          + (", ".join(f"{r['material']}/{r['codec']}@{r['target']:g} ({err(r, 'audioqc'):.3f} vs "
                       f"{err(r, 'loudnorm'):.3f})" for r in worse) or "none"))
    print(f"TP above the ceiling: audioqc {sum(r['audioqc']['judge']['TP'] > r['ceiling'] for r in rows)}, "
          f"loudnorm {sum(r['loudnorm']['judge']['TP'] > r['ceiling'] for r in rows)} of {len(rows)}")
    aq_all = sum(r["audioqc"]["process"]["wall_s"] for r in rows)
    ln_all = sum(r["loudnorm"]["pass1"]["wall_s"] + r["loudnorm"]["pass2"]["wall_s"] for r in rows)
    ratios = [(r["loudnorm"]["pass1"]["wall_s"] + r["loudnorm"]["pass2"]["wall_s"]) / r["audioqc"]["process"]["wall_s"]
              for r in rows]
    linear = [x for r, x in zip(rows, ratios, strict=True) if r["loudnorm"]["mode"] == "linear"]
    print(f"speed, loudnorm (pass 1 + 2) time / audioqc process time (measure + remedy + start-up): all files "
          f"{ln_all / aq_all:.1f}x, per file {min(ratios):.1f}x .. {max(ratios):.1f}x"
          + (f" ({min(linear):.1f}x .. {max(linear):.1f}x where loudnorm stayed linear)" if linear else ""))
    startup = [r["audioqc"]["process"]["wall_s"] - r["audioqc"]["measure_s"] - r["audioqc"]["remedy_s"] for r in rows]
    print(f"audioqc process start-up and imports: {min(startup):.2f} .. {max(startup):.2f} s a file")
    checks = [r for r in rows if r.get("codec_check")]
    if checks:
        print("\ntrue peak after a 128 kb/s lossy encode of the remedy's output (dBTP; the increase):")
        for r in checks:
            cc, tp = r["codec_check"], r["audioqc"]["judge"]["TP"]
            print(f"  {r['material']}/{r['codec']} @ {r['target']:g}/{r['ceiling']:g}: {tp:+.2f} -> "
                  f"AAC {cc['aac']:+.2f} ({cc['aac'] - tp:+.2f}), MP3 {cc['mp3']:+.2f} ({cc['mp3'] - tp:+.2f})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(REPO))
    if argv and argv[0] == "_measure":
        print(json.dumps(child_measure(argv[1])))
        return 0
    if argv and argv[0] == "_remedy":
        p = argparse.ArgumentParser()
        p.add_argument("src")
        p.add_argument("dest")
        p.add_argument("--target", type=float)
        p.add_argument("--ceiling", type=float)
        a = p.parse_args(argv[1:])
        print(json.dumps(child_remedy(a.src, a.dest, a.target, a.ceiling)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="length of the speech/music/mix files (default 3)")
    p.add_argument("--long-minutes", type=float, default=60.0, help="the long generated file (default 60; 0: none)")
    p.add_argument("--targets", default="-23:-1,-16:-1", help="target:ceiling pairs (default -23:-1,-16:-1)")
    p.add_argument("--codecs", default=",".join(CODECS), help="input codecs (default wav,flac,mp3,aac)")
    p.add_argument("--codec-check", action=argparse.BooleanOptionalAction, default=True,
                   help="encode the remedy's outputs for --codec-check-target to AAC/MP3, read their true peak")
    p.add_argument("--codec-check-target", type=float, default=-16.0,
                   help="target whose outputs get the codec check (default -16: the limiter works there)")
    p.add_argument("--workdir", type=Path, default=HERE / "out" / "remedy")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    targets = [tuple(float(v) for v in pair.split(":")) for pair in args.targets.split(",")]
    codecs = args.codecs.split(",")

    print(f"CPU: {cpu_model()}; affinity {sorted(os.sched_getaffinity(0))}; python {platform.python_version()}; "
          f"{subprocess.run(['ffmpeg', '-version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    files = [(m, c, path) for m, c, path in make_material(args.workdir, args.minutes) if c in codecs]
    runs = [(m, c, path, t, ce) for m, c, path in files for t, ce in targets]
    if args.long_minutes > 0:
        runs.append(("long-programme", "flac", long_file(args.workdir, args.long_minutes), -23.0, -1.0))
    tmp = args.workdir / "run"
    tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for material, codec, path, target, ceiling in runs:
        from audiolib.io import probe

        info = probe(str(path))
        sr = info.audio.sample_rate_hz
        with open(path, "rb") as fh:  # warm the page cache for both peers
            while fh.read(1 << 24):
                pass
        t0 = time.perf_counter()
        aq = run_audioqc(path, tmp / "aq_out.flac", target, ceiling, tmp)
        ln = run_loudnorm(path, tmp / "ln_out.flac", sr, target, ceiling, tmp)
        row = {"material": material, "codec": codec, "path": str(path), "target": target, "ceiling": ceiling,
               "sample_rate": sr, "duration_s": aq["measured"]["duration_s"], "audioqc": aq, "loudnorm": ln}
        if args.codec_check and target == args.codec_check_target and material != "long-programme":
            row["codec_check"] = codec_check(tmp / "aq_out.flac", tmp)
        rows.append(row)
        print(
            f"  {material}/{codec} @ {target:g}/{ceiling:g}: "
            f"audioqc I {aq['judge']['I']:.3f} TP {aq['judge']['TP']:.2f}"
            f" | loudnorm ({ln['mode']}) I {ln['judge']['I']:.3f} TP {ln['judge']['TP']:.2f}"
            f"  [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
    print()
    report(rows)
    if args.json:
        def strip(d: Any) -> Any:
            if isinstance(d, dict):
                return {k: strip(v) for k, v in d.items() if k not in ("stdout", "stderr")}
            return d
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "rows": strip(rows)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
