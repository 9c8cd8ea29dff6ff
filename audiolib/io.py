"""Media input: the only module that touches bytes, URLs and decoders.

``probe(url)`` reads headers only and returns :class:`MediaInfo` (Dolby's ``media_info`` shape).
``stream(url, start=..., end=...)`` is a context manager giving an :class:`AudioStream`: iterate it
for float32 channels-first blocks ``(channels, frames)``. Memory is bounded by the block size,
whatever the duration. Decoding is done by PyAV (FFmpeg's libraries inside the wheel), so every
container and codec FFmpeg reads is supported. Any fsspec URL works (local paths, ``file://``,
``s3://``, ``http(s)://``); remote objects are read through a random-access file object, never
whole into memory.

Writing: ``plan_output(info, url)`` decides from headers alone how processed audio is written to
any format in :data:`OUTPUT_FORMATS` (codec, rate, bit depth, the video copied) and raises every
error it can before decoding; :class:`MediaWriter` encodes blocks and copies the source's video
packets bit for bit as it goes; ``atomic_output(url)`` publishes the finished file in one step
(rename, one upload, one HTTP PUT). ``write(path, y, sr)`` encodes an array in one call (tests).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import stat
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from io import BytesIO
from typing import Any, Literal

import av
import fsspec
import numpy as np

from . import storage
from .channels import default_layout
from .errors import (
    AudioQCError,
    DecodeError,
    EmptyMedia,
    InvalidParameter,
    OutputError,
    SourceNotFound,
    UnsupportedMedia,
)

__all__ = ["AudioInfo", "ContainerInfo", "MediaInfo", "AudioStream", "probe", "stream", "parse_time", "write",
           "OUTPUT_FORMATS", "OutputFormat", "OutputPlan", "CopiedStream", "plan_output", "MediaWriter",
           "atomic_output", "check_writable"]

#: Default number of frames per yielded block (about 5.5 s at 48 kHz: 2 MB for stereo float32).
#: Every analyzer of a diagnose pays a fixed Python cost per block: on a 1-hour stereo 48 kHz
#: programme, the decode pass of a full diagnose took 17.3 s in blocks of 2^16 frames and 15.5-16.1 s
#: in blocks of 2^18 (2^17: 16.1-16.2 s, 2^19: 16.0 s), with the same peak memory (one core;
#: ``benchmarks/profile_diagnose.py --block-frames N``).
DEFAULT_BLOCK_FRAMES = 1 << 18
#: Audio decoded before the requested start after a seek, so lossy codecs' overlap (MDCT pre-roll,
#: Opus pre-skip) has settled by the first sample we keep.
SEEK_PREROLL_S = 0.5
#: Remote reads are made in blocks of this many bytes (fsspec read-ahead cache).
REMOTE_BLOCK_BYTES = 2 << 20
#: FFmpeg's ``probesize`` for RIFF/RF64/BW64 WAV files.  FFmpeg's WAV demuxer asks for the payload
#: of a 16-bit PCM stream to be probed for a hidden compressed bitstream (DTS or AC-3 stored as
#: PCM; libavformat/wavdec.c ``handle_stream_probing``), running every demuxer's probe on up to 32
#: packets: 40-55 ms per open of a 10 s 48 kHz stereo file (measured; 2 ms with this probe size),
#: some 30 times the cost of demuxing the whole file.  The header chunks are parsed whatever the
#: probe size, and a DTS bitstream in a WAV is still recognised with a 4 KiB probe (measured;
#: tests/test_io.py); other formats keep FFmpeg's default.
WAV_PROBE_BYTES = 32 << 10
#: FFmpeg's WAV demuxer option ``max_size`` (bytes per packet; FFmpeg's default is 4096): with
#: 4 KiB packets a 1-hour 48 kHz stereo WAV decodes as 168,750 packets and PyAV's per-packet and
#: per-frame cost is most of the decoding time (2.1 s; 0.46 s with 64 KiB packets, measured on one
#: core). A 10 s file opens and decodes faster too (2.5 -> 2.0 ms); larger packets make the open
#: slower (the stream probe above reads whole packets: 6 ms with 256 KiB).
WAV_PACKET_BYTES = 64 << 10

# ffmpeg format names -> the short container kind Dolby reports.
_KIND_BY_EXT = {
    ".mp4": "mp4", ".m4a": "m4a", ".m4b": "m4a", ".mov": "mov", ".3gp": "3gp",
    ".mkv": "mkv", ".mka": "mkv", ".webm": "webm",
}
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}
_PCM_BITS = {"u8": 8, "s8": 8, "s16": 16, "s24": 24, "s32": 32, "f32": 32, "f64": 64, "s64": 64}


@dataclass(frozen=True)
class ContainerInfo:
    """Container-level facts. ``to_dict`` gives Dolby's ``container`` block."""

    kind: str
    format_name: str
    duration_s: float | None
    bitrate_bps: int | None
    size_bytes: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "duration": self.duration_s,
            "bitrate": self.bitrate_bps,
            "size": self.size_bytes,
        }


@dataclass(frozen=True)
class AudioInfo:
    """The selected audio stream. ``to_dict`` gives Dolby's ``audio`` block plus extras."""

    codec: str
    channels: int
    sample_rate_hz: int
    duration_s: float | None
    bitrate_bps: int | None
    bit_depth: int | None
    channel_layout: str
    channel_names: tuple[str, ...]
    stream_index: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "channels": self.channels,
            "sample_rate": self.sample_rate_hz,
            "duration": self.duration_s,
            "bitrate": self.bitrate_bps,
            "bit_depth": self.bit_depth,
            "channel_layout": self.channel_layout,
            "channel_names": list(self.channel_names),
            "stream_index": self.stream_index,
        }


@dataclass(frozen=True)
class MediaInfo:
    """Dolby's ``media_info``: container, the selected audio stream, and the audio stream count."""

    url: str
    container: ContainerInfo
    audio: AudioInfo
    audio_streams: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "container": self.container.to_dict(),
            "audio": self.audio.to_dict(),
            "audio_streams": self.audio_streams,
        }


@dataclass
class DecodeReport:
    """What happened while decoding (filled in as the stream is read)."""

    frames: int = 0
    truncated: bool = False
    problem: str | None = None
    corrupt_packets: int = 0
    nonfinite_samples: int = 0  # NaN samples of float PCM, replaced by 0 before analysis
    clamped_samples: int = 0  # float samples at or beyond +-FLOAT_CLAMP (infinities too), clamped
    warnings: list[str] = field(default_factory=list)


