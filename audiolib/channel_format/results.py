"""The Audio Format feature's labels, settings and results (the reference's JSON shapes). See docs/channel-format.md."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidParameter

#: Every label the analyzer gives, lower case as in the reference's example output.
LABELS: tuple[str, ...] = (
    "silence", "mono", "stereo", "5.1", "5.1 stereo", "stereo 5.1", "stereo pairs",
    "stereo sap", "5.1 sap", "stereo mono", "5.1 mono",
)
(_SILENCE, _MONO, _STEREO, _SURROUND, _SURROUND_STEREO, _STEREO_SURROUND, _PAIRS,
 _STEREO_SAP, _SURROUND_SAP, _STEREO_MONO, _SURROUND_MONO) = range(len(LABELS))

#: allowableAudioFormat bit of each label (the reference's table; ``stereo``, ``stereo mono`` and
#: ``5.1 mono`` are not in it and take the bit of the nearest format, see docs/channel-format.md).
FORMAT_MASK_BITS: dict[str, int] = {
    "5.1": 0b00000001,
    "5.1 stereo": 0b00000010,
    "stereo 5.1": 0b00000100,
    "stereo sap": 0b00001000,
    "5.1 sap": 0b00010000,
    "stereo pairs": 0b00100000,
    "mono": 0b01000000,
    "silence": 0b10000000,
    "stereo": 0b00100000,  # one stereo pair: the Stereo Pairs bit
    "stereo mono": 0b00001000,  # stereo + a mono pair: the Stereo SAP bit
    "5.1 mono": 0b00010000,  # 5.1 + a mono pair: the 5.1 SAP bit
}


def _fmt_time(seconds: float) -> str:
    """The reference's time offsets: seconds with 6 decimals and an ``s`` suffix."""
    return f"{seconds:.6f}s"


# ----------------------------------------------------------------------------------------------
# Settings and results
# ----------------------------------------------------------------------------------------------

_ALARM_KEYS = {
    "enabled": "enabled",
    "sensitivity": "sensitivity",
    "secsInAlarmDuration": "secs_in_alarm_duration",
    "allowCompressedAudio": "allow_compressed_audio",
    "allowableAudioFormat": "allowable_audio_format",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class AlarmSettings:
    """The reference's ``alarmSettings``, validated.

    Attributes
    ----------
    enabled : bool
        Raise alarms at all (the reference's default: false).
    sensitivity : float
        0..1: an alarm is active while the fraction of the trailing ``secs_in_alarm_duration``
        spent in violation is at least this (1: the whole window).
    secs_in_alarm_duration : float
        Seconds, >= 0: the trailing window (0: alarm exactly while in violation).
    allow_compressed_audio : int
        0..255; bit i set: compressed audio allowed on channel i.
    allowable_audio_format : int
        0..255; the formats allowed (:data:`FORMAT_MASK_BITS`); 255 allows all.
    """

    enabled: bool = False
    sensitivity: float = 1.0
    secs_in_alarm_duration: float = 10.0
    allow_compressed_audio: int = 0
    allowable_audio_format: int = 255

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InvalidParameter(f"alarmSettings.enabled={self.enabled!r}: must be true or false")
        if not (_is_number(self.sensitivity) and 0.0 <= self.sensitivity <= 1.0):
            raise InvalidParameter(f"alarmSettings.sensitivity={self.sensitivity!r}: must be a number in 0..1")
        if not (_is_number(self.secs_in_alarm_duration) and math.isfinite(self.secs_in_alarm_duration)
                and self.secs_in_alarm_duration >= 0):
            raise InvalidParameter(
                f"alarmSettings.secsInAlarmDuration={self.secs_in_alarm_duration!r}: must be seconds >= 0"
            )
        for key, value in (("allowCompressedAudio", self.allow_compressed_audio),
                           ("allowableAudioFormat", self.allowable_audio_format)):
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value <= 255):
                raise InvalidParameter(f"alarmSettings.{key}={value!r}: must be a bit mask 0..255")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AlarmSettings:
        """From the reference's camelCase JSON object; unknown keys are an error."""
        if not isinstance(d, Mapping):
            raise InvalidParameter(f"alarmSettings={d!r}: must be a JSON object")
        unknown = [k for k in d if k not in _ALARM_KEYS]
        if unknown:
            raise InvalidParameter(
                f"alarmSettings: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(_ALARM_KEYS)}"
            )
        return cls(**{_ALARM_KEYS[k]: v for k, v in d.items()})

    def allows_format(self, label: str) -> bool:
        """Whether ``label`` is allowed by ``allowable_audio_format``."""
        return bool(self.allowable_audio_format & FORMAT_MASK_BITS[label])


