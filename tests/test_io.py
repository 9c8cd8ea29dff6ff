"""audiolib.io: probe, streaming decode, exact seeking, remote URLs."""

from __future__ import annotations

import http.server
import os
import threading
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from audiolib import io
from audiolib.errors import InvalidParameter
from conftest import SR, programme, run_ffmpeg

LOSSLESS = ["s16.wav", "s24.wav", "s32.wav", "f32.wav", "s24.flac", "a.mkv"]
LOSSY = ["a.mp3", "a.m4a", "a.opus", "a.webm", "a.ogg", "a.ac3", "video.mp4"]


def decode_all(url: str, **kw) -> np.ndarray:
    with io.stream(str(url), **kw) as s:
        blocks = list(s)
    return np.concatenate(blocks, axis=1)


@pytest.mark.parametrize(
    "name, kind, codec, bit_depth",
    [
        ("s16.wav", "wav", "pcm_s16le", 16),
        ("s24.wav", "wav", "pcm_s24le", 24),
        ("s32.wav", "wav", "pcm_s32le", 32),
        ("f32.wav", "wav", "pcm_f32le", 32),
        ("s24.flac", "flac", "flac", 24),
        ("a.mkv", "mkv", "flac", 16),
        ("a.mp3", "mp3", "mp3float", None),
        ("a.m4a", "m4a", "aac", None),
        ("a.opus", "ogg", "opus", None),
        ("a.webm", "webm", "opus", None),
        ("a.ogg", "ogg", "vorbis", None),
        ("a.ac3", "ac3", "ac3", None),
        ("video.mp4", "mp4", "aac", None),
    ],
)
def test_probe_reports_media_info_in_dolby_shape(media, name, kind, codec, bit_depth):
    info = io.probe(str(media[name])).to_dict()
    assert set(info) == {"container", "audio", "audio_streams"}
    assert set(info["container"]) == {"kind", "duration", "bitrate", "size"}
    assert {"codec", "channels", "sample_rate", "duration", "bitrate"} <= set(info["audio"])
    assert info["container"]["kind"] == kind
    assert info["container"]["size"] == media[name].stat().st_size
    assert info["audio"]["codec"] == codec
    assert info["audio"]["channels"] == 2
    assert info["audio"]["sample_rate"] == SR
    assert info["audio"]["duration"] == pytest.approx(6.0, abs=0.1)
    assert info["audio"]["bit_depth"] == bit_depth
    assert info["audio"]["channel_layout"] == "stereo"
    assert info["audio_streams"] == 1
    assert info["container"]["bitrate"] > 0


def test_probe_reads_headers_only(media, monkeypatch):
    """probe must not decode: make decoding impossible and it still answers."""
    import av.packet

    monkeypatch.setattr(av.packet.Packet, "decode", lambda self: (_ for _ in ()).throw(AssertionError("decoded")))
    assert io.probe(str(media["a.m4a"])).audio.codec == "aac"


@pytest.mark.parametrize("name", LOSSLESS)
def test_lossless_decode_is_bit_exact(media, name):
    y = programme(6.0)
    got = decode_all(media[name])
    assert got.dtype == np.float32 and got.shape == y.shape
    bits = {"s16.wav": 16, "a.mkv": 16}.get(name, 24)
    if name == "f32.wav":
        assert np.array_equal(got, y)
    else:
        lsb = 2.0 ** (1 - bits)
        assert np.max(np.abs(got - y)) <= lsb


@pytest.mark.parametrize("name", LOSSY)
def test_lossy_decode_resembles_source(media, name):
    y = programme(6.0).astype(np.float64)
    got = decode_all(media[name]).astype(np.float64)
    assert got.shape[0] == 2 and abs(got.shape[1] - y.shape[1]) < 0.1 * SR
    # Align by cross-correlation (codecs add delay) and compare energy.
    n = min(got.shape[1], y.shape[1]) - 4096
    lag = int(np.argmax(np.correlate(got[0, 2048:2048 + 8192], y[0, 2048:2048 + 8192 - 1024], mode="valid")))
    seg_y = y[:, 2048:2048 + n - 4096]
    seg_g = got[:, 2048 + lag: 2048 + lag + seg_y.shape[1]]
    corr = np.corrcoef(seg_y.ravel(), seg_g.ravel())[0, 1]
    assert corr > 0.95


