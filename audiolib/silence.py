"""Silence detection with FFmpeg ``silencedetect`` semantics, streaming.

A sample is silent when its absolute amplitude is below the ``noise`` threshold (``|x| < 10**(dB/20)``,
FFmpeg's comparison); a silence is a run of silent samples at least ``duration`` seconds long
(``round(duration * rate)`` samples, FFmpeg's ``nb_samples_notify``). It starts at its first silent
sample and ends at the first sample that is not silent, or at the end of the stream.

- ``mono=True`` (the silence endpoint's default): the channels are averaged to one and silence is
  found on that, as the endpoint does with a mono downmix before ``silencedetect``.
- ``mono=False``: a sample frame is silent only when every channel is (FFmpeg's default); the
  intervals of each channel on its own (FFmpeg's ``silencedetect=mono=1``) are reported too.

Times are seconds of file time. :class:`SilenceDetector` also gives Dolby's ``silence`` block:
percentage, leading and trailing silence, the number of sections and the channels silent
throughout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _kernels
from .errors import InvalidParameter
from .runs import RunTracker

#: The silence endpoint's schema: ``duration`` minimum 0.1 s; ``noise`` default -30 dB.
MIN_DURATION_S = 0.1
DEFAULT_NOISE_DB = -30.0
#: Thresholds above full scale would call everything silent.
MAX_NOISE_DB = 0.0
MIN_NOISE_DB = -200.0
#: Stored intervals per detector; beyond this they are counted, not kept (flat memory).
MAX_INTERVALS = 100_000

_NOISE_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(db)?\s*$", re.IGNORECASE)


def parse_noise_db(value: str | float | int | None) -> float:
    """Parse the endpoint's ``noise`` (``"-30dB"``, ``"-30"`` or a number, in dB) to dBFS."""
    if value is None:
        return DEFAULT_NOISE_DB
    if isinstance(value, bool):
        raise InvalidParameter(f"noise={value!r} must be a level in dB such as '-30dB'")
    if isinstance(value, (int, float)):
        db = float(value)
    elif isinstance(value, str):
        match = _NOISE_RE.match(value)
        if not match:
            raise InvalidParameter(f"noise={value!r} must be a level in dB such as '-30dB'")
        db = float(match.group(1))
    else:
        raise InvalidParameter(f"noise={value!r} must be a level in dB such as '-30dB'")
    if not math.isfinite(db) or not MIN_NOISE_DB <= db <= MAX_NOISE_DB:
        raise InvalidParameter(f"noise={value!r} must be between {MIN_NOISE_DB:g} dB and {MAX_NOISE_DB:g} dB")
    return db


def validate_duration(value: Any) -> float:
    """The endpoint's ``duration``: a number of seconds, at least 0.1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InvalidParameter(f"duration={value!r} must be a number of seconds >= {MIN_DURATION_S}") from None
    if not math.isfinite(value) or value < MIN_DURATION_S:
        raise InvalidParameter(f"duration={value!r} must be a number of seconds >= {MIN_DURATION_S}")
    return float(value)


@dataclass(frozen=True)
class SilenceInterval:
    """One silence, seconds of file time."""

    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, float]:
        return {"start": round(self.start_s, 6), "end": round(self.end_s, 6)}


@dataclass(frozen=True)
class SilenceResult:
    """Silences found, and Dolby's summary of them.

    Attributes
    ----------
    intervals : tuple of SilenceInterval
        With ``mono=True`` on the downmix, else where every channel is silent.
    channel_intervals : dict
        Channel name -> its own intervals (``mono=False`` only).
    percentage : float
        Share of the analysed duration inside ``intervals``, percent.
    at_beginning_s, at_end_s : float
        Silence at the start / end of the analysed range, seconds (0 if none).
    silent_channels : tuple of str
        Channels below the threshold for the whole range.
    """

    intervals: tuple[SilenceInterval, ...]
    channel_intervals: dict[str, tuple[SilenceInterval, ...]]
    noise_db: float
    min_duration_s: float
    mono: bool
    start_s: float
    duration_s: float
    percentage: float
    at_beginning_s: float
    at_end_s: float
    num_sections: int
    silent_channels: tuple[str, ...]
    intervals_truncated: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def to_list(self) -> list[dict[str, float]]:
        """The silence endpoint's response: ``[{"start": s, "end": s}, ...]``."""
        return [iv.to_dict() for iv in self.intervals]

    def to_dict(self) -> dict[str, Any]:
        """Dolby's ``silence`` block plus the intervals and the parameters used."""
        out: dict[str, Any] = {
            "percentage": round(self.percentage, 2),
            "at_beginning": round(self.at_beginning_s, 3),
            "at_end": round(self.at_end_s, 3),
            "num_sections": self.num_sections,
            "silent_channels": list(self.silent_channels),
            "sections": self.to_list(),
            "noise_db": self.noise_db,
            "min_duration": self.min_duration_s,
            "mono": self.mono,
        }
        if self.intervals_truncated:
            out["sections_truncated"] = True
        if not self.mono:
            out["channel_sections"] = {k: [iv.to_dict() for iv in v] for k, v in self.channel_intervals.items()}
        return out


