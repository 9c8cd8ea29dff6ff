#!/usr/bin/env python3
"""Benchmark ``audioqc loudness`` against ffmpeg's ebur128 filter and pyloudnorm.

What it does, in one run:

1. Generates (or reuses) a deterministic, seeded, programme-like stereo 48 kHz test file of
   ``--minutes`` minutes: band-limited, partly correlated noise plus gliding tones, under a gain
   envelope of "scenes" (normal / loud / quiet / very quiet passages, ramped) with slow modulation.
   It is generated in 10 s chunks and streamed to disk (``wave`` for WAV, ffmpeg's stdin for
   flac / aac / mp3), so generation needs little memory whatever the duration.
2. Warms up audioqc (numba compiles its kernels on the first call on a machine) on a short file,
   and reads the test file once so every peer sees a warm page cache.
3. Times three peers on the same file, each as its own child process, reaped with ``os.wait4``
   so ``ru_maxrss`` is that child's own peak RSS (exact, no polling).  Peers are spawned by a
   tiny launcher process, not by this script (see ``LAUNCHER`` for why):
     * ``audioqc loudness FILE``
     * ``ffmpeg -nostats -hide_banner -i FILE -af ebur128=peak=true -f null -`` (summary parsed)
     * pyloudnorm: ``python -c`` reading with soundfile, ``Meter(sr).integrated_loudness`` and
       ``loudness_range`` (if present).  pyloudnorm has no true peak.
4. Prints a table, speed ratios, the audioqc peak-RSS check (< 200 MB) and audioqc - ffmpeg
   differences.  ``--memory-sweep`` also runs audioqc alone on 10 / 60 / 180 minute files.

Timings are reported, never asserted: the exit status is non-zero only if the benchmark itself
crashes or a peer that was run failed (non-zero exit or unparseable output).

Examples::

    .venv/bin/python benchmarks/bench_loudness.py --minutes 10
    .venv/bin/python benchmarks/bench_loudness.py --memory-sweep --json benchmarks/out/bench.json
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
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

SR = 48_000
CHANNELS = 2
CHUNK_S = 10.0
CTRL = 48  # control-rate block (1 ms at 48 kHz)
GEN_VERSION = 2  # bump when the generator changes, so cached files are not reused
SWEEP_MINUTES = (10, 60, 180)
RSS_LIMIT_MB = 200.0

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import cpu_model, print_table, rss_floor_mb, run_measured  # noqa: E402,F401
from benchmarks.harness import default_audioqc as _default_audioqc  # noqa: E402,F401

CODECS = {
    # codec: (extension, ffmpeg args for encoding from s16le stdin; None = write with `wave`)
    "wav": ("wav", None),
    "flac": ("flac", ["-c:a", "flac", "-f", "flac"]),
    "aac": ("m4a", ["-c:a", "aac", "-b:a", "192k", "-f", "ipod"]),
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"]),
}

# --------------------------------------------------------------------------------------------
# Test-signal generation
# --------------------------------------------------------------------------------------------


def _scene_breakpoints(duration_s: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Piecewise-linear gain envelope (seconds, dB) and tone-mix fraction per breakpoint."""
    rng = np.random.default_rng([seed, 0xE1])
    kinds = ["normal", "loud", "quiet", "very_quiet"]
    probs = [0.55, 0.20, 0.18, 0.07]
    # per-channel RMS-ish levels in dBFS (stereo + K-weighting put LUFS roughly 3-5 dB higher)
    levels = {"normal": (-31.0, -26.0), "loud": (-25.0, -21.0), "quiet": (-39.0, -35.0),
              "very_quiet": (-55.0, -48.0)}
    ramp = 1.5
    ts: list[float] = [0.0]
    dbs: list[float] = []
    mixes: list[float] = []
    t = 0.0
    first = True
    while t < duration_s + 1.0:
        kind = "normal" if first else str(rng.choice(kinds, p=probs))
        first = False
        length = float(rng.uniform(12.0, 110.0) if kind != "very_quiet" else rng.uniform(4.0, 20.0))
        level = float(rng.uniform(*levels[kind]))
        mix = float(rng.uniform(0.05, 0.6))  # share of tonal content
        if not dbs:
            dbs.append(level)
            mixes.append(mix)
        else:  # ramp from the previous level to this one
            ts.append(t + ramp)
            dbs.append(level)
            mixes.append(mix)
        t += length
        ts.append(t)
        dbs.append(level)
        mixes.append(mix)
    return np.asarray(ts), np.asarray(dbs), np.asarray(mixes)


