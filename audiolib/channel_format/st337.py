"""SMPTE ST 337 / IEC 61937 bursts in PCM: preambles, data types, burst scanning. See docs/channel-format.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

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
            found += [(int(a), int(b), 2, bits, int(t)) for a, b, t in zip(p, c, dtypes, strict=True)]
        # Subframe mode: Pa, Pb, Pc, Pd in consecutive samples of one channel.
        ok = x[ch, pos + 1] == _PB_F[bits]
        c, p = ch[ok], pos[ok]
        if c.size:
            dtypes = (_words(x[c, p + 2]) >> 8) & 0x1F
            found += [(int(a), int(b), 1, bits, int(t)) for a, b, t in zip(p, c, dtypes, strict=True)]
    return found
