"""Speech events (plosive pops, excess sibilance) on speech built to contain known events.

Speech is espeak-ng's (a Debian package, see docs/design.md), phrases chosen without sibilants, laid out
with pauses; the speech mask comes from that known layout, not from a VAD. Events are then added at
known times: sibilant bursts (band-passed noise, louder than the speech, 100 ms, in a short gap
inside a phrase) and plosive pops (a 50 ms decaying 60 Hz thump, low-passed at 120 Hz, at the
onset of a word after a pause). The counts must rise by exactly the number added and the times
must match.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
import soxr

from audiolib.errors import InvalidParameter
from audiolib.speech_events import (
    MASK_MARGIN_S,
    SpeechEvent,
    SpeechEventDetector,
    SpeechEventsResult,
)

MASK_HOP_S = 0.032  # the lead's VAD frame
TIME_TOLERANCE_S = 0.02
PAUSE_S = 0.5  # between phrases
GAP_S = 0.25  # between the two halves of a phrase (inside speech)
SIBILANT_S = 0.1
SIBILANT_EXCESS_DB = 3.0  # burst RMS over the phrase's active speech RMS
POP_S = 0.05
POP_EXCESS_DB = 8.0  # thump RMS (over its 50 ms) over the phrase's active speech RMS

# Phrase halves without sibilants or affricates (espeak's own /s/ lies 2-7 dB under the speech level).
HALVES = [
    ("a man in a blue room", "we will go home now"),
    ("hello my old friend", "all of them are here"),
    ("a large brown owl", "I heard a loud bell"),
    ("the moon rolled along", "and now we are done"),
]


@functools.lru_cache(maxsize=None)
def _espeak(text: str, voice: str = "en") -> tuple[int, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
        rate, x = scipy.io.wavfile.read(path)
    return rate, (x.astype(np.float32) / 32768.0)


def _say(text: str, rate: int, voice: str = "en") -> np.ndarray:
    """espeak-ng speech at ``rate``, trimmed to its non-silent extent (samples over -50 dBFS)."""
    src_rate, x = _espeak(text, voice)
    y = soxr.resample(x, src_rate, rate).astype(np.float32)
    loud = np.flatnonzero(np.abs(y) > 10 ** (-50 / 20))
    return y[loud[0]:loud[-1] + 1]


@dataclass
class Layout:
    rate: int
    x: np.ndarray
    mask: np.ndarray  # one bool per MASK_HOP_S
    onsets_s: list[float]  # word onsets after a pause (phrase starts) and after the inner gap
    gaps_s: list[tuple[float, float]]  # the inner gaps (inside speech)
    speech_rms: float

    def push_all(self, detector: SpeechEventDetector, block: int | None = None) -> None:
        if block is None:
            detector.push(self.x)
        else:
            for i in range(0, self.x.size, block):
                detector.push(self.x[i:i + block])


def build(rate: int, voice: str = "en", phrases: int = 4) -> Layout:
    """Phrases ``A <gap> B`` separated by pauses; the mask covers each phrase, gap included."""
    parts: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    onsets: list[float] = []
    gaps: list[tuple[float, float]] = []
    speech: list[np.ndarray] = []
    t = PAUSE_S
    parts.append(np.zeros(round(PAUSE_S * rate), np.float32))
    for k in range(phrases):
        a_text, b_text = HALVES[k % len(HALVES)]
        a, b = _say(a_text, rate, voice), _say(b_text, rate, voice)
        gap = np.zeros(round(GAP_S * rate), np.float32)
        start = t
        onsets.append(t)
        t += a.size / rate
        gaps.append((t, t + gap.size / rate))
        t += gap.size / rate
        onsets.append(t)
        t += b.size / rate
        spans.append((start, t))
        pause = np.zeros(round(PAUSE_S * rate), np.float32)
        parts += [a, gap, b, pause]
        speech += [a, b]
        t += pause.size / rate
    x = np.concatenate(parts)
    hops = int(np.ceil(x.size / rate / MASK_HOP_S))
    centres = (np.arange(hops) + 0.5) * MASK_HOP_S
    mask = np.zeros(hops, bool)
    for s, e in spans:
        mask |= (centres >= s) & (centres < e)
    all_speech = np.concatenate(speech).astype(np.float64)
    return Layout(rate, x, mask, onsets, gaps, float(np.sqrt(np.mean(all_speech ** 2))))


def sibilant_burst(rate: int, rms: float, seed: int) -> np.ndarray:
    """SIBILANT_S of noise band-passed to 4-10 kHz (4-0.45 rate below 22.2 kHz), 5 ms ramps."""
    n = round(SIBILANT_S * rate)
    noise = np.random.default_rng(seed).standard_normal(n + rate // 10)
    sos = scipy.signal.butter(8, [4000.0, min(10000.0, 0.44 * rate)], "bandpass", fs=rate, output="sos")
    y = scipy.signal.sosfilt(sos, noise)[rate // 10:]  # past the filter's start-up
    ramp = round(0.005 * rate)
    env = np.ones(n)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[-ramp:] = np.linspace(1, 0, ramp)
    y *= env
    return (y * rms / np.sqrt(np.mean(y ** 2))).astype(np.float32)


def pop(rate: int, rms: float) -> np.ndarray:
    """A POP_S thump: 60 Hz sine decaying with a 20 ms time constant, low-passed at 120 Hz."""
    n = round(POP_S * rate)
    t = np.arange(2 * n) / rate
    y = np.sin(2 * np.pi * 60.0 * t) * np.exp(-t / 0.02)
    y[n:] = 0.0
    sos = scipy.signal.butter(4, 120.0, "lowpass", fs=rate, output="sos")
    y = scipy.signal.sosfilt(sos, y)
    return (y * rms / np.sqrt(np.mean(y[:n] ** 2))).astype(np.float32)


def add_at(x: np.ndarray, burst: np.ndarray, t_s: float, rate: int) -> None:
    i = round(t_s * rate)
    x[i:i + burst.size] += burst[: x.size - i]


def detect(layout: Layout, x: np.ndarray | None = None, block: int | None = None,
           mask: np.ndarray | None = None, start_s: float = 0.0) -> SpeechEventsResult:
    d = SpeechEventDetector(layout.rate)
    sig = layout.x if x is None else x
    if block is None:
        d.push(sig)
    else:
        for i in range(0, sig.size, block):
            d.push(sig[i:i + block])
    return d.result(layout.mask if mask is None else mask, MASK_HOP_S, start_s)


def with_events(layout: Layout, n_sibilant: int, n_pop: int) -> tuple[np.ndarray, list[float], list[float]]:
    """The layout's speech plus sibilant bursts centred in the first gaps and pops at onsets."""
    x = layout.x.copy()
    rate = layout.rate
    sib_times = []
    for k in range(n_sibilant):
        g0, g1 = layout.gaps_s[k]
        t = (g0 + g1) / 2 - SIBILANT_S / 2
        add_at(x, sibilant_burst(rate, layout.speech_rms * 10 ** (SIBILANT_EXCESS_DB / 20), seed=k), t, rate)
        sib_times.append(t)
    pop_times = []
    for k in range(n_pop):
        t = layout.onsets_s[2 * k + 1 if k % 2 else 2 * k]  # phrase starts and post-gap onsets
        add_at(x, pop(rate, layout.speech_rms * 10 ** (POP_EXCESS_DB / 20)), t, rate)
        pop_times.append(t)
    return x, sorted(sib_times), sorted(pop_times)


