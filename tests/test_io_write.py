"""audiolib.io output: plan_output, MediaWriter (encode + video remux), atomic_output.

Oracles are independent of the code under test: the ffmpeg/ffprobe CLI (FFmpeg 5.1 from Debian,
not PyAV's FFmpeg 8.1) reads every file written, decodes it, and hashes the copied video packets.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from audiolib import io
from audiolib.errors import AudioQCError, InvalidParameter, OutputError, UnsupportedMedia
from conftest import SR, run_ffmpeg

REPO = Path(__file__).resolve().parents[1]

#: Decoded length tolerance of lossy outputs, samples: one codec frame plus the encoder delay
#: (AAC 1024 + 1024 priming; LAME 1152 + 576 + 529; Opus 960 + 312 pre-skip; Vorbis one long
#: block of 2048; AC-3 1536 + 256). Containers that store the delay (MP4 edit lists, the LAME tag,
#: Ogg/Matroska pre-skip) trim it; ADTS cannot, so raw AAC decodes 1024 samples late.
FRAME_AND_DELAY = {"aac": 2048, "libmp3lame": 1152 + 1105, "libopus": 960 + 312, "vorbis": 2048, "ac3": 1536 + 256}


# --------------------------------------------------------------------------------------------
# oracles and helpers


def ffprobe(path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def audio_stream(probe: dict) -> dict:
    return next(s for s in probe["streams"] if s["codec_type"] == "audio")


def ffdecode(path, sample_fmt: str = "f32le") -> np.ndarray:
    """The first audio stream decoded by the ffmpeg CLI: (channels, frames), f32le or s32le."""
    channels = int(audio_stream(ffprobe(path))["channels"])
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
                          "-f", sample_fmt, "-c:a", "pcm_" + sample_fmt, "-"],
                         capture_output=True, check=True).stdout
    dtype = np.float32 if sample_fmt == "f32le" else np.int32
    return np.frombuffer(raw, dtype).reshape(-1, channels).T


def video_packets(path) -> list[dict]:
    """The first video stream's packets as ffprobe reads them: times, flags, payload hash."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_packets",
                          "-show_data_hash", "sha256", "-show_entries",
                          "packet=pts_time,dts_time,flags,size,data_hash", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["packets"]


def transcode(src, dst, *, format=None, blocks=None, transform=None) -> io.OutputPlan:
    """The noise-removal flow: plan, then stream -> (transform) -> MediaWriter inside atomic_output.
    ``blocks``: re-cut the decoded audio into blocks of these sizes (cycled)."""
    plan = io.plan_output(io.probe(str(src)), str(dst), format=format)
    with io.atomic_output(str(dst)) as tmp, io.MediaWriter(plan, tmp) as w, io.stream(str(src)) as s:
        if blocks is None:
            for block in s:
                w.write(transform(block) if transform else block)
        else:
            y = np.concatenate(list(s), axis=1)
            i = k = 0
            while i < y.shape[1]:
                n = blocks[k % len(blocks)]
                w.write(y[:, i:i + n])
                i, k = i + n, k + 1
    return plan


def aligned_lag(ref: np.ndarray, got: np.ndarray, max_lag: int = 3000) -> int:
    """Lag of ``got`` behind ``ref`` (samples) by cross-correlation of channel 0 over 1 s."""
    a = ref[0, SR:2 * SR].astype(np.float64)
    scores = [np.dot(a, got[0, SR + lag:2 * SR + lag]) for lag in range(-max_lag, max_lag)]
    return int(np.argmax(scores)) - max_lag


def expected_lag(path) -> int:
    """Samples the ffmpeg 5.1 CLI decodes before the programme starts, from the timestamps: it
    outputs the samples of packets stamped before 0 instead of dropping them. FFmpeg 8 writes the
    encoder delay of AAC, MP3 and AC-3 in Matroska as a first packet at a negative time (-21 ms
    for AAC), which FFmpeg 8 drops (io.stream decodes them with no lag) and 5.1 plays; MP4 edit
    lists, the LAME tag and Opus pre-skip are applied by both. ADTS cannot store the delay:
    raw AAC always decodes 1024 samples late."""
    a = audio_stream(ffprobe(path))
    if a["codec_name"] == "aac" and ffprobe(path)["format"]["format_name"] == "aac":
        return 1024
    if a["codec_name"] == "opus":
        return 0  # pre-skip (Ogg) and CodecDelay (Matroska, stamped -7 ms) are applied by 5.1
    return max(0, int(round(-float(a.get("start_time", 0)) * int(a["sample_rate"]))))


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * sr / x.size)


def tones(channels: int, sr: int, seconds: float = 2.0, level: float = 0.1) -> np.ndarray:
    """Channel i holds a sine at 200 + 100 i Hz: channel order can be checked after decoding."""
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([level * np.sin(2 * np.pi * (200 + 100 * i) * t) for i in range(channels)]).astype(np.float32)


