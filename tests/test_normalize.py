"""The loudness remedy (:mod:`audiolib.normalize`): static gain plus true-peak limiter.

Known answers (a gain-only pass is an exact multiplication; the limiter's kernels against plain
numpy) and an independent oracle: FFmpeg's ``ebur128=peak=true`` (its own K-weighting and its own
true peak, a 192 kHz resampler) reads every output: integrated loudness within +-0.3 LU of the
target, true peak at or under the ceiling. The project's meter reads the true peak as well.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from audiolib import _kernels
from audiolib.errors import InvalidParameter
from audiolib.io import stream, write
from audiolib.loudness import _ANNEX2_PHASES, measure, true_peak_taps
from audiolib.normalize import (
    SAFETY_MARGIN_DB,
    LoudnessNormalizer,
    _attack_weights,
    _fractional_delay,
    detection_taps,
    gain_for,
    normalize,
    normalize_file,
    normalize_with_result,
)
from benchmarks.bench_remedy import ebur128_precise
from conftest import espeak_speech
from testing.material.media import REAL_MUSIC_DIR, programme

SR = 48000
ACCURACY_LU = 0.3  # what the remedy promises, read by FFmpeg's meter


def _judge(tmp_path, y: np.ndarray, sr: int, name: str) -> dict[str, float]:
    """FFmpeg's ebur128 reading of ``y`` written as 24-bit WAV (a deliverable)."""
    path = str(tmp_path / f"{name}.wav")
    write(path, y, sr, codec="pcm_s24le", sample_fmt="s32")
    return ebur128_precise(path)


def _run_blocks(norm: LoudnessNormalizer, y: np.ndarray, sizes) -> np.ndarray:
    outs, pos = [], 0
    for size in sizes:
        outs.append(norm.push(y[:, pos:pos + size]))
        pos += size
    assert pos >= y.shape[1]
    outs.append(norm.flush())
    return np.concatenate(outs, axis=1)


def _fade(x: np.ndarray, sr: int, ms: float = 20.0) -> np.ndarray:
    n = int(sr * ms / 1000)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    y = np.array(x, dtype=np.float64, copy=True)
    y[..., :n] *= ramp
    y[..., -n:] *= ramp[::-1]
    return y


def _real_music(seconds: float) -> tuple[np.ndarray, int]:
    path = os.path.join(REAL_MUSIC_DIR, "race1-jt.ogg")
    assert os.path.exists(path), "scripts/setup.sh installs extremetuxracer-data (recorded music)"
    with stream(path) as s:
        y = np.concatenate(list(s), axis=1)
        return y[:, : int(seconds * s.sample_rate)], s.sample_rate