@dataclass(frozen=True)
class FormatSegment:
    """One stretch of one format. Times in seconds of file time."""

    label: str
    start_s: float
    end_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"audioFormat": self.label, "startTimeOffset": _fmt_time(self.start_s),
                "endTimeOffset": _fmt_time(self.end_s)}


@dataclass(frozen=True)
class CompressedAudio:
    """Compressed (non-PCM) audio carried in PCM channels over one stretch of time.

    Attributes
    ----------
    channels : tuple of int
        0-based channels carrying it (a pair in ST 337 frame mode, one channel in subframe mode,
        all channels when the demuxer unwrapped the whole file).
    format : str
        ``ac3``, ``eac3``, ``dolby_e``, ... (:data:`ST337_DATA_TYPES`), or the decoder's codec.
    data_type : int or None
        ST 337 data_type (Pc bits 0-4); None when the demuxer unwrapped the stream.
    word_bits : int or None
        ST 337 mode (16, 20 or 24-bit data words).
    start_s, end_s : float
        First burst to the end of the last burst's period, seconds of file time.
    bursts : int
        Bursts found (0 when unwrapped by the demuxer).
    allowed : bool
        Every channel is in ``compressed_channels`` or allowed by ``allowCompressedAudio``.
    note : str or None
    """

    channels: tuple[int, ...]
    format: str
    data_type: int | None
    word_bits: int | None
    start_s: float
    end_s: float
    bursts: int
    allowed: bool
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "channels": list(self.channels),
            "format": self.format,
            "dataType": self.data_type,
            "wordBits": self.word_bits,
            "startTimeOffset": _fmt_time(self.start_s),
            "endTimeOffset": _fmt_time(self.end_s),
            "bursts": self.bursts,
            "allowed": self.allowed,
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class AlarmEvent:
    """An alarm: ``kind`` is ``audioFormat`` or ``compressedAudio``; times in seconds."""

    kind: str
    start_s: float
    end_s: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "startTimeOffset": _fmt_time(self.start_s),
                "endTimeOffset": _fmt_time(self.end_s), "reason": self.reason}


@dataclass(frozen=True)
class ChannelFormatResult:
    """Channel format over time, compressed audio found, and alarms.

    Attributes
    ----------
    segments : tuple of FormatSegment
        Consecutive, covering the analysed audio.
    compressed : tuple of CompressedAudio
        Ordered by start time.
    alarms : tuple of AlarmEvent
        Empty unless alarms are enabled.
    start_s, duration_s : float
        File time of the first sample, and seconds analysed.
    window_s : float
        Analysis window.
    """

    #: Properties the QC report stores as columns (audioqc.report; other properties are not).
    REPORT_PROPERTIES: ClassVar[tuple[str, ...]] = ("labels",)

    segments: tuple[FormatSegment, ...]
    compressed: tuple[CompressedAudio, ...]
    alarms: tuple[AlarmEvent, ...]
    start_s: float
    duration_s: float
    window_s: float

    def to_dict(self) -> dict[str, Any]:
        """The reference's shape: ``audioFormatAnnotations``, plus ``compressedChannels`` and ``alarms``."""
        return {
            "audioFormatAnnotations": [s.to_dict() for s in self.segments],
            "compressedChannels": [c.to_dict() for c in self.compressed],
            "alarms": [a.to_dict() for a in self.alarms],
        }

    @property
    def labels(self) -> tuple[str, ...]:
        """The segments' labels in order."""
        return tuple(s.label for s in self.segments)
