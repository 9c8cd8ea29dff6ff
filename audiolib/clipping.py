"""Clipping: runs of consecutive samples at full scale, streaming.

A clipped run is at least ``min_run`` consecutive samples of one channel whose magnitude is at
(or within a tolerance of) the format's full scale: a waveform flattened against the rails. A
lone full-scale peak is not clipping. Float samples beyond full scale (``|x| > 1``) are counted
as over-full-scale samples, and runs of them are clipping events too (they clip on conversion to
any fixed-point format).

- Full scale of an ``b``-bit integer format is ``(2**(b-1) - 1) / 2**(b-1)`` on the positive side
  and ``-1`` on the negative side, exactly (a lossless decode gives the exact codes); for float PCM
  1.0, and for lossy decodes 0.999 (-0.009 dB), since decoders of clipped masters ring around 1.0.
- ``min_run`` defaults to 3 samples, the start threshold of Audacity's "Find Clipping".
- Runs of all channels are merged into sections (runs closer than 10 ms join), each with the
  channels it involves. Dolby's block is ``{events, num_sections, first_event}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _kernels
from .errors import InvalidParameter
from .runs import ChannelSection, RunTracker

DEFAULT_MIN_RUN = 3  # Audacity "Find Clipping" default start threshold (samples)
LOSSY_TOLERANCE = 1e-3  # -0.009 dB below full scale
MERGE_GAP_S = 0.010  # runs closer than this form one section
MAX_RUNS = 200_000  # per channel, stored; more are counted (flat memory)
_LOSSLESS_INT = {"pcm_u8": 8, "pcm_s8": 8, "pcm_s16le": 16, "pcm_s16be": 16, "pcm_s24le": 24, "pcm_s24be": 24,
                 "pcm_s32le": 32, "pcm_s32be": 32}


def clip_level(codec: str | None, bit_depth: int | None) -> float:
    """Magnitude at or above which a sample counts as full scale, for a codec and bit depth."""
    bits = _LOSSLESS_INT.get(codec or "") or (bit_depth if codec in ("flac", "alac", "wavpack") else None)
    if bits:
        # The largest positive code (the negative rail is -1.0): a lossless decode gives the exact
        # codes, so no tolerance is needed, and a tolerance would call the crest of a clean
        # full-scale low-frequency sine (several samples within 2 LSB of the top) clipping.
        return 1.0 - 2.0 ** (1 - bits)
    if codec in ("pcm_f32le", "pcm_f32be", "pcm_f64le", "pcm_f64be"):
        return 1.0
    return 1.0 - LOSSY_TOLERANCE


#: Clipped samples of one or more channels close together, seconds of file time.
ClipSection = ChannelSection


@dataclass(frozen=True)
class ClippingResult:
    """Clipping found.

    Attributes
    ----------
    events : int
        Clipped runs, all channels.
    sections : tuple of ClipSection
        Runs merged across channels.
    first_event_s : float or None
        Start of the first section.
    clipped_samples : int
        Samples inside clipped runs.
    over_full_scale_samples : int
        Float samples with ``|x| > 1``.
    channel_events : dict
        Channel name -> clipped runs.
    """

    events: int
    sections: tuple[ClipSection, ...]
    first_event_s: float | None
    clipped_samples: int
    over_full_scale_samples: int
    channel_events: dict[str, int]
    threshold: float
    min_run_samples: int
    sections_truncated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Dolby's ``clipping`` block plus the sections and per-channel counts."""
        out = {
            "events": self.events,
            "num_sections": len(self.sections),
            "first_event": None if self.first_event_s is None else round(self.first_event_s, 6),
            "clipped_samples": self.clipped_samples,
            "over_full_scale_samples": self.over_full_scale_samples,
            "channel_events": dict(self.channel_events),
            "sections": [s.to_dict() for s in self.sections],
        }
        if self.sections_truncated:
            out["sections_truncated"] = True
        return out