# ---------------------------------------------------------------------------- kernels
def test_kernels_against_numpy():
    """The three C loops against direct numpy computations of their definitions."""
    rng = np.random.default_rng(1770)
    # interval peaks: the detector's phases (24 taps) and, accumulated into the same array, a
    # 12-tap set (BS.1770-4 Annex 2's, which the kernel also takes); every channel, the two
    # bounding samples
    fine, bound_f = detection_taps(SR)
    annex2 = np.ascontiguousarray(_ANNEX2_PHASES[:, ::-1], dtype=np.float32)
    bound_a = float(np.abs(annex2.astype(np.float64)).sum(axis=1).max())
    x = (rng.standard_normal((2, 3000)) * 0.3).astype(np.float32)
    got = _kernels.tp_intervals(x, 6, 2000, annex2, bound_a, 0.0, 64)
    got = _kernels.tp_intervals(x, 0, 2012, fine, bound_f, 0.0, 64, out=got)
    want = np.zeros(1989)
    for c in range(2):
        for taps, a in ((annex2, 6), (fine, 0)):
            seg = x[c, a:a + 2000 + (12 if a == 0 else 0)].astype(np.float64)
            for p in range(taps.shape[0]):
                want = np.maximum(want, np.abs(np.correlate(seg, taps[p].astype(np.float64), "valid")))
        want = np.maximum(want, np.maximum(np.abs(x[c, 11:2000]), np.abs(x[c, 12:2001])))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7)
    # skipping: chunks that cannot exceed the threshold read 0, the others are exact
    high = _kernels.tp_intervals(x, 6, 2000, annex2, bound_a, 0.9, 64)
    assert np.all((high == 0) | (high == _kernels.tp_intervals(x, 6, 2000, annex2, bound_a, 0.0, 64)))
    # hold then release
    length, coef = 50, 0.97
    r = np.where(rng.random(4000) < 0.01, rng.uniform(0.3, 1.0, 4000), 1.0)
    seg = np.concatenate((np.ones(length - 1), r))
    env, last = _kernels.limiter_envelope(seg, length, coef, 1.0, 1e-6)
    want_env, e = [], 1.0
    for j in range(length - 1, seg.size):
        m = seg[j - length + 1:j + 1].min()
        e = min(m, m + coef * (e - m))
        e = 1.0 if e > 1.0 - 1e-6 else e
        want_env.append(e)
    np.testing.assert_array_equal(env, want_env)
    assert last == want_env[-1] and 0 < np.mean(env == 1.0) < 1
    # raised-cosine smoothing: exactly 1 where the window is all 1, the weighted shortfall elsewhere
    w = _attack_weights(length)
    g = _kernels.limiter_smooth(env, w)
    want_g = np.array([1.0 - np.dot(w, 1.0 - env[j:j + length]) for j in range(env.size - length + 1)])
    np.testing.assert_allclose(g, want_g, rtol=0, atol=1e-6)
    ones = np.array([np.all(env[j:j + length] == 1.0) for j in range(g.size)])
    assert np.all(g[ones] == 1.0) and np.all(g[~ones] < 1.0)


def test_detection_phases():
    """The project's meter's phases, the very same taps (so the meter reads no point the limiter
    did not see): fractional delays on an 8x grid below 96 kHz and 4x from 96 kHz that
    interpolate a band-limited tone within 0.3 %."""
    fine, _ = detection_taps(48000)
    assert fine.shape == (7, 24) and fine is true_peak_taps(48000).taps
    assert detection_taps(96000)[0].shape == (3, 24)
    n = np.arange(64)
    for f in (0.02, 0.1, 0.25):
        for j in range(1, 8):
            h = _fractional_delay(j / 8)
            x = np.cos(2 * np.pi * f * n)
            got = np.dot(h, x[:24])
            assert got == pytest.approx(np.cos(2 * np.pi * f * (11 + j / 8)), abs=3e-3)


# ---------------------------------------------------------------------------- the limiter
def test_intersample_peaks_limited_smoothly_without_delay(tmp_path):
    """EBU Tech 3341 case 16 style: an fs/4 sine at 45 degrees (its samples 3 dB under its true
    peak), stereo, 6 dB over a -1 dBTP ceiling. Out: true peak at most -1 dBTP (the project's meter
    and FFmpeg's), the gain a smooth raised-cosine (per-sample steps and second differences within
    the design's bounds, the same on both channels), no delay, as many samples as in, and no
    broadband splatter."""
    ceiling = -1.0
    amp = 10 ** ((ceiling + 6.0) / 20)
    n = np.arange(3 * SR)
    x = _fade(amp * np.sin(2 * np.pi * n / 4 + np.pi / 4), SR)
    y = np.vstack([x, x]).astype(np.float32)
    norm = LoudnessNormalizer(SR, 2, gain_db=0.0, true_peak_max_dbtp=ceiling)
    out = _run_blocks(norm, y, [SR] * 3)
    res = norm.result()
    assert out.shape == y.shape
    assert measure(out, SR).true_peak_dbtp <= ceiling
    assert _judge(tmp_path, out, SR, "fs4")["TP"] <= ceiling
    assert res.max_gain_reduction_db == pytest.approx(6.0 + SAFETY_MARGIN_DB, abs=0.2)
    # the per-sample gain: out / in (this sine has no zero sample but the fades' first and last)
    gain = out[:, 1:-1].astype(np.float64) / y[:, 1:-1]
    np.testing.assert_array_equal(gain[0], gain[1])
    g = gain[0]
    assert np.all(g > 0)  # no sign flip: sample-aligned (a 1..3 sample delay flips signs)
    depth = 1.0 - g.min()
    length = norm._length
    assert np.abs(np.diff(g)).max() <= 1.05 * 2 * depth / length  # cumulative Hann: slope <= 2/L
    assert np.abs(np.diff(g, 2)).max() <= 1.2 * depth * 2 * np.pi / length ** 2
    # spectrum: away from the tone (+-1 kHz) the output holds no more than the input's own fades
    win = np.hanning(y.shape[1])
    spec_in = np.abs(np.fft.rfft(y[0] * win)) * 10 ** (-(6 + SAFETY_MARGIN_DB) / 20)
    spec_out = np.abs(np.fft.rfft(out[0] * win))
    f = np.fft.rfftfreq(y.shape[1], 1 / SR)
    away = np.abs(f - SR / 4) > 1000
    tone = spec_out.max()
    assert 20 * np.log10(spec_out[away].max() / tone) < -100
    assert spec_out[away].max() <= 4 * spec_in[away].max() + 1e-7 * tone


