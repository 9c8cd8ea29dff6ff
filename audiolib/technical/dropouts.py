"""Digital dropouts: short exact-zero gaps inside programme (streaming). Definitions: docs/technical.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidParameter
from ..runs import ChannelSection
from ..validate import block as _block
from ..validate import count as _count
from ..validate import number as _number
from ..validate import stream_args as _stream_args
from ._common import MAX_EVENTS

__all__ = [
    "DropoutAnalyzer",
    "DropoutResult",
    "DROPOUT_MIN_S",
    "DROPOUT_MAX_S",
    "DROPOUT_CONTEXT_S",
    "DROPOUT_CONTEXT_DBFS",
]

# --- dropouts ----------------------------------------------------------------------------------
DROPOUT_MIN_S = 0.001  # documented choice: shorter exact-zero runs occur at zero crossings
DROPOUT_MAX_S = 0.100  # documented choice: longer gaps are silences (the silence block)
DROPOUT_CONTEXT_S = 0.050  # programme must surround the gap for this long on both sides
DROPOUT_CONTEXT_DBFS = -60.0  # RMS of that context; the silence block's default threshold


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

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the package docstring (audiolib/technical/__init__.py).

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
        pre_known: dict[int, bool] = {}  # run start -> programme before it, for a run carried from the last block
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
            st.open_pre_ok = pre_known[st.open_start] if st.open_start in pre_known else (
                g0 + n - st.open_start <= self._max_n and self._programme_before(c, row, st.open_start, g0))
            starts, ends = starts[:-1], ends[:-1]
        length = ends - starts
        keep = (length >= self._min_n) & (length <= self._max_n)
        for s, e in zip(starts[keep].tolist(), ends[keep].tolist(), strict=True):
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
