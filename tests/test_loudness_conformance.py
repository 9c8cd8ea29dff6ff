"""Conformance of :mod:`audiolib.loudness` with EBU Tech 3341 / Tech 3342 and ITU-R BS.1770-4.

Every test signal is synthesised here from its definition in EBU Tech 3341 (v3 2016 / v4 2023)
Table 1 "Minimum requirements test signals" and EBU Tech 3342 Table 1, at 48 kHz, with exact
levels (``10 ** (dBFS / 20)`` per-channel peak, stereo sines in phase):

- Tech 3341 cases 1-6 and 9-19 exactly; 20-23 approximately (synthesised at 4 x 48 kHz, low-passed
  with a long Kaiser FIR and decimated with offsets 0..3: the EBU does not specify its filter).
- Tech 3341 cases 7 and 8 (and Tech 3342 cases 5 and 6, the same two files) are authentic
  programme material that exists only as the EBU's WAV files
  (``seq-3341-7_seq-3342-5-24bit.wav``, ``seq-3341-2011-8_seq-3342-6-24bit-v02.wav``). They
  cannot be synthesised and are deliberately left out; they are not faked.
- Tech 3342 LRA cases 1-4.

Tolerances are the documents': loudness +-0.1 LU, true peak +0.2/-0.4 dB, LRA +-1 LU (and also
+-0.1 LU, which the issue asks us to aim for). The true peak of sines is also held to +0.1/-0.2 dB
of the analytic value (issue 19), over every phase of fs/4 and fs/6 sines in 2.25-degree steps.

How the cases map onto the meter:

- 9 / 12 (constancy): the meter's 100 ms short-term / momentary series after the window fills.
- 10 / 13 (file-based meters): one signal per segment ``i`` (as the EBU ships one file per i),
  measured separately; the maximum S / M (``short_term_max_lufs`` / ``momentary_max_lufs``, which
  the meter tracks at every sample position).
- 11 / 14 (live meters): the whole sequence pushed segment by segment into one meter; after each
  segment the running maximum S / M must equal that segment's level (the levels rise by 1 dB per
  segment, so each running maximum is the segment's own maximum). Case 11 is also checked on the
  10 Hz short-term series. Case 14 is *not* checked on the 10 Hz momentary series: a 400 ms
  burst misaligned with a 100 ms grid by up to 40 ms reads up to 0.46 dB low, which is why the
  meter tracks the maximum at sample resolution.

Also here: the 5.0 / 5.1 / 7.1 channel weights (BS.1770-4 Table 3 and Annex 3), sample-rate
independence (8 kHz ... 192 kHz, and pyloudnorm's ``DeMan`` filters as an independent oracle),
silence, too-short input and block-size independence of the streaming meter.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import scipy.signal

from audiolib.loudness import LoudnessMeter, channel_weights, measure

FS = 48000
STEREO = ("FL", "FR")
LOUDNESS_TOL = 0.1  # LU, EBU Tech 3341
TP_TOL_UP, TP_TOL_DOWN = 0.2, 0.4  # dB, EBU Tech 3341 cases 15-23
LRA_TOL = 1.0  # LU, EBU Tech 3342
LRA_AIM = 0.1  # LU, the tighter target the issue asks for


# ---------------------------------------------------------------------------- signal builders
def amp(dbfs: float) -> float:
    """Peak amplitude of a level in dBFS (exact)."""
    return 10.0 ** (dbfs / 20.0)


def tone_sequence(segments, sr: int = FS, freq: float = 1000.0, channels: int = 2) -> np.ndarray:
    """Phase-continuous sine, ``(channels, frames)`` float64, in phase on every channel.

    ``segments`` is a list of ``(level_dbfs or None for digital silence, seconds)``; segment
    boundaries are rounded to the nearest sample on the cumulative time, so they do not drift.
    """
    edges = np.round(np.cumsum([0.0] + [s for _, s in segments]) * sr).astype(np.int64)
    env = np.zeros(edges[-1])
    for (level, _), a, b in zip(segments, edges[:-1], edges[1:], strict=True):
        env[a:b] = 0.0 if level is None else amp(level)
    n = np.arange(edges[-1])
    return np.tile(env * np.sin(2.0 * np.pi * freq * n / sr), (channels, 1))


def fade(x: np.ndarray, sr: int, ms: float = 10.0) -> np.ndarray:
    """Raised-cosine fade-in and fade-out of ``ms`` milliseconds (last axis)."""
    n = int(round(ms * sr / 1000.0))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    y = np.array(x, dtype=np.float64, copy=True)
    y[..., :n] *= ramp
    y[..., -n:] *= ramp[::-1]
    return y


def run_meter(y: np.ndarray, sr: int = FS, names=STEREO, *, true_peak: bool = False,
              block: int = 1 << 16) -> LoudnessMeter:
    meter = LoudnessMeter(sr, names, true_peak=true_peak)
    for i in range(0, y.shape[1], block):
        meter.push(y[:, i:i + block])
    return meter


# ---------------------------------------------------------------------------- Tech 3341 1-6
# (id, segments, expected I); cases 1 and 2 also check M and S.
TECH3341_INTEGRATED = [
    ("case01-stereo-1kHz-23dBFS-20s", [(-23.0, 20.0)], -23.0),
    ("case02-stereo-1kHz-33dBFS-20s", [(-33.0, 20.0)], -33.0),
    ("case03-relative-gate-36-23-36", [(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], -23.0),
    ("case04-absolute-gate-72-36-23-36-72",
     [(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0), (-72.0, 10.0)], -23.0),
    ("case05-26-20(20.1s)-26", [(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)], -23.0),
]


@pytest.mark.parametrize("segments, expected", [c[1:] for c in TECH3341_INTEGRATED],
                         ids=[c[0] for c in TECH3341_INTEGRATED])
def test_tech3341_integrated(segments, expected):
    """EBU Tech 3341 cases 1-5: integrated loudness (and relative / absolute gates) +-0.1 LU."""
    r = measure(tone_sequence(segments), FS, channel_names=STEREO, true_peak=False)
    assert r.integrated_lufs == pytest.approx(expected, abs=LOUDNESS_TOL)


@pytest.mark.parametrize("level", [-23.0, -33.0], ids=["case01-M-S-23dBFS", "case02-M-S-33dBFS"])
def test_tech3341_cases_1_2_momentary_short_term(level):
    """EBU Tech 3341 cases 1 and 2: M, S (every 100 ms value, and the maxima) = level +-0.1 LU."""
    meter = run_meter(tone_sequence([(level, 20.0)]))
    m, s = meter.momentary_lufs(), meter.short_term_lufs()
    assert m.size == 197 and s.size == 171  # complete 400 ms / 3 s windows in 20 s, 100 ms apart
    np.testing.assert_allclose(m, level, atol=LOUDNESS_TOL)
    np.testing.assert_allclose(s, level, atol=LOUDNESS_TOL)
    r = meter.result()
    assert r.momentary_max_lufs == pytest.approx(level, abs=LOUDNESS_TOL)
    assert r.short_term_max_lufs == pytest.approx(level, abs=LOUDNESS_TOL)


# ---------------------------------------------------------------------------- case 6 / weights
def case6_signal(names) -> np.ndarray:
    """Tech 3341 case 6: 1 kHz, 20 s; L, R -28, C -24, Ls, Rs -30 dBFS; LFE (if any) silent."""
    levels: dict[str, float | None] = {"FL": -28.0, "FR": -28.0, "FC": -24.0, "BL": -30.0, "BR": -30.0,
                                       "SL": -30.0, "SR": -30.0, "LFE": None}
    mono = tone_sequence([(-30.0, 20.0)], channels=1)[0] / amp(-30.0)  # unit-peak sine
    return np.stack([mono * (0.0 if (level := levels[c]) is None else amp(level)) for c in names])


CASE6_LAYOUTS = [
    ("case06-5.0-BL-BR", ("FL", "FR", "FC", "BL", "BR")),
    ("case06-5.0-SL-SR", ("FL", "FR", "FC", "SL", "SR")),
    ("case06-5.1-silent-LFE-BL-BR", ("FL", "FR", "FC", "LFE", "BL", "BR")),
    ("case06-5.1-silent-LFE-SL-SR", ("FL", "FR", "FC", "LFE", "SL", "SR")),
]


@pytest.mark.parametrize("names", [c[1] for c in CASE6_LAYOUTS], ids=[c[0] for c in CASE6_LAYOUTS])
def test_tech3341_case6_multichannel(names):
    """EBU Tech 3341 case 6 (5.0, and 5.1 with a silent LFE as in the EBU's second file): I = -23.0."""
    r = measure(case6_signal(names), FS, channel_names=names, true_peak=False)
    assert r.integrated_lufs == pytest.approx(-23.0, abs=LOUDNESS_TOL)


@pytest.mark.parametrize("channels", [5, 6], ids=["case06-default-layout-5ch", "case06-default-layout-6ch"])
def test_tech3341_case6_default_layout(channels):
    """EBU Tech 3341 case 6 without channel names (the EBU files' order L, R, C, [LFE,] Ls, Rs):
    FFmpeg's default 5.0 / 5.1 layout for the channel count is assumed, and gives I = -23.0."""
    levels = [-28.0, -28.0, -24.0, -30.0, -30.0] if channels == 5 else [-28.0, -28.0, -24.0, None, -30.0, -30.0]
    unit = tone_sequence([(0.0, 20.0)], channels=1)[0]
    y = np.stack([unit * (0.0 if level is None else amp(level)) for level in levels])
    r = measure(y, FS, true_peak=False)
    assert r.integrated_lufs == pytest.approx(-23.0, abs=LOUDNESS_TOL)


def test_tech3341_case6_lfe_is_excluded():
    """EBU Tech 3341 case 6 in 5.1 with a loud LFE (-10 dBFS, 1 kHz): BS.1770-4 excludes the LFE."""
    names = ("FL", "FR", "FC", "LFE", "BL", "BR")
    y = case6_signal(names)
    y[3] = tone_sequence([(-10.0, 20.0)], channels=1)[0]
    r = measure(y, FS, channel_names=names, true_peak=False)
    assert r.integrated_lufs == pytest.approx(-23.0, abs=LOUDNESS_TOL)


# BS.1770-4 Annex 1 Tables 1 and 2: the published 48 kHz K-weighting coefficients.
_BS1770_PRE_B = (1.53512485958697, -2.69169618940638, 1.19839281085285)
_BS1770_PRE_A = (1.0, -1.69065929318241, 0.73248077421585)
_BS1770_RLB_B = (1.0, -2.0, 1.0)
_BS1770_RLB_A = (1.0, -1.99004745483398, 0.99007225036621)


def k_power_gain_48k(freq: float) -> float:
    """|H(f)|^2 of the BS.1770-4 48 kHz K-weighting (both stages), from the standard's tables."""
    z = np.exp(-1j * 2.0 * np.pi * freq / FS * np.arange(3))
    h = (np.dot(_BS1770_PRE_B, z) / np.dot(_BS1770_PRE_A, z)) * (np.dot(_BS1770_RLB_B, z) / np.dot(_BS1770_RLB_A, z))
    return float(abs(h) ** 2)


SEVEN_ONE = ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR")
# Annex 3 Table 4 weights for 7.1 (BS.2051 0+7+0): fronts 1.0, LFE excluded, back pair (+-135..150
# deg) 1.0, side pair (+-90 deg) 1.41. FFmpeg's ebur128 filter would give all four surrounds 1.41.
SEVEN_ONE_WEIGHTS = {"FL": 1.0, "FR": 1.0, "FC": 1.0, "LFE": 0.0, "BL": 1.0, "BR": 1.0, "SL": 1.41, "SR": 1.41}
SEVEN_ONE_CASES = [
    ("7.1-back-pair-only-BL-BR-23dBFS", {"BL": -23.0, "BR": -23.0}),
    ("7.1-side-pair-only-SL-SR-23dBFS", {"SL": -23.0, "SR": -23.0}),
    ("7.1-all-surrounds-30dBFS", {"BL": -30.0, "BR": -30.0, "SL": -30.0, "SR": -30.0}),
    ("7.1-full-case6-levels-plus-loud-LFE",
     {"FL": -28.0, "FR": -28.0, "FC": -24.0, "LFE": -10.0, "BL": -26.0, "BR": -26.0, "SL": -30.0, "SR": -30.0}),
]


def seven_one_expected(levels: dict, weights: dict) -> float:
    """BS.1770-4 eq. 2 by hand: -0.691 + 10 log10(sum_i G_i * A_i^2 / 2 * |K(1 kHz)|^2)."""
    z = sum(weights[c] * amp(level) ** 2 / 2.0 for c, level in levels.items())
    return -0.691 + 10.0 * math.log10(z * k_power_gain_48k(1000.0))


def test_seven_one_weights_table():
    """BS.1770-4 Annex 3 for 7.1: SL/SR 1.41 (+-90 deg), BL/BR 1.0 (+-135..150 deg), LFE 0."""
    np.testing.assert_array_equal(channel_weights(SEVEN_ONE), [SEVEN_ONE_WEIGHTS[c] for c in SEVEN_ONE])


@pytest.mark.parametrize("levels", [c[1] for c in SEVEN_ONE_CASES], ids=[c[0] for c in SEVEN_ONE_CASES])
def test_seven_one_weighting(levels):
    """BS.1770-4 Annex 3 (7.1; Tech 3341 case 6 extended): measured I equals the hand computation.

    The expected value uses the standard's 48 kHz K-weighting table, the 1 kHz sine's mean square
    A^2 / 2 and the Annex 3 weights; FFmpeg's all-1.41 weighting must be clearly distinguishable.
    """
    mono = tone_sequence([(0.0, 10.0)], channels=1)[0]
    y = np.stack([mono * (amp(levels[c]) if c in levels else 0.0) for c in SEVEN_ONE])
    r = measure(y, FS, channel_names=SEVEN_ONE, true_peak=False)
    expected = seven_one_expected(levels, SEVEN_ONE_WEIGHTS)
    assert r.integrated_lufs == pytest.approx(expected, abs=0.01)
    if any(c in levels for c in ("BL", "BR")):
        all_141 = dict(SEVEN_ONE_WEIGHTS, BL=1.41, BR=1.41)
        assert abs(seven_one_expected(levels, all_141) - r.integrated_lufs) > 0.2


# ---------------------------------------------------------------------------- cases 9-14
def test_tech3341_case9_short_term_constant():
    """EBU Tech 3341 case 9: (1.34 s at -20, 1.66 s at -30 dBFS) x 5; S = -23.0 +-0.1, constant after 3 s."""
    meter = run_meter(tone_sequence([(-20.0, 1.34), (-30.0, 1.66)] * 5))
    s = meter.short_term_lufs()  # every value is a complete 3 s window, i.e. ends at >= 3 s
    assert s.size == 121
    np.testing.assert_allclose(s, -23.0, atol=LOUDNESS_TOL)


def test_tech3341_case12_momentary_constant():
    """EBU Tech 3341 case 12: (0.18 s at -20, 0.22 s at -30 dBFS) x 25; M = -23.0 +-0.1, constant after 1 s."""
    meter = run_meter(tone_sequence([(-20.0, 0.18), (-30.0, 0.22)] * 25))
    m = meter.momentary_lufs()
    ends_s = (np.arange(m.size) + 4) * 0.1
    after = m[ends_s >= 1.0 - 1e-9]
    assert after.size == 91
    np.testing.assert_allclose(after, -23.0, atol=LOUDNESS_TOL)


def case10_segment(i: int) -> np.ndarray:
    return tone_sequence([(None, 0.15 * i), (-23.0, 3.0), (None, 1.0)])


def case13_segment(i: int) -> np.ndarray:
    return tone_sequence([(None, 0.02 * i), (-23.0, 0.4), (None, 1.0)])


@pytest.mark.parametrize("i", range(20), ids=[f"case10-file{i + 1:02d}" for i in range(20)])
def test_tech3341_case10_max_short_term(i):
    """EBU Tech 3341 case 10 (file-based; EBU file seq-3341-10-<i+1>): max S = -23.0 +-0.1."""
    r = measure(case10_segment(i), FS, channel_names=STEREO, true_peak=False)
    assert r.short_term_max_lufs == pytest.approx(-23.0, abs=LOUDNESS_TOL)


@pytest.mark.parametrize("i", range(20), ids=[f"case13-file{i + 1:02d}" for i in range(20)])
def test_tech3341_case13_max_momentary(i):
    """EBU Tech 3341 case 13 (file-based; EBU file seq-3341-13-<i+1>): max M = -23.0 +-0.1."""
    r = measure(case13_segment(i), FS, channel_names=STEREO, true_peak=False)
    assert r.momentary_max_lufs == pytest.approx(-23.0, abs=LOUDNESS_TOL)


def case11_segments() -> list[np.ndarray]:
    """20 segments of 6 s: i*0.15 s silence, 3 s at (-38+i) dBFS, (3 - i*0.15) s silence."""
    return [tone_sequence([(None, 0.15 * i), (-38.0 + i, 3.0), (None, 3.0 - 0.15 * i)]) for i in range(20)]


def case14_segments() -> list[np.ndarray]:
    """20 segments of 0.8 s: i*20 ms silence, 400 ms at (-38+i) dBFS, (400 - i*20) ms silence."""
    return [tone_sequence([(None, 0.02 * i), (-38.0 + i, 0.4), (None, 0.4 - 0.02 * i)]) for i in range(20)]


def live_running_maxima(segments, attr: str) -> list[float]:
    """Push the segments one after another into one meter; the running max after each."""
    meter = LoudnessMeter(FS, STEREO, true_peak=False)
    out = []
    for seg in segments:
        meter.push(seg)
        out.append(getattr(meter.result(), attr))
    return out


def test_tech3341_case11_live_short_term():
    """EBU Tech 3341 case 11 (live meters): successive max S = -38, -37, ..., -19 +-0.1."""
    maxima = live_running_maxima(case11_segments(), "short_term_max_lufs")
    np.testing.assert_allclose(maxima, np.arange(-38.0, -18.0), atol=LOUDNESS_TOL)


def test_tech3341_case11_live_short_term_10hz_series():
    """EBU Tech 3341 case 11 on the 10 Hz short-term series: max S per 6 s segment = -38+i +-0.1."""
    meter = run_meter(np.concatenate(case11_segments(), axis=1))
    s = meter.short_term_lufs()
    ends_s = (np.arange(s.size) + 30) * 0.1
    seg = np.floor((ends_s - 1e-9) / 6.0).astype(int)  # the segment each window ends in
    maxima = [s[seg == i].max() for i in range(20)]
    np.testing.assert_allclose(maxima, np.arange(-38.0, -18.0), atol=LOUDNESS_TOL)


def test_tech3341_case14_live_momentary():
    """EBU Tech 3341 case 14 (live meters): successive max M = -38, -37, ..., -19 +-0.1."""
    maxima = live_running_maxima(case14_segments(), "momentary_max_lufs")
    np.testing.assert_allclose(maxima, np.arange(-38.0, -18.0), atol=LOUDNESS_TOL)


# ---------------------------------------------------------------------------- true peak 15-23
# BS.1770-4 Annex 2 Table 1, phases 0 and 1 (phase 3 = reversed phase 0, phase 2 = reversed phase 1),
# for an independent float64 evaluation of the specified interpolator.
_ANNEX2_PHASE0 = [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000,
                  -0.0594482421875, 0.1373291015625, 0.9721679687500, -0.1022949218750,
                  0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500]
_ANNEX2_PHASE1 = [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250,
                  -0.1665039062500, 0.4650878906250, 0.7797851562500, -0.2003173828125,
                  0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375]


def annex2_true_peak_dbtp(y: np.ndarray) -> float:
    """max(|4x Annex 2 interpolation|, |samples|) in dB, float64, direct convolution."""
    phases = [_ANNEX2_PHASE0, _ANNEX2_PHASE1, _ANNEX2_PHASE1[::-1], _ANNEX2_PHASE0[::-1]]
    peak = float(np.abs(y).max())
    for ch in np.atleast_2d(y):
        for taps in phases:
            peak = max(peak, float(np.abs(np.convolve(ch, taps)).max()))
    return 20.0 * math.log10(peak)


def tp_sine(period_samples: float, peak: float, phase_deg: float, seconds: float = 1.0) -> np.ndarray:
    """Stereo sine at fs/period, given peak and starting phase, 10 ms fades."""
    n = np.arange(int(round(seconds * FS)))
    x = peak * np.sin(2.0 * np.pi * n / period_samples + math.radians(phase_deg))
    return fade(np.tile(x, (2, 1)), FS, 10.0)


TP_SINE_CASES = [
    ("case15-fs/4-0.5FFS-0deg", 4, amp(-6.0), 0.0, -6.0),
    ("case16-fs/4-0.5FFS-45deg", 4, amp(-6.0), 45.0, -6.0),
    ("case17-fs/6-0.5FFS-60deg", 6, amp(-6.0), 60.0, -6.0),
    ("case18-fs/8-0.5FFS-67.5deg", 8, amp(-6.0), 67.5, -6.0),
    ("case19-fs/4-1.41FFS-45deg", 4, math.sqrt(2.0), 45.0, 3.0),
]
#: The meter's own accuracy on sines (issue 19): within +0.1/-0.2 dB of the analytic true peak.
TP_ACCURACY_UP, TP_ACCURACY_DOWN = 0.1, 0.2


def assert_true_peak(measured, expected, up=TP_TOL_UP, down=TP_TOL_DOWN):
    assert measured is not None
    assert expected - down <= measured <= expected + up, (measured, expected)


@pytest.mark.parametrize("period, peak, phase, expected", [c[1:] for c in TP_SINE_CASES],
                         ids=[c[0] for c in TP_SINE_CASES])
def test_tech3341_true_peak_sines(period, peak, phase, expected):
    """EBU Tech 3341 cases 15-19: max true peak +0.2/-0.4 dB (floats, not clipped, for case 19),
    and within +0.1/-0.2 dB of the sine's analytic peak (20 log10 of its amplitude)."""
    y = tp_sine(period, peak, phase)
    r = measure(y, FS, channel_names=STEREO)
    assert_true_peak(r.true_peak_dbtp, expected)
    assert_true_peak(r.true_peak_dbtp, 20.0 * math.log10(peak), TP_ACCURACY_UP, TP_ACCURACY_DOWN)


def faded_sine(period_samples: float, dbfs: float, phase_deg: float, seconds: float = 1.0,
               fade_ms: float = 50.0) -> np.ndarray:
    """Stereo sine at fs/period, peak ``dbfs``, starting phase ``phase_deg``, 50 ms raised-cosine
    fades (long enough that the fades add no overshoot: the true peak is the sine's amplitude)."""
    n = np.arange(int(round(seconds * FS)))
    x = amp(dbfs) * np.sin(2.0 * np.pi * n / period_samples + math.radians(phase_deg))
    return fade(np.tile(x, (2, 1)), FS, fade_ms)


TP_SWEEP_PHASES = [round(2.25 * k, 2) for k in range(41)]  # 0 .. 90 degrees


@pytest.mark.parametrize("period", [4, 6], ids=["fs/4", "fs/6"])
@pytest.mark.parametrize("phase", TP_SWEEP_PHASES, ids=[f"{p:g}deg" for p in TP_SWEEP_PHASES])
def test_true_peak_phase_sweep(period, phase):
    """Issue 19: fs/4 and fs/6 sines at -6 dBFS, every starting phase from 0 to 90 degrees in
    2.25-degree steps (one period of fs/4 covers the peak's every position between two samples):
    the true peak within +0.1/-0.2 dB of the analytic -6.00 dBTP. (BS.1770-4 Annex 2's example
    filter read from +0.22 dB, fs/4 at 31.5 and 58.5 degrees, to -0.30 dB, fs/6 at 0 degrees.)"""
    r = measure(faded_sine(period, -6.0, phase), FS, channel_names=STEREO)
    assert_true_peak(r.true_peak_dbtp, -6.0, TP_ACCURACY_UP, TP_ACCURACY_DOWN)


def test_true_peak_full_scale_fs4_at_56_25_degrees():
    """Issue 19's report: a 0 dBFS fs/4 sine at 56.25 degrees (true peak 0.00 dBTP) read +0.22 dBTP,
    over Tech 3341's +0.2 dB; FFmpeg's ebur128 reads -0.17. Now within +0.1/-0.2 dB of 0.00."""
    r = measure(faded_sine(4, 0.0, 56.25), FS, channel_names=STEREO)
    assert_true_peak(r.true_peak_dbtp, 0.0, TP_ACCURACY_UP, TP_ACCURACY_DOWN)


def test_annex2_example_filter_fails_the_sweep():
    """The sweep's tolerance tells the two interpolators apart: BS.1770-4 Annex 2's example filter
    (evaluated independently in float64) reads an fs/4 sine at 58.5 degrees over +0.1 dB and an fs/6
    sine at 0 degrees under -0.2 dB, which the meter's interpolator does not (tests above)."""
    assert annex2_true_peak_dbtp(faded_sine(4, -6.0, 58.5)[:1]) > -6.0 + TP_ACCURACY_UP
    assert annex2_true_peak_dbtp(faded_sine(6, -6.0, 0.0)[:1]) < -6.0 - TP_ACCURACY_DOWN


@functools.lru_cache(maxsize=1)
def case20_bandlimited_4fs() -> np.ndarray:
    """Tech 3341 cases 20-23 source at 4 x 48 kHz: fs/6 sine at 0.5 FFS (10**(-6/20)) containing
    one period of an fs/4 sine at 1.00 FFS, phase-continuous on both sides (both pieces start and
    end at phase 0), 10 ms fades; low-passed at 22 kHz (1535-tap Kaiser FIR, beta 12, zero phase).
    """
    hi = 4 * FS
    carrier_period, burst_period = 24, 16  # fs/6 and fs/4 at the 4 x fs rate
    n0 = carrier_period * round(0.25 * hi / carrier_period)  # burst at a carrier zero crossing
    total = int(0.5 * hi)

    def carrier(n: int) -> np.ndarray:
        return amp(-6.0) * np.sin(2.0 * np.pi * np.arange(n) / carrier_period)

    x = np.concatenate([carrier(n0), np.sin(2.0 * np.pi * np.arange(burst_period) / burst_period),
                        carrier(total - n0 - burst_period)])
    x = fade(x, hi, 10.0)
    h = scipy.signal.firwin(1535, 22000.0, fs=hi, window=("kaiser", 12.0))
    return scipy.signal.fftconvolve(x, h, mode="same")


@pytest.mark.parametrize("offset", range(4), ids=[f"case{20 + k}-offset{k}" for k in range(4)])
def test_tech3341_true_peak_burst(offset):
    """EBU Tech 3341 cases 20-23 (approximate: our own anti-alias filter): max TP = 0.0 +0.2/-0.4,
    and within +0.1/-0.2 dB of the band-limited source's peak at 4 x 48 kHz."""
    src = case20_bandlimited_4fs()
    y = np.tile(src[offset::4], (2, 1))
    r = measure(y, FS, channel_names=STEREO)
    assert_true_peak(r.true_peak_dbtp, 0.0)
    assert_true_peak(r.true_peak_dbtp, 20.0 * math.log10(np.abs(src).max()), TP_ACCURACY_UP, TP_ACCURACY_DOWN)


# ---------------------------------------------------------------------------- Tech 3342 LRA
TECH3342_CASES = [
    ("lra-case1-20-then-30dBFS", [(-20.0, 20.0), (-30.0, 20.0)], 10.0),
    ("lra-case2-20-then-15dBFS", [(-20.0, 20.0), (-15.0, 20.0)], 5.0),
    ("lra-case3-40-then-20dBFS", [(-40.0, 20.0), (-20.0, 20.0)], 20.0),
    ("lra-case4-50-35-20-35-50dBFS",
     [(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0), (-50.0, 20.0)], 15.0),
]


@pytest.mark.parametrize("segments, expected", [c[1:] for c in TECH3342_CASES],
                         ids=[c[0] for c in TECH3342_CASES])
def test_tech3342_lra(segments, expected):
    """EBU Tech 3342 cases 1-4: LRA within +-1 LU (the requirement) and +-0.1 LU (our aim)."""
    r = measure(tone_sequence(segments), FS, channel_names=STEREO, true_peak=False)
    assert r.loudness_range_lu == pytest.approx(expected, abs=LRA_TOL)
    assert r.loudness_range_lu == pytest.approx(expected, abs=LRA_AIM)


# ---------------------------------------------------------------------------- sample rates
SAMPLE_RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000]


