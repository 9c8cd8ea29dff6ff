"""Effective bandwidth and upsampling (streaming). Definitions: docs/technical.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.fft

from ..channels import non_lfe_indices
from ..validate import block as _block
from ..validate import number as _number
from ..validate import stream_args as _stream_args
from ._common import _round

__all__ = [
    "BandwidthAnalyzer",
    "BandwidthResult",
    "BW_FFT_SIZE",
    "BW_BANDS",
    "BW_HOP_S",
    "BW_DENSE_HOP_S",
    "BW_DENSE_S",
    "BW_CLIFF_DB",
    "BW_GUARD_OCTAVES",
    "BW_EDGE_DB",
    "BW_REF_OCTAVES",
    "BW_ABOVE_PERCENTILE",
    "BW_DYNAMIC_RANGE_DB",
    "BW_EMPTY_DB",
    "COMMON_RATES_HZ",
    "UPSAMPLED_WINDOW",
    "UPSAMPLED_MAX_RATIO",
]

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

    #: Properties the QC report stores as columns (audioqc.report; other properties are not).
    REPORT_PROPERTIES: ClassVar[tuple[str, ...]] = ("nyquist_hz",)

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

    ``sample_rate``, ``channel_names`` and ``start_s`` as in the package docstring (audiolib/technical/__init__.py).

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
        """Bands, floor and cliff of the spectrum so far (see docs/technical.md)."""
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
    """``(highest band with content above the cliff, depth dB)`` or None (see docs/technical.md)."""
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
