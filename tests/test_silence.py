"""Silence: FFmpeg silencedetect semantics, checked against FFmpeg itself; Dolby's block."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from audiolib import io
from audiolib.diagnose import DiagnoseOptions, diagnose
from audiolib.errors import InvalidParameter
from audiolib.silence import SilenceDetector, parse_noise_db
from conftest import SR, run_ffmpeg


def ffmpeg_silences(path: str, filt: str) -> dict[int | None, list[tuple[float, float]]]:
    """silence_start/silence_end pairs printed by FFmpeg, by channel (None = all channels)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-nostats", "-i", path, "-af", filt,
                           "-f", "null", "-"], capture_output=True, text=True, check=True)
    starts: dict[int | None, list[float]] = {}
    out: dict[int | None, list[tuple[float, float]]] = {}
    for line in proc.stderr.splitlines():
        m = re.search(r"(?:channel: (\d+) \| )?silence_(start|end): (-?[\d.e+-]+)", line)
        if not m:
            continue
        ch = int(m.group(1)) if m.group(1) is not None else None
        if m.group(2) == "start":
            starts.setdefault(ch, []).append(float(m.group(3)))
        else:
            out.setdefault(ch, []).append((starts[ch].pop(0), float(m.group(3))))
    return out


@pytest.fixture(scope="module")
def gaps(tmp_path_factory) -> dict[str, str]:
    """20 s of noise with silences of known extent, as float WAV and as MP3 and FLAC."""
    d = tmp_path_factory.mktemp("silence")
    rng = np.random.default_rng(11)
    y = (0.1 * rng.standard_normal((2, 20 * SR))).astype(np.float32)
    y[:, :int(0.8 * SR)] = 0  # leading silence 0.8 s
    y[:, int(2.0 * SR):int(3.5 * SR)] *= 0.001  # -60 dB: silent at -30 dB, not at -70 dB
    y[0, int(6 * SR):int(9 * SR)] = 0  # only the left channel
    y[1, int(7 * SR):int(10 * SR)] = 0  # right 7-10: both silent 7-9
    y[:, int(12 * SR):int(12.3 * SR)] = 0  # 0.3 s: shorter than 0.5 s
    y[:, int(15 * SR):] = 0  # trailing 5 s
    files = {"wav": str(d / "gaps.wav")}
    io.write(files["wav"], y, SR, codec="pcm_f32le", sample_fmt="flt")
    for ext, args in {"mp3": ["-c:a", "libmp3lame", "-b:a", "192k"], "flac": ["-c:a", "flac"]}.items():
        files[ext] = str(d / f"gaps.{ext}")
        run_ffmpeg("-i", files["wav"], *args, files[ext])
    return files


def ours(path: str, *, noise="-30dB", duration=0.5, mono=True, start=None, end=None):
    opts = DiagnoseOptions(silence_noise=noise, silence_duration_s=duration, silence_mono=mono)
    return diagnose(path, only="silence", start=start, end=end, options=opts)


def assert_same(a: list[tuple[float, float]], b: list[tuple[float, float]], tol: float = 0.010) -> None:
    assert len(a) == len(b), (a, b)
    for (s1, e1), (s2, e2) in zip(a, b, strict=True):
        assert abs(s1 - s2) <= tol and abs(e1 - e2) <= tol, (a, b)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