class ClippingDetector:
    """Streaming clipping detector.

    Parameters
    ----------
    sample_rate : int
        Hz.
    channel_names : sequence of str
        Channel names for the sections.
    codec, bit_depth : optional
        Decide the full-scale threshold (see :func:`clip_level`).
    threshold : float, optional
        Override the full-scale threshold (0 < threshold <= 1).
    min_run : int
        Shortest clipped run, samples (>= 2: one full-scale sample is not clipping).
    start_s : float
        File time of the first sample pushed.
    """

    def __init__(self, sample_rate: int, channel_names: Sequence[str], *, codec: str | None = None,
                 bit_depth: int | None = None, threshold: float | None = None,
                 min_run: int = DEFAULT_MIN_RUN, start_s: float = 0.0) -> None:
        if isinstance(min_run, bool) or not isinstance(min_run, (int, np.integer)) or min_run < 2:
            raise InvalidParameter(f"min_run={min_run!r} must be an integer >= 2 samples")
        level = clip_level(codec, bit_depth) if threshold is None else float(threshold)
        if not 0.0 < level <= 1.0:
            raise InvalidParameter(f"threshold={threshold!r} must be in (0, 1]")
        self.sample_rate = int(sample_rate)
        self.channel_names = tuple(channel_names)
        self.start_s = float(start_s)
        self.threshold = np.float32(level)
        self.min_run = int(min_run)
        self._runs = [RunTracker(self.min_run, max_runs=MAX_RUNS) for _ in self.channel_names]
        self._over = [RunTracker(1, max_runs=MAX_RUNS) for _ in self.channel_names]

    def push(self, block: np.ndarray) -> None:
        """Add a float32 ``(channels, frames)`` block."""
        x = np.ascontiguousarray(block, dtype=np.float32)
        for c in range(x.shape[0]):
            row = x[c:c + 1]
            self._runs[c].push_condition(row, float(self.threshold), _kernels.AT_OR_ABOVE)
            self._over[c].push_condition(row, 1.0, _kernels.ABOVE)

    def result(self) -> ClippingResult:
        """Finish and merge the runs of all channels into sections."""
        pieces = []
        per_channel: dict[str, int] = {}
        truncated = False
        clipped = 0
        for c, name in enumerate(self.channel_names):
            full, over = self._runs[c], self._over[c]
            full.finish()
            over.finish()
            runs = full.runs()
            extra = over.runs()
            if len(extra):  # over-full-scale runs not already inside a full-scale run
                inside = np.zeros(len(extra), bool)
                if len(runs):
                    k = np.searchsorted(runs[:, 0], extra[:, 0], side="right") - 1
                    ok = k >= 0
                    inside[ok] = extra[ok, 1] <= runs[k[ok], 1]
                extra = extra[~inside]
                runs = np.concatenate([runs, extra]) if len(runs) else extra
            per_channel[name] = full.count + len(extra)
            clipped += full.true_samples + int((extra[:, 1] - extra[:, 0]).sum())
            truncated |= full.truncated or over.truncated
            if len(runs):
                pieces.append(np.column_stack([runs, np.full(len(runs), c)]))
        sections = self._merge(np.concatenate(pieces)) if pieces else ()
        return ClippingResult(
            events=sum(per_channel.values()),
            sections=sections,
            first_event_s=sections[0].start_s if sections else None,
            clipped_samples=clipped,
            over_full_scale_samples=sum(t.true_samples for t in self._over),
            channel_events=per_channel,
            threshold=float(self.threshold),
            min_run_samples=self.min_run,
            sections_truncated=truncated,
        )

    def _merge(self, runs: np.ndarray) -> tuple[ClipSection, ...]:
        runs = runs[np.argsort(runs[:, 0], kind="stable")]
        gap = int(round(MERGE_GAP_S * self.sample_rate))
        # A new section starts where a run begins after every earlier run has ended (plus gap).
        ends_so_far = np.maximum.accumulate(runs[:, 1])
        new = np.ones(len(runs), bool)
        new[1:] = runs[1:, 0] > ends_so_far[:-1] + gap
        ids = np.cumsum(new) - 1
        starts = runs[new, 0]
        ends = np.maximum.reduceat(runs[:, 1], np.flatnonzero(new))
        sr = self.sample_rate
        sections = []
        for k in range(len(starts)):
            chans = np.unique(runs[np.searchsorted(ids, k):np.searchsorted(ids, k, side="right"), 2])
            sections.append(ClipSection(self.start_s + float(starts[k]) / sr, self.start_s + float(ends[k]) / sr,
                                        tuple(self.channel_names[i] for i in chans)))
        return tuple(sections)