def test_abrupt_start_at_full_level(tmp_path):
    """A file that starts mid-waveform at full level: FFmpeg's resampler mirrors the signal before
    the first sample (and rings), the project's meter sees zeros; the output is under the ceiling
    for both."""
    n = np.arange(SR)
    x = np.sin(2 * np.pi * n / 4 + np.pi / 4).astype(np.float32)
    out, res = normalize_with_result(x, SR, measured_lufs=-3.0, target_lufs=-3.0, max_corrections=0)
    assert out.shape == x.shape
    assert measure(out, SR).true_peak_dbtp <= -1.0
    assert _judge(tmp_path, out[np.newaxis], SR, "abrupt")["TP"] <= -1.0


@pytest.mark.parametrize("sr", [44100, 96000])
def test_other_rates(tmp_path, sr):
    """44.1 kHz (4x Annex 2, 8x detector grid; FFmpeg resamples by 4.35) and 96 kHz (2x / 4x):
    tones near the top of the band plus noise, 6 dB over the ceiling, end under it for both meters."""
    rng = np.random.default_rng(sr)
    t = np.arange(2 * sr) / sr
    x = (np.sin(2 * np.pi * 997 * t) + 0.5 * np.sin(2 * np.pi * 15000 * t + 0.3)
         + 0.2 * rng.standard_normal(t.size))
    x = _fade(np.vstack([x, np.roll(x, 100)]), sr)
    gain = -1.0 + 6.0 - measure(x.astype(np.float32), sr).true_peak_dbtp
    norm = LoudnessNormalizer(sr, 2, gain_db=gain, true_peak_max_dbtp=-1.0)
    out = _run_blocks(norm, x.astype(np.float32), [sr // 3] * 6)
    assert out.shape == x.shape and norm.result().max_gain_reduction_db > 5.0
    assert measure(out, sr).true_peak_dbtp <= -1.0
    assert _judge(tmp_path, out, sr, f"rate{sr}")["TP"] <= -1.0


def test_gain_only_is_an_exact_multiplication():
    """No peak near the ceiling: the output is the input times the gain, bit for bit, and the
    limiter reports nothing."""
    y = programme(10.0)
    y = y * (10 ** (-10 / 20) / np.abs(y).max())  # sample peak -10 dBFS, true peak about the same
    gain_db = 3.0
    norm = LoudnessNormalizer(SR, 2, gain_db=gain_db, true_peak_max_dbtp=-1.0)
    out = _run_blocks(norm, y, [30000] * 16)
    np.testing.assert_array_equal(out, y * np.float32(10 ** (gain_db / 20)))
    res = norm.result()
    assert res.limited_samples == 0 and res.limited_fraction == 0.0 and res.max_gain_reduction_db == 0.0
    assert res.frames == y.shape[1]


def test_stereo_is_linked():
    """A loud left channel and a quiet right one: every sample of both gets the same gain."""
    rng = np.random.default_rng(5)
    n = SR * 2
    left = 0.9 * np.sin(2 * np.pi * 440 * np.arange(n) / SR) * (1 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(n) / SR))
    right = 0.05 * rng.standard_normal(n)
    y = np.vstack([left, right]).astype(np.float32)
    y[:, y[0] == 0] = 1e-3  # no zero sample, so out / in is defined everywhere
    y[1, y[1] == 0] = 1e-3
    norm = LoudnessNormalizer(SR, 2, gain_db=6.0, true_peak_max_dbtp=-1.0)
    out = _run_blocks(norm, y, [7000] * 14)
    g = out.astype(np.float64) / y
    assert norm.result().limited_fraction > 0.5
    np.testing.assert_allclose(g[0], g[1], rtol=1e-6)


def test_streaming_in_random_blocks_equals_one_shot():
    """Blocks of random sizes (1 sample up to 20000) give the one-shot result, sample for sample,
    and as many samples as went in."""
    rng = np.random.default_rng(3341)
    y = programme(4.0)
    y = y * np.float32(1.0 / np.abs(y).max())
    one, _ = normalize_with_result(y, SR, measured_lufs=measure(y, SR).integrated_lufs, target_lufs=-10.0,
                                   max_corrections=0)
    gain = -10.0 - measure(y, SR).integrated_lufs
    for _ in range(3):
        sizes = []
        while sum(sizes) < y.shape[1]:
            sizes.append(int(rng.choice([1, 2, 7, 13, 100, 257, 4096, 20000])))
        norm = LoudnessNormalizer(SR, 2, gain_db=gain)
        out = _run_blocks(norm, y, sizes)
        assert out.shape == y.shape
        np.testing.assert_array_equal(out, one)
        assert norm.result().limited_samples > 0


def test_streaming_latency_and_lengths():
    """push() holds back the look-ahead (latency_frames), flush() returns the rest."""
    norm = LoudnessNormalizer(SR, 1, gain_db=0.0)
    first = norm.push(np.zeros(1000, np.float32))
    assert first.shape == (1, 1000 - norm.latency_frames)
    assert norm.flush().shape == (1, norm.latency_frames)
    assert norm.flush().shape == (1, 0)
    with pytest.raises(InvalidParameter, match="after flush"):
        norm.push(np.zeros(10, np.float32))


def test_memory_is_flat():
    """However long the stream, the normaliser holds a block and a few look-ahead windows."""
    rng = np.random.default_rng(7)
    norm = LoudnessNormalizer(SR, 2, gain_db=12.0)  # limiting all along
    block = (rng.standard_normal((2, 4096)) * 0.3).astype(np.float32)
    sizes = []
    for _ in range(300):
        assert norm.push(block).shape == (2, 4096) or norm.result().frames < 4096
        sizes.append((norm._x.shape[1], norm._env_hist.size, norm._r_hist.size))
    assert max(s[0] for s in sizes) <= 4096 + norm.latency_frames + 24
    assert max(s[1] for s in sizes) < norm._length and max(s[2] for s in sizes) < norm._length
    assert norm.result().limited_fraction > 0.5


@pytest.mark.parametrize("frames", [1, 5, 12, 13, 300])
def test_short_input(frames):
    """1 sample (or a few) in, as many out; a lone full-scale sample is limited too."""
    x = np.zeros((2, frames), np.float32)
    x[:, frames // 2] = 1.0
    out, res = normalize_with_result(x, SR, measured_lufs=None, target_lufs=-23.0)
    assert out.shape == x.shape
    assert res.gain_db == 0.0 and res.note and "no gain" in res.note
    assert np.abs(out).max() < 1.0 and res.limited_samples > 0


def test_silent_input():
    """Digital silence: measured loudness None or -inf, no gain, zeros out, and the note says so."""
    x = np.zeros((2, SR * 3), np.float32)
    for measured in (None, -math.inf):
        out, res = normalize_with_result(x, SR, measured_lufs=measured, target_lufs=-23.0)
        assert out.shape == x.shape and not out.any()
        assert res.gain_db == 0.0 and res.measured_lufs is None and "no gain" in res.note
        assert res.limited_samples == 0 and res.output_integrated_lufs is None
    assert gain_for(None, -23.0) == (0.0, gain_for(-math.inf, -23.0)[1])
    assert gain_for(-30.0, -23.0) == (7.0, None)


# ---------------------------------------------------------------------------- programme
#: Loud targets (LUFS, at -1 dBTP) for the peak-normalised material: 2.5 .. 6.6 dB of limiting.
LOUD_TARGETS = {"speech": -14.0, "programme": -9.0, "music": -11.0}


def _material(kind: str) -> tuple[np.ndarray, int]:
    """Too loud: sample peak at 0 dBFS."""
    if kind == "speech":
        y, sr = espeak_speech(20.0)[np.newaxis, :], SR
    elif kind == "programme":
        y, sr = programme(20.0), SR
    else:
        y, sr = _real_music(25.0)
    return (y / np.abs(y).max()).astype(np.float32), sr


@pytest.mark.parametrize("kind", ["speech", "programme", "music"])
@pytest.mark.parametrize("target, ceiling", [(-23.0, -1.0), (-16.0, -1.0), (-24.0, -2.0), (None, -1.0)],
                         ids=["R128", "-16_-1", "-24_-2", "loud_-1"])
def test_programme_reaches_target(tmp_path, kind, target, ceiling):
    """Speech (espeak-ng), synthetic programme and recorded music, peaks at 0 dBFS, to EBU R128,
    -16/-1, -24/-2 and a loud target (-14 / -9 / -11 LUFS at -1 dBTP: 2.5 to 6.6 dB of limiting):
    FFmpeg reads I within 0.3 LU of the target and the true peak at or under the ceiling; so does
    the project's meter."""
    if target is None:
        target = LOUD_TARGETS[kind]
    y, sr = _material(kind)
    measured = measure(y, sr).integrated_lufs
    out, res = normalize_with_result(y, sr, measured_lufs=measured, target_lufs=target, true_peak_max_dbtp=ceiling)
    assert out.shape == y.shape
    got = _judge(tmp_path, out, sr, f"{kind}{target}")
    assert abs(got["I"] - target) <= ACCURACY_LU, (got, res)
    assert got["TP"] <= ceiling, (got, res)
    own = measure(out, sr)
    assert own.true_peak_dbtp <= ceiling and abs(own.integrated_lufs - target) <= 0.05
    assert res.output_integrated_lufs == pytest.approx(own.integrated_lufs, abs=1e-9)
    if target == LOUD_TARGETS[kind]:  # the limiter lowered the loudness: corrected, and reported
        assert res.max_gain_reduction_db > 2.0 and res.correction_passes >= 1 and res.note is None


def test_dialogue_gated_target_corrects_only_the_limiters_loss():
    """gating="speech": measured and target are dialogue-gated (here 2 LU over the level-gated
    reading, as a dialogue-gated meter reads speech with pauses). The gain is target - measured; the
    normaliser cannot measure dialogue gating, so it brings its level-gated output back to where the
    gain alone puts it (input + gain) instead of to the target: 2 LU under it, level-gated."""
    y, _ = _material("speech")
    level = measure(y, SR).integrated_lufs
    dialogue = level + 2.0
    out, res = normalize_with_result(y, SR, measured_lufs=dialogue, target_lufs=-14.0, gating="speech")
    assert res.gating == "speech" and res.input_integrated_lufs == pytest.approx(level, abs=1e-9)
    assert res.correction_passes >= 1 and res.note is None
    own = measure(out, SR)
    assert own.integrated_lufs == pytest.approx(-14.0 - 2.0, abs=0.05)
    assert own.true_peak_dbtp <= -1.0
    _, lv = normalize_with_result(y, SR, measured_lufs=dialogue, target_lufs=-14.0)  # level: the target itself
    assert lv.output_integrated_lufs == pytest.approx(-14.0, abs=0.05)


def test_no_delay_on_programme():
    """Cross-correlation of output and input peaks at lag 0 (speech, limited)."""
    y, _ = _material("speech")
    out = normalize(y, SR, measured_lufs=measure(y, SR).integrated_lufs, target_lufs=-14.0)
    a, b = y[0].astype(np.float64), out[0].astype(np.float64)
    lags = np.arange(-50, 51)
    xc = [np.dot(a[50:-50], np.roll(b, -lag)[50:-50]) for lag in lags]
    assert lags[int(np.argmax(xc))] == 0


def test_codec_margin_lowers_the_threshold():
    y, _ = _material("programme")
    m = measure(y, SR).integrated_lufs
    out, res = normalize_with_result(y, SR, measured_lufs=m, target_lufs=-14.0, codec_margin_db=1.0,
                                     max_corrections=0)
    assert res.limiter_threshold_dbtp == pytest.approx(-1.0 - 1.0 - SAFETY_MARGIN_DB)
    assert measure(out, SR).true_peak_dbtp <= res.limiter_threshold_dbtp + 1e-6


def test_normalize_file(tmp_path):
    """File to file: decode, normalise (a correction pass: the limiter works), 24-bit FLAC out;
    FFmpeg reads it on target; nothing left behind; checks before any decoding."""
    src = str(tmp_path / "in.wav")
    y, _ = _material("speech")
    write(src, y, SR, codec="pcm_s24le", sample_fmt="s32")
    with stream(src) as s:
        decoded = np.concatenate(list(s), axis=1)
    measured = measure(decoded, SR).integrated_lufs
    dest = str(tmp_path / "out.flac")
    res = normalize_file(src, dest, measured_lufs=measured, target_lufs=-14.0, true_peak_max_dbtp=-1.0)
    got = ebur128_precise(dest)
    assert abs(got["I"] + 14.0) <= ACCURACY_LU and got["TP"] <= -1.0
    assert res.frames == y.shape[1] and res.correction_passes >= 1 and res.limited_samples > 0
    with stream(dest) as s:
        assert s.info.audio.codec == "flac" and s.info.audio.bit_depth == 24
        assert sum(b.shape[1] for b in s) == y.shape[1]
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "out.flac"]  # no temporary file left
    with pytest.raises(InvalidParameter, match="may not be the input"):
        normalize_file(src, src, measured_lufs=measured)
    with pytest.raises(InvalidParameter):
        normalize_file(src, str(tmp_path / "x.xyz"), measured_lufs=measured)
    with pytest.raises(InvalidParameter, match="-30"):
        normalize_file(src, str(tmp_path / "x.flac"), measured_lufs=measured, true_peak_max_dbtp=-30)
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "out.flac"]


