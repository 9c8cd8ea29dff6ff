"""Speech events: plosive pops and excess sibilance, counted and timed inside speech (streaming).

Dolby's Audio Diagnose reports ``speech.events`` with counts of *plosive* and *sibilance* events
and bases advice on them (pop filter, mic placement, de-essing). :class:`SpeechEventDetector`
measures the same two things: build it with the stream's sample rate, ``push`` mono float32 blocks
of any length at that rate, and call :meth:`~SpeechEventDetector.result` with a speech mask (the
voice-activity detector's, one bool per ``mask_hop_s``). It keeps three float32 band levels per
~10 ms frame, never the audio (12 bytes a frame: 13 MB for 3 h) beyond one pending chunk of
2^19 samples (2 MB), which it analyses when full; events are found in ``result()``, because both
definitions compare a frame with the level of the surrounding *speech*, which only the mask says.
Results do not depend on how the stream is cut into blocks: chunks and frames lie on a fixed grid
of the stream and every filter carries its state over. The last partial frame (under 10 ms) is not
analysed. Speed: ~3000x realtime for 48 kHz mono on one core (1.15 s for the hour of
``benchmarks/profile_diagnose.py``; the sequential 4-10 kHz band-pass at the full rate, in C, is
half of it; the LF band runs at ~2 kHz).

Definitions
-----------
Frames and bands
    A frame is ``20 * round(rate / 2000)`` samples (10 ms at 8, 16, 32, 48, 96, 192 kHz; 9.98 ms
    at 44.1 kHz; within 9.4-10.9 ms at any rate from 8 kHz), frames back to back. Per frame, three
    mean-square levels, reported in dBFS RMS (``10 log10`` of the mean square; a full-scale sine is
    -3 dBFS):

    - *full*: the whole band less its sub-5 Hz part (a 2nd-order Butterworth low-pass at 5 Hz of
      the ~2 kHz path below, held constant over the frame), so that a DC offset or drift does
      not fill the pauses (within 0.1 dB of the true level from 50 Hz up).
    - *LF*: the signal through a 2nd-order Butterworth high-pass at 20 Hz (the lower limit of
      the audio band) and a 4th-order Butterworth low-pass at 150 Hz: where a
      plosive "pop" (the air blast of /p/, /b/ hitting the capsule) puts its energy, while vowel
      energy lies above it except the fundamental of low voices (85-180 Hz for adult men,
      Baken 1987, *Clinical Measurement of Speech and Voice*). For speed the low-pass runs at
      ~2 kHz on means of ``round(rate / 2000)``-sample sub-blocks (a boxcar decimator: speech near
      2 kHz folds into the band at least 22 dB down, and speech there is itself 10-15 dB under
      its 500 Hz level).
    - *HF* (sibilance band): a 2nd-order Butterworth band-pass (12 dB/octave skirts, the slope of
      common de-esser side-chains) from 4 kHz to ``min(10 kHz, 0.45 * rate)``. 4-10 kHz is where
      de-essers listen for /s/, /z/, /sh/ (/s/ and /z/ concentrate their energy above 4 kHz, /sh/
      from about 3 kHz up: Jongman, Wayland & Wong 2000, JASA 108(3) 1252-1263). Below a 7 kHz top edge
      (sample rates under 15.56 kHz: 8 and 11.025 kHz) the band holds too little of a sibilant to
      judge, and ``sibilance`` is None; at 16 kHz it is 4-7.2 kHz.

Speech references
    Frames are *speech* where the mask, dilated on each side by at least :data:`MASK_MARGIN_S` =
    0.1 s in whole mask steps (4 steps, 0.128 s, for a 32 ms VAD: a VAD flags an onset a frame or
    two late and may cut a trailing /s/), covers the frame's centre. Frames dominated by their LF
    band (pops, bumps, rumble) or by their HF band (fricatives, hiss; "dominated" as defined
    below: the band holds half the frame's energy) are left out of the references, so that the events measured do not
    raise their own yardstick (in "she sells sea shells" the sibilants are 40% of the speech). Over the
    other speech frames within +-5 s (:data:`REFERENCE_HALF_WINDOW_S`, a few sentences, so that
    two speakers at different levels each get their own) the power means of *full* and of *LF*
    are the local *active speech level* (what ITU-T P.56 calls it, with the VAD in place of
    P.56's envelope gate, and without the fricatives) and *speech LF
    level*. A window with under 0.5 s of such frames (:data:`REFERENCE_MIN_S`) uses the same means
    over the whole file's speech (if every speech frame is dominated, over all of them).

sibilance
    A frame is sibilant when, inside speech:

    - its HF band holds at least half of its energy (HF >= full - 3 dB; :data:`SIBILANCE_SHARE_DB`):
      a fricative frame, not a bright vowel (a vowel's 4-10 kHz energy is 20-30 dB under its own
      level), nor white hiss (4-10 kHz is 25% of the band at 48 kHz, 6 dB down);
    - its HF level is within 3 dB of the local active speech level or above it (HF >= active
      level - 3 dB; :data:`SIBILANCE_RELATIVE_DB`): *excess* sibilance. In balanced speech /s/
      carries 16 dB less power than the strongest vowel and /sh/ 9 dB less (Fletcher 1953,
      *Speech and Hearing in Communication*, table of phonetic powers); the active level (without
      the fricatives) lies ~5 dB under the vowel peaks, so a natural /s/ sits ~10 dB under it,
      and espeak-ng's bright synthetic /s/ 7 dB under it. A sibilant within 3 dB of the speech
      level is 7 dB or more hotter than a natural balance: the harshness a de-esser is set to
      catch (espeak-ng's "she sells sea shells by the sea shore" gives no event as synthesised,
      0-1 through a +6 dB high-pass shelf at 4 kHz, and 6, one per voiceless sibilant, through
      +10 dB, a very bright microphone);
    - its HF level is at least -55 dBFS (:data:`SIBILANCE_MIN_DBFS`): quiet material has no
      audible sibilance problem whatever its balance.

    Sibilant frames separated by at most one other frame form a run (a sibilant's level flickers
    frame to frame); a run lasting 40 ms to 0.5 s (:data:`SIBILANCE_MIN_S`,
    :data:`SIBILANCE_MAX_S`) is one event. Shorter runs are stop bursts and clicks (the release of
    /t/ lasts 10-40 ms); /s/ lasts 60-200 ms in running speech (Klatt 1976, JASA 59(5)
    1208-1221), and an HF run over half a second is hiss, noise or music, not a phoneme. Its
    ``level_db`` is the run's peak frame HF level (dBFS RMS).
plosive
    A frame is a pop candidate when, inside speech:

    - its LF band holds at least half of its energy (LF >= full - 3 dB; :data:`PLOSIVE_SHARE_DB`):
      the thump dominates, where a voiced frame's fundamental, even a man's, holds a minority;
    - its LF level is at least 10 dB above the local speech LF level (:data:`PLOSIVE_RISE_DB`):
      well above the voice's own low end (a documented choice: the nasal onsets of a low male
      voice, /m/ in "moon", reach an LF share of -3.6 dB but stay ~5 dB within the speech LF
      level in espeak-ng's speech; a pop that calls for a pop filter stands clear of it);
    - its LF level is at least the local active speech level - 10 dB
      (:data:`PLOSIVE_RELATIVE_DB`): loud enough to be heard as a thump over the speech.

    Candidate frames separated by at most one other frame form a run; a run lasting one frame to
    150 ms (:data:`PLOSIVE_MIN_S`, :data:`PLOSIVE_MAX_S`: the blast of a pop lasts tens of ms, and
    often dominates only its first 2-3 frames before the vowel takes over; longer LF runs are wind,
    handling or rumble) is a plosive when it sits at an *onset*: within the 60 ms before its first
    frame (:data:`PLOSIVE_ONSET_S`: the stop closure or the pause before the
    word) some frame's *full* level lies at least 15 dB under the run's peak *full* level
    (:data:`PLOSIVE_ONSET_RISE_DB`), or the run starts the stream; and its peak LF level stands
    10 dB (:data:`PLOSIVE_RISE_DB`) above the mean LF level of its surroundings, the 0.3 s either
    side (:data:`PLOSIVE_CONTEXT_S`) with the run left out: a burst, not a peak of a rumble
    (two beating tones swing 15 dB from frame to frame, and their troughs pass for the onset's
    quiet frame) nor the tail of a pop that re-emerges after the vowel starts. A steady rumble
    is therefore not a plosive, however loud. Its ``level_db`` is the run's peak frame LF level.

Times are frame edges in file time (``start_s`` plus the offset from the first sample pushed), so
they are within a frame (~10 ms) of the event; the LF filter adds ~3 ms of delay. Events are
counted in full; the first 1000 of each kind (:data:`MAX_EVENTS`) are listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidParameter
from .iir import butter_sos, sosfilt
from .validate import number as _number

__all__ = [
    "MAX_EVENTS",
    "SpeechEvent",
    "SpeechEventDetector",
    "SpeechEventsResult",
]

# --- frames and bands --------------------------------------------------------------------------
SUB_BLOCK_RATE_HZ = 2000.0  # LF path rate: sub-blocks of round(rate / 2000) samples
SUB_BLOCKS_PER_FRAME = 20  # 20 sub-blocks of ~0.5 ms: a ~10 ms frame
HIGHPASS_HZ = 20.0  # lower limit of the audio band: the LF band's lower edge
HIGHPASS_ORDER = 2
INFRA_HZ = 5.0  # documented choice: the part taken out of the full band (DC offset, drift)
INFRA_ORDER = 2
LF_CUTOFF_HZ = 150.0  # documented choice: pops' energy; men's F0 85-180 Hz (Baken 1987)
LF_ORDER = 4
HF_LOW_HZ = 4000.0  # de-esser sibilance band 4-10 kHz (Jongman et al. 2000: /s/ energy > 4 kHz)
HF_HIGH_HZ = 10000.0
HF_ORDER = 2  # 12 dB/octave skirts, as common de-esser side-chains
HF_MAX_NYQUIST_FRACTION = 0.45  # the band's top stays clear of the Nyquist frequency
HF_MIN_TOP_HZ = 7000.0  # documented choice: a narrower band (rates < 15.56 kHz) is not judged
MIN_RATE_HZ = 8000
MAX_RATE_HZ = 384000
_CHUNK_SAMPLES = 1 << 19  # samples analysed per step: few filter calls, bounded temporaries

# --- speech references -------------------------------------------------------------------------
MASK_MARGIN_S = 0.1  # documented choice: ~3 VAD frames of 32 ms; late onsets, clipped /s/
REFERENCE_HALF_WINDOW_S = 5.0  # documented choice: a few sentences, local to a speaker
REFERENCE_MIN_S = 0.5  # documented choice: less speech in the window -> whole-file reference

# --- sibilance ---------------------------------------------------------------------------------
SIBILANCE_SHARE_DB = -3.0  # HF band holds >= half the frame's energy (a fricative frame)
SIBILANCE_RELATIVE_DB = -3.0  # HF >= active speech level - 3 dB (Fletcher 1953: natural /s/ ~ -10 dB)
SIBILANCE_MIN_DBFS = -55.0  # documented choice: quieter sibilants are no problem
SIBILANCE_MIN_S = 0.04  # /t/ releases last 10-40 ms; /s/ 60-200 ms (Klatt 1976)
SIBILANCE_MAX_S = 0.5  # documented choice: longer HF runs are hiss or noise, not phonemes
SIBILANCE_MAX_GAP_FRAMES = 1

# --- plosive -----------------------------------------------------------------------------------
PLOSIVE_SHARE_DB = -3.0  # LF band holds >= half the frame's energy (the thump dominates)
PLOSIVE_RISE_DB = 10.0  # LF >= speech LF level + 10 dB (well above the speech's normal LF)
PLOSIVE_RELATIVE_DB = -10.0  # LF >= active speech level - 10 dB (audible over the speech)
PLOSIVE_MIN_S = 0.01  # one frame: the 150 Hz low-pass already spreads any burst over ~10 ms
PLOSIVE_MAX_S = 0.15  # documented choice: longer LF runs are wind, handling, rumble
PLOSIVE_ONSET_S = 0.06  # closure or pause within 60 ms before the pop
PLOSIVE_ONSET_RISE_DB = 15.0  # that frame lies >= 15 dB under the pop's peak full-band level
PLOSIVE_MAX_GAP_FRAMES = 1
PLOSIVE_CONTEXT_S = 0.3  # documented choice: the surroundings a pop must stand out from

MAX_EVENTS = 1000  # listed events per kind; more are counted

_GUARD = 1e-15  # amplitude of the anti-subnormal tone (-300 dBFS; see SpeechEventDetector)
_TINY = 1e-20  # mean-square floor (-200 dBFS) for logarithms


@dataclass(frozen=True)
class SpeechEvent:
    """One plosive or sibilance event.

    Attributes
    ----------
    start_s, end_s : float
        File time of the first frame's start and the last frame's end (s).
    level_db : float
        Peak frame level of the event's band (LF for a plosive, 4-10 kHz for sibilance), dBFS RMS.
    """

    start_s: float
    end_s: float
    level_db: float

    def to_dict(self) -> dict[str, float]:
        return {
            "start_s": round(self.start_s, 6),
            "end_s": round(self.end_s, 6),
            "level_db": round(self.level_db, 2),
        }


@dataclass(frozen=True)
class SpeechEventsResult:
    """Plosive and sibilance events inside speech.

    Attributes
    ----------
    plosive : int
        Plosive events, listed or not.
    sibilance : int or None
        Sibilance events; None when the rate is too low to hold the band (under 15.56 kHz).
    plosive_events, sibilance_events : list of SpeechEvent
        The first :data:`MAX_EVENTS` of each kind, in time order.
    events_truncated : bool
        True when either list holds fewer events than its count.
    """

    plosive: int
    sibilance: int | None
    plosive_events: list[SpeechEvent]
    sibilance_events: list[SpeechEvent]
    events_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "plosive": self.plosive,
            "sibilance": self.sibilance,
            "plosive_events": [e.to_dict() for e in self.plosive_events],
            "sibilance_events": [e.to_dict() for e in self.sibilance_events],
            "events_truncated": self.events_truncated,
        }


class SpeechEventDetector:
    """Streaming plosive and sibilance detector for mono speech.

    Parameters
    ----------
    sample_rate_hz : int
        Sample rate of the stream, 8000 to 384000 Hz.

    Notes
    -----
    ``push`` 1-D float32 blocks of any length; ``result(speech_mask, mask_hop_s, start_s)`` any
    number of times. Memory: 12 bytes per ~10 ms frame plus one pending chunk of 2^19 samples.
    """

    def __init__(self, sample_rate_hz: int) -> None:
        rate = sample_rate_hz
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not (
                MIN_RATE_HZ <= rate <= MAX_RATE_HZ):
            raise InvalidParameter(
                f"sample_rate_hz={sample_rate_hz!r} must be an integer in [{MIN_RATE_HZ}, {MAX_RATE_HZ}] Hz")
        self.sample_rate_hz = int(rate)
        self._sub = max(1, round(rate / SUB_BLOCK_RATE_HZ))
        self._frame = self._sub * SUB_BLOCKS_PER_FRAME
        #: Frame length (s).
        self.frame_s = self._frame / rate
        hf_top = min(HF_HIGH_HZ, HF_MAX_NYQUIST_FRACTION * rate)
        #: The sibilance band (Hz), or None below 15.56 kHz.
        self.sibilance_band_hz: tuple[float, float] | None = (
            (HF_LOW_HZ, hf_top) if hf_top >= HF_MIN_TOP_HZ else None)
        sub_rate = rate / self._sub
        # float32 throughout: at ~2 kHz the 20 Hz poles sit at radius 0.956, far from 1
        self._sos_infra = butter_sos(INFRA_ORDER, INFRA_HZ, "lowpass", sub_rate).astype(np.float32)
        self._sos_lf = np.concatenate([
            butter_sos(HIGHPASS_ORDER, HIGHPASS_HZ, "highpass", sub_rate),
            butter_sos(LF_ORDER, LF_CUTOFF_HZ, "lowpass", sub_rate),
        ]).astype(np.float32)
        self._state = {
            "infra": np.zeros((self._sos_infra.shape[0], 2), np.float32),
            "lf": np.zeros((self._sos_lf.shape[0], 2), np.float32),
        }
        self._sos_hf: np.ndarray | None = None
        if self.sibilance_band_hz is not None:
            sos = butter_sos(HF_ORDER, self.sibilance_band_hz, "bandpass", rate)
            self._sos_hf = sos.astype(np.float32)
            self._state["hf"] = np.zeros((sos.shape[0], 2), np.float32)
        # pending samples: one chunk of whole frames, ~2^19 samples (2 MB), filled then analysed
        chunk_frames = max(1, _CHUNK_SAMPLES // self._frame)
        self._buf = np.empty(chunk_frames * self._frame, np.float32)
        self._fill = 0
        # a -300 dBFS tone at a quarter of the rate added to the filters' inputs: in digital
        # silence their state would otherwise decay into float32 subnormals and stay there in a
        # limit cycle, which made silence ~11x slower to filter (measured). Chunks start on
        # multiples of 4 samples, so the tone's phase does not depend on the block sizes.
        self._guard = np.tile(np.array([_GUARD, 0.0, -_GUARD, 0.0], np.float32), self._buf.size // 4)
        self._chunks: list[np.ndarray] = []  # (frames, 3) float32 mean squares: full, LF, HF

    # -- streaming ---------------------------------------------------------------------------
    def push(self, x: np.ndarray) -> None:
        """Analyse the next block of samples: 1-D, float32 (other dtypes are converted)."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise InvalidParameter(f"block shape {x.shape} must be 1-D (mono samples)")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        size = self._buf.size
        pos = 0
        if self._fill:  # top up the pending chunk
            pos = min(size - self._fill, x.size)
            self._buf[self._fill:self._fill + pos] = x[:pos]
            self._fill += pos
            if self._fill < size:
                return
            self._chunks.append(self._process(self._buf, self._state))
            self._fill = 0
        while x.size - pos >= size:  # whole chunks straight from the block
            self._chunks.append(self._process(x[pos:pos + size], self._state))
            pos += size
        rest = x.size - pos
        self._buf[:rest] = x[pos:]
        self._fill = rest

    def _process(self, y: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
        """Features (frames, 3) of ``y``, a whole number of frames; advances the filter ``state``."""
        frames = y.size // self._frame
        sub = SUB_BLOCKS_PER_FRAME
        feats = np.empty((frames, 3), np.float32)
        # ~2 kHz path: sub-block sums -> their sub-20 Hz part (for the full band) and the LF band
        sums = np.einsum("ij->i", y.reshape(-1, self._sub))  # no BLAS threads (one-core budget)
        d = sums * np.float32(1.0 / self._sub) + self._guard[:sums.size]
        infra = sosfilt(self._sos_infra, d, state["infra"])
        lf = sosfilt(self._sos_lf, d, state["lf"])
        lr = lf.reshape(frames, sub)
        feats[:, 1] = np.einsum("ij,ij->i", lr, lr) * np.float32(1.0 / sub)
        # full band: sum of (x - c)^2 with c the sub-20 Hz part held over the frame, expanded as
        # sum x^2 - 2 c sum x + n c^2 (float64; the float32 sum of squares limits it ~70 dB under
        # a DC offset, far below any level compared here)
        yr = y.reshape(frames, self._frame)
        sq = np.einsum("ij,ij->i", yr, yr).astype(np.float64)
        c = infra.reshape(frames, sub).mean(axis=1, dtype=np.float64)
        total = sums.reshape(frames, sub).sum(axis=1, dtype=np.float64)
        feats[:, 0] = np.maximum(sq - 2.0 * c * total + self._frame * c * c, 0.0) / self._frame
        if self._sos_hf is not None:
            b = sosfilt(self._sos_hf, y + self._guard[:y.size], state["hf"])
            br = b.reshape(frames, self._frame)
            feats[:, 2] = np.einsum("ij,ij->i", br, br) * np.float32(1.0 / self._frame)
        else:
            feats[:, 2] = 0.0
        return feats

    def _features(self) -> np.ndarray:
        """(frames, 3) float32 mean squares (full, LF, HF) of every whole frame pushed so far."""
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        done = self._chunks[0] if self._chunks else np.zeros((0, 3), np.float32)
        whole = self._fill - self._fill % self._frame
        if not whole:
            return done
        # the pending whole frames, on a copy of the filter state (push continues where it was)
        state = {k: v.copy() for k, v in self._state.items()}
        return np.concatenate([done, self._process(self._buf[:whole], state)])

    # -- result ------------------------------------------------------------------------------
    def result(self, speech_mask: np.ndarray, mask_hop_s: float, start_s: float = 0.0) -> SpeechEventsResult:
        """Events inside speech.

        Parameters
        ----------
        speech_mask : numpy.ndarray of bool
            One value per ``mask_hop_s`` seconds, True where there is speech; element ``i`` covers
            ``[i * mask_hop_s, (i + 1) * mask_hop_s)`` after the first sample pushed. Time past
            its end is not speech.
        mask_hop_s : float
            Mask step (s), e.g. 0.032.
        start_s : float
            File time of the first sample pushed (s); reported times are file times.
        """
        mask = np.asarray(speech_mask)
        if mask.ndim != 1:
            raise InvalidParameter(f"speech_mask shape {mask.shape} must be 1-D")
        mask = mask.astype(bool)
        hop = _number("mask_hop_s", mask_hop_s, 0.0, 3600.0, lo_open=True)
        start = _number("start_s", start_s)
        feats = self._features()
        nf = feats.shape[0]
        sib_none = self.sibilance_band_hz is None
        empty = SpeechEventsResult(0, None if sib_none else 0, [], [])
        if nf == 0 or not mask.any():
            return empty
        fs = self.frame_s
        speech = self._speech_frames(mask, hop, nf)
        if not speech.any():
            return empty
        full = feats[:, 0].astype(np.float64)
        lf = feats[:, 1].astype(np.float64)
        hf = feats[:, 2].astype(np.float64)
        lf_dominated = lf >= full * _ratio(PLOSIVE_SHARE_DB)
        hf_dominated = hf >= full * _ratio(SIBILANCE_SHARE_DB)
        ref_frames = speech & ~lf_dominated & ~hf_dominated
        if not ref_frames.any():
            ref_frames = speech
        active = self._local_mean(full, ref_frames)
        speech_lf = self._local_mean(lf, ref_frames)

        # sibilance
        sib_events: list[SpeechEvent] = []
        n_sib: int | None = None
        if not sib_none:
            cand = (speech & hf_dominated
                    & (hf >= active * _ratio(SIBILANCE_RELATIVE_DB))
                    & (hf >= _ratio(SIBILANCE_MIN_DBFS)))
            starts, ends = _runs(cand, SIBILANCE_MAX_GAP_FRAMES)
            length = ends - starts
            ok = (length >= _frames_for(SIBILANCE_MIN_S, fs)) & (length <= _frames_for(SIBILANCE_MAX_S, fs))
            starts, ends = starts[ok], ends[ok]
            n_sib = int(starts.size)
            sib_events = self._events(starts[:MAX_EVENTS], ends[:MAX_EVENTS], hf, start)

        # plosive
        cand = (speech & lf_dominated & (lf >= speech_lf * _ratio(PLOSIVE_RISE_DB))
                & (lf >= active * _ratio(PLOSIVE_RELATIVE_DB)))
        starts, ends = _runs(cand, PLOSIVE_MAX_GAP_FRAMES)
        length = ends - starts
        ok = (length >= _frames_for(PLOSIVE_MIN_S, fs)) & (length <= _frames_for(PLOSIVE_MAX_S, fs))
        starts, ends = starts[ok], ends[ok]
        # onset: some frame in the PLOSIVE_ONSET_S before the run is PLOSIVE_ONSET_RISE_DB under its peak
        back = _frames_for(PLOSIVE_ONSET_S, fs)
        before = _min_before(full, starts, back)
        onset = (starts == 0) | (before <= _run_max(full, starts, ends) * _ratio(-PLOSIVE_ONSET_RISE_DB))
        starts, ends = starts[onset], ends[onset]
        # ... and stands PLOSIVE_RISE_DB above its own surroundings (+-PLOSIVE_CONTEXT_S, the run
        # left out): a steady or beating rumble does not, however its frames fluctuate
        around = _context_mean(lf, starts, ends, _frames_for(PLOSIVE_CONTEXT_S, fs))
        burst = _run_max(lf, starts, ends) >= around * _ratio(PLOSIVE_RISE_DB)
        starts, ends = starts[burst], ends[burst]
        n_plo = int(starts.size)
        plo_events = self._events(starts[:MAX_EVENTS], ends[:MAX_EVENTS], lf, start)
        truncated = n_plo > len(plo_events) or (n_sib or 0) > len(sib_events)
        return SpeechEventsResult(n_plo, n_sib, plo_events, sib_events, truncated)

    def _speech_frames(self, mask: np.ndarray, hop: float, nf: int) -> np.ndarray:
        """Frames whose centre lies in the mask dilated by MASK_MARGIN_S."""
        margin = int(math.ceil(MASK_MARGIN_S / hop - 1e-9))
        m = mask
        if margin:  # dilate: True within `margin` mask steps of a True
            c = np.concatenate([[0], np.cumsum(m, dtype=np.int64)])
            idx = np.arange(m.size)
            lo_i = np.clip(idx - margin, 0, m.size)
            hi_i = np.clip(idx + margin + 1, 0, m.size)
            m = (c[hi_i] - c[lo_i]) > 0
        centre = (np.arange(nf) + 0.5) * self.frame_s
        k = np.floor(centre / hop).astype(np.int64)
        out = np.zeros(nf, bool)
        ok = k < m.size
        out[ok] = m[k[ok]]
        return out

    def _local_mean(self, level: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Power mean of ``level`` over ``frames`` within +-REFERENCE_HALF_WINDOW_S of each frame."""
        w = max(1, int(round(REFERENCE_HALF_WINDOW_S / self.frame_s)))
        need = max(1, int(round(REFERENCE_MIN_S / self.frame_s)))
        nf = level.size
        c_sum = np.concatenate([[0.0], np.cumsum(np.where(frames, level, 0.0))])
        c_cnt = np.concatenate([[0], np.cumsum(frames, dtype=np.int64)])
        idx = np.arange(nf)
        lo_i = np.clip(idx - w, 0, nf)
        hi_i = np.clip(idx + w + 1, 0, nf)
        cnt = c_cnt[hi_i] - c_cnt[lo_i]
        total = c_sum[hi_i] - c_sum[lo_i]
        overall = c_sum[-1] / max(1, c_cnt[-1])
        local = np.where(cnt >= need, total / np.maximum(cnt, 1), overall)
        return np.maximum(local, _TINY)

    def _events(self, starts: np.ndarray, ends: np.ndarray, band: np.ndarray, start: float) -> list[SpeechEvent]:
        peaks = _run_max(band, starts, ends)
        return [SpeechEvent(start + int(s) * self.frame_s, start + int(e) * self.frame_s,
                            10.0 * math.log10(max(float(p), _TINY)))
                for s, e, p in zip(starts, ends, peaks, strict=True)]


def _ratio(db: float) -> float:
    return 10.0 ** (db / 10.0)


def _frames_for(seconds: float, frame_s: float) -> int:
    """Whole frames nearest ``seconds``."""
    return max(1, int(round(seconds / frame_s)))


def _runs(flags: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts and ends (``[start, end)`` frames) of runs of True, bridging gaps of up to ``max_gap``
    False frames."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    if starts.size > 1:
        keep = (starts[1:] - ends[:-1]) > max_gap
        starts = np.concatenate([starts[:1], starts[1:][keep]])
        ends = np.concatenate([ends[:-1][keep], ends[-1:]])
    return starts, ends


def _context_mean(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, frames: int) -> np.ndarray:
    """Mean of ``values`` over ``frames`` either side of every run, the run itself left out."""
    c = np.concatenate([[0.0], np.cumsum(values)])
    lo = np.maximum(starts - frames, 0)
    hi = np.minimum(ends + frames, values.size)
    count = (hi - lo) - (ends - starts)
    total = (c[hi] - c[lo]) - (c[ends] - c[starts])
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _min_before(values: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
    """Minimum of ``values[s - frames:s]`` for every start (+inf where nothing precedes)."""
    padded = np.concatenate([np.full(frames, np.inf), values])
    return np.lib.stride_tricks.sliding_window_view(padded, frames)[starts].min(axis=1)


def _run_max(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Maximum of ``values[s:e]`` for every run (all runs non-empty)."""
    if starts.size == 0:
        return np.zeros(0, values.dtype)
    padded = np.append(values, values.dtype.type(0))
    idx = np.empty(2 * starts.size, np.int64)
    idx[0::2] = starts
    idx[1::2] = ends
    return np.maximum.reduceat(padded, idx)[0::2]
