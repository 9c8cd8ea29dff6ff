"""Shared fixtures: generated media with known content (nothing is downloaded)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from audiolib.io import write

SR = 48000


def sine(seconds: float, freq: float, dbfs: float, sr: int = SR, phase: float = 0.0) -> np.ndarray:
    """A sine whose peak is ``dbfs``."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def noise(seconds: float, dbfs_rms: float, sr: int = SR, channels: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (10 ** (dbfs_rms / 20) * rng.standard_normal((channels, int(seconds * sr)))).astype(np.float32)


def programme(seconds: float, sr: int = SR, seed: int = 1) -> np.ndarray:
    """Stereo programme-like material: band-limited noise and tones under a slowly varying gain,
    with a quiet passage; known to exercise gating and LRA."""
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


def run_ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    assert path, "ffmpeg is a test oracle: scripts/setup.sh installs it (apt package ffmpeg)"
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory, ffmpeg) -> dict[str, Path]:
    """One file per container/codec, all holding the same 6 s stereo programme (48 kHz)."""
    d = tmp_path_factory.mktemp("media")
    y = programme(6.0)
    files: dict[str, Path] = {}

    def add(name: str, **kw) -> None:
        files[name] = d / name
        write(str(files[name]), y, SR, **kw)

    add("s16.wav", codec="pcm_s16le", sample_fmt="s16")
    add("s24.wav", codec="pcm_s24le", sample_fmt="s32")
    add("s32.wav", codec="pcm_s32le", sample_fmt="s32")
    add("f32.wav", codec="pcm_f32le", sample_fmt="flt")
    add("s24.flac", codec="flac", sample_fmt="s32")
    add("a.mp3", codec="libmp3lame", bit_rate=192000)
    add("a.m4a", codec="aac", bit_rate=192000)
    add("a.opus", codec="libopus", bit_rate=128000, container_format="ogg")
    add("a.webm", codec="libopus", bit_rate=128000, container_format="webm")
    add("a.mkv", codec="flac", sample_fmt="s16", container_format="matroska")
    add("a.ac3", codec="ac3", bit_rate=384000)
    # Ogg Vorbis, video with audio, and two audio streams: made with the ffmpeg CLI.
    run_ffmpeg("-i", str(files["s16.wav"]), "-c:a", "libvorbis", "-q:a", "6", str(d / "a.ogg"))
    files["a.ogg"] = d / "a.ogg"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=6", "-i", str(files["s16.wav"]),
               "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(d / "video.mp4"))
    files["video.mp4"] = d / "video.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2", "-c:v", "mpeg4",
               str(d / "video_only.mp4"))
    files["video_only.mp4"] = d / "video_only.mp4"
    quiet = d / "quiet.wav"
    write(str(quiet), y * 0.1, SR, codec="pcm_s16le", sample_fmt="s16")
    run_ffmpeg("-i", str(files["s16.wav"]), "-i", str(quiet), "-map", "0:a", "-map", "1:a",
               "-c:a", "flac", "-disposition:a:0", "0", "-disposition:a:1", "default", str(d / "two_streams.mkv"))
    files["two_streams.mkv"] = d / "two_streams.mkv"
    return files