@pytest.fixture(scope="module")
def extra(tmp_path_factory, media) -> dict[str, Path]:
    """Inputs beyond conftest's: H.264 video, cover art, tags, multichannel, unusual rates."""
    d = tmp_path_factory.mktemp("write_media")
    files: dict[str, Path] = {}
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    vcodec = ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "12"] if "libx264" in encoders \
        else ["-c:v", "mpeg4"]
    files["h264.mp4"] = d / "h264.mp4"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=6", "-i", str(media["s16.wav"]),
               *vcodec, "-c:a", "aac", "-b:a", "160k", "-shortest", "-metadata", "title=Clip", str(files["h264.mp4"]))
    files["cover.png"] = d / "cover.png"
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=1", "-frames:v", "1", str(files["cover.png"]))
    files["tagged.mp3"] = d / "tagged.mp3"
    run_ffmpeg("-i", str(media["s16.wav"]), "-i", str(files["cover.png"]), "-map", "0", "-map", "1",
               "-c:a", "libmp3lame", "-b:a", "128k", "-c:v", "png", "-disposition:v", "attached_pic",
               "-metadata", "title=Song", "-metadata", "artist=Band", str(files["tagged.mp3"]))
    for name, ch, sr, layout, codec, fmt in [
        ("c6.wav", 6, SR, "5.1(side)", "pcm_s24le", "s32"), ("c8.wav", 8, SR, "7.1", "pcm_s24le", "s32"),
        ("c10.wav", 10, SR, "10 channels", "pcm_s24le", "s32"), ("r192.wav", 2, 192000, None, "pcm_s24le", "s32"),
        ("r8k.wav", 1, 8000, None, "pcm_s16le", "s16"), ("r44.wav", 1, 44100, None, "pcm_s16le", "s16"),
        ("s32.wav", 2, SR, None, "pcm_s32le", "s32"),
    ]:
        files[name] = d / name
        io.write(str(files[name]), tones(ch, sr), sr, codec=codec, sample_fmt=fmt, layout=layout)
    files["delayed.mp4"] = d / "delayed.mp4"  # audio starts 0.5 s after the video
    run_ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=6", "-itsoffset", "0.5",
               "-i", str(media["s16.wav"]), "-map", "0:v", "-map", "1:a", "-c:v", "mpeg4", "-c:a", "aac",
               str(files["delayed.mp4"]))
    return files


# --------------------------------------------------------------------------------------------
# formats and plans


def test_output_formats_are_writable_by_this_ffmpeg():
    required = {"wav", "flac", "mp3", "m4a", "aac", "opus", "ogg", "mka", "mkv", "webm", "mp4", "mov"}
    assert required <= set(io.OUTPUT_FORMATS)
    for ext, fmt in io.OUTPUT_FORMATS.items():
        assert fmt.extension == ext
        with av.open(os.devnull, "w", format=fmt.muxer):
            pass
        for codec in fmt.codecs:
            if codec != "pcm":
                assert av.codec.Codec(codec, "w").is_encoder, (ext, codec)
    assert io.OUTPUT_FORMATS["m4a"].muxer == "ipod" and io.OUTPUT_FORMATS["aac"].muxer == "adts"
    assert io.OUTPUT_FORMATS["opus"].muxer == io.OUTPUT_FORMATS["ogg"].muxer == "ogg"


@pytest.mark.parametrize("src, ext, codec, sample_fmt, bits", [
    ("s16.wav", "wav", "pcm_s16le", "s16", 16),
    ("s24.wav", "wav", "pcm_s24le", "s32", 24),
    ("s32.wav", "wav", "pcm_s32le", "s32", 32),
    ("f32.wav", "wav", "pcm_f32le", "flt", 32),
    ("a.mp3", "wav", "pcm_s24le", "s32", 24),   # lossy input: 24-bit
    ("s16.wav", "flac", "flac", "s16", 16),
    ("s24.wav", "flac", "flac", "s32", 24),
    ("f32.wav", "flac", "flac", "s32", 24),
    ("s32.wav", "flac", "flac", "s32", 24),
    ("a.m4a", "flac", "flac", "s32", 24),
    ("s24.wav", "mkv", "pcm_s24le", "s32", 24),
    ("s16.wav", "mov", "pcm_s16le", "s16", 16),
])
def test_lossless_outputs_keep_the_bit_depth(media, extra, tmp_path, src, ext, codec, sample_fmt, bits):
    path = media.get(src) or extra[src]
    plan = io.plan_output(io.probe(str(path)), str(tmp_path / f"out.{ext}"))
    assert (plan.codec, plan.sample_format, plan.bit_depth) == (codec, sample_fmt, bits)
    if src in ("f32.wav", "s32.wav") and ext == "flac":
        assert any("24-bit FLAC" in n for n in plan.notes)
    assert plan.clip is (codec != "pcm_f32le")


@pytest.mark.parametrize("src, ext, codec, bit_rate", [
    ("a.m4a", "mp4", "aac", "input"),
    ("a.m4a", "m4a", "aac", "input"),
    ("a.m4a", "mkv", "aac", "input"),
    ("a.ac3", "mkv", "ac3", "input"),
    ("a.ac3", "mp4", "ac3", "input"),
    ("a.mp3", "mp3", "libmp3lame", "input"),
    ("a.mp3", "mka", "libmp3lame", "input"),
    ("a.ogg", "webm", "vorbis", None),          # Vorbis: fixed quality, no bit rate
    ("a.opus", "ogg", "libopus", 128000),       # Ogg Opus headers carry no bit rate: the default
    ("s16.wav", "mp4", "aac", 192000),
    ("s16.wav", "mp3", "libmp3lame", 192000),
    ("s16.wav", "opus", "libopus", 128000),
    ("s16.wav", "ogg", "vorbis", None),
    ("s24.flac", "mkv", "flac", None),
    ("s24.flac", "mov", "aac", 192000),
])
def test_codec_is_kept_where_natural_else_the_formats_default(media, tmp_path, src, ext, codec, bit_rate):
    info = io.probe(str(media[src]))
    plan = io.plan_output(info, str(tmp_path / f"out.{ext}"))
    assert plan.codec == codec
    assert plan.bit_rate_bps == (info.audio.bitrate_bps if bit_rate == "input" else bit_rate)


