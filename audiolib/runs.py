"""Runs of True in a boolean sample stream, found block by block (vectorised, flat memory).

Silence (samples below a threshold), clipping (samples at full scale) and similar detectors are
all "find the stretches where a per-sample condition holds for at least N samples"; this module
does that once, correctly across block boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernels

#: Shortest run from which :meth:`RunTracker.push_condition` probes every ``min_samples``-th sample
#: (``_kernels.long_runs``) instead of scanning them all (``_kernels.transitions``, vectorised where
#: nothing changes): below it the probes save little and cost their branches (clipping's 3-sample
#: runs: 0.47 against 0.36 s an hour per channel, measured).
PROBE_MIN_SAMPLES = 64


@dataclass(frozen=True)
class ChannelSection:
    """A stretch of file time, seconds, and the channels it involves (clipping, dropouts)."""

    start_s: float
    end_s: float
    channels: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(float(self.start_s), 6), "end": round(float(self.end_s), 6),
                "channels": list(self.channels)}


class RunTracker:
    """Track runs of True in a boolean stream pushed in blocks.

    Parameters
    ----------
    min_samples : int
        Shortest run reported (a run of exactly ``min_samples`` counts).
    max_runs : int, optional
        Keep at most this many runs (later ones are counted, not stored).

    Runs are ``(start, end)`` absolute sample indices, ``end`` exclusive.
    """

    def __init__(self, min_samples: int, *, max_runs: int | None = None) -> None:
        self.min_samples = max(1, int(min_samples))
        self.max_runs = max_runs
        self._position = 0
        self._open_start: int | None = None  # start of the run still going at the block's end
        self._starts: list[np.ndarray] = []
        self._ends: list[np.ndarray] = []
        self.count = 0  # every qualifying run, stored or not
        self.stored = 0
        self.true_samples = 0  # samples inside qualifying runs (closed ones)

    def push(self, mask: np.ndarray) -> None:
        """Add the next block's per-sample condition (a boolean array)."""
        if mask.shape[0] == 0:
            return
        m = mask.view(np.int8) if mask.dtype == np.bool_ else mask.astype(np.int8)
        edges = np.flatnonzero(np.diff(m)) + 1
        self.push_edges(edges, bool(m[0]), bool(m[-1]), mask.shape[0])

    def push_condition(self, x: np.ndarray, threshold: float, mode: int) -> None:
        """Add the next block as samples, ``(channels, n)`` float32 C-contiguous, and a per-sample
        condition (one of ``_kernels``' modes against ``threshold``). Only what this tracker keeps
        is found: with long runs, the runs of at least ``min_samples`` (and those open at an edge)."""
        if self.min_samples >= PROBE_MIN_SAMPLES:
            found = _kernels.long_runs(x, threshold, mode, self.min_samples)
        else:
            found = _kernels.transitions(x, threshold, mode)
        self.push_edges(*found, x.shape[1])

    def push_edges(self, edges: np.ndarray, first: bool, last: bool, n: int) -> None:
        """Add the next block of ``n`` samples, given as the indices where the condition
        changes (``edges``, increasing, within 1..n-1) and its value at the first and last
        sample (what :func:`audiolib._kernels.transitions` returns)."""
        if n == 0:
            return
        # The condition alternates at each edge: after edge k it is `first` xor (k even).
        after = np.arange(edges.size) % 2 == 0
        if first:
            after = ~after
        starts = edges[after]
        ends = edges[~after]
        if first:
            starts = np.concatenate(([0], starts))
        base = self._position
        abs_starts = starts.astype(np.int64) + base
        abs_ends = ends.astype(np.int64) + base
        if self._open_start is not None:
            if first:
                abs_starts[0] = self._open_start  # the run continues
            else:  # the run ended exactly at the block boundary
                abs_ends = np.concatenate(([base], abs_ends))
                abs_starts = np.concatenate(([self._open_start], abs_starts))
        if last:  # last run still open
            self._open_start = int(abs_starts[-1])
            abs_starts = abs_starts[:-1]
        else:
            self._open_start = None
        self._keep(abs_starts, abs_ends)
        self._position += n

    def _keep(self, starts: np.ndarray, ends: np.ndarray) -> None:
        lengths = ends - starts
        ok = lengths >= self.min_samples
        starts, ends = starts[ok], ends[ok]
        if starts.size == 0:
            return
        self.count += int(starts.size)
        self.true_samples += int((ends - starts).sum())
        room = starts.size if self.max_runs is None else max(0, self.max_runs - self.stored)
        if room:
            self._starts.append(starts[:room])
            self._ends.append(ends[:room])
            self.stored += int(min(room, starts.size))

    def finish(self) -> None:
        """Close a run still open at the end of the stream (it ends at the last sample)."""
        if self._open_start is not None:
            self._keep(np.array([self._open_start], np.int64), np.array([self._position], np.int64))
            self._open_start = None

    @property
    def position(self) -> int:
        """Samples pushed so far."""
        return self._position

    @property
    def truncated(self) -> bool:
        """True when more runs qualified than were stored."""
        return self.count > self.stored

    def runs(self) -> np.ndarray:
        """``(k, 2)`` int64 array of stored ``[start, end)`` runs, in order."""
        if not self._starts:
            return np.empty((0, 2), np.int64)
        return np.stack([np.concatenate(self._starts), np.concatenate(self._ends)], axis=1)
