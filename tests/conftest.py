"""Shared fixtures: generated media with known content (nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from audiolib.io import write
from testing.material.media import programme, run_ffmpeg  # noqa: F401 (re-exported to tests)

# Audits in tests use a temporary Prefect server each, which stops with them, as before audits
# started a background server on first use: set at import, so every subprocess inherits it. The
# tests of that feature (test_audit_server.py) set AUDIOQC_PREFECT_SERVER=auto themselves, in a
# PREFECT_HOME of their own, and stop what they start.
os.environ.setdefault("AUDIOQC_PREFECT_SERVER", "temporary")

SR = 48000

#: ``audioqc`` as a user runs it, through this interpreter.
AUDIOQC = [sys.executable, "-m", "audioqc"]


@dataclass
class Run:
    """A finished ``audioqc`` command: exit code, outputs, wall time."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
            prefix: list[str] | None = None, check: bool = False) -> Run:
    """Run ``audioqc ARGS`` in a subprocess (``env`` added to this process's environment; ``prefix``
    a command to run it under, e.g. setpriv); ``check``: fail the test on a non-zero exit."""
    t0 = time.monotonic()
    proc = subprocess.run([*(prefix or []), *AUDIOQC, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    run = Run(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    if check:
        assert run.returncode == 0, run.stderr[-2000:]
    return run


@pytest.fixture
def cli():
    """The :func:`run_cli` function, as a fixture."""
    return run_cli

SPEECH_TEXTS = (
    "The quick brown fox jumps over the lazy dog while the audio engineer checks the levels.",
    "Quality control at collection scale needs to know where people speak and how good it sounds.",
    "Please remember to save your work before the session ends, and commit small honest changes.",
)
SPEECH_VOICES = ("en", "en-us+f2", "en+m3")


@lru_cache(maxsize=8)
def espeak_speech(seconds: float, sr: int = SR, pause_s: float = 0.5) -> np.ndarray:
    """Mono float32 speech from espeak-ng (three voices in turn, ``pause_s`` between sentences),
    peak about 0.5, cut to ``seconds``; deterministic (same espeak-ng, same samples)."""
    import subprocess
    import tempfile

    import soxr

    from audiolib import io

    assert shutil.which("espeak-ng"), "espeak-ng makes test speech: scripts/setup.sh installs it"
    parts: list[np.ndarray] = []
    total = 0
    i = 0
    with tempfile.TemporaryDirectory() as tmp:
        while total < seconds * sr:
            wav = os.path.join(tmp, f"s{i}.wav")
            subprocess.run(["espeak-ng", "-v", SPEECH_VOICES[i % 3], "-w", wav, SPEECH_TEXTS[i % 3]],
                           check=True, capture_output=True)
            with io.stream(wav) as s:
                y = np.concatenate(list(s), axis=1)[0]
                rate = s.sample_rate
            y = soxr.resample(y, rate, sr).astype(np.float32)
            parts += [y, np.zeros(int(pause_s * sr), np.float32)]
            total += y.size + int(pause_s * sr)
            i += 1
    out = np.concatenate(parts)[: int(seconds * sr)]
    return (0.5 * out / np.max(np.abs(out))).astype(np.float32)


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


@pytest.fixture(scope="session")
def s3():
    """An S3 server (moto) on 127.0.0.1, with the standard AWS variables pointing at it; yields an
    s3fs filesystem. Tests create their own buckets."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL_S3": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    yield s3fs.S3FileSystem()
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One temporary Prefect server and database per test module, with its own result storage."""
    from prefect.settings import (
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(storage),
                                     PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 90}):
        with prefect_test_harness(server_startup_timeout=90):
            yield
