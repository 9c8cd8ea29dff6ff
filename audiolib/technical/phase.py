"""Phase of symmetric loudspeaker pairs over time (streaming). Definitions: docs/technical.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidParameter
from ..validate import block as _block
from ..validate import number as _number
from ..validate import stream_args as _stream_args
from ._common import MAX_EVENTS, _interval, _round

__all__ = [
    "PairPhase",
    "PhaseAnalyzer",
    "PhaseResult",
    "PhaseSection",
    "phase_pairs",
    "PHASE_WINDOW_S",
    "PHASE_THRESHOLD",
    "PHASE_MIN_SECTION_S",
    "PHASE_MAX_GAP_S",
    "PHASE_SILENCE_DBFS",
    "MAX_DOWNMIX_LOSS_DB",
    "PHASE_PAIRS",
]

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

    #: Properties the QC report stores as columns (audioqc.report; other properties are not).
    REPORT_PROPERTIES: ClassVar[tuple[str, ...]] = ("out_of_phase",)

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

    #: Properties the QC report stores as columns (audioqc.report; other properties are not).
    REPORT_PROPERTIES: ClassVar[tuple[str, ...]] = ("flagged", "front")

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


def _pair_sums(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sx, Sy, Sxx, Syy, Sxy of two float32 rows (float32 BLAS, returned as float64)."""
    return np.array([left.sum(), right.sum(), left @ left, right @ right, left @ right], np.float64)


class PhaseAnalyzer:
    """Streaming inter-channel phase: correlation, out-of-phase windows and sections, downmix loss.

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the package docstring (audiolib/technical/__init__.py).

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
            left, r = x[st.a], x[st.b]  # row views: no copy
            i = min(w - st.part_n, n) if st.part_n else 0  # completes the window left open
            nw = (n - i) // w
            done = int(bool(i) and st.part_n + i == w)
            sums = np.empty((done + nw, 5), np.float64)
            if i:
                st.part += _pair_sums(left[:i], r[:i])
                st.part_n += i
                if done:
                    sums[0] = st.part
                    st.part = np.zeros(5, np.float64)
                    st.part_n = 0
            if nw:
                lw = left[i:i + nw * w].reshape(nw, w)
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
                st.part = _pair_sums(left[i:], r[i:])
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
