"""Technical checks broadcast QC reports: DC offset, phase, effective bandwidth, dropouts (streaming).

Four analyzers with ``push(block)`` / ``result()``, fed the same float32 ``(channels, frames)``
blocks as every other analyzer (one decode pass). Each is built as
``Analyzer(sample_rate, channel_names, *, start_s=0.0, **options)``: the rate in Hz, FFmpeg channel
names (``FL``, ``LFE``, ...), and the file time of the first sample pushed; bad options raise
:class:`~audiolib.errors.InvalidParameter` quoting the value. Each keeps running sums or capped event lists
only, so memory is flat whatever the duration; times are seconds of file time (``start_s`` is the
time of the first sample pushed). Results are frozen dataclasses whose ``to_dict()`` is the
``diagnose`` block (``None`` where nothing can be measured, never NaN).

Definitions
-----------
dc_offset (:class:`DcOffsetAnalyzer`)
    Per channel, the mean of all samples (what FFmpeg's ``astats`` prints as "DC offset"), linear
    and as ``20 log10 |mean|`` dBFS. Sums are pairwise float32 over 4096-sample chunks (relative
    error ~1e-7) accumulated in float64 with Neumaier compensation, so the error does not grow
    with the duration. A channel is *flagged* at or above -60 dBFS (|mean| >= 0.001, 33 LSB at
    16 bits; ``threshold_dbfs``), a documented choice: far above the residue of dithered
    conversion and of lossy codecs (below -90 dBFS), and the size of step an edit or a fade-in on
    the offset makes, which clicks audibly in quiet passages.
phase (:class:`PhaseAnalyzer`)
    For every symmetric pair present (``FL/FR``, ``SL/SR``, ``BL/BR``, ``FLC/FRC``, wide and top
    pairs; two channels of any other names form one pair; mono has none):

    - ``correlation``: Pearson correlation of the two channels over the whole programme (the
      phase-meter reading, -1..+1; centred, so a DC offset does not bias it).
    - per-window correlation on consecutive 400 ms windows (the BS.1770 momentary block length:
      at least 8 cycles at 20 Hz for a stable estimate, fine enough to place a section). Windows
      where either channel is below -70 dBFS RMS (BS.1770's absolute gate, used as the floor of
      programme) are silent and skipped. A window is *out of phase* when its correlation is below
      -0.3: with equal levels a mono downmix then loses >= 4.6 dB, 1.5 dB more than two
      uncorrelated channels (a documented choice; ``threshold``).
    - ``out_of_phase_percent``: out-of-phase windows as a share of the active (non-silent) ones.
    - ``sections``: runs of out-of-phase windows lasting at least 1 s (``min_section_s``; a single
      negative window on a transient or reverb tail is normal), reported on the window grid (so
      within one window of the true edges); silent windows inside a run do not break it unless
      they last more than 2 s.
    - ``mono_downmix_loss_db``: ``10 log10((P_L + P_R) / 2 / P_M)`` with ``M = (L + R) / 2`` and
      ``P`` the mean power over the programme: 0 dB for L = R, 3.0 dB for uncorrelated channels,
      large for L ~ -R (complete cancellation is reported as 120 dB, the cap).
    - a pair is *flagged* when its correlation is below the threshold or it has a section.
bandwidth (:class:`BandwidthAnalyzer`)
    The long-term average spectrum (LTAS): Hann-windowed 4096-point power spectra of one frame a
    second (a deterministic subset: frames start every ``round(0.25 * rate)`` samples over the
    first minute, weighted 1/4 so that short files get enough of them, then every
    ``round(rate)``; 8.5% of the samples at 48 kHz, so an hour costs a fraction of a second),
    summed over every channel but the LFE, in 256 equal bands from 0 to Nyquist (93.75 Hz at
    48 kHz). Bands more than 60 dB under the median band, or 120 dB under the loudest, are set to
    that floor: they hold no programme (float32 rounding lies ~140 dB down, and a digital IIR
    low-pass heading for its zero at Nyquist must not look like a band limit).

    A *cliff* is what a low-pass, a codec or an upsampler leaves and merely dark content does
    not: at band ``k``, the median level of the eighth-octave ending at ``k`` stands >= 30 dB
    above the 90th percentile of everything from an eighth-octave above ``k`` to Nyquist (the
    percentile ignores a lone tone above the cut). The effective bandwidth is the upper edge of
    the highest band, at or below the highest cliff, within 10 dB of the passband level (the
    highest eighth-octave median within half an octave below the cliff, since FFmpeg's default
    resampler takes a third of an octave to fall): the -10 dB point of the cut. With no cliff it
    is Nyquist (full band; a cliff in the top eighth-octave is the converter's own anti-alias
    filter, and is not looked for).

    ``upsampled_suspect`` is True when the bandwidth lies between 0.80 and 1.02 times the Nyquist
    frequency of a common lower rate (8, 11.025, 16, 22.05, 24, 32, 44.1, 48 kHz) no higher than
    3/4 of the stream's rate (44.1 kHz material in a 48 kHz file cannot be told from a 48 kHz
    converter's own filter); resamplers put their cutoff at 0.90-0.99 of the lower Nyquist. A
    codec's low-pass can fall in such a window too (LAME at 96 kb/s cuts at 15.1 kHz, inside the
    32 kHz window): the flag says "suspect", not "proven".
dropouts (:class:`DropoutAnalyzer`)
    A dropout is a run of samples exactly 0.0 in one channel lasting 1 to 100 ms
    (``min_duration_s``, ``max_duration_s``; longer gaps are silences, the ``silence`` block's
    business) with programme on both sides: RMS of that channel >= -60 dBFS over the 50 ms before
    and the 50 ms after (``context_s``, ``context_level_dbfs``). Detection is per channel, since
    a lost AES pair or a single-channel fault zeroes some channels and not others; runs of
    different channels that overlap in time are one event listing its channels (a whole-frame
    loss lists them all). Digital silence at the start or end is never a dropout: it lacks
    50 ms of programme on one side, as does a run within 50 ms of either end of the stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft

from .channels import non_lfe_indices
from .errors import InvalidParameter
from .runs import ChannelSection

__all__ = [
    "BandwidthAnalyzer",
    "BandwidthResult",
    "DcOffsetAnalyzer",
    "DcOffsetResult",
    "DropoutAnalyzer",
    "DropoutEvent",
    "DropoutResult",
    "PairPhase",
    "PhaseAnalyzer",
    "PhaseResult",
    "PhaseSection",
    "phase_pairs",
]

# --- dc_offset ---------------------------------------------------------------------------------
DC_FLAG_DBFS = -60.0  # documented choice (module docstring): 0.1% of full scale, 33 LSB at 16 bits
_SUM_CHUNK = 4096  # pairwise float32 sums of this many samples, then float64 (relative error ~1e-7)

# --- phase -------------------------------------------------------------------------------------
PHASE_WINDOW_S = 0.4  # BS.1770-4 momentary block length (400 ms)
PHASE_THRESHOLD = -0.3  # documented choice: mono downmix loss >= 4.6 dB at equal levels
PHASE_MIN_SECTION_S = 1.0  # documented choice: shorter negative stretches are normal programme
PHASE_MAX_GAP_S = 2.0  # documented choice: a longer silence ends a section (a new one may follow)
PHASE_SILENCE_DBFS = -70.0  # BS.1770-4 absolute gate level, used as the floor of programme
MAX_DOWNMIX_LOSS_DB = 120.0  # cap for complete cancellation (L = -R exactly)
#: Symmetric loudspeaker pairs, FFmpeg channel names, in report order.
PHASE_PAIRS: tuple[tuple[str, str], ...] = (
    ("FL", "FR"), ("SL", "SR"), ("BL", "BR"), ("FLC", "FRC"), ("WL", "WR"),
    ("SDL", "SDR"), ("TFL", "TFR"), ("TSL", "TSR"), ("TBL", "TBR"),
)

# --- bandwidth ---------------------------------------------------------------------------------
BW_FFT_SIZE = 4096  # 85 ms at 48 kHz; 2048 bins -> 256 bands of 8 bins
BW_BANDS = 256
BW_HOP_S = 1.0  # one analysed frame a second (documented subset, deterministic)
BW_DENSE_HOP_S = 0.25  # ... but four a second over the first minute, so short files get enough
BW_DENSE_S = 60.0
BW_CLIFF_DB = 30.0  # documented choice: natural spectra never fall 30 dB within an eighth-octave
BW_GUARD_OCTAVES = 1.0 / 8.0  # width of the "below" window and gap to the "above" region
BW_EDGE_DB = 10.0  # documented choice: the edge is the -10 dB point of the cut
BW_REF_OCTAVES = 0.5  # the passband level is looked for within half an octave below the cliff
BW_ABOVE_PERCENTILE = 90.0  # robust "above" level: ignores a lone tone above the cut
BW_DYNAMIC_RANGE_DB = 120.0  # floor under the loudest band (float32 FFT rounding is ~140 dB down)
BW_EMPTY_DB = 60.0  # documented choice: bands this far under the median band hold no programme
#: Common sample rates an upsampled file may come from (Hz).
COMMON_RATES_HZ = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
UPSAMPLED_WINDOW = (0.80, 1.02)  # resampler cutoffs: 0.90-0.99 of the source Nyquist, with margin
UPSAMPLED_MAX_RATIO = 0.75  # source rates above 3/4 of the stream rate look like its own filter

# --- dropouts ----------------------------------------------------------------------------------
DROPOUT_MIN_S = 0.001  # documented choice: shorter exact-zero runs occur at zero crossings
DROPOUT_MAX_S = 0.100  # documented choice: longer gaps are silences (the silence block)
DROPOUT_CONTEXT_S = 0.050  # programme must surround the gap for this long on both sides
DROPOUT_CONTEXT_DBFS = -60.0  # RMS of that context; the silence block's default threshold
MAX_EVENTS = 1000  # stored events/sections per result; more are counted (flat memory)


# ------------------------------------------------------------------------------------------------
# shared helpers


def _stream_args(sample_rate: Any, channel_names: Any, start_s: Any) -> tuple[int, tuple[str, ...], float]:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
        raise InvalidParameter(f"sample_rate={sample_rate!r} must be a positive integer (Hz)")
    if isinstance(channel_names, str):
        raise InvalidParameter(f"channel_names={channel_names!r} must be a sequence of names, not a string")
    names = tuple(str(n) for n in channel_names)
    if not names:
        raise InvalidParameter(f"channel_names={channel_names!r} must name at least one channel")
    start = _number("start_s", start_s)
    return int(sample_rate), names, start


def _number(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *,
            lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), else InvalidParameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidParameter(f"{name}={value!r} must be a number")
    v = float(value)
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise InvalidParameter(f"{name}={value!r} must be a finite number in {bracket}{lo:g}, {hi:g}]")
    return v


def _count(name: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise InvalidParameter(f"{name}={value!r} must be an integer >= {lo}")
    return int(value)


def _block(block: np.ndarray, channels: int) -> np.ndarray:
    """Check a pushed block and return it as float32 ``(channels, frames)``."""
    x = np.asarray(block)
    if x.ndim == 1 and channels == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2 or x.shape[0] != channels:
        raise InvalidParameter(f"block shape {x.shape} does not match {channels} channels (channels-first)")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return x


def _chunk_sums(x: np.ndarray) -> np.ndarray:
    """Row sums of float32 ``x`` (rows, n) as float64: numpy's pairwise float32 sums of
    4096-sample chunks (relative error ~1e-7), accumulated in float64. Casting every sample to
    float64 costs 60% more and gains nothing a dBFS figure can show."""
    rows, n = x.shape
    whole = n - n % _SUM_CHUNK
    total = np.zeros(rows, np.float64)
    if whole:
        total += x[:, :whole].reshape(rows, -1, _SUM_CHUNK).sum(axis=2).sum(axis=1, dtype=np.float64)
    if whole < n:
        total += x[:, whole:].sum(axis=1, dtype=np.float64)
    return total


def _db20(value: float) -> float | None:
    return 20.0 * math.log10(abs(value)) if value != 0 and math.isfinite(value) else None


def _round(value: float | None, ndigits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), ndigits)


def _interval(start_s: float, end_s: float) -> dict[str, float]:
    return {"start": round(start_s, 6), "end": round(end_s, 6)}


# ------------------------------------------------------------------------------------------------
# dc_offset


@dataclass(frozen=True)
class DcOffsetResult:
    """DC offset of every channel.

    Attributes
    ----------
    channel_names : tuple of str
    dc_offset : tuple of float or None
        Mean sample value per channel, linear full scale; None with no samples.
    dc_offset_dbfs : tuple of float or None
        ``20 log10 |mean|``; None for a mean of exactly 0 (digital silence) or no samples.
    threshold_dbfs : float
        Channels at or above this are flagged.
    duration_s : float
    """

    channel_names: tuple[str, ...]
    dc_offset: tuple[float | None, ...]
    dc_offset_dbfs: tuple[float | None, ...]
    threshold_dbfs: float
    duration_s: float

    @property
    def max_abs_dc_offset_dbfs(self) -> float | None:
        levels = [v for v in self.dc_offset_dbfs if v is not None]
        return max(levels) if levels else None

    @property
    def flagged(self) -> tuple[str, ...]:
        return tuple(n for n, v in zip(self.channel_names, self.dc_offset_dbfs)
                     if v is not None and v >= self.threshold_dbfs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": {n: {"dc_offset": _round(v, 9), "dc_offset_dbfs": _round(d, 2)}
                         for n, v, d in zip(self.channel_names, self.dc_offset, self.dc_offset_dbfs)},
            "max_abs_dc_offset_dbfs": _round(self.max_abs_dc_offset_dbfs, 2),
            "flagged": list(self.flagged),
            "threshold_dbfs": self.threshold_dbfs,
        }


class DcOffsetAnalyzer:
    """Streaming per-channel DC offset (mean), float64 with compensated accumulation.

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the module docstring.

    Parameters
    ----------
    threshold_dbfs : float
        Flag channels whose |mean| is at or above this (default -60 dBFS), in [-200, 0].
    """

    def __init__(self, sample_rate: int, channel_names: Sequence[str], *, start_s: float = 0.0,
                 threshold_dbfs: float = DC_FLAG_DBFS) -> None:
        self.sample_rate, self.channel_names, self.start_s = _stream_args(sample_rate, channel_names, start_s)
        self.threshold_dbfs = _number("threshold_dbfs", threshold_dbfs, -200.0, 0.0)
        c = len(self.channel_names)
        self._sum = np.zeros(c, np.float64)
        self._comp = np.zeros(c, np.float64)  # Neumaier compensation term
        self._frames = 0

    def push(self, block: np.ndarray) -> None:
        """Add a float32 ``(channels, frames)`` block."""
        x = _block(block, len(self.channel_names))
        if x.shape[1] == 0:
            return
        s = _chunk_sums(x)
        t = self._sum + s
        big = np.abs(self._sum) >= np.abs(s)
        self._comp += np.where(big, (self._sum - t) + s, (s - t) + self._sum)
        self._sum = t
        self._frames += x.shape[1]

    def result(self) -> DcOffsetResult:
        """The mean of every channel so far."""
        if self._frames:
            means = (self._sum + self._comp) / self._frames
            dc: tuple[float | None, ...] = tuple(float(m) for m in means)
            dbfs = tuple(_db20(float(m)) for m in means)
        else:
            dc = dbfs = (None,) * len(self.channel_names)
        duration = self._frames / self.sample_rate
        return DcOffsetResult(self.channel_names, dc, dbfs, self.threshold_dbfs, duration)


# ------------------------------------------------------------------------------------------------
# phase


def phase_pairs(channel_names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Index pairs of the symmetric channel pairs present (see :data:`PHASE_PAIRS`).

    Two channels with no known pair between them (``NONE``, ``ch0``/``ch1``) form one pair; one
    channel forms none.
    """
    keys = [str(n).upper() for n in channel_names]
    pairs = tuple((keys.index(a), keys.index(b)) for a, b in PHASE_PAIRS if a in keys and b in keys)
    if not pairs and len(keys) == 2:
        pairs = ((0, 1),)
    return pairs


