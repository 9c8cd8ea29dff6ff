"""9.01 s clips at 16 kHz for building and checking the int8 DNSMOS P.835 model.

Three disjoint sets, generated on the spot (nothing is downloaded, nothing is committed):

``calibration``
    what ``scripts/build_dnsmos_int8.py`` calibrates the activation ranges on;
``selection``
    what the build script's ``--explore`` compares the quantisation variants on;
``evaluation``
    what ``evaluations/eval_dnsmos_int8.py`` reports the int8 model's accuracy on.

Each set has its own synthetic voices (espeak-ng, flite), texts, noise seeds, SNRs and speech
levels, and its own recorded music (Debian's ``extremetuxracer-data`` Ogg Vorbis files, the same
split by file as ``testing/material/content_corpus.py``: the calibration set takes files from its TRAIN
side, the evaluation set from its TEST side). Per set: every voice clean, the same speech with
white and pink noise at the set's SNRs (noise power against the active speech samples, as
``tests/test_perceptual.py`` does), music excerpts and speech over a music bed.

Every file is decoded with :mod:`audiolib.io`, downmixed to mono (channel mean) and resampled to
16 kHz with :func:`audiolib.speech.resampler` (soxr ``HQ``, streaming): the analyzer's own path.
Deterministic for given espeak-ng, flite, FFmpeg (PyAV) and soxr versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from audiolib import io
from audiolib.perceptual import DNSMOS_WINDOW_SAMPLES
from audiolib.speech import INPUT_RATE_HZ, resampler
from testing.material.media import REAL_MUSIC_DIR, active_rms, with_noise

SETS = ("calibration", "selection", "evaluation")

#: (engine, voice, speed): espeak-ng speed in words per minute, flite's a duration stretch factor.
VOICES = {
    "calibration": [("espeak", "en", 160), ("espeak", "en+m3", 140), ("espeak", "en-gb-scotland+f2", 175),
                    ("espeak", "en-us+m7", 150), ("flite", "kal", 1.0), ("flite", "slt", 1.1)],
    "selection": [("espeak", "en-gb-x-gbclan+f1", 165), ("espeak", "en-029+m4", 150),
                  ("espeak", "en-us-nyc+f5", 145), ("flite", "kal16", 0.95)],
    "evaluation": [("espeak", "en-us+f2", 155), ("espeak", "en-gb-x-rp+m1", 185), ("espeak", "en+f4", 130),
                   ("espeak", "en-gb-x-gbcwmd+m2", 160), ("flite", "rms", 1.0), ("flite", "awb", 0.9)],
}

TEXTS = {
    "calibration": [
        "The committee will meet again on Thursday to discuss the budget for next year.",
        "Please remember to close the windows before you leave the building tonight.",
        "Scientists have discovered a new species of frog in the rainforest.",
        "The train to the airport leaves every twenty minutes from platform four.",
        "She opened the letter slowly, afraid of what it might say.",
        "If the weather holds, we will go sailing on the lake this weekend.",
    ],
    "selection": [
        "Every morning the baker opens his shop at half past six.",
        "The museum is closed on Mondays, but the garden stays open all week.",
        "They drove along the coast until the road turned into a narrow track.",
        "Turn the volume down a little, the neighbours are trying to sleep.",
    ],
    "evaluation": [
        "The library will extend its opening hours during the examination period.",
        "A strong wind knocked over several trees along the main road last night.",
        "Could you send me the report by the end of the day, please?",
        "The orchestra rehearsed for three hours before the evening concert.",
        "Farmers in the valley are hoping for rain after a long dry summer.",
        "My grandfather told stories about the harbour when he was a boy.",
    ],
}

#: SNRs (dB) of the noisy copies; the evaluation set has the README's 20/10/0 dB.
SNRS_DB = {"calibration": (30.0, 15.0, 5.0, -5.0), "selection": (25.0, 12.0, 3.0), "evaluation": (20.0, 10.0, 0.0)}
#: Active-speech RMS levels (dBFS) the voices are set to, cycled over the voices.
SPEECH_LEVELS_DBFS = {"calibration": (-18.0, -26.0, -34.0), "selection": (-22.0, -30.0),
                      "evaluation": (-20.0, -28.0, -36.0)}
#: Recorded music (Ogg Vorbis, extremetuxracer-data; TRAIN/TEST files of content_corpus.py).
MUSIC_FILES = {"calibration": ("calmrace-ks.ogg", "credits1-cp.ogg", "race1-jt.ogg"),
               "selection": ("options1-jt.ogg", "lostrace-ks.ogg"),
               "evaluation": ("freezingpoint.ogg", "spunkyrace-ks.ogg", "start1-jt.ogg", "wonrace1-jt.ogg")}
SEEDS = {"calibration": 100, "selection": 200, "evaluation": 300}
#: A music bed under speech sits this far (dB) below the speech (active samples).
BED_BELOW_SPEECH_DB = 15.0
#: Pause between utterances, s.
PAUSE_S = 0.35
#: Samples louder than this share of the peak are "active speech" for the level and SNR (the
#: tests' 0.01 on speech peaking at 0.5, made relative because the levels here vary).
ACTIVE_SHARE_OF_PEAK = 0.02


@dataclass(frozen=True)
class Clip:
    """One DNSMOS input: 144160 samples (9.01 s) of 16 kHz mono float32."""

    name: str
    kind: str  # speech, music, speech+music
    noise: str  # none, white, pink
    snr_db: float | None
    audio: np.ndarray


def to_16k_mono(path: str) -> np.ndarray:
    """Any file as 16 kHz mono float32: channel mean, soxr HQ streaming (the analyzer's path)."""
    parts = []
    with io.stream(path) as s:
        rs = resampler(s.sample_rate, INPUT_RATE_HZ) if s.sample_rate != INPUT_RATE_HZ else None
        for block in s:
            mono = np.ascontiguousarray(block.mean(axis=0, dtype=np.float32))
            parts.append(rs.resample_chunk(mono) if rs is not None else mono)
        if rs is not None:
            parts.append(rs.resample_chunk(np.zeros(0, np.float32), last=True))
    return np.concatenate(parts).astype(np.float32)


def synth(engine: str, voice: str, speed: float, text: str, wav: str) -> np.ndarray:
    """One utterance from espeak-ng or flite, 16 kHz mono, leading/trailing silence cut."""
    if engine == "espeak":
        tool, cmd = "espeak-ng", ["espeak-ng", "-v", voice, "-s", str(int(speed)), "-w", wav, text]
    else:
        tool, cmd = "flite", ["flite", "-voice", voice, "--setf", f"duration_stretch={speed}", "-t", text, "-o", wav]
    if not shutil.which(tool):
        raise FileNotFoundError(f"{tool} not found: scripts/setup.sh installs the Debian package {tool}")
    subprocess.run(cmd, check=True, capture_output=True)
    y = to_16k_mono(wav)
    on = np.flatnonzero(np.abs(y) > 1e-3)
    return y[on[0]:on[-1] + 1] if on.size else y


def _active_rms(y: np.ndarray) -> float:
    return active_rms(y, ACTIVE_SHARE_OF_PEAK * np.max(np.abs(y)))


def _speech_clip(engine: str, voice: str, speed: float, texts: list[str], first: int, tmp: str) -> np.ndarray:
    """Utterances (texts cycled from ``first``) with pauses until 9.01 s are filled."""
    parts, total, i = [], 0, first
    while total < DNSMOS_WINDOW_SAMPLES:
        u = synth(engine, voice, speed, texts[i % len(texts)], os.path.join(tmp, f"u{i}.wav"))
        parts += [u, np.zeros(int(PAUSE_S * INPUT_RATE_HZ), np.float32)]
        total += u.size + int(PAUSE_S * INPUT_RATE_HZ)
        i += 1
    return np.concatenate(parts)[:DNSMOS_WINDOW_SAMPLES]


def _music_excerpt(music: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 9.01 s excerpt from the louder part of a track (not its fade-in/out)."""
    n = DNSMOS_WINDOW_SAMPLES
    hop = INPUT_RATE_HZ
    if music.size < n + hop:  # a short jingle: repeated, as DNSMOS fills short clips
        music = np.resize(music, n + hop)
    starts = np.arange(0, music.size - n, hop)
    rms = np.array([np.sqrt(np.mean(music[s:s + n].astype(np.float64) ** 2)) for s in starts])
    good = starts[rms >= np.median(rms)]
    s = int(good[rng.integers(good.size)])
    return music[s:s + n].copy()


def clips(which: str) -> list[Clip]:
    """The clips of one set (see the module docstring)."""
    if which not in SETS:
        raise ValueError(f"set={which!r}: one of {', '.join(SETS)}")
    rng = np.random.default_rng(SEEDS[which])
    out: list[Clip] = []
    speech: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        for v, (engine, voice, speed) in enumerate(VOICES[which]):
            y = _speech_clip(engine, voice, speed, TEXTS[which], v, tmp)
            level = SPEECH_LEVELS_DBFS[which][v % len(SPEECH_LEVELS_DBFS[which])]
            y = (y * (10 ** (level / 20) / _active_rms(y))).astype(np.float32)
            speech.append(y)
            tag = f"{engine}:{voice}"
            out.append(Clip(f"{tag} clean", "speech", "none", None, y))
            for kind in ("white", "pink"):
                for snr in SNRS_DB[which]:
                    out.append(
                        Clip(
                            f"{tag} {kind} {snr:g} dB",
                            "speech",
                            kind,
                            snr,
                            with_noise(y, kind, snr, rng, active_above=ACTIVE_SHARE_OF_PEAK * np.max(np.abs(y))),
                        )
                    )
    for k, f in enumerate(MUSIC_FILES[which]):
        path = os.path.join(REAL_MUSIC_DIR, f)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: scripts/setup.sh installs the Debian package extremetuxracer-data")
        music = to_16k_mono(path)
        excerpt = _music_excerpt(music, rng)
        out.append(Clip(f"music {f}", "music", "none", None, excerpt))
        sp = speech[k % len(speech)]
        bed = _music_excerpt(music, rng)
        bed *= _active_rms(sp) * 10 ** (-BED_BELOW_SPEECH_DB / 20) / max(_active_rms(bed), 1e-9)
        out.append(Clip(f"speech over {f}", "speech+music", "none", None, (sp + bed).astype(np.float32)))
    return out


def alternating_runs(sessions: list[Any], clips: list[np.ndarray]) -> tuple[list[np.ndarray], list[list[float]]]:
    """Each session on each clip, the sessions in turn clip by clip (so that load from other
    processes hits them alike), after one warm-up run each: the raw outputs (n, 3) and the seconds
    of every call, per session."""
    import time

    for s in sessions:
        s.run(None, {"input_1": clips[0][np.newaxis, :]})
    raw: list[list[np.ndarray]] = [[] for _ in sessions]
    seconds: list[list[float]] = [[] for _ in sessions]
    for x in clips:
        for s, r, t in zip(sessions, raw, seconds, strict=True):
            t0 = time.perf_counter()
            r.append(s.run(None, {"input_1": x[np.newaxis, :]})[0])
            t.append(time.perf_counter() - t0)
    return [np.concatenate(r) for r in raw], seconds