def _starts(events: list[SpeechEvent]) -> np.ndarray:
    return np.array([e.start_s for e in events])


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_plain_speech_has_no_events(rate: int) -> None:
    res = detect(build(rate))
    assert (res.plosive, res.sibilance) == (0, 0)
    assert res.plosive_events == [] and res.sibilance_events == []


@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_added_events_are_counted_and_timed(rate: int) -> None:
    layout = build(rate)
    base = detect(layout)
    x, sib_times, pop_times = with_events(layout, n_sibilant=3, n_pop=4)
    res = detect(layout, x)
    assert res.sibilance is not None and base.sibilance is not None  # every rate here holds the band
    assert res.sibilance - base.sibilance == 3
    assert res.plosive - base.plosive == 4
    np.testing.assert_allclose(_starts(res.sibilance_events), sib_times, atol=TIME_TOLERANCE_S)
    np.testing.assert_allclose(_starts(res.plosive_events), pop_times, atol=TIME_TOLERANCE_S)
    for e in res.sibilance_events:
        assert e.end_s - e.start_s == pytest.approx(SIBILANT_S, abs=0.03)
    for e in res.plosive_events:
        assert 0.005 <= e.end_s - e.start_s <= 0.08


def test_female_voice() -> None:
    layout = build(48000, voice="en+f3")
    assert (detect(layout).plosive, detect(layout).sibilance) == (0, 0)
    x, sib_times, pop_times = with_events(layout, n_sibilant=3, n_pop=4)
    res = detect(layout, x)
    assert (res.plosive, res.sibilance) == (4, 3)
    np.testing.assert_allclose(_starts(res.sibilance_events), sib_times, atol=TIME_TOLERANCE_S)
    np.testing.assert_allclose(_starts(res.plosive_events), pop_times, atol=TIME_TOLERANCE_S)