@pytest.mark.parametrize("sr", SAMPLE_RATES, ids=[f"{sr}Hz" for sr in SAMPLE_RATES])
def test_sample_rate_independence(sr):
    """EBU Tech 3341 case 1 (1 kHz, -23 dBFS stereo, shortened to 5 s) at every rate: I = -23.0 +-0.1."""
    r = measure(tone_sequence([(-23.0, 5.0)], sr=sr), sr, channel_names=STEREO, true_peak=False)
    assert r.integrated_lufs == pytest.approx(-23.0, abs=LOUDNESS_TOL)
    assert r.momentary_max_lufs == pytest.approx(-23.0, abs=LOUDNESS_TOL)


def noise_programme(sr: int, channels: int, seed: int) -> np.ndarray:
    """Seeded white noise, 8 s: loud, quiet (below the relative gate), near silence (below the
    absolute gate) and medium parts, channels at different levels; float32-exact values."""
    rng = np.random.default_rng(seed)
    parts = [(-20.0, 2.5), (-45.0, 1.5), (-85.0, 1.0), (-27.0, 2.0), (-33.0, 1.0)]
    chunks = []
    for level, seconds in parts:
        n = int(round(seconds * sr))
        gains = amp(level) * np.linspace(1.0, 0.5, channels)[:, None]
        chunks.append(gains * rng.standard_normal((channels, n)))
    return np.concatenate(chunks, axis=1).astype(np.float32).astype(np.float64)


