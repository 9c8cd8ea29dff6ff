"""`audioqc denoise` and audiolib.denoise.denoise_file: files in any format in and out, video kept,
atomic outputs (local and S3), bad input, odd media. ffprobe is the oracle for what was written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from audiolib import io
from audiolib.denoise import denoise_file
from conftest import AUDIOQC, SR, espeak_speech, run_cli
from testing.material.media import coloured_noise

cli = run_cli


def ffprobe(path: str | Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    with io.stream(str(path)) as s:
        return np.concatenate(list(s), axis=1), s.sample_rate


def level_db(y: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(y, dtype=np.float64)) + 1e-30)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> dict[str, Path]:
    """Speech over white noise (10 s, 48 kHz): mono 24-bit WAV, stereo FLAC, and an mp4 with video."""
    d = tmp_path_factory.mktemp("noisy")
    clean = espeak_speech(10.0)
    noise = 0.03 * coloured_noise("white", clean.size, np.random.default_rng(1)).astype(np.float32)
    files = {"mono.wav": d / "mono.wav", "stereo.flac": d / "stereo.flac", "clean.wav": d / "clean.wav"}
    io.write(str(files["mono.wav"]), (clean + noise)[np.newaxis], SR, codec="pcm_s24le", sample_fmt="s32")
    io.write(str(files["clean.wav"]), clean[np.newaxis], SR, codec="pcm_s16le", sample_fmt="s16")
    io.write(
        str(files["stereo.flac"]), np.stack((clean + noise, clean + noise[::-1])), SR, codec="flac", sample_fmt="s16"
    )
    files["video.mp4"] = d / "video.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=160x120:rate=25:duration=10", "-i", str(files["mono.wav"]),
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(files["video.mp4"])],
                   check=True)
    return files


# ------------------------------------------------------------------------------------------
# the command


def test_cli_prints_the_documented_json_and_removes_noise(noisy, tmp_path):
    out = tmp_path / "out.wav"
    proc = cli("denoise", str(noisy["mono.wav"]), str(out))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert set(d) == {"input", "output", "amount", "duration", "format", "codec", "elapsed_s", "noise_reduction_db"}
    assert d["amount"] == 100 and d["format"] == "wav" and d["codec"] == "pcm_s24le"
    assert d["duration"] == pytest.approx(10.0, abs=1e-6)
    assert d["noise_reduction_db"] > 20
    y, sr = decode(out)
    x, _ = decode(noisy["mono.wav"])
    assert sr == SR and y.shape == x.shape
    probe = ffprobe(out)["streams"][0]
    assert probe["codec_name"] == "pcm_s24le" and int(probe["sample_rate"]) == SR
    # the pauses of the speech lost the noise
    clean, _ = decode(noisy["clean.wav"])
    pause = np.abs(clean[0]) < 1e-4
    assert level_db(x[0, pause]) - level_db(y[0, pause]) > 20


def test_amount_drives_the_measured_reduction(noisy, tmp_path):
    measured = []
    for amount in (3, 10, 100):
        r = denoise_file(str(noisy["mono.wav"]), str(tmp_path / f"a{amount}.flac"), amount=amount)
        measured.append(r.noise_reduction_db)
    assert measured[0] == pytest.approx(3.0, abs=0.5)
    assert measured[1] == pytest.approx(10.0, abs=1.0)
    assert measured[0] < measured[1] < measured[2]


@pytest.mark.parametrize("ext, codec", [("wav", "pcm_s16le"), ("flac", "flac"), ("mp3", "mp3"), ("m4a", "aac"),
                                        ("opus", "opus"), ("ogg", "flac"), ("mka", "flac"), ("aac", "aac")])
def test_every_output_format_decodes_back_with_its_duration(noisy, tmp_path, ext, codec):
    # (the input is FLAC: Ogg and Matroska keep it; the others use their own codec)
    out = tmp_path / f"out.{ext}"
    r = denoise_file(str(noisy["stereo.flac"]), str(out))
    assert r.format == ext
    probe = ffprobe(out)
    stream = next(s for s in probe["streams"] if s["codec_type"] == "audio")
    assert stream["codec_name"] == codec
    assert int(stream["channels"]) == 2
    # the ffmpeg CLI decodes it (its own FFmpeg, not PyAV's): as many samples as went in, to within
    # what the container can signal: AAC's last frame is padded to 1024 samples (the ffmpeg CLI's
    # own AAC-in-m4a encode of 10 s decodes as 10.0053 s too), and ADTS cannot signal the 1024
    # samples of priming either
    rate = int(stream["sample_rate"])
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(out), "-f", "f32le", "-ac", "2", "-"],
                         capture_output=True, check=True).stdout
    decoded_s = len(pcm) / 8 / rate
    tolerance = {"m4a": 1024, "aac": 2048}.get(ext, 96) / rate
    assert decoded_s == pytest.approx(10.0, abs=tolerance)
    if ext == "flac":
        assert stream.get("bits_per_raw_sample") == "16"  # the input's depth


def test_video_is_copied_bit_for_bit(noisy, tmp_path):
    import av

    for ext in ("mp4", "mkv"):
        out = tmp_path / f"out.{ext}"
        r = denoise_file(str(noisy["video.mp4"]), str(out))
        assert r.codec == "aac"

        def packets(path: Path) -> list[tuple[int | None, bytes]]:
            with av.open(str(path)) as c:
                v = c.streams.video[0]
                tb = v.time_base
                assert tb is not None
                return [(p.pts * tb.denominator // tb.numerator if p.pts is not None else None,
                         bytes(p)) for p in c.demux(v) if p.size]

        src, dst = packets(noisy["video.mp4"]), packets(out)
        assert [b for _, b in src] == [b for _, b in dst]
    with pytest.raises(Exception, match="holds audio only|video"):
        denoise_file(str(noisy["video.mp4"]), str(tmp_path / "out.wav"))
    assert not (tmp_path / "out.wav").exists()


def test_format_option_overrides_the_extension(noisy, tmp_path):
    out = tmp_path / "noext"
    proc = cli("denoise", str(noisy["mono.wav"]), str(out), "--format", "flac")
    assert proc.returncode == 0, proc.stderr
    assert ffprobe(out)["streams"][0]["codec_name"] == "flac"


# ------------------------------------------------------------------------------------------
# atomic outputs


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a running process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_s3_output_appears_whole_and_a_killed_denoise_leaves_nothing(noisy, s3, tmp_path):
    s3.mkdir("denoised")
    r = denoise_file(str(noisy["mono.wav"]), "s3://denoised/a/out.flac")
    assert r.output_url == "s3://denoised/a/out.flac"
    s3.get("s3://denoised/a/out.flac", str(tmp_path / "got.flac"))
    y, _ = decode(tmp_path / "got.flac")
    assert y.shape == (1, 10 * SR)
    # a long input, killed while it is being denoised: no object, no partial object
    long = tmp_path / "long.wav"
    x, _ = decode(noisy["mono.wav"])
    io.write(str(long), np.tile(x, (1, 60)), SR, codec="pcm_s16le", sample_fmt="s16")  # 10 min
    proc = subprocess.Popen([*AUDIOQC, "denoise", str(long), "s3://denoised/b/out.wav"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    # killed once it has worked 4 s of CPU (imports take ~1.5 s): mid-denoise on any CPU, however
    # fast (10 min of audio are >= 6 s of work at the engine's fastest measured speed)
    deadline = time.monotonic() + 120
    while proc.poll() is None and _cpu_seconds(proc.pid) < 4.0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the denoise finished before it could be killed: make the input longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    s3.invalidate_cache()
    assert not s3.exists("s3://denoised/b/out.wav")
    assert s3.ls("s3://denoised") == ["denoised/a"]


def test_local_output_of_a_failed_denoise_is_not_created(noisy, tmp_path, monkeypatch):
    from audiolib import denoise as dn

    def boom(self, block):
        raise RuntimeError("engine failure")

    monkeypatch.setattr(dn.Denoiser, "push", boom)
    with pytest.raises(RuntimeError):
        denoise_file(str(noisy["mono.wav"]), str(tmp_path / "out.wav"))
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------
# bad input: one line, exit 1 (2 for usage), nothing created


@pytest.fixture(scope="module")
def bad(tmp_path_factory, noisy) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    files = {"empty.wav": d / "empty.wav", "text.wav": d / "text.wav", "random.mp3": d / "random.mp3"}
    files["empty.wav"].write_bytes(b"")
    files["text.wav"].write_text("this is not audio\n" * 100)
    files["random.mp3"].write_bytes(np.random.default_rng(3).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    files["video_only.mp4"] = d / "video_only.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=10:duration=1", "-c:v", "mpeg4", str(files["video_only.mp4"])], check=True)
    return files


@pytest.mark.parametrize("case, args, words", [
    ("missing", ["{d}/nope.wav", "{out}/o.wav"], "nope.wav: cannot open"),
    ("empty", ["{bad[empty.wav]}", "{out}/o.wav"], "empty"),
    ("text", ["{bad[text.wav]}", "{out}/o.wav"], "not a readable media file"),
    ("random", ["{bad[random.mp3]}", "{out}/o.wav"], "not a readable media file"),
    ("video only", ["{bad[video_only.mp4]}", "{out}/o.wav"], "no audio stream"),
    ("amount 0", ["{noisy[mono.wav]}", "{out}/o.wav", "--amount", "0"], "amount=0"),
    ("amount 101", ["{noisy[mono.wav]}", "{out}/o.wav", "--amount", "101"], "amount=101"),
    ("amount text", ["{noisy[mono.wav]}", "{out}/o.wav", "--amount", "lots"], "--amount='lots'"),
    ("amount float", ["{noisy[mono.wav]}", "{out}/o.wav", "--amount", "50.5"], "--amount='50.5'"),
    ("unknown format", ["{noisy[mono.wav]}", "{out}/o.xyz"], "not an output format"),
    ("bad --format", ["{noisy[mono.wav]}", "{out}/o.wav", "--format", "doc"], "not an output format"),
    ("video to wav", ["{noisy[video.mp4]}", "{out}/o.wav"], "video"),
    ("output is input", ["{noisy[mono.wav]}", "{noisy[mono.wav]}"], "may not be the input"),
    ("unwritable", ["{noisy[mono.wav]}", "/nonexistent-dir/o.wav"], "does not exist"),
    ("stream 3", ["{noisy[mono.wav]}", "{out}/o.wav", "--stream", "3"], "audio stream 3 requested"),
])
def test_bad_input_is_one_line_exit_1_and_nothing_is_written(bad, noisy, tmp_path, case, args, words):
    out = tmp_path / "out"
    out.mkdir()
    argv = [a.format(bad={k: str(v) for k, v in bad.items()}, noisy={k: str(v) for k, v in noisy.items()},
                     out=out, d=tmp_path) for a in args]
    proc = cli("denoise", *argv)
    assert proc.returncode == 1, (case, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audioqc: error:"), proc.stderr
    assert words in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert os.listdir(out) == []


def test_usage_errors_exit_2():
    proc = cli("denoise", "only-one-argument")
    assert proc.returncode == 2 and "usage error" in proc.stderr


# ------------------------------------------------------------------------------------------
# odd media that must work


@pytest.mark.parametrize("name, sr, channels, seconds", [
    ("8k.wav", 8000, 1, 3.0), ("192k.wav", 192000, 1, 2.0), ("eight.wav", 48000, 8, 2.0),
    ("one_sample.wav", 48000, 1, 1 / 48000), ("music.wav", 44100, 2, 3.0),
])
def test_odd_media_work(tmp_path, name, sr, channels, seconds):
    n = max(1, int(round(seconds * sr)))
    rng = np.random.default_rng(5)
    y = (0.1 * rng.standard_normal((channels, n))).astype(np.float32)
    if name == "music.wav":  # no speech at all: chords
        t = np.arange(n) / sr
        y = 0.2 * np.stack([np.sin(2 * np.pi * f * t) for f in (220.0, 277.0)]).astype(np.float32)
    src = tmp_path / name
    io.write(str(src), y, sr, codec="pcm_s16le", sample_fmt="s16")
    out = tmp_path / f"out_{name}"
    r = denoise_file(str(src), str(out))
    got, rate = decode(out)
    assert rate == sr and got.shape == (channels, n)
    assert np.isfinite(got).all()
    assert r.duration_s == pytest.approx(n / sr)


def test_long_digital_silence_and_speech_after_it(tmp_path):
    clean = espeak_speech(4.0)
    y = np.concatenate((clean, np.zeros(SR * 120, np.float32), clean))
    src = tmp_path / "silence.flac"
    io.write(str(src), y[np.newaxis], SR, codec="flac", sample_fmt="s16")
    r = denoise_file(str(src), str(tmp_path / "out.flac"))
    got, _ = decode(tmp_path / "out.flac")
    assert np.all(got[0, clean.size + SR:clean.size + 119 * SR] == 0.0)
    assert abs(level_db(got[0, -clean.size:]) - level_db(got[0, :clean.size])) < 1.0
    # no noise to remove: the pauses are digital silence (what is left are speech edges the
    # voice-activity detector calls non-speech)
    assert r.noise_reduction_db is None or r.noise_reduction_db < 3.0


def test_truncated_input_is_denoised_as_far_as_it_decodes_with_a_warning(noisy, tmp_path):
    data = noisy["mono.wav"].read_bytes()
    half = tmp_path / "half.wav"
    half.write_bytes(data[: len(data) // 2])
    proc = cli("denoise", str(half), str(tmp_path / "out.wav"))
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "truncated" in proc.stderr
    assert json.loads(proc.stdout)["duration"] == pytest.approx(5.0, abs=0.01)


def test_progress_is_reported_in_seconds(noisy, tmp_path):
    seen: list[tuple[float, float | None]] = []
    denoise_file(str(noisy["mono.wav"]), str(tmp_path / "o.wav"), progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == pytest.approx(10.0)
    assert all(b[0] >= a[0] for a, b in pairwise(seen))
    assert seen[-1][1] == pytest.approx(10.0, abs=0.01)