def test_8khz_has_no_sibilance_band_but_counts_plosives() -> None:
    layout = build(8000)
    x, _, pop_times = with_events(layout, n_sibilant=0, n_pop=4)
    res = detect(layout, x)
    assert res.sibilance is None and res.sibilance_events == []
    assert res.plosive == 4
    np.testing.assert_allclose(_starts(res.plosive_events), pop_times, atol=TIME_TOLERANCE_S)
    assert res.to_dict()["sibilance"] is None
    assert SpeechEventDetector(8000).sibilance_band_hz is None
    assert SpeechEventDetector(16000).sibilance_band_hz == (4000.0, 7200.0)
    assert SpeechEventDetector(48000).sibilance_band_hz == (4000.0, 10000.0)


def test_natural_sibilants_counted_only_when_too_bright() -> None:
    """espeak's own sibilants: none as synthesised; one per voiceless sibilant through a +10 dB
    shelf above 4 kHz (a very bright microphone), each inside a fricative of the original."""
    rate = 48000
    speech = _say("she sells sea shells by the sea shore", rate)
    lead = np.zeros(rate // 2, np.float32)
    x = np.concatenate([lead, speech, lead])
    mask = np.zeros(int(np.ceil(x.size / rate / MASK_HOP_S)), bool)
    mask[int(0.5 / MASK_HOP_S):int((0.5 + speech.size / rate) / MASK_HOP_S) + 1] = True
    high = scipy.signal.sosfilt(scipy.signal.butter(2, 4000, "highpass", fs=rate, output="sos"), x)
    bright = (x + (10 ** (10 / 20) - 1) * high).astype(np.float32)

    def run(sig: np.ndarray) -> tuple[SpeechEventsResult, SpeechEventDetector]:
        d = SpeechEventDetector(rate)
        d.push(sig)
        return d.result(mask, MASK_HOP_S), d

    plain, d_plain = run(x)
    assert (plain.sibilance, plain.plosive) == (0, 0)
    res, _ = run(bright)
    assert res.sibilance is not None
    assert 5 <= res.sibilance <= 7  # she, sells, sea, shells, sea, shore: 6 voiceless sibilants
    assert res.plosive == 0
    feats = d_plain._features()
    # a fricative frame of the original: 4-10 kHz holds a quarter of it or more (/s/ ~90%, /sh/
    # ~40%); espeak's vowels hold under 1%
    fricative = feats[:, 2] >= feats[:, 0] / 4
    for e in res.sibilance_events:
        frames = slice(round(e.start_s / d_plain.frame_s), round(e.end_s / d_plain.frame_s))
        assert fricative[frames].all()
        assert 0.04 <= e.end_s - e.start_s <= 0.2


def test_non_speech_gives_nothing() -> None:
    layout = build(48000, phrases=2)
    x, _, _ = with_events(layout, n_sibilant=2, n_pop=2)
    res = detect(layout, x, mask=np.zeros_like(layout.mask))
    assert res.to_dict() == {"plosive": 0, "sibilance": 0, "plosive_events": [], "sibilance_events": [],
                             "events_truncated": False}
    assert detect(layout, x, mask=np.zeros(0, bool)).plosive == 0


def test_events_outside_speech_are_not_counted() -> None:
    """Bursts in the middle of the 0.5 s pauses between phrases (beyond the mask margin)."""
    layout = build(48000)
    x = layout.x.copy()
    rate = layout.rate
    for k in range(1, 4):  # pause k ends where phrase k starts
        mid = layout.onsets_s[2 * k] - PAUSE_S / 2
        assert PAUSE_S / 2 - SIBILANT_S / 2 > MASK_MARGIN_S + MASK_HOP_S
        if k % 2:
            add_at(x, sibilant_burst(rate, layout.speech_rms * 2, seed=k), mid - SIBILANT_S / 2, rate)
        else:
            add_at(x, pop(rate, layout.speech_rms * 2), mid - POP_S / 2, rate)
    res = detect(layout, x)
    assert (res.plosive, res.sibilance) == (0, 0)


def test_late_vad_onset_within_margin() -> None:
    """A VAD that flags each phrase two 32 ms frames late still gets the pop at its onset."""
    layout = build(48000)
    x, _, pop_times = with_events(layout, n_sibilant=0, n_pop=1)  # at the first phrase's start
    late = layout.mask.copy()
    first = int(np.flatnonzero(late)[0])
    late[first:first + 2] = False
    assert 2 * MASK_HOP_S < MASK_MARGIN_S
    res = detect(layout, x, mask=late)
    assert res.plosive == 1
    assert res.plosive_events[0].start_s == pytest.approx(pop_times[0], abs=TIME_TOLERANCE_S)


@pytest.mark.parametrize("block", [1000, 4097, 1 << 19, (1 << 19) + 3])
def test_block_size_independence(block: int) -> None:
    layout = build(48000, phrases=3)
    x, _, _ = with_events(layout, n_sibilant=2, n_pop=3)
    whole = SpeechEventDetector(48000)
    whole.push(x)
    parts = SpeechEventDetector(48000)
    for i in range(0, x.size, block):
        parts.push(x[i:i + block])
    np.testing.assert_array_equal(parts._features(), whole._features())
    a, b = whole.result(layout.mask, MASK_HOP_S), parts.result(layout.mask, MASK_HOP_S)
    assert a == b and (a.plosive, a.sibilance) == (3, 2)


def test_start_s_shifts_reported_times() -> None:
    layout = build(48000, phrases=2)
    x, _, _ = with_events(layout, n_sibilant=1, n_pop=2)
    a, b = detect(layout, x), detect(layout, x, start_s=3600.0)
    assert (a.plosive, a.sibilance) == (b.plosive, b.sibilance) == (2, 1)
    for ea, eb in zip(a.plosive_events + a.sibilance_events, b.plosive_events + b.sibilance_events, strict=True):
        assert eb.start_s - ea.start_s == pytest.approx(3600.0)
        assert eb.end_s - ea.end_s == pytest.approx(3600.0)
        assert eb.level_db == ea.level_db


def test_steady_rumble_is_not_a_plosive() -> None:
    """A steady 45 + 70 Hz rumble as loud as the speech, all through: no onset rise, no pops. A
    1.5 s rumble starting abruptly at a word onset is too long to be a pop."""
    layout = build(48000)
    rate = layout.rate
    t = np.arange(layout.x.size) / rate
    rumble = np.sin(2 * np.pi * 45 * t) + 0.7 * np.sin(2 * np.pi * 70 * t + 1.0)
    rumble *= layout.speech_rms / np.sqrt(np.mean(rumble ** 2))
    assert detect(layout, (layout.x + rumble).astype(np.float32)).plosive == 0
    burst = layout.x.copy()
    i = round(layout.onsets_s[2] * rate)
    n = round(1.5 * rate)
    burst[i:i + n] += 2 * rumble[i:i + n].astype(np.float32)
    res = detect(layout, burst)
    assert res.plosive == 0
    # the pops are still found over the steady rumble, which only raises the speech LF level
    x, _, pop_times = with_events(layout, n_sibilant=0, n_pop=4)
    res = detect(layout, (x + 0.3 * rumble).astype(np.float32))
    assert res.plosive == 4


def test_steady_hiss_is_not_sibilance() -> None:
    """White hiss 20 dB under the speech, and 4 kHz high-passed hiss 10 dB under it: no events
    (below the level criterion); bursts added over the white hiss are still counted exactly."""
    layout = build(48000)
    rate = layout.rate
    rng = np.random.default_rng(7)
    white = rng.standard_normal(layout.x.size) * layout.speech_rms * 10 ** (-20 / 20)
    hp = scipy.signal.sosfilt(scipy.signal.butter(4, 4000, "highpass", fs=rate, output="sos"),
                              rng.standard_normal(layout.x.size))
    hp *= layout.speech_rms * 10 ** (-10 / 20) / np.sqrt(np.mean(hp ** 2))
    for hiss in (white, hp):
        res = detect(layout, (layout.x + hiss).astype(np.float32))
        assert (res.sibilance, res.plosive) == (0, 0)
    x, sib_times, _ = with_events(layout, n_sibilant=3, n_pop=0)
    res = detect(layout, (x + white).astype(np.float32))
    assert res.sibilance == 3
    np.testing.assert_allclose(_starts(res.sibilance_events), sib_times, atol=TIME_TOLERANCE_S)


def test_event_list_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    import audiolib.speech_events as se

    monkeypatch.setattr(se, "MAX_EVENTS", 2)
    layout = build(48000)
    x, _, _ = with_events(layout, n_sibilant=3, n_pop=4)
    res = detect(layout, x)
    assert (res.plosive, res.sibilance) == (4, 3)
    assert len(res.plosive_events) == len(res.sibilance_events) == 2
    assert res.events_truncated


def test_to_dict_shape() -> None:
    layout = build(48000, phrases=2)
    x, _, _ = with_events(layout, n_sibilant=1, n_pop=1)
    out = detect(layout, x).to_dict()
    assert set(out) == {"plosive", "sibilance", "plosive_events", "sibilance_events", "events_truncated"}
    assert (out["plosive"], out["sibilance"]) == (1, 1)
    for e in out["plosive_events"] + out["sibilance_events"]:
        assert set(e) == {"start_s", "end_s", "level_db"}
        assert e["start_s"] < e["end_s"] and -60.0 < e["level_db"] < 0.0
    assert SpeechEvent(1.0, 1.5, -20.0).to_dict() == {"start_s": 1.0, "end_s": 1.5, "level_db": -20.0}


def test_state_is_features_not_audio() -> None:
    """12 bytes per frame plus one pending chunk of at most 2^19 samples, whatever the duration."""
    rate = 48000
    d = SpeechEventDetector(rate)
    block = (0.01 * np.random.default_rng(0).standard_normal(rate * 10)).astype(np.float32)
    for _ in range(6):  # 60 s
        d.push(block)
    assert d._buf.nbytes <= 4 << 19
    feats = d._features()
    assert feats.shape == (6000, 3) and feats.dtype == np.float32
    assert sum(c.nbytes for c in d._chunks) <= 6000 * 12


def test_bad_input() -> None:
    for rate in (4000, 0, 44100.0, True, 500000):
        with pytest.raises(InvalidParameter, match="sample_rate_hz"):
            SpeechEventDetector(rate)  # type: ignore[arg-type]
    d = SpeechEventDetector(48000)
    with pytest.raises(InvalidParameter, match="1-D"):
        d.push(np.zeros((2, 100), np.float32))
    d.push(np.zeros(4800, np.float32))
    with pytest.raises(InvalidParameter, match="speech_mask"):
        d.result(np.zeros((2, 2), bool), MASK_HOP_S)
    for hop in (0, -1.0, float("nan"), "0.032"):
        with pytest.raises(InvalidParameter, match="mask_hop_s"):
            d.result(np.ones(4, bool), hop)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter, match="start_s"):
        d.result(np.ones(4, bool), MASK_HOP_S, start_s=float("inf"))
    assert d.result(np.ones(4, bool), MASK_HOP_S).plosive == 0  # digital silence
