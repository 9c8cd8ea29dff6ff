"""Technical checks: DC offset, phase, bandwidth, dropouts. Synthetic signals with known answers,
FFmpeg's ``astats`` (DC offset) and ``aphasemeter`` (phase) as oracles, real LAME and resampler
output for the bandwidth."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import soxr
from scipy.signal import butter, ellip, sosfilt

from audiolib import io
from audiolib.errors import InvalidParameter
from audiolib.technical import (
    BandwidthAnalyzer,
    DcOffsetAnalyzer,
    DropoutAnalyzer,
    PhaseAnalyzer,
)
from conftest import SR, programme, run_ffmpeg

STEREO = ("FL", "FR")
ANALYZERS = (DcOffsetAnalyzer, PhaseAnalyzer, BandwidthAnalyzer, DropoutAnalyzer)


def analyse(cls, y: np.ndarray, *, sr: int = SR, names=STEREO, block: int = 65536, **kw):
    """Push ``y`` (channels, frames) through a fresh analyzer in blocks; return its result."""
    a = cls(sr, names, **kw)
    for i in range(0, y.shape[1], block):
        a.push(y[:, i:i + block])
    return a.result()


def analyse_file(cls, path, **kw):
    with io.stream(str(path)) as s:
        a = cls(s.sample_rate, s.channel_names, start_s=s.start_s, **kw)
        for b in s:
            a.push(b)
    return a.result()


def noise(seconds: float, channels: int = 2, *, sr: int = SR, seed: int = 0,
          level: float = 0.1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal((channels, int(seconds * sr)))).astype(np.float32)


def music_like(seconds: float, *, sr: int = SR, seed: int = 5) -> np.ndarray:
    """Stereo pink-ish noise (-3 dB/octave) and a harmonic tone to 20 kHz: full-band, but darker
    at the top than white noise, as music is."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    spec = np.fft.rfft(rng.standard_normal((2, n)), axis=1)
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[:, 1:] /= np.sqrt(f[1:] / 100.0)
    pink = np.fft.irfft(spec, n, axis=1)
    t = np.arange(n) / sr
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 91) if 220 * k < min(20000, sr / 2))
    y = 0.2 * pink / pink.std() + 0.05 * tone
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def json_roundtrip(result) -> dict:
    """The block is strict JSON (no NaN/Infinity)."""
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


# ---------------------------------------------------------------------------------------- DC


def test_dc_offset_of_sines_with_known_offsets():
    t = np.arange(2 * SR) / SR
    sine = 0.5 * np.sin(2 * np.pi * 1000 * t)  # whole periods: mean 0
    y = np.stack([sine + 0.01, sine - 0.002, sine]).astype(np.float32)
    r = analyse(DcOffsetAnalyzer, y, names=("FL", "FR", "FC"))
    assert r.dc_offset[0] == pytest.approx(0.01, abs=1e-7)
    assert r.dc_offset[1] == pytest.approx(-0.002, abs=1e-7)
    assert abs(r.dc_offset[2]) < 1e-7
    assert r.dc_offset_dbfs[0] == pytest.approx(-40.0, abs=0.001)
    assert r.dc_offset_dbfs[1] == pytest.approx(-53.979, abs=0.001)
    d = json_roundtrip(r)
    assert d["channels"]["FL"]["dc_offset_dbfs"] == pytest.approx(-40.0, abs=0.01)
    assert d["max_abs_dc_offset_dbfs"] == pytest.approx(-40.0, abs=0.01)
    assert d["flagged"] == ["FL", "FR"] and d["threshold_dbfs"] == -60.0
    # The threshold is inclusive; the centre channel (|mean| ~1e-8) is not flagged.
    assert analyse(DcOffsetAnalyzer, y, names=("FL", "FR", "FC"), threshold_dbfs=-40.01).flagged == ("FL",)


def test_dc_offset_of_digital_silence_and_no_input():
    d = json_roundtrip(analyse(DcOffsetAnalyzer, np.zeros((2, SR), np.float32)))
    assert d["channels"]["FL"] == {"dc_offset": 0.0, "dc_offset_dbfs": None}
    assert d["max_abs_dc_offset_dbfs"] is None and d["flagged"] == []
    empty = DcOffsetAnalyzer(SR, STEREO).result()
    assert empty.dc_offset == (None, None) and json_roundtrip(empty)["flagged"] == []