@dataclass(frozen=True)
class PhaseSection:
    """A stretch where a pair is out of phase, seconds of file time."""

    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, float]:
        return _interval(self.start_s, self.end_s)


@dataclass(frozen=True)
class PairPhase:
    """Phase of one channel pair.

    Attributes
    ----------
    pair : str
        ``"FL/FR"``.
    correlation : float or None
        Pearson correlation over the whole programme, -1..1; None if either channel is constant.
    out_of_phase_percent : float or None
        Share of the active windows whose correlation is below the threshold; None if no window
        is active.
    mono_downmix_loss_db : float or None
        Mean power of the two channels over that of ``(L + R) / 2``, dB (capped at 120 dB);
        None for silence.
    sections : tuple of PhaseSection
        Out-of-phase runs of at least ``min_section_s``.
    num_sections : int
        Sections found (all of them; ``sections`` keeps the first 1000).
    active_windows : int
        Windows analysed (neither channel below the silence floor).
    """

    pair: str
    correlation: float | None
    out_of_phase_percent: float | None
    mono_downmix_loss_db: float | None
    sections: tuple[PhaseSection, ...]
    num_sections: int
    active_windows: int
    threshold: float
    sections_truncated: bool = False

    @property
    def out_of_phase(self) -> bool:
        below = self.correlation is not None and self.correlation < self.threshold
        return below or self.num_sections > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "correlation": _round(self.correlation, 4),
            "out_of_phase_percent": _round(self.out_of_phase_percent, 2),
            "mono_downmix_loss_db": _round(self.mono_downmix_loss_db, 2),
            "out_of_phase": self.out_of_phase,
            "num_sections": self.num_sections,
            "sections": [s.to_dict() for s in self.sections],
            "sections_truncated": self.sections_truncated,
            "active_windows": self.active_windows,
        }


