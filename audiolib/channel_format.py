"""Channel format over time (the reference's *Audio Format* feature), streaming.

:class:`ChannelFormatAnalyzer` consumes float32 ``(channels, frames)`` blocks and segments the file
over time by the format its channels actually carry, decided from channel activity and
inter-channel correlation; it finds compressed (non-PCM) audio carried in PCM channels as SMPTE
ST 337 / IEC 61937 data bursts; and it raises the reference's alarms. It keeps, per analysis window,
only a few sums (not the samples), and beyond that only the merged segments, the burst runs and the
alarms: memory is flat whatever the duration.

Windows
    The file is cut into windows of ``window_s`` (0.1 s) from the first sample pushed. Per window
    and channel: the variance (the mean square after removing the window's mean, so a DC offset
    is not audio) and the covariance with every other channel.

    - A channel is **active** when its RMS is at least ``silence_dbfs`` (-60 dBFS) and it carries
      no ST 337 data in the window (data channels are not PCM audio; they are reported in
      ``compressedChannels`` and otherwise treated as inactive).
    - Two active channels carry **the same signal** when the magnitude of their correlation
      coefficient is at least ``mono_correlation`` (0.99). The magnitude: a polarity-inverted
      copy (L = -R) is still one signal. 0.99 because narrow stereo mixes reach 0.97-0.98 (a
      recorded track measured 0.975 for half a minute), while L = R through AAC, MP3 or Opus stays
      above 0.99 in all but isolated windows, which the segment rule below absorbs.

Parts
    The channels are grouped into programme *parts*, by channel count:

    - 1 channel: one single-channel part. 2 channels: one pair.
    - 6 channels: one 5.1 part (channels in FFmpeg/SMPTE order, front pair first) when the layout
      names an LFE channel (FFmpeg's default 6-channel layout does); otherwise three pairs.
    - 8 or more channels: ``5.1 + pairs`` (5.1 on channels 0-5, LFE at 3), ``pair + 5.1 + pairs``
      (5.1 on channels 2-7, LFE at 5) or ``pairs``, chosen from the signal, since an 8-channel
      file carries FFmpeg's 7.1 channel names whatever it holds: a channel is *LFE-like* when it
      is active and band-limited (mean square of its first difference below that of a sine at
      ``lfe_max_hz``, 150 Hz; LFE is band-limited to 120 Hz). Channel 3 LFE-like selects the
      first, channel 5 the second; the choice holds (later windows whose LFE is silent keep it)
      until the chosen LFE channel carries full-band audio, which returns to ``pairs``.
    - Other counts (3, 4, 5, 7): the AES3 pairs (0, 1), (2, 3), ...; an odd last channel is a
      single-channel part.

    A part's state: **silent** (no active channel); **mono** (one active channel, or all its
    active channels the same signal); **stereo** (a pair with two different active channels, or
    a 5.1 part whose only active channels are its front pair); **5.1** (a 5.1 part with active
    channels beyond its front pair that are not all one signal).

Labels (lower case, as in the reference's output)
    ``silence``
        No channel is active.
    ``mono``
        All active channels carry the same signal (this includes one active channel).
    Otherwise, if one part is active, its state: ``stereo`` or ``5.1``. With two or more active
    parts, from the first two active parts (A, B) in channel order and the number n of active
    parts:

    ``5.1 stereo``
        A is 5.1 and B is stereo (or n > 2).
    ``5.1 sap`` / ``5.1 mono``
        A is 5.1, B is mono and n = 2: ``5.1 mono`` when B carries A's programme (the correlation
        of B's summed channels with A's summed channels is at least ``downmix_correlation``,
        0.5: a fold-down), ``5.1 sap`` when it carries another (a secondary audio programme).
    ``stereo 5.1``
        A is stereo or mono and B is 5.1.
    ``stereo sap`` / ``stereo mono``
        A is stereo, B is mono and n = 2; ``stereo mono`` when B carries A's programme, as above.
    ``stereo pairs``
        Every other combination of two or more active pairs (stereo + stereo, mono + stereo,
        independent mono + mono, three or more pairs).

Segments
    Adjacent windows with the same label merge. A run shorter than ``min_segment_s`` (0.5 s) does
    not make a segment: it is absorbed by the segment before it (by the one after it at the start
    of the file), so a flicker neither splits nor interrupts a segment. A boundary is therefore
    placed within one window of a change that lasts at least ``min_segment_s``.

Compressed audio (SMPTE ST 337 / IEC 61937)
    Every adjacent channel pair (0, 1), (2, 3), ... is scanned as an AES3 pair (ST 337 *frame
    mode*: Pa and Pb in the two subframes of one sample frame, Pc and Pd in the next), and every
    channel on its own (ST 337 *subframe mode*: Pa, Pb, Pc, Pd in consecutive samples of one
    channel). Samples are turned back into 24-bit words (``round(x * 2**23)``; exact for decoded
    16- and 24-bit PCM); 16- and 20-bit data words are left-justified in them. A burst is a
    preamble Pa/Pb of one mode (16-, 20- or 24-bit); its Pc (burst_info, left-justified) gives the
    data type (bits 0-4, SMPTE ST 338 / IEC 61937-2). Bursts on the same channels no more than
    ``max_burst_gap_s`` (0.25 s) apart form a run; a run needs at least two bursts (one chance
    match of a 16-bit preamble in PCM audio is possible in an hour of loud noise; two within
    0.25 s are not). A run extends from its first burst to its last burst plus the burst period.
    Only PCM and lossless codecs are scanned (a lossy decode cannot carry bit-exact words).

    When FFmpeg's WAV demuxer finds that a WAV's whole PCM payload is one IEC 61937 stream, it
    unwraps and decodes it: the decoder reports codec ``ac3``/``eac3``/``dts`` from a ``wav``
    container and the blocks hold the decoded programme. Given that codec and container, the
    analyzer reports compressed audio on all channels for the whole file, with a note.

Alarms (``alarmSettings``)
    ``severity(t)`` is the fraction of the trailing ``secsInAlarmDuration`` window ``[t - D, t]``
    spent in violation (time before the start of the file counts as no violation). An alarm is
    active while ``severity(t) >= sensitivity`` (and above 0); each active interval is one alarm
    event (start, end, reason). With ``sensitivity`` 1 a violation raises an alarm once it has
    lasted ``D`` seconds; with ``D`` = 0 an alarm is active exactly while in violation.

    - *Format*: a segment whose label is not allowed by ``allowableAudioFormat``. Bits (the
      reference's table): 5.1 = 1, 5.1 Stereo = 2, Stereo 5.1 = 4, Stereo SAP = 8, 5.1 SAP = 16,
      Stereo Pairs = 32, Mono = 64, Silent = 128. The labels outside the table: ``stereo`` (one
      stereo pair) is allowed by the Stereo Pairs bit; ``stereo mono`` (stereo plus a mono pair)
      by the Stereo SAP bit; ``5.1 mono`` by the 5.1 SAP bit.
    - *Compressed audio*: a burst run on a channel i whose bit i of ``allowCompressedAudio`` is
      0 and that is not listed in ``compressed_channels`` (the reference's per-job list of
      channels allowed to carry compressed audio). Channels above 7 have no bit.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .channels import LFE_NAMES, default_layout
from .errors import InvalidParameter

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
    "analyze",
]

#: Every label the analyzer gives, lower case as in the reference's example output.
LABELS: tuple[str, ...] = (
    "silence", "mono", "stereo", "5.1", "5.1 stereo", "stereo 5.1", "stereo pairs",
    "stereo sap", "5.1 sap", "stereo mono", "5.1 mono",
)
(_SILENCE, _MONO, _STEREO, _SURROUND, _SURROUND_STEREO, _STEREO_SURROUND, _PAIRS,
 _STEREO_SAP, _SURROUND_SAP, _STEREO_MONO, _SURROUND_MONO) = range(len(LABELS))

#: allowableAudioFormat bit of each label (the reference's table; ``stereo``, ``stereo mono`` and
#: ``5.1 mono`` are not in it and take the bit of the nearest format, see the module docstring).
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

# SMPTE ST 337 sec. 6 / IEC 61937-1 sec. 6.1: burst preambles Pa (sync word 1) and Pb (sync word 2)
# for 16-, 20- and 24-bit data words.
_PA = {16: 0xF872, 20: 0x6F872, 24: 0x96F872}
_PB = {16: 0x4E1F, 20: 0x54E1F, 24: 0xA54E1F}
_FULL_SCALE_24 = float(1 << 23)


def _word_to_float(word24: int) -> np.float32:
    """A 24-bit two's-complement word -> the float32 sample FFmpeg's decode gives for it."""
    signed = word24 - (1 << 24) if word24 & 0x800000 else word24
    return np.float32(signed / _FULL_SCALE_24)


# Preambles as the float32 samples they decode to: data words are left-justified in 24 bits.
_PA_F = {bits: _word_to_float(_PA[bits] << (24 - bits)) for bits in _PA}
_PB_F = {bits: _word_to_float(_PB[bits] << (24 - bits)) for bits in _PB}

#: Burst data types, ``data_type`` = bits 0-4 of Pc (IEC 61937-2 Table 2; SMPTE ST 338 Table 1
#: where IEC 61937 leaves a code reserved: 2, 16, 26-30). Names are FFmpeg codec names where one
#: exists. 0, 2, 3 and 26-30 are data, not audio.
ST337_DATA_TYPES: dict[int, str] = {
    0: "null",
    1: "ac3",
    2: "timestamp",  # SMPTE ST 338
    3: "pause",
    4: "mp1",  # MPEG-1 layer 1
    5: "mpeg_audio",  # MPEG-1 layer 2/3, MPEG-2 without extension
    6: "mpeg_audio",  # MPEG-2 with extension
    7: "aac",  # MPEG-2 AAC ADTS
    8: "mp1",  # MPEG-2 layer 1 low sampling frequency
    9: "mpeg_audio",  # MPEG-2 layer 2 low sampling frequency
    10: "mpeg_audio",  # MPEG-2 layer 3 low sampling frequency
    11: "dts",  # DTS type I (IEC 61937-5)
    12: "dts",  # DTS type II
    13: "dts",  # DTS type III
    14: "atrac",
    15: "atrac3",
    16: "eac3",  # SMPTE ST 338
    17: "dts",  # DTS type IV (DTS-HD)
    18: "wmapro",
    19: "aac",  # MPEG-2 AAC low sampling frequency
    20: "aac",  # MPEG-4 AAC
    21: "eac3",  # IEC 61937-3
    22: "truehd",  # MAT (IEC 61937-9)
    26: "utility",  # SMPTE ST 338
    27: "klv",  # SMPTE ST 338 (SMPTE 336 KLV)
    28: "dolby_e",  # SMPTE ST 338
    29: "captioning",  # SMPTE ST 338
    30: "user_defined",  # SMPTE ST 338
}
_FILLER_TYPES = {0, 3}  # null and pause bursts: a stream is present but says nothing of its format

# Codecs whose decoded samples can hold ST 337 words bit-exactly (all PCM, and lossless codecs).
_LOSSLESS = {"flac", "alac", "wavpack", "tta", "ape", "tak", "shorten", "s302m", "mlp", "truehd"}
# Codecs FFmpeg's WAV demuxer yields when it unwraps an IEC 61937 / ST 337 stream from PCM.
# (Not MPEG audio: a WAV may hold MP2/MP3 natively, WAVE_FORMAT_MPEG/MPEGLAYER3, as BWF often does.)
_UNWRAPPED = {"ac3", "eac3", "dts", "truehd", "mlp", "dolby_e"}
_UNWRAPPED_NOTE = (
    "FFmpeg's WAV demuxer found one IEC 61937/ST 337 stream filling the file's PCM payload and "
    "decoded it as {codec}: the whole file is compressed audio; the channels listed are the "
    "decoded programme's, not the WAV's PCM channels"
)


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


# ----------------------------------------------------------------------------------------------
# ST 337 burst scanning
# ----------------------------------------------------------------------------------------------

@dataclass
class _BurstRun:
    channels: tuple[int, ...]
    word_bits: int
    first: int
    last: int
    count: int = 1
    period: int = 0
    types: dict[int, int] = field(default_factory=dict)


def _words(samples: np.ndarray) -> np.ndarray:
    """float samples -> 24-bit words (0..2**24-1), exact for decoded 16/24-bit PCM."""
    return np.rint(samples.astype(np.float64) * _FULL_SCALE_24).astype(np.int64) & 0xFFFFFF


def _find_bursts(x: np.ndarray, limit: int, modes: Sequence[int]) -> list[tuple[int, int, int, int, int]]:
    """Burst preambles in ``x`` (channels, frames) starting before frame ``limit``.

    ``x`` must hold 3 frames after ``limit`` (for Pc and Pd). Returns ``(frame, first channel,
    channel count, word bits, data_type)`` tuples.
    """
    channels, frames = x.shape
    found: list[tuple[int, int, int, int, int]] = []
    if limit <= 0:
        return found
    for bits in modes:
        flat = np.flatnonzero(x == _PA_F[bits])  # the whole (contiguous) array: faster than a slice
        if flat.size == 0:
            continue
        ch, pos = np.divmod(flat, frames)
        keep = pos < limit
        ch, pos = ch[keep], pos[keep]
        # Frame mode: Pa on an even channel, Pb on the next in the same frame (ST 337 sec. 5).
        pair = (ch % 2 == 0) & (ch + 1 < channels)
        c, p = ch[pair], pos[pair]
        ok = x[c + 1, p] == _PB_F[bits]
        c, p = c[ok], p[ok]
        if c.size:
            dtypes = (_words(x[c, p + 1]) >> 8) & 0x1F  # Pc, burst_info left-justified
            found += [(int(a), int(b), 2, bits, int(t)) for a, b, t in zip(p, c, dtypes)]
        # Subframe mode: Pa, Pb, Pc, Pd in consecutive samples of one channel.
        ok = x[ch, pos + 1] == _PB_F[bits]
        c, p = ch[ok], pos[ok]
        if c.size:
            dtypes = (_words(x[c, p + 2]) >> 8) & 0x1F
            found += [(int(a), int(b), 1, bits, int(t)) for a, b, t in zip(p, c, dtypes)]
    return found


# ----------------------------------------------------------------------------------------------
# Alarm timing
# ----------------------------------------------------------------------------------------------

def _merge(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def alarm_intervals(violations: Sequence[tuple[float, float]], t0: float, t1: float, *,
                    duration_s: float, sensitivity: float) -> list[tuple[float, float]]:
    """Where the alarm is active: ``severity(t) >= sensitivity`` and ``> 0`` on ``[t0, t1]``.

    ``severity(t)`` = (time in ``violations`` within ``[t - duration_s, t]``) / ``duration_s``,
    which is piecewise linear in t with breakpoints at the violations' ends and those plus the
    duration, so the crossings are found exactly.
    """
    viol = _merge([(max(s, t0), min(e, t1)) for s, e in violations])
    if not viol or t1 <= t0:
        return []
    if duration_s <= 0:
        return viol
    vs = np.array([v[0] for v in viol])
    ve = np.array([v[1] for v in viol])
    points = np.unique(np.clip(np.concatenate([[t0, t1], vs, ve, vs + duration_s, ve + duration_s]), t0, t1))
    lo = points[:, None] - duration_s
    overlap = np.clip(np.minimum(ve[None, :], points[:, None]) - np.maximum(vs[None, :], lo), 0.0, None)
    sev = overlap.sum(axis=1) / duration_s
    # Float slack: a full window can give 1 - 1 ulp. Sensitivity 0 still needs some violation.
    thr = sensitivity - 1e-9 if sensitivity > 1e-9 else 1e-12
    active: list[tuple[float, float]] = []
    for i in range(len(points) - 1):
        p, q, fp, fq = points[i], points[i + 1], sev[i], sev[i + 1]
        if fp >= thr and fq >= thr:
            active.append((p, q))
        elif fp >= thr or fq >= thr:
            cross = min(max(p + (sensitivity - fp) / (fq - fp) * (q - p), p), q)
            active.append((p, cross) if fp >= thr else (cross, q))
    # Touching a threshold at one instant (within float slack) is not an alarm.
    return [(float(a), float(b)) for a, b in _merge(active) if b - a > 1e-6]


# ----------------------------------------------------------------------------------------------
# The analyzer
# ----------------------------------------------------------------------------------------------

class _Segmenter:
    """Runs of window labels -> segments; runs shorter than ``min_frames`` are absorbed."""

    def __init__(self, min_frames: int) -> None:
        self.min_frames = min_frames
        self.segments: list[list[int]] = []  # [label, start, end] frames
        self._run: list[int] | None = None
        self._head: list[int] | None = None  # a short first run, waiting for the next run

    def add(self, label: int, start: int, end: int) -> None:
        run = self._run
        if run is not None and run[0] == label:
            run[2] = end
            return
        self._close()
        self._run = [label, start, end]

    def _close(self) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        if self._head is not None:  # the start of the file was a flicker: it joins this run
            run[1], self._head = self._head[1], None
        short = run[2] - run[1] < self.min_frames
        if self.segments and (short or self.segments[-1][0] == run[0]):
            self.segments[-1][2] = run[2]
        elif short:
            self._head = run
        else:
            self.segments.append(run)

    def finish(self) -> list[list[int]]:
        self._close()
        if self._head is not None:  # the whole file is shorter than one segment
            self.segments.append(self._head)
            self._head = None
        return self.segments


class ChannelFormatAnalyzer:
    """Streaming channel-format analysis: ``push`` every block, then ``result``.

    Parameters
    ----------
    sample_rate : int
        Hz.
    channel_names : tuple of str
        FFmpeg channel names (their count is the channel count; an ``LFE`` among 6 channels
        makes them one 5.1 part).
    start_s : float
        File time of the first sample pushed, seconds.
    codec, container : str
        The decoder's codec name and the container kind (``io.probe``): decide whether ST 337
        words can survive the decode, and detect a WAV unwrapped by FFmpeg's demuxer.
    compressed_channels : tuple of int
        Channels on which compressed audio is allowed (the reference's ``compressed_channels``).
    alarms : AlarmSettings, optional
        Alarms to raise (none when absent or not enabled).
    window_s : float
        Analysis window, seconds.
    min_segment_s : float
        Shorter runs do not make segments, seconds.
    silence_dbfs : float
        RMS below which a channel is inactive, dBFS.
    mono_correlation : float
        |correlation| at or above which two channels carry the same signal.
    downmix_correlation : float
        |correlation| at or above which a mono pair carries the main programme (``... mono``
        rather than ``... sap``).
    lfe_max_hz : float
        A channel whose content lies below about this is LFE-like (8+ channels), Hz.
    max_burst_gap_s : float
        Bursts further apart start a new compressed-audio run, seconds.
    """

    def __init__(self, sample_rate: int, channel_names: tuple[str, ...], *, start_s: float = 0.0,
                 codec: str = "pcm_s16le", container: str = "wav", compressed_channels: tuple[int, ...] = (),
                 alarms: AlarmSettings | None = None, window_s: float = 0.1, min_segment_s: float = 0.5,
                 silence_dbfs: float = -60.0, mono_correlation: float = 0.99,
                 downmix_correlation: float = 0.5, lfe_max_hz: float = 150.0,
                 max_burst_gap_s: float = 0.25) -> None:
        if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
            raise InvalidParameter(f"sample_rate={sample_rate!r}: must be a positive integer (Hz)")
        self.channel_names = tuple(str(n) for n in channel_names)
        channels = len(self.channel_names)
        if channels < 1:
            raise InvalidParameter(f"channel_names={channel_names!r}: need at least one channel")
        if not (_is_number(start_s) and math.isfinite(start_s)):
            raise InvalidParameter(f"start_s={start_s!r}: must be a finite number of seconds")
        for name, value, low in (("window_s", window_s, 0.0), ("min_segment_s", min_segment_s, None),
                                 ("max_burst_gap_s", max_burst_gap_s, 0.0), ("lfe_max_hz", lfe_max_hz, 0.0)):
            if not (_is_number(value) and math.isfinite(value) and (value > low if low is not None else value >= 0)):
                raise InvalidParameter(f"{name}={value!r}: must be a positive number")
        for name, value in (("mono_correlation", mono_correlation), ("downmix_correlation", downmix_correlation)):
            if not (_is_number(value) and 0.0 <= value <= 1.0):
                raise InvalidParameter(f"{name}={value!r}: must be in 0..1")
        if not (_is_number(silence_dbfs) and silence_dbfs <= 0):
            raise InvalidParameter(f"silence_dbfs={silence_dbfs!r}: must be a level <= 0 dBFS")
        bad = [c for c in compressed_channels if not (isinstance(c, (int, np.integer)) and 0 <= c < channels)]
        if bad:
            raise InvalidParameter(f"compressed_channels={tuple(compressed_channels)!r}: channel(s) {bad} "
                                   f"outside 0..{channels - 1}")
        if alarms is not None and not isinstance(alarms, AlarmSettings):
            raise InvalidParameter(f"alarms={alarms!r}: must be an AlarmSettings")

        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.start_s = float(start_s)
        self.codec = str(codec)
        self.container = str(container)
        self.compressed_channels = tuple(int(c) for c in compressed_channels)
        self.alarms = alarms
        self.window_frames = max(1, int(round(window_s * self.sample_rate)))
        self.window_s = self.window_frames / self.sample_rate
        self._var_floor = 10.0 ** (silence_dbfs / 10.0)
        self._mono_r = float(mono_correlation)
        self._downmix_r = float(downmix_correlation)
        # Mean square of the first difference of a unit-power sine at f: (2 sin(pi f / fs))^2.
        self._lfe_ratio = (2.0 * math.sin(math.pi * min(lfe_max_hz, self.sample_rate / 2) / self.sample_rate)) ** 2
        self._gap = max(1, int(round(max_burst_gap_s * self.sample_rate)))
        self._segmenter = _Segmenter(int(round(min_segment_s * self.sample_rate)))

        # Part layouts: ("kind", channels) with kind "single", "pair" or "5.1".
        self._lfe_probe = (3, 5) if channels >= 8 else ()
        self._lfe_hint: int | None = None
        self._layouts = {hint: self._parts(hint) for hint in (None, 3, 5)}

        # Window accumulator (a window straddling blocks).
        self._acc_n = 0
        self._acc_s = np.zeros(channels)
        self._acc_p = np.zeros((channels, channels))
        self._acc_d = np.zeros(channels)
        self._frames = 0  # frames pushed

        # ST 337 scanning.
        self._unwrapped = self.container.lower() == "wav" and self.codec.lower() in _UNWRAPPED
        scan = self.codec.startswith("pcm_") or self.codec in _LOSSLESS
        if not scan or self._unwrapped:
            self._modes: tuple[int, ...] = ()
        elif self.codec.startswith(("pcm_s16", "pcm_u16")):
            self._modes = (16,)  # 20/24-bit preambles have low bits a 16-bit sample cannot hold
        else:
            self._modes = (16, 20, 24)
        self._tail = np.zeros((channels, 0), dtype=np.float32)
        self._tail_start = 0
        self._open_runs: dict[tuple[tuple[int, ...], int], _BurstRun] = {}
        self._runs: list[_BurstRun] = []
        self._last_burst = np.full(channels, -(1 << 62), dtype=np.int64)

    # -- structure ------------------------------------------------------------------------------

    def _parts(self, hint: int | None) -> list[tuple[str, tuple[int, ...]]]:
        n = self.channels
        names = {name.upper() for name in self.channel_names}
        if n == 6 and names & LFE_NAMES:
            return [("5.1", tuple(range(6)))]
        parts: list[tuple[str, tuple[int, ...]]] = []
        start = 0
        if n >= 8 and hint == 3:
            parts.append(("5.1", tuple(range(6))))
            start = 6
        elif n >= 8 and hint == 5:
            parts += [("pair", (0, 1)), ("5.1", tuple(range(2, 8)))]
            start = 8
        for c in range(start, n - 1, 2):
            parts.append(("pair", (c, c + 1)))
        if (n - start) % 2:
            parts.append(("single", (n - 1,)))
        return parts

    # -- streaming ------------------------------------------------------------------------------

    def push(self, block: np.ndarray) -> None:
        """Analyse the next block: float32 ``(channels, frames)``, full scale 1.0."""
        x = np.asarray(block)
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise InvalidParameter(f"block of shape {x.shape}: expected ({self.channels}, frames)")
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        n = x.shape[1]
        if n == 0:
            return
        first = self._frames
        bursts = self._scan(x, first) if self._modes else []
        windows: list[tuple[np.ndarray, ...]] = []  # (starts, counts, sums, products, diff energy)
        pos = 0
        w = self.window_frames
        if self._acc_n:
            take = min(w - self._acc_n, n)
            self._accumulate(x[:, :take])
            pos = take
            if self._acc_n == w:
                windows.append(self._flush_acc(first + pos))
        k = (n - pos) // w
        if k:
            s, p, d = self._stats(x[:, pos:pos + k * w].reshape(self.channels, k, w))
            windows.append((first + pos + w * np.arange(k), np.full(k, w), s, p, d))
            pos += k * w
        if pos < n:
            self._accumulate(x[:, pos:])
        self._frames += n
        if windows:
            self._classify(*(np.concatenate(parts) for parts in zip(*windows)), bursts)
        if bursts:
            self._track(bursts)
        self._close_stale(self._frames - self._gap)

    def _stats(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per window sums, cross products and first-difference energy of ``xs`` (C, k, W)."""
        c, k, _ = xs.shape
        s = xs.sum(axis=2).T.astype(np.float64)  # (k, C); float32 pairwise summation
        if c <= 2:
            p = np.empty((k, c, c))
            for i in range(c):
                for j in range(i, c):
                    p[:, i, j] = p[:, j, i] = np.einsum("kw,kw->k", xs[i], xs[j])
        else:  # one batched product (BLAS) beats C(C+1)/2 einsums
            xt = xs.transpose(1, 0, 2)
            p = np.matmul(xt, xt.transpose(0, 2, 1)).astype(np.float64)
        d = np.zeros((k, c))
        for ch in self._lfe_probe:
            diff = np.diff(xs[ch], axis=1)
            d[:, ch] = np.einsum("kw,kw->k", diff, diff)
        return s, p, d

    def _accumulate(self, seg: np.ndarray) -> None:
        """Add a part of a window (it straddles blocks) to the running sums."""
        self._acc_s += seg.sum(axis=1)
        self._acc_p += seg @ seg.T
        for ch in self._lfe_probe:
            diff = np.diff(seg[ch])
            self._acc_d[ch] += float(diff @ diff)
        self._acc_n += seg.shape[1]

    def _flush_acc(self, end: int) -> tuple[np.ndarray, ...]:
        n = self._acc_n
        out = (np.array([end - n]), np.array([n]), self._acc_s[None].copy(), self._acc_p[None].copy(),
               self._acc_d[None].copy())
        self._acc_n = 0
        self._acc_s[:] = 0.0
        self._acc_p[:] = 0.0
        self._acc_d[:] = 0.0
        return out

    # -- classification -------------------------------------------------------------------------

    def _classify(self, starts: np.ndarray, counts: np.ndarray, s: np.ndarray, p: np.ndarray,
                  d: np.ndarray, bursts: list[tuple[int, int, int, int, int]]) -> None:
        """Label consecutive windows (first frames ``starts``, lengths ``counts``); feed the segmenter."""
        k = len(counts)
        counts = counts.astype(np.float64)
        mean = s / counts[:, None]
        cov = p / counts[:, None, None] - mean[:, :, None] * mean[:, None, :]
        var = np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0)
        active = var >= self._var_floor
        ends = starts + counts.astype(np.int64)
        data = self._data_mask(starts, ends, bursts)
        if data is not None:
            active &= ~data
        if self.channels <= 2:
            labels = self._label_fast(active, cov, var)
        else:
            ratio = d / np.maximum(var * counts[:, None], 1e-30)
            labels = self._label_parts(active, cov, var, ratio)
        # Runs of equal labels go to the segmenter in one call each.
        change = np.flatnonzero(np.diff(labels)) + 1
        bounds = np.concatenate([[0], change, [k]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            self._segmenter.add(int(labels[a]), int(starts[a]), int(ends[b - 1]))

    def _label_fast(self, active: np.ndarray, cov: np.ndarray, var: np.ndarray) -> np.ndarray:
        """Vectorised labels for one or two channels."""
        n_active = active.sum(axis=1)
        labels = np.where(n_active == 0, _SILENCE, _MONO)
        if self.channels == 2:
            with np.errstate(divide="ignore", invalid="ignore"):
                r = cov[:, 0, 1] / np.sqrt(var[:, 0] * var[:, 1])
            labels = np.where((n_active == 2) & ~(np.abs(r) >= self._mono_r), _STEREO, labels)
        return labels

    def _label_parts(self, active: np.ndarray, cov: np.ndarray, var: np.ndarray, ratio: np.ndarray) -> np.ndarray:
        """Labels for three or more channels: part states vectorised over windows, then combined."""
        sd = np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cov / (sd[:, :, None] * sd[:, None, :])
        # same[w, i, j]: channels i and j carry one signal, or one of them is inactive.
        same = (np.abs(r) >= self._mono_r) | ~active[:, :, None] | ~active[:, None, :]
        labels = np.where(active.any(axis=1), -1, _SILENCE)
        labels[(labels == -1) & same.all(axis=(1, 2))] = _MONO
        todo = np.flatnonzero(labels == -1)
        if todo.size == 0:
            return labels
        states = {hint: self._part_states(parts, active, same) for hint, parts in self._layouts.items()}
        carries: dict[tuple[int | None, int, int], np.ndarray] = {}
        for i in todo:
            if self._lfe_probe:
                self._update_lfe_hint(active[i], ratio[i])
            hint = self._lfe_hint
            act = [(j, int(st[i])) for j, st in enumerate(states[hint]) if st[i] >= 0]
            if len(act) == 1:
                labels[i] = act[0][1]
                continue
            (ja, a), (jb, b) = act[0], act[1]
            if (a == _SURROUND or a == _STEREO) and b == _MONO and len(act) == 2:
                key = (hint, ja, jb)
                if key not in carries:
                    carries[key] = self._carries(cov, active, self._layouts[hint][ja][1], self._layouts[hint][jb][1])
                if a == _SURROUND:
                    labels[i] = _SURROUND_MONO if carries[key][i] else _SURROUND_SAP
                else:
                    labels[i] = _STEREO_MONO if carries[key][i] else _STEREO_SAP
            elif a == _SURROUND:
                labels[i] = _SURROUND_STEREO
            elif b == _SURROUND:
                labels[i] = _STEREO_SURROUND
            else:
                labels[i] = _PAIRS
        return labels

    @staticmethod
    def _part_states(parts: list[tuple[str, tuple[int, ...]]], active: np.ndarray,
                     same: np.ndarray) -> list[np.ndarray]:
        """Per part, per window: -1 (silent), mono, stereo or 5.1 (module docstring)."""
        out = []
        for kind, chans in parts:
            ix = list(chans)
            act = active[:, ix]
            one = same[:, ix][:, :, ix].all(axis=(1, 2))
            wide = act[:, 2:].any(axis=1) if kind == "5.1" else np.ones(len(act), dtype=bool)
            state = np.where(one, _MONO, np.where(wide & (kind == "5.1"), _SURROUND, _STEREO))
            out.append(np.where(act.any(axis=1), state, -1))
        return out

    def _carries(self, cov: np.ndarray, active: np.ndarray, main: tuple[int, ...],
                 other: tuple[int, ...]) -> np.ndarray:
        """Per window: the summed active channels of ``other`` correlate with those of ``main``."""
        wa = np.zeros(active.shape)
        wb = np.zeros(active.shape)
        wa[:, list(main)] = active[:, list(main)]
        wb[:, list(other)] = active[:, list(other)]
        cross = np.einsum("ki,kij,kj->k", wa, cov, wb)
        va = np.einsum("ki,kij,kj->k", wa, cov, wa)
        vb = np.einsum("ki,kij,kj->k", wb, cov, wb)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(cross) / np.sqrt(va * vb) >= self._downmix_r

    def _update_lfe_hint(self, active: np.ndarray, ratio: np.ndarray) -> None:
        lfe = {c: bool(active[c] and ratio[c] < self._lfe_ratio) for c in self._lfe_probe}
        if lfe[3]:
            self._lfe_hint = 3
        elif lfe[5]:
            self._lfe_hint = 5
        elif self._lfe_hint is not None and active[self._lfe_hint]:
            self._lfe_hint = None  # the chosen LFE channel now carries full-band audio

    # -- ST 337 ---------------------------------------------------------------------------------

    def _scan(self, x: np.ndarray, first: int) -> list[tuple[int, int, int, int, int]]:
        """Bursts whose Pa lies in the unexamined tail or this block (absolute frames, sorted)."""
        n = x.shape[1]
        found: list[tuple[int, int, int, int, int]] = []
        tail_n = self._tail.shape[1]
        if n >= 3:
            if tail_n:
                seam = np.concatenate([self._tail, x[:, :3]], axis=1)
                found += [(f + self._tail_start, *rest) for f, *rest in _find_bursts(seam, tail_n, self._modes)]
            found += [(f + first, *rest) for f, *rest in _find_bursts(x, n - 3, self._modes)]
            self._tail = x[:, n - 3:].copy()
            self._tail_start = first + n - 3
        else:
            seam = np.concatenate([self._tail, x], axis=1)
            limit = max(0, seam.shape[1] - 3)
            found += [(f + self._tail_start, *rest) for f, *rest in _find_bursts(seam, limit, self._modes)]
            self._tail = seam[:, limit:].copy()
            self._tail_start += limit
        found.sort()
        return found

    def _data_mask(self, starts: np.ndarray, ends: np.ndarray,
                   bursts: list[tuple[int, int, int, int, int]]) -> np.ndarray | None:
        """(k, C): channels carrying ST 337 data in each window (a burst within the gap before it)."""
        if self._unwrapped or (not bursts and self._last_burst.max() < starts[0] - self._gap):
            return None
        mask = np.zeros((len(starts), self.channels), dtype=bool)
        per_channel: dict[int, list[int]] = {}
        for frame, c0, nch, _, _ in bursts:
            for c in range(c0, c0 + nch):
                per_channel.setdefault(c, []).append(frame)
        for c in range(self.channels):
            frames = np.array([self._last_burst[c], *per_channel.get(c, [])], dtype=np.int64)
            hits = np.searchsorted(frames, ends) - np.searchsorted(frames, starts - self._gap)
            mask[:, c] = hits > 0
        return mask

    def _track(self, bursts: list[tuple[int, int, int, int, int]]) -> None:
        for frame, c0, nch, bits, dtype in bursts:
            chans = tuple(range(c0, c0 + nch))
            self._last_burst[list(chans)] = frame
            key = (chans, bits)
            run = self._open_runs.get(key)
            if run is not None and frame - run.last <= self._gap:
                run.period = frame - run.last
                run.last = frame
                run.count += 1
            else:
                if run is not None:
                    self._keep(run)
                run = self._open_runs[key] = _BurstRun(chans, bits, frame, frame)
            run.types[dtype] = run.types.get(dtype, 0) + 1

    def _keep(self, run: _BurstRun) -> None:
        if run.count >= 2:  # one preamble alone can be a chance match in PCM audio
            self._runs.append(run)

    def _close_stale(self, before: int) -> None:
        for key in [k for k, r in self._open_runs.items() if r.last < before]:
            self._keep(self._open_runs.pop(key))

    # -- result ---------------------------------------------------------------------------------

    def _allowed_channel(self, c: int) -> bool:
        if c in self.compressed_channels:
            return True
        mask = self.alarms.allow_compressed_audio if self.alarms is not None else 0
        return c < 8 and bool(mask >> c & 1)

    def _compressed(self) -> list[CompressedAudio]:
        sr, t0 = self.sample_rate, self.start_s
        out: list[CompressedAudio] = []
        if self._unwrapped and self._frames:
            chans = tuple(range(self.channels))
            out.append(CompressedAudio(
                channels=chans, format=self.codec, data_type=None, word_bits=None, start_s=t0,
                end_s=t0 + self._frames / sr, bursts=0,
                allowed=all(self._allowed_channel(c) for c in chans),
                note=_UNWRAPPED_NOTE.format(codec=self.codec),
            ))
        for run in self._runs:
            informative = {t: n for t, n in run.types.items() if t not in _FILLER_TYPES} or run.types
            dtype = max(informative, key=lambda t: (informative[t], -t))
            end = min(run.last + run.period, self._frames)
            out.append(CompressedAudio(
                channels=run.channels, format=ST337_DATA_TYPES.get(dtype, f"data_type_{dtype}"),
                data_type=dtype, word_bits=run.word_bits, start_s=t0 + run.first / sr,
                end_s=t0 + end / sr, bursts=run.count,
                allowed=all(self._allowed_channel(c) for c in run.channels),
            ))
        out.sort(key=lambda c: (c.start_s, c.channels))
        return out

    def _alarms(self, segments: list[FormatSegment], compressed: list[CompressedAudio]) -> list[AlarmEvent]:
        cfg = self.alarms
        if cfg is None or not cfg.enabled or not segments:
            return []
        t0, t1 = segments[0].start_s, segments[-1].end_s
        dur, sens = float(cfg.secs_in_alarm_duration), float(cfg.sensitivity)
        trailing = f"in violation for >= {sens:.0%} of the trailing {dur:g} s"
        events: list[AlarmEvent] = []
        bad_formats = [s for s in segments if not cfg.allows_format(s.label)]
        for a, b in alarm_intervals([(s.start_s, s.end_s) for s in bad_formats], t0, t1,
                                    duration_s=dur, sensitivity=sens):
            labels = sorted({s.label for s in bad_formats if s.start_s < b and s.end_s > a - dur})
            events.append(AlarmEvent("audioFormat", a, b,
                                     f"audio format {', '.join(map(repr, labels))} not allowed by "
                                     f"allowableAudioFormat={cfg.allowable_audio_format}: {trailing}"))
        bad_data = [c for c in compressed if not c.allowed]
        for a, b in alarm_intervals([(c.start_s, c.end_s) for c in bad_data], t0, t1,
                                    duration_s=dur, sensitivity=sens):
            what = sorted({f"{c.format} on channel(s) {','.join(map(str, c.channels))}"
                           for c in bad_data if c.start_s < b and c.end_s > a - dur})
            events.append(AlarmEvent("compressedAudio", a, b,
                                     f"compressed audio {'; '.join(what)} not allowed by allowCompressedAudio="
                                     f"{cfg.allow_compressed_audio} and compressed_channels="
                                     f"{list(self.compressed_channels)}: {trailing}"))
        events.sort(key=lambda e: (e.start_s, e.kind))
        return events

    def result(self) -> ChannelFormatResult:
        """Segments, compressed audio and alarms for everything pushed so far."""
        if self._acc_n:  # the last, partial window
            self._classify(*self._flush_acc(self._frames), [])
        self._close_stale(self._frames + 1)
        sr, t0 = self.sample_rate, self.start_s
        segments = [FormatSegment(LABELS[label], t0 + a / sr, t0 + b / sr)
                    for label, a, b in self._segmenter.finish()]
        compressed = self._compressed()
        return ChannelFormatResult(
            segments=tuple(segments),
            compressed=tuple(compressed),
            alarms=tuple(self._alarms(segments, compressed)),
            start_s=t0,
            duration_s=self._frames / sr,
            window_s=self.window_s,
        )


def analyze(y: np.ndarray, sr: int, *, channel_names: Sequence[str] | None = None,
            block_frames: int = 1 << 16, **options: Any) -> ChannelFormatResult:
    """One-shot :class:`ChannelFormatAnalyzer` over an array ``y`` (channels, frames) or (frames,).

    ``channel_names`` defaults to FFmpeg's default layout for the channel count; ``options`` are
    the analyzer's keyword arguments.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[np.newaxis, :]
    names = tuple(channel_names) if channel_names is not None else default_layout(y.shape[0])[1]
    analyzer = ChannelFormatAnalyzer(sr, names, **options)
    for i in range(0, y.shape[1], block_frames):
        analyzer.push(y[:, i:i + block_frames])
    return analyzer.result()
