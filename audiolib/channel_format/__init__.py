"""Channel format over time (the Audio Format feature): which format each stretch of a file
carries (silence, mono, stereo, 5.1, pairs, SAP...), compressed audio (SMPTE ST 337 / IEC 61937
bursts) per channel, and alarms with the reference's settings. Streaming, one decode pass.

Modules: :mod:`.analyzer` (the analyzer), :mod:`.results` (labels, settings, results),
:mod:`.st337` (burst scanning), :mod:`.alarms` (alarm timing). The rules, thresholds and their
sources: docs/channel-format.md.
"""

from __future__ import annotations

from .alarms import alarm_intervals
from .analyzer import ChannelFormatAnalyzer, analyze
from .results import (
    FORMAT_MASK_BITS,
    LABELS,
    AlarmEvent,
    AlarmSettings,
    ChannelFormatResult,
    CompressedAudio,
    FormatSegment,
)
from .st337 import ST337_DATA_TYPES

__all__ = [
    "AlarmEvent",
    "AlarmSettings",
    "ChannelFormatAnalyzer",
    "ChannelFormatResult",
    "CompressedAudio",
    "FormatSegment",
    "FORMAT_MASK_BITS",
    "LABELS",
    "ST337_DATA_TYPES",
    "alarm_intervals",
    "analyze",
]