class ProgrammeGenerator:
    """Streams deterministic programme-like stereo audio in chunks (float64, -1..1)."""

    def __init__(self, duration_s: float, seed: int) -> None:
        from scipy import signal

        self.total = int(round(duration_s * SR))
        self.seed = seed
        self.bp_t, self.bp_db, self.bp_mix = _scene_breakpoints(duration_s, seed)
        # band-limited noise: 2nd-order HP at 60 Hz, 4th-order LP at 5 kHz, gentle presence dip
        self.sos = np.vstack([
            signal.butter(2, 60.0, "highpass", fs=SR, output="sos"),
            signal.butter(4, 5000.0, "lowpass", fs=SR, output="sos"),
        ])
        # unit-RMS normalisation of the filtered noise (measured once, deterministic)
        probe = signal.sosfilt(self.sos, np.random.default_rng([seed, 0xF0]).standard_normal(SR * 4))
        self.noise_gain = 1.0 / float(np.sqrt(np.mean(probe[SR:] ** 2)))
        self.zi = np.zeros((3, self.sos.shape[0], 2))  # three noise streams: common, left, right
        self._signal = signal
        rng = np.random.default_rng([seed, 0x70])
        self.tone_base = rng.uniform([110.0, 330.0, 990.0], [220.0, 660.0, 1980.0])
        self.tone_rate = rng.uniform(1 / 90, 1 / 20, size=3)  # glide LFO rates (Hz)
        self.tone_phi = rng.uniform(0, 2 * np.pi, size=3)
        self.tone_amp = np.array([0.7, 0.5, 0.3])
        self.tone_amp /= np.sqrt(np.sum(self.tone_amp**2) / 2)  # ~unit RMS sum
        self.phase = np.zeros(3)
        self.lfo_phi = rng.uniform(0, 2 * np.pi, size=3)
        self.pos = 0

    def chunks(self):
        index = 0
        chunk = int(CHUNK_S * SR)
        while self.pos < self.total:
            n = min(chunk, self.total - self.pos)
            yield self._chunk(index, n)
            self.pos += n
            index += 1

    def _chunk(self, index: int, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, index])
        white = rng.standard_normal((3, n), dtype=np.float32)
        noise = np.empty((3, n))
        for k in range(3):
            noise[k], self.zi[k] = self._signal.sosfilt(self.sos, white[k], zi=self.zi[k])
        noise *= self.noise_gain
        a, b = math.sqrt(0.7), math.sqrt(0.3)  # inter-channel noise correlation 0.7
        n_l = a * noise[0] + b * noise[1]
        n_r = a * noise[0] + b * noise[2]

        # slowly varying controls are computed at a 1 kHz control rate and held per 1 ms block
        nc = -(-n // CTRL)
        tc = (self.pos + np.arange(nc) * CTRL) / SR

        def hold(x: np.ndarray) -> np.ndarray:
            return np.repeat(x, CTRL)[:n]

        # gliding tones, phase-continuous across chunks
        tones_l = np.zeros(n)
        tones_r = np.zeros(n)
        for k in range(3):
            f = self.tone_base[k] * (1.0 + 0.25 * np.sin(2 * np.pi * self.tone_rate[k] * tc + self.tone_phi[k]))
            ph = self.phase[k] + np.cumsum(hold(2 * np.pi * f / SR))
            self.phase[k] = float(ph[-1] % (2 * np.pi))
            s = self.tone_amp[k] * np.sin(ph)
            pan = 0.5 + 0.3 * (k - 1)
            tones_l += s * math.sqrt(2 * (1 - pan))
            tones_r += s * math.sqrt(2 * pan)

        mix = np.interp(tc, self.bp_t, self.bp_mix)
        db = np.interp(tc, self.bp_t, self.bp_db)
        # slow level drift plus a syllabic-ish 3.7 Hz flutter on the noise part
        db = db + 2.5 * np.sin(2 * np.pi * tc / 37.0 + self.lfo_phi[0]) \
                + 1.2 * np.sin(2 * np.pi * tc / 7.3 + self.lfo_phi[1])
        flutter = 1.0 + 0.35 * np.sin(2 * np.pi * 3.7 * tc + self.lfo_phi[2])
        g = 10.0 ** (db / 20.0)
        wn = hold(g * np.sqrt(1.0 - mix) * flutter / math.sqrt(1 + 0.35**2 / 2))
        wt = hold(g * np.sqrt(mix))
        out = np.empty((n, 2))
        out[:, 0] = wn * n_l + wt * tones_l
        out[:, 1] = wn * n_r + wt * tones_r
        return _soft_clip(out)


def _soft_clip(x: np.ndarray, knee: float = 0.8, ceiling: float = 0.995) -> np.ndarray:
    mag = np.abs(x)
    over = mag > knee
    if np.any(over):
        span = ceiling - knee
        x[over] = np.sign(x[over]) * (knee + span * np.tanh((mag[over] - knee) / span))
    return x


def _to_s16(x: np.ndarray) -> bytes:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()


def test_file_path(workdir: Path, minutes: float, codec: str, seed: int) -> Path:
    ext = CODECS[codec][0]
    return workdir / f"programme_{minutes:g}min_s{seed}_g{GEN_VERSION}.{ext}"


def generate(path: Path, minutes: float, codec: str, seed: int, ffmpeg: str, quiet: bool = False) -> float:
    """Write the test file (atomically: temp name, then rename). Returns generation seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    t0 = time.perf_counter()
    gen = ProgrammeGenerator(minutes * 60.0, seed)
    enc_args = CODECS[codec][1]
    if not quiet:
        print(f"generating {path.name} ({minutes:g} min, {codec}) ...", flush=True)
    if enc_args is None:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(CHANNELS)
            w.setsampwidth(2)
            w.setframerate(SR)
            for block in gen.chunks():
                w.writeframesraw(_to_s16(block))
    else:
        cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-f", "s16le", "-ar", str(SR), "-ac", str(CHANNELS),
               "-i", "pipe:0", *enc_args, str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        try:
            for block in gen.chunks():
                proc.stdin.write(_to_s16(block))
        finally:
            proc.stdin.close()
            rc = proc.wait()
        if rc != 0:
            raise RuntimeError(f"ffmpeg encoding of {path.name} failed (exit {rc})")
    os.replace(tmp, path)
    dt = time.perf_counter() - t0
    if not quiet:
        size = path.stat().st_size / 1e6
        print(f"  done in {dt:.1f} s ({size:.0f} MB)", flush=True)
    return dt


def ensure_file(workdir: Path, minutes: float, codec: str, seed: int, ffmpeg: str, quiet: bool = False) -> Path:
    path = test_file_path(workdir, minutes, codec, seed)
    if path.exists():
        if not quiet:
            print(f"reusing {path.name} ({path.stat().st_size / 1e6:.0f} MB)", flush=True)
    else:
        generate(path, minutes, codec, seed, ffmpeg, quiet=quiet)
    return path


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(16 << 20):
            pass


# --------------------------------------------------------------------------------------------
# Running peers
# --------------------------------------------------------------------------------------------


# Why a launcher: on Linux a child's ru_maxrss is never below the RSS high-water mark of the
# address space it exec'd from.  subprocess / posix_spawn use vfork, so a peer spawned directly
# from this script would report max(peer, this script's own peak RSS) -- hundreds of MB after
# generating a test file.  Each peer is therefore spawned by a tiny launcher process (plain
# python -S, ~10 MB), which reaps it with os.wait4 and reports the peer's rusage as JSON.
def parse_audioqc(run: dict[str, Any]) -> dict[str, Any]:
    d = json.loads(run["stdout"])
    return {"I": d.get("measured"), "LRA": d.get("range"), "TP": d.get("true_peak"), "raw": d}


_NUM = r"(-?(?:\d+(?:\.\d*)?|inf|nan))"


def parse_ffmpeg(run: dict[str, Any]) -> dict[str, Any]:
    text = run["stderr"]
    pos = text.rfind("Summary:")
    if pos < 0:
        raise ValueError("no ebur128 Summary in ffmpeg output")
    summary = text[pos:]

    def grab(pattern: str) -> float | None:
        m = re.search(pattern, summary)
        return float(m.group(1)) if m else None

    res = {
        "I": grab(r"I:\s+" + _NUM + r" LUFS"),
        "LRA": grab(r"LRA:\s+" + _NUM + r" LU"),
        "TP": grab(r"True peak:\s+Peak:\s+" + _NUM + r" dBFS"),
    }
    if res["I"] is None:
        raise ValueError("could not parse integrated loudness from ffmpeg summary")
    res["raw"] = summary.strip()
    return res


PYLN_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import soundfile as sf
import pyloudnorm as pyln
t1 = time.perf_counter()
data, sr = sf.read(sys.argv[1], always_2d=True)
t2 = time.perf_counter()
meter = pyln.Meter(sr)
I = meter.integrated_loudness(data)
t3 = time.perf_counter()
lra = meter.loudness_range(data) if hasattr(meter, "loudness_range") else None
t4 = time.perf_counter()
f = lambda v: None if v is None else float(v)
print(json.dumps({"I": f(I), "LRA": f(lra), "import_s": t1 - t0, "read_s": t2 - t1,
                  "integrated_s": t3 - t2, "lra_s": t4 - t3, "dtype": str(data.dtype)}))
"""


def parse_pyloudnorm(run: dict[str, Any]) -> dict[str, Any]:
    d = json.loads(run["stdout"].strip().splitlines()[-1])
    return {"I": d.get("I"), "LRA": d.get("LRA"), "TP": None, "raw": d}


def measure_peer(name: str, cmd: list[str], parser, tmpdir: Path, repeat: int) -> dict[str, Any]:
    runs = []
    for i in range(repeat):
        print(f"  running {name} ({i + 1}/{repeat}) ...", flush=True)
        runs.append(run_measured(cmd, tmpdir, f"{name}-{i}"))
    best = min(runs, key=lambda r: r["wall_s"])
    result: dict[str, Any] = {
        "peer": name,
        "cmd": cmd,
        "wall_s": best["wall_s"],
        "wall_s_all": [r["wall_s"] for r in runs],
        "user_s": best["user_s"],
        "sys_s": best["sys_s"],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "ok": all(r["returncode"] == 0 for r in runs),
        "returncode": next((r["returncode"] for r in runs if r["returncode"] != 0), 0),
    }
    if not result["ok"]:
        bad = next(r for r in runs if r["returncode"] != 0)
        result["error"] = (bad["stderr"].strip().splitlines() or ["(no stderr)"])[-1][:500]
        return result
    try:
        parsed = parser(best)
    except Exception as exc:  # report, do not crash the benchmark
        result["ok"] = False
        result["error"] = f"unparseable output: {type(exc).__name__}: {exc}"
        return result
    result.update({k: parsed[k] for k in ("I", "LRA", "TP")})
    result["details"] = parsed["raw"]
    return result


def audioqc_cmd(args: argparse.Namespace, path: Path) -> list[str]:
    return [args.audioqc, "loudness", str(path)]


def ffmpeg_cmd(args: argparse.Namespace, path: Path) -> list[str]:
    return [args.ffmpeg, "-nostats", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true", "-f", "null", "-"]


def pyloudnorm_cmd(args: argparse.Namespace, path: Path) -> list[str]:
    return [args.python, "-c", PYLN_SCRIPT, str(path)]


def warm_up_audioqc(args: argparse.Namespace, tmpdir: Path) -> dict[str, Any]:
    """First call compiles numba kernels; do it untimed on a short file, then time one call
    on the same file to show audioqc's fixed per-call overhead (interpreter + imports)."""
    path = ensure_file(args.workdir, 5 / 60, "wav", args.seed, args.ffmpeg, quiet=True)
    first = run_measured(audioqc_cmd(args, path), tmpdir, "warmup-0")
    second = run_measured(audioqc_cmd(args, path), tmpdir, "warmup-1")
    if first["returncode"] != 0 or second["returncode"] != 0:
        bad = first if first["returncode"] != 0 else second
        print(f"WARNING: audioqc warm-up failed (exit {bad['returncode']}): {bad['stderr'].strip()[-300:]}",
              flush=True)
    print(f"audioqc warm-up on a 5 s file: first call {first['wall_s']:.2f} s, "
          f"second call {second['wall_s']:.2f} s (fixed per-call overhead), "
          f"peak RSS {second['peak_rss_mb']:.0f} MB", flush=True)
    return {"first_wall_s": first["wall_s"], "second_wall_s": second["wall_s"],
            "second_peak_rss_mb": second["peak_rss_mb"], "ok": first["returncode"] == second["returncode"] == 0}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


def _f(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def report_main(results: list[dict[str, Any]], duration_s: float) -> dict[str, Any]:
    headers = ["peer", "wall s", "x-realtime", "peak RSS MB", "I LUFS", "LRA LU", "TP dBTP", "status"]
    rows = []
    for r in results:
        if r.get("skipped"):
            rows.append([r["peer"], "-", "-", "-", "-", "-", "-", f"skipped: {r['skipped']}"])
            continue
        rows.append([
            r["peer"], _f(r["wall_s"], ".2f"), _f(duration_s / r["wall_s"], ".0f"), _f(r["peak_rss_mb"], ".0f"),
            _f(r.get("I"), ".2f"), _f(r.get("LRA"), ".2f"), _f(r.get("TP"), ".2f"),
            "ok" if r["ok"] else f"FAILED: {r.get('error', '')}",
        ])
    print_table(headers, rows)
    print()

    by = {r["peer"]: r for r in results if not r.get("skipped")}
    aq, ff, pl = by.get("audioqc"), by.get("ffmpeg"), by.get("pyloudnorm")
    summary: dict[str, Any] = {}
    if aq and aq["ok"]:
        if ff and ff["ok"]:
            s = ff["wall_s"] / aq["wall_s"]
            summary["speed_vs_ffmpeg"] = s
            verdict = "meets stretch (>= 2.0)" if s >= 2.0 else "meets target (>= 1.0)" if s >= 1.0 \
                else "below target (< 1.0)"
            print(f"audioqc speed vs ffmpeg ebur128:  {s:.2f}x  [{verdict}]")
        if pl and pl["ok"]:
            s = pl["wall_s"] / aq["wall_s"]
            summary["speed_vs_pyloudnorm"] = s
            print(f"audioqc speed vs pyloudnorm:      {s:.2f}x")
        under = aq["peak_rss_mb"] < RSS_LIMIT_MB
        summary["audioqc_peak_rss_mb"] = aq["peak_rss_mb"]
        summary["audioqc_rss_under_limit"] = under
        print(
            f"audioqc peak RSS < {RSS_LIMIT_MB:.0f} MB:       {'yes' if under else 'NO'} ({aq['peak_rss_mb']:.0f} MB)"
        )
        if ff and ff["ok"]:
            print()
            print("audioqc - ffmpeg (ffmpeg prints 0.1 resolution):")
            diffs = {}
            for key, unit in (("I", "LU"), ("LRA", "LU"), ("TP", "dB")):
                a, b = aq.get(key), ff.get(key)
                d = None if a is None or b is None else a - b
                diffs[key] = d
                print(f"  {key:<4} {_f(a, '8.2f')} - {_f(b, '8.2f')} = {_f(d, '+.2f')} {unit}")
            summary["diff_audioqc_minus_ffmpeg"] = diffs
        if pl and pl["ok"]:
            print("audioqc - pyloudnorm:")
            diffs = {}
            for key in ("I", "LRA"):
                a, b = aq.get(key), pl.get(key)
                d = None if a is None or b is None else a - b
                diffs[key] = d
                print(f"  {key:<4} {_f(a, '8.2f')} - {_f(b, '8.2f')} = {_f(d, '+.2f')} LU")
            summary["diff_audioqc_minus_pyloudnorm"] = diffs
    return summary


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="test file duration (default 60)")
    p.add_argument("--codec", choices=sorted(CODECS), default="wav", help="test file codec (default wav, 16-bit)")
    p.add_argument("--seed", type=int, default=1770, help="generator seed (default 1770)")
    p.add_argument("--workdir", type=Path, default=HERE / "out",
                   help="where test files are generated/reused (default benchmarks/out/, git-ignored)")
    p.add_argument("--skip-pyloudnorm", action="store_true",
                   help="do not run pyloudnorm (it loads the whole file as float64: ~1.4 GB/30 min + copies)")
    p.add_argument("--memory-sweep", action="store_true",
                   help=f"also run audioqc alone on {', '.join(map(str, SWEEP_MINUTES))} minute files")
    p.add_argument("--repeat", type=int, default=1, help="runs per peer; best wall time, max RSS (default 1)")
    p.add_argument("--json", metavar="OUT", type=Path, default=None, help="also write results as JSON")
    p.add_argument("--audioqc", default=_default_audioqc(), help="audioqc executable")
    p.add_argument("--ffmpeg", default=shutil.which("ffmpeg") or "ffmpeg", help="ffmpeg executable")
    p.add_argument("--python", default=sys.executable, help="python with soundfile + pyloudnorm")
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be > 0")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    return args


def tool_versions(args: argparse.Namespace) -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[0]
        except Exception as exc:  # informational only
            return f"unknown ({exc})"

    return {
        "audioqc": first_line([args.audioqc, "--version"]),
        "ffmpeg": first_line([args.ffmpeg, "-version"]),
        "pyloudnorm": first_line([args.python, "-c",
                                  "import importlib.metadata as m; print(m.version('pyloudnorm'))"]),
        "python": platform.python_version(),
        "cpu": cpu_model(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    versions = tool_versions(args)
    print("versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()), flush=True)

    out: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "versions": versions}
    failed = False
    with tempfile.TemporaryDirectory(prefix="bench_loudness_") as td:
        tmpdir = Path(td)
        path = ensure_file(args.workdir, args.minutes, args.codec, args.seed, args.ffmpeg)
        duration_s = args.minutes * 60.0
        out["file"] = {"path": str(path), "minutes": args.minutes, "codec": args.codec,
                       "bytes": path.stat().st_size, "sample_rate": SR, "channels": CHANNELS}

        out["rss_floor_mb"] = rss_floor_mb(tmpdir)
        print(f"peak-RSS measurement floor (launcher, `true`): {out['rss_floor_mb']:.1f} MB", flush=True)
        out["warmup"] = warm_up_audioqc(args, tmpdir)
        warm_page_cache(path)

        peers: list[tuple[str, Any, Any]] = [
            ("audioqc", audioqc_cmd, parse_audioqc),
            ("ffmpeg", ffmpeg_cmd, parse_ffmpeg),
            ("pyloudnorm", pyloudnorm_cmd, parse_pyloudnorm),
        ]
        results: list[dict[str, Any]] = []
        print(f"\ntiming peers on {path.name} ...", flush=True)
        for name, mk_cmd, parser in peers:
            if name == "pyloudnorm" and args.skip_pyloudnorm:
                results.append({"peer": name, "skipped": "--skip-pyloudnorm"})
                continue
            if name == "pyloudnorm" and args.codec == "aac":
                results.append({"peer": name, "skipped": "soundfile cannot read AAC"})
                continue
            r = measure_peer(name, mk_cmd(args, path), parser, tmpdir, args.repeat)
            failed |= not r["ok"]
            results.append(r)

        print(f"\n=== loudness benchmark: {args.minutes:g} min stereo {SR} Hz {args.codec} "
              f"({path.stat().st_size / 1e6:.0f} MB) ===")
        out["peers"] = results
        out["summary"] = report_main(results, duration_s)

        if args.memory_sweep:
            print(f"\n=== memory sweep: audioqc loudness alone ({args.codec}) ===", flush=True)
            sweep = []
            for minutes in SWEEP_MINUTES:
                p = ensure_file(args.workdir, minutes, args.codec, args.seed, args.ffmpeg)
                warm_page_cache(p)
                r = measure_peer("audioqc", audioqc_cmd(args, p), parse_audioqc, tmpdir, 1)
                failed |= not r["ok"]
                r["minutes"] = minutes
                sweep.append(r)
            print()
            print_table(["minutes", "wall s", "x-realtime", "peak RSS MB", "I LUFS", "status"], [
                [f"{r['minutes']:g}", _f(r["wall_s"], ".2f"), _f(r["minutes"] * 60 / r["wall_s"], ".0f"),
                 _f(r["peak_rss_mb"], ".0f"), _f(r.get("I"), ".2f"),
                 "ok" if r["ok"] else f"FAILED: {r.get('error', '')}"] for r in sweep])
            ok_rss = [r["peak_rss_mb"] for r in sweep if r["ok"]]
            if ok_rss:
                print(
                    f"peak RSS spread across durations: {max(ok_rss) - min(ok_rss):.0f} MB "
                    f"(max {max(ok_rss):.0f} MB; < {RSS_LIMIT_MB:.0f} MB: "
                    f"{'yes' if max(ok_rss) < RSS_LIMIT_MB else 'NO'})"
                )
            out["memory_sweep"] = sweep

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"\nwrote {args.json}")
    if failed:
        print("\nat least one peer failed (see status column)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
