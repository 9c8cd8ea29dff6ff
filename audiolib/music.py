"""Music detection from signal features, streaming: is there music (alone or under speech) in each
segment of :data:`SEGMENT_S` seconds?

No installed package ships a speech/music classifier, so this detector is built from signal
features that describe what music has and speech, noise and silence lack, combined by a small
logistic regression fitted on a labelled training split (see *Decision rule*).

Analysis
--------
16 kHz mono is cut into 64 ms Hann frames (:data:`FRAME_LEN` = 1024 samples, 15.6 Hz bins) every
31.25 ms (:data:`HOP` = 500 samples, so exactly :data:`FRAMES_PER_SEGMENT` = 32 frames per segment).
Only the 78 Hz - 5 kHz band (:data:`BAND_LO_BIN`..:data:`BAND_HI_BIN`) is used: it holds the
fundamentals and strong partials of nearly all instruments, and skipping the rest saves time.

Per frame:

* **spectral peaks**: local maxima of the log power spectrum standing :data:`PEAK_PROMINENCE_DB`
  above the mean of the surrounding +-:data:`SMOOTH_HALF_BINS` bins (in dB) and above an absolute
  floor (:data:`PEAK_FLOOR_DB`, a sine at about -78 dBFS). For white noise the log periodogram of a
  bin exceeds its local dB mean by 10 dB with probability ~0.4 %, so noise gives few, random peaks.
* **stable peaks** (tonal stationarity): a peak that has stayed within +-1 bin (+-16 Hz) in each of
  the last :data:`STABLE_FRAMES` frames (250 ms); **long-stable** peaks, :data:`LONG_STABLE_FRAMES`
  (500 ms). Held notes and their partials are stable; speech harmonics glide with intonation (the
  k-th harmonic moves k times as far as the pitch), noise peaks do not persist. **Births**: stable
  peaks that were not stable in the previous frame (new notes). Constant hum is stable but has no
  births after its start.
* **pitch-grid phase**: for stable peaks above 200 Hz, the frequency refined by parabolic
  interpolation of the log spectrum, as a phase on the equal-tempered semitone grid
  (``2*pi*12*log2(f/440)``). Tuned music puts its partials near one grid (whatever its reference
  tuning, since only the coherence is used); the harmonics of speech fall anywhere.
* **onset strength**: mean positive change of the log spectrum from the previous frame
  (spectral flux), and **flatness** (geometric over arithmetic mean power, dB).

Per segment, over a window of context (segment +-1 s for most features; +-:data:`CONTEXT_SEGMENTS`
segments for the rhythm and energy statistics), the features :data:`FEATURE_NAMES`:

``stable``, ``long_stable`` (log of 1 + mean count per frame over 3 s), ``births`` (log of 1 + count in
the segment), ``peaks`` (log of 1 + mean count per frame in the segment), ``grid_3s``/``grid_5s`` (the
length of the mean pitch-grid phasor of all stable peaks, shrunk towards 0 when there are few:
``|sum exp(j*phase)| / (count + 5)``), ``rhythm`` (largest normalised autocorrelation of the onset
strength over 5 s at lags 0.31-1.5 s, i.e. 40-190 beats per minute), ``low_energy`` (share of frames
more than 10 dB below the window's mean power: speech pauses), ``flatness`` (mean, dB), ``flux_cv``
(coefficient of variation of onset strength), ``quiet_stable`` (log of 1 + mean stable peaks in the
quieter frames of the 3 s window, those 6 dB or more below its 90th-percentile energy: the music bed
heard between words), ``quiet_frac`` (share of such frames) and ``stable_frac`` (share of frames over
5 s with at least one stable peak).

Decision rule
-------------
``p = sigmoid(BIAS + sum(WEIGHTS * (features - FEATURE_MEAN) / FEATURE_SCALE))``; a segment quieter
than :data:`MIN_LEVEL_DBFS` (RMS) has ``p = 0`` (silence and near-silence are not music). Music is
present when ``p >= DECISION_THRESHOLD`` (0.5: the classes are weighted as they come in the
training split, about 55 % of segments with music). The features are correlated (stable,
long-stable and quiet-stable peaks), so a single weight means little on its own (some come out
negative); the largest are for peaks, pitch-grid coherence and stable peaks in quiet frames.
The weights were fitted by L2-regularised logistic regression on the TRAIN split of
``benchmarks/content_corpus.py`` (recorded game music, fluidsynth-rendered MIDI, espeak-ng and
flite speech, speech over music beds 10-20 dB down, noise, hum, silence) by
``python -m benchmarks.eval_content --fit``; ``benchmarks/eval_content.py`` evaluates them on the
disjoint TEST split (other recordings, pieces, voices, texts).

Known weaknesses (TEST split): slow, flat-intonation synthetic speech (espeak-ng ``en+f4`` at
130 words per minute) is often taken for music, since its steady harmonics look like held notes;
a drums-and-bass bed under speech is mostly missed (little tonal content left between the
words); segments within 2 s of a change of content see the neighbour through their context window.

Streaming
---------
:class:`MusicDetector` keeps fewer than ``FRAME_LEN`` pending samples, the last
:data:`LONG_STABLE_FRAMES` frames' peak maps, the per-frame values of the last
``2*CONTEXT_SEGMENTS + 1`` segments and one feature vector per segment: memory is O(segments)
with a small constant. Frames lie on a fixed grid from the first sample, so the results do not
depend on how the samples are split into blocks. A segment's features are computed once its
context has arrived; the last segments use the context there is (zero-padded final frame).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage
from numpy.lib.stride_tricks import sliding_window_view

from .errors import InvalidParameter

#: The detector's input rate (callers resample; the features are defined on this frame grid).
SAMPLE_RATE_HZ = 16000
#: Decision granularity, s.
SEGMENT_S = 1.0
FRAME_LEN = 1024  # samples: 64 ms Hann window, 15.6 Hz bins (resolves partials a semitone apart above ~270 Hz)
HOP = 500  # samples: 31.25 ms, so that a segment is a whole number of frames
FRAMES_PER_SEGMENT = int(SEGMENT_S * SAMPLE_RATE_HZ) // HOP  # 32
#: Segments of context each side for the rhythm and energy statistics (a 5 s window holds over three
#: periods of the slowest tempo considered, 40 beats per minute, and several speech pauses); the tonal
#: statistics use +-TONAL_CONTEXT_SEGMENTS. A segment's result is final CONTEXT_SEGMENTS s after its end.
CONTEXT_SEGMENTS = 2
TONAL_CONTEXT_SEGMENTS = 1
BAND_LO_BIN = 5  # 78 Hz: above mains hum's fundamental (50/60 Hz)
BAND_HI_BIN = 320  # 5 kHz
SMOOTH_HALF_BINS = 8  # +-125 Hz local mean for peak prominence
#: A peak stands this far above the local dB mean. White noise exceeds it with p ~ 0.004 per bin
#: (log of an exponential variate: P(X > 10**(1.0 - 0.25)) with the -2.5 dB bias of a dB mean).
PEAK_PROMINENCE_DB = 10.0
#: Absolute floor of a peak, dB of |rfft|^2 of the Hann-windowed frame: a sine of amplitude A peaks
#: at 20*log10(256 A), so -30 dB is a sine at about -78 dBFS.
PEAK_FLOOR_DB = -30.0
POWER_FLOOR = 1e-7  # added before log10 (about -94 dBFS white noise per bin)
STABLE_FRAMES = 8  # 250 ms: shorter than a held note, longer than most steady vowel stretches
LONG_STABLE_FRAMES = 16  # 500 ms
GRID_MIN_BIN = 13  # 203 Hz: below, a 15.6 Hz bin is over a semitone and the grid phase is noise
GRID_SHRINK = 5.0  # pseudo-count that pulls the grid coherence of few peaks towards 0
QUIET_BELOW_P90_DB = 6.0
LOW_ENERGY_BELOW_MEAN_DB = 10.0
LAG_MIN_FRAMES = 10  # 0.31 s: 190 beats per minute
LAG_MAX_FRAMES = 48  # 1.5 s: 40 beats per minute
#: Segments quieter than this (RMS, dBFS) are not music: silence, near-silence, faint room tone.
MIN_LEVEL_DBFS = -60.0
DECISION_THRESHOLD = 0.5
CHUNK_FRAMES = 2048  # at most this many frames analysed per batch (bounds temporary memory)
MIN_BATCH_FRAMES = 256  # at least this many (8 s) unless the stream ends: per-call overhead

#: A segment with no new stable peak (note birth) in itself and the NO_BIRTHS_SEGMENTS segments on
#: either side is not music: a steady tone (the 1 kHz line-up tone at the head of a broadcast file,
#: a test tone, a hum) is stable and on the pitch grid, but music changes notes within 7 s. Added
#: after the fit (the training set has no steady tones); a drone held longer than that is missed.
NO_BIRTHS_SEGMENTS = 3
#: ... precisely: fewer than this many segments with births in that 7-segment window (a tone's
#: own start is one birth).
MIN_BIRTH_SEGMENTS = 2
FEATURE_NAMES = ("stable", "long_stable", "births", "peaks", "grid_3s", "grid_5s", "rhythm", "low_energy",
                 "flatness", "flux_cv", "quiet_stable", "quiet_frac", "stable_frac")

# Fitted by `python -m benchmarks.eval_content --fit` (L2-regularised logistic regression, lambda=0.01,
# on the TRAIN split of benchmarks/content_corpus.py, CORPUS_VERSION 2). Do not edit by hand.
FEATURE_MEAN = np.array([
    0.8249, 0.427271, 1.75568, 2.12763, 0.42611, 0.452024, 0.30922,
    0.182295, -21.7818, 0.982843, 0.809345, 0.348785, 0.468898,
])
FEATURE_SCALE = np.array([
    0.777142, 0.593049, 1.22383, 0.82736, 0.314691, 0.3083, 0.236673,
    0.148075, 8.35988, 0.423874, 0.83467, 0.213257, 0.329123,
])
WEIGHTS = np.array([
    -0.184095, -0.109553, 0.473958, 1.03472, 0.91526, 1.25885, 0.14655,
    -0.352422, -0.462067, -0.589423, 0.881054, 0.36672, 0.479986,
])
BIAS = 0.773894

_BAND = np.arange(BAND_LO_BIN, BAND_HI_BIN)
_GRID_BAND = (_BAND >= GRID_MIN_BIN)[None]
# per-frame values
_MS, _PEAKS, _STABLE, _BIRTHS, _ONSET, _FLAT, _GC, _GS, _GN, _LONG = range(10)
_NV = 10


class MusicDetector:
    """Streaming music detector: one probability and decision per :data:`SEGMENT_S` segment.

    Parameters
    ----------
    sample_rate_hz : int
        Must be :data:`SAMPLE_RATE_HZ` (16000); resample before pushing.
    """

    def __init__(self, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        if sample_rate_hz != SAMPLE_RATE_HZ:
            raise InvalidParameter(f"sample_rate_hz={sample_rate_hz!r}: MusicDetector takes {SAMPLE_RATE_HZ} Hz mono")
        self.sample_rate_hz = sample_rate_hz
        # periodic Hann window (scipy.signal.get_window("hann", FRAME_LEN), without importing scipy.signal)
        self._window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(FRAME_LEN) / FRAME_LEN)).astype(np.float32)
        self._pending = np.zeros(0, np.float32)
        self._n_samples = 0
        self._state = _initial_state()
        self._vals = np.zeros((0, _NV))  # per-frame values from frame index self._v0 on
        self._v0 = 0
        self._n_frames = 0
        self._features: list[np.ndarray] = []  # one row per segment whose context is complete

    def push(self, x: np.ndarray) -> None:
        """Add samples: 1-D float mono at 16 kHz, full scale 1.0, any length."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise InvalidParameter(f"MusicDetector.push takes 1-D mono samples, got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        self._n_samples += x.size
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        n = 0 if buf.size < FRAME_LEN else (buf.size - FRAME_LEN) // HOP + 1
        if n < MIN_BATCH_FRAMES:  # wait for a batch worth analysing (per-call overhead)
            self._pending = buf.copy() if buf is x else buf
            return
        for start in range(0, n, CHUNK_FRAMES):
            m = min(CHUNK_FRAMES, n - start)
            vals, self._state = _frame_values(buf[start * HOP: (start + m - 1) * HOP + FRAME_LEN], m,
                                              self._window, self._state)
            self._vals = np.concatenate([self._vals, vals])
            self._n_frames += m
            self._finalise()
        self._pending = buf[n * HOP:].copy()

    def _finalise(self) -> None:
        """Features of every segment whose context has fully arrived; drop frames no longer needed."""
        while True:
            k = len(self._features)
            if self._n_frames < (k + CONTEXT_SEGMENTS + 1) * FRAMES_PER_SEGMENT:
                return
            self._features.append(_segment_features(self._vals, self._v0, k, self._n_frames))
            drop = (k + 1 - CONTEXT_SEGMENTS) * FRAMES_PER_SEGMENT - self._v0
            if drop > 0:
                self._vals = self._vals[drop:]
                self._v0 += drop

    @property
    def n_segments(self) -> int:
        """Segments so far: whole segments, plus a final partial one of at least half a segment."""
        seg = int(SEGMENT_S * self.sample_rate_hz)
        full, rest = divmod(self._n_samples, seg)
        return full + (1 if 2 * rest >= seg else 0)

    def features(self) -> np.ndarray:
        """Feature matrix (segments, len(FEATURE_NAMES)) plus the level column last, for fitting.

        The last segments, still waiting for context, are computed from what has arrived (the final
        frame zero-padded); the detector's state is not changed, so pushing may continue.
        """
        n_seg = self.n_segments
        rows = self._features[:n_seg]
        if len(rows) < n_seg:
            vals, n_frames = self._vals, self._n_frames
            todo = -(-self._n_samples // HOP) - n_frames  # every frame starting before the end
            if todo > 0:
                pad = np.zeros((todo - 1) * HOP + FRAME_LEN - self._pending.size, np.float32)
                extra, _ = _frame_values(np.concatenate([self._pending, pad]), todo, self._window, self._state)
                vals = np.concatenate([vals, extra])
                n_frames += todo
            rows = rows + [_segment_features(vals, self._v0, k, n_frames) for k in range(len(rows), n_seg)]
        return np.array(rows).reshape(n_seg, len(FEATURE_NAMES) + 1)

    def probabilities(self) -> np.ndarray:
        """Probability of music, one per segment of :data:`SEGMENT_S` s (0 below :data:`MIN_LEVEL_DBFS`,
        and 0 for a steady tone: see :data:`NO_BIRTHS_SEGMENTS`)."""
        feats = self.features()
        p = probability_from_features(feats)
        if feats.shape[0]:
            births = feats[:, FEATURE_NAMES.index("births")] > 0
            k = NO_BIRTHS_SEGMENTS
            padded = np.concatenate((np.zeros(k, bool), births, np.zeros(k, bool)))
            window = np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1).sum(axis=1) >= MIN_BIRTH_SEGMENTS
            p = np.where(window, p, 0.0)
        return p

    def decisions(self) -> np.ndarray:
        """Music present, one bool per segment: ``probabilities() >= DECISION_THRESHOLD``."""
        return self.probabilities() >= DECISION_THRESHOLD