def test_dc_offset_keeps_precision_over_hours():
    """~45 minutes of a constant (one reused block): no drift (a float32 running sum would stop
    growing at 2**24 * ulp and be off by percent)."""
    value = np.float32(0.1)
    block = np.full((1, 65536), value, np.float32)
    a = DcOffsetAnalyzer(SR, ("FC",))
    for _ in range(2000):
        a.push(block)
    assert a.result().dc_offset[0] == pytest.approx(float(value), rel=3e-7)


def test_dc_offset_agrees_with_ffmpeg_astats(tmp_path, ffmpeg):
    y = noise(5.0, seed=11)
    y[0] += 0.0123
    y[1] -= 0.000456
    y[:, SR:SR + 70000] += 0.05  # a DC step spanning the first block boundary
    path = tmp_path / "dc.wav"
    io.write(str(path), y, SR, codec="pcm_f32le", sample_fmt="flt")
    proc = subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-i", str(path),
                           "-af", "astats=measure_overall=none", "-f", "null", "-"],
                          capture_output=True, text=True, check=True)
    ref = [float(v) for v in re.findall(r"DC offset: (-?[\d.]+)", proc.stderr)]
    ours = analyse_file(DcOffsetAnalyzer, path).dc_offset
    assert len(ref) == 2
    assert ours == pytest.approx(ref, abs=1.5e-6)  # astats prints 6 decimals
    assert ours[0] == pytest.approx(0.0123 + 0.05 * 70000 / y.shape[1], abs=5e-4)  # noise mean ~4e-5


# ------------------------------------------------------------------------------------- phase


def aphasemeter(ffmpeg: str, path) -> tuple[float, list[tuple[float, float]]]:
    """FFmpeg's phase meter: mean of its per-frame phase, and its out-of-phase sections
    (phase below cos(120 deg) = -0.5 for at least 1 s)."""
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-af",
         "aphasemeter=video=0:phasing=1:angle=120:duration=1,ametadata=print:file=-", "-f", "null", "-"],
        capture_output=True, text=True, check=True)
    values = [float(v) for v in re.findall(r"lavfi\.aphasemeter\.phase=(-?[\d.]+)", proc.stdout)]
    starts = [float(v) for v in re.findall(r"out_phase_start: (-?[\d.]+)", proc.stderr)]
    ends = [float(v) for v in re.findall(r"out_phase_end: (-?[\d.]+)", proc.stderr)]
    return float(np.mean(values)), list(zip(starts, ends, strict=True))