def test_default_bit_rates_scale_per_channel(extra, tmp_path):
    six = io.probe(str(extra["c6.wav"]))
    assert io.plan_output(six, str(tmp_path / "o.m4a")).bit_rate_bps == 6 * 96000
    assert io.plan_output(six, str(tmp_path / "o.opus")).bit_rate_bps == 6 * 64000
    mono = io.probe(str(extra["r44.wav"]))
    assert io.plan_output(mono, str(tmp_path / "o.mp3")).bit_rate_bps == 96000
    eight_k = io.probe(str(extra["r8k.wav"]))
    assert io.plan_output(eight_k, str(tmp_path / "o.mp3")).bit_rate_bps == 64000  # MPEG-2.5's highest


@pytest.mark.parametrize("src, ext, rate", [
    ("r192.wav", "wav", 192000), ("r192.wav", "flac", 192000), ("r192.wav", "mp3", 48000),
    ("r192.wav", "m4a", 96000), ("r192.wav", "opus", 48000), ("r44.wav", "opus", 48000),
    ("r8k.wav", "opus", 8000), ("r8k.wav", "wav", 8000), ("r8k.wav", "flac", 8000), ("r8k.wav", "mp3", 8000),
    ("r44.wav", "mp3", 44100), ("r44.wav", "ogg", 48000),  # mono: Opus in Ogg
])
def test_sample_rate_is_kept_unless_the_codec_cannot(extra, tmp_path, src, ext, rate):
    info = io.probe(str(extra[src]))
    plan = io.plan_output(info, str(tmp_path / f"o.{ext}"))
    assert plan.input_sample_rate_hz == info.audio.sample_rate_hz
    assert plan.sample_rate_hz == rate
    assert any("resampled" in n for n in plan.notes) is (rate != info.audio.sample_rate_hz)


def test_ogg_is_vorbis_for_stereo_and_opus_otherwise(media, extra, tmp_path):
    assert io.plan_output(io.probe(str(media["s16.wav"])), str(tmp_path / "o.ogg")).codec == "vorbis"
    plan = io.plan_output(io.probe(str(extra["r44.wav"])), str(tmp_path / "o.ogg"))
    assert plan.codec == "libopus"
    assert "Vorbis (FFmpeg's native encoder) holds stereo only" in plan.notes[0]


# --------------------------------------------------------------------------------------------
# errors raised before decoding


@pytest.fixture
def no_decoding(monkeypatch):
    """Make decoding impossible: errors must come from headers alone."""
    import av.packet

    monkeypatch.setattr(av.packet.Packet, "decode", lambda self: (_ for _ in ()).throw(AssertionError("decoded")))


@pytest.mark.parametrize("ext", ["wav", "mp3", "flac", "m4a", "ogg", "opus", "aac", "mka"])
def test_video_into_an_audio_only_format_is_refused(media, tmp_path, no_decoding, ext):
    out = tmp_path / f"out.{ext}"
    with pytest.raises(UnsupportedMedia) as err:
        io.plan_output(io.probe(str(media["video.mp4"])), str(out))
    msg = str(err.value)
    assert str(out) in msg and "the input has video (mpeg4)" in msg and f"{ext} holds audio only" in msg
    assert "mp4" in msg and "mkv" in msg and "mov" in msg and "webm" not in msg  # webm: VP8/VP9/AV1 only
    assert not out.exists()


def test_video_codec_the_muxer_refuses(extra, tmp_path, no_decoding):
    with pytest.raises(UnsupportedMedia,
                       match=r"the input has video \((h264|mpeg4)\); FFmpeg's webm muxer cannot hold it"):
        io.plan_output(io.probe(str(extra["h264.mp4"])), str(tmp_path / "out.webm"))


def test_unknown_or_missing_extension(media, tmp_path):
    info = io.probe(str(media["s16.wav"]))
    with pytest.raises(InvalidParameter, match=r"out\.xyz: \.xyz is not an output format .*supported: wav, flac, mp3"):
        io.plan_output(info, str(tmp_path / "out.xyz"))
    with pytest.raises(InvalidParameter, match="no extension to choose a format from; give format="):
        io.plan_output(info, str(tmp_path / "out"))
    with pytest.raises(InvalidParameter, match="format='avi' is not an output format"):
        io.plan_output(info, str(tmp_path / "out.wav"), format="avi")
    assert io.plan_output(info, str(tmp_path / "out.bin"), format=".MP3").format == "mp3"
    # a presigned URL: the query is not part of the extension
    assert io.plan_output(info, "https://bucket.example/key/out.flac?X-Amz-Signature=abc.def").format == "flac"


def test_too_many_channels_for_the_codec(extra, tmp_path, no_decoding):
    out = tmp_path / "out.mp3"
    with pytest.raises(InvalidParameter) as err:
        io.plan_output(io.probe(str(extra["c6.wav"])), str(out))
    msg = str(err.value)
    assert str(out) in msg and "6 channels (5.1(side)" in msg and "as mp3" in msg
    assert "MP3 (libmp3lame) holds at most 2 channels" in msg and "choose wav, flac" in msg
    with pytest.raises(InvalidParameter, match="FLAC holds at most 8 channels"):
        io.plan_output(io.probe(str(extra["c10.wav"])), str(tmp_path / "out.flac"))
    assert not out.exists()


