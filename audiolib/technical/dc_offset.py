"""DC offset per channel (streaming). Definitions: docs/technical.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..validate import block as _block
from ..validate import number as _number
from ..validate import stream_args as _stream_args
from ._common import _chunk_sums, _db20, _round

__all__ = ["DcOffsetAnalyzer", "DcOffsetResult", "DC_FLAG_DBFS"]

# --- dc_offset ---------------------------------------------------------------------------------
DC_FLAG_DBFS = -60.0  # documented choice (docs/technical.md): 0.1% of full scale, 33 LSB at 16 bits


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

    #: Properties the QC report stores as columns (audioqc.report; other properties are not).
    REPORT_PROPERTIES: ClassVar[tuple[str, ...]] = ("flagged", "max_abs_dc_offset_dbfs")

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
        return tuple(n for n, v in zip(self.channel_names, self.dc_offset_dbfs, strict=True)
                     if v is not None and v >= self.threshold_dbfs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": {n: {"dc_offset": _round(v, 9), "dc_offset_dbfs": _round(d, 2)}
                         for n, v, d in zip(self.channel_names, self.dc_offset, self.dc_offset_dbfs, strict=True)},
            "max_abs_dc_offset_dbfs": _round(self.max_abs_dc_offset_dbfs, 2),
            "flagged": list(self.flagged),
            "threshold_dbfs": self.threshold_dbfs,
        }


class DcOffsetAnalyzer:
    """Streaming per-channel DC offset (mean), float64 with compensated accumulation.

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the package docstring (audiolib/technical/__init__.py).

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
