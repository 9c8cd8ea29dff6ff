"""Fault 7: odd media keep the promises: a typed error naming the file (on one line, whatever the
name holds), and out-of-range float samples counted and flagged, never turned into silence."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from faults import cli

COMMANDS = (["info"], ["loudness"], ["silence", "--duration", "0.5"], ["format"], ["diagnose"])


def wav(path: Path, fmt_tag: int, channels: int, rate: int, bits: int, data: bytes) -> Path:
    block = channels * max(bits, 8) // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.fixture(scope="module")
def odd(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("odd")
    pcm = (np.sin(np.arange(48000) / 10) * 10000).astype("<i2").tobytes()
    files = {"bits0": wav(d / "bits0.wav", 1, 1, 48000, 0, pcm),
             "tag": wav(d / "tag.wav", 0x1234, 1, 48000, 16, pcm),
             "rate1": wav(d / "rate1.wav", 1, 1, 1, 16, pcm[:200]),
             "huge": wav(d / "huge.wav", 3, 1, 48000, 64,
                         (np.sin(2 * np.pi * 997 * np.arange(48000 * 3) / 48000) * 1e300).astype("<f8").tobytes())}
    files["newline"] = d / "new\nline.wav"
    shutil.copy(files["tag"], files["newline"])
    return files


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("name, words", [("bits0", "codec is unknown or has no decoder"),
                                         ("tag", "codec is unknown or has no decoder"),
                                         ("newline", "new\\nline.wav: the audio stream's codec")])
def test_unreadable_streams_are_typed_errors_on_one_line(odd, command, name, words):
    run = cli(*command, str(odd[name]))
    assert run.returncode == 1
    assert len(run.lines) == 1 and run.lines[0].startswith("audioqc: error: ") and words in run.lines[0], run.stderr
    assert "internal error" not in run.stderr


def test_absurd_sample_rate_names_the_file(odd):
    run = cli("loudness", str(odd["rate1"]))
    assert run.returncode == 1 and run.lines == [f"audioqc: error: {odd['rate1']}: sample_rate=1 must be an integer "
                                                 "from 1000 to 768000 Hz"]


def test_a_bad_bucket_name_is_one_line():
    run = cli("info", "s3://Bad_Bucket!/x.wav", env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    assert run.returncode == 1 and len(run.lines) == 1 and "Bad_Bucket!" in run.lines[0]


def test_overflowing_floats_read_as_loud_not_silent(odd):
    run = cli("loudness", str(odd["huge"]))
    assert run.returncode == 0, run.stderr
    loud = json.loads(run.stdout)
    assert loud["measured"] is not None and loud["measured"] > 70.0  # +80 dBFS clamp: maximally loud
    assert loud["sample_peak"] == pytest.approx(80.0, abs=0.01)
    assert len(run.lines) == 1 and "clamped" in run.lines[0] and "RuntimeWarning" not in run.stderr
    diag = json.loads(cli("diagnose", str(odd["huge"]), "--only", "loudness").stdout)
    assert diag["decode"]["clamped_samples"] > 100000 and diag["decode"]["nonfinite_samples"] == 0