@dataclass(frozen=True)
class PhaseResult:
    """Phase of every channel pair; the front pair (``FL/FR``, else the first) is also on top."""

    pairs: tuple[PairPhase, ...]
    window_s: float
    threshold: float
    min_section_s: float

    @property
    def front(self) -> PairPhase | None:
        return self.pairs[0] if self.pairs else None

    @property
    def flagged(self) -> tuple[str, ...]:
        return tuple(p.pair for p in self.pairs if p.out_of_phase)

    def to_dict(self) -> dict[str, Any]:
        front = self.front
        return {
            "pair": None if front is None else front.pair,
            "correlation": None if front is None else _round(front.correlation, 4),
            "out_of_phase_percent": None if front is None else _round(front.out_of_phase_percent, 2),
            "mono_downmix_loss_db": None if front is None else _round(front.mono_downmix_loss_db, 2),
            "pairs": {p.pair: p.to_dict() for p in self.pairs},
            "flagged": list(self.flagged),
            "window_s": self.window_s,
            "threshold": self.threshold,
            "min_section_s": self.min_section_s,
        }


class _PairState:
    """Running sums and window state of one pair."""

    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b
        self.sums = np.zeros(5, np.float64)  # Sx, Sy, Sxx, Syy, Sxy over every complete window
        self.part = np.zeros(5, np.float64)  # the same over the window in progress
        self.part_n = 0
        self.window = 0  # global index of the next window
        self.active = 0
        self.out = 0
        self.open_start: int | None = None  # first window of the open out-of-phase run
        self.last_out = -1  # last out-of-phase window seen
        self.sections: list[tuple[int, int]] = []  # (first window, last window)
        self.num_sections = 0