class SilenceDetector:
    """Streaming ``silencedetect``.

    Parameters
    ----------
    sample_rate : int
        Hz.
    channel_names : sequence of str
        Names for per-channel results (``FL``, ``LFE``, ...).
    noise : str or float
        Threshold in dB (``"-30dB"``); default -30 dB.
    duration : float
        Minimum silence length, seconds (>= 0.1).
    mono : bool
        Detect on the channel average (True) or require every channel silent (False).
    start_s : float
        File time of the first sample pushed.
    """

    def __init__(self, sample_rate: int, channel_names: Sequence[str], *, noise: str | float | None = None,
                 duration: float = 0.5, mono: bool = True, start_s: float = 0.0) -> None:
        self.sample_rate = int(sample_rate)
        self.channel_names = tuple(channel_names)
        self.noise_db = parse_noise_db(noise)
        self.min_duration_s = validate_duration(duration)
        self.mono = bool(mono)
        self.start_s = float(start_s)
        self._threshold = np.float32(10.0 ** (self.noise_db / 20.0))
        # FFmpeg: nb_samples_notify = av_rescale(duration, rate, AV_TIME_BASE) (rounded)
        min_samples = int(round(self.min_duration_s * self.sample_rate))
        self._all = RunTracker(min_samples, max_runs=MAX_INTERVALS)
        self._per_channel = [] if self.mono else [
            RunTracker(min_samples, max_runs=MAX_INTERVALS) for _ in self.channel_names
        ]
        self._loud_seen = np.zeros(len(self.channel_names), dtype=bool)

    def push(self, block: np.ndarray) -> None:
        """Add a float32 ``(channels, frames)`` block."""
        x = np.ascontiguousarray(block, dtype=np.float32)
        thr = float(self._threshold)  # FFmpeg: *p < noise && *p > -noise
        mode = _kernels.MEAN_BELOW if self.mono else _kernels.ALL_BELOW
        self._all.push_condition(x, thr, mode)
        for c in range(x.shape[0]):
            if not self._loud_seen[c]:  # whether the channel was ever loud: once seen, settled
                self._loud_seen[c] = not bool(np.all(np.abs(x[c]) < thr))
            if not self.mono:
                self._per_channel[c].push_condition(x[c:c + 1], thr, _kernels.ALL_BELOW)

    def _intervals(self, tracker: RunTracker) -> tuple[SilenceInterval, ...]:
        runs = tracker.runs()
        sr = self.sample_rate
        return tuple(SilenceInterval(self.start_s + a / sr, self.start_s + b / sr) for a, b in runs.tolist())

    def result(self) -> SilenceResult:
        """Finish the stream (a silence still going ends at the last sample) and summarise."""
        self._all.finish()
        for tracker in self._per_channel:
            tracker.finish()
        total = self._all.position
        runs = self._all.runs()
        sr = self.sample_rate
        at_beginning = runs[0, 1] / sr if len(runs) and runs[0, 0] == 0 else 0.0
        at_end = (runs[-1, 1] - runs[-1, 0]) / sr if len(runs) and runs[-1, 1] == total and total else 0.0
        percentage = 100.0 * self._all.true_samples / total if total else 0.0
        silent_channels = (
            tuple(n for n, loud in zip(self.channel_names, self._loud_seen, strict=True) if not loud) if total else ()
        )
        return SilenceResult(
            intervals=self._intervals(self._all),
            channel_intervals={  # none when mono (no per-channel trackers): strict=False, as before a256126
                n: self._intervals(t) for n, t in zip(self.channel_names, self._per_channel, strict=False)
            },
            noise_db=self.noise_db,
            min_duration_s=self.min_duration_s,
            mono=self.mono,
            start_s=self.start_s,
            duration_s=total / sr,
            percentage=percentage,
            at_beginning_s=float(at_beginning),
            at_end_s=float(at_end),
            num_sections=self._all.count,
            silent_channels=silent_channels,
            intervals_truncated=self._all.truncated,
        )
