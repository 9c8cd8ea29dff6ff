"""Media input: the only module that touches bytes, URLs and decoders.

``probe(url)`` reads headers only and returns :class:`MediaInfo` (Dolby's ``media_info`` shape).
``stream(url, start=..., end=...)`` is a context manager giving an :class:`AudioStream`: iterate it
for float32 channels-first blocks ``(channels, frames)``. Memory is bounded by the block size,
whatever the duration. Decoding is done by PyAV (FFmpeg's libraries inside the wheel), so every
container and codec FFmpeg reads is supported. Any fsspec URL works (local paths, ``file://``,
``s3://``, ``http(s)://``); remote objects are read through a random-access file object, never
whole into memory.
"""

from __future__ import annotations

import contextlib
import math
import os
from fractions import Fraction
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import av
import fsspec
import numpy as np

from .channels import default_layout
from .errors import (
    AudioQCError,
    DecodeError,
    EmptyMedia,
    InvalidParameter,
    SourceNotFound,
    UnsupportedMedia,
)

__all__ = ["AudioInfo", "ContainerInfo", "MediaInfo", "AudioStream", "probe", "stream", "parse_time", "write"]

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
    nonfinite_samples: int = 0  # NaN/Inf samples of float PCM, replaced by 0 before analysis
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
    fileobj: BinaryIO | None = None
    try:
        if _is_local(url):
            path = _local_path(url)
            if os.path.isdir(path):
                raise SourceNotFound(url, "is a directory, not a media file")
            try:
                size = os.path.getsize(path)
            except OSError as exc:
                raise SourceNotFound(url, f"cannot open: {exc.strerror or exc}") from None
            source: Any = path
        else:
            try:
                fs, path = fsspec.core.url_to_fs(url)
                fileinfo = fs.info(path)
            except FileNotFoundError:
                raise SourceNotFound(url, "no such object") from None
            except (ImportError, ValueError) as exc:
                raise SourceNotFound(url, f"cannot open URL: {exc}") from None
            except Exception as exc:  # network and credential errors differ per backend
                raise SourceNotFound(url, f"cannot open: {type(exc).__name__}: {exc}") from None
            if fileinfo.get("type") == "directory":
                raise SourceNotFound(url, "is a directory, not a media file")
            size = fileinfo.get("size")
            fileobj = fs.open(path, "rb", block_size=REMOTE_BLOCK_BYTES, cache_type="readahead")
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
        return audio[stream_index]
    # FFmpeg's notion of the default stream: the one flagged default, else the first.
    for s in audio:
        if s.disposition & av.stream.Disposition.default:
            return s
    return audio[0]


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
        kwargs = {} if _is_local(url) else {"block_size": 1 << 16}
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


def _frame_to_array(frame: Any, channels: int) -> np.ndarray:
    """Decoded frame -> float32 ``(channels, samples)`` in [-1, 1) full scale."""
    arr = frame.to_ndarray()
    fmt = frame.format.name
    base = fmt.rstrip("p")
    if base in ("flt", "dbl"):
        out = arr.astype(np.float32, copy=False)
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
                f"{self.report.nonfinite_samples} NaN/infinite samples replaced by 0 before analysis")

    def _time_base_samples(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        tb = self._astream.time_base
        start = self._astream.start_time or 0
        return int(round((pts - start) * tb * self.sample_rate))

    def _chunks(self) -> Iterator[np.ndarray]:
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
                report.problem = f"stream ends early: demuxer failed after {report.frames} samples ({_ffmpeg_message(exc)})"
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
                if base_is_float(frame) and not np.isfinite(data).all():
                    bad = ~np.isfinite(data)
                    report.nonfinite_samples += int(bad.sum())
                    data = np.where(bad, np.float32(0.0), data)
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