PYLOUDNORM_CASES = [
    ("stereo-11025Hz", 11025, STEREO),
    ("stereo-22050Hz", 22050, STEREO),
    ("stereo-44100Hz", 44100, STEREO),
    ("stereo-48000Hz", 48000, STEREO),
    ("stereo-96000Hz", 96000, STEREO),
    ("5.0-48000Hz", 48000, ("FL", "FR", "FC", "BL", "BR")),
]


@pytest.mark.parametrize("sr, names", [c[1:] for c in PYLOUDNORM_CASES], ids=[c[0] for c in PYLOUDNORM_CASES])
def test_pyloudnorm_oracle(sr, names):
    """BS.1770-4 integrated loudness against pyloudnorm (DeMan filters: the same K-weighting
    derivation) on gated noise, at several rates: agreement within 0.01 LU."""
    import pyloudnorm  # a locked dependency: the oracle is always there
    y = noise_programme(sr, len(names), seed=sr + len(names))
    ours = measure(y, sr, channel_names=names, true_peak=False).integrated_lufs
    theirs = pyloudnorm.Meter(sr, filter_class="DeMan").integrated_loudness(y.T)
    assert ours == pytest.approx(theirs, abs=0.01)


# ---------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("sr", [8000, 48000], ids=["8000Hz", "48000Hz"])
def test_digital_silence(sr):
    """Digital silence (10 s; cf. the -inf of Tech 3341 case 4's premise): nothing to measure."""
    r = measure(np.zeros((2, 10 * sr)), sr, channel_names=STEREO)
    assert r.integrated_lufs is None
    assert r.true_peak_dbtp is None
    assert r.sample_peak_dbfs is None
    assert r.loudness_range_lu is None
    assert r.momentary_max_lufs is None and r.short_term_max_lufs is None