def probability_from_features(feats: np.ndarray, *, mean: np.ndarray | None = None,
                              scale: np.ndarray | None = None, weights: np.ndarray | None = None,
                              bias: float | None = None) -> np.ndarray:
    """The decision rule on a :meth:`MusicDetector.features` matrix (last column: level, dBFS).
    The fitted module constants are used unless others are given (the fitting script passes its own)."""
    mean = FEATURE_MEAN if mean is None else mean
    scale = FEATURE_SCALE if scale is None else scale
    weights = WEIGHTS if weights is None else weights
    bias = BIAS if bias is None else bias
    z = bias + ((feats[:, :-1] - mean) / scale) @ weights
    p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
    p[~(feats[:, -1] >= MIN_LEVEL_DBFS)] = 0.0
    return p


def _initial_state() -> dict:
    nb = BAND_HI_BIN - BAND_LO_BIN
    return {"L": None, "D": np.zeros((LONG_STABLE_FRAMES - 1, nb), bool), "S": np.zeros(nb, bool)}


def _dilate(a: np.ndarray) -> np.ndarray:
    """Boolean (frames, bins) map dilated by one bin each way."""
    d = a.copy()
    d[:, 1:] |= a[:, :-1]
    d[:, :-1] |= a[:, 1:]
    return d