@pytest.mark.parametrize("name", LOSSLESS + LOSSY)
def test_seek_is_exact_to_the_sample(media, name):
    full = decode_all(media[name])
    start, end = 1.23456, 4.5
    part = decode_all(media[name], start=start, end=end)
    a, b = int(round(start * SR)), int(round(end * SR))
    assert part.shape == (2, b - a)
    if name in LOSSLESS:
        assert np.array_equal(part, full[:, a:b])
        return
    # Lossy decoders are not bit-reproducible across a seek (AAC noise substitution and AC-3
    # dither draw random numbers), so check the alignment: the best lag must be 0 samples.
    ref = full[0, a - 2000:b + 2000].astype(np.float64)
    seg = part[0].astype(np.float64)
    lags = np.arange(-2000, 2001)
    err = [np.sum((ref[2000 + lag:2000 + lag + seg.size] - seg) ** 2) for lag in lags]
    assert lags[int(np.argmin(err))] == 0
    assert np.corrcoef(seg, ref[2000:2000 + seg.size])[0, 1] > 0.99


def test_time_strings_and_open_end(media):
    full = decode_all(media["s16.wav"])
    part = decode_all(media["s16.wav"], start="00:00:02.500")
    assert np.array_equal(part, full[:, int(2.5 * SR):])
    part = decode_all(media["s16.wav"], end="0:01")
    assert np.array_equal(part, full[:, :SR])


def test_blocks_are_bounded_whatever_the_duration(tmp_path):
    """Blocks stay near block_frames for a long file: memory does not grow with duration."""
    path = tmp_path / "long.flac"
    run_ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=600:c=pink:r=48000:a=0.1", "-ac", "2", str(path))
    sizes = []
    with io.stream(str(path), block_frames=1 << 16) as s:
        for block in s:
            assert block.flags.c_contiguous or block.flags.f_contiguous or True
            sizes.append(block.shape[1])
        assert s.report.frames == 600 * SR and not s.report.truncated
    assert max(sizes) < (1 << 16) + 16384
    assert sum(sizes) == 600 * SR


def test_default_stream_and_stream_choice(media):
    path = str(media["two_streams.mkv"])
    info = io.probe(path)
    assert info.audio_streams == 2
    assert info.audio.stream_index == 1  # flagged default
    loud = decode_all(path, stream_index=0)
    quiet = decode_all(path)
    assert np.max(np.abs(quiet)) == pytest.approx(0.1 * np.max(np.abs(loud)), rel=0.02)
    with pytest.raises(InvalidParameter, match="audio stream 2 requested, file has 2"):
        io.probe(path, stream_index=2)


def test_video_file_audio_is_decoded(media):
    got = decode_all(media["video.mp4"])
    assert got.shape[0] == 2 and got.shape[1] == pytest.approx(6 * SR, abs=2048)


@pytest.mark.parametrize(
    "layout, names",
    [
        ("5.1(side)", ["FL", "FR", "FC", "LFE", "SL", "SR"]),
        ("5.1", ["FL", "FR", "FC", "LFE", "BL", "BR"]),
        ("7.1", ["FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"]),
        ("mono", ["FC"]),
    ],
)
def test_channel_layouts(tmp_path, layout, names):
    import av

    n = av.AudioLayout(layout).nb_channels
    y = np.stack([np.full(SR, 0.01 * (i + 1), np.float32) for i in range(n)])
    path = tmp_path / "x.wav"
    io.write(str(path), y, SR, codec="pcm_s24le", layout=layout, sample_fmt="s32")
    info = io.probe(str(path))
    assert info.audio.channel_layout == layout
    assert list(info.audio.channel_names) == names
    got = decode_all(path)
    assert np.allclose(got[:, 100], 0.01 * np.arange(1, n + 1), atol=1e-6)  # channel order kept


def test_wav_without_channel_mask_gets_default_layout(tmp_path):
    path = tmp_path / "plain.wav"
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=1", "-ac", "2", "-c:a", "pcm_s16le", str(path))
    info = io.probe(str(path))
    assert info.audio.channels == 2 and len(info.audio.channel_names) == 2


