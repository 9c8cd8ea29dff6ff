"""One decode pass, every analysis: the ``diagnose`` result in Dolby's shape.

Each block of the result is produced by an analyzer with ``push(block)`` and ``result()``; all
analyzers consume the same stream of decoded blocks, so a file is decoded once whatever the number
of blocks asked for. New blocks register in :data:`ANALYZERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import io
from .errors import InvalidParameter
from .loudness import LoudnessMeter


class Analyzer(Protocol):
    """A streaming analysis: fed every block of the file, then asked for its result."""

    def push(self, block: np.ndarray) -> None: ...

    def result(self) -> Any: ...


@dataclass(frozen=True)
class DiagnoseOptions:
    """Options shared by the analyzers (all keyword, validated once)."""

    gating: str = "level"

    def __post_init__(self) -> None:
        if self.gating not in ("level",):
            raise InvalidParameter(f"gating={self.gating!r}: must be 'level'")


class _LoudnessAnalyzer:
    def __init__(self, stream: io.AudioStream, options: DiagnoseOptions) -> None:
        self._meter = LoudnessMeter(stream.sample_rate, stream.channel_names)
        self._gating = options.gating

    def push(self, block: np.ndarray) -> None:
        self._meter.push(block)

    def result(self) -> Any:
        return self._meter.result(gating_mode=self._gating)


#: Block name -> analyzer factory, in output order after ``media_info``.
ANALYZERS: dict[str, Callable[[io.AudioStream, DiagnoseOptions], Analyzer]] = {
    "loudness": _LoudnessAnalyzer,
}
BLOCKS: tuple[str, ...] = ("media_info", *ANALYZERS)


@dataclass(frozen=True)
class DiagnoseResult:
    """Everything measured in one pass. ``blocks`` maps block name -> result object."""

    url: str
    media_info: io.MediaInfo
    blocks: dict[str, Any]
    decode: io.DecodeReport
    requested: tuple[str, ...] = field(default=BLOCKS)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "media_info" in self.requested:
            out["media_info"] = self.media_info.to_dict()
        for name, value in self.blocks.items():
            out[name] = value.to_dict()
        out["decode"] = {
            "decoded_duration": self.decode.frames / self.media_info.audio.sample_rate_hz,
            "truncated": self.decode.truncated,
            "problem": self.decode.problem,
            "corrupt_packets": self.decode.corrupt_packets,
        }
        return out


def parse_blocks(only: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate a block selection (``"loudness,media_info"`` or a list); default: all blocks."""
    if only is None:
        return BLOCKS
    names = [s.strip() for s in only.split(",")] if isinstance(only, str) else [str(s) for s in only]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in BLOCKS]
    if unknown or not names:
        raise InvalidParameter(
            f"unknown block(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(BLOCKS)}"
        )
    return tuple(n for n in BLOCKS if n in names)


def diagnose(url: str, *, only: str | Sequence[str] | None = None, start: float | str | None = None,
             end: float | str | None = None, stream_index: int | None = None,
             gating: str = "level") -> DiagnoseResult:
    """Decode ``url`` once and run every requested analysis on the same blocks.

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    only : str or sequence of str, optional
        Blocks to compute (default all): see :data:`BLOCKS`.
    start, end : float or str, optional
        Range to analyse, seconds of file time.
    stream_index : int, optional
        Audio stream (0-based among audio streams).
    gating : str
        Loudness gating mode.
    """
    requested = parse_blocks(only)
    options = DiagnoseOptions(gating=gating)
    with io.stream(url, start=start, end=end, stream_index=stream_index) as s:
        analyzers = {name: ANALYZERS[name](s, options) for name in requested if name in ANALYZERS}
        if analyzers:
            for block in s:
                for analyzer in analyzers.values():
                    analyzer.push(block)
        return DiagnoseResult(
            url=url,
            media_info=s.info,
            blocks={name: a.result() for name, a in analyzers.items()},
            decode=s.report,
            requested=requested,
        )