def _frame_values(buf: np.ndarray, m: int, window: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
    """Per-frame values of the ``m`` frames starting every HOP samples in ``buf``; returns the new state."""
    frames = sliding_window_view(buf, FRAME_LEN)[::HOP][:m]
    ms = np.einsum("ij,ij->i", frames, frames).astype(np.float64) / FRAME_LEN
    spec = scipy.fft.rfft(frames * window, axis=1, workers=1)[:, : BAND_HI_BIN + SMOOTH_HALF_BINS + 1]
    P = spec.real ** 2 + spec.imag ** 2
    L = 10 * np.log10(P + POWER_FLOOR)
    lo, hi = BAND_LO_BIN, BAND_HI_BIN
    smooth = scipy.ndimage.uniform_filter1d(L, 2 * SMOOTH_HALF_BINS + 1, axis=1, mode="nearest")[:, lo:hi]
    Lb = L[:, lo:hi]
    peak = ((Lb > L[:, lo - 1: hi - 1]) & (Lb >= L[:, lo + 1: hi + 1])
            & (Lb - smooth > PEAK_PROMINENCE_DB) & (Lb > PEAK_FLOOR_DB))
    # stability: the +-1-bin dilated peak map is set in every one of the last K frames
    K, K2 = STABLE_FRAMES, LONG_STABLE_FRAMES
    D = np.concatenate([state["D"], _dilate(peak)])  # K2-1 frames of history first
    cs = np.concatenate([np.zeros((1, D.shape[1]), np.int16),  # counts <= CHUNK_FRAMES + K2 fit int16
                         np.cumsum(D.view(np.uint8), axis=0, dtype=np.int16)])
    stable = peak & ((cs[K2:] - cs[K2 - K: K2 - K + m]) == K)
    long_stable = peak & ((cs[K2:] - cs[:m]) == K2)
    births = stable & ~_dilate(np.concatenate([state["S"][None], stable[:-1]]))
    prev = Lb[:1] if state["L"] is None else state["L"][None]
    onset = np.maximum(np.diff(np.concatenate([prev, Lb]), axis=0), 0).mean(axis=1)
    flat = Lb.mean(axis=1) - 10 * np.log10(P[:, lo:hi].mean(axis=1) + POWER_FLOOR)
    # pitch-grid phase of the stable peaks above GRID_MIN_BIN (parabolic interpolation in dB)
    t_idx, b_idx = np.nonzero(stable & _GRID_BAND)
    Lc, Lm, Lp = Lb[t_idx, b_idx], L[t_idx, b_idx + lo - 1], L[t_idx, b_idx + lo + 1]
    den = Lm - 2 * Lc + Lp  # < 0 at a strict maximum
    delta = np.where(den < 0, 0.5 * (Lm - Lp) / np.where(den < 0, den, -1.0), 0.0)
    f_hz = (b_idx + lo + delta) * (SAMPLE_RATE_HZ / FRAME_LEN)
    theta = 2 * np.pi * 12 * np.log2(f_hz / 440.0)
    vals = np.empty((m, _NV))
    vals[:, _MS] = ms
    vals[:, _PEAKS] = peak.sum(1)
    vals[:, _STABLE] = stable.sum(1)
    vals[:, _BIRTHS] = births.sum(1)
    vals[:, _ONSET] = onset
    vals[:, _FLAT] = flat
    vals[:, _GC] = np.bincount(t_idx, np.cos(theta), minlength=m)
    vals[:, _GS] = np.bincount(t_idx, np.sin(theta), minlength=m)
    vals[:, _GN] = np.bincount(t_idx, minlength=m)
    vals[:, _LONG] = long_stable.sum(1)
    return vals, {"L": Lb[-1].copy(), "D": D[-(K2 - 1):].copy(), "S": stable[-1].copy()}


def _segment_features(vals: np.ndarray, v0: int, k: int, n_frames: int) -> np.ndarray:
    """Feature row of segment ``k`` from per-frame values (row 0 of ``vals`` is frame ``v0``),
    followed by the segment's level (dBFS)."""
    F = FRAMES_PER_SEGMENT

    def window(segs: int) -> np.ndarray:
        return vals[max(0, (k - segs) * F) - v0: min(n_frames, (k + segs + 1) * F) - v0]

    c, w3, w5 = window(0), window(TONAL_CONTEXT_SEGMENTS), window(CONTEXT_SEGMENTS)
    cs, s3, s5 = c.sum(0), w3.sum(0), w5.sum(0)
    n3, n5 = w3.shape[0], w5.shape[0]
    level_db = 10 * np.log10(cs[_MS] / c.shape[0] + 1e-20)
    grid3 = np.hypot(s3[_GC], s3[_GS]) / (s3[_GN] + GRID_SHRINK)
    grid5 = np.hypot(s5[_GC], s5[_GS]) / (s5[_GN] + GRID_SHRINK)
    e3 = 10 * np.log10(w3[:, _MS] + 1e-20)
    p90 = np.partition(e3, int(0.9 * (n3 - 1)))[int(0.9 * (n3 - 1))]  # nearest-rank 90th percentile
    quiet = (e3 < p90 - QUIET_BELOW_P90_DB) & (e3 > MIN_LEVEL_DBFS)
    n_quiet = int(quiet.sum())
    quiet_stable = w3[quiet, _STABLE].sum() / n_quiet if n_quiet >= 4 else s3[_STABLE] / n3
    low_energy = np.count_nonzero(w5[:, _MS] < s5[_MS] / n5 * 10 ** (-LOW_ENERGY_BELOW_MEAN_DB / 10)) / n5
    onset = w5[:, _ONSET]
    o = onset - s5[_ONSET] / n5
    acf = np.correlate(o, o, mode="full")[n5 - 1:]
    rhythm = 0.0
    if acf[0] > 0 and n5 > 2 * LAG_MAX_FRAMES:
        rhythm = float(acf[LAG_MIN_FRAMES: LAG_MAX_FRAMES + 1].max() / acf[0])
    row = np.array([
        np.log1p(s3[_STABLE] / n3),
        np.log1p(s3[_LONG] / n3),
        np.log1p(cs[_BIRTHS]),
        np.log1p(cs[_PEAKS] / c.shape[0]),
        grid3,
        grid5,
        rhythm,
        low_energy,
        s5[_FLAT] / n5,
        np.sqrt(acf[0] / n5) / (s5[_ONSET] / n5 + 1e-9),
        np.log1p(quiet_stable),
        n_quiet / n3,
        np.count_nonzero(w5[:, _STABLE] >= 1) / n5,
        level_db,
    ])
    return np.nan_to_num(row, nan=0.0, posinf=0.0, neginf=-200.0)
