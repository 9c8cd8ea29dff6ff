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
* **held peaks**: a peak whose refined frequency moved less than :data:`FLAT_CENTS` (10 cents) from
  the nearest peak (+-1 bin) of the previous frame is *flat*; one that has been flat in each of the
  last :data:`HELD_FRAMES` frames (125 ms) is *held*. "Stable" allows +-16 Hz per frame, which a
  slowly gliding voice harmonic meets (16 Hz is over a semitone at 200 Hz); a held note's partials
  move a cent or two per frame, a voice's harmonics tens of cents.
* **the voice's comb** (``_voice_comb``): the dominant harmonic series of the frame's peaks (a
  fundamental of 80-450 Hz, chosen among the three lowest peaks taken as harmonic 1-3, scored over
  its first ten harmonics against missing harmonics and peaks between them, refined by least
  squares); a frame without one of its own (a voice's first and last frames) keeps the last one for
  three frames. Peaks on the comb are what one voice explains; **off-comb** peaks, stable peaks,
  births and held peaks are what something else (a bed, other notes) adds.

Why the off-comb features (issue 19): a steady, clear synthetic voice (flite ``slt``, espeak-ng
``en+f4``, festival's HTS voices) has clean harmonics up to 5 kHz and a flat intonation, so it has
as many spectral peaks, stable peaks and births as speech over a music bed, which the training set
teaches to be music; the old features (counts of peaks, stable peaks and births over the whole
spectrum) could not tell the two apart, and flite slt read up to 30 % music on single files
(``evaluations/eval_tts_speech.py``). Every one of the voice's peaks lies on its comb, and its
harmonics glide together; a bed's partials lie off the voice's comb and are held
(``evaluations/music_features_tts.py`` prints the features of both detectors).

Per segment, over a window of context (segment +-1 s for most features; +-:data:`CONTEXT_SEGMENTS`
segments for the rhythm and energy statistics), the features :data:`FEATURE_NAMES`:

``stable``, ``long_stable`` (log of 1 + mean count per frame over 3 s), ``births`` (log of 1 + count in
the segment), ``peaks_off_comb`` (log of 1 + mean count per frame in the segment of the peaks off the
voice's comb; all peaks where no comb was found), ``grid_3s``/``grid_5s`` (the
length of the mean pitch-grid phasor of all stable peaks, shrunk towards 0 when there are few:
``|sum exp(j*phase)| / (count + 5)``), ``rhythm`` (largest normalised autocorrelation of the onset
strength over 5 s at lags 0.31-1.5 s, i.e. 40-190 beats per minute), ``low_energy`` (share of frames
more than 10 dB below the window's mean power: speech pauses), ``flatness`` (mean, dB), ``flux_cv``
(coefficient of variation of onset strength), ``quiet_stable`` (log of 1 + mean stable peaks in the
quieter frames of the 3 s window, those 6 dB or more below its 90th-percentile energy: the music bed
heard between words), ``quiet_frac`` (share of such frames), ``stable_frac`` (share of frames over
5 s with at least one stable peak); for the held peaks ``held`` (log of 1 + mean count per frame over
3 s), ``quiet_held`` (the same in the quiet frames), ``held_frac`` (share of frames over 5 s with one)
and ``grid_held`` (their pitch-grid coherence over 5 s); for the off-comb stable peaks ``off_comb``,
``quiet_off_comb``, ``births_off_comb`` (in the segment), ``grid_off_comb_3s`` and
``grid_off_comb_5s``; for the off-comb held peaks ``held_off_comb``, ``quiet_held_off_comb`` and
``held_off_comb_frac``.

Decision rule
-------------
``p = sigmoid(BIAS + sum(WEIGHTS * (features - FEATURE_MEAN) / FEATURE_SCALE))``; a segment quieter
than :data:`MIN_LEVEL_DBFS` (RMS) has ``p = 0`` (silence and near-silence are not music). Music is
present when ``p >= DECISION_THRESHOLD`` (0.5: the classes are weighted as they come in the
training split, about 55 % of segments with music). The features are correlated (stable,
long-stable and quiet-stable peaks; held and off-comb peaks), so a single weight means little on its
own (some come out negative); the largest are for off-comb peaks and births, pitch-grid coherence
(of stable and of held peaks) and stable and held peaks in quiet frames.
The weights were fitted by L2-regularised logistic regression (lambda 0.03) on the TRAIN split of
``testing/material/content_corpus.py`` (recorded game music, fluidsynth-rendered MIDI, espeak-ng, flite
and festival speech, recorded speech, speech over music beds 10-20 dB down, noise, hum, silence) by
``python -m evaluations.eval_content --fit``; ``evaluations/eval_content.py`` evaluates
them on the disjoint TEST split (other recordings, pieces, voices, texts), and
``evaluations/eval_tts_speech.py`` on text-to-speech and recorded speech. (Lambda 0.03 rather than
0.01: on a development set of TTS paragraphs, 0.01 left more single files over 5 % music.)

Known weaknesses (TEST split): a drums-and-bass bed under speech is mostly missed (little tonal
content left between the words); segments within 2 s of a change of content see the neighbour
through their context window (a 20 s piece of music between two speech parts reads 23 s). The
slow, flat espeak-ng ``en+f4`` voice is still the synthetic voice most often taken for music (3 %
of its segments on ``eval_tts_speech``'s texts, one file 11 %).

Streaming
---------
:class:`MusicDetector` keeps fewer than ``FRAME_LEN`` pending samples, the last
:data:`LONG_STABLE_FRAMES` frames' peak maps (and :data:`HELD_FRAMES` frames' flat maps, the last
frame's peak frequencies and the last comb), the per-frame values of the last
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
#: A peak is *flat* when the nearest peak (+-1 bin) of the previous frame was within this many cents
#: of it (refined frequencies): a held note's partials move by a cent or two per 31.25 ms frame from
#: the estimate's noise; speech harmonics glide by tens of cents.
FLAT_CENTS = 10.0
#: A *held* peak has had a flat peak within +-1 bin in each of the last HELD_FRAMES frames (125 ms).
HELD_FRAMES = 4
#: The voice's harmonic comb of a frame (see ``_voice_comb``): fundamental searched from
#: COMB_F0_MIN_HZ to COMB_F0_MAX_HZ (speaking voices, 80-450 Hz), over its first COMB_HARMONICS
#: harmonics below COMB_MAX_HZ; a peak is on the comb within COMB_TOL harmonic numbers
#: (|f / f0 - k| < 0.1).
COMB_F0_MIN_HZ = 80.0
COMB_F0_MAX_HZ = 450.0
COMB_HARMONICS = 10
COMB_MAX_HZ = 5000.0
COMB_TOL = 0.1
#: Candidates: each of the COMB_LOW_PEAKS lowest peaks as harmonic 1 .. COMB_LOW_HARMONIC.
COMB_LOW_PEAKS = 3
COMB_LOW_HARMONIC = 3
#: Score of a candidate: harmonics with a peak, minus these weights times harmonics without one and
#: times peaks between its harmonics (which rules out octave errors both ways).
COMB_MISS_WEIGHT = 0.5
COMB_EXTRA_WEIGHT = 0.5
#: Least-squares refinements of the chosen fundamental over its matched peaks.
COMB_REFINE = 2
#: A comb needs this many harmonics with a peak; a frame with fewer (a voice's first or last frames)
#: takes the last comb found within COMB_CARRY_FRAMES frames.
COMB_MIN_HARMONICS = 3
COMB_CARRY_FRAMES = 3
FEATURE_NAMES = ("stable", "long_stable", "births", "peaks_off_comb", "grid_3s", "grid_5s", "rhythm", "low_energy",
                 "flatness", "flux_cv", "quiet_stable", "quiet_frac", "stable_frac",
                 "held", "quiet_held", "held_frac", "grid_held",
                 "off_comb", "quiet_off_comb", "births_off_comb", "grid_off_comb_3s", "grid_off_comb_5s",
                 "held_off_comb", "quiet_held_off_comb", "held_off_comb_frac")

# Fitted by `python -m evaluations.eval_content --fit` (L2-regularised logistic regression,
# lambda=0.03, on the TRAIN split of testing/material/content_corpus.py, CORPUS_VERSION 3). Do not edit by hand.
FEATURE_MEAN = np.array([
    0.811539, 0.425834, 1.72549, 1.1612, 0.421982, 0.452943, 0.29853,
    0.184258, -21.1287, 1.0238, 0.81399, 0.345598, 0.455359, 0.749351,
    0.783202, 0.363094, 0.444275, 0.413521, 0.423299, 0.889736, 0.353664,
    0.395688, 0.436086, 0.443862, 0.265418,
])
FEATURE_SCALE = np.array([
    0.791523, 0.587643, 1.25557, 0.767898, 0.315919, 0.305575, 0.23782,
    0.149036, 8.2219, 0.408205, 0.8403, 0.209234, 0.345128, 0.892993,
    0.943741, 0.374085, 0.348459, 0.553723, 0.581049, 1.08124, 0.340689,
    0.339869, 0.608718, 0.634042, 0.311081,
])
WEIGHTS = np.array([
    -0.0861181, -0.153954, 0.449871, 0.851589, 0.325424, 0.320535, -0.0658831,
    -0.250203, -0.188548, 0.0224955, 0.216055, 0.183778, 0.0809588, 0.0344324,
    0.342696, 0.222571, 0.621352, -0.00514247, 0.140773, 0.513721, 0.278936,
    0.232272, -0.0321467, 0.116361, 0.0481551,
])
BIAS = 1.18848

_BAND = np.arange(BAND_LO_BIN, BAND_HI_BIN)
_GRID_BAND = (_BAND >= GRID_MIN_BIN)[None]
# per-frame values: mean square, counts of peaks off the voice's comb, stable peaks, births, onset strength, flatness,
# pitch-grid phasor sums (cos, sin, count) of stable peaks, long-stable count, held count, grid of
# held peaks, off-comb stable count, grid of off-comb stable peaks, off-comb births, off-comb held
(_MS, _PKOFF, _STABLE, _BIRTHS, _ONSET, _FLAT, _GC, _GS, _GN, _LONG, _HELD, _HGC, _HGS, _HGN,
 _OFF, _OGC, _OGS, _OGN, _OBIRTHS, _HOFF) = range(20)
_NV = 20


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
    return {"L": None, "D": np.zeros((LONG_STABLE_FRAMES - 1, nb), bool), "S": np.zeros(nb, bool),
            "C": np.full(nb, np.nan), "H": np.zeros((HELD_FRAMES - 1, nb), bool), "f0": 0.0, "f0_age": 0}


def _dilate(a: np.ndarray) -> np.ndarray:
    """Boolean (frames, bins) map dilated by one bin each way."""
    d = a.copy()
    d[:, 1:] |= a[:, :-1]
    d[:, :-1] |= a[:, 1:]
    return d


def _all_of_last(a: np.ndarray, k: int, m: int) -> np.ndarray:
    """(m, bins): row t is set where rows t .. t + k - 1 of ``a`` (the last ``m + k - 1`` rows of
    it; frame t's window of k frames ending at it) are all set."""
    a = a[a.shape[0] - (m + k - 1):]
    out = a[:m].copy()
    for i in range(1, k):
        out &= a[i:i + m]
    return out


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
    recent = _all_of_last(D, K, m)
    stable = peak & recent
    long_stable = stable & _all_of_last(D[:m + K2 - 1 - K], K2 - K, m)  # the K2 - K frames before those K
    births = stable & ~_dilate(np.concatenate([state["S"][None], stable[:-1]]))
    prev = Lb[:1] if state["L"] is None else state["L"][None]
    onset = np.maximum(np.diff(np.concatenate([prev, Lb]), axis=0), 0).mean(axis=1)
    flat_db = Lb.mean(axis=1) - 10 * np.log10(P[:, lo:hi].mean(axis=1) + POWER_FLOOR)
    # every peak's frequency, refined by parabolic interpolation of the log spectrum, in cents
    t_idx, b_idx = np.nonzero(peak)
    Lc, Lm, Lp = Lb[t_idx, b_idx], L[t_idx, b_idx + lo - 1], L[t_idx, b_idx + lo + 1]
    den = Lm - 2 * Lc + Lp  # < 0 at a strict maximum
    delta = np.where(den < 0, 0.5 * (Lm - Lp) / np.where(den < 0, den, -1.0), 0.0)
    pf = (b_idx + lo + delta) * (SAMPLE_RATE_HZ / FRAME_LEN)  # Hz, peak by peak (frame-major order)
    pc = 1200.0 * np.log2(pf / 440.0)  # cents from A4
    # flat: the nearest peak (+-1 bin) of the previous frame within FLAT_CENTS; held: flat (within
    # +-1 bin) in each of the last HELD_FRAMES frames. Looked up at the peaks only: row t + 1 of
    # `cents` is frame t, row 0 the previous call's last frame; one bin of padding each side.
    nb = peak.shape[1]
    cents = np.full((m + 1, nb + 2), np.nan)
    cents[0, 1:-1] = state["C"]
    cents[t_idx + 1, b_idx + 1] = pc
    near = cents[t_idx[:, None], b_idx[:, None] + np.arange(3)]  # frame t - 1, bins b - 1 .. b + 1
    with np.errstate(invalid="ignore"):
        step = np.nanmin(np.abs(near - pc[:, None]), axis=1, initial=np.inf)
    flat = np.zeros(peak.shape, bool)
    flat[t_idx, b_idx] = step < FLAT_CENTS
    KH = HELD_FRAMES
    DH = np.concatenate([state["H"], _dilate(flat)])
    held = flat & _all_of_last(DH, KH, m)
    # the voice's harmonic comb: stable and held peaks off it belong to something else
    on_pk, f0, f0_age = _voice_comb(t_idx, pf, m, state["f0"], state["f0_age"])
    p_stable = stable[t_idx, b_idx]
    p_held = held[t_idx, b_idx]
    p_off = p_stable & ~on_pk
    p_births = births[t_idx, b_idx]
    vals = np.empty((m, _NV))
    vals[:, _MS] = ms
    vals[:, _PKOFF] = np.bincount(t_idx, ~on_pk, minlength=m)
    vals[:, _STABLE] = np.bincount(t_idx, p_stable, minlength=m)
    vals[:, _BIRTHS] = np.bincount(t_idx, p_births, minlength=m)
    vals[:, _ONSET] = onset
    vals[:, _FLAT] = flat_db
    vals[:, _LONG] = long_stable.sum(1)
    vals[:, _HELD] = np.bincount(t_idx, p_held, minlength=m)
    vals[:, _OFF] = np.bincount(t_idx, p_off, minlength=m)
    vals[:, _OBIRTHS] = np.bincount(t_idx, p_births & ~on_pk, minlength=m)
    vals[:, _HOFF] = np.bincount(t_idx, p_held & ~on_pk, minlength=m)
    # pitch-grid phasors (peaks above GRID_MIN_BIN) of the stable, held and off-comb stable peaks
    in_grid = b_idx + lo >= GRID_MIN_BIN
    theta = (2 * np.pi / 100.0) * pc  # 2 pi per semitone
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    for mask, (ci, si, ni) in ((p_stable, (_GC, _GS, _GN)), (p_held, (_HGC, _HGS, _HGN)), (p_off, (_OGC, _OGS, _OGN))):
        sel = mask & in_grid
        vals[:, ci] = np.bincount(t_idx[sel], cos_t[sel], minlength=m)
        vals[:, si] = np.bincount(t_idx[sel], sin_t[sel], minlength=m)
        vals[:, ni] = np.bincount(t_idx[sel], minlength=m)
    return vals, {"L": Lb[-1].copy(), "D": D[-(K2 - 1):].copy(), "S": stable[-1].copy(), "C": cents[-1, 1:-1].copy(),
                  "H": DH[-(KH - 1):].copy(), "f0": f0, "f0_age": f0_age}


def _voice_comb(t_idx: np.ndarray, f: np.ndarray, m: int, f0_prev: float,
                age_prev: int) -> tuple[np.ndarray, float, int]:
    """Which peaks lie on their frame's dominant harmonic comb (a voice's harmonics).

    Candidates for the fundamental: each of the :data:`COMB_LOW_PEAKS` lowest peaks taken as
    harmonic 1 .. :data:`COMB_LOW_HARMONIC` (within :data:`COMB_F0_MIN_HZ` ..
    :data:`COMB_F0_MAX_HZ`). A candidate's score over its first :data:`COMB_HARMONICS` harmonics
    below :data:`COMB_MAX_HZ`: harmonics with a peak within :data:`COMB_TOL`, minus
    :data:`COMB_MISS_WEIGHT` per harmonic without one and :data:`COMB_EXTRA_WEIGHT` per peak between
    them (so neither twice nor half the fundamental wins). The best is refined by least squares over
    its matched peaks (:data:`COMB_REFINE` times). A frame with fewer than
    :data:`COMB_MIN_HARMONICS` matched harmonics takes the last comb found within
    :data:`COMB_CARRY_FRAMES` frames (``f0_prev``, ``age_prev`` carry it across calls), or has none.

    Parameters
    ----------
    t_idx : (peaks,) int
        Frame of each peak, non-decreasing, the peaks of a frame in increasing frequency.
    f : (peaks,) float
        Refined frequency of each peak, Hz.
    m : int
        Frames.

    Returns
    -------
    on : (peaks,) bool
        Peaks on their frame's comb.
    f0, age : float, int
        The last comb's fundamental (0: none) and the frames since it was found, for the next call.
    """
    n_pk = np.bincount(t_idx, minlength=m)
    first = np.concatenate(([0], np.cumsum(n_pk)[:-1]))
    rank = np.arange(t_idx.size) - first[t_idx]  # 0 for each frame's lowest peak
    # candidates: (frame, f0) pairs from the lowest peaks
    lowest = rank < COMB_LOW_PEAKS
    ct = np.repeat(t_idx[lowest], COMB_LOW_HARMONIC)
    cf = (f[lowest][:, None] / np.arange(1, COMB_LOW_HARMONIC + 1)).ravel()
    ok = (cf >= COMB_F0_MIN_HZ) & (cf <= COMB_F0_MAX_HZ)
    ct, cf = ct[ok], cf[ok]
    # (candidate, peak of its frame) pairs
    per = n_pk[ct]
    ci = np.repeat(np.arange(ct.size), per)
    pj = np.repeat(first[ct] - np.concatenate(([0], np.cumsum(per)[:-1])), per) + np.arange(per.sum())
    kmax = np.minimum(COMB_HARMONICS, np.floor(COMB_MAX_HZ / cf))
    h = f[pj] / cf[ci]
    k = np.rint(h)
    inside = h < kmax[ci] + 0.5
    match = inside & (k >= 1) & (np.abs(h - k) < COMB_TOL)
    bits = np.where(match, np.left_shift(1, np.clip(k, 0, 62).astype(np.int64)), 0)
    starts = np.concatenate(([0], np.cumsum(per)[:-1]))
    has = per > 0
    hits = np.zeros(ct.size)
    n_in = np.zeros(ct.size)
    n_match = np.zeros(ct.size)
    if ci.size:
        hits[has] = np.bitwise_count(np.bitwise_or.reduceat(bits, starts[has]))
        n_in[has] = np.add.reduceat(inside.astype(np.int64), starts[has])
        n_match[has] = np.add.reduceat(match.astype(np.int64), starts[has])
    score = hits - COMB_MISS_WEIGHT * (kmax - hits) - COMB_EXTRA_WEIGHT * (n_in - n_match)
    # the best candidate of each frame (the first of equal scores)
    order = np.lexsort((-score, ct))
    is_first = np.ones(order.size, bool)
    is_first[1:] = ct[order][1:] != ct[order][:-1]
    best = order[is_first]
    f0 = np.zeros(m)
    found = np.zeros(m, bool)
    f0[ct[best]] = cf[best]
    found[ct[best]] = hits[best] >= COMB_MIN_HARMONICS
    # refine over the matched peaks of the chosen comb
    ff0 = f0[t_idx]
    use = found[t_idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        hh = np.where(use, f / np.where(use, ff0, 1.0), 0.0)
    kk = np.rint(hh)
    on = use & (kk >= 1) & (np.abs(hh - kk) < COMB_TOL)
    for _ in range(COMB_REFINE):
        kw = np.where(on, kk, 0.0)
        den = np.bincount(t_idx, kw * kw, minlength=m)
        num = np.bincount(t_idx, kw * f, minlength=m)
        f0 = np.where(found & (den > 0), num / np.where(den > 0, den, 1.0), f0)
        ff0 = f0[t_idx]
        hh = np.where(use, f / np.where(use, ff0, 1.0), 0.0)
        kk = np.rint(hh)
        on = use & (kk >= 1) & (np.abs(hh - kk) < COMB_TOL)
    # frames without a comb of their own take the last one found within COMB_CARRY_FRAMES frames
    idx = np.arange(m)
    last = np.maximum.accumulate(np.where(found, idx, -1)) if m else idx
    age = np.where(last >= 0, idx - last, idx + 1 + age_prev)
    f0_last = np.where(last >= 0, f0[np.maximum(last, 0)], f0_prev)
    carry = ~found & (age <= COMB_CARRY_FRAMES) & (f0_last > 0)
    cp = carry[t_idx]
    if cp.any():
        hc = f[cp] / f0_last[t_idx[cp]]
        kc = np.rint(hc)
        on[cp] = (kc >= 1) & (np.abs(hc - kc) < COMB_TOL)
    if m == 0:
        return on, f0_prev, age_prev
    return on, float(f0_last[-1]), int(age[-1])


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

    def grid(sums: np.ndarray, ci: int, si: int, ni: int) -> float:
        return float(np.hypot(sums[ci], sums[si]) / (sums[ni] + GRID_SHRINK))

    e3 = 10 * np.log10(w3[:, _MS] + 1e-20)
    p90 = np.partition(e3, int(0.9 * (n3 - 1)))[int(0.9 * (n3 - 1))]  # nearest-rank 90th percentile
    quiet = (e3 < p90 - QUIET_BELOW_P90_DB) & (e3 > MIN_LEVEL_DBFS)
    n_quiet = int(quiet.sum())

    def in_quiet(col: int) -> float:
        """Mean count per frame in the quiet frames of the 3 s window (all of it if fewer than 4)."""
        return w3[quiet, col].sum() / n_quiet if n_quiet >= 4 else s3[col] / n3

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
        np.log1p(cs[_PKOFF] / c.shape[0]),
        grid(s3, _GC, _GS, _GN),
        grid(s5, _GC, _GS, _GN),
        rhythm,
        low_energy,
        s5[_FLAT] / n5,
        np.sqrt(acf[0] / n5) / (s5[_ONSET] / n5 + 1e-9),
        np.log1p(in_quiet(_STABLE)),
        n_quiet / n3,
        np.count_nonzero(w5[:, _STABLE] >= 1) / n5,
        np.log1p(s3[_HELD] / n3),
        np.log1p(in_quiet(_HELD)),
        np.count_nonzero(w5[:, _HELD] >= 1) / n5,
        grid(s5, _HGC, _HGS, _HGN),
        np.log1p(s3[_OFF] / n3),
        np.log1p(in_quiet(_OFF)),
        np.log1p(cs[_OBIRTHS]),
        grid(s3, _OGC, _OGS, _OGN),
        grid(s5, _OGC, _OGS, _OGN),
        np.log1p(s3[_HOFF] / n3),
        np.log1p(in_quiet(_HOFF)),
        np.count_nonzero(w5[:, _HOFF] >= 1) / n5,
        level_db,
    ])
    return np.nan_to_num(row, nan=0.0, posinf=0.0, neginf=-200.0)