def test_output_may_not_be_the_input(media, tmp_path, no_decoding):
    src = tmp_path / "in.wav"
    src.write_bytes(media["s16.wav"].read_bytes())
    info = io.probe(str(src))
    link = tmp_path / "link.wav"
    link.symlink_to(src)
    (tmp_path / "sub").mkdir()
    for same in (str(src), f"{tmp_path}/sub/../in.wav", f"file://{src}", str(link),
                 os.path.relpath(src)):
        with pytest.raises(InvalidParameter, match="the output may not be the input"):
            io.plan_output(info, same)
    # a symlinked input written through its target's name
    with pytest.raises(InvalidParameter, match="the output may not be the input"):
        io.plan_output(io.probe(str(link)), str(src))
    assert io._same_target("s3://b/dir/a.wav", "s3://b/dir//a.wav")
    assert io._same_target("https://h.example/k/a.wav?X-Amz-Signature=get",
                           "https://h.example/k/a.wav?X-Amz-Signature=put")
    assert not io._same_target("s3://b/a.wav", "s3://b/b.wav")
    assert src.read_bytes() == media["s16.wav"].read_bytes()


def test_unwritable_destinations(media, tmp_path):
    info = io.probe(str(media["s16.wav"]))
    with pytest.raises(OutputError, match=r"missing/out\.wav: directory .*missing does not exist"):
        io.plan_output(info, str(tmp_path / "missing" / "out.wav"))
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(OutputError, match="is a directory, not a file"):
        io.check_writable(str(tmp_path / "d.wav"))
    io.check_writable("https://example.invalid/out.wav?sig=1")  # nothing to check before the PUT
    if os.geteuid() != 0:  # root writes into read-only directories
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        with pytest.raises(OutputError, match="is not writable"):
            io.check_writable(str(ro / "out.wav"))


# --------------------------------------------------------------------------------------------
# round trips: lossless outputs are bit-exact


@pytest.mark.parametrize("src, ext, fmt", [
    ("s16.wav", "wav", "s32le"), ("s24.wav", "wav", "s32le"), ("s32.wav", "wav", "s32le"),
    ("f32.wav", "wav", "f32le"), ("s16.wav", "flac", "s32le"), ("s24.wav", "flac", "s32le"),
    ("s24.flac", "flac", "s32le"), ("s24.wav", "mkv", "s32le"), ("s24.wav", "mov", "s32le"),
    ("s16.wav", "mka", "s32le"), ("f32.wav", "mov", "f32le"), ("s24.flac", "ogg", "s32le"),
])
def test_lossless_round_trip_is_bit_exact(media, extra, tmp_path, src, ext, fmt):
    path = media.get(src) or extra[src]
    out = tmp_path / f"out.{ext}"
    plan = transcode(path, out)
    probe = ffprobe(out)
    a = audio_stream(probe)
    assert a["codec_name"] == plan.codec.replace("libopus", "opus")
    assert int(a["sample_rate"]) == plan.sample_rate_hz == int(audio_stream(ffprobe(path))["sample_rate"])
    assert int(a["channels"]) == 2
    assert int(a.get("bits_per_raw_sample") or a["bits_per_sample"]) == plan.bit_depth
    assert float(probe["format"]["duration"]) == pytest.approx(float(ffprobe(path)["format"]["duration"]), abs=1e-3)
    assert np.array_equal(ffdecode(out, fmt), ffdecode(path, fmt))


@pytest.mark.parametrize("name, ext", [("c8.wav", "wav"), ("c8.wav", "flac"), ("r192.wav", "wav"),
                                       ("r192.wav", "flac"), ("r8k.wav", "wav"), ("r8k.wav", "flac"),
                                       ("c10.wav", "wav")])
def test_many_channels_and_extreme_rates_lossless(extra, tmp_path, name, ext):
    src = extra[name]
    out = tmp_path / f"out.{ext}"
    transcode(src, out)
    a, ref = audio_stream(ffprobe(out)), audio_stream(ffprobe(src))
    assert (a["sample_rate"], a["channels"]) == (ref["sample_rate"], ref["channels"])
    if name == "c8.wav":
        assert a["channel_layout"] == "7.1"
    got = ffdecode(out, "s32le")
    assert np.array_equal(got, ffdecode(src, "s32le"))
    sr = int(a["sample_rate"])
    for i in range(got.shape[0]):  # each channel keeps its tone: nothing reordered
        assert dominant_hz(got[i].astype(np.float64), sr) == pytest.approx(200 + 100 * i, abs=1)


def test_blocks_of_any_size_give_the_same_file_content(media, tmp_path):
    out = tmp_path / "out.flac"
    transcode(media["s24.wav"], out, blocks=[1, 7, 1000, 4608, 100_003, 3])
    assert np.array_equal(ffdecode(out, "s32le"), ffdecode(media["s24.wav"], "s32le"))