def _pair_sums(l: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Sx, Sy, Sxx, Syy, Sxy of two float32 rows (float32 BLAS, returned as float64)."""
    return np.array([l.sum(), r.sum(), l @ l, r @ r, l @ r], np.float64)


class PhaseAnalyzer:
    """Streaming inter-channel phase: correlation, out-of-phase windows and sections, downmix loss.

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the module docstring.

    Parameters
    ----------
    window_s : float
        Correlation window, seconds (default 0.4), in [0.01, 10].
    threshold : float
        A window below this correlation is out of phase (default -0.3), in [-1, 1).
    min_section_s : float
        Shortest out-of-phase section listed (default 1.0 s), >= 0.
    silence_dbfs : float
        Windows where either channel's RMS is below this are skipped (default -70 dBFS).
    """

    def __init__(self, sample_rate: int, channel_names: Sequence[str], *, start_s: float = 0.0,
                 window_s: float = PHASE_WINDOW_S, threshold: float = PHASE_THRESHOLD,
                 min_section_s: float = PHASE_MIN_SECTION_S,
                 silence_dbfs: float = PHASE_SILENCE_DBFS) -> None:
        self.sample_rate, self.channel_names, self.start_s = _stream_args(sample_rate, channel_names, start_s)
        self.window_s = _number("window_s", window_s, 0.01, 10.0)
        self.threshold = _number("threshold", threshold, -1.0, 1.0)
        if self.threshold >= 1.0:
            raise InvalidParameter(f"threshold={threshold!r} must be below 1")
        self.min_section_s = _number("min_section_s", min_section_s, 0.0, 86400.0)
        self.silence_dbfs = _number("silence_dbfs", silence_dbfs, -200.0, 0.0)
        self._w = max(2, int(round(self.window_s * self.sample_rate)))
        self._silence_power = 10.0 ** (self.silence_dbfs / 10.0)
        self._ones = np.ones(self._w, np.float32)
        self._max_gap = int(PHASE_MAX_GAP_S * self.sample_rate) // self._w  # windows
        self._pairs = [_PairState(a, b) for a, b in phase_pairs(self.channel_names)]

    def push(self, block: np.ndarray) -> None:
        """Add a float32 ``(channels, frames)`` block."""
        x = _block(block, len(self.channel_names))
        n, w = x.shape[1], self._w
        for st in self._pairs:
            l, r = x[st.a], x[st.b]  # row views: no copy
            i = min(w - st.part_n, n) if st.part_n else 0  # completes the window left open
            nw = (n - i) // w
            done = int(bool(i) and st.part_n + i == w)
            sums = np.empty((done + nw, 5), np.float64)
            if i:
                st.part += _pair_sums(l[:i], r[:i])
                st.part_n += i
                if done:
                    sums[0] = st.part
                    st.part = np.zeros(5, np.float64)
                    st.part_n = 0
            if nw:
                lw = l[i:i + nw * w].reshape(nw, w)
                rw = r[i:i + nw * w].reshape(nw, w)
                # Window sums in float32 by BLAS (relative error ~1e-6), then float64.
                sums[done:, 0] = lw @ self._ones
                sums[done:, 1] = rw @ self._ones
                sums[done:, 2] = np.matmul(lw[:, None, :], lw[:, :, None]).ravel()
                sums[done:, 3] = np.matmul(rw[:, None, :], rw[:, :, None]).ravel()
                sums[done:, 4] = np.matmul(lw[:, None, :], rw[:, :, None]).ravel()
                i += nw * w
            if len(sums):
                self._windows(st, sums)
            if i < n:
                st.part = _pair_sums(l[i:], r[i:])
                st.part_n = n - i

    def _windows(self, st: _PairState, sums: np.ndarray) -> None:
        """Classify complete windows from their ``(k, 5)`` sums."""
        w = self._w
        sx, sy, sxx, syy, sxy = sums.T
        st.sums += sums.sum(axis=0)
        vx = sxx - sx * sx / w
        vy = syy - sy * sy / w
        # Active: both channels above the floor, and each has an AC part (not a bare DC level).
        floor = self._silence_power * w
        active = (sxx >= floor) & (syy >= floor) & (vx > 1e-6 * sxx) & (vy > 1e-6 * syy)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = (sxy - sx * sy / w) / np.sqrt(vx * vy)
        out = active & (corr < self.threshold)
        n_out = int(np.count_nonzero(out))
        if n_out or st.open_start is not None:
            self._track_sections(st, np.flatnonzero(active) + st.window, out[active])
        st.active += int(np.count_nonzero(active))
        st.out += n_out
        st.window += sums.shape[0]

    def _track_sections(self, st: _PairState, idx: np.ndarray, out: np.ndarray) -> None:
        """Runs of out-of-phase windows among the active ones ``idx`` (global window indices).

        Silent windows inside a run do not break it, unless they last longer than
        :data:`PHASE_MAX_GAP_S`.
        """
        if idx.size == 0:
            return
        was_out = np.concatenate(([st.open_start is not None], out[:-1]))
        prev_idx = np.concatenate(([st.last_out], idx[:-1]))  # previous active window (out if was_out)
        gap = idx - prev_idx > 1 + self._max_gap
        closes = was_out & (~out | gap)
        opens = out & (~was_out | gap)
        for k in np.flatnonzero(closes | opens).tolist():
            if closes[k]:
                self._close(st, int(prev_idx[k]))
            if opens[k]:
                st.open_start = int(idx[k])
        if out.any():
            st.last_out = int(idx[out][-1])

    def _close(self, st: _PairState, last: int) -> None:
        first, st.open_start = st.open_start, None
        if first is None or (last - first + 1) * self._w < self.min_section_s * self.sample_rate - 0.5:
            return
        st.num_sections += 1
        if len(st.sections) < MAX_EVENTS:
            st.sections.append((first, last))

    def result(self) -> PhaseResult:
        """Finish (the last partial window counts in the overall sums only) and report."""
        pairs = []
        sr, w = self.sample_rate, self._w
        for st in self._pairs:
            if st.open_start is not None:
                self._close(st, st.last_out)
            sums = st.sums + st.part
            n = st.window * w + st.part_n
            pairs.append(PairPhase(
                pair=f"{self.channel_names[st.a]}/{self.channel_names[st.b]}",
                correlation=_pearson(sums, n),
                out_of_phase_percent=100.0 * st.out / st.active if st.active else None,
                mono_downmix_loss_db=_downmix_loss_db(sums),
                sections=tuple(PhaseSection(self.start_s + a * w / sr, self.start_s + (b + 1) * w / sr)
                               for a, b in st.sections),
                num_sections=st.num_sections,
                active_windows=st.active,
                threshold=self.threshold,
                sections_truncated=st.num_sections > len(st.sections),
            ))
        return PhaseResult(tuple(pairs), self.window_s, self.threshold, self.min_section_s)


def _pearson(sums: np.ndarray, n: int) -> float | None:
    if n < 2:
        return None
    sx, sy, sxx, syy, sxy = (float(v) for v in sums)
    vx = sxx - sx * sx / n
    vy = syy - sy * sy / n
    if vx <= 1e-12 * max(sxx, 1e-300) or vy <= 1e-12 * max(syy, 1e-300):
        return None  # a constant channel: correlation undefined
    return max(-1.0, min(1.0, (sxy - sx * sy / n) / math.sqrt(vx * vy)))


def _downmix_loss_db(sums: np.ndarray) -> float | None:
    _, _, sxx, syy, sxy = (float(v) for v in sums)
    mean_power = (sxx + syy) / 2.0
    if mean_power <= 0:
        return None
    mid_power = max(0.0, (sxx + syy + 2.0 * sxy) / 4.0)
    if mid_power <= mean_power * 10.0 ** (-MAX_DOWNMIX_LOSS_DB / 10.0):
        return MAX_DOWNMIX_LOSS_DB
    return 10.0 * math.log10(mean_power / mid_power)


# ------------------------------------------------------------------------------------------------
# bandwidth


@dataclass(frozen=True)
class BandwidthResult:
    """Effective audio bandwidth from the long-term average spectrum.

    Attributes
    ----------
    bandwidth_hz : float or None
        Highest frequency with real content above the cliff (Nyquist if there is no cliff);
        None for silence or input shorter than one 4096-sample frame.
    sample_rate_hz, nyquist_hz : float
    cliff_db : float or None
        Depth of the cliff: passband level over the 90th percentile above it, dB; None if none.
    upsampled_suspect : bool
        The bandwidth sits just under the Nyquist frequency of a common lower rate.
    likely_source_rate_hz : int or None
        That lower rate.
    frames : int
        FFT frames analysed (per channel).
    """

    bandwidth_hz: float | None
    sample_rate_hz: int
    cliff_db: float | None
    upsampled_suspect: bool
    likely_source_rate_hz: int | None
    frames: int

    @property
    def nyquist_hz(self) -> float:
        return self.sample_rate_hz / 2.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bandwidth_hz": _round(self.bandwidth_hz, 1),
            "sample_rate_hz": self.sample_rate_hz,
            "nyquist_hz": self.nyquist_hz,
            "upsampled_suspect": self.upsampled_suspect,
            "likely_source_rate_hz": self.likely_source_rate_hz,
            "cliff_db": _round(self.cliff_db, 1),
            "frames": self.frames,
        }


class BandwidthAnalyzer:
    """Streaming long-term spectrum (one 4096-point frame every ``hop_s``) and its cliff.

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the module docstring.

    Parameters
    ----------
    hop_s : float
        Seconds between analysed frames (default 1.0; every 0.25 s over the first minute, weighted
        1/4), in (0, 60]; frames overlap if shorter than 4096 samples.
    cliff_db : float
        Minimum drop that counts as a cliff (default 30 dB), in [6, 120].
    """

    def __init__(self, sample_rate: int, channel_names: Sequence[str], *, start_s: float = 0.0,
                 hop_s: float = BW_HOP_S, cliff_db: float = BW_CLIFF_DB) -> None:
        self.sample_rate, self.channel_names, self.start_s = _stream_args(sample_rate, channel_names, start_s)
        self.hop_s = _number("hop_s", hop_s, 0.0, 60.0, lo_open=True)
        self.cliff_db = _number("cliff_db", cliff_db, 6.0, BW_DYNAMIC_RANGE_DB)
        self._hop = max(1, int(round(self.hop_s * self.sample_rate)))
        self._dense_hop = min(self._hop, max(1, int(round(BW_DENSE_HOP_S * self.sample_rate))))
        self._dense_end = int(round(BW_DENSE_S * self.sample_rate))
        self._channels = non_lfe_indices(self.channel_names)
        self._window = np.hanning(BW_FFT_SIZE).astype(np.float32)
        self._power = np.zeros(BW_FFT_SIZE + 2, np.float64)  # re^2 and im^2 sums, interleaved
        self._frames = 0
        self._pos = 0  # samples pushed
        self._next = 0  # start of the next frame to analyse
        self._carry = np.zeros((len(self._channels), BW_FFT_SIZE - 1), np.float32)  # last samples pushed

    def push(self, block: np.ndarray) -> None:
        """Add a float32 ``(channels, frames)`` block."""
        x = _block(block, len(self.channel_names))
        n, size = x.shape[1], BW_FFT_SIZE
        if n == 0:
            return
        rows = x if len(self._channels) == x.shape[0] else x[self._channels]
        g0 = self._pos
        self._pos += n
        frames, weights = [], []
        while self._next + size <= self._pos:
            s = self._next - g0
            if s >= 0:
                frames.append(rows[:, s:s + size])
            else:  # the frame starts in earlier blocks: the carry holds its head
                frames.append(np.concatenate((self._carry[:, size - 1 + s:], rows[:, :s + size]), axis=1))
            step = self._dense_hop if self._next < self._dense_end else self._hop
            weights.append(step / self._hop)  # each frame stands for the time until the next
            self._next += step
        if frames:
            spec = scipy.fft.rfft(np.stack(frames) * self._window, axis=-1)  # (frames, channels, bins)
            parts = spec.view(np.float32).reshape(len(frames), -1, 2 * spec.shape[-1])  # re, im interleaved
            self._power += np.einsum("fcj,fcj,f->j", parts, parts, np.array(weights, np.float32),
                                     dtype=np.float64)
            self._frames += len(frames)
        if n >= size - 1:
            self._carry = np.ascontiguousarray(rows[:, n - size + 1:])
        else:
            self._carry = np.concatenate((self._carry[:, n:], rows), axis=1)

    def result(self) -> BandwidthResult:
        """Bands, floor and cliff of the spectrum so far (see the module docstring)."""
        nyq = self.sample_rate / 2.0
        none = BandwidthResult(None, self.sample_rate, None, False, None, self._frames)
        if not self._frames:
            return none
        # 256 bands of 8 bins (bins 1..2048; DC left out), mean power per band, dB.
        power = self._power.reshape(-1, 2).sum(axis=1)
        bands = power[1:].reshape(BW_BANDS, -1).mean(axis=1)
        peak = bands.max()
        if not peak > 0:
            return none
        floor = max(peak * 10.0 ** (-BW_DYNAMIC_RANGE_DB / 10.0),
                    np.median(bands) * 10.0 ** (-BW_EMPTY_DB / 10.0))
        level = 10.0 * np.log10(np.maximum(bands, floor))
        cliff = _find_cliff(level, self.cliff_db)
        if cliff is None:
            return BandwidthResult(nyq, self.sample_rate, None, False, None, self._frames)
        top, depth = cliff
        bandwidth = (top + 1) * nyq / BW_BANDS
        source = _source_rate(bandwidth, self.sample_rate)
        return BandwidthResult(bandwidth, self.sample_rate, depth, source is not None, source, self._frames)


def _find_cliff(level: np.ndarray, cliff_db: float) -> tuple[int, float] | None:
    """``(highest band with content above the cliff, depth dB)`` or None (see the module docstring)."""
    nb = level.size
    centre = np.arange(nb) + 0.5  # band centres in band units (frequency / band width)
    ratio = 2.0 ** BW_GUARD_OCTAVES
    for k in range(nb - 1, -1, -1):
        above_from = int(np.ceil(centre[k] * ratio - 0.5))
        if above_from >= nb or above_from <= k:
            continue
        below_from = _window_start(k, ratio)
        below = float(np.median(level[below_from:k + 1]))
        above = float(np.percentile(level[above_from:], BW_ABOVE_PERCENTILE))
        if below - above >= cliff_db:
            # Passband level: the highest eighth-octave median ending within half an octave below
            # the cliff (a gentle resampler filter can span a third of an octave); the edge is
            # where the spectrum last stands within BW_EDGE_DB of it.
            ref = max(float(np.median(level[_window_start(j, ratio):j + 1]))
                      for j in range(_window_start(k, 2.0 ** BW_REF_OCTAVES), k + 1))
            top = int(np.flatnonzero(level[:k + 1] >= ref - BW_EDGE_DB)[-1])
            return top, ref - above
    return None


def _window_start(k: int, ratio: float) -> int:
    """First band whose centre is within a factor ``ratio`` below band ``k``'s centre."""
    return min(k, int(math.ceil((k + 0.5) / ratio - 0.5)))


def _source_rate(bandwidth_hz: float, sample_rate: int) -> int | None:
    lo, hi = UPSAMPLED_WINDOW
    for rate in COMMON_RATES_HZ:
        if rate <= UPSAMPLED_MAX_RATIO * sample_rate and lo * rate / 2 <= bandwidth_hz <= hi * rate / 2:
            return rate
    return None


# ------------------------------------------------------------------------------------------------
# dropouts


#: Exact-zero gap inside programme, seconds of file time, and the channels it hit.
DropoutEvent = ChannelSection


@dataclass(frozen=True)
class DropoutResult:
    """Dropouts found.

    Attributes
    ----------
    count : int
        Events (channel runs overlapping in time are one event), stored or not.
    events : tuple of DropoutEvent
        The first :data:`MAX_EVENTS` (``max_events``) events.
    total_s : float
        Summed duration of all events.
    """

    count: int
    events: tuple[DropoutEvent, ...]
    total_s: float
    min_duration_s: float
    max_duration_s: float
    context_level_dbfs: float
    events_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "events": [e.to_dict() for e in self.events],
            "events_truncated": self.events_truncated,
            "total_s": round(self.total_s, 6),
            "min_duration_s": self.min_duration_s,
            "max_duration_s": self.max_duration_s,
            "context_level_dbfs": self.context_level_dbfs,
        }


