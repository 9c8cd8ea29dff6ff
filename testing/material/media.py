"""Test material shared by the tests and the benchmark scripts, and FFmpeg's meter as an oracle.

Everything is generated (seeded) or comes from Debian packages that scripts/setup.sh installs
(espeak-ng for speech, extremetuxracer-data for recorded music); nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from audiolib.io import write

SR = 48000
REAL_MUSIC_DIR = "/usr/share/games/etr/music"  # Debian package extremetuxracer-data (GPL-2+)


def run_ffmpeg(*args: str) -> subprocess.CompletedProcess:
    """Run the ffmpeg CLI quietly; raises on failure."""
    return subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          check=True, capture_output=True, text=True)


def programme(seconds: float, sr: int = SR, seed: int = 1) -> np.ndarray:
    """Stereo programme-like material: band-limited noise and tones under a slowly varying gain,
    with a quiet passage; exercises gating and LRA."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    sos = butter(4, [100, 6000], btype="bandpass", fs=sr, output="sos")
    x = sosfilt(sos, rng.standard_normal((2, n)), axis=1) * 0.2
    x += 0.1 * np.sin(2 * np.pi * np.array([[220.0], [330.0]]) * t)
    gain = 10 ** ((-8 * (0.5 + 0.5 * np.sin(2 * np.pi * t / 17.0))) / 20)
    gain[(t > seconds * 0.6) & (t < seconds * 0.7)] *= 0.05
    return (x * gain).astype(np.float32)


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of white noise, or pink noise (1/f power, shaped in the frequency domain)."""
    w = rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(w)
        k = np.arange(spec.size, dtype=np.float64)
        k[0] = 1.0
        w = np.fft.irfft(spec / np.sqrt(k), n)
    elif kind != "white":
        raise ValueError(f"kind={kind!r}: 'white' or 'pink'")
    return w


def active_rms(y: np.ndarray, above: float) -> float:
    """RMS of the samples of ``y`` louder than ``above`` in magnitude (speech without its pauses)."""
    active = y[np.abs(y) > above]
    return float(np.sqrt(np.mean(active.astype(np.float64) ** 2)))


def with_noise(clean: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator, *,
               active_above: float = 0.01) -> np.ndarray:
    """``clean`` plus white or pink noise (:func:`coloured_noise`) whose power is ``snr_db`` under
    that of the active samples of ``clean`` (louder than ``active_above``), as float32."""
    noise = coloured_noise(kind, clean.size, rng)
    noise *= active_rms(clean, active_above) / 10 ** (snr_db / 20) / np.sqrt(np.mean(noise ** 2))
    return (clean + noise).astype(np.float32)


def ffmpeg_ebur128(path: str) -> dict[str, float]:
    """FFmpeg's own meter: integrated (LUFS), LRA (LU) and true peak (dBTP) from its summary."""
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", path, "-map", "0:a:0",
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )
    summary = proc.stderr[proc.stderr.rindex("Summary:"):]

    def grab(label: str, unit: str) -> float:
        m = re.search(rf"{label}:\s+(-?[\d.]+|-inf)\s+{unit}", summary)
        if m is None:
            raise RuntimeError(f"ffmpeg ebur128 summary has no {label}: {summary!r}")
        return float(m.group(1))

    return {"I": grab("I", "LUFS"), "LRA": grab("LRA", "LU"), "TP": grab("Peak", "dBFS")}


def programme_variants(dest: Path) -> dict[str, str]:
    """40 s of programme with espeak-ng speech over it, as 24-bit WAV and in eight encodings."""
    dest.mkdir(parents=True, exist_ok=True)
    y = programme(40.0, seed=5)
    if shutil.which("espeak-ng"):
        speech_wav = dest / "speech.wav"
        text = ("Loudness is measured with K weighting and gating. " * 6).strip()
        subprocess.run(["espeak-ng", "-w", str(speech_wav), "-s", "150", text], check=True, capture_output=True)
        run_ffmpeg("-i", str(speech_wav), "-ar", str(SR), "-ac", "1", "-f", "f32le", str(dest / "speech.raw"))
        speech = np.fromfile(dest / "speech.raw", dtype=np.float32)[: y.shape[1]]
        y[:, : speech.size] += 0.8 * speech
    src = dest / "programme.wav"
    write(str(src), y, SR, codec="pcm_s24le", sample_fmt="s32")
    out = {"wav24": str(src)}
    for name, args, ext in [
        ("flac", ["-c:a", "flac"], "flac"),
        ("mp3", ["-c:a", "libmp3lame", "-b:a", "192k"], "mp3"),
        ("aac", ["-c:a", "aac", "-b:a", "192k"], "m4a"),
        ("opus", ["-c:a", "libopus", "-b:a", "128k"], "opus"),
        ("vorbis", ["-c:a", "libvorbis", "-q:a", "5"], "ogg"),
        ("ac3_5.1", ["-af", "pan=5.1|FL=c0|FR=c1|FC=0.5*c0+0.5*c1|LFE=0.1*c0|BL=0.5*c0|BR=0.5*c1",
                     "-c:a", "ac3", "-b:a", "448k"], "ac3"),
        ("wav_44k", ["-ar", "44100", "-c:a", "pcm_s16le"], "wav"),
        ("wav_22k_mono", ["-ar", "22050", "-ac", "1", "-c:a", "pcm_s16le"], "wav"),
    ]:
        path = dest / f"programme_{name}.{ext}"
        run_ffmpeg("-i", str(src), *args, str(path))
        out[name] = str(path)
    return out


def music_variants(dest: Path) -> dict[str, str]:
    """Recorded music from a Debian game package (Ogg Vorbis, 44.1 kHz) and transcodes of it."""
    src = os.path.join(REAL_MUSIC_DIR, "race1-jt.ogg")
    if not os.path.exists(src):
        raise FileNotFoundError(f"{src}: scripts/setup.sh installs the Debian package extremetuxracer-data")
    dest.mkdir(parents=True, exist_ok=True)
    out = {"music_vorbis": src, "music2_vorbis": os.path.join(REAL_MUSIC_DIR, "freezingpoint.ogg")}
    for name, args, ext in [("music_mp3", ["-c:a", "libmp3lame", "-b:a", "160k"], "mp3"),
                            ("music_aac_48k", ["-ar", "48000", "-c:a", "aac", "-b:a", "160k"], "m4a"),
                            ("music_flac", ["-c:a", "flac"], "flac")]:
        path = dest / f"music.{ext}"
        run_ffmpeg("-i", src, *args, str(path))
        out[name] = str(path)
    return out
