"""Channel format over time, ST 337 / IEC 61937 detection and alarms (audiolib.channel_format).

Synthetic signals with known answers: seeded noise per channel (independent channels), copies of
one signal (mono), a low-passed LFE; real IEC 61937 bursts made by FFmpeg's spdif muxer; a Dolby E
burst train built by hand from the ST 337 preambles.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from audiolib import io
from audiolib.channel_format import (
    FORMAT_MASK_BITS,
    LABELS,
    AlarmSettings,
    ChannelFormatAnalyzer,
    alarm_intervals,
    analyze,
)
from audiolib.errors import InvalidParameter
from testing.material.media import programme, run_ffmpeg

SR = 48000
WINDOW_S = 0.1


def noise(seed: int, channels: int, seconds: float, level: float = 0.1) -> np.ndarray:
    """Independent seeded white noise per channel, float32 (channels, frames)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, int(seconds * SR))) * level).astype(np.float32)


def lfe(seed: int, seconds: float) -> np.ndarray:
    """An LFE channel: noise low-passed at 120 Hz, (1, frames)."""
    sos = butter(4, 120, fs=SR, output="sos")
    return (sosfilt(sos, noise(seed, 1, seconds, 0.3), axis=1)).astype(np.float32)


def surround(seed: int, seconds: float, *, with_lfe: bool = True) -> np.ndarray:
    """Six distinct channels FL FR FC LFE SL SR, the LFE low-passed (or silent)."""
    n = noise(seed, 5, seconds)
    low = lfe(seed + 100, seconds) if with_lfe else np.zeros((1, n.shape[1]), np.float32)
    return np.vstack([n[:3], low, n[3:]])


def fold_down(x: np.ndarray) -> np.ndarray:
    """A mono pair carrying the programme of ``x`` (ITU-style fold-down, LFE dropped for 5.1)."""
    if x.shape[0] == 6:
        m = x[0] + x[1] + 0.707 * (x[2] + x[4] + x[5])
    else:
        m = x.sum(axis=0)
    m = (m / x.shape[0]).astype(np.float32)
    return np.vstack([m, m])


def mono_pair(seed: int, seconds: float) -> np.ndarray:
    m = noise(seed, 1, seconds)
    return np.vstack([m, m])