@dataclass
class _Candidate:
    """A zero run of the right length waiting for its 50 ms of programme after it."""

    start: int
    end: int
    sq: float = 0.0
    n: int = 0


@dataclass
class _ChannelZeros:
    open_start: int | None = None  # zero run still going at the end of the last block
    open_pre_ok: bool = False  # programme before it
    waiting: list[_Candidate] = field(default_factory=list)


class DropoutAnalyzer:
    """Streaming dropout detector: short exact-zero runs with programme on both sides.

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the module docstring.

    Parameters
    ----------
    min_duration_s, max_duration_s : float
        Run lengths that count (defaults 1 ms and 100 ms; at least one sample).
    context_s : float
        Programme needed on each side (default 50 ms).
    context_level_dbfs : float
        RMS the context must reach (default -60 dBFS).
    max_events : int
        Events stored; more are counted (default 1000).
    """

    def __init__(self, sample_rate: int, channel_names: Sequence[str], *, start_s: float = 0.0,
                 min_duration_s: float = DROPOUT_MIN_S, max_duration_s: float = DROPOUT_MAX_S,
                 context_s: float = DROPOUT_CONTEXT_S, context_level_dbfs: float = DROPOUT_CONTEXT_DBFS,
                 max_events: int = MAX_EVENTS) -> None:
        self.sample_rate, self.channel_names, self.start_s = _stream_args(sample_rate, channel_names, start_s)
        self.min_duration_s = _number("min_duration_s", min_duration_s, 0.0, 10.0, lo_open=True)
        self.max_duration_s = _number("max_duration_s", max_duration_s, 0.0, 60.0, lo_open=True)
        if self.max_duration_s < self.min_duration_s:
            raise InvalidParameter(
                f"max_duration_s={max_duration_s!r} must not be below min_duration_s={min_duration_s!r}")
        self.context_s = _number("context_s", context_s, 0.0, 10.0, lo_open=True)
        self.context_level_dbfs = _number("context_level_dbfs", context_level_dbfs, -200.0, 0.0)
        self.max_events = _count("max_events", max_events)
        sr = self.sample_rate
        self._min_n = max(1, int(round(self.min_duration_s * sr)))
        self._max_n = max(self._min_n, int(round(self.max_duration_s * sr)))
        self._ctx = max(1, int(round(self.context_s * sr)))
        self._ctx_power = 10.0 ** (self.context_level_dbfs / 10.0)
        c = len(self.channel_names)
        self._tail = np.zeros((c, self._ctx), np.float32)  # the last ctx samples pushed
        self._state = [_ChannelZeros() for _ in range(c)]
        self._pos = 0
        self._staged: list[list[Any]] = []  # [start, end, set of channels], may still merge
        self._events: list[tuple[int, int, frozenset[int]]] = []
        self._count = 0
        self._total = 0

    # ------------------------------------------------------------------ streaming
    def push(self, block: np.ndarray) -> None:
        """Add a float32 ``(channels, frames)`` block."""
        x = _block(block, len(self.channel_names))
        n = x.shape[1]
        if n == 0:
            return
        g0 = self._pos
        zero = x == 0.0
        has_zero = zero.any(axis=1)
        confirmed: list[tuple[int, int, int]] = []
        for c, st in enumerate(self._state):
            if st.waiting:
                self._feed_waiting(c, st, x[c], g0, confirmed)
            if has_zero[c] or st.open_start is not None:
                self._runs(c, st, x[c], np.flatnonzero(zero[c]), g0, confirmed)
        self._pos = g0 + n
        if n >= self._ctx:
            self._tail = np.ascontiguousarray(x[:, n - self._ctx:])
        else:
            self._tail = np.concatenate((self._tail[:, n:], x), axis=1)
        self._stage(confirmed)

    def _feed_waiting(self, c: int, st: _ChannelZeros, row: np.ndarray, g0: int,
                      confirmed: list[tuple[int, int, int]]) -> None:
        """Add this block's samples to the after-context of runs that ended near the last block's end."""
        still = []
        for cand in st.waiting:
            seg = row[: self._ctx - cand.n].astype(np.float64)
            cand.sq += float(seg @ seg)
            cand.n += seg.size
            if cand.n < self._ctx:
                still.append(cand)
            elif cand.sq >= self._ctx_power * self._ctx:
                confirmed.append((cand.start, cand.end, c))
        st.waiting = still

    def _runs(self, c: int, st: _ChannelZeros, row: np.ndarray, idx: np.ndarray, g0: int,
              confirmed: list[tuple[int, int, int]]) -> None:
        """Zero runs of one channel in this block, joined to the run left open by the last one."""
        n = row.shape[0]
        if idx.size:
            brk = np.flatnonzero(np.diff(idx) != 1)
            starts = np.concatenate((idx[:1], idx[brk + 1])).astype(np.int64) + g0
            ends = np.concatenate((idx[brk] + 1, idx[-1:] + 1)).astype(np.int64) + g0
        else:
            starts = ends = np.empty(0, np.int64)
        pre_known = {}  # run start -> programme before it, for a run carried from the last block
        if st.open_start is not None:
            if starts.size and starts[0] == g0:
                starts[0] = st.open_start
            else:  # the open run ended exactly at the block boundary
                starts = np.concatenate(([st.open_start], starts))
                ends = np.concatenate(([g0], ends))
            pre_known[st.open_start] = st.open_pre_ok
            st.open_start = None
        if ends.size and ends[-1] == g0 + n:  # still going at the block's end
            st.open_start = int(starts[-1])
            st.open_pre_ok = pre_known.get(st.open_start) if st.open_start in pre_known else (
                g0 + n - st.open_start <= self._max_n and self._programme_before(c, row, st.open_start, g0))
            starts, ends = starts[:-1], ends[:-1]
        length = ends - starts
        keep = (length >= self._min_n) & (length <= self._max_n)
        for s, e in zip(starts[keep].tolist(), ends[keep].tolist()):
            pre = pre_known[s] if s in pre_known else self._programme_before(c, row, s, g0)
            if not pre:
                continue
            after = row[e - g0: e - g0 + self._ctx].astype(np.float64)
            cand = _Candidate(s, e, float(after @ after), after.size)
            if cand.n < self._ctx:
                st.waiting.append(cand)
            elif cand.sq >= self._ctx_power * self._ctx:
                confirmed.append((s, e, c))

    def _programme_before(self, c: int, row: np.ndarray, start: int, g0: int) -> bool:
        """RMS of the ``ctx`` samples before ``start`` (global) reaches the context level."""
        if start < self._ctx:
            return False  # not 50 ms of programme before it: start of the stream
        local = start - g0
        if local >= self._ctx:
            seg = row[local - self._ctx: local].astype(np.float64)
        else:
            seg = np.concatenate((self._tail[c, local:], row[:local])).astype(np.float64)
        return float(seg @ seg) >= self._ctx_power * self._ctx

    def _stage(self, confirmed: list[tuple[int, int, int]]) -> None:
        """Merge confirmed channel runs into events; settle those no later run can overlap."""
        for s, e, c in confirmed:
            self._staged.append([s, e, {c}])
        if confirmed:
            self._staged.sort(key=lambda ev: ev[0])
            merged: list[list[Any]] = []
            for ev in self._staged:
                if merged and ev[0] < merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], ev[1])
                    merged[-1][2] |= ev[2]
                else:
                    merged.append(ev)
            self._staged = merged
        # A run confirmed later ends after pos - ctx, so starts after pos - ctx - max_n.
        settled = self._pos - self._ctx - self._max_n
        while self._staged and self._staged[0][1] <= settled:
            self._settle(self._staged.pop(0))

    def _settle(self, ev: list[Any]) -> None:
        self._count += 1
        self._total += ev[1] - ev[0]
        if len(self._events) < self.max_events:
            self._events.append((ev[0], ev[1], frozenset(ev[2])))

    def result(self) -> DropoutResult:
        """Report the events (runs still open or waiting at the end of the stream are not dropouts)."""
        for ev in self._staged:
            self._settle(ev)
        self._staged = []
        sr = self.sample_rate
        events = tuple(
            DropoutEvent(self.start_s + s / sr, self.start_s + e / sr,
                         tuple(self.channel_names[i] for i in sorted(chans)))
            for s, e, chans in self._events
        )
        return DropoutResult(self._count, events, self._total / sr, self.min_duration_s, self.max_duration_s,
                             self.context_level_dbfs, events_truncated=self._count > len(events))