def test_shorter_than_one_gating_block():
    """0.3 s of Tech 3341 case 1's tone, shorter than one 400 ms block: I undefined (None), no error."""
    r = measure(tone_sequence([(-23.0, 0.3)]), FS, channel_names=STEREO)
    assert r.integrated_lufs is None
    assert r.loudness_range_lu is None
    assert r.momentary_max_lufs is None and r.short_term_max_lufs is None
    assert r.sample_peak_dbfs == pytest.approx(-23.0, abs=0.01)
    assert r.true_peak_dbtp == pytest.approx(-23.0, abs=0.2)


def mixed_programme(sr: int, seconds: float, seed: int = 7) -> np.ndarray:
    """Noise plus a 1 kHz tone with a level step, so every result field is defined."""
    n = int(round(seconds * sr))
    rng = np.random.default_rng(seed)
    env = np.where(np.arange(n) < n // 2, amp(-20.0), amp(-32.0))
    tone = np.sin(2.0 * np.pi * 1000.0 * np.arange(n) / sr)
    return (env * (0.5 * tone + 0.2 * rng.standard_normal((2, n)))).astype(np.float32)


def assert_same_meter(a: LoudnessMeter, b: LoudnessMeter) -> None:
    ra, rb = a.result(), b.result()
    for field in ra.__dataclass_fields__:
        va, vb = getattr(ra, field), getattr(rb, field)
        if isinstance(va, float) and isinstance(vb, float):
            assert va == pytest.approx(vb, rel=0, abs=1e-9), field
        else:
            assert va == vb, field
    np.testing.assert_allclose(a.momentary_lufs(), b.momentary_lufs(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(a.short_term_lufs(), b.short_term_lufs(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("block", [997, 65536], ids=["blocks-of-997", "blocks-of-65536"])
def test_block_size_independence(block):
    """Streaming (Tech 3341 live meter): the same 12 s signal pushed in blocks of 997 or 65536 frames
    gives the same results as one push, to 1e-9."""
    y = mixed_programme(FS, 12.0)
    whole = run_meter(y, FS, true_peak=True, block=y.shape[1])
    assert_same_meter(run_meter(y, FS, true_peak=True, block=block), whole)
    assert whole.result().loudness_range_lu is not None


def test_block_size_independence_single_frames():
    """Streaming, one frame per push (short signal: 0.75 s at 8 kHz) equals one push, to 1e-9."""
    sr = 8000
    y = mixed_programme(sr, 0.75)
    whole = run_meter(y, sr, true_peak=True, block=y.shape[1])
    assert_same_meter(run_meter(y, sr, true_peak=True, block=1), whole)
    assert whole.result().integrated_lufs is not None