D = 3.0  # seconds of each labelled case
CASES = {
    "silence 2ch": (lambda: np.zeros((2, int(D * SR)), np.float32), "silence"),
    "silence 6ch (dither at -100 dBFS)": (lambda: noise(1, 6, D, 1e-5), "silence"),
    "mono 1ch": (lambda: noise(2, 1, D), "mono"),
    "mono L only": (lambda: np.vstack([noise(3, 1, D), np.zeros((1, int(D * SR)), np.float32)]), "mono"),
    "mono L=R": (lambda: mono_pair(4, D), "mono"),
    "mono L=-R": (lambda: mono_pair(4, D) * np.array([[1.0], [-1.0]], np.float32), "mono"),
    "mono L=R at different gains": (lambda: mono_pair(4, D) * np.array([[1.0], [0.3]], np.float32), "mono"),
    "mono on all 6 channels": (lambda: np.repeat(noise(5, 1, D), 6, axis=0), "mono"),
    "stereo noise": (lambda: noise(6, 2, D), "stereo"),
    "stereo programme": (lambda: programme(D), "stereo"),
    "stereo on FL/FR of a 5.1 file": (lambda: np.vstack([noise(7, 2, D), np.zeros((4, int(D * SR)), np.float32)]),
                                      "stereo"),
    "5.1": (lambda: surround(8, D), "5.1"),
    "5.1 with a silent LFE": (lambda: surround(9, D, with_lfe=False), "5.1"),
    "5.1 stereo (8ch)": (lambda: np.vstack([surround(10, D), noise(11, 2, D)]), "5.1 stereo"),
    "stereo 5.1 (8ch)": (lambda: np.vstack([noise(12, 2, D), surround(13, D)]), "stereo 5.1"),
    "stereo pairs (4ch)": (lambda: noise(14, 4, D), "stereo pairs"),
    "stereo pairs (8ch)": (lambda: noise(15, 8, D), "stereo pairs"),
    "stereo sap (4ch, SAP on one channel)": (
        lambda: np.vstack([noise(16, 3, D), np.zeros((1, int(D * SR)), np.float32)]), "stereo sap"),
    "stereo sap (4ch, SAP L=R)": (lambda: np.vstack([noise(17, 2, D), mono_pair(18, D)]), "stereo sap"),
    "stereo mono (4ch)": (lambda: np.vstack([(x := noise(19, 2, D)), fold_down(x)]), "stereo mono"),
    "5.1 sap (8ch)": (lambda: np.vstack([surround(20, D), mono_pair(21, D)]), "5.1 sap"),
    "5.1 mono (8ch)": (lambda: np.vstack([(x := surround(22, D)), fold_down(x)]), "5.1 mono"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_label(case: str) -> None:
    make, expected = CASES[case]
    y = make()
    result = analyze(y, SR)
    assert result.labels == (expected,), case
    seg = result.segments[0]
    assert seg.start_s == 0.0 and seg.end_s == pytest.approx(y.shape[1] / SR)


def test_every_label_has_a_mask_bit() -> None:
    assert set(FORMAT_MASK_BITS) == set(LABELS)
    assert FORMAT_MASK_BITS["stereo"] == FORMAT_MASK_BITS["stereo pairs"] == 32
    assert FORMAT_MASK_BITS["stereo mono"] == FORMAT_MASK_BITS["stereo sap"] == 8
    assert [FORMAT_MASK_BITS[k] for k in ("5.1", "5.1 stereo", "stereo 5.1", "stereo sap", "5.1 sap",
                                          "stereo pairs", "mono", "silence")] == [1, 2, 4, 8, 16, 32, 64, 128]


def _changing() -> np.ndarray:
    """Silence 2.03 s -> mono (L=R) 3.04 s -> stereo 4 s (changes off the 0.1 s window grid)."""
    return np.concatenate([np.zeros((2, int(2.03 * SR)), np.float32), mono_pair(30, 3.04), noise(31, 2, 4.0)],
                          axis=1)


@pytest.mark.parametrize("block", [65536, 10007, 4800, 1000])
def test_format_changes_over_time(block: int) -> None:
    y = _changing()
    result = analyze(y, SR, block_frames=block, start_s=60.0)
    assert result.labels == ("silence", "mono", "stereo")
    starts = [s.start_s - 60.0 for s in result.segments]
    ends = [s.end_s - 60.0 for s in result.segments]
    assert starts[0] == 0.0 and ends[-1] == pytest.approx(y.shape[1] / SR)
    assert ends[:-1] == starts[1:]
    for got, want in zip(ends[:-1], [2.03, 5.07], strict=True):
        assert abs(got - want) <= WINDOW_S + 1e-9
    out = result.to_dict()
    json.dumps(out)
    assert out["audioFormatAnnotations"][0] == {
        "audioFormat": "silence", "startTimeOffset": "60.000000s", "endTimeOffset": f"{60 + ends[0]:.6f}s"}


def test_same_result_whatever_the_block_size() -> None:
    y = _changing()
    a = analyze(y, SR, block_frames=65536).to_dict()
    assert analyze(y, SR, block_frames=3001).to_dict() == a
    assert analyze(y, SR, block_frames=4800).to_dict() == a


def test_flicker_does_not_make_a_segment() -> None:
    y = noise(40, 2, 6.0)
    y[:, int(2.0 * SR):int(2.2 * SR)] = 0.0  # 0.2 s of silence
    y[1, int(4.0 * SR):int(4.2 * SR)] = y[0, int(4.0 * SR):int(4.2 * SR)]  # 0.2 s of L=R
    assert analyze(y, SR).labels == ("stereo",)
    # A flicker at the very start joins the segment after it.
    z = np.concatenate([mono_pair(41, 0.2), noise(42, 2, 3.0)], axis=1)
    result = analyze(z, SR)
    assert result.labels == ("stereo",) and result.segments[0].start_s == 0.0
    # 0.6 s is long enough to make its own segment.
    y[:, int(2.0 * SR):int(2.6 * SR)] = 0.0
    assert analyze(y, SR).labels == ("stereo", "silence", "stereo")


def test_a_mono_pair_appearing_in_a_four_channel_file() -> None:
    y = np.vstack([noise(50, 2, 6.0), np.zeros((2, 6 * SR), np.float32)])
    y[2:, 3 * SR:] = mono_pair(51, 3.0)
    result = analyze(y, SR)
    assert result.labels == ("stereo", "stereo sap")
    assert abs(result.segments[1].start_s - 3.0) <= WINDOW_S


# ---------------------------------------------------------------------------------------------
# SMPTE ST 337 / IEC 61937
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spdif(tmp_path_factory) -> dict[str, np.ndarray]:
    """Real IEC 61937 bursts from FFmpeg's spdif muxer: raw s16le stereo at 48 kHz, as float."""
    d = tmp_path_factory.mktemp("spdif")
    out = {}
    for codec in ("ac3", "eac3"):
        path = d / f"{codec}.spdif"
        run_ffmpeg("-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:duration=2", "-c:a", codec,
                   "-f", "spdif", str(path))
        words = np.fromfile(path, dtype="<i2").reshape(-1, 2).T
        out[codec] = (words.astype(np.float32) / 32768.0)  # exactly what a 16-bit decode gives
        out[codec + "_path"] = path
    return out


def _with_bursts(bursts: np.ndarray, channels: tuple[int, int], at_s: float, seconds: float,
                 total: int = 6) -> np.ndarray:
    """Stereo noise on FL/FR, ``bursts`` on ``channels`` from ``at_s``, the rest silent."""
    y = np.zeros((total, int(seconds * SR)), np.float32)
    y[:2] = noise(60, 2, seconds)
    i = int(at_s * SR)
    y[list(channels), i:i + bursts.shape[1]] = bursts
    return y


def test_ac3_bursts_on_channels_2_3_of_a_24bit_5_1_wav(spdif, tmp_path) -> None:
    bursts = spdif["ac3"]
    y = _with_bursts(bursts, (2, 3), 1.0, 5.0)
    path = str(tmp_path / "ac3_in_5.1.wav")
    io.write(path, y, SR, codec="pcm_s24le", layout="5.1", sample_fmt="s32")
    info = io.probe(path)
    assert info.audio.codec == "pcm_s24le" and info.audio.channels == 6
    alarms = AlarmSettings(enabled=True, sensitivity=1.0, secs_in_alarm_duration=0.5, allow_compressed_audio=0)
    with io.stream(path) as s:
        analyzer = ChannelFormatAnalyzer(s.sample_rate, s.channel_names, codec=info.audio.codec,
                                         container=info.container.kind, alarms=alarms)
        for block in s:
            analyzer.push(block)
    result = analyzer.result()
    assert len(result.compressed) == 1
    c = result.compressed[0]
    assert (c.channels, c.format, c.data_type, c.word_bits) == ((2, 3), "ac3", 1, 16)
    assert c.start_s == pytest.approx(1.0, abs=1 / SR)
    assert c.end_s == pytest.approx(1.0 + bursts.shape[1] / SR, abs=1536 / SR)  # one AC-3 burst period
    assert c.bursts == bursts.shape[1] // 1536 and not c.allowed
    # The data channels are not audio: the PCM carried is the stereo pair.
    assert result.labels == ("stereo",)
    # Compressed audio on channels whose bits are 0: one alarm once it has lasted 0.5 s.
    (alarm,) = result.alarms
    assert alarm.kind == "compressedAudio"
    assert alarm.start_s == pytest.approx(1.5, abs=1e-6) and alarm.end_s == pytest.approx(c.end_s)
    assert "ac3" in alarm.reason and "2,3" in alarm.reason
    d = result.to_dict()
    json.dumps(d)
    assert d["compressedChannels"][0]["channels"] == [2, 3]
    assert d["alarms"][0]["startTimeOffset"] == "1.500000s"


@pytest.mark.parametrize("mask,declared", [(0b1100, ()), (0, (2, 3))])
def test_compressed_audio_allowed_raises_no_alarm(spdif, mask: int, declared: tuple[int, ...]) -> None:
    y = _with_bursts(spdif["ac3"], (2, 3), 1.0, 4.0)
    settings = AlarmSettings(enabled=True, sensitivity=1.0, secs_in_alarm_duration=0.5, allow_compressed_audio=mask)
    result = analyze(y, SR, codec="pcm_s16le", alarms=settings, compressed_channels=declared)
    assert [c.allowed for c in result.compressed] == [True]
    assert result.alarms == ()


def test_eac3_bursts_fed_directly(spdif) -> None:
    # FFmpeg packs E-AC-3 for HDMI: one 1536-sample frame per 6144-frame burst period, so the
    # train lasts 4x the audio; 20 bursts (2.56 s) are enough.
    bursts = spdif["eac3"][:, :20 * 6144]
    y = _with_bursts(bursts, (2, 3), 0.5, 4.0)
    result = analyze(y, SR, codec="pcm_s16le", block_frames=9999)
    (c,) = result.compressed
    assert (c.channels, c.format, c.data_type, c.word_bits) == ((2, 3), "eac3", 21, 16)
    assert c.start_s == pytest.approx(0.5, abs=1 / SR)
    assert c.end_s == pytest.approx(0.5 + bursts.shape[1] / SR, abs=6144 / SR)  # one E-AC-3 burst period
    assert result.labels == ("stereo",)


def test_whole_wav_unwrapped_by_ffmpegs_demuxer(spdif, tmp_path) -> None:
    path = str(tmp_path / "whole.wav")
    run_ffmpeg("-f", "s16le", "-ar", "48000", "-ac", "2", "-i", str(spdif["ac3_path"]), "-c:a", "pcm_s16le", path)
    info = io.probe(path)
    # FFmpeg's WAV demuxer probes the PCM payload, finds IEC 61937 and hands the AC-3 to the decoder.
    assert (info.container.kind, info.audio.codec) == ("wav", "ac3")
    with io.stream(path) as s:
        analyzer = ChannelFormatAnalyzer(s.sample_rate, s.channel_names, codec=info.audio.codec,
                                         container=info.container.kind)
        frames = 0
        for block in s:
            analyzer.push(block)
            frames += block.shape[1]
    result = analyzer.result()
    (c,) = result.compressed
    assert c.channels == tuple(range(info.audio.channels)) and c.format == "ac3"
    assert c.start_s == 0.0 and c.end_s == pytest.approx(frames / s.sample_rate)
    assert c.note is not None and "demuxer" in c.note and "decoded" in c.note
    assert result.to_dict()["compressedChannels"][0]["note"] == c.note
    assert result.labels == ("mono",)  # the decoded programme: a sine on one AC-3 channel


def _dolby_e(bits: int, seconds: float, *, subframe: bool = False, seed: int = 70) -> np.ndarray:
    """A Dolby E burst train (SMPTE ST 337 bursts, data_type 28 per ST 338) at 25 frames/s.

    ``bits``-bit data words left-justified in 24-bit samples; frame mode on two channels (Pa/Pb
    then Pc/Pd in consecutive sample frames), or subframe mode on one channel.
    """
    pa = {16: 0xF872, 20: 0x6F872, 24: 0x96F872}[bits]
    pb = {16: 0x4E1F, 20: 0x54E1F, 24: 0xA54E1F}[bits]
    period = SR // 25  # 1920 frames: one Dolby E frame per video frame
    n = int(seconds * SR) // period * period
    rng = np.random.default_rng(seed)
    payload_words = 1800 * (1 if subframe else 2)
    burst_info = 28 | (1 << 13)  # data_type 28 (Dolby E); data_stream_number 1
    words = np.zeros(n * (1 if subframe else 2), dtype=np.int64)
    for start in range(0, n, period):
        i = start * (1 if subframe else 2)
        payload = rng.integers(0, 1 << bits, payload_words)
        header = [pa, pb, burst_info << (bits - 16), payload_words * bits]  # Pd: payload length, bits
        words[i:i + 4] = header
        words[i + 4:i + 4 + payload_words] = payload
    words <<= 24 - bits  # left-justified in the 24-bit sample
    signed = np.where(words >= 1 << 23, words - (1 << 24), words)
    x = (signed / float(1 << 23)).astype(np.float32)
    return x[None, :] if subframe else x.reshape(-1, 2).T


@pytest.mark.parametrize("bits", [16, 20, 24])
def test_dolby_e_built_by_hand(bits: int) -> None:
    bursts = _dolby_e(bits, 2.0)
    y = np.zeros((4, 4 * SR), np.float32)
    y[2:] = noise(71, 2, 4.0)
    y[0:2, SR:SR + bursts.shape[1]] = bursts
    result = analyze(y, SR, codec="pcm_s24le")
    (c,) = result.compressed
    assert (c.channels, c.format, c.data_type, c.word_bits) == ((0, 1), "dolby_e", 28, bits)
    assert c.start_s == pytest.approx(1.0, abs=1 / SR)
    assert c.end_s == pytest.approx(1.0 + bursts.shape[1] / SR, abs=1 / SR)
    assert c.bursts == 50
    assert result.labels == ("stereo",)  # channels 2, 3; the Dolby E pair is data


def test_dolby_e_in_subframe_mode_on_one_channel() -> None:
    bursts = _dolby_e(20, 1.0, subframe=True)
    y = np.zeros((2, 2 * SR), np.float32)
    y[1, 24000:24000 + bursts.shape[1]] = bursts[0]
    (c,) = analyze(y, SR, codec="pcm_s24le", block_frames=7001).compressed
    assert (c.channels, c.format, c.word_bits, c.bursts) == ((1,), "dolby_e", 20, 25)
    assert c.start_s == pytest.approx(0.5, abs=1 / SR)


def test_bursts_across_tiny_blocks() -> None:
    """Preambles split across blocks of 1 and 2 frames are found (the 3-frame carry between blocks)."""
    bursts = _dolby_e(16, 0.12)  # 3 bursts, 1920 frames apart
    y = np.zeros((2, 6000), np.float32)
    y[:, 7:7 + bursts.shape[1]] = bursts
    for block in (1, 2, 3, 4):
        (c,) = analyze(y, SR, block_frames=block).compressed
        assert (c.channels, c.bursts, c.format) == ((0, 1), 3, "dolby_e")
        assert c.start_s == 7 / SR


def test_no_compressed_audio_in_pcm_and_one_preamble_is_not_a_stream() -> None:
    assert analyze(programme(4.0), SR).compressed == ()
    y = noise(80, 2, 2.0)
    y[0, SR], y[1, SR] = (0xF872 - 0x10000) / 32768.0, 0x4E1F / 32768.0  # one Pa/Pb, as 16-bit samples
    result = analyze(y, SR)
    assert result.compressed == () and result.labels == ("stereo",)
    # A lossy decode cannot carry bit-exact bursts: not scanned.
    assert analyze(_dolby_e(16, 1.0), SR, codec="aac", container="mp4").compressed == ()


# ---------------------------------------------------------------------------------------------
# Alarms
# ---------------------------------------------------------------------------------------------

def _stereo_then_mono() -> np.ndarray:
    return np.concatenate([noise(90, 2, 3.0), mono_pair(91, 6.0)], axis=1)


def test_disallowed_format_longer_than_the_duration_raises_an_alarm() -> None:
    y = _stereo_then_mono()
    only_stereo = AlarmSettings(enabled=True, sensitivity=1.0, secs_in_alarm_duration=4,
                                allowable_audio_format=FORMAT_MASK_BITS["stereo"])
    result = analyze(y, SR, alarms=only_stereo)
    assert result.labels == ("stereo", "mono")
    mono_start = result.segments[1].start_s
    (alarm,) = result.alarms
    assert alarm.kind == "audioFormat"
    assert alarm.start_s == pytest.approx(mono_start + 4.0) and alarm.end_s == pytest.approx(9.0)
    assert "'mono'" in alarm.reason and "allowableAudioFormat=32" in alarm.reason
    assert result.to_dict()["alarms"][0]["endTimeOffset"] == "9.000000s"
    # Shorter than the duration: no alarm.
    longer = AlarmSettings(enabled=True, sensitivity=1.0, secs_in_alarm_duration=7,
                           allowable_audio_format=FORMAT_MASK_BITS["stereo"])
    assert analyze(y, SR, alarms=longer).alarms == ()
    # Sensitivity 0.5 over 8 s: active once 4 s of the trailing 8 s are in violation.
    half = AlarmSettings(enabled=True, sensitivity=0.5, secs_in_alarm_duration=8,
                         allowable_audio_format=FORMAT_MASK_BITS["stereo"])
    (alarm,) = analyze(y, SR, alarms=half).alarms
    assert alarm.start_s == pytest.approx(mono_start + 4.0)
    # Allowed, or disabled: nothing.
    assert analyze(y, SR, alarms=AlarmSettings(enabled=True, secs_in_alarm_duration=0)).alarms == ()
    assert analyze(y, SR, alarms=AlarmSettings(enabled=False, secs_in_alarm_duration=0,
                                               allowable_audio_format=0)).alarms == ()


def test_zero_duration_alarm_follows_the_violation() -> None:
    settings = AlarmSettings(enabled=True, secs_in_alarm_duration=0, allowable_audio_format=FORMAT_MASK_BITS["mono"])
    result = analyze(_stereo_then_mono(), SR, alarms=settings)
    (alarm,) = result.alarms
    assert (alarm.start_s, alarm.end_s) == (0.0, result.segments[0].end_s)
    assert "'stereo'" in alarm.reason


def test_alarm_intervals_exact() -> None:
    # Violation 2..5 s; severity over a 2 s window rises 0 -> 1 on 2..4, stays to 5, falls to 0 at 7.
    assert alarm_intervals([(2.0, 5.0)], 0.0, 20.0, duration_s=2.0, sensitivity=0.5) == [(3.0, 6.0)]
    assert alarm_intervals([(2.0, 5.0)], 0.0, 20.0, duration_s=2.0, sensitivity=1.0) == [(4.0, 5.0)]
    assert alarm_intervals([(2.0, 5.0)], 0.0, 20.0, duration_s=3.0, sensitivity=1.0) == []
    # Two violations whose windows overlap add up: 1 s + 1.5 s reach half of 4 s at t = 5 s.
    assert alarm_intervals([(1.0, 2.0), (4.0, 5.5)], 0.0, 10.0, duration_s=4.0, sensitivity=0.5) == [(5.0, 5.5)]
    # Half exactly at one instant only (1 s + 1 s at t = 5 s): no alarm.
    assert alarm_intervals([(1.0, 2.0), (4.0, 5.0)], 0.0, 10.0, duration_s=4.0, sensitivity=0.5) == []
    # Sensitivity 0: active whenever any violation lies in the trailing window.
    assert alarm_intervals([(2.0, 3.0)], 0.0, 10.0, duration_s=1.0, sensitivity=0.0) == [(2.0, 4.0)]


# ---------------------------------------------------------------------------------------------
# Settings and parameters
# ---------------------------------------------------------------------------------------------

def test_alarm_settings_from_the_reference_json() -> None:
    s = AlarmSettings.from_dict({"enabled": True, "sensitivity": 0.2, "secsInAlarmDuration": 210,
                                 "allowCompressedAudio": 3, "allowableAudioFormat": 15})
    assert s == AlarmSettings(True, 0.2, 210, 3, 15)
    assert AlarmSettings.from_dict({}) == AlarmSettings()
    assert s.allows_format("5.1 stereo") and not s.allows_format("stereo pairs")


@pytest.mark.parametrize("bad,quoted", [
    ({"secsInAlarmDuration": -1}, "-1"),
    ({"secsInAlarmDuration": float("inf")}, "inf"),
    ({"sensitivity": 1.5}, "1.5"),
    ({"sensitivity": -0.1}, "-0.1"),
    ({"sensitivity": "high"}, "'high'"),
    ({"allowableAudioFormat": 256}, "256"),
    ({"allowCompressedAudio": -1}, "-1"),
    ({"allowCompressedAudio": 3.5}, "3.5"),
    ({"enabled": "yes"}, "'yes'"),
    ({"enabled": True, "secsInAlarm": 5}, "'secsInAlarm'"),
])
def test_bad_alarm_settings(bad: dict, quoted: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        AlarmSettings.from_dict(bad)
    assert quoted in str(err.value)


def test_bad_analyzer_parameters() -> None:
    with pytest.raises(InvalidParameter, match="not a dict|JSON object"):
        AlarmSettings.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter, match="window_s=0"):
        ChannelFormatAnalyzer(SR, ("FL", "FR"), window_s=0)
    with pytest.raises(InvalidParameter, match=r"compressed_channels=\(2,\)"):
        ChannelFormatAnalyzer(SR, ("FL", "FR"), compressed_channels=(2,))
    with pytest.raises(InvalidParameter, match="sample_rate=0"):
        ChannelFormatAnalyzer(0, ("FL", "FR"))
    analyzer = ChannelFormatAnalyzer(SR, ("FL", "FR"))
    with pytest.raises(InvalidParameter, match=r"\(3, 10\)"):
        analyzer.push(np.zeros((3, 10), np.float32))


def test_empty_input_gives_no_segments() -> None:
    result = ChannelFormatAnalyzer(SR, ("FL", "FR")).result()
    assert result.to_dict() == {"audioFormatAnnotations": [], "compressedChannels": [], "alarms": []}


def test_long_stream_stays_one_segment() -> None:
    """10 minutes of stereo in 65536-frame blocks: one segment covering it all (speed is measured
    by benchmarks/bench_diagnose.py, never in tests)."""
    rng = np.random.default_rng(5)
    blocks = [(rng.standard_normal((2, 65536)) * 0.1).astype(np.float32) for _ in range(4)]
    analyzer = ChannelFormatAnalyzer(SR, ("FL", "FR"))
    n_blocks = int(600 * SR / 65536)
    for i in range(n_blocks):
        analyzer.push(blocks[i % 4])
    result = analyzer.result()
    assert result.labels == ("stereo",) and result.duration_s == pytest.approx(n_blocks * 65536 / SR)
