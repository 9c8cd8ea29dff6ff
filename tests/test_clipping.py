"""Clipping: runs at full scale, signals with known numbers of clipped runs."""

from __future__ import annotations

import numpy as np
import pytest

from audiolib import io
from audiolib.clipping import ClippingDetector, clip_level
from audiolib.diagnose import diagnose
from audiolib.errors import InvalidParameter
from conftest import SR, run_ffmpeg


def clipped_sine(seconds: float, freq: float, gain: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return np.clip(gain * np.sin(2 * np.pi * freq * t), -1.0, 1.0).astype(np.float32)


def detect(y: np.ndarray, block: int = 65536, **kw) -> ClippingDetector:
    det = ClippingDetector(
        SR, ("FL", "FR")[: y.shape[0]] if y.shape[0] <= 2 else tuple(f"c{i}" for i in range(y.shape[0])), **kw
    )
    for i in range(0, y.shape[1], block):
        det.push(y[:, i:i + block])
    return det


@pytest.mark.parametrize("codec, sample_fmt, bits", [("pcm_s16le", "s16", 16), ("pcm_s24le", "s32", 24)])
def test_clipped_sine_in_pcm_file(tmp_path, codec, sample_fmt, bits):
    """A 50 Hz sine driven 6 dB into the rails for 1 s: two flat tops per period = 100 runs."""
    y = np.zeros((2, 3 * SR), np.float32)
    y[0, SR:2 * SR] = clipped_sine(1.0, 50.0, 2.0)
    y[1] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR)
    path = tmp_path / "clip.wav"
    io.write(str(path), y, SR, codec=codec, sample_fmt=sample_fmt)
    result = diagnose(str(path), only="clipping").blocks["clipping"]
    assert result.events == 100
    assert result.channel_events == {"FL": 100, "FR": 0}
    assert result.first_event_s == pytest.approx(1.0 + 1 / 50 / 12, abs=0.001)  # sin(x)=0.5 at x=pi/6
    assert all(s.channels == ("FL",) for s in result.sections)
    block = result.to_dict()
    assert block["events"] == 100 and block["num_sections"] == len(result.sections) >= 1
    assert clip_level(codec, bits) < 1.0


def test_lone_and_short_peaks_are_not_clipping():
    y = np.zeros((1, SR), np.float32)
    y[0, 100] = 1.0  # lone full-scale sample
    y[0, 1000:1002] = -1.0  # two samples
    y[0, 5000:5003] = 1.0  # three: one event
    r = detect(y, codec="pcm_f32le").result()
    assert r.events == 1 and r.clipped_samples == 3
    assert r.sections[0].start_s == pytest.approx(5000 / SR)
    assert r.sections[0].end_s == pytest.approx(5003 / SR)


def test_clean_full_scale_low_frequency_sine_is_not_clipping():
    """A 50 Hz sine peaking at the largest 16-bit code: its crest is not a flat top."""
    t = np.arange(SR) / SR
    y = (np.round(np.sin(2 * np.pi * 50 * t) * 32767) / 32768).astype(np.float32)[np.newaxis]
    assert detect(y, codec="pcm_s16le", bit_depth=16).result().events == 0


def test_near_full_scale_programme_is_not_clipping():
    t = np.arange(2 * SR) / SR
    y = (10 ** (-0.1 / 20) * np.sin(2 * np.pi * 997 * t)).astype(np.float32)[np.newaxis]
    assert detect(y, codec="pcm_s16le", bit_depth=16).result().events == 0


def test_float_overs_count_even_when_short():
    y = np.zeros((1, SR), np.float32)
    y[0, 10] = 1.5  # one sample beyond full scale
    y[0, 20:30] = -1.2
    r = detect(y, codec="pcm_f32le").result()
    assert r.over_full_scale_samples == 11
    assert r.events == 2


def test_sections_merge_across_channels():
    y = np.zeros((2, 4 * SR), np.float32)
    y[0, SR:SR + 10] = 1.0
    y[1, SR + 96:SR + 106] = -1.0  # 2 ms later on the other channel: same section
    y[1, 3 * SR:3 * SR + 5] = 1.0  # alone, later
    r = detect(y, codec="pcm_f32le").result()
    assert r.events == 3
    assert [(round(s.start_s, 4), s.channels) for s in r.sections] == [(1.0, ("FL", "FR")), (3.0, ("FR",))]


def test_runs_across_block_boundaries():
    y = np.zeros((1, 2 * SR), np.float32)
    for k in range(1, 20):
        y[0, k * 997 - 3:k * 997 + 3] = 1.0  # straddles every 997-frame block boundary
    a = detect(y, block=997, codec="pcm_f32le").result()
    b = detect(y, block=2 * SR, codec="pcm_f32le").result()
    assert a.events == b.events == 19
    assert a.sections == b.sections


def test_lossy_decode_of_clipped_master(tmp_path):
    """An Opus encoding of a clipped master decodes with overshoots beyond full scale: found.
    (LAME and FFmpeg's AAC encoder lower the level ~0.2 dB, so their decodes of the same master stay
    below full scale; flat tops below full scale are not reported, see the README.)"""
    master = tmp_path / "master.wav"
    y = np.tile(clipped_sine(2.0, 100.0, 3.0), (2, 1))
    io.write(str(master), y, SR, codec="pcm_s16le", sample_fmt="s16")
    lossy = tmp_path / "clip.opus"
    run_ffmpeg("-i", str(master), "-c:a", "libopus", "-b:a", "128k", str(lossy))
    r = diagnose(str(lossy), only="clipping").blocks["clipping"]
    assert r.events >= 100  # 400 flat tops in the master
    clean = tmp_path / "clean.wav"
    io.write(str(clean), 0.5 * y, SR, codec="pcm_s16le", sample_fmt="s16")
    assert diagnose(str(clean), only="clipping").blocks["clipping"].events == 0


@pytest.mark.parametrize("kwargs, words", [({"min_run": 1}, "min_run=1"), ({"threshold": 1.5}, "threshold=1.5")])
def test_invalid_parameters(kwargs, words):
    with pytest.raises(InvalidParameter, match=words):
        ClippingDetector(SR, ("FL",), **kwargs)