@pytest.mark.parametrize("noise, duration", [("-30dB", 0.5), ("-70dB", 0.5), ("-30dB", 2.0), (-45, 0.1)])
def test_all_channels_matches_ffmpeg(gaps, fmt, noise, duration):
    """mono=false: silent only where every channel is (FFmpeg's default)."""
    path = gaps[fmt]
    got = [(iv.start_s, iv.end_s) for iv in ours(path, noise=noise, duration=duration, mono=False)
           .blocks["silence"].intervals]
    ref = ffmpeg_silences(path, f"silencedetect=noise={parse_noise_db(noise)}dB:d={duration}").get(None, [])
    assert_same(got, ref)


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_per_channel_matches_ffmpeg_mono_option(gaps, fmt):
    """The per-channel intervals equal FFmpeg's silencedetect=mono=1, channel by channel."""
    path = gaps[fmt]
    result = ours(path, mono=False).blocks["silence"]
    ref = ffmpeg_silences(path, "silencedetect=noise=-30dB:d=0.5:mono=1")
    for index, name in enumerate(("FL", "FR")):
        got = [(iv.start_s, iv.end_s) for iv in result.channel_intervals[name]]
        assert_same(got, ref.get(index, []))


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_mono_downmix_matches_ffmpeg_after_averaging(gaps, fmt):
    """mono=true: silence of the channel average (the endpoint's downmix)."""
    path = gaps[fmt]
    got = [(iv.start_s, iv.end_s) for iv in ours(path, mono=True).blocks["silence"].intervals]
    ref = ffmpeg_silences(path, "pan=mono|c0=0.5*c0+0.5*c1,silencedetect=noise=-30dB:d=0.5")[None]
    assert_same(got, ref)


def test_known_answers(gaps):
    result = ours(gaps["wav"], mono=False).blocks["silence"]
    assert [(round(iv.start_s, 3), round(iv.end_s, 3)) for iv in result.intervals] == [
        (0.0, 0.8), (2.0, 3.5), (7.0, 9.0), (15.0, 20.0)]
    assert result.at_beginning_s == pytest.approx(0.8)
    assert result.at_end_s == pytest.approx(5.0)
    assert result.num_sections == 4
    assert result.percentage == pytest.approx(100 * (0.8 + 1.5 + 2.0 + 5.0) / 20, abs=0.01)
    block = result.to_dict()
    assert {"percentage", "at_beginning", "at_end", "num_sections", "silent_channels"} <= set(block)


def test_start_end_limit_decoding_and_keep_file_time(gaps):
    result = ours(gaps["wav"], mono=False, start="00:00:06.5", end=14)
    assert result.decode.frames == int(7.5 * SR)  # only the range was decoded
    got = [(round(iv.start_s, 3), round(iv.end_s, 3)) for iv in result.blocks["silence"].intervals]
    assert got == [(7.0, 9.0)]
    # A silence running into the start of the range starts there.
    got = [(round(iv.start_s, 3), round(iv.end_s, 3))
           for iv in ours(gaps["wav"], mono=False, start=16).blocks["silence"].intervals]
    assert got == [(16.0, 20.0)]


def test_silent_channels_by_name(tmp_path):
    rng = np.random.default_rng(3)
    y = (0.1 * rng.standard_normal((6, 3 * SR))).astype(np.float32)
    y[3] = 0.0  # LFE digitally silent
    path = tmp_path / "51.wav"
    io.write(str(path), y, SR, codec="pcm_s24le", layout="5.1(side)", sample_fmt="s32")
    block = diagnose(str(path), only="silence").blocks["silence"]
    assert block.silent_channels == ("LFE",)
    assert block.percentage == 0.0 and block.num_sections == 0


def test_block_size_independence():
    rng = np.random.default_rng(5)
    y = (0.1 * rng.standard_normal((2, 10 * SR))).astype(np.float32)
    for a, b in [(1.0, 2.0), (4.0, 4.7), (8.0, 10.0)]:
        y[:, int(a * SR):int(b * SR)] = 0
    results = []
    for size in (997, 48000, 10 * SR):
        det = SilenceDetector(SR, ("FL", "FR"), duration=0.5, mono=False)
        for i in range(0, y.shape[1], size):
            det.push(y[:, i:i + size])
        results.append(det.result().to_list())
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 3


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"noise": "abc"}, "noise='abc' must be a level in dB"),
        ({"noise": "10dB"}, "between -200 dB and 0 dB"),
        ({"duration": 0.05}, "duration=0.05 must be a number of seconds >= 0.1"),
        ({"duration": "x"}, "duration='x' must be a number"),
        ({"duration": float("inf")}, "duration=inf"),
    ],
)
def test_invalid_parameters(kwargs, words):
    with pytest.raises(InvalidParameter) as info:
        SilenceDetector(SR, ("FL",), **{"duration": 0.5, **kwargs})
    assert words in str(info.value)