def stereo_programme(seconds: float, *, seed: int = 3) -> np.ndarray:
    """A centred source (in both channels) over a little independent ambience: correlation ~0.95."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    sos = butter(4, [100, 6000], btype="bandpass", fs=SR, output="sos")
    src = sosfilt(sos, rng.standard_normal(n)) * 0.3
    amb = sosfilt(sos, rng.standard_normal((2, n))) * 0.05
    return (np.stack([src, src]) + amb).astype(np.float32)


@pytest.mark.parametrize("case, corr, loss_db",
                         [("L=R", 1.0, 0.0), ("L=-R", -1.0, 120.0), ("independent", 0.0, 3.01)])
def test_phase_of_known_pairs_against_aphasemeter(tmp_path, ffmpeg, case, corr, loss_db):
    x = noise(6.0, 2, seed=21)
    y = {"L=R": np.stack([x[0], x[0]]), "L=-R": np.stack([x[0], -x[0]]), "independent": x}[case]
    r = analyse(PhaseAnalyzer, y)
    pair = r.front
    assert pair.pair == "FL/FR"
    assert pair.correlation == pytest.approx(corr, abs=0.02)
    assert pair.mono_downmix_loss_db == pytest.approx(loss_db, abs=0.05)
    path = tmp_path / "p.wav"
    io.write(str(path), y, SR, codec="pcm_f32le", sample_fmt="flt")
    ref_mean, _ = aphasemeter(ffmpeg, path)
    assert pair.correlation == pytest.approx(ref_mean, abs=0.03)
    d = json_roundtrip(r)
    flagged = case == "L=-R"
    assert d["flagged"] == (["FL/FR"] if flagged else [])
    assert d["out_of_phase_percent"] == pytest.approx(100.0 if flagged else 0.0)
    assert d["pairs"]["FL/FR"]["num_sections"] == int(flagged)
    if flagged:
        assert d["pairs"]["FL/FR"]["sections"] == [{"start": 0.0, "end": 6.0}]


def test_out_of_phase_section_is_found_within_one_window(tmp_path, ffmpeg):
    y = stereo_programme(10.0)
    y[1, int(4.2 * SR):int(7.2 * SR)] *= -1  # polarity flipped for 3 s
    path = tmp_path / "flip.wav"
    io.write(str(path), y, SR, codec="pcm_f32le", sample_fmt="flt")
    r = analyse_file(PhaseAnalyzer, path)
    pair = r.front
    window = r.window_s
    assert len(pair.sections) == pair.num_sections == 1
    sec = pair.sections[0]
    assert abs(sec.start_s - 4.2) <= window and abs(sec.end_s - 7.2) <= window
    _, ref_sections = aphasemeter(ffmpeg, path)
    assert len(ref_sections) == 1
    assert abs(sec.start_s - ref_sections[0][0]) <= window and abs(sec.end_s - ref_sections[0][1]) <= window
    assert pair.out_of_phase_percent == pytest.approx(30.0, abs=window / 10 * 100)
    assert pair.correlation > 0  # 70% of the time in phase: the whole-file value stays positive
    assert r.flagged == ("FL/FR",)


def test_phase_mono_silence_and_surround_pairs():
    mono = json_roundtrip(analyse(PhaseAnalyzer, noise(2.0, 1), names=("FC",)))
    assert mono["correlation"] is None and mono["pairs"] == {} and mono["flagged"] == []
    silent = json_roundtrip(analyse(PhaseAnalyzer, np.zeros((2, SR), np.float32)))["pairs"]["FL/FR"]
    assert silent["correlation"] is None and silent["out_of_phase_percent"] is None
    assert silent["mono_downmix_loss_db"] is None and silent["active_windows"] == 0
    # 5.1: FL/FR in phase, SL/SR out of phase.
    x = noise(3.0, 3, seed=4)
    y = np.stack([x[0], x[0], x[1], x[2], x[1], -x[1]])
    r = analyse(PhaseAnalyzer, y, names=("FL", "FR", "FC", "LFE", "SL", "SR"))
    assert [p.pair for p in r.pairs] == ["FL/FR", "SL/SR"]
    assert r.flagged == ("SL/SR",)
    assert r.pairs[1].correlation == pytest.approx(-1.0)


def test_short_negative_stretches_and_silent_gaps():
    """A 0.8 s polarity flip is counted in the percentage but is not a section (min 1 s); silent
    windows inside an out-of-phase run do not split it."""
    y = stereo_programme(10.0, seed=8)
    y[1, 2 * SR:int(2.8 * SR)] *= -1
    y[1, 5 * SR:9 * SR] *= -1
    y[:, int(6.4 * SR):int(7.2 * SR)] = 0.0  # silence inside the second flip
    pair = analyse(PhaseAnalyzer, y).front
    # Window grid 0.4 s: the windows half in, half out of the flip are not out of phase.
    assert [(round(s.start_s, 3), round(s.end_s, 3)) for s in pair.sections] == [(5.2, 8.8)]
    assert pair.num_sections == 1
    assert pair.out_of_phase_percent > 0
    # A silence longer than 2 s ends a section.
    z = stereo_programme(10.0, seed=9)
    z[1] *= -1
    z[:, 3 * SR:int(5.8 * SR)] = 0.0
    assert [(round(s.start_s, 3), round(s.end_s, 3)) for s in analyse(PhaseAnalyzer, z).front.sections] == \
        [(0.0, 3.2), (5.6, 10.0)]  # the half-silent edge windows are still out of phase


# --------------------------------------------------------------------------------- bandwidth


def test_white_noise_is_full_band():
    r = analyse(BandwidthAnalyzer, noise(10.0))
    d = json_roundtrip(r)
    assert d["bandwidth_hz"] == pytest.approx(24000.0, rel=0.02)
    assert d["nyquist_hz"] == 24000.0 and d["sample_rate_hz"] == SR
    assert d["upsampled_suspect"] is False and d["cliff_db"] is None


def test_dark_content_is_not_band_limited():
    """Steeply falling spectra (24 dB/octave above 6 kHz; -3 dB/octave music-like) have no cliff."""
    assert analyse(BandwidthAnalyzer, programme(10.0)).bandwidth_hz == pytest.approx(24000.0)
    assert analyse(BandwidthAnalyzer, music_like(10.0)).bandwidth_hz == pytest.approx(24000.0)


def test_steep_low_pass_at_11k():
    sos = ellip(12, 0.1, 100, 11000, fs=SR, output="sos")
    y = sosfilt(sos, noise(10.0, seed=2), axis=1).astype(np.float32)
    r = analyse(BandwidthAnalyzer, y)
    assert r.bandwidth_hz == pytest.approx(11000.0, rel=0.03)
    assert r.cliff_db > 60
    # A lone tone above the cut does not move it (the level above is a 90th percentile).
    t = np.arange(y.shape[1]) / SR
    y_tone = y + (0.001 * np.sin(2 * np.pi * 18000 * t)).astype(np.float32)
    assert analyse(BandwidthAnalyzer, y_tone).bandwidth_hz == pytest.approx(r.bandwidth_hz)


def test_mp3_transcode_shows_the_lame_low_pass(tmp_path):
    y = music_like(8.0)
    wav, mp3 = tmp_path / "m.wav", tmp_path / "m.mp3"
    io.write(str(wav), y, SR, codec="pcm_s24le", sample_fmt="s32")
    run_ffmpeg("-i", str(wav), "-c:a", "libmp3lame", "-b:a", "96k", str(mp3))
    assert analyse_file(BandwidthAnalyzer, wav).bandwidth_hz == pytest.approx(24000.0)
    r = analyse_file(BandwidthAnalyzer, mp3)
    assert 12000 < r.bandwidth_hz < 17000  # LAME's 96 kb/s low-pass is 15.1 kHz
    assert r.cliff_db > 40


@pytest.mark.parametrize("resampler", ["ffmpeg", "soxr"])
def test_upsampled_16k_content(tmp_path, resampler):
    y16 = music_like(8.0, sr=16000)
    if resampler == "soxr":
        y = soxr.resample(y16.T, 16000, SR).T.astype(np.float32)
        r = analyse(BandwidthAnalyzer, np.ascontiguousarray(y))
    else:
        src, up = tmp_path / "16k.wav", tmp_path / "48k.wav"
        io.write(str(src), y16, 16000, codec="pcm_f32le", sample_fmt="flt")
        run_ffmpeg("-i", str(src), "-ar", str(SR), "-c:a", "pcm_f32le", str(up))
        r = analyse_file(BandwidthAnalyzer, up)
    assert r.bandwidth_hz == pytest.approx(8000.0, rel=0.06)
    assert r.upsampled_suspect is True and r.likely_source_rate_hz == 16000


def test_bandwidth_of_silence_and_short_input():
    assert analyse(BandwidthAnalyzer, np.zeros((2, SR), np.float32)).bandwidth_hz is None
    short = json_roundtrip(analyse(BandwidthAnalyzer, noise(0.05)))  # 2400 samples < one frame
    assert short["bandwidth_hz"] is None and short["frames"] == 0


# ---------------------------------------------------------------------------------- dropouts


def with_gaps(y: np.ndarray, starts_s, length_s: float, channels=slice(None)) -> np.ndarray:
    y = y.copy()
    for s in starts_s:
        i = int(round(s * SR))
        y[channels, i:i + int(round(length_s * SR))] = 0.0
    return y


def test_three_dropouts_found_exactly_one_across_a_block_boundary():
    boundary = 2 * 65536 / SR  # 2.730667 s
    starts = [1.0, boundary - 0.002, 4.5]
    y = with_gaps(programme(6.0), starts, 0.005)
    r = analyse(DropoutAnalyzer, y)
    assert r.count == 3 and len(r.events) == 3
    for ev, s in zip(r.events, starts, strict=True):
        assert ev.start_s == pytest.approx(s, abs=0.001)
        assert ev.end_s == pytest.approx(s + 0.005, abs=0.001)
        assert ev.channels == STEREO
    d = json_roundtrip(r)
    assert d["count"] == 3 and d["events_truncated"] is False
    assert d["total_s"] == pytest.approx(0.015, abs=1e-4)


def test_single_channel_dropout_and_file_time():
    y = with_gaps(programme(3.0), [1.5], 0.010, channels=1)
    r = analyse(DropoutAnalyzer, y, start_s=100.0)
    assert r.count == 1
    assert r.events[0].channels == ("FR",)
    assert r.events[0].start_s == pytest.approx(101.5, abs=1e-4)


def test_silences_and_edges_are_not_dropouts():
    y = programme(8.0)
    y[:, :SR // 2] = 0.0  # digital silence at the start
    y[:, -SR // 2:] = 0.0  # and at the end
    y[:, 3 * SR:5 * SR] = 0.0  # a 2 s silence
    y = with_gaps(y, [6.0], 0.0005)  # 0.5 ms: shorter than the 1 ms minimum
    y = with_gaps(y, [1.5], 0.15)  # 150 ms: longer than the 100 ms maximum
    assert analyse(DropoutAnalyzer, y).count == 0
    # A gap after a fade to near silence (-70 dBFS) lacks programme before it.
    z = programme(3.0)
    z[:, SR - 4800:SR] = 10 ** (-70 / 20) * np.sign(z[:, SR - 4800:SR])
    z = with_gaps(z, [1.0], 0.005)
    assert analyse(DropoutAnalyzer, z).count == 0
    # A gap within 50 ms of the end lacks programme after it.
    assert analyse(DropoutAnalyzer, with_gaps(programme(2.0), [1.97], 0.005)).count == 0


def test_overlapping_channel_runs_are_one_event_and_block_edges():
    y = programme(4.0)
    y[0, SR:SR + 240] = 0.0  # FL 1.000-1.005 s
    y[1, SR + 144:SR + 480] = 0.0  # FR 1.003-1.010 s
    edge = 65536
    y[:, edge - 192:edge] = 0.0  # ends exactly on a block boundary
    y[:, 2 * edge:2 * edge + 192] = 0.0  # starts exactly on one
    for block in (997, 65536):
        r = analyse(DropoutAnalyzer, y, block=block)
        assert r.count == 3, block
        assert (r.events[0].start_s, r.events[0].end_s) == (pytest.approx(1.0), pytest.approx(1.01))
        assert r.events[0].channels == STEREO
        assert r.events[1].end_s == pytest.approx(edge / SR)
        assert r.events[2].start_s == pytest.approx(2 * edge / SR)


def test_dropout_events_are_capped_but_counted():
    y = with_gaps(programme(6.0), np.arange(0.5, 5.5, 0.25), 0.003)
    r = analyse(DropoutAnalyzer, y, max_events=5)
    assert r.count == 20 and len(r.events) == 5 and r.events_truncated


# ------------------------------------------------------------------- streaming and parameters


def compare(a, b, path: str = "") -> None:
    """Equal JSON blocks, floats to 1e-6 relative (sums in other orders)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            compare(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            compare(u, v, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-6), path
    else:
        assert a == b, path


def test_results_do_not_depend_on_block_size():
    """DC step, a polarity flip, a low-pass and dropouts, pushed in 997- and 65536-frame blocks."""
    sos = ellip(12, 0.1, 100, 15000, fs=SR, output="sos")
    y = sosfilt(sos, stereo_programme(8.0, seed=4), axis=1).astype(np.float32)
    y[0, SR:3 * SR] += 0.02
    y[1, 4 * SR:6 * SR] *= -1
    y = with_gaps(y, [1.1, 65536 / SR - 0.001, 7.3], 0.004)
    for cls in ANALYZERS:
        compare(analyse(cls, y, block=997).to_dict(), analyse(cls, y, block=65536).to_dict(), cls.__name__)
    assert analyse(DropoutAnalyzer, y, block=997).count == 3
    assert analyse(PhaseAnalyzer, y, block=997).front.num_sections == 1


@pytest.mark.parametrize("make, bad", [
    (lambda: DcOffsetAnalyzer(SR, STEREO, threshold_dbfs=5.0), "5.0"),
    (lambda: DcOffsetAnalyzer(0, STEREO), "0"),
    (lambda: DcOffsetAnalyzer(SR, ()), "()"),
    (lambda: PhaseAnalyzer(SR, STEREO, window_s=0.0), "0.0"),
    (lambda: PhaseAnalyzer(SR, STEREO, threshold=1.5), "1.5"),
    (lambda: PhaseAnalyzer(SR, STEREO, min_section_s=float("nan")), "nan"),
    (lambda: BandwidthAnalyzer(SR, STEREO, hop_s=-1), "-1"),
    (lambda: BandwidthAnalyzer(SR, STEREO, cliff_db="deep"), "deep"),  # type: ignore[arg-type]  # wrong on purpose
    (lambda: DropoutAnalyzer(SR, STEREO, min_duration_s=0.2, max_duration_s=0.1), "0.1"),
    (lambda: DropoutAnalyzer(SR, STEREO, max_events=-3), "-3"),
    (lambda: DropoutAnalyzer(SR, STEREO, start_s=float("inf")), "inf"),
    (lambda: DcOffsetAnalyzer(SR, STEREO).push(np.zeros((3, 10), np.float32)), "(3, 10)"),
])
def test_bad_options_raise_invalid_parameter(make, bad):
    with pytest.raises(InvalidParameter) as exc:
        make()
    assert bad in str(exc.value)
