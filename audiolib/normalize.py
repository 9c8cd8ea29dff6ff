"""Loudness normalisation with a true-peak limiter: the "loudness" remedy of a QC audit.

A file that fails a delivery spec on loudness (EBU R128: -23 LUFS integrated, true peak at most
-1 dBTP) is fixed by a static gain to the target integrated loudness, plus a look-ahead true-peak
limiter that acts only where the gained signal would exceed the ceiling.

- The gain comes from a measurement already made (the diagnose's integrated loudness, passed as
  ``measured_lufs``): ``gain = target - measured`` dB. No measuring pass over the original.
- The limiter detects peaks on the oversampled signal at exactly the points the project's meter
  reads them (8x below 96 kHz, 4x from 96 kHz: twice BS.1770-4 Annex 2's ratios; see
  :func:`detection_taps`); its gain is shared by all channels (linked), falls over the
  look-ahead window along a raised-cosine curve and recovers exponentially (slower); the look-ahead
  is compensated, so the output is sample-aligned with the input, frame for frame.
- The limiter lowers the loudness a little where it works hard. :func:`normalize` measures its
  output as it goes (the project's meter) and, when that is off the target by more than
  ``tolerance_lu``, applies a correcting gain to the *processed* signal (through the limiter
  again); :func:`normalize_file` does the same with a second pass over the file it wrote. For a
  dialogue-gated target (``gating="speech"``) only the limiter's own loss is corrected.

:class:`LoudnessNormalizer` is the streaming form (flat memory: a few look-ahead windows);
:func:`normalize` the one-shot form for arrays; :func:`normalize_file` the file-to-file remedy.
docs/normalize.md has the design, its constants and the measured figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, TypedDict

import numpy as np

from . import _kernels
from .errors import InvalidParameter
from .loudness import TRUE_PEAK_HALF, LoudnessMeter, fractional_delay, true_peak_taps
from .validate import json_fields

__all__ = [
    "LoudnessNormalizer",
    "NormalizationResult",
    "detection_taps",
    "gain_for",
    "normalize",
    "normalize_file",
    "normalize_with_result",
]

# ---------------------------------------------------------------------------------- constants
#: Accepted targets (LUFS) and ceilings (dBTP): every delivery spec in use lies inside.
TARGET_RANGE_LUFS = (-70.0, 0.0)
CEILING_RANGE_DBTP = (-20.0, 0.0)
#: Largest static gain accepted, dB either way (a file 80 dB off its target is not a loudness fault).
MAX_GAIN_DB = 80.0
#: Look-ahead (= attack) of the limiter, ms. 5 ms (FFmpeg's alimiter attacks over 5 ms too): long
#: enough for a smooth raised-cosine attack (240 samples at 48 kHz, so the gain moves by at most
#: 2 * depth / 240 per sample), short enough to stay on the peak it catches.
DEFAULT_LOOKAHEAD_MS = 5.0
LOOKAHEAD_RANGE_MS = (0.5, 20.0)
#: Release time constant, ms: after the look-ahead hold the gain recovers as
#: ``1 - (1 - g) * exp(-t / release)``: 20x slower than the attack.
DEFAULT_RELEASE_MS = 100.0
RELEASE_RANGE_MS = (1.0, 5000.0)
#: The limiter's internal threshold is this much under the ceiling (minus any codec margin). The
#: project's meter reads the detector's own points (+0.000 dB over the threshold on every signal
#: tried); FFmpeg's ebur128 (a 32-tap resampler to 192 kHz passing up to 0.97 of Nyquist) reads
#: other points with another filter and mirrors the signal before its first sample: measured over
#: evaluations/normalize_margin.py's battery of 116 signals, at most 0.04 dB over the threshold on
#: programme (speech, music, hard-clipped music), 0.05 dB on sines up to 19.5 kHz, 0.10 dB on
#: white noise and 0.13 dB on hard-clipped full-band noise, the worst case found (docs/normalize.md).
SAFETY_MARGIN_DB = 0.2
#: Headroom the caller may reserve for a lossy encode after the remedy (AAC and MP3 add peaks);
#: default 0 (the output is lossless); docs/normalize.md has measured values per codec.
CODEC_MARGIN_RANGE_DB = (0.0, 6.0)
#: Output more than this far off the target (the project's meter) gets a correcting gain on the
#: processed signal; and at most this many corrections.
DEFAULT_TOLERANCE_LU = 0.05
MAX_CORRECTIONS = 3
#: A correcting gain is at most this many times the error, and at most MAX_CORRECTION_DB.
CORRECTION_MAX_FACTOR = 4.0
MAX_CORRECTION_DB = 6.0
#: The detector reads exactly the points the project's meter reads, with the meter's own taps
#: (:func:`audiolib.loudness.true_peak_taps`): every input sample and the band-limited values at
#: every 1/8 of a sample below 96 kHz (1/4 from 96 kHz; twice BS.1770-4 Annex 2's 4x / 2x, so it
#: also holds the points a 4x / 2x resampler such as FFmpeg's ebur128 computes at 48 / 96 kHz).
#: They are weighted least-squares fractional-delay filters of 24 taps fitted over 0 .. 0.47 cycles
#: per sample (22.6 kHz at 48 kHz, 20.7 kHz at 44.1 kHz; weight 4 below 0.35): nearly the full
#: band, as FFmpeg's resampler passes it, within 0.3 % of the ideal delay below 0.3, 0.9 % at 0.35,
#: 3 % at 0.4, 4.3 % at 0.45. (12 taps fitted to 0.4 let FFmpeg read full-band material, white or
#: clipped noise, up to 0.76 dB over the threshold; measured, docs/normalize.md.) Until the meter
#: took these phases (ANALYSIS_VERSION 4) the detector also ran BS.1770-4 Annex 2's four, which the
#: meter used then.
#: Samples of context on either side of an interval the detector needs (half its filter).
_HALF = TRUE_PEAK_HALF
#: The fractional-delay design (kept under this name for the tests and benchmarks).
_fractional_delay = fractional_delay
#: Intervals scanned per chunk by the detector (a chunk far under the threshold is skipped whole).
_DETECT_CHUNK = 64
#: The release snaps to unity gain within this of 1 (1e-6 = 9e-6 dB), so the gain returns exactly
#: to 1.0 and the unlimited stretches are a plain multiplication.
_ENV_SNAP = 1e-6


def _db_to_lin(db: float) -> float:
    return 10.0 ** (db / 20.0)


def _finite(name: str, value: Any, lo: float | None = None, hi: float | None = None, unit: str = "") -> float:
    """``value`` as a float, or InvalidParameter quoting it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidParameter(f"{name}={value!r} must be a number{' in ' + unit if unit else ''}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidParameter(f"{name}={value!r} must be finite")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InvalidParameter(f"{name}={value!r} {unit} is outside {lo:g} .. {hi:g} {unit}".replace("  ", " "))
    return v


# ---------------------------------------------------------------------------------- detection
def _bound(taps: np.ndarray) -> float:
    return max(1.0, float(np.abs(taps.astype(np.float64)).sum(axis=1).max()))


@lru_cache(maxsize=8)
def detection_taps(sample_rate: int) -> tuple[np.ndarray, float]:
    """The limiter's interpolator at ``sample_rate`` Hz: the project's meter's phases
    (:func:`audiolib.loudness.true_peak_taps`), so the meter reads no point the detector did not
    limit: fractional delays at every 1/8 of a sample below 96 kHz and every 1/4 from 96 kHz
    (24 taps).

    Returns
    -------
    (taps, bound_gain)
        ``taps``: ``(phases, 24)`` float32 correlation taps (``sum_k taps[p, k] * x[i + k]`` lies
        between ``x[i + 11]`` and ``x[i + 12]``); ``bound_gain``: ``max(1, max over phases of
        sum |taps|)`` (no interpolated value exceeds the window's sample peak times it).
    """
    taps = true_peak_taps(sample_rate).taps
    return taps, _bound(taps)


def _attack_weights(length: int) -> np.ndarray:
    """Raised-cosine (Hann) weights over the look-ahead, all > 0, summing to 1: the gain's attack
    follows their cumulative sum (an S-curve with zero slope at both ends)."""
    w = np.sin(np.pi * np.arange(1, length + 1) / (length + 1)) ** 2
    return w / w.sum()


# ---------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class NormalizationResult:
    """What the remedy did.

    Attributes
    ----------
    gain_db : float
        Static gain applied, dB (with any correction: the sum of all).
    target_lufs : float or None
        Target integrated loudness, LUFS (None for :class:`LoudnessNormalizer`, which gets a gain).
    measured_lufs : float or None
        The input's integrated loudness the gain was computed from (None: silent or unmeasurable).
    true_peak_max_dbtp : float
        The ceiling, dBTP.
    limiter_threshold_dbtp : float
        The limiter's internal threshold: the ceiling minus the codec margin minus
        :data:`SAFETY_MARGIN_DB`.
    frames : int
        Samples per channel in (= out).
    limited_samples : int
        Samples the limiter turned down (gain under 1), in the first pass (the correction passes
        limit the same peaks again, a little).
    limited_fraction : float
        ``limited_samples / frames`` (0 for empty input).
    max_gain_reduction_db : float
        Deepest limiter gain reduction, dB (>= 0): the first pass's plus each correction pass's
        (an upper bound of their combined reduction at any one sample).
    output_integrated_lufs : float or None
        Integrated loudness of the output (the project's meter), when measured.
    output_true_peak_dbtp : float or None
        True peak of the output (the project's meter), when measured.
    correction_passes : int
        Passes of a correcting gain over the processed signal (0: the first pass was on target).
    note : str or None
        Why nothing was done (silent input), or that the target was not reached.
    warnings : tuple of str
        :func:`normalize_file`: what the output could not keep (streams not copied, a rate or
        layout the codec changed), from :func:`audiolib.io.plan_output` and its writer.
    gating : str
        What ``measured_lufs`` and ``target_lufs`` are: ``"level"`` (BS.1770-4 gating; the output
        is measured the same way and corrected to the target) or ``"speech"`` (dialogue-gated;
        only the limiter's own loss of level-gated loudness is corrected, see :func:`normalize`).
    input_integrated_lufs : float or None
        Level-gated loudness of the input, measured in the first pass (``gating="speech"`` only).
    """

    gain_db: float
    target_lufs: float | None
    measured_lufs: float | None
    true_peak_max_dbtp: float
    limiter_threshold_dbtp: float
    frames: int
    limited_samples: int
    limited_fraction: float
    max_gain_reduction_db: float
    output_integrated_lufs: float | None = None
    output_true_peak_dbtp: float | None = None
    correction_passes: int = 0
    note: str | None = None
    warnings: tuple[str, ...] = ()
    gating: str = "level"
    input_integrated_lufs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``None`` for unmeasured values, never NaN)."""
        return json_fields(self.__dict__)


def gain_for(measured_lufs: float | None, target_lufs: float) -> tuple[float, str | None]:
    """Static gain (dB) taking a programme measured at ``measured_lufs`` to ``target_lufs``.

    ``None`` or ``-inf`` (a silent programme, or one shorter than a 400 ms gating block) gets no
    gain, and the note says so.
    """
    target = _finite("target_lufs", target_lufs, *TARGET_RANGE_LUFS, unit="LUFS")
    if measured_lufs is None or (isinstance(measured_lufs, (float, np.floating)) and measured_lufs == -math.inf):
        return 0.0, "input loudness unmeasurable (silent or shorter than a 400 ms block): no gain applied"
    measured = _finite("measured_lufs", measured_lufs, -200.0, 30.0, unit="LUFS")
    gain = target - measured
    if abs(gain) > MAX_GAIN_DB:
        raise InvalidParameter(
            f"measured_lufs={measured_lufs!r}: reaching target_lufs={target_lufs!r} needs {gain:+.1f} dB, "
            f"beyond +-{MAX_GAIN_DB:g} dB"
        )
    return gain, None


# ---------------------------------------------------------------------------------- streaming
class LoudnessNormalizer:
    """Streaming static gain plus linked look-ahead true-peak limiter.

    Parameters
    ----------
    sample_rate : int
        Hz (1000 .. 768000).
    channels : int
        Channel count of the blocks.
    gain_db : float
        Static gain, dB (-80 .. +80).
    true_peak_max_dbtp : float
        Ceiling, dBTP (-20 .. 0).
    lookahead_ms : float
        Look-ahead and attack time, ms (0.5 .. 20; default :data:`DEFAULT_LOOKAHEAD_MS`).
    release_ms : float
        Release time constant, ms (1 .. 5000, at least the look-ahead; default
        :data:`DEFAULT_RELEASE_MS`).
    codec_margin_db : float
        Extra headroom under the ceiling for a lossy encode afterwards, dB (0 .. 6; default 0).
    measure_output : bool
        Measure the output's loudness and true peak as it goes (the project's meter, BS.1770-4);
        default True.
    measure_input : bool
        Also measure the input's (level-gated) loudness as it goes; default False.
    channel_names : sequence of str, optional
        FFmpeg channel names, for the output meter's BS.1770-4 channel weights.

    Notes
    -----
    :meth:`push` returns the output as far as the look-ahead allows (``latency_frames`` fewer
    samples than pushed in total, until :meth:`flush` returns the rest): the output stream is
    sample-aligned with the input and exactly as long.
    """

    def __init__(self, sample_rate: int, channels: int, *, gain_db: float,
                 true_peak_max_dbtp: float = -1.0, lookahead_ms: float = DEFAULT_LOOKAHEAD_MS,
                 release_ms: float = DEFAULT_RELEASE_MS, codec_margin_db: float = 0.0,
                 measure_output: bool = True, measure_input: bool = False,
                 channel_names: Sequence[str] | None = None) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
                or not 1000 <= sample_rate <= 768000:
            raise InvalidParameter(f"sample_rate={sample_rate!r} must be an integer from 1000 to 768000 Hz")
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or not 1 <= channels <= 64:
            raise InvalidParameter(f"channels={channels!r} must be an integer from 1 to 64")
        if channel_names is not None and len(channel_names) != channels:
            raise InvalidParameter(f"channel_names={tuple(channel_names)!r} does not name {channels} channels")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.gain_db = _finite("gain_db", gain_db, -MAX_GAIN_DB, MAX_GAIN_DB, unit="dB")
        self.true_peak_max_dbtp = _finite("true_peak_max_dbtp", true_peak_max_dbtp, *CEILING_RANGE_DBTP, unit="dBTP")
        self.lookahead_ms = _finite("lookahead_ms", lookahead_ms, *LOOKAHEAD_RANGE_MS, unit="ms")
        self.release_ms = _finite("release_ms", release_ms, *RELEASE_RANGE_MS, unit="ms")
        if self.release_ms < self.lookahead_ms:
            raise InvalidParameter(f"release_ms={release_ms!r} must be at least lookahead_ms={lookahead_ms!r}")
        self.codec_margin_db = _finite("codec_margin_db", codec_margin_db, *CODEC_MARGIN_RANGE_DB, unit="dB")
        self.threshold_dbtp = self.true_peak_max_dbtp - self.codec_margin_db - SAFETY_MARGIN_DB
        self._gain = _db_to_lin(self.gain_db)
        self._gain32 = np.float32(self._gain)
        # The detector runs on the input; the threshold is divided by the gain instead.
        self._thresh = _db_to_lin(self.threshold_dbtp) / self._gain
        self._phases = detection_taps(self.sample_rate)
        self._length = max(2, int(round(self.lookahead_ms * 1e-3 * self.sample_rate)))
        self._weights = _attack_weights(self._length)
        self._coef = math.exp(-1.0 / (self.release_ms * 1e-3 * self.sample_rate))
        L = self._length
        #: Output lags the input by this many samples until :meth:`flush`.
        self.latency_frames = L + _HALF - 1
        # Stages (absolute sample indices; x is 0 before the start and, at the flush, after the end):
        # interval peak I[j] (between samples j and j + 1, from x[j - 11 .. j + 12]) -> the gain each
        # sample needs r[j] = min(1, T / max(I[j - 1], I[j])) -> hold/release envelope env[j] (from
        # r[j - L + 1 .. j]) -> gain G[n] (from env[n .. n + L - 1]) -> out[n] = x[n] * g * G[n].
        self._x = np.zeros((self.channels, _HALF), np.float32)  # x from absolute index _x0
        self._x0 = -_HALF
        self._pushed = 0
        self._next_interval = -1
        self._last_interval_peak = 0.0
        self._r_hist = np.ones(L - 1)  # r[_env_end - L + 1 .. _env_end - 1]
        self._env_end = 0
        self._env_prev = 1.0
        self._env_hist = np.empty(0)  # env[_out_pos .. _env_end - 1]
        self._ones = np.ones(L - 1)
        self._idle = True  # r_hist, env_hist and the envelope all at exactly 1
        self._out_pos = 0
        self._flushed = False
        self._limited = 0
        self._min_gain = 1.0
        self._meter = (LoudnessMeter(self.sample_rate, channel_names, channels=self.channels, true_peak=True)
                       if measure_output else None)
        self._in_meter = (LoudnessMeter(self.sample_rate, channel_names, channels=self.channels, true_peak=False)
                          if measure_input else None)

    # ------------------------------------------------------------------ streaming
    def push(self, block: np.ndarray) -> np.ndarray:
        """Add a ``(channels, frames)`` block (float32 preferred; 1-D for one channel).

        Returns
        -------
        (channels, m) float32
            The next ``m`` output samples (``m`` may be 0 while the look-ahead fills).
        """
        if self._flushed:
            raise InvalidParameter("push() after flush(): this normalizer has finished its stream")
        x = np.asarray(block)
        if x.ndim == 1 and self.channels == 1:
            x = x[np.newaxis, :]
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise InvalidParameter(f"block shape {x.shape} does not match {self.channels} channels (channels-first)")
        if x.shape[1] == 0:
            return np.empty((self.channels, 0), np.float32)
        x = x.astype(np.float32, copy=False)
        peak = max(float(x.max()), -float(x.min()))
        if not math.isfinite(peak):
            raise InvalidParameter("block contains NaN or infinite samples")
        self._x = np.concatenate((self._x, x), axis=1)
        self._pushed += x.shape[1]
        if self._in_meter is not None:
            self._in_meter.push(x)
        return self._process()

    def flush(self) -> np.ndarray:
        """End of the stream: the remaining ``latency_frames`` (or fewer) output samples."""
        if self._flushed:
            return np.empty((self.channels, 0), np.float32)
        self._flushed = True
        end = self._pushed
        self._x = np.concatenate((self._x, np.zeros((self.channels, self._length + _HALF), np.float32)), axis=1)
        out = self._process(end=end)
        return out

    def _interval_peaks(self, x: np.ndarray, first: int, count: int) -> np.ndarray:
        """Peaks of ``count`` intervals, the first between columns ``first`` and ``first + 1`` of
        ``x`` (the two samples and the meter's interpolated points between them)."""
        taps, bound = self._phases
        return _kernels.tp_intervals(x, first - (_HALF - 1), count + 2 * _HALF - 1, taps, bound, self._thresh,
                                     _DETECT_CHUNK)

    def _process(self, end: int | None = None) -> np.ndarray:
        L = self._length
        x_end = self._x0 + self._x.shape[1]
        # 1. interval peaks [next_interval, x_end - 12): need x[j - 11 .. j + 12]
        j0, j1 = self._next_interval, x_end - _HALF
        if j1 <= j0 or (j0 < 0 and x_end <= _HALF):  # the start waits for x[0 .. 12] (its mirror image)
            return np.empty((self.channels, 0), np.float32)
        peaks = self._interval_peaks(self._x, j0 - self._x0, j1 - j0)
        if j0 < 0:
            # Before the first sample the project's meter sees zeros; FFmpeg's resampler (its
            # ebur128 true peak) sees the signal mirrored (x[-k] = x[k]), which rings where a file
            # starts abruptly at a high level: the first intervals take the larger of the two.
            count = min(_HALF, j1 - j0)
            h = _HALF
            mirror = np.concatenate((self._x[:, h + 1:2 * h + 1][:, ::-1], self._x[:, h:h + count + h]), axis=1)
            peaks[:count] = np.maximum(peaks[:count], self._interval_peaks(np.ascontiguousarray(mirror), h - 1, count))
        peaks = peaks.astype(np.float64)
        # 2. the gain each sample needs, r[j] for j in [max(j0, 0), j1)
        both = np.concatenate(([self._last_interval_peak], peaks))
        need = np.maximum(both[:-1], both[1:])
        if j0 < 0:
            need = need[-j0:]
        self._last_interval_peak = float(peaks[-1])
        self._next_interval = j1
        over = need > self._thresh
        if self._idle and not over.any():
            # nothing to limit and nothing being limited: envelope and gain stay exactly 1
            self._env_end = j1
            held = self._env_hist.size + need.size
            if held < L:
                self._env_hist = np.ones(held)
                return np.empty((self.channels, 0), np.float32)
            gains = None
            n_out = held - L + 1
            self._env_hist = self._ones
        else:
            r = np.ones(need.size)
            r[over] = self._thresh / need[over]
            # 3. hold and release: env for positions [env_end, j1)
            seg = np.concatenate((self._r_hist, r))
            env, self._env_prev = _kernels.limiter_envelope(seg, L, self._coef, self._env_prev, _ENV_SNAP)
            self._r_hist = seg[seg.size - (L - 1):]
            self._env_end = j1
            # 4. smoothed gain for positions [out_pos, env_end - L + 1)
            env_seg = np.concatenate((self._env_hist, env))
            if env_seg.size < L:
                self._env_hist = env_seg
                return np.empty((self.channels, 0), np.float32)
            if bool((env_seg == 1.0).all()):
                gains = None
                n_out = env_seg.size - L + 1
            else:
                gains = _kernels.limiter_smooth(env_seg, self._weights)
                n_out = gains.size
            self._env_hist = env_seg[n_out:]
            self._idle = (self._env_prev == 1.0 and bool((self._r_hist == 1.0).all())
                          and bool((self._env_hist == 1.0).all()))
        # 5. apply
        a = self._out_pos - self._x0
        if end is not None:
            n_out = min(n_out, end - self._out_pos)
            if gains is not None:
                gains = gains[:n_out]
        xs = self._x[:, a:a + n_out]
        if gains is None:
            out = xs * self._gain32
        else:
            low = gains < 1.0
            count = int(np.count_nonzero(low))
            if count:
                self._limited += count
                self._min_gain = min(self._min_gain, float(gains.min()))
                out = xs * (self._gain * gains).astype(np.float32)
            else:
                out = xs * self._gain32
        self._out_pos += n_out
        # keep x from the first sample still needed: the next output, or the next interval's window
        keep = min(self._out_pos, self._next_interval - (_HALF - 1)) - self._x0
        if keep > 0:
            self._x = self._x[:, keep:]
            self._x0 += keep
        if self._meter is not None and n_out:
            self._meter.push(out)
        return out

    # ------------------------------------------------------------------ results
    def result(self) -> NormalizationResult:
        """What was done so far (complete after :meth:`flush`)."""
        frames = self._out_pos
        out_lufs = out_tp = None
        if self._meter is not None:
            m = self._meter.result()
            out_lufs, out_tp = m.integrated_lufs, m.true_peak_dbtp
        in_lufs = self._in_meter.result().integrated_lufs if self._in_meter is not None else None
        return NormalizationResult(
            gain_db=self.gain_db,
            target_lufs=None,
            measured_lufs=None,
            true_peak_max_dbtp=self.true_peak_max_dbtp,
            limiter_threshold_dbtp=self.threshold_dbtp,
            frames=frames,
            limited_samples=self._limited,
            limited_fraction=self._limited / frames if frames else 0.0,
            max_gain_reduction_db=-20.0 * math.log10(self._min_gain) if self._min_gain < 1.0 else 0.0,
            output_integrated_lufs=out_lufs,
            output_true_peak_dbtp=out_tp,
            input_integrated_lufs=in_lufs,
        )


# ---------------------------------------------------------------------------------- one-shot
def _run(
    y: np.ndarray, sr: int, gain_db: float, block_frames: int, **kw: Any
) -> tuple[np.ndarray, NormalizationResult]:
    norm = LoudnessNormalizer(sr, y.shape[0], gain_db=gain_db, **kw)
    out = np.empty(y.shape, np.float32)
    pos = 0
    for i in range(0, y.shape[1], block_frames):
        o = norm.push(y[:, i:i + block_frames])
        out[:, pos:pos + o.shape[1]] = o
        pos += o.shape[1]
    o = norm.flush()
    out[:, pos:pos + o.shape[1]] = o
    return out, norm.result()


def _check_tolerance(tolerance_lu: float, max_corrections: int) -> tuple[float, int]:
    tol = _finite("tolerance_lu", tolerance_lu, 0.01, 3.0, unit="LU")
    if isinstance(max_corrections, bool) or not isinstance(max_corrections, (int, np.integer)) \
            or not 0 <= max_corrections <= 5:
        raise InvalidParameter(f"max_corrections={max_corrections!r} must be an integer from 0 to 5")
    return tol, int(max_corrections)


def _measured_or_none(measured_lufs: float | None) -> float | None:
    return None if measured_lufs is None or measured_lufs == -math.inf else float(measured_lufs)


GATING_MODES = ("level", "speech")


def _check_gating(gating: str) -> None:
    if gating not in GATING_MODES:
        raise InvalidParameter(f"gating={gating!r}: must be one of {', '.join(GATING_MODES)}")


def _level_target(first: NormalizationResult, gain: float, target_lufs: float, gating: str) -> float | None:
    """The level-gated loudness the corrections aim the output at: the target itself, or with
    dialogue gating (which the normaliser cannot measure) the input's level-gated loudness plus the
    gain, i.e. what the output would read had the limiter taken nothing (None: unmeasurable, so no
    correction)."""
    if gating == "speech":
        return None if first.input_integrated_lufs is None else first.input_integrated_lufs + gain
    return float(target_lufs)


# A correcting gain of d dB on a limited output raises its loudness by only k * d (the limiter
# takes back the part that lands on peaks). Measured on speech, music, synthetic programme and a
# speech/music mix limited to every loss L of 0.08 .. 2 LU in the first pass: a correction of
# about L has k within 0.08 of ``1 / (1 + L)`` (k falls as the limiting deepens: 0.92 at 0.08 LU,
# 0.51 at 1 LU, 0.36 at 1.8 LU). The first correction assumes that k, later ones the k the last
# correction showed; an over-correction is undone exactly (a gain down leaves the limiter idle).
def _response_prior(loss_lu: float) -> float:
    return 1.0 / (1.0 + max(loss_lu, 0.0))


def _correct(res: NormalizationResult, gain: float, note: str | None, target: float, tol: float, max_corr: int,
             again: Any) -> tuple[NormalizationResult, float, int, str | None]:
    """Correcting gains on the processed signal until its loudness (the project's meter) is within
    ``tol`` of ``target``: ``again(step_db)`` runs the limiter over the last output with a gain of
    ``step_db`` and returns its result. Up: ``error / k`` (k from :func:`_response_prior` first, then
    the response the last correction showed); down: the error itself (exact: the limiter stays idle).
    Returns the last result, the total gain, the passes and the note."""
    total, passes = gain, 0
    first, reduction = res, res.max_gain_reduction_db
    k = None
    while note is None and passes < max_corr and res.output_integrated_lufs is not None:
        err = target - res.output_integrated_lufs
        if abs(err) <= tol:
            break
        if k is None:
            k = _response_prior(err)
        step = err if err < 0 else min(err / k, CORRECTION_MAX_FACTOR * err, MAX_CORRECTION_DB)
        before = res.output_integrated_lufs
        res = again(step)
        total += step
        passes += 1
        reduction += res.max_gain_reduction_db
        if step > 0 and res.output_integrated_lufs is not None:
            k = min(1.0, max(0.05, (res.output_integrated_lufs - before) / step))
    if (note is None and max_corr and res.output_integrated_lufs is not None
            and abs(target - res.output_integrated_lufs) > tol):
        note = (f"output at {res.output_integrated_lufs:.2f} LUFS (level-gated) after {passes} correction(s): "
                f"the ceiling leaves no room for {target:.2f} LUFS within {tol:g} LU")
    res = replace(res, limited_samples=first.limited_samples, limited_fraction=first.limited_fraction,
                  max_gain_reduction_db=reduction)
    return res, total, passes, note


def normalize_with_result(y: np.ndarray, sr: int, *, measured_lufs: float | None, target_lufs: float = -23.0,
                          true_peak_max_dbtp: float = -1.0, codec_margin_db: float = 0.0,
                          lookahead_ms: float = DEFAULT_LOOKAHEAD_MS, release_ms: float = DEFAULT_RELEASE_MS,
                          tolerance_lu: float = DEFAULT_TOLERANCE_LU, max_corrections: int = MAX_CORRECTIONS,
                          gating: str = "level", channel_names: Sequence[str] | None = None,
                          block_frames: int = 1 << 16) -> tuple[np.ndarray, NormalizationResult]:
    """:func:`normalize`, also returning the :class:`NormalizationResult`."""
    x = np.asarray(y)
    one_d = x.ndim == 1
    if one_d:
        x = x[np.newaxis, :]
    if x.ndim != 2 or x.shape[0] < 1:
        raise InvalidParameter(f"y has shape {np.shape(y)}: expected (channels, frames) or (frames,)")
    x = x.astype(np.float32, copy=False)
    gain, note = gain_for(measured_lufs, target_lufs)
    tol, max_corr = _check_tolerance(tolerance_lu, max_corrections)
    kw = dict(true_peak_max_dbtp=true_peak_max_dbtp, codec_margin_db=codec_margin_db, lookahead_ms=lookahead_ms,
              release_ms=release_ms, channel_names=channel_names)
    _check_gating(gating)
    out, res = _run(x, sr, gain, block_frames, measure_input=gating == "speech", **kw)
    state = {"out": out}

    def again(step: float) -> NormalizationResult:
        state["out"], r = _run(state["out"], sr, step, block_frames, **kw)
        return r

    first = res
    aim = _level_target(res, gain, target_lufs, gating)
    res, total, passes, note = _correct(res, gain, note, float(target_lufs) if aim is None else aim, tol,
                                        0 if aim is None else max_corr, again)
    out = state["out"]
    res = replace(res, gain_db=total, target_lufs=float(target_lufs), measured_lufs=_measured_or_none(measured_lufs),
                  correction_passes=passes, note=note, gating=gating, input_integrated_lufs=first.input_integrated_lufs)
    return (out[0] if one_d else out), res


def normalize(y: np.ndarray, sr: int, *, measured_lufs: float | None, target_lufs: float = -23.0,
              true_peak_max_dbtp: float = -1.0, **kw: Any) -> np.ndarray:
    """Normalise ``y`` to ``target_lufs`` with its true peak at most ``true_peak_max_dbtp``.

    Parameters
    ----------
    y : ndarray, shape (channels, frames) or (frames,)
        Samples, full scale = 1.0.
    sr : int
        Sample rate, Hz.
    measured_lufs : float or None
        The input's integrated loudness, LUFS, as the diagnose measured it (None or -inf: silent,
        no gain).
    target_lufs : float
        Target integrated loudness, LUFS (-70 .. 0; default -23, EBU R128).
    true_peak_max_dbtp : float
        Ceiling, dBTP (-20 .. 0; default -1, EBU R128).
    **kw
        ``codec_margin_db``, ``lookahead_ms``, ``release_ms``, ``channel_names`` (see
        :class:`LoudnessNormalizer`); ``tolerance_lu`` (default 0.05 LU) and ``max_corrections``
        (default 3): the corrections (module docstring); ``gating``: ``"level"`` (default) when
        ``measured_lufs`` and ``target_lufs`` are BS.1770-4 level-gated, ``"speech"`` when they are
        dialogue-gated: the normaliser then measures its input's level-gated loudness too and
        corrects only the loss the limiter caused (the level-gated output back to input + gain),
        the best it can do without a voice-activity detector.

    Returns
    -------
    ndarray, float32, same shape as ``y``
        Sample-aligned with ``y``.
    """
    return normalize_with_result(y, sr, measured_lufs=measured_lufs, target_lufs=target_lufs,
                                 true_peak_max_dbtp=true_peak_max_dbtp, **kw)[0]


# ---------------------------------------------------------------------------------- files
def _flac_writer(path: str, sr: int, channels: int) -> Any:
    """A 24-bit FLAC intermediate (the processed signal a lossy output is encoded from at the end),
    written block by block with PyAV."""
    import av

    from .channels import default_layout

    layout = default_layout(channels)[0]
    out = av.open(path, mode="w", format="flac")
    st = out.add_stream("flac", rate=sr, layout=layout)
    st.format = "s32"
    st.codec_context.options = {"bits_per_raw_sample": "24"}
    resampler = av.AudioResampler(format="s32", layout=layout, rate=sr)
    pts = [0]

    def write(block: np.ndarray | None) -> None:
        frames = resampler.resample(None) if block is None else []
        if block is not None and block.shape[1]:
            data = np.ascontiguousarray(np.clip(block, -1.0, 1.0).T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(data, format="flt", layout=layout)
            frame.sample_rate = sr
            frame.pts = pts[0]
            pts[0] += block.shape[1]
            frames = resampler.resample(frame)
        for f in frames:
            for packet in st.encode(f):
                out.mux(packet)
        if block is None:
            for packet in st.encode(None):
                out.mux(packet)
            out.close()

    return write


class _LimiterSettings(TypedDict):
    """The limiter's keyword arguments to :class:`LoudnessNormalizer` that every pass shares."""

    true_peak_max_dbtp: float
    codec_margin_db: float
    lookahead_ms: float
    release_ms: float


def normalize_file(url_in: str, url_out: str, *, measured_lufs: float | None, target_lufs: float = -23.0,
                   true_peak_max_dbtp: float = -1.0, format: str | None = None, stream_index: int | None = None,
                   codec_margin_db: float = 0.0, lookahead_ms: float = DEFAULT_LOOKAHEAD_MS,
                   release_ms: float = DEFAULT_RELEASE_MS, tolerance_lu: float = DEFAULT_TOLERANCE_LU,
                   max_corrections: int = MAX_CORRECTIONS, gating: str = "level",
                   plan: Any = None, progress: Any = None) -> NormalizationResult:
    """The loudness remedy file to file: decode ``url_in`` as a stream, normalise, encode ``url_out``.

    Parameters
    ----------
    url_in, url_out : str
        Local paths or fsspec URLs (``url_out`` may also be a presigned ``https://`` PUT URL); the
        output may not be the input.
    measured_lufs, target_lufs, true_peak_max_dbtp, codec_margin_db, lookahead_ms, release_ms, tolerance_lu, \
    max_corrections, gating
        As :func:`normalize`.
    format : str, optional
        Output format (``wav``, ``flac``, ``m4a``, ``mp3``, ...; :data:`audiolib.io.OUTPUT_FORMATS`);
        default: the output's extension. Codec, bit depth, rate and layout as
        :func:`audiolib.io.plan_output` decides them (lossless outputs keep the input's bit depth).
    stream_index : int, optional
        The audio stream (0-based among audio streams); default FFmpeg's default one.
    progress : callable, optional
        Called as ``progress(seconds_done, seconds_total_or_None)`` after each block of the first
        pass (the correction passes, rare and over the processed file, report nothing).
    plan : audiolib.io.OutputPlan, optional
        How to write ``url_out``, decided from another file than ``url_in`` (the original, when
        ``url_in`` is an intermediate such as the denoiser's output): its codec, tags and video.
        Default: :func:`audiolib.io.plan_output` of ``url_in``.

    Notes
    -----
    Everything that can be checked is checked before any decoding (the parameters, the input's
    headers, the output format, that the output is writable); the output is written atomically
    (:func:`audiolib.io.atomic_output`) and video is copied unchanged where the output holds it.
    A correction (see :func:`normalize`) re-reads the processed signal, never ``url_in``: for a
    lossless output the file being written, for a lossy one a 24-bit FLAC intermediate, which is
    encoded to the output last (so a lossy output is encoded once). The true peak is held on the
    signal before a lossy encoder (and before a resampling, where the output's codec cannot keep
    the rate): set ``codec_margin_db`` for that. Memory is flat.
    """
    from . import io

    gain, note = gain_for(measured_lufs, target_lufs)
    tol, max_corr = _check_tolerance(tolerance_lu, max_corrections)
    _check_gating(gating)
    kw = _LimiterSettings(true_peak_max_dbtp=true_peak_max_dbtp, codec_margin_db=codec_margin_db,
                          lookahead_ms=lookahead_ms, release_ms=release_ms)
    LoudnessNormalizer(48000, 1, gain_db=gain, measure_output=False, **kw)  # parameters, before any decoding
    if plan is None:
        info = io.probe(url_in, stream_index=stream_index)
        plan = io.plan_output(info, url_out, format=format, source_url=url_in)
    lossless = plan.bit_depth is not None
    warnings: list[str] = list(plan.notes)

    def run(source: str, dest: str, step: float, index: int | None, final: bool,
            measure_input: bool = False, progress: Any = None) -> NormalizationResult:
        """One pass of the limiter from ``source`` into the local file ``dest``: the output's own
        format when ``final``, else the FLAC intermediate."""
        with io.stream(source, stream_index=index) as s:
            norm = LoudnessNormalizer(s.sample_rate, s.channels, gain_db=step, channel_names=s.channel_names,
                                      measure_input=measure_input, **kw)
            total_s = s.info.audio.duration_s or s.info.container.duration_s
            done = 0

            def blocks() -> Any:
                nonlocal done
                for block in s:
                    yield block
                    done += block.shape[1]
                    if progress is not None:
                        progress(done / s.sample_rate, total_s)

            if final:
                with io.MediaWriter(plan, dest) as writer:
                    for block in blocks():
                        writer.write(norm.push(block))
                    writer.write(norm.flush())
                warnings.extend(writer.warnings)
            else:
                write = _flac_writer(dest, s.sample_rate, s.channels)
                for block in blocks():
                    write(norm.push(block))
                write(norm.flush())
                write(None)
        return norm.result()

    with io.atomic_output(url_out) as tmp:
        work = tmp if lossless else tmp + ".flac"
        try:
            res = run(url_in, work, gain, stream_index, final=lossless, measure_input=gating == "speech",
                      progress=progress)
            first = res

            def again(step: float) -> NormalizationResult:
                # the processed signal, read back from what was written (never the input)
                nxt = work + ".next"
                try:
                    r = run(work, nxt, step, None, final=lossless)
                    os.replace(nxt, work)
                finally:
                    if os.path.exists(nxt):
                        os.unlink(nxt)
                return r

            aim = _level_target(res, gain, target_lufs, gating)
            res, total, passes, note = _correct(res, gain, note, float(target_lufs) if aim is None else aim, tol,
                                                0 if aim is None else max_corr, again)
            if not lossless:  # the lossy output, encoded once from the processed signal
                with io.stream(work) as s, io.MediaWriter(plan, tmp) as writer:
                    for block in s:
                        writer.write(block)
                warnings.extend(writer.warnings)
        finally:
            if work != tmp and os.path.exists(work):
                os.unlink(work)
    return replace(res, gain_db=total, target_lufs=float(target_lufs), measured_lufs=_measured_or_none(measured_lufs),
                   correction_passes=passes, note=note, warnings=tuple(warnings), gating=gating,
                   input_integrated_lufs=first.input_integrated_lufs)