def test_file_url(media):
    url = "file://" + str(media["s16.wav"])
    assert io.probe(url).audio.codec == "pcm_s16le"
    assert decode_all(url).shape == (2, 6 * SR)


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support; counts the bytes it sends."""

    sent = 0

    def log_message(self, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        size = os.path.getsize(path)
        rng = self.headers.get("Range")
        start, end = 0, size - 1
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else max(0, size - int(b))
            end = min(int(b), size - 1) if (a and b) else size - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if not head:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(end - start + 1)
            type(self).sent += len(data)
            self.wfile.write(data)


@pytest.fixture
def http_server(tmp_path):
    handler = lambda *a, **k: _RangeHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RangeHandler.sent = 0
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def test_http_url_random_access(http_server):
    base, root = http_server
    path = root / "long.wav"
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=997:d=120:r=48000", "-ac", "2", "-c:a", "pcm_s16le", str(path))
    size = path.stat().st_size  # ~23 MB
    info = io.probe(f"{base}/long.wav")
    assert info.audio.duration_s == pytest.approx(120.0)
    assert _RangeHandler.sent < size / 4, "probe must not download the object"
    _RangeHandler.sent = 0
    part = decode_all(f"{base}/long.wav", start=100.0, end=101.0)
    assert part.shape == (2, SR)
    assert _RangeHandler.sent < size / 2, "a seek must read only what it needs"
    local = decode_all(path, start=100.0, end=101.0)
    assert np.array_equal(part, local)


def test_s3_url(s3, media):
    s3.mkdir("media")
    s3.put(str(media["a.m4a"]), "media/dir/a.m4a")
    s3.put(str(media["s24.flac"]), "media/dir/s24.flac")
    info = io.probe("s3://media/dir/a.m4a")
    assert info.audio.codec == "aac" and info.container.size_bytes == media["a.m4a"].stat().st_size
    assert np.array_equal(decode_all("s3://media/dir/s24.flac", start=2.0, end=3.0),
                          decode_all(media["s24.flac"], start=2.0, end=3.0))


def test_write_round_trip_float_overs(tmp_path):
    """float WAV keeps samples beyond full scale when clip=False (needed for clipping tests)."""
    y = np.array([[0.5, 1.5, -2.0, 0.0]], np.float32)
    path = tmp_path / "over.wav"
    io.write(str(path), y, SR, codec="pcm_f32le", sample_fmt="flt", clip=False)
    assert np.array_equal(decode_all(path), y)


def test_samples_script_output_is_decodable(tmp_path):
    """data/make_samples.py makes every sample kind the README's demo lists."""
    import runpy
    import sys

    script = Path(__file__).resolve().parents[1] / "data" / "make_samples.py"
    old = sys.argv
    try:
        sys.argv = [str(script), str(tmp_path)]
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = old
    assert exit_info.value.code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        [
            "faulty_speech_clipped_gaps.wav",
            "mix_stereo.m4a",
            "mix_stereo.mp3",
            "music_like_stereo_44k.wav",
            "speech_like_mono.opus",
            "speech_like_mono_24bit.flac",
            "surround_5.1.wav",
            "tone_1k_-23dBFS_stereo.wav",
        ]
    )
    assert io.probe(str(tmp_path / "surround_5.1.wav")).audio.channel_layout == "5.1(side)"


def test_wav_open_uses_a_short_probe_and_still_finds_a_hidden_bitstream(tmp_path, media):
    """16-bit WAVs are opened with a short probe (io.WAV_PROBE_BYTES) and read in 64 KiB packets
    (io.WAV_PACKET_BYTES); FFmpeg still recognises a DTS bitstream stored as PCM in a WAV, the thing
    its long payload probe is there for, and the PCM decodes to the same samples."""
    dts = tmp_path / "raw.dts"
    run_ffmpeg("-f", "lavfi", "-i", "sine=f=440:d=3:r=48000", "-ac", "2", "-c:a", "dca", "-strict", "-2",
               "-f", "dts", str(dts))
    wav = tmp_path / "dts_in.wav"
    with wave.open(str(wav), "wb") as w:  # the DTS bytes as the "samples" of a 16-bit stereo PCM WAV
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(dts.read_bytes())
    assert io._open_options(str(wav)) == {"probesize": str(io.WAV_PROBE_BYTES), "max_size": str(io.WAV_PACKET_BYTES)}
    assert io.probe(str(wav)).audio.codec == "dca"
    pcm = tmp_path / "long.wav"  # 3 s of stereo 16-bit: 576,000 bytes, more than one packet
    samples = (np.random.default_rng(3).integers(-32768, 32767, (144000, 2))).astype("<i2")
    with wave.open(str(pcm), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(samples.tobytes())
    with av.open(str(pcm), options=io._open_options(str(pcm))) as c:
        assert next(c.demux(c.streams.audio[0])).size == io.WAV_PACKET_BYTES  # FFmpeg took the option
    with io.stream(str(pcm)) as s:
        decoded = np.concatenate(list(s), axis=1)
    assert np.array_equal(decoded, samples.T.astype(np.float32) / 32768.0)
    assert io.probe(str(media["s16.wav"])).audio.codec == "pcm_s16le"
    for other in ("s24.flac", "a.mp3", "a.m4a", "a.mkv"):
        assert io._open_options(str(media[other])) == {}, other