def test_cli_prints_the_endpoint_response(gaps):
    proc = subprocess.run([sys.executable, "-m", "audioqc", "silence", gaps["wav"], "--noise", "-30dB",
                           "--duration", "0.5", "--no-mono", "--start", "1", "--end", "00:00:12.000"],
                          capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == [{"start": 2.0, "end": 3.5}, {"start": 7.0, "end": 9.0}]
    bad = subprocess.run([sys.executable, "-m", "audioqc", "silence", gaps["wav"], "--duration", "0.01"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("audioqc: error: duration=0.01")


def test_delayed_audio_track_reports_file_time(tmp_path):
    """Audio starting 2 s into a video file: times are file time, as FFmpeg reports them."""
    path = str(tmp_path / "delayed.mov")
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=8", "-itsoffset", "2", "-f", "lavfi",
               "-i", "sine=f=440:d=4,volume=enable='between(t,1,2)':volume=0", "-map", "0:v", "-map", "1:a",
               "-c:v", "mpeg4", "-c:a", "pcm_s16le", path)
    got = [(iv.start_s, iv.end_s) for iv in ours(path, noise="-60dB").blocks["silence"].intervals]
    assert_same(got, ffmpeg_silences(path, "silencedetect=noise=-60dB:d=0.5")[None])
    assert got[0][0] == pytest.approx(3.0, abs=0.05)
    ranged = ours(path, noise="-60dB", start=2.5, end=5.0)
    assert [
        (round(a, 2), round(b, 2)) for a, b in ((iv.start_s, iv.end_s) for iv in ranged.blocks["silence"].intervals)
    ] == [(round(got[0][0], 2), round(got[0][1], 2))]
    assert ranged.decode.frames == pytest.approx(2.5 * 44100, abs=2)


def test_long_runs_kernel_keeps_what_the_tracker_keeps():
    """``_kernels.long_runs`` (probing every min_len-th sample) against ``transitions`` (every
    sample): a RunTracker fed either keeps the same runs, for every condition, run lengths around
    min_len, runs at block edges, and blocks of many sizes."""
    from audiolib import _kernels
    from audiolib.runs import RunTracker

    rng = np.random.default_rng(17)
    modes = (_kernels.ALL_BELOW, _kernels.MEAN_BELOW, _kernels.AT_OR_ABOVE, _kernels.ABOVE)
    for trial in range(60):
        nch = int(rng.integers(1, 4))
        n = int(rng.integers(1, 3000))
        # runs of quiet (0.0) and loud (0.5) samples with lengths spread around min_len, plus samples at 1.0
        lengths = rng.integers(1, 40, size=n)
        levels = rng.choice([0.0, 0.5, 1.0, 1.5], size=lengths.size, p=[0.45, 0.35, 0.1, 0.1])
        row = np.repeat(levels, lengths)[:n].astype(np.float32)
        x = np.tile(row, (nch, 1))
        x[:, rng.random(n) < 0.01] *= -1.0
        if nch > 1:  # channels differ here and there
            x[1, rng.random(n) < 0.02] = 0.5
        for mode in modes:
            rows = x if mode in (_kernels.ALL_BELOW, _kernels.MEAN_BELOW) else x[:1].copy()
            thr = 0.25 if mode in (_kernels.ALL_BELOW, _kernels.MEAN_BELOW) else 1.0
            for min_len in (1, 2, 7, 20, 64):
                block = int(rng.integers(1, n + 2))
                a, b = RunTracker(min_len), RunTracker(min_len)
                for s in range(0, n, block):
                    part = np.ascontiguousarray(rows[:, s:s + block])
                    a.push_edges(*_kernels.transitions(part, thr, mode), part.shape[1])
                    edges, first, last = _kernels.long_runs(part, thr, mode, min_len)
                    assert np.all(np.diff(edges) > 0) and np.all((edges >= 1) & (edges < part.shape[1]))
                    full_edges, full_first, full_last = _kernels.transitions(part, thr, mode)
                    assert (first, last) == (full_first, full_last)
                    b.push_edges(edges, first, last, part.shape[1])
                a.finish()
                b.finish()
                assert np.array_equal(a.runs(), b.runs()), (trial, mode, min_len, block)
                assert (a.count, a.true_samples) == (b.count, b.true_samples)