def test_normalize_file_to_a_lossy_format(tmp_path):
    """AAC out: the limiter and its correction run on a FLAC intermediate, the AAC is encoded once
    at the end; with codec_margin_db = 1 the AAC's true peak stays under the ceiling."""
    src = str(tmp_path / "in.wav")
    y, _ = _material("music")
    write(src, y, 44100, codec="pcm_s16le", sample_fmt="s16")
    measured = measure(y, 44100).integrated_lufs
    dest = str(tmp_path / "out.m4a")
    res = normalize_file(src, dest, measured_lufs=measured, target_lufs=-11.0, true_peak_max_dbtp=-1.0,
                         codec_margin_db=1.0)
    got = ebur128_precise(dest)
    assert abs(got["I"] + 11.0) <= ACCURACY_LU and got["TP"] <= -1.0
    assert res.correction_passes >= 1 and res.limiter_threshold_dbtp == pytest.approx(-2.0 - SAFETY_MARGIN_DB)
    with stream(dest) as s:
        assert s.info.audio.codec == "aac"
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "out.m4a"]


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("kwargs, quoted", [
    (dict(target_lufs=5.0), "5.0"),
    (dict(target_lufs=-80.0), "-80.0"),
    (dict(target_lufs=float("nan")), "nan"),
    (dict(true_peak_max_dbtp=0.5), "0.5"),
    (dict(true_peak_max_dbtp=-25.0), "-25.0"),
    (dict(measured_lufs=float("nan")), "nan"),
    (dict(measured_lufs="loud"), "'loud'"),
    (dict(measured_lufs=-150.0), "-150.0"),  # needs +127 dB
    (dict(lookahead_ms=0.0), "0.0"),
    (dict(release_ms=float("inf")), "inf"),
    (dict(release_ms=2.0, lookahead_ms=5.0), "2.0"),
    (dict(codec_margin_db=-1.0), "-1.0"),
    (dict(tolerance_lu=0.0), "0.0"),
    (dict(max_corrections=9), "9"),
    (dict(gating="dialog"), "'dialog'"),
])
def test_bad_parameters(kwargs, quoted):
    args = dict(measured_lufs=-20.0, target_lufs=-23.0)
    args.update(kwargs)
    with pytest.raises(InvalidParameter) as err:
        normalize(np.zeros((1, 100), np.float32), SR, **args)
    assert quoted in str(err.value)