def parse_time(value: str | float | int | None, *, name: str = "time") -> float | None:
    """Parse a time given as seconds (``12.5``) or ``[HH:]MM:SS[.ms]`` into seconds.

    Raises
    ------
    InvalidParameter
        If the value is malformed, negative or not finite.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            if ":" in text:
                parts = text.split(":")
                if len(parts) > 3 or any(p.strip() == "" for p in parts):
                    raise ValueError
                seconds = 0.0
                for part in parts:
                    seconds = seconds * 60.0 + float(part)
                if any(float(p) < 0 for p in parts) or any(float(p) >= 60 for p in parts[1:]):
                    raise ValueError
            else:
                seconds = float(text)
        except ValueError:
            raise InvalidParameter(
                f"{name}={value!r} is not a time: give seconds (12.5) or HH:MM:SS.ms (00:00:12.500)"
            ) from None
    else:
        raise InvalidParameter(f"{name}={value!r} is not a time")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidParameter(f"{name}={value!r} must be a finite time >= 0 s")
    return seconds


# --------------------------------------------------------------------------------------------
# opening


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def _is_wav(head: bytes) -> bool:
    """Whether ``head`` (a file's first 12 bytes) starts a RIFF/RIFX, RF64 or BW64 WAVE file."""
    return head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE"


def _open_options(source: Any) -> dict[str, str]:
    """FFmpeg format options for ``source`` (a path or a seekable file object): see WAV_PROBE_BYTES
    and WAV_PACKET_BYTES."""
    try:
        if isinstance(source, str):
            with open(source, "rb") as f:
                head = f.read(12)
        else:
            head = source.read(12)
            source.seek(0)
    except OSError:
        return {}  # av.open reports the problem
    return {"probesize": str(WAV_PROBE_BYTES), "max_size": str(WAV_PACKET_BYTES)} if _is_wav(head) else {}


@contextlib.contextmanager
def _open_container(url: str) -> Iterator[tuple[Any, int | None]]:
    """Open ``url`` with PyAV; yields ``(container, size_bytes)`` and always closes both."""
    if not isinstance(url, str) or not url:
        raise InvalidParameter(f"url={url!r} must be a non-empty string")
    fileobj: _RemoteFile | None = None
    try:
        if _is_local(url):
            path = _local_path(url)
            size = _local_size(url, path)
            source: Any = path
        else:
            fs, path = storage.filesystem(url)
            try:
                if storage._protocol(url) in ("http", "https"):
                    storage.check_http(url)  # the status fsspec would report as "not found"
                fileinfo = fs.info(path)
                if fileinfo.get("type") == "directory":
                    raise SourceNotFound(url, "is a directory, not a media file")
                fileobj = _RemoteFile(fs.open(path, "rb", block_size=REMOTE_BLOCK_BYTES, cache_type="readahead"), url)
            except Exception as exc:  # network and credential errors differ per backend
                raise storage.remote_error(url, exc, doing="open") from None
            size = fileinfo.get("size")
            source = fileobj
        if size == 0:
            raise EmptyMedia(url, "file is empty (0 bytes)")
        try:
            container = av.open(source, mode="r", metadata_errors="ignore", options=_open_options(source))
        except av.error.FileNotFoundError:
            raise SourceNotFound(url, "no such file") from None
        except av.error.PermissionError:
            raise SourceNotFound(url, "permission denied") from None
        except (av.error.FFmpegError, ValueError, EOFError) as exc:
            raise DecodeError(url, f"not a readable media file ({_ffmpeg_message(exc)})") from None
        try:
            yield container, size
        finally:
            container.close()
    finally:
        if fileobj is not None:
            fileobj.close()


class _RemoteFile:
    """A remote file object for FFmpeg's reader that turns what the network raises into the typed
    :class:`~audiolib.errors.RemoteError` (not an ``OSError``, which FFmpeg's reader would take for
    the end of the data and the decoder for a truncated file): a stall, a dropped connection or a
    body shorter than its length is an error naming the URL and the cause, not a short file."""

    def __init__(self, raw: Any, url: str) -> None:
        self._raw = raw
        self._url = url

    def read(self, n: int = -1) -> bytes:
        try:
            return self._raw.read(n)
        except Exception as exc:
            raise storage.remote_error(self._url, exc) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()


def _local_size(url: str, path: str) -> int:
    """Size of a local media file; a directory, a FIFO, a socket or a device is refused before
    anything opens it (opening a FIFO for reading would block until a writer comes)."""
    import stat as _stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise SourceNotFound(url, "broken symbolic link (its target does not exist)") from None
        raise SourceNotFound(url, "cannot open: No such file or directory") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise SourceNotFound(url, "symbolic link loop") from None
        raise SourceNotFound(url, f"cannot open: {exc.strerror or exc}") from None
    if _stat.S_ISDIR(st.st_mode):
        raise SourceNotFound(url, "is a directory, not a media file")
    if not _stat.S_ISREG(st.st_mode):
        kind = ("FIFO" if _stat.S_ISFIFO(st.st_mode) else "socket" if _stat.S_ISSOCK(st.st_mode)
                else "device" if _stat.S_ISCHR(st.st_mode) or _stat.S_ISBLK(st.st_mode) else "special file")
        raise SourceNotFound(url, f"not a regular file ({kind})")
    if not os.access(path, os.R_OK):
        raise SourceNotFound(url, "cannot open: Permission denied")
    return st.st_size


def _ffmpeg_message(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return f"ffmpeg: {msg}".strip()


def _select_stream(container: Any, url: str, stream_index: int | None) -> Any:
    audio = list(container.streams.audio)
    if not audio:
        kinds = ", ".join(f"{s.type} {s.codec_context.name if s.codec_context else '?'}"
                          for s in container.streams) or "none"
        raise UnsupportedMedia(url, f"no audio stream (streams: {kinds})")
    if stream_index is not None:
        if not 0 <= stream_index < len(audio):
            raise InvalidParameter(
                f"{url}: audio stream {stream_index} requested, file has {len(audio)} (0..{len(audio) - 1})"
            )
        return _decodable(audio[stream_index], url)
    # FFmpeg's notion of the default stream: the one flagged default, else the first.
    for s in audio:
        if s.disposition & av.stream.Disposition.default:
            return _decodable(s, url)
    return _decodable(audio[0], url)


def _decodable(astream: Any, url: str) -> Any:
    """The stream, if FFmpeg has a decoder for it and its header makes sense."""
    cc = astream.codec_context
    if cc is None:
        tag = getattr(astream, "codec_tag", None) or ""
        raise UnsupportedMedia(url, "the audio stream's codec is unknown or has no decoder"
                                    + (f" (codec tag {tag!r})" if tag else "") + "; its header may be corrupt")
    if not cc.sample_rate or not cc.channels:
        raise DecodeError(url, "audio stream headers are unreadable (no sample rate or channels)")
    return astream


def _container_kind(container: Any, url: str) -> str:
    name = container.format.name
    if "," not in name:
        return {"matroska": "mkv"}.get(name, name)
    ext = os.path.splitext(url.split("?")[0])[1].lower()
    if ext in _KIND_BY_EXT and _KIND_BY_EXT[ext] in name.split(",") + ["mkv", "m4a", "mp4"]:
        return _KIND_BY_EXT[ext]
    if name.startswith("mov"):
        brand = (container.metadata or {}).get("major_brand", "").strip().lower()
        return {"m4a": "m4a", "qt": "mov"}.get(brand, "mp4")
    if name.startswith("matroska"):
        return "webm" if ext == ".webm" else "mkv"
    return name.split(",")[0]


def _flac_bits(extradata: bytes | None) -> int | None:
    """Bits per sample from a FLAC STREAMINFO block (FLAC format spec, METADATA_BLOCK_STREAMINFO)."""
    if not extradata or len(extradata) < 18:
        return None
    data = extradata[8:] if extradata[:4] == b"fLaC" else extradata
    if len(data) < 14:
        return None
    return (((data[12] & 0x01) << 4) | (data[13] >> 4)) + 1


def _bit_depth(cc: Any) -> int | None:
    name = cc.name
    if name == "flac":
        bits = _flac_bits(cc.extradata)
        if bits:
            return bits
    if name.startswith("pcm_"):
        for key, bits in _PCM_BITS.items():
            if name[4:].startswith(key):
                return bits
    raw = getattr(cc, "bits_per_raw_sample", 0) or 0
    if name in {"flac", "alac", "wavpack", "tta", "ape", "mlp", "truehd"} or name.startswith("pcm"):
        if raw:
            return int(raw)
        fmt = cc.format.name if cc.format is not None else ""
        return {"s16": 16, "s16p": 16, "s32": 32, "s32p": 32, "u8": 8, "u8p": 8}.get(fmt)
    return None


def _media_info(container: Any, astream: Any, url: str, size: int | None) -> MediaInfo:
    cc = astream.codec_context
    cont_duration = container.duration / av.time_base if container.duration else None
    a_duration: float | None
    if astream.duration is not None and astream.time_base is not None:
        a_duration = float(astream.duration * astream.time_base)
    else:
        a_duration = cont_duration
    channels = cc.channels
    layout = cc.layout
    names = tuple(ch.name for ch in layout.channels) if layout is not None else ()
    layout_name = layout.name if layout is not None else ""
    if len(names) != channels or any(n.upper() in ("NONE", "UNKNOWN", "") for n in names):
        # No layout declared (e.g. a plain WAVEFORMATEX): FFmpeg assumes its default layout.
        layout_name, names = default_layout(channels)
    bit_depth = _bit_depth(cc)
    a_bitrate = astream.bit_rate or cc.bit_rate or None
    if not a_bitrate and bit_depth and cc.name.startswith("pcm_"):
        a_bitrate = cc.sample_rate * channels * bit_depth
    c_bitrate = container.bit_rate or None
    if not c_bitrate and size and cont_duration:
        c_bitrate = int(round(size * 8 / cont_duration))
    return MediaInfo(
        url=url,
        container=ContainerInfo(
            kind=_container_kind(container, url),
            format_name=container.format.name,
            duration_s=cont_duration,
            bitrate_bps=int(c_bitrate) if c_bitrate else None,
            size_bytes=size,
        ),
        audio=AudioInfo(
            codec=cc.name,
            channels=channels,
            sample_rate_hz=cc.sample_rate,
            duration_s=a_duration,
            bitrate_bps=int(a_bitrate) if a_bitrate else None,
            bit_depth=bit_depth,
            channel_layout=layout_name,
            channel_names=names,
            stream_index=list(container.streams.audio).index(astream),
        ),
        audio_streams=len(container.streams.audio),
    )


def _wav_declared_data_bytes(url: str) -> tuple[int, int] | None:
    """``(data offset, declared data size)`` from a RIFF/WAVE header, or None if not found.

    FFmpeg trusts the file size over the header, so a cut WAV looks complete to it; the header's
    ``data`` chunk size is what the file was meant to hold. Chunks before ``data`` (broadcast WAV
    ``bext``, ``iXML``, padding: often more than 64 kB) are skipped by seeking, not read.
    """
    import struct

    try:
        kwargs = {} if _is_local(url) else {"block_size": 1 << 16, **storage.storage_options(url)}
        with fsspec.open(url if "://" in url else _local_path(url), "rb", **kwargs) as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            pos = 12
            for _ in range(1000):  # a bound on the number of chunks
                f.seek(pos)
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                (size,) = struct.unpack("<I", chunk[4:8])
                if chunk[:4] == b"data":
                    return (pos + 8, size) if size not in (0, 0xFFFFFFFF) else None
                pos += 8 + size + (size & 1)
    except Exception:
        return None
    return None


def probe(url: str, *, stream_index: int | None = None) -> MediaInfo:
    """Read the headers of ``url`` and return its media info (no audio is decoded).

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    stream_index : int, optional
        Which audio stream (0-based among audio streams); default: FFmpeg's default stream.
    """
    with _open_container(url) as (container, size):
        astream = _select_stream(container, url, stream_index)
        if not astream.codec_context.sample_rate or not astream.codec_context.channels:
            raise DecodeError(url, "audio stream headers are unreadable (no sample rate or channels)")
        return _media_info(container, astream, url, size)


# --------------------------------------------------------------------------------------------
# decoding


def _audio_offset_s(container: Any, astream: Any) -> float:
    """Seconds from the start of the file to the first audio sample (0 unless audio is delayed)."""
    if astream.start_time is None or astream.time_base is None or container.start_time is None:
        return 0.0
    offset = float(astream.start_time * astream.time_base) - container.start_time / av.time_base
    return offset if offset > 0.0005 else 0.0


def base_is_float(frame: Any) -> bool:
    """Whether a decoded frame holds float samples (which can be NaN or infinite)."""
    return frame.format.name.rstrip("p") in ("flt", "dbl")


#: Float samples beyond this magnitude (x full scale: +80 dBFS) are clamped to it before analysis
#: and counted: an overflowing or corrupt float file reads as very loud, never as silent.
FLOAT_CLAMP = 1.0e4


def _frame_to_array(frame: Any, channels: int) -> np.ndarray:
    """Decoded frame -> float32 ``(channels, samples)`` in [-1, 1) full scale (float formats as
    they are, clamped to +-:data:`FLOAT_CLAMP`; NaN stays NaN for the caller to count)."""
    arr = frame.to_ndarray()
    fmt = frame.format.name
    base = fmt.rstrip("p")
    if base in ("flt", "dbl"):
        with np.errstate(over="ignore", invalid="ignore"):
            out = np.clip(arr, -FLOAT_CLAMP, FLOAT_CLAMP).astype(np.float32, copy=False)
    elif base == "u8":
        out = (arr.astype(np.float32) - 128.0) / np.float32(_INT_SCALE[base])
    else:
        out = arr.astype(np.float32) * np.float32(1.0 / _INT_SCALE[base])
    if not frame.format.is_planar:  # interleaved: (1, n * channels) -> (channels, n)
        out = out.reshape(-1, channels).T
    return np.ascontiguousarray(out)


class AudioStream:
    """An open audio stream; iterate for float32 ``(channels, frames)`` blocks.

    Attributes
    ----------
    info : MediaInfo
        Header facts of the file and selected stream.
    sample_rate : int
        Hz.
    channel_names : tuple of str
        FFmpeg channel names (``FL``, ``FR``, ``FC``, ``LFE``, ``SL``, ...).
    start_frame, end_frame : int or None
        The requested range in samples of file time.
    report : DecodeReport
        Frames decoded, truncation and corrupt packets; final once iteration ends.
    """

    def __init__(self, container: Any, astream: Any, info: MediaInfo, *, start_s: float | None,
                 end_s: float | None, block_frames: int) -> None:
        self._container = container
        self._astream = astream
        self.info = info
        self.url = info.url
        self.sample_rate = info.audio.sample_rate_hz
        self.channels = info.audio.channels
        self.channel_names = info.audio.channel_names
        # File time: the audio may start after the file does (a delayed audio track); times and
        # start/end are counted from the file's start, as FFmpeg's filters report them.
        self.offset_s = _audio_offset_s(container, astream)
        self.start_frame = int(round(max(0.0, start_s - self.offset_s) * self.sample_rate)) if start_s else 0
        self.end_frame = (int(round(max(0.0, end_s - self.offset_s) * self.sample_rate))
                          if end_s is not None else None)
        self.block_frames = block_frames
        self.report = DecodeReport()
        self._used = False
        self._declared_frames: int | None = None
        if info.container.format_name == "wav" and info.audio.bit_depth:
            header = _wav_declared_data_bytes(self.url)
            if header is not None and info.container.size_bytes is not None:
                offset, data_bytes = header
                if offset + data_bytes > info.container.size_bytes:
                    frame_bytes = self.channels * info.audio.bit_depth // 8
                    self._declared_frames = data_bytes // frame_bytes

    @property
    def start_s(self) -> float:
        """File time of the first sample yielded, seconds."""
        return self.offset_s + self.start_frame / self.sample_rate

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._used:
            raise AudioQCError(f"{self.url}: an AudioStream can be iterated only once")
        self._used = True
        pending: list[np.ndarray] = []
        pending_frames = 0
        for chunk in self._chunks():
            pending.append(chunk)
            pending_frames += chunk.shape[1]
            if pending_frames >= self.block_frames:
                block = pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
                pending, pending_frames = [], 0
                yield block
        if pending_frames:
            yield pending[0] if len(pending) == 1 else np.concatenate(pending, axis=1)
        self._check_length()
        if self.report.frames == 0 and (self.report.truncated or self.report.corrupt_packets):
            raise DecodeError(self.url, f"no audio could be decoded ({self.report.problem or 'corrupt packets'})")
        if self.report.frames == 0 and self.start_frame == 0:
            raise EmptyMedia(self.url, "the audio stream holds no samples")
        if self.report.nonfinite_samples:
            self.report.warnings.append(
                f"{self.report.nonfinite_samples} NaN (not-a-number) samples replaced by 0 before analysis")
        if self.report.clamped_samples:
            self.report.warnings.append(
                f"{self.report.clamped_samples} float samples at or beyond {FLOAT_CLAMP:g} times full scale "
                f"(+80 dBFS: overflowing or infinite values) clamped to it before analysis")

    def _time_base_samples(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        tb = self._astream.time_base
        start = self._astream.start_time or 0
        return int(round((pts - start) * tb * self.sample_rate))

    def _chunks(self) -> Iterator[np.ndarray]:  # noqa: C901 (one decode loop: seek, gaps, trims and errors share its state)
        container, astream, report = self._container, self._astream, self.report
        start, end = self.start_frame, self.end_frame
        position: int | None = 0  # file-time sample index of the next decoded sample
        tb = astream.time_base
        # Seek only where timestamps resolve single samples; Matroska/WebM (1 ms) and the like
        # would make the start inexact, so there the stream is decoded from the top and dropped
        # (decoding runs at over 1000x real time).
        sample_exact = tb is not None and tb <= Fraction(1, self.sample_rate)
        if start > 0 and sample_exact:
            target_s = max(0.0, start / self.sample_rate - SEEK_PREROLL_S)
            ts = int(target_s / tb) + (astream.start_time or 0)
            try:
                container.seek(ts, stream=astream, backward=True, any_frame=False)
                position = None  # learn it from the first frame's pts
            except av.error.FFmpegError:
                position = 0  # not seekable: decode from the start and drop
        consecutive_errors = 0
        demux = container.demux(astream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError, EOFError) as exc:
                report.truncated = True
                report.problem = (
                    f"stream ends early: demuxer failed after {report.frames} samples ({_ffmpeg_message(exc)})"
                )
                break
            try:
                frames = packet.decode()
                consecutive_errors = 0
            except av.error.FFmpegError as exc:
                report.corrupt_packets += 1
                consecutive_errors += 1
                if consecutive_errors >= 50:
                    report.truncated = True
                    report.problem = f"undecodable data after {report.frames} samples ({_ffmpeg_message(exc)})"
                    break
                continue
            for frame in frames:
                if frame.samples == 0:
                    continue
                if position is None:
                    position = self._time_base_samples(frame.pts)
                    if position is None:  # no timestamps after a seek: restart without seeking
                        raise DecodeError(self.url, "cannot seek: the stream has no timestamps")
                frame_channels = len(frame.layout.channels) if frame.layout is not None else self.channels
                if frame_channels != self.channels:
                    # A layout change mid-stream (broadcast AC-3 switching 2.0 <-> 5.1) is a finding:
                    # what came before is measured, and the report says where it changed.
                    report.truncated = True
                    report.problem = (f"channel count changes from {self.channels} to {frame_channels} "
                                      f"at {report.frames / self.sample_rate + self.start_s:.3f} s; "
                                      f"analysed up to there")
                    return
                data = _frame_to_array(frame, self.channels)
                if base_is_float(frame):
                    if not np.isfinite(data).all():  # NaN: no value at all
                        bad = ~np.isfinite(data)
                        report.nonfinite_samples += int(bad.sum())
                        data = np.where(bad, np.float32(0.0), data)
                    clamped = int(np.count_nonzero(np.abs(data) >= np.float32(FLOAT_CLAMP)))
                    if clamped:
                        report.clamped_samples += clamped
                n = data.shape[1]
                lo, hi = position, position + n
                position = hi
                if hi <= start:
                    continue
                if end is not None and lo >= end:
                    return
                a = max(start - lo, 0)
                b = n if end is None else min(n, end - lo)
                if a or b < n:
                    data = data[:, a:b]
                report.frames += data.shape[1]
                yield data
                if end is not None and hi >= end:
                    return

    def _check_length(self) -> None:
        """Compare decoded length with what the headers promise; flag truncation."""
        report = self.report
        if report.truncated:
            return
        declared = self._declared_frames
        duration = self.info.audio.duration_s or self.info.container.duration_s
        if declared is not None:
            duration = max(duration or 0.0, declared / self.sample_rate)
        if not duration:
            return
        expected_end = int(round(duration * self.sample_rate))
        if self.end_frame is not None:
            expected_end = min(expected_end, self.end_frame)
        expected = max(0, expected_end - self.start_frame)
        missing = expected - report.frames
        codec = self.info.audio.codec
        exact = codec.startswith("pcm_") or codec in {"flac", "alac", "wavpack"}
        tolerance = 0.002 * self.sample_rate if exact else max(0.25 * self.sample_rate, 0.02 * expected)
        if missing > tolerance:
            report.truncated = True
            report.problem = (
                f"file is truncated: decoded {report.frames / self.sample_rate:.3f} s of the "
                f"{expected / self.sample_rate:.3f} s its headers declare"
            )


@contextlib.contextmanager
def stream(url: str, *, start: float | str | None = None, end: float | str | None = None,
           stream_index: int | None = None, block_frames: int = DEFAULT_BLOCK_FRAMES) -> Iterator[AudioStream]:
    """Open ``url`` for decoding; yields an :class:`AudioStream` to iterate for blocks.

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    start, end : float or str, optional
        Range to decode, in seconds of file time (or ``HH:MM:SS.ms``). The decoder seeks to
        ``start``; the first and last samples are exact (``round(t * sample_rate)``).
    stream_index : int, optional
        Audio stream to decode (0-based among audio streams); default: FFmpeg's default stream.
    block_frames : int
        Minimum frames per yielded block (the last block may be shorter).
    """
    try:
        start_s = parse_time(start, name="start")
        end_s = parse_time(end, name="end")
    except InvalidParameter as exc:
        raise InvalidParameter(f"{url}: {exc}") from None
    if end_s is not None and end_s <= (start_s or 0.0):
        raise InvalidParameter(f"{url}: end={end!r} must be after start={start if start is not None else 0!r}")
    if not isinstance(block_frames, int) or block_frames < 1:
        raise InvalidParameter(f"block_frames={block_frames!r} must be a positive integer")
    with _open_container(url) as (container, size):
        astream = _select_stream(container, url, stream_index)
        cc = astream.codec_context
        if not cc.sample_rate or not cc.channels:
            raise DecodeError(url, "audio stream headers are unreadable (no sample rate or channels)")
        info = _media_info(container, astream, url, size)
        offset = _audio_offset_s(container, astream)
        if (start_s is not None and info.audio.duration_s is not None
                and start_s - offset >= info.audio.duration_s - 1e-9):
            raise InvalidParameter(
                f"{url}: start={start_s:g} s is at or past the end of the audio "
                f"({offset + info.audio.duration_s:g} s)"
            )
        astream.thread_type = "AUTO"
        yield AudioStream(container, astream, info, start_s=start_s, end_s=end_s, block_frames=block_frames)


# --------------------------------------------------------------------------------------------
# encoding


def write(path: str, y: np.ndarray, sr: int, *, codec: str = "pcm_s16le", layout: str | None = None,
          sample_fmt: str | None = None, bit_rate: int | None = None,
          container_format: str | None = None, clip: bool = True) -> None:
    """Encode ``y`` (channels, frames), float with full scale 1.0, to a local ``path``.

    Parameters
    ----------
    codec : str
        FFmpeg encoder name (``pcm_s16le``, ``pcm_s24le``, ``pcm_f32le``, ``flac``, ``aac``,
        ``libmp3lame``, ``libopus``, ``ac3``, ...).
    layout : str, optional
        FFmpeg channel layout name; default: the default layout for the channel count.
    sample_fmt : str, optional
        Encoder sample format (``s16``, ``s32``, ``flt``, ``fltp``); default: the encoder's first.
    clip : bool
        Clip to [-1, 1] first (set False to keep float overs in ``pcm_f32le``).
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 1:
        y = y[np.newaxis, :]
    if clip:
        y = np.clip(y, -1.0, 1.0)
    y = np.ascontiguousarray(y)
    if layout is None:
        layout = default_layout(y.shape[0])[0]
    with av.open(str(path), mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=sr, layout=layout)
        # a codec that is not an audio encoder fails in add_stream (its context takes no layout)
        assert isinstance(stream, av.AudioStream)
        if bit_rate:
            stream.bit_rate = bit_rate
        if sample_fmt:
            stream.format = sample_fmt
        elif stream.codec_context.codec.audio_formats:
            stream.format = stream.codec_context.codec.audio_formats[0].name
        frame_len = stream.codec_context.frame_size or 1024
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=sr)
        for i in range(0, y.shape[1], frame_len):
            chunk = y[:, i:i + frame_len]
            # Packed (interleaved) input: PyAV's planar path mishandles 8+ channels.
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk.T).reshape(1, -1),
                                               format="flt", layout=layout)
            frame.sample_rate = sr
            frame.pts = i
            for f in resampler.resample(frame):
                for packet in stream.encode(f):
                    out.mux(packet)
        for f in resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


# --------------------------------------------------------------------------------------------
# output: formats, plans, the streaming writer, atomic publication
#
# A noise-removal run is: ``plan = plan_output(probe(src), dst)`` (every decision and every error
# that can be known from headers, before any decoding), then
# ``with atomic_output(dst) as tmp, MediaWriter(plan, tmp) as w, stream(src) as s:`` writing each
# processed block with ``w.write(block)``. The writer encodes the audio and copies the source's
# video packets bit for bit, interleaved as it goes; atomic_output publishes the finished file in
# one step (rename, one upload, one HTTP PUT), so nothing partial ever appears at ``dst``.

#: Seconds of source video muxed ahead of the audio written so far. FFmpeg's interleaver
#: (``av_interleaved_write_frame``) holds packets until every stream has one queued, so this lead
#: is what waits there: memory stays flat whatever the duration.
VIDEO_LEAD_S = 1.0
#: Input frames handed to the encoder at a time by ``MediaWriter.write`` (0.34 s at 48 kHz); the
#: copied video is caught up with the audio after each piece.
WRITE_CHUNK_FRAMES = 1 << 14
#: Lossy codecs' bit rate per channel when the input's is not kept, bit/s: AAC 192 kb/s stereo,
#: MP3 192 kb/s stereo (96 kb/s mono), Opus 128 kb/s stereo (384 kb/s 5.1), AC-3 / E-AC-3 192 kb/s
#: stereo (576 kb/s 5.1). FFmpeg's own defaults are lower (AAC 128 kb/s stereo, Opus 96 kb/s).
DEFAULT_BITRATE_PER_CHANNEL = {"aac": 96_000, "libmp3lame": 96_000, "libopus": 64_000, "ac3": 96_000,
                               "eac3": 96_000}
#: HTTP PUT timeouts (connect, read between bytes), seconds.
HTTP_PUT_TIMEOUT_S = (30.0, 300.0)

#: Channel counts each encoder takes, where FFmpeg's limit is a plain count (measured by opening
#: the encoder in this PyAV build): FFmpeg's native Vorbis encoder opens for stereo only (mono and
#: 5.1 are refused), libmp3lame for 1-2, AC-3/E-AC-3 up to 5.1, FLAC and ALAC up to 8. AAC takes
#: up to 16 channels but only in named layouts (7.1, hexadecagonal; not "10 channels"), and Opus
#: takes up to 255 with mapping family 255: both are left to the encoder trial in plan_output.
_CHANNEL_LIMITS = {"libmp3lame": (1, 2), "vorbis": (2, 2), "ac3": (1, 6), "eac3": (1, 6), "flac": (1, 8),
                   "alac": (1, 8)}
#: Encoder that re-encodes an input codec (FFmpeg codec names) when an output format keeps it.
_KEPT_ENCODERS = {"aac": "aac", "alac": "alac", "ac3": "ac3", "eac3": "eac3", "mp3": "libmp3lame",
                  "opus": "libopus", "vorbis": "vorbis", "flac": "flac", "pcm": "pcm"}
#: Names used in messages.
_CODEC_LABELS = {"libmp3lame": "MP3 (libmp3lame)", "libopus": "Opus (libopus)",
                 "vorbis": "Vorbis (FFmpeg's native encoder)", "aac": "AAC", "ac3": "AC-3",
                 "eac3": "E-AC-3", "flac": "FLAC", "alac": "ALAC", "pcm": "PCM"}
#: Tags not copied to the output: they describe how the source was encoded or muxed, which the
#: re-encode makes false (encoder names, MP4 brands, mkvmerge's statistics tags, durations).
_STALE_TAGS = frozenset({"encoder", "vendor_id", "major_brand", "minor_version", "compatible_brands",
                         "duration", "bps", "number_of_frames", "number_of_bytes",
                         "_statistics_writing_app", "_statistics_writing_date_utc", "_statistics_tags"})
#: Picture codecs written as Matroska attachments (Matroska keeps cover art as an attached file
#: named cover.*, which FFmpeg reads back as an attached picture).
_COVER_MIMETYPES = {"png": ("image/png", "png"), "mjpeg": ("image/jpeg", "jpg")}
#: fsspec protocols whose first path component is a bucket (check_writable checks it exists).
_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss", "r2"})


@dataclass(frozen=True)
class OutputFormat:
    """One output file kind: its FFmpeg muxer and the audio codec it is written with.

    Attributes
    ----------
    extension : str
        File extension without the dot (its key in :data:`OUTPUT_FORMATS`).
    muxer : str
        FFmpeg muxer (``ffmpeg -f`` name).
    codecs : tuple of str
        Encoders tried in order when the input's codec is not kept (``pcm``: the PCM codec of the
        input's bit depth); the first that opens for the input's channels and rate is used.
    keeps : tuple of str
        Input codecs (FFmpeg codec names, ``pcm`` for any PCM) re-encoded with the same codec.
    video : bool
        Whether real video is copied into it. False for the audio-only kinds even where the muxer
        would take video (m4a, mka: their extensions say "audio").
    covers : str or None
        How cover art (attached pictures) is kept: ``stream`` (an attached-picture stream: ID3
        APIC in MP3, a PICTURE block in FLAC, ``covr`` in MP4), ``attachment`` (Matroska's
        ``cover.png``/``cover.jpg`` attached file), None (dropped, said in the plan's notes).
    muxer_options : tuple of (str, str)
        FFmpeg muxer options.
    """

    extension: str
    muxer: str
    codecs: tuple[str, ...]
    keeps: tuple[str, ...] = ()
    video: bool = False
    covers: str | None = None
    muxer_options: tuple[tuple[str, str], ...] = ()


_MATROSKA_KEEPS = ("aac", "ac3", "eac3", "mp3", "opus", "vorbis", "flac", "alac", "pcm")

#: Output kinds by extension. WAV is written with ``rf64=auto``: a JUNK chunk reserves room for
#: the RF64 header, used only if the file passes 4 GiB (an hour of 8-channel 24-bit 96 kHz audio
#: is 8.3 GB). ``ogg`` is Vorbis from FFmpeg's native encoder (experimental: opened with
#: ``strict=experimental``), which opens for stereo only and has no bit rate control (its fixed
#: quality gave 300 kb/s on stereo band-limited noise, 17.6 dB SNR); any other channel count gets
#: Opus in Ogg, said in the plan's notes. Matroska falls back to Opus (mapping family 255) for
#: channel layouts AAC refuses.
#: Cover art is dropped where FFmpeg cannot keep it (measured): PyAV refuses PNG/JPEG streams for
#: the ipod (m4a) muxer (avformat_query_codec; the ffmpeg CLI, which does not ask, can); the Ogg
#: muxer fails writing its header with a picture stream; the mov muxer drops attached pictures
#: without an error (ffmpeg 5.1 CLI and PyAV's FFmpeg 8.1 alike); WebM has no attachments.
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    "wav": OutputFormat("wav", "wav", ("pcm",), keeps=("pcm",), muxer_options=(("rf64", "auto"),)),
    "flac": OutputFormat("flac", "flac", ("flac",), covers="stream"),
    "mp3": OutputFormat("mp3", "mp3", ("libmp3lame",), covers="stream"),
    "m4a": OutputFormat("m4a", "ipod", ("aac",), keeps=("aac", "alac")),
    "aac": OutputFormat("aac", "adts", ("aac",)),
    "opus": OutputFormat("opus", "ogg", ("libopus",)),
    "ogg": OutputFormat("ogg", "ogg", ("vorbis", "libopus"), keeps=("vorbis", "opus", "flac")),
    "mka": OutputFormat("mka", "matroska", ("aac", "libopus"), keeps=_MATROSKA_KEEPS, covers="attachment"),
    "mkv": OutputFormat("mkv", "matroska", ("aac", "libopus"), keeps=_MATROSKA_KEEPS, video=True,
                        covers="attachment"),
    "webm": OutputFormat("webm", "webm", ("libopus",), keeps=("opus", "vorbis"), video=True),
    "mp4": OutputFormat("mp4", "mp4", ("aac",), keeps=("aac", "alac", "ac3", "eac3", "mp3"), video=True,
                        covers="stream"),
    "mov": OutputFormat("mov", "mov", ("aac",), keeps=("aac", "alac", "ac3", "eac3", "mp3", "pcm"), video=True),
}
_VIDEO_FORMATS = tuple(ext for ext, f in OUTPUT_FORMATS.items() if f.video)


@dataclass(frozen=True)
class CopiedStream:
    """A source stream copied into the output packet for packet (no re-encode).

    Attributes
    ----------
    index : int
        Stream index in the source container.
    codec : str
        FFmpeg codec name.
    kind : str
        ``video`` or ``cover`` (an attached picture: cover art).
    as_attachment : bool
        Matroska: the cover is written as an attached file ``cover.png``/``cover.jpg``.
    """

    index: int
    codec: str
    kind: str
    as_attachment: bool = False


@dataclass(frozen=True)
class _Encoding:
    """The audio encoder settings chosen by plan_output (fields shared with OutputPlan)."""

    codec: str
    sample_format: str
    bit_depth: int | None
    sample_rate_hz: int
    channel_layout: str
    bit_rate_bps: int | None
    codec_options: tuple[tuple[str, str], ...]
    frame_size: int


@dataclass(frozen=True)
class OutputPlan:
    """Everything :class:`MediaWriter` needs, decided by :func:`plan_output` from headers alone.

    Attributes
    ----------
    source_url, output_url : str
        The input decoded (and whose video is copied) and the destination.
    format : str
        Key of :data:`OUTPUT_FORMATS` (``mp3``, ``mkv``, ...).
    muxer : str
        FFmpeg muxer.
    muxer_options : tuple of (str, str)
    codec : str
        FFmpeg audio encoder (``pcm_s24le``, ``flac``, ``aac``, ``libopus``, ...).
    sample_format : str
        Encoder sample format (``s16``, ``s32``, ``flt``, ``fltp``, ...).
    bit_depth : int or None
        Bits per sample of a lossless output (PCM, FLAC, ALAC); None for lossy codecs.
    bit_rate_bps : int or None
        Lossy codecs' target bit rate, bit/s (None: lossless, or Vorbis's fixed quality).
    codec_options : tuple of (str, str)
        FFmpeg encoder options (``strict``, ``mapping_family``, ``bits_per_raw_sample``).
    frame_size : int
        Samples per encoded frame per channel (0: any, PCM).
    input_sample_rate_hz, sample_rate_hz : int
        Rate of the blocks given to ``MediaWriter.write`` and of the output, Hz.
    channels : int
    input_channel_layout, channel_layout : str
        FFmpeg layout names of the blocks and of the output (they differ only where an encoder
        takes side surrounds as back surrounds; see ``notes``).
    clip : bool
        Samples are clipped to [-1, 1] (every output but 32-bit float PCM).
    audio_offset_s : float
        File time of the first audio sample, seconds (delayed audio keeps its delay).
    source_start_s : float
        Source container start time, seconds: subtracted from the copied streams' timestamps so
        they stay in step with the audio (as the ffmpeg CLI does without ``-copyts``).
    copied_streams : tuple of CopiedStream
        Video and cover-art streams copied bit for bit.
    metadata, audio_metadata : tuple of (str, str)
        Container tags and audio stream tags written.
    notes : tuple of str
        What differs from the input and why (rate changed, codec not kept, streams dropped).
    """

    source_url: str
    output_url: str
    format: str
    muxer: str
    muxer_options: tuple[tuple[str, str], ...]
    codec: str
    sample_format: str
    bit_depth: int | None
    bit_rate_bps: int | None
    codec_options: tuple[tuple[str, str], ...]
    frame_size: int
    input_sample_rate_hz: int
    sample_rate_hz: int
    channels: int
    input_channel_layout: str
    channel_layout: str
    clip: bool
    audio_offset_s: float
    source_start_s: float
    copied_streams: tuple[CopiedStream, ...]
    metadata: tuple[tuple[str, str], ...]
    audio_metadata: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format, "codec": self.codec, "sample_format": self.sample_format,
            "bit_depth": self.bit_depth, "bit_rate": self.bit_rate_bps, "sample_rate": self.sample_rate_hz,
            "channels": self.channels, "channel_layout": self.channel_layout,
            "copied_streams": [{"index": c.index, "codec": c.codec, "kind": c.kind} for c in self.copied_streams],
            "notes": list(self.notes),
        }


class _CannotEncode(Exception):
    """An encoder cannot take the input's channels/rate (internal: plan_output tries the next)."""


def _output_extension(output_url: str, format: str | None) -> str:
    """The OUTPUT_FORMATS key from ``format`` or the output URL's extension (query ignored)."""
    supported = ", ".join(OUTPUT_FORMATS)
    if format is not None:
        ext = str(format).strip().lower().lstrip(".")
        if ext not in OUTPUT_FORMATS:
            raise InvalidParameter(f"{output_url}: format={format!r} is not an output format audioqc "
                                   f"writes; supported: {supported}")
        return ext
    path = urllib.parse.urlsplit(output_url).path if "://" in output_url else output_url
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if not ext:
        raise InvalidParameter(f"{output_url}: the output has no extension to choose a format from; "
                               f"give format= (supported: {supported})")
    if ext not in OUTPUT_FORMATS:
        raise InvalidParameter(f"{output_url}: .{ext} is not an output format audioqc writes; "
                               f"supported: {supported}")
    return ext


def _canonical_codec(name: str) -> str:
    """FFmpeg's codec name for a decoder name (``mp3float`` -> ``mp3``, ``ac3_fixed`` -> ``ac3``)."""
    try:
        return av.codec.Codec(name, "r").canonical_name
    except (av.codec.codec.UnknownCodecError, ValueError):
        return name


def _lossless_bits(audio: AudioInfo) -> int:
    """16, 24 or 32: the integer PCM depth that holds the input's samples (24 when unknown)."""
    bits = audio.bit_depth
    if not bits:
        return 24  # lossy input: 24 bits hold everything its decoder produces
    return 16 if bits <= 16 else 24 if bits <= 24 else 32


def _is_float_pcm(audio: AudioInfo) -> bool:
    return audio.codec.startswith("pcm_f")


def _lossless_settings(encoder: str, audio: AudioInfo, ext: str) -> tuple[str, str, int, dict[str, str], list[str]]:
    """``(codec, sample format, bits, encoder options, notes)`` of a lossless encoder keeping the
    input's bit depth."""
    bits = _lossless_bits(audio)
    if encoder == "pcm":
        if _is_float_pcm(audio):
            # The blocks are float32: 64-bit float input would gain nothing from pcm_f64le.
            return "pcm_f32le", "flt", 32, {}, []
        if ext == "wav" and audio.codec in ("pcm_u8", "pcm_s8"):
            return "pcm_u8", "u8", 8, {}, []  # WAV's 8-bit PCM is unsigned
        return {16: ("pcm_s16le", "s16", 16, {}, []), 24: ("pcm_s24le", "s32", 24, {}, []),
                32: ("pcm_s32le", "s32", 32, {}, [])}[bits]
    notes = []
    if bits == 32:
        # FFmpeg writes 32-bit FLAC only with strict=experimental, and older decoders cannot read
        # it: the ffmpeg 5.1 CLI decodes such a file to 0 samples without an error (measured).
        # ALAC has no 32-bit mode.
        what = "float" if _is_float_pcm(audio) else "32-bit"
        notes.append(f"{what} input written as 24-bit {_CODEC_LABELS[encoder]}")
        bits = 24
    if encoder == "flac":
        # FFmpeg's FLAC encoder: s16 -> 16-bit FLAC; s32 -> 24-bit unless bits_per_raw_sample > 24.
        return ("flac", "s16", 16, {}, notes) if bits == 16 else \
            ("flac", "s32", 24, {"bits_per_raw_sample": "24"}, notes)
    # ALAC: s16p -> 16-bit, s32p -> 24-bit.
    return ("alac", "s16p", 16, {}, notes) if bits == 16 else ("alac", "s32p", 24, {}, notes)


def _lossy_sample_format(codec: str) -> str:
    """A float sample format the encoder takes (the blocks are float), else its first."""
    formats = [f.name for f in av.codec.Codec(codec, "w").audio_formats or ()]
    for name in ("fltp", "flt"):
        if name in formats:
            return name
    return formats[0]


def _output_rate(codec: str, rate: int) -> int:
    """The input's rate if the encoder takes it; Opus: 48 kHz; others: the nearest higher rate
    the encoder takes, else its highest."""
    rates = av.codec.Codec(codec, "w").audio_rates
    if not rates or rate in rates:
        return rate
    if codec == "libopus":
        return 48000
    higher = [r for r in rates if r >= rate]
    return min(higher) if higher else max(rates)


def _bit_rate(codec: str, audio: AudioInfo, rate: int) -> int | None:
    """Target bit rate of a lossy encoder: the input's when the codec is the same, else the
    default, clamped to what the encoder takes."""
    if codec not in DEFAULT_BITRATE_PER_CHANNEL:
        return None
    same = _canonical_codec(audio.codec) == av.codec.Codec(codec, "w").canonical_name
    bps = audio.bitrate_bps if same and audio.bitrate_bps else DEFAULT_BITRATE_PER_CHANNEL[codec] * audio.channels
    # Ceilings: MP3 320 kb/s (MPEG-1 rates), 160 kb/s (MPEG-2: 16-24 kHz), 64 kb/s (MPEG-2.5:
    # 8-12 kHz); AC-3 640 kb/s; AAC 6144 bits per channel per 1024-sample frame; libopus 256 kb/s
    # per channel.
    mp3 = 320_000 if rate >= 32000 else 160_000 if rate >= 16000 else 64_000
    ceiling = {"libmp3lame": mp3, "ac3": 640_000, "eac3": 6_144_000,
               "aac": 6 * rate * audio.channels, "libopus": 256_000 * audio.channels}[codec]
    return int(min(max(bps, 8_000), ceiling))


def _open_encoder(codec: str, sample_format: str, rate: int, layout: str, bit_rate: int | None,
                  options: dict[str, str]) -> tuple[int | None, str | None]:
    """Open the encoder as MediaWriter will: ``(frame_size, None)`` or ``(None, FFmpeg's message)``."""
    try:
        cc = av.CodecContext.create(codec, "w")
        assert isinstance(cc, av.AudioCodecContext), codec  # the plan's codecs are audio encoders
        cc.sample_rate = rate
        cc.layout = layout
        cc.format = sample_format
        cc.time_base = Fraction(1, rate)
        if bit_rate:
            cc.bit_rate = bit_rate
        cc.options = dict(options)
        cc.open()
    except (av.error.FFmpegError, ValueError) as exc:
        return None, _ffmpeg_message(exc)
    return cc.frame_size, None


def _side_back_swapped(layout: str) -> str | None:
    """The layout with side surrounds as back surrounds or the reverse (5.1(side) <-> 5.1), if it
    has exactly one of the two pairs; FFmpeg's resampler moves the channels 1:1 (measured)."""
    try:
        names = [c.name for c in av.AudioLayout(layout).channels]
    except (ValueError, TypeError):
        return None
    side, back = {"SL", "SR"} <= set(names), {"BL", "BR"} <= set(names)
    if side == back:
        return None
    swap = {"SL": "BL", "SR": "BR", "BL": "SL", "BR": "SR"}
    return av.AudioLayout("+".join(swap.get(n, n) for n in names)).name


def _encoding_for(encoder: str, audio: AudioInfo, ext: str) -> tuple[_Encoding, list[str]]:
    """Settings of ``encoder`` for the input, checked by opening it; raises _CannotEncode."""
    label = _CODEC_LABELS.get(encoder, encoder)
    lo, hi = _CHANNEL_LIMITS.get(encoder, (1, 255))
    if not lo <= audio.channels <= hi:
        held = "stereo only" if lo == hi == 2 else f"at most {hi} channels"
        raise _CannotEncode(f"{label} holds {held}")
    notes: list[str] = []
    options: dict[str, str] = {}
    if encoder in ("pcm", "flac", "alac"):
        codec, sample_format, bits, options, notes = _lossless_settings(encoder, audio, ext)
    else:
        codec, sample_format, bits = encoder, _lossy_sample_format(encoder), None
        if codec == "vorbis":
            options = {"strict": "experimental"}  # FFmpeg's native Vorbis encoder is experimental
    rate = _output_rate(codec, audio.sample_rate_hz)
    if rate != audio.sample_rate_hz:
        notes.append(f"{label} does not take {audio.sample_rate_hz} Hz: resampled to {rate} Hz")
    bit_rate = _bit_rate(codec, audio, rate)
    layout = audio.channel_layout
    frame_size, problem = _open_encoder(codec, sample_format, rate, layout, bit_rate, options)
    if problem:
        swapped = _side_back_swapped(layout)
        if swapped and _open_encoder(codec, sample_format, rate, swapped, bit_rate, options)[1] is None:
            notes.append(f"{label} does not take the {layout} layout: written as {swapped} "
                         f"(the side surrounds become back surrounds or the reverse, samples unchanged)")
            layout = swapped
        elif codec == "libopus":
            # Opus mapping family 255: any count up to 255, channels carried without positions.
            options = {**options, "mapping_family": "255"}
            notes.append(f"{label} has no {layout} layout: written with mapping family 255 "
                         f"(the channels in order, without speaker positions)")
        else:
            raise _CannotEncode(f"{label} does not take {audio.channels} channels ({layout}) at {rate} Hz ({problem})")
        frame_size, problem = _open_encoder(codec, sample_format, rate, layout, bit_rate, options)
        if problem:
            raise _CannotEncode(f"{label} does not take {audio.channels} channels ({layout}) at {rate} Hz ({problem})")
    enc = _Encoding(codec=codec, sample_format=sample_format, bit_depth=bits, sample_rate_hz=rate,
                    channel_layout=layout, bit_rate_bps=bit_rate,
                    codec_options=tuple(sorted(options.items())), frame_size=int(frame_size or 0))
    return enc, notes


def _first_encoding(fmt: OutputFormat, audio: AudioInfo) -> tuple[_Encoding | None, list[str], list[str]]:
    """The encoding of the first encoder that takes the input: ``(encoding, notes, failures)``."""
    source = _canonical_codec(audio.codec)
    kept = "pcm" if source.startswith("pcm_") else source
    candidates = list(fmt.codecs)
    if kept in fmt.keeps and kept in _KEPT_ENCODERS:
        encoder = _KEPT_ENCODERS[kept]
        candidates = [encoder] + [c for c in candidates if c != encoder]
    failures: list[str] = []
    for encoder in candidates:
        try:
            enc, notes = _encoding_for(encoder, audio, fmt.extension)
        except _CannotEncode as exc:
            failures.append(str(exc))
            continue
        if failures:
            notes.insert(0, f"{'; '.join(failures)}: written as {_CODEC_LABELS.get(encoder, encoder)}")
        return enc, notes, failures
    return None, [], failures


def _choose_encoding(fmt: OutputFormat, info: MediaInfo, output_url: str) -> tuple[_Encoding, list[str]]:
    enc, notes, failures = _first_encoding(fmt, info.audio)
    if enc is not None:
        return enc, notes
    a = info.audio
    others = [ext for ext, f in OUTPUT_FORMATS.items() if ext != fmt.extension and _first_encoding(f, a)[0]]
    raise InvalidParameter(
        f"{output_url}: cannot write the input's {a.channels} channels ({a.channel_layout}, "
        f"{a.sample_rate_hz} Hz) as {fmt.extension}: {'; '.join(failures)}"
        + (f"; choose {', '.join(others)}" if others else ""))


def _copied_tags(tags: dict[str, str] | None, *, drop_stale: bool = True) -> tuple[tuple[str, str], ...]:
    """Tags to write, without the ones a re-encode makes false (_STALE_TAGS; mkvmerge writes them
    with a language suffix, ``BPS-eng``)."""
    out = []
    for key, value in (tags or {}).items():
        base = key.lower().split("-")[0]
        if drop_stale and base in _STALE_TAGS:
            continue
        out.append((key, value))
    return tuple(out)


def _same_target(source_url: str, output_url: str) -> bool:
    """Whether the output would overwrite the input: the same file (symlinks, ``..`` and
    ``file://`` resolved), the same object, or the same HTTP resource whatever the query (a
    presigned GET and a presigned PUT of one object differ only in their signatures)."""
    if _is_local(source_url) and _is_local(output_url):
        a, b = _local_path(source_url), _local_path(output_url)
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    if _is_local(source_url) or _is_local(output_url):
        return False
    src, dst = urllib.parse.urlsplit(source_url), urllib.parse.urlsplit(output_url)
    if src.scheme in ("http", "https"):
        return (src.scheme, src.netloc.lower(), src.path) == (dst.scheme, dst.netloc.lower(), dst.path)
    norm = lambda u: (u.scheme, u.netloc, u.path.strip("/").replace("//", "/"))  # noqa: E731
    return norm(src) == norm(dst)


def _muxer_takes(muxer: str, template: Any) -> bool:
    """Whether FFmpeg's ``muxer`` accepts a copy of ``template`` (avformat_query_codec)."""
    try:
        with av.open(BytesIO(), "w", format=muxer) as out:
            out.add_stream_from_template(template, opaque=True)
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def _add_audio_stream(out: Any, enc: Any, metadata: tuple[tuple[str, str], ...]) -> Any:
    """Add and open the audio encoder (``enc``: an OutputPlan or _Encoding)."""
    astream = out.add_stream(enc.codec, rate=enc.sample_rate_hz, layout=enc.channel_layout)
    cc = astream.codec_context
    cc.format = enc.sample_format
    if enc.bit_rate_bps:
        cc.bit_rate = enc.bit_rate_bps
    cc.options = dict(enc.codec_options)
    cc.time_base = astream.time_base = Fraction(1, enc.sample_rate_hz)
    astream.metadata.update(metadata)  # a dict PyAV writes with the header (not assignable)
    cc.open()  # now, so the muxer's header gets the encoder's extradata and frame_size is known
    return astream


def _add_copied_stream(out: Any, template: Any) -> Any:
    """Add a stream that receives ``template``'s packets unchanged (codec parameters copied).

    ``opaque=True`` builds the stream on the source's decoder: PyAV's default for video looks up an
    *encoder* of the same name, which does not exist for ``h264`` or ``hevc``."""
    stream = out.add_stream_from_template(template, opaque=True)
    stream.disposition = template.disposition.value
    stream.metadata.update(_copied_tags(template.metadata, drop_stale=False))
    return stream


def _first_packet_bytes(url: str, index: int) -> bytes | None:
    """The payload of stream ``index``'s first packet (an attached picture's image)."""
    with _open_container(url) as (container, _size):
        for packet in container.demux(container.streams[index]):
            if packet.size:
                return bytes(packet)
    return None


def _trial_mux(fmt: OutputFormat, enc: _Encoding, container: Any, copied: list[CopiedStream]) -> str | None:
    """Write the output's header to memory with these streams: None, or FFmpeg's message."""
    try:
        with av.open(BytesIO(), "w", format=fmt.muxer, container_options=dict(fmt.muxer_options)) as out:
            _add_audio_stream(out, enc, ())
            for c in copied:
                if not c.as_attachment:
                    _add_copied_stream(out, container.streams[c.index])
            out.start_encoding()
    except (av.error.FFmpegError, ValueError) as exc:
        return _ffmpeg_message(exc)
    return None


def _plan_copied_streams(fmt: OutputFormat, enc: _Encoding, container: Any, output_url: str,
                         notes: list[str]) -> list[CopiedStream]:
    """Which video and cover-art streams are copied; raises UnsupportedMedia for real video the
    output cannot hold. Other streams are listed in ``notes`` as not copied."""
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    covers = [s for s in container.streams.video if s.disposition & av.stream.Disposition.attached_pic]
    name = lambda s: s.codec_context.name if s.codec_context is not None else "unknown"  # noqa: E731
    if videos:
        codecs = ", ".join(name(s) for s in videos)
        able = [ext for ext in _VIDEO_FORMATS
                if all(_muxer_takes(OUTPUT_FORMATS[ext].muxer, s) for s in videos)]
        choose = (f"choose {', '.join(able)} to keep it (the video is copied, not re-encoded)" if able
                  else "no output format audioqc writes can hold it")
        if not fmt.video:
            raise UnsupportedMedia(output_url, f"the input has video ({codecs}); {fmt.extension} holds "
                                               f"audio only: {choose}")
        if fmt.extension not in able:
            raise UnsupportedMedia(output_url, f"the input has video ({codecs}); FFmpeg's {fmt.muxer} "
                                               f"muxer cannot hold it: {choose}")
    copied = [CopiedStream(s.index, name(s), "video") for s in videos]
    for s in covers:
        if fmt.covers == "attachment" and name(s) in _COVER_MIMETYPES:
            copied.append(CopiedStream(s.index, name(s), "cover", as_attachment=True))
        elif fmt.covers == "stream" and _muxer_takes(fmt.muxer, s):
            copied.append(CopiedStream(s.index, name(s), "cover"))
        else:
            notes.append(f"cover art ({name(s)}) not copied: {fmt.extension} cannot hold it")
    problem = _trial_mux(fmt, enc, container, copied)
    if problem:
        if videos:
            raise UnsupportedMedia(output_url, f"FFmpeg's {fmt.muxer} muxer refuses the input's video "
                                               f"({', '.join(name(s) for s in videos)}): {problem}")
        raise InvalidParameter(f"{output_url}: FFmpeg cannot write {enc.codec} audio as {fmt.extension} ({problem})")
    return copied


def _dropped_streams(container: Any, audio_index: int) -> list[str]:
    """Notes naming the source streams not written: other audio, subtitles, data, attachments."""
    notes = []
    others = [s for s in container.streams.audio if s.index != audio_index]
    if others:
        notes.append(f"{len(others)} other audio stream(s) not copied (only the decoded one is written)")
    for kind in ("subtitles", "data", "attachments"):
        streams = list(getattr(container.streams, kind, ()))
        if streams:
            notes.append(f"{len(streams)} {kind} stream(s) not copied")
    return notes


def plan_output(info: MediaInfo, output_url: str, *, format: str | None = None,
                source_url: str | None = None) -> OutputPlan:
    """Decide how the processed audio of ``info``'s file is written to ``output_url``.

    Everything is decided, and every error raised, from headers before any decoding: the format
    and codec, sample rate, layout, bit depth or bit rate, the video and cover art copied, and a
    pre-flight :func:`check_writable` of the output.

    Parameters
    ----------
    info : MediaInfo
        The input, from :func:`probe` (its selected audio stream is the one written).
    output_url : str
        Local path or fsspec / presigned http(s) URL.
    format : str, optional
        Output kind (a key of :data:`OUTPUT_FORMATS`, case-insensitive, leading dot allowed);
        default: the output URL's extension.
    source_url : str, optional
        The input opened for its video streams and tags; default ``info.url``.

    Notes
    -----
    Codec: the input's is kept where the format keeps it (``OutputFormat.keeps``: AAC stays AAC
    in m4a/mp4/mov/mkv, AC-3 in mkv/mp4, PCM in wav/mov/mkv, ...), else the format's codec. Lossless
    outputs keep the input's bit depth (16 -> 16; 24 -> 24; 32-bit integer -> 32 in PCM, 24 in
    FLAC/ALAC; float -> 32-bit float in PCM, 24 in FLAC/ALAC; lossy input -> 24). Lossy outputs keep
    the input's bit rate when the codec is the same, else DEFAULT_BITRATE_PER_CHANNEL. The rate is
    kept unless the encoder cannot (Opus -> 48 kHz unless 8/12/16/24/48 kHz; MP3, AAC, AC-3 -> the
    nearest higher rate they take). The layout is kept (side and back surrounds may be swapped
    where an encoder knows only one). Real video is copied bit for bit; attached pictures where the
    output holds them; other audio, subtitle, data and attachment streams are not copied (notes).
    Container and audio stream tags are copied, except encoding facts (_STALE_TAGS).

    Raises
    ------
    InvalidParameter
        Unknown or missing format; the output is the input; the format cannot hold the input's
        channels (e.g. 6 channels as mp3) or rate.
    UnsupportedMedia
        The input has video the output cannot hold (wav, mp3, ... hold audio only; webm takes VP8,
        VP9 and AV1 only).
    OutputError
        The output cannot be written (see :func:`check_writable`).
    """
    if not isinstance(output_url, str) or not output_url:
        raise InvalidParameter(f"output_url={output_url!r} must be a non-empty string")
    source_url = source_url or info.url
    ext = _output_extension(output_url, format)
    fmt = OUTPUT_FORMATS[ext]
    if _same_target(source_url, output_url):
        raise InvalidParameter(f"{output_url}: is the input ({source_url}); the output may not be the input")
    check_writable(output_url)
    enc, notes = _choose_encoding(fmt, info, output_url)
    with _open_container(source_url) as (container, _size):
        audio = list(container.streams.audio)
        astream = audio[info.audio.stream_index] if info.audio.stream_index < len(audio) else audio[0]
        copied = _plan_copied_streams(fmt, enc, container, output_url, notes)
        notes.extend(_dropped_streams(container, astream.index))
        offset = _audio_offset_s(container, astream)
        start_s = container.start_time / av.time_base if container.start_time else 0.0
        metadata = _copied_tags(container.metadata)
        audio_metadata = _copied_tags(astream.metadata)
    if fmt.muxer == "ogg":
        # Ogg keeps tags per stream (Vorbis comments): FFmpeg's Ogg muxer writes the stream's only,
        # so the container's tags go to the audio stream too.
        keys = {k.lower() for k, _ in audio_metadata}
        audio_metadata += tuple((k, v) for k, v in metadata if k.lower() not in keys)
    return OutputPlan(
        source_url=source_url, output_url=output_url, format=ext, muxer=fmt.muxer,
        muxer_options=fmt.muxer_options, codec=enc.codec, sample_format=enc.sample_format,
        bit_depth=enc.bit_depth, bit_rate_bps=enc.bit_rate_bps, codec_options=enc.codec_options,
        frame_size=enc.frame_size, input_sample_rate_hz=info.audio.sample_rate_hz,
        sample_rate_hz=enc.sample_rate_hz, channels=info.audio.channels,
        input_channel_layout=info.audio.channel_layout, channel_layout=enc.channel_layout,
        clip=enc.codec != "pcm_f32le", audio_offset_s=offset, source_start_s=start_s,
        copied_streams=tuple(copied), metadata=metadata, audio_metadata=audio_metadata, notes=tuple(notes),
    )


class MediaWriter:
    """Encode processed audio blocks to a local file as ``plan`` says, copying the source's video.

    A context manager: ``with MediaWriter(plan, path) as w: w.write(block) ...``. On a clean exit
    the encoders and the remaining video are flushed and the file is finished; on an exception
    everything is closed without raising a second error (the file is left incomplete: write to
    the temporary path of :func:`atomic_output`, which deletes it).

    Parameters
    ----------
    plan : OutputPlan
        From :func:`plan_output`.
    local_path : str
        Local file to write (any name: the format comes from the plan).

    Notes
    -----
    The blocks are the selected audio stream from its first sample, as ``stream(url)`` yields them
    without ``start``/``end`` (they are stamped from ``plan.audio_offset_s``). The video streams
    are read by a second demuxer on ``plan.source_url`` (opened as
    :func:`stream` opens it, so s3:// and http(s):// work) and their packets muxed unchanged up to
    the audio time written so far plus VIDEO_LEAD_S: nothing is read ahead, memory stays flat.
    """

    def __init__(self, plan: OutputPlan, local_path: str) -> None:
        if not isinstance(local_path, str) or not _is_local(local_path):
            raise InvalidParameter(f"local_path={local_path!r} must be a local path (use atomic_output for URLs)")
        self.plan = plan
        self.path = os.path.abspath(_local_path(local_path))  # absolute: FFmpeg reads "x:y" as a protocol
        #: Input frames written so far.
        self.frames_written = 0
        #: Problems that did not stop the write (e.g. the source's video ends early).
        self.warnings: list[str] = []
        self._closed = False
        self._stack = contextlib.ExitStack()
        self._out: Any = None
        self._demux: Iterator[Any] | None = None
        self._next_packet: Any = None
        self._copies: dict[int, tuple[Any, int]] = {}  # source index -> (output stream, pts shift)
        try:
            self._open()
        except BaseException:
            self._abort()
            raise

    # -- setup

    def _open(self) -> None:
        plan = self.plan
        try:
            self._out = av.open(self.path, "w", format=plan.muxer, container_options=dict(plan.muxer_options))
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(self.path, f"cannot create the output ({_ffmpeg_message(exc)})") from None
        self._out.metadata.update(plan.metadata)
        self._astream = _add_audio_stream(self._out, plan, plan.audio_metadata)
        frame_size = 0 if self._astream.codec_context.codec.capabilities & av.codec.Capabilities.variable_frame_size \
            else self._astream.codec_context.frame_size
        # Blocks arrive as packed float ("flt"): PyAV's planar path mishandles 8+ channels.
        self._resampler = av.AudioResampler(format=plan.sample_format, layout=plan.channel_layout,
                                            rate=plan.sample_rate_hz, frame_size=frame_size or None)
        self._pts0 = int(round(plan.audio_offset_s * plan.input_sample_rate_hz))
        if plan.copied_streams:
            self._open_copies()

    def _open_copies(self) -> None:
        plan = self.plan
        for c in plan.copied_streams:
            if c.as_attachment:  # Matroska cover art: an attached file, written with the header
                data = _first_packet_bytes(plan.source_url, c.index)
                if data:
                    mimetype, ext = _COVER_MIMETYPES[c.codec]
                    self._out.add_attachment(f"cover.{ext}", mimetype, data)
        source, _size = self._stack.enter_context(_open_container(plan.source_url))
        templates = [source.streams[c.index] for c in plan.copied_streams if not c.as_attachment]
        for template in templates:
            shift = int(round(plan.source_start_s / template.time_base)) if plan.source_start_s else 0
            self._copies[template.index] = (_add_copied_stream(self._out, template), shift)
        if templates:
            self._demux = source.demux(*templates)
            self._next_packet = self._pull()

    # -- writing

    @property
    def audio_time_s(self) -> float:
        """File time of the end of the audio written so far, seconds."""
        return self.plan.audio_offset_s + self.frames_written / self.plan.input_sample_rate_hz

    def write(self, block: np.ndarray) -> None:
        """Encode a float32 ``(channels, frames)`` block at the input's sample rate (full scale 1.0;
        a 1-D array for mono)."""
        if self._closed:
            raise AudioQCError(f"{self.plan.output_url}: write() after close()")
        plan = self.plan
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1 and plan.channels == 1:
            block = block[np.newaxis, :]
        if block.ndim != 2 or block.shape[0] != plan.channels:
            raise InvalidParameter(f"{plan.output_url}: block of shape {block.shape}; expected "
                                   f"({plan.channels}, frames)")
        if not np.isfinite(block).all():
            raise InvalidParameter(f"{plan.output_url}: the block holds NaN or infinite samples")
        if plan.clip:
            block = np.clip(block, -1.0, 1.0)
        try:
            for i in range(0, block.shape[1], WRITE_CHUNK_FRAMES):
                self._write_piece(block[:, i:i + WRITE_CHUNK_FRAMES])
                self._mux_copies_until(self.audio_time_s + VIDEO_LEAD_S)
        except av.error.FFmpegError as exc:
            raise OutputError(plan.output_url, f"encoding failed ({_ffmpeg_message(exc)})") from None

    def _write_piece(self, piece: np.ndarray) -> None:
        plan = self.plan
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece.T).reshape(1, -1), format="flt",
                                           layout=plan.input_channel_layout)
        frame.sample_rate = plan.input_sample_rate_hz
        frame.time_base = Fraction(1, plan.input_sample_rate_hz)
        frame.pts = self._pts0 + self.frames_written
        self.frames_written += piece.shape[1]
        for f in self._resampler.resample(frame):
            self._encode(f)

    def _encode(self, frame: Any) -> None:
        for packet in self._astream.encode(frame):
            self._out.mux(packet)

    # -- copied streams

    def _pull(self) -> Any:
        """The next packet of the copied streams, or None at their end."""
        assert self._demux is not None
        while True:
            try:
                packet = next(self._demux)
            except StopIteration:
                return None
            except (av.error.FFmpegError, OSError, EOFError) as exc:
                self.warnings.append(f"video copy stopped at {self.audio_time_s:.3f} s: the source's "
                                     f"demuxer failed ({_ffmpeg_message(exc)})")
                return None
            if packet.size:  # PyAV ends each stream with an empty flush packet
                return packet

    def _mux_copies_until(self, t_s: float) -> None:
        """Mux copied packets whose decode time is at or before ``t_s`` (file time, seconds)."""
        while self._next_packet is not None:
            packet = self._next_packet
            ts = packet.dts if packet.dts is not None else packet.pts
            if ts is not None and float(ts * packet.time_base) - self.plan.source_start_s > t_s:
                return  # an attached picture has no timestamp: muxed at once
            out_stream, shift = self._copies[packet.stream.index]
            if shift:
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
            packet.stream = out_stream
            self._out.mux(packet)
            self._next_packet = self._pull()

    # -- closing

    def close(self) -> None:
        """Flush the encoder and the remaining video, finish the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for frame in self._resampler.resample(None):
                self._encode(frame)
            self._encode(None)
            self._mux_copies_until(math.inf)
            self._out.close()
        except av.error.FFmpegError as exc:
            self._abort()
            raise OutputError(self.plan.output_url, f"finishing the file failed ({_ffmpeg_message(exc)})") from None
        except BaseException:
            self._abort()
            raise
        finally:
            self._stack.close()

    def _abort(self) -> None:
        """Close everything, raising nothing (the error being handled is the one that matters)."""
        self._closed = True
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
        with contextlib.suppress(Exception):
            self._stack.close()

    def __enter__(self) -> MediaWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if exc_type is None:
            self.close()
        else:
            self._abort()
        return False


# --------------------------------------------------------------------------------------------
# publishing


def _redacted(url: str) -> str:
    """``url`` without its query: a presigned URL's query is a credential, kept out of messages."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "…" if parts.query else "", ""))


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def check_writable(url: str) -> None:
    """Cheap pre-flight check that ``url`` can be written; run before any decoding.

    Local: the directory exists and is writable, and the path is not a directory. Object stores
    (s3://, gs://, az://, ...): the bucket exists and is visible with the current credentials.
    http(s):// (a presigned PUT URL): nothing to check without writing. Other fsspec URLs: the
    protocol is known.

    Raises
    ------
    OutputError
        Naming the URL and the problem.
    """
    if not isinstance(url, str) or not url:
        raise InvalidParameter(f"url={url!r} must be a non-empty string")
    if _is_http(url):
        return
    if _is_local(url):
        path = os.path.abspath(_local_path(url))
        if os.path.isdir(path) or _local_path(url).endswith(os.sep):
            raise OutputError(url, "is a directory, not a file")
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            raise OutputError(url, f"directory {directory} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OutputError(url, f"directory {directory} is not writable")
        return
    try:
        fs, path = storage.filesystem(url)
    except AudioQCError as exc:
        raise OutputError(url, f"cannot write to this URL ({getattr(exc, 'problem', exc)})") from None
    if not path or path.endswith("/"):
        raise OutputError(url, "names a bucket or directory, not an object")
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if _BUCKET_PROTOCOLS & set(protocols):
        bucket = path.split("/")[0]
        try:
            exists = fs.exists(bucket)
        except Exception as exc:  # credential and network errors differ per backend
            err = storage.remote_error(url, exc, doing=f"check bucket {bucket}")
            raise OutputError(url, getattr(err, "problem", str(err))) from None
        if not exists:
            raise OutputError(url, f"bucket {bucket} does not exist or is not accessible")


def _new_file_mode(dest: str) -> int:
    """Mode for the published file: the replaced file's, else 0o666 less the umask (mkstemp makes
    0o600 files, which would hide the output from other users)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(dest).st_mode)
    umask = None
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:  # Linux: read without changing it
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
    if umask is None:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def _publish_local(tmp: str, url: str) -> None:
    """fsync the file, rename it over the destination, fsync the directory."""
    dest = os.path.abspath(_local_path(url))
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _new_file_mode(dest))
        os.replace(tmp, dest)
        dir_fd = os.open(os.path.dirname(dest), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise OutputError(url, f"cannot publish the output: {exc.strerror or exc}") from None


def _publish_http(tmp: str, url: str) -> None:
    """One HTTP PUT of the file with its Content-Length. fsspec's HTTPFileSystem.put_file(method=
    "put") sends the body chunked, without a Content-Length, which presigned S3 PUT URLs refuse
    (501 NotImplemented): requests sends the file with its length."""
    import requests

    size = os.path.getsize(tmp)
    shown = _redacted(url)
    try:
        with open(tmp, "rb") as f:
            # An empty body is given as b"": requests sends an empty file object chunked.
            response = requests.put(url, data=f if size else b"", timeout=HTTP_PUT_TIMEOUT_S)
    except requests.RequestException as exc:
        query = urllib.parse.urlsplit(url).query
        message = str(exc).replace(query, "…") if query else str(exc)
        raise OutputError(shown, f"HTTP PUT failed: {type(exc).__name__}: {message}") from None
    if not 200 <= response.status_code < 300:
        body = " ".join(response.text.split())[:300]
        raise OutputError(shown, f"HTTP PUT refused: {response.status_code} {response.reason}"
                                 + (f": {body}" if body else ""))


def _publish_fsspec(tmp: str, url: str) -> None:
    """One ``put_file``: s3fs sends one PUT (under 2 x its 50 MiB chunk size) or a multipart upload
    completed only at the end (aborted on failure), so no reader ever sees a partial object."""
    fs, path = storage.filesystem(url)
    try:
        fs.put_file(tmp, path)
    except FileNotFoundError:
        raise OutputError(url, "the bucket or directory does not exist") from None
    except Exception as exc:  # network and credential errors differ per backend
        err = storage.remote_error(url, exc, doing="upload")
        raise OutputError(url, getattr(err, "problem", str(err))) from None


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into SystemExit(143) while active, so cleanup code runs (Python's default
    SIGTERM action kills the process at once). Only in the main thread, and only when no handler
    of the application's is installed."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def atomic_output(url: str) -> Iterator[str]:
    """Yield a local temporary path to write; publish it at ``url`` in one step on a clean exit.

    Local destination: the temporary file is ``.<name>.<random>.part`` in the destination's
    directory, fsynced and renamed over it (``os.replace``). Remote fsspec URL (s3://, gs://, ...):
    the temporary file (in the system's temp directory) is uploaded in one ``put_file``. http(s)://
    (a presigned PUT URL): one HTTP PUT. On an exception, KeyboardInterrupt or SIGTERM (turned into
    SystemExit(143) while inside, when the application has no handler of its own), the temporary
    file is deleted and nothing is created at ``url``. A SIGKILL leaves the ``.part`` file (the
    destination is untouched).

    Raises
    ------
    OutputError
        The destination cannot be written (checked first with :func:`check_writable`) or the
        publication failed (an HTTP error gives its status).
    """
    check_writable(url)
    if _is_local(url):
        dest = os.path.abspath(_local_path(url))
        directory, prefix, suffix = os.path.dirname(dest), f".{os.path.basename(dest)[:120]}.", ".part"
    else:
        # The destination's name ends the temporary name, so backends that guess a Content-Type
        # from the file name (s3fs) guess it from the right extension.
        name = os.path.basename(urllib.parse.urlsplit(url).path)[-120:]
        directory, prefix, suffix = None, "audioqc-", f".part-{name}"
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    except OSError as exc:
        raise OutputError(url, f"cannot create a temporary file: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        with _sigterm_raises():
            yield tmp
            if _is_local(url):
                _publish_local(tmp, url)
            elif _is_http(url):
                _publish_http(tmp, url)
            else:
                _publish_fsspec(tmp, url)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