def test_clipping(media, tmp_path):
    """Overs are kept in float WAV and clipped to full scale in integer and lossy outputs."""
    loud = lambda b: b * 8.0  # noqa: E731  overs up to about +18 dBFS
    transcode(media["f32.wav"], tmp_path / "float.wav", transform=loud)
    assert np.array_equal(ffdecode(tmp_path / "float.wav"), ffdecode(media["f32.wav"]) * 8.0)
    transcode(media["s24.wav"], tmp_path / "int.wav", transform=loud)
    y = ffdecode(media["s24.wav"]) * 8.0  # exact: 24-bit values times 8 stay on the 24-bit grid
    assert np.abs(y).max() > 2.0
    # +1.0 is 2^23 in 24 bits, one step beyond the largest code: it saturates to 1 - 2^-23.
    assert np.array_equal(ffdecode(tmp_path / "int.wav"), np.clip(y, -1.0, 1.0 - 2.0 ** -23))
    transcode(media["s24.wav"], tmp_path / "lossy.m4a", transform=lambda b: b * 20.0)
    y = ffdecode(media["s24.wav"]).astype(np.float64) * 20.0
    got = ffdecode(tmp_path / "lossy.m4a")[:, :y.shape[1]].astype(np.float64)
    clipped = np.clip(y, -1.0, 1.0)
    assert np.corrcoef(got.ravel(), clipped.ravel())[0, 1] > 0.95
    overs = np.abs(y) > 2.0  # where the unclipped programme is beyond +6 dBFS
    assert overs.sum() > 1000
    assert np.mean(np.abs(got[overs])) < 1.25  # the codec's overshoot on clipped peaks, not 2+


# --------------------------------------------------------------------------------------------
# round trips: lossy outputs


@pytest.mark.parametrize("src, ext", [
    ("s16.wav", "mp3"), ("s16.wav", "m4a"), ("s16.wav", "aac"), ("s16.wav", "opus"), ("s16.wav", "ogg"),
    ("s16.wav", "webm"), ("s16.wav", "mp4"), ("a.m4a", "mka"), ("s24.flac", "mov"), ("a.ac3", "mkv"),
    ("a.m4a", "m4a"), ("a.mp3", "mp3"), ("a.opus", "webm"),
])
def test_lossy_round_trip_keeps_length_level_and_timing(media, tmp_path, src, ext):
    out = tmp_path / f"out.{ext}"
    plan = transcode(media[src], out)
    probe = ffprobe(out)
    a = audio_stream(probe)
    assert a["codec_name"] == {"libmp3lame": "mp3", "libopus": "opus"}.get(plan.codec, plan.codec)
    assert int(a["channels"]) == 2 and a["channel_layout"] == "stereo"
    assert int(a["sample_rate"]) == plan.sample_rate_hz == SR
    ref = ffdecode(media[src]).astype(np.float64)
    got = ffdecode(out).astype(np.float64)
    assert abs(got.shape[1] - ref.shape[1]) <= FRAME_AND_DELAY[plan.codec]
    lag = aligned_lag(ref, got)
    assert abs(lag - expected_lag(out)) <= SR // 1000  # Matroska times are in ms
    if ext not in ("mkv", "mka", "aac"):
        assert lag == 0
    # io.stream (FFmpeg 8.1) honours the timestamps in every container that has them
    with io.stream(str(out)) as s:
        assert abs(aligned_lag(ref, np.concatenate(list(s), axis=1)) - (1024 if ext == "aac" else 0)) == 0
    n = min(ref.shape[1], got.shape[1] - lag) - 2048
    seg_ref, seg_got = ref[:, 1024:n], got[:, 1024 + lag:n + lag]
    assert np.corrcoef(seg_ref.ravel(), seg_got.ravel())[0, 1] > 0.95
    level_db = 10 * np.log10(np.mean(seg_got ** 2) / np.mean(seg_ref ** 2))
    assert abs(level_db) < 0.5
    if plan.bit_rate_bps and ext not in ("aac", "webm", "mka", "ogg", "opus"):  # ffprobe estimates those
        measured = int(a.get("bit_rate") or probe["format"]["bit_rate"])
        assert measured == pytest.approx(plan.bit_rate_bps, rel=0.1)


