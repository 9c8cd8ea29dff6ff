"""Bad input: corrupt, truncated, empty, not audio, absurd parameters. Clear typed errors that
name the file, CLI exit codes, never a traceback."""

from __future__ import annotations

import os

import numpy as np
import pytest

from audiolib import io, loudness
from audiolib.diagnose import diagnose
from audiolib.errors import (
    AudioQCError,
    DecodeError,
    EmptyMedia,
    InvalidParameter,
    SourceNotFound,
    UnsupportedMedia,
)
from conftest import SR, programme, run_cli, run_ffmpeg


@pytest.fixture(scope="module")
def bad(tmp_path_factory, media):
    d = tmp_path_factory.mktemp("bad")
    files = {}
    files["empty.wav"] = d / "empty.wav"
    files["empty.wav"].write_bytes(b"")
    rng = np.random.default_rng(7)
    files["random.mp3"] = d / "random.mp3"
    files["random.mp3"].write_bytes(rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    files["text.wav"] = d / "text.wav"
    files["text.wav"].write_text("this is not audio\n" * 100)
    wav = media["s16.wav"].read_bytes()
    files["header_only.wav"] = d / "header_only.wav"
    files["header_only.wav"].write_bytes(wav[:20])  # RIFF header cut inside the fmt chunk
    files["half.wav"] = d / "half.wav"
    files["half.wav"].write_bytes(wav[: len(wav) // 2])
    flac = media["s24.flac"].read_bytes()
    files["half.flac"] = d / "half.flac"
    files["half.flac"].write_bytes(flac[: len(flac) // 2])
    m4a = media["a.m4a"].read_bytes()
    files["half.m4a"] = d / "half.m4a"
    files["half.m4a"].write_bytes(m4a[: len(m4a) // 2])
    files["wav_named.mp3"] = d / "wav_named.mp3"
    files["wav_named.mp3"].write_bytes(wav)
    files["video_only.mp4"] = media["video_only.mp4"]
    return files


@pytest.mark.parametrize(
    "name, error, words",
    [
        ("empty.wav", EmptyMedia, "empty"),
        ("random.mp3", DecodeError, "not a readable media file"),
        ("text.wav", DecodeError, "not a readable media file"),
        ("header_only.wav", DecodeError, ""),
        ("video_only.mp4", UnsupportedMedia, "no audio stream (streams: video mpeg4)"),
    ],
)
def test_unreadable_media_raise_typed_errors_naming_the_file(bad, name, error, words):
    path = str(bad[name])
    for call in (lambda: io.probe(path), lambda: diagnose(path)):
        with pytest.raises(error) as info:
            call()
        assert str(info.value).startswith(path + ": ")
        assert words in str(info.value)
        assert isinstance(info.value, AudioQCError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SourceNotFound, match="nope.wav: cannot open"):
        io.probe(str(tmp_path / "nope.wav"))
    with pytest.raises(SourceNotFound, match="is a directory"):
        io.probe(str(tmp_path))
    with pytest.raises(SourceNotFound, match="no such object|cannot open"):
        io.probe("memory://nothing/here.wav")


def test_wrong_extension_is_read_by_content(bad):
    info = io.probe(str(bad["wav_named.mp3"]))
    assert info.container.kind == "wav" and info.audio.codec == "pcm_s16le"


@pytest.mark.parametrize("name", ["half.wav", "half.flac"])
def test_truncated_file_gives_what_was_decoded_and_says_so(bad, name):
    """The headers promise 6 s; half the bytes hold about 3 s."""
    result = diagnose(str(bad[name]))
    assert result.decode.truncated
    assert "truncated" in result.decode.problem or "ends early" in result.decode.problem
    decoded_s = result.decode.frames / SR
    assert 1.5 < decoded_s < 4.5
    # What was decoded is measured: the loudness of the first part of the programme.
    expected = loudness.measure(programme(6.0)[:, : result.decode.frames], SR)
    assert result.blocks["loudness"].integrated_lufs == pytest.approx(expected.integrated_lufs, abs=0.05)


def test_truncated_mp4_is_reported(bad):
    """An MP4 cut in half loses its sample tables (moov at the end) or its data: either way
    the error or the truncation is reported, never a silent success."""
    try:
        result = diagnose(str(bad["half.m4a"]))
    except DecodeError as exc:
        assert str(bad["half.m4a"]) in str(exc)
    else:
        assert result.decode.truncated


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"start": -1}, "start=-1 must be a finite time >= 0 s"),
        ({"start": "abc"}, "start='abc' is not a time"),
        ({"start": "1:99"}, "start='1:99' is not a time"),
        ({"start": float("nan")}, "finite"),
        ({"start": 3, "end": 2}, "end=2 must be after start=3"),
        ({"start": 100}, "start=100 s is at or past the end of the audio"),
        ({"stream_index": 5}, "audio stream 5 requested, file has 1"),
        ({"block_frames": 0}, "block_frames=0 must be a positive integer"),
    ],
)
def test_absurd_parameters(media, kwargs, words):
    with pytest.raises(InvalidParameter) as info:
        with io.stream(str(media["s16.wav"]), **kwargs) as s:
            list(s)
    assert words in str(info.value)


def test_meter_rejects_bad_blocks():
    meter = loudness.LoudnessMeter(SR, ("FL", "FR"))
    with pytest.raises(InvalidParameter, match="does not match 2 channels"):
        meter.push(np.zeros((3, 100), np.float32))
    with pytest.raises(InvalidParameter, match="NaN or infinite"):
        meter.push(np.full((2, 100), np.nan, np.float32))
    with pytest.raises(InvalidParameter, match="sample_rate=0"):
        loudness.LoudnessMeter(0, ("FL",))
    with pytest.raises(InvalidParameter, match="unknown block"):
        diagnose("whatever.wav", only="loudness,bogus")


# ---------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    "name, words",
    [
        ("empty.wav", "file is empty (0 bytes)"),
        ("random.mp3", "not a readable media file"),
        ("video_only.mp4", "no audio stream"),
    ],
)
@pytest.mark.parametrize("command", ["info", "loudness", "diagnose"])
def test_cli_errors_are_one_line_exit_1(bad, name, words, command):
    path = str(bad[name])
    proc = run_cli(command, path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"audioqc: error: {path}: ")
    assert words in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args, words",
    [
        (["loudness"], "the following arguments are required: url"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["loudness", "x.wav", "--stream", "-1"], "must be >= 0"),
        (["loudness", "x.wav", "--gating", "speechy"], "invalid choice: 'speechy'"),
    ],
)
def test_cli_usage_errors_exit_2(args, words):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_bad_parameter_value_exit_1(media):
    proc = run_cli("loudness", str(media["s16.wav"]), "--start", "00:61")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"audioqc: error: {media['s16.wav']}: start='00:61' is not a time: "
                                   "give seconds (12.5) or HH:MM:SS.ms (00:00:12.500)")