@pytest.mark.parametrize("kwargs, quoted", [
    (dict(sample_rate=44100.0), "44100.0"),
    (dict(sample_rate=500), "500"),
    (dict(channels=0), "0"),
    (dict(gain_db=float("inf")), "inf"),
    (dict(gain_db=100.0), "100.0"),
])
def test_bad_normalizer_parameters(kwargs, quoted):
    args = dict(sample_rate=SR, channels=2, gain_db=0.0)
    args.update(kwargs)
    with pytest.raises(InvalidParameter) as err:
        LoudnessNormalizer(args.pop("sample_rate"), args.pop("channels"), **args)
    assert quoted in str(err.value)


def test_bad_blocks():
    norm = LoudnessNormalizer(SR, 2, gain_db=0.0)
    with pytest.raises(InvalidParameter, match=r"\(3, 10\)"):
        norm.push(np.zeros((3, 10), np.float32))
    with pytest.raises(InvalidParameter, match="NaN"):
        norm.push(np.full((2, 10), np.nan, np.float32))
    with pytest.raises(InvalidParameter, match="shape"):
        normalize(np.zeros((2, 3, 4), np.float32), SR, measured_lufs=-20.0)


@pytest.mark.parametrize("steps", [{"loudness": {"target_lufs": -16.0}},
                                   {"denoise": {"amount": 100}, "loudness": {"target_lufs": -16.0}}],
                         ids=["loudness", "denoise+loudness"])
def test_remedy_file_reports_its_progress(tmp_path, steps):
    """The service's Enhance shows remedy_file's progress: a share of the work that only grows, from
    the first blocks to the whole (the denoiser's pass the first half when both steps run)."""
    from audiolib.remedy import remedy_file

    src = str(tmp_path / "in.wav")
    y, _ = _material("speech")
    write(src, y, SR, codec="pcm_s16le", sample_fmt="s16")
    measured = measure(y, SR).integrated_lufs
    seen: list[float] = []
    remedy_file(src, str(tmp_path / "out.flac"), steps, measured_lufs=measured,
                progress=lambda done, total: seen.append(done / total))
    assert len(seen) >= 3 and seen == sorted(seen), seen
    assert 0.0 < seen[0] < 0.5 and seen[-1] == pytest.approx(1.0, abs=1e-6)
    if "denoise" in steps:  # the denoiser's pass ends at half, the normaliser's starts there
        assert any(0.4 < v <= 0.5 for v in seen) and any(0.5 < v < 1.0 for v in seen)
