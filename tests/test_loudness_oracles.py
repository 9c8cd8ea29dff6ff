"""Loudness against independent oracles: FFmpeg's ebur128 filter on programme material in
several codecs, and pyloudnorm on short signals. Plus the CLI's output shapes."""

from __future__ import annotations

import json

import numpy as np
import pyloudnorm
import pytest

from audiolib import io, loudness
from audiolib.diagnose import diagnose
from conftest import SR, programme, run_cli
from testing.material.media import ffmpeg_ebur128, music_variants, programme_variants


@pytest.fixture(scope="module")
def real_material(tmp_path_factory, ffmpeg) -> dict[str, str]:
    """Programme with espeak-ng speech over it in nine codecs/rates, and recorded music
    (Debian's extremetuxracer-data) with transcodes of it (testing/material/media.py)."""
    return {**programme_variants(tmp_path_factory.mktemp("real")),
            **music_variants(tmp_path_factory.mktemp("music"))}


@pytest.mark.parametrize("name", ["wav24", "flac", "mp3", "aac", "opus", "vorbis", "ac3_5.1",
                                  "wav_44k", "wav_22k_mono", "music_vorbis", "music2_vorbis",
                                  "music_mp3", "music_aac_48k", "music_flac"])
def test_agrees_with_ffmpeg_ebur128(real_material, name):
    """FFmpeg prints I and LRA to 0.1 and resamples to 192 kHz for the true peak; we interpolate
    an 8x grid of 24-tap fractional delays (audiolib.loudness.true_peak_taps). Both decode with
    FFmpeg's decoders."""
    path = real_material[name]
    ours = diagnose(path, only="loudness").blocks["loudness"]
    ref = ffmpeg_ebur128(path)
    assert ours.integrated_lufs == pytest.approx(ref["I"], abs=0.1 + 0.05)
    assert ours.loudness_range_lu == pytest.approx(ref["LRA"], abs=0.2)
    assert ours.true_peak_dbtp == pytest.approx(ref["TP"], abs=0.3)


@pytest.mark.parametrize("sr", [16000, 44100, 48000, 96000])
def test_agrees_with_pyloudnorm_on_short_programme(sr):
    y = programme(20.0, sr=sr, seed=3)
    ours = loudness.measure(y, sr)
    meter = pyloudnorm.Meter(sr, filter_class="DeMan")  # the same analogue-prototype derivation
    assert ours.integrated_lufs == pytest.approx(meter.integrated_loudness(y.T.astype(np.float64)), abs=0.01)


def test_true_peak_finds_inter_sample_peaks():
    """A sine at fs/4 sampled 45 degrees off its crest: samples at 0.707, true peak 1.0."""
    n = SR
    t = np.arange(n)
    y = np.sin(2 * np.pi * t / 4 + np.pi / 4).astype(np.float32)[np.newaxis].repeat(2, 0)
    r = loudness.measure(y, SR)
    assert r.sample_peak_dbfs == pytest.approx(-3.01, abs=0.01)
    assert -0.4 <= r.true_peak_dbtp <= 0.2


def test_gating_and_shapes_on_silence_and_short_input():
    silence = loudness.measure(np.zeros((2, 5 * SR), np.float32), SR)
    assert silence.integrated_lufs is None and silence.true_peak_dbtp is None
    assert silence.to_dict()["measured"] is None
    assert silence.to_sami() == {"loudness": -100.0, "peak": 0.0}
    short = loudness.measure(np.full((1, SR // 10), 0.5, np.float32), SR)  # 100 ms
    assert short.integrated_lufs is None and short.momentary_max_lufs is None
    assert short.sample_peak_dbfs == pytest.approx(-6.02, abs=0.01)
    assert short.to_sami()["loudness"] == -100.0


def _cli(*args: str):
    return run_cli(*args, check=True)


def test_cli_outputs(media, tmp_path):
    path = str(media["s16.wav"])
    info = json.loads(_cli("info", path).stdout)
    assert info["audio"]["sample_rate"] == SR and info["container"]["kind"] == "wav"
    loud = json.loads(_cli("loudness", path).stdout)
    assert list(loud) == ["measured", "range", "gating_mode", "sample_peak", "true_peak",
                          "momentary_max", "short_term_max", "speech_measured"]
    assert loud["speech_measured"] is None  # level gating alone runs no voice activity
    expected = loudness.measure(programme(6.0), SR)
    assert loud["measured"] == pytest.approx(expected.integrated_lufs, abs=0.01)
    assert loud["gating_mode"] == "level"
    sami = json.loads(_cli("loudness", "--sami", path).stdout)
    assert list(sami) == ["loudness", "peak"]
    assert sami["peak"] == pytest.approx(expected.sample_peak, abs=1e-4)
    part = json.loads(_cli("loudness", path, "--start", "1", "--end", "00:00:04").stdout)
    assert part["measured"] == pytest.approx(
        loudness.measure(programme(6.0)[:, SR:4 * SR], SR).integrated_lufs, abs=0.01)
    diag = json.loads(_cli("diagnose", path).stdout)
    assert diag["media_info"] == info and diag["loudness"] == loud
    assert diag["decode"]["truncated"] is False
    only = json.loads(_cli("diagnose", path, "--only", "loudness").stdout)
    assert "media_info" not in only and only["loudness"] == loud
    # Digital silence: strict JSON with nulls (never NaN/Infinity tokens), -100 in the SAMI shape.
    silent = tmp_path / "silent.wav"
    io.write(str(silent), np.zeros((2, 2 * SR)), SR)
    text = _cli("loudness", str(silent)).stdout
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["measured"] is None and json.loads(text)["true_peak"] is None
    assert json.loads(_cli("loudness", "--sami", str(silent)).stdout) == {"loudness": -100.0, "peak": 0.0}


def test_diagnose_decodes_once(media, monkeypatch):
    """Every analyzer consumes the same blocks: the file is opened and decoded a single time."""
    opened = []
    real_stream = io.stream

    def counting_stream(*args, **kwargs):
        opened.append(args[0])
        return real_stream(*args, **kwargs)

    monkeypatch.setattr(io, "stream", counting_stream)
    result = diagnose(str(media["a.mp3"]))
    assert len(opened) == 1
    assert result.media_info.audio.codec == "mp3float" and result.blocks["loudness"].integrated_lufs is not None