def test_cli_truncated_warns_and_measures(bad):
    proc = run_cli("loudness", str(bad["half.wav"]))
    assert proc.returncode == 0
    assert "warning" in proc.stderr and "truncated" in proc.stderr and str(bad["half.wav"]) in proc.stderr
    import json

    assert json.loads(proc.stdout)["measured"] is not None


def test_cli_diagnose_many_keeps_going_on_error(bad, media):
    """One bad file among good ones: every file gets a row, exit 1 because one failed."""
    proc = run_cli("diagnose", "--table", str(media["s16.wav"]), str(bad["random.mp3"]), str(media["a.mp3"]))
    assert proc.returncode == 1
    rows = proc.stdout.strip().splitlines()
    assert len(rows) == 4  # header + 3 files
    assert rows[2].startswith("random.mp3") and "error:" in rows[2]
    assert rows[1].startswith("s16.wav") and rows[1].rstrip().endswith("ok")
    assert os.path.basename(str(bad["random.mp3"])) in proc.stderr


def test_nan_and_inf_samples_are_counted_and_reported(tmp_path):
    """NaN has no value: replaced by 0 and counted. An infinity is as loud as it gets: clamped to
    +80 dBFS and counted (never turned into silence)."""
    y = (0.1 * np.random.default_rng(4).standard_normal((2, SR))).astype(np.float32)
    y[0, 100] = np.nan
    y[1, 200:203] = np.inf
    path = tmp_path / "nan.wav"
    io.write(str(path), y, SR, codec="pcm_f32le", sample_fmt="flt", clip=False)
    result = diagnose(str(path))
    assert result.decode.nonfinite_samples == 1 and result.decode.clamped_samples == 3
    assert "1 NaN (not-a-number) samples replaced by 0" in result.decode.warnings[0]
    assert "3 float samples at or beyond 10000 times full scale" in result.decode.warnings[1]
    assert result.blocks["loudness"].sample_peak_dbfs == pytest.approx(80.0, abs=0.01)
    assert result.blocks["loudness"].integrated_lufs is not None
    assert result.blocks["phase"].front.correlation is not None
    proc = run_cli("diagnose", str(path))
    assert proc.returncode == 0 and "NaN" in proc.stderr and "clamped" in proc.stderr and "Traceback" not in proc.stderr


def test_header_only_wav_is_empty(tmp_path):
    import wave

    path = tmp_path / "nosamples.wav"
    with wave.open(str(path), "wb") as w:  # a valid header and a data chunk of 0 bytes
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(SR)
    with pytest.raises(EmptyMedia, match="holds no samples"):
        diagnose(str(path))


def test_channel_count_change_mid_stream(tmp_path):
    """Broadcast AC-3 switching from 2.0 to 5.1: measured up to the change, which is reported."""
    a, b = tmp_path / "a.ac3", tmp_path / "b.ac3"
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=3", "-ac", "2", "-c:a", "ac3", str(a))
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=3", "-ac", "6", "-c:a", "ac3", str(b))
    joined = tmp_path / "switch.ac3"
    joined.write_bytes(a.read_bytes() + b.read_bytes())
    result = diagnose(str(joined))
    assert result.decode.truncated and "channel count changes from 2 to 6" in result.decode.problem
    assert 2.5 < result.decode.frames / SR < 3.1


def test_truncated_broadcast_wav_with_large_chunks_before_data(tmp_path, media):
    """A 100 kB chunk before `data` (as bext/iXML/JUNK often are) does not hide the truncation."""
    import struct

    wav = media["s16.wav"].read_bytes()
    i = wav.index(b"data")
    padded = wav[:i] + b"JUNK" + struct.pack("<I", 100_000) + bytes(100_000) + wav[i:]
    padded = padded[:4] + struct.pack("<I", len(padded) - 8) + padded[8:]
    path = tmp_path / "bwf_cut.wav"
    path.write_bytes(padded[: len(padded) // 2])
    result = diagnose(str(path), only="loudness")
    assert result.decode.truncated and "of the 6.000 s its headers declare" in result.decode.problem