def test_resampled_outputs_keep_pitch_and_duration(extra, tmp_path):
    for ext, rate in (("mp3", 48000), ("m4a", 96000), ("opus", 48000)):
        out = tmp_path / f"out.{ext}"
        plan = transcode(extra["r192.wav"], out)
        assert plan.sample_rate_hz == rate
        got = ffdecode(out).astype(np.float64)
        decoded_rate = int(audio_stream(ffprobe(out))["sample_rate"])
        assert decoded_rate == rate
        assert got.shape[1] / rate == pytest.approx(2.0, abs=FRAME_AND_DELAY[plan.codec] / rate)
        assert dominant_hz(got[0, rate // 4: rate], rate) == pytest.approx(200, abs=5)
        assert dominant_hz(got[1, rate // 4: rate], rate) == pytest.approx(300, abs=5)
    plan = transcode(extra["r8k.wav"], tmp_path / "8k.opus")  # Opus encodes 8 kHz natively
    assert plan.sample_rate_hz == 8000 and plan.notes == ()


@pytest.mark.parametrize("ext, layout", [("opus", "5.1"), ("m4a", None), ("mkv", None), ("flac", "5.1(side)")])
def test_surround_channels_stay_in_place(extra, tmp_path, ext, layout):
    """5.1(side) tones, one frequency per channel: after the round trip each channel still holds
    its tone; libopus takes side surrounds as back surrounds (5.1), said in the notes."""
    out = tmp_path / f"out.{ext}"
    plan = transcode(extra["c6.wav"], out)
    a = audio_stream(ffprobe(out))
    assert int(a["channels"]) == 6
    if layout:
        assert a["channel_layout"] == layout
    assert (plan.channel_layout == "5.1") is (ext == "opus")
    got = ffdecode(out).astype(np.float64)
    for i in range(6):
        if i == 3:
            continue  # LFE: low-passed by AAC and Opus
        assert dominant_hz(got[i, SR // 4:SR + SR // 4], SR) == pytest.approx(200 + 100 * i, abs=2), i


def test_opus_mapping_family_255_for_unpositioned_channels(extra, tmp_path):
    out = tmp_path / "out.opus"
    plan = transcode(extra["c10.wav"], out)
    assert dict(plan.codec_options)["mapping_family"] == "255"
    got = ffdecode(out).astype(np.float64)
    assert got.shape[0] == 10
    for i in range(10):
        assert dominant_hz(got[i, SR // 4:SR + SR // 4], SR) == pytest.approx(200 + 100 * i, abs=2), i


# --------------------------------------------------------------------------------------------
# video remux, cover art, tags


@pytest.mark.parametrize("src", ["video.mp4", "h264.mp4"])
@pytest.mark.parametrize("ext", ["mp4", "mkv", "mov"])
def test_video_is_copied_bit_for_bit(media, extra, tmp_path, src, ext):
    path = media.get(src) or extra[src]
    out = tmp_path / f"out.{ext}"
    plan = transcode(path, out)
    assert [c.kind for c in plan.copied_streams] == ["video"]
    before, after = video_packets(path), video_packets(out)
    assert len(after) == len(before) > 100
    for a, b in zip(before, after, strict=True):
        assert (a["data_hash"], a["size"], a["flags"]) == (b["data_hash"], b["size"], b["flags"])
        assert float(a["pts_time"]) == pytest.approx(float(b["pts_time"]), abs=1e-3)  # Matroska: 1 ms
        if ext != "mkv":  # Matroska stores no decode times
            assert a["dts_time"] == b["dts_time"]
    vin = next(s for s in ffprobe(path)["streams"] if s["codec_type"] == "video")
    vout = next(s for s in ffprobe(out)["streams"] if s["codec_type"] == "video")
    for key in ("codec_name", "profile", "width", "height", "pix_fmt", "r_frame_rate"):
        assert vin.get(key) == vout.get(key), key
    # the audio is there and right
    ref, got = ffdecode(path), ffdecode(out)
    assert abs(aligned_lag(ref, got) - expected_lag(out)) <= SR // 1000
    assert abs(got.shape[1] - ref.shape[1]) <= FRAME_AND_DELAY["aac"]


def test_video_and_audio_are_interleaved(media, tmp_path):
    """Packets in file order: the video never runs more than a couple of seconds ahead of or
    behind the audio (nothing is held back to the end)."""
    out = tmp_path / "out.mkv"
    transcode(media["video.mp4"], out)
    packets = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_packets", "-show_entries", "packet=codec_type,pts_time,pos", "-of", "json",
         str(out)], capture_output=True, text=True, check=True).stdout)["packets"]
    last = {}
    worst = 0.0
    for p in sorted(packets, key=lambda p: int(p["pos"])):
        last[p["codec_type"]] = float(p["pts_time"])
        if len(last) == 2:
            worst = max(worst, abs(last["video"] - last["audio"]))
    assert worst < io.VIDEO_LEAD_S + 1.0


def test_delayed_audio_keeps_its_offset(extra, tmp_path):
    out = tmp_path / "out.mp4"
    plan = transcode(extra["delayed.mp4"], out)
    assert plan.audio_offset_s == pytest.approx(0.5, abs=0.03)
    streams = {s["codec_type"]: s for s in ffprobe(out)["streams"]}
    src = {s["codec_type"]: s for s in ffprobe(extra["delayed.mp4"])["streams"]}
    assert float(streams["audio"]["start_time"]) == pytest.approx(float(src["audio"]["start_time"]), abs=0.025)
    assert float(streams["video"]["start_time"]) == pytest.approx(float(src["video"]["start_time"]), abs=1e-3)


def test_a_source_starting_late_keeps_audio_and_video_in_step(extra, tmp_path):
    """MPEG-TS starts at 1.4 s: the copied video is moved by the container's start time, as the
    audio is, so their offset (here the AAC priming, 21 ms) is unchanged."""
    ts = tmp_path / "in.ts"
    run_ffmpeg("-i", str(extra["h264.mp4"]), "-c", "copy", "-f", "mpegts", str(ts))
    out = tmp_path / "out.mp4"
    plan = transcode(ts, out)
    src = {s["codec_type"]: float(s["start_time"]) for s in ffprobe(ts)["streams"]}
    got = {s["codec_type"]: float(s["start_time"]) for s in ffprobe(out)["streams"]}
    assert plan.source_start_s == pytest.approx(min(src.values())) and plan.source_start_s > 1.0
    assert got["audio"] == pytest.approx(0.0, abs=1e-3)
    assert got["video"] - got["audio"] == pytest.approx(src["video"] - src["audio"], abs=1e-3)
    # H.264 in TS is Annex B (start codes); the MP4 muxer rewrites it length-prefixed, as
    # ffmpeg -c copy does: the packets equal the CLI's own stream copy.
    ref = tmp_path / "ref.mp4"
    run_ffmpeg("-i", str(ts), "-map", "0:v", "-c", "copy", str(ref))
    assert [p["data_hash"] for p in video_packets(ref)] == [p["data_hash"] for p in video_packets(out)]


@pytest.mark.parametrize("ext", ["flac", "ogg", "opus", "m4a", "mkv", "wav", "mp3", "mp4"])
def test_tags_are_copied(extra, tmp_path, ext):
    out = tmp_path / f"out.{ext}"
    transcode(extra["tagged.mp3"], out)
    probe = ffprobe(out)
    tags = {k.lower(): v for k, v in probe["format"].get("tags", {}).items()}
    tags.update({k.lower(): v for k, v in audio_stream(probe).get("tags", {}).items()})
    assert tags.get("title") == "Song" and tags.get("artist") == "Band"
    assert "lavc59" not in json.dumps(tags).lower()  # the source encoder's name is not carried over


@pytest.mark.parametrize("ext, kept", [("mp3", True), ("flac", True), ("mp4", True), ("mkv", True),
                                       ("ogg", False), ("wav", False), ("m4a", False), ("mov", False)])
def test_cover_art_is_copied_where_it_fits(extra, tmp_path, ext, kept):
    out = tmp_path / f"out.{ext}"
    plan = transcode(extra["tagged.mp3"], out)
    pictures = [s for s in ffprobe(out)["streams"] if s["codec_type"] == "video"]
    if not kept:
        assert pictures == [] and any("cover art (png) not copied" in n for n in plan.notes)
        return
    assert len(pictures) == 1 and pictures[0]["disposition"]["attached_pic"] == 1
    assert video_packets(out)[0]["data_hash"] == video_packets(extra["tagged.mp3"])[0]["data_hash"]
    ref = ffdecode(extra["tagged.mp3"])
    assert abs(aligned_lag(ref, ffdecode(out)) - expected_lag(out)) <= SR // 1000


def test_other_streams_are_noted(media, tmp_path):
    plan = io.plan_output(io.probe(str(media["two_streams.mkv"])), str(tmp_path / "o.flac"))
    assert "1 other audio stream(s) not copied (only the decoded one is written)" in plan.notes


# --------------------------------------------------------------------------------------------
# the writer's contract


def test_writer_errors(media, tmp_path):
    plan = io.plan_output(io.probe(str(media["s16.wav"])), str(tmp_path / "o.wav"))
    with io.MediaWriter(plan, str(tmp_path / "o.wav")) as w:
        with pytest.raises(InvalidParameter, match=r"block of shape \(3, 10\); expected \(2, frames\)"):
            w.write(np.zeros((3, 10), np.float32))
        with pytest.raises(InvalidParameter, match="NaN or infinite"):
            w.write(np.full((2, 10), np.nan, np.float32))
        w.write(np.zeros((2, 10), np.float32))
    with pytest.raises(AudioQCError, match=r"write\(\) after close\(\)"):
        w.write(np.zeros((2, 10), np.float32))
    with pytest.raises(InvalidParameter, match="must be a local path"):
        io.MediaWriter(plan, "s3://bucket/o.wav")


def test_an_exception_inside_the_writer_is_the_only_error(media, tmp_path):
    plan = io.plan_output(io.probe(str(media["video.mp4"])), str(tmp_path / "o.mp4"))
    with pytest.raises(RuntimeError, match="processing failed") as err:
        with io.MediaWriter(plan, str(tmp_path / "o.mp4")) as w:
            w.write(np.zeros((2, 5000), np.float32))
            raise RuntimeError("processing failed")
    assert err.value.__context__ is None  # nothing else went wrong while closing


# --------------------------------------------------------------------------------------------
# atomic publication: local


def test_local_publish_is_atomic_and_leaves_no_temporary_file(media, tmp_path):
    out = tmp_path / "out.flac"
    out.write_bytes(b"previous version")
    plan = io.plan_output(io.probe(str(media["s24.wav"])), str(out))
    with io.atomic_output(str(out)) as tmp:
        assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".out.flac.")
        with io.MediaWriter(plan, tmp) as w, io.stream(str(media["s24.wav"])) as s:
            for block in s:
                w.write(block)
        assert out.read_bytes() == b"previous version"  # not replaced until the with ends
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.flac"]
    assert np.array_equal(ffdecode(out, "s32le"), ffdecode(media["s24.wav"], "s32le"))


def test_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        with io.atomic_output(str(tmp_path / "new.wav")) as tmp:
            Path(tmp).write_bytes(b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "new.wav").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_local_failure_leaves_nothing(media, tmp_path, exc):
    out = tmp_path / "out.mp4"
    plan = io.plan_output(io.probe(str(media["video.mp4"])), str(out))
    with pytest.raises(exc):
        with io.atomic_output(str(out)) as tmp, io.MediaWriter(plan, tmp) as w, io.stream(str(media["video.mp4"])) as s:
            w.write(next(iter(s)))
            raise exc()
    assert list(tmp_path.iterdir()) == []


_SLOW_WRITER = """
import sys, time
from audiolib import io
with io.atomic_output(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"x" * (3 << 20))
    print(tmp, flush=True)
    time.sleep(60)
"""


def _start_slow_writer(url: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, url], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    assert proc.stdout is not None and proc.stderr is not None  # both PIPE
    tmp = proc.stdout.readline().strip()
    assert tmp and os.path.getsize(tmp) == 3 << 20, proc.stderr.read() if not tmp else tmp
    return proc, tmp


def test_sigterm_inside_atomic_output_leaves_nothing(tmp_path):
    out = tmp_path / "out.wav"
    proc, tmp = _start_slow_writer(str(out))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not os.path.exists(tmp) and list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# atomic publication: S3 (moto)


def test_s3_object_appears_only_when_complete(s3, media):
    s3.mkdir("out-bucket")
    url = "s3://out-bucket/dir/denoised.flac"
    plan = io.plan_output(io.probe(str(media["s24.wav"])), url)
    with io.atomic_output(url) as tmp:
        with io.MediaWriter(plan, tmp) as w, io.stream(str(media["s24.wav"])) as s:
            for block in s:
                w.write(block)
        s3.invalidate_cache()
        assert not s3.exists("out-bucket/dir/denoised.flac")
    assert not os.path.exists(tmp)
    s3.invalidate_cache()
    with io.stream(url) as s:
        got = np.concatenate(list(s), axis=1)
    with io.stream(str(media["s24.wav"])) as s:
        assert np.array_equal(got, np.concatenate(list(s), axis=1))


def test_s3_failure_leaves_no_object(s3, media):
    s3.mkdir("fail-bucket")
    url = "s3://fail-bucket/out.wav"
    with pytest.raises(RuntimeError):
        with io.atomic_output(url) as tmp:
            Path(tmp).write_bytes(media["s16.wav"].read_bytes())
            raise RuntimeError("denoiser crashed")
    s3.invalidate_cache()
    assert not s3.exists("fail-bucket/out.wav") and not os.path.exists(tmp)


def test_s3_sigkill_mid_write_leaves_no_object(s3):
    s3.mkdir("kill-bucket")
    proc, tmp = _start_slow_writer("s3://kill-bucket/out.wav")
    proc.kill()
    proc.wait(timeout=30)
    s3.invalidate_cache()
    assert not s3.exists("kill-bucket/out.wav")
    os.unlink(tmp)  # a SIGKILL cannot clean up: the local temporary file stays


def test_s3_multipart_upload_completes_only_at_the_end_and_is_aborted_on_failure(s3, monkeypatch, tmp_path):
    """s3fs uploads files over 2 part sizes as a multipart upload (parts of 5 MiB here instead of
    50 MiB): the object exists only once it is completed; a failure aborts it."""
    import boto3
    import s3fs

    monkeypatch.setattr(s3fs.core, "calculate_chunksize", lambda size, chunksize=None, **kw: 5 << 20)
    calls: list[str] = []
    original = s3fs.S3FileSystem._call_s3

    async def recording(self, method, *args, **kwargs):
        calls.append(method)
        if method == "complete_multipart_upload" and fail:
            raise ConnectionError("network down before completion")
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", recording)
    s3.mkdir("mpu-bucket")
    data = np.random.default_rng(5).bytes(12 << 20)
    fail = False
    with io.atomic_output("s3://mpu-bucket/big.wav") as tmp:
        Path(tmp).write_bytes(data)
    assert calls.count("upload_part") == 3 and calls[-1] == "complete_multipart_upload"
    s3.invalidate_cache()
    assert s3.cat_file("mpu-bucket/big.wav") == data
    fail, calls[:] = True, []
    with pytest.raises(OutputError, match=r"s3://mpu-bucket/big2\.wav: cannot upload: ConnectionError"):
        with io.atomic_output("s3://mpu-bucket/big2.wav") as tmp:
            Path(tmp).write_bytes(data)
    assert "abort_multipart_upload" in calls
    s3.invalidate_cache()
    assert not s3.exists("mpu-bucket/big2.wav")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"])
    assert client.list_multipart_uploads(Bucket="mpu-bucket").get("Uploads", []) == []


def test_s3_missing_bucket_is_refused_before_decoding(s3, media, no_decoding):
    with pytest.raises(OutputError, match=r"s3://no-such-bucket/out\.wav: bucket no-such-bucket does not exist"):
        io.plan_output(io.probe(str(media["s16.wav"])), "s3://no-such-bucket/out.wav")


# --------------------------------------------------------------------------------------------
# atomic publication: HTTP PUT (presigned URL)


class _PutHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_PUT(self):
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length is not None else b""
        self.server.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = self.server.status
        self.send_response(status)
        payload = b"" if status < 400 else b"<Error><Code>AccessDenied</Code></Error>"
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def put_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PutHandler)
    server.received, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_put_sends_the_file_once_with_its_length(media, put_server, tmp_path):
    server, base = put_server
    url = f"{base}/bucket/out.flac?X-Amz-Signature=secret123&X-Amz-Expires=600"
    plan = io.plan_output(io.probe(str(media["s24.wav"])), url)
    with io.atomic_output(url) as tmp:
        with io.MediaWriter(plan, tmp) as w, io.stream(str(media["s24.wav"])) as s:
            for block in s:
                w.write(block)
        expected = Path(tmp).read_bytes()
        assert server.received == []
    assert len(server.received) == 1
    got = server.received[0]
    assert got["path"] == "/bucket/out.flac?X-Amz-Signature=secret123&X-Amz-Expires=600"
    assert got["body"] == expected and int(got["headers"]["Content-Length"]) == len(expected)
    assert "Transfer-Encoding" not in got["headers"]  # presigned S3 PUTs refuse chunked bodies
    (tmp_path / "back.flac").write_bytes(got["body"])
    assert np.array_equal(ffdecode(tmp_path / "back.flac", "s32le"), ffdecode(media["s24.wav"], "s32le"))


def test_http_put_refused_raises_with_the_status(put_server):
    server, base = put_server
    server.status = 403
    url = f"{base}/out.wav?X-Amz-Signature=secret123"
    with pytest.raises(OutputError) as err:
        with io.atomic_output(url) as tmp:
            Path(tmp).write_bytes(b"RIFF")
    msg = str(err.value)
    assert "HTTP PUT refused: 403 Forbidden" in msg and "AccessDenied" in msg
    assert f"{base}/out.wav" in msg and "secret123" not in msg  # the signature is a credential
    assert not os.path.exists(tmp)


def test_http_put_unreachable_server(tmp_path):
    with pytest.raises(OutputError, match=r"HTTP PUT failed: ConnectionError") as err:
        with io.atomic_output("http://127.0.0.1:9/out.wav?sig=secret123") as tmp:
            Path(tmp).write_bytes(b"x")
    assert "secret123" not in str(err.value)
