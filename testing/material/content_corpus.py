"""A labelled speech/music corpus assembled from real recordings and real synthesisers.

Nothing is downloaded and no audio is committed: everything is generated on this machine into
``benchmarks/out/content_corpus/`` (git-ignored) and reused while :data:`CORPUS_VERSION` is unchanged.

Sources
-------
* recorded music: the Ogg Vorbis soundtrack of Debian's ``extremetuxracer-data``
  (``/usr/share/games/etr/music``, GPL-2+);
* rendered music: MIDI pieces written here (piano, strings, drums+bass, guitar, organ+flute,
  brass+marimba, ...) rendered by ``fluidsynth`` with the FluidR3_GM soundfont (``fluid-soundfont-gm``);
* speech: ``espeak-ng`` (several languages, voice variants and speeds), ``flite`` (kal, slt, rms, awb) and
  ``festival`` (the ked diphone voice; the HTS voice of the CMU ARCTIC ``slt`` speaker, a full-band
  statistical-parametric voice), and *recorded* speech: the prompts of Asterisk's core sounds
  (``asterisk-core-sounds-{en,fr,it,ru}-g722``: one professional speaker per language, 16 kHz
  G.722, so nothing above 7-8 kHz), read as ``testing/material/denoise.py`` reads them;
* mixtures: speech over a music bed 10-20 dB below it;
* negatives: white/pink/brown noise, mains hum (50/60 Hz with harmonics) over noise, room tone,
  digital silence and near-silence.

Splits
------
``train`` and ``test`` use disjoint *source recordings*: different Ogg files, different MIDI pieces
(different seeds, tempi, keys, partly different instruments), different synthetic voices and texts,
different noise seeds. Each split is a list of clips (16 kHz mono float WAV) built by concatenating
parts whose labels are known, every part a whole number of :data:`SEGMENT_S` seconds, so the label
of every segment is exact: ``speech`` (bool), ``music`` (bool) and ``kind`` (music, speech,
mixture, noise, silence).

Usage: ``python -m testing.material.content_corpus`` builds (or reuses) both splits and prints their sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from testing.material.media import REAL_MUSIC_DIR, run_ffmpeg

CORPUS_VERSION = 3  # 3: festival and recorded (Asterisk) voices; 30 clips per split
SR_HZ = 16000
SEGMENT_S = 1.0  # label granularity; must equal audiolib.music.SEGMENT_S
# with the other generated media (gitignored)
OUT_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "out" / "content_corpus"
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"  # Debian package fluid-soundfont-gm

KINDS = ("music", "speech", "mixture", "noise", "silence")

# Disjoint source recordings per split (split by file, never by segment of a file).
ETR_FILES = {
    "train": ["calmrace-ks.ogg", "credits1-cp.ogg", "race1-jt.ogg", "lostrace-ks.ogg", "options1-jt.ogg"],
    "test": ["freezingpoint.ogg", "spunkyrace-ks.ogg", "start1-jt.ogg", "raceintro-ks.ogg", "wonrace1-jt.ogg"],
}

# (name, style, seed, tempo_bpm, key_midi, programs)
MIDI_PIECES = {
    "train": [
        ("piano_a", "piano", 11, 96, 60, [0]),
        ("strings_a", "strings", 12, 70, 62, [48, 40]),
        ("drumsbass_a", "drumsbass", 13, 118, 40, [33]),
        ("guitar_a", "guitar", 14, 100, 57, [24]),
        ("organ_flute_a", "lead", 15, 84, 65, [19, 73]),
        ("epiano_a", "piano", 16, 132, 55, [4]),
    ],
    "test": [
        ("piano_b", "piano", 21, 76, 63, [1]),
        ("strings_b", "strings", 22, 60, 58, [49, 42]),
        ("drumsbass_b", "drumsbass", 23, 96, 43, [34]),
        ("guitar_b", "guitar", 24, 124, 52, [25, 27]),
        ("brass_marimba_b", "lead", 25, 108, 60, [61, 12]),
        ("harp_choir_b", "strings", 26, 66, 64, [52, 46]),
    ],
}

TEXTS = {
    "train": {
        "en": [
            "The committee will meet again on Thursday to discuss the budget for next year.",
            "Please remember to close the windows before you leave the building tonight.",
            "Scientists have discovered a new species of frog in the rainforest.",
            "The train to the airport leaves every twenty minutes from platform four.",
            "She opened the letter slowly, afraid of what it might say.",
            "Our quarterly results show steady growth in every region except the north.",
            "If the weather holds, we will go sailing on the lake this weekend.",
            "He spent most of the afternoon repairing the old wooden fence.",
        ],
        "de": [
            "Der Zug nach Berlin hat heute leider eine Verspaetung von zwanzig Minuten.",
            "Wir treffen uns morgen frueh vor dem Rathaus und gehen dann gemeinsam los.",
            "Das Wetter soll am Wochenende sonnig und warm werden.",
        ],
        "es": [
            "El museo abre a las diez de la manana y cierra a las seis de la tarde.",
            "Mi hermana vive en una pequena ciudad cerca de la costa.",
        ],
    },
    "test": {
        "en": [
            "The library will extend its opening hours during the examination period.",
            "A strong wind knocked over several trees along the main road last night.",
            "Could you send me the report by the end of the day, please?",
            "The orchestra rehearsed for three hours before the evening concert.",
            "Farmers in the valley are hoping for rain after a long dry summer.",
            "The new software update fixes a number of security problems.",
            "My grandfather told stories about the harbour when he was a boy.",
        ],
        "fr": [
            "Le marche du samedi attire beaucoup de monde depuis le printemps.",
            "Nous avons visite le chateau et ses jardins pendant les vacances.",
            "Il faut reserver une table si vous voulez diner au restaurant ce soir.",
        ],
        "it": [
            "La biblioteca comunale rimane chiusa il lunedi mattina.",
            "Domani andiamo al mare con i nostri amici di Roma.",
        ],
    },
}

# (engine, voice, language of the text, speed): espeak speed is words per minute; flite's and
# festival's a duration stretch factor. Engine "recorded": an Asterisk voice (its own prompts, no text).
VOICES = {
    "train": [
        ("espeak", "en", "en", 160), ("espeak", "en+m3", "en", 140), ("espeak", "en-gb-scotland+f2", "en", 175),
        ("espeak", "de", "de", 150), ("espeak", "es+f3", "es", 165),
        ("flite", "kal", "en", 1.0), ("flite", "slt", "en", 1.1), ("flite", "kal16", "en", 1.05),
        ("espeak", "en+f5", "en", 135), ("espeak", "en-us+f3", "en", 150),
        ("festival", "ked_diphone", "en", 1.0),
        ("recorded", "en_US_f_Allison", "en", 1.0), ("recorded", "ru_RU_f_IvrvoiceRU", "ru", 1.0),
    ],
    "test": [
        ("espeak", "en-us+f2", "en", 155), ("espeak", "en-gb-x-rp+m1", "en", 185), ("espeak", "en+f4", "en", 130),
        ("espeak", "fr", "fr", 160), ("espeak", "it+m2", "it", 150),
        ("flite", "rms", "en", 1.0), ("flite", "awb", "en", 0.9),
        ("festival", "cmu_us_slt_arctic_hts", "en", 1.0),
        ("recorded", "fr_CA_f_June", "fr", 1.0), ("recorded", "it_IT_m_Carlo", "it", 1.0),
    ],
}
#: Recorded speech per recorded voice, s (prompts in a seeded order; each split has its own voices).
RECORDED_SECONDS = 90.0

N_CLIPS = {"train": 30, "test": 30}
PART_KINDS = ("music", "speech", "mixture", "noise", "silence")
PART_WEIGHTS = (0.30, 0.25, 0.25, 0.13, 0.07)
PART_SECONDS = {"music": (6, 15), "speech": (6, 15), "mixture": (8, 15), "noise": (4, 8), "silence": (2, 4)}
SPLIT_SEED = {"train": 1000, "test": 2000}
ACTIVE_FLOOR_DBFS = -50.0  # a music excerpt second below this RMS is not used as a "music" segment


# --------------------------------------------------------------------------------------------
# MIDI (Standard MIDI File format 0, written byte by byte)

def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: list[tuple[int, bytes]], tempo_bpm: float, ppq: int = 480) -> None:
    """Write a format-0 SMF. ``events``: (absolute tick, MIDI message bytes)."""
    track = bytearray()
    track += _vlq(0) + b"\xff\x51\x03" + int(60e6 / tempo_bpm).to_bytes(3, "big")
    last = 0
    # note-offs (0x80) before note-ons at the same tick
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80)):
        track += _vlq(tick - last) + msg
        last = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, ppq) + b"MTrk" + struct.pack(">I", len(track)) + track)


def _note(events: list, ch: int, start: int, dur: int, pitch: int, vel: int | np.integer) -> None:
    pitch = int(np.clip(pitch, 0, 127))
    events.append((start, bytes([0x90 | ch, pitch, int(np.clip(vel, 1, 127))])))
    events.append((start + max(dur, 1), bytes([0x80 | ch, pitch, 0])))


MAJOR = [0, 2, 4, 5, 7, 9, 11]
PROGRESSIONS = [[0, 5, 3, 4], [0, 3, 4, 0], [5, 3, 0, 4], [0, 4, 5, 3], [1, 4, 0, 5]]


def compose(  # noqa: C901 (one branch per musical style and part)
    style: str, seed: int, key: int, programs: list[int], bars: int = 24, ppq: int = 480
) -> list:
    """A short seeded piece in a given style: chord progression in a major key plus a part per style."""
    rng = np.random.default_rng(seed)
    prog = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    bar = 4 * ppq
    ev: list[tuple[int, bytes]] = []
    for ch, p in enumerate(programs):
        ev.append((0, bytes([0xC0 | ch, p])))

    def chord(degree: int) -> list[int]:
        return [key + MAJOR[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]

    for b in range(bars):
        t0 = b * bar
        ch_notes = chord(prog[b % len(prog)])
        if style == "piano":
            # left hand: arpeggio in eighths; right hand: melody in quarters/eighths
            for i in range(8):
                _note(ev, 0, t0 + i * ppq // 2, ppq // 2, ch_notes[i % 3] - 12 + 12 * (i // 6),
                      70 + rng.integers(-8, 8))
            t = 0
            while t < bar:
                d = int(rng.choice([ppq // 2, ppq, ppq * 2]))
                pitch = ch_notes[rng.integers(3)] + 12 + int(rng.choice([0, 0, 2, -1]))
                _note(ev, 0, t0 + t, d, pitch, 85 + rng.integers(-10, 10))
                t += d
        elif style == "strings":
            for n in ch_notes:
                _note(ev, 0, t0, bar - 10, n - 12, 70)
            t = 0
            while t < bar:
                d = int(rng.choice([ppq, ppq * 2, ppq * 4]))
                _note(ev, 1, t0 + t, d - 10, ch_notes[rng.integers(3)] + 12, 80 + rng.integers(-10, 10))
                t += d
        elif style == "drumsbass":
            for i in range(8):  # drums on channel 9 (GM percussion)
                tt = t0 + i * ppq // 2
                _note(ev, 9, tt, ppq // 4, 42, 70 + rng.integers(-10, 10))  # closed hi-hat
                if i in (0, 4) or (i == 5 and rng.random() < 0.4):
                    _note(ev, 9, tt, ppq // 4, 36, 110)  # kick
                if i in (2, 6):
                    _note(ev, 9, tt, ppq // 4, 38, 100)  # snare
            root = 36 + (ch_notes[0] - 36) % 12  # bass register: C2-B2, 65-123 Hz
            for i, (off, d) in enumerate([(0, ppq), (ppq, ppq // 2), (3 * ppq // 2, ppq // 2), (2 * ppq, ppq),
                                          (3 * ppq, ppq)]):
                _note(ev, 0, t0 + off, d - 20, root + (7 if i == 3 else 0), 95)
        elif style == "guitar":
            pattern = [0, 2, 3, 5, 6] if rng.random() < 0.5 else [0, 1, 2, 4, 6, 7]
            voicing = [ch_notes[0] - 12, ch_notes[2] - 12, ch_notes[0], ch_notes[1], ch_notes[2]]
            for i in pattern:
                for k, n in enumerate(voicing):  # strum: strings 15 ticks apart
                    _note(ev, 0, t0 + i * ppq // 2 + 15 * k, ppq // 2 + ppq // 4, n, 75 + rng.integers(-8, 8))
            if len(programs) > 1:
                for i in range(4):
                    _note(ev, 1, t0 + i * ppq, ppq - 30, ch_notes[rng.integers(3)] + 12, 70)
        elif style == "lead":
            for n in ch_notes:
                _note(ev, 0, t0, bar // 2 - 10, n - 12, 60)
                _note(ev, 0, t0 + bar // 2, bar // 2 - 10, n - 12, 55)
            t = 0
            while t < bar:
                d = int(rng.choice([ppq // 2, ppq, ppq, ppq * 3 // 2]))
                _note(ev, 1, t0 + t, d - 20, ch_notes[rng.integers(3)] + 12 + int(rng.choice([0, 2, 0, 5])),
                      90 + rng.integers(-10, 10))
                t += d
        else:
            raise ValueError(style)
    return ev


# --------------------------------------------------------------------------------------------
# sources

@dataclass(frozen=True)
class Source:
    name: str
    kind: str  # "music" or "speech"
    audio: np.ndarray  # float32 mono at SR_HZ


def _read_16k_mono(path: str | Path) -> np.ndarray:
    """Decode any file to 16 kHz mono float32 with the ffmpeg CLI."""
    raw = Path(str(path) + ".16k.f32")
    if not raw.exists():
        run_ffmpeg("-i", str(path), "-ac", "1", "-ar", str(SR_HZ), "-f", "f32le", str(raw))
    return np.fromfile(raw, dtype=np.float32)


#: the command and Debian package of each speech synthesiser :func:`tts` drives
TTS_ENGINES = {"flite": ("flite", "flite"), "espeak": ("espeak-ng", "espeak-ng"), "festival": ("text2wave", "festival")}


def tts(engine: str, voice: str, text: str, wav: str | Path) -> np.ndarray:
    """``text`` read by ``voice`` of flite, espeak-ng or festival into ``wav`` (unless it exists
    already), returned as 16 kHz mono float32 (ffmpeg's resampler)."""
    wav = Path(wav)
    if not wav.exists():
        exe, package = TTS_ENGINES[engine]
        _need(exe, package)
        if engine == "flite":
            cmd = ["flite", "-voice", voice, "-t", text, "-o", str(wav)]
        elif engine == "espeak":
            cmd = ["espeak-ng", "-v", voice, "-w", str(wav), text]
        else:
            txt = wav.with_suffix(".txt")
            txt.write_text(text)
            cmd = ["text2wave", "-eval", f"(voice_{voice})", str(txt), "-o", str(wav)]
        subprocess.run(cmd, check=True, capture_output=True)
    return _read_16k_mono(wav)


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise FileNotFoundError(f"{tool} not found: scripts/setup.sh installs the Debian package {package}")
    return path


def render_midi(name: str, style: str, seed: int, tempo: float, key: int, programs: list[int],
                dest: Path) -> np.ndarray:
    _need("fluidsynth", "fluidsynth")
    if not os.path.exists(SOUNDFONT):
        raise FileNotFoundError(f"{SOUNDFONT}: scripts/setup.sh installs the Debian package fluid-soundfont-gm")
    wav = dest / f"{name}_v{CORPUS_VERSION}.wav"
    if not wav.exists():
        mid = dest / f"{name}_v{CORPUS_VERSION}.mid"
        write_midi(mid, compose(style, seed, key, programs), tempo)
        subprocess.run(["fluidsynth", "-ni", "-g", "0.6", "-F", str(wav), "-r", str(SR_HZ), SOUNDFONT, str(mid)],
                       check=True, capture_output=True)
    return _read_16k_mono(wav)


def _trim(y: np.ndarray, floor_dbfs: float = -50.0) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``floor_dbfs`` (10 ms frames)."""
    n = 160
    frames = y[: y.size // n * n].reshape(-1, n)
    rms_db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    on = np.flatnonzero(rms_db > floor_dbfs)
    if on.size == 0:
        return y[:0]
    return y[on[0] * n: (on[-1] + 1) * n]


#: festival voices and the Debian packages that install them (scripts/setup.sh).
FESTIVAL_PACKAGES = {"ked_diphone": "festvox-kdlpc16k", "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}


def synth_speech(engine: str, voice: str, text: str, speed: float, wav: Path) -> np.ndarray:
    """One utterance from espeak-ng, flite or festival (``text2wave``), 16 kHz mono, trimmed."""
    if not wav.exists():
        if engine == "espeak":
            _need("espeak-ng", "espeak-ng")
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(int(speed)), "-w", str(wav), text],
                           check=True, capture_output=True)
        elif engine == "festival":
            _need("text2wave", "festival")
            txt = wav.with_suffix(".txt")
            txt.write_text(text)
            done = subprocess.run(["text2wave", "-eval", f"(voice_{voice})", "-eval",
                                   f"(Parameter.set 'Duration_Stretch {speed})", str(txt), "-o", str(wav)],
                                  capture_output=True, text=True)
            if done.returncode != 0 or not wav.exists():
                raise FileNotFoundError(
                    f"festival voice {voice} failed ({done.stderr.strip()[-200:]}): "
                    f"scripts/setup.sh installs {FESTIVAL_PACKAGES.get(voice, 'its festvox package')}"
                )
        else:
            _need("flite", "flite")
            subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={speed}", "-t", text,
                            "-o", str(wav)], check=True, capture_output=True)
    return _trim(_read_16k_mono(wav))


def recorded_speech(voice: str, seconds: float, seed: int) -> list[np.ndarray]:
    """Utterances of an Asterisk voice: its prompts of 1.5 s or longer, trimmed to their speech
    (testing/material/denoise.py), 16 kHz mono, in a seeded order, about ``seconds`` in all."""
    from testing.material import denoise as denoise_material

    files = list(denoise_material._speech_prompts(voice))  # FileNotFoundError names the apt package
    rng = np.random.default_rng(seed)
    rng.shuffle(files)
    utts, total = [], 0
    for f in files:
        y = np.array(denoise_material._prompt(f), dtype=np.float32)
        utts.append(y)
        total += y.size
        if total >= seconds * SR_HZ:
            break
    return utts


def load_sources(split: str, dest: Path) -> tuple[list[Source], list[Source]]:
    """Music and speech sources of one split (rendered/synthesised on first use)."""
    dest.mkdir(parents=True, exist_ok=True)
    music: list[Source] = []
    for f in ETR_FILES[split]:
        path = os.path.join(REAL_MUSIC_DIR, f)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: scripts/setup.sh installs the Debian package extremetuxracer-data")
        music.append(Source(f"etr:{f}", "music", _read_16k_mono_cached(path, dest)))
    for name, style, seed, tempo, key, programs in MIDI_PIECES[split]:
        music.append(Source(f"midi:{name}", "music", render_midi(name, style, seed, tempo, key, programs, dest)))
    speech: list[Source] = []
    for vi, (engine, voice, lang, speed) in enumerate(VOICES[split]):
        if engine == "recorded":
            utts = recorded_speech(voice, RECORDED_SECONDS, seed=vi)
            speech.append(Source(f"{engine}:{voice}", "speech", _join_utterances(utts, seed=vi)))
            continue
        texts = TEXTS[split][lang]
        utts = []
        for ti, text in enumerate(texts):
            wav = dest / f"speech_{engine}_{voice.replace('+', '_')}_{ti}.wav"
            utts.append(synth_speech(engine, voice, text, speed, wav))
        speech.append(Source(f"{engine}:{voice}", "speech", _join_utterances(utts, seed=vi)))
    return music, speech


def _read_16k_mono_cached(path: str, dest: Path) -> np.ndarray:
    raw = dest / (os.path.basename(path) + ".16k.f32")
    if not raw.exists():
        run_ffmpeg("-i", path, "-ac", "1", "-ar", str(SR_HZ), "-f", "f32le", str(raw))
    return np.fromfile(raw, dtype=np.float32)


def _join_utterances(utts: list[np.ndarray], seed: int) -> np.ndarray:
    """Utterances in sequence with natural short pauses (0.15-0.45 s) between them."""
    rng = np.random.default_rng(seed)
    parts = []
    for u in utts:
        parts.append(u)
        parts.append(np.zeros(int(rng.uniform(0.15, 0.45) * SR_HZ), np.float32))
    return np.concatenate(parts)


# --------------------------------------------------------------------------------------------
# parts and clips

def _rms_db(y: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(y.astype(np.float64) ** 2) + 1e-20))


def _at_level(y: np.ndarray, dbfs: float) -> np.ndarray:
    return (y * 10 ** ((dbfs - _rms_db(y)) / 20)).astype(np.float32)


def _excerpt(src: np.ndarray, seconds: int, rng: np.random.Generator, active: bool) -> np.ndarray:
    """``seconds`` of ``src`` from a random offset (looping if needed); with ``active``, prefer an
    offset where every second is above :data:`ACTIVE_FLOOR_DBFS`."""
    n = seconds * SR_HZ
    while src.size < n + SR_HZ:
        src = np.concatenate([src, src])
    best = None
    for _ in range(20):
        off = int(rng.integers(0, src.size - n))
        y = src[off: off + n]
        if not active:
            return y.copy()
        quiet = sum(_rms_db(y[k * SR_HZ:(k + 1) * SR_HZ]) < ACTIVE_FLOOR_DBFS for k in range(seconds))
        if quiet == 0:
            return y.copy()
        if best is None or quiet < best[0]:
            best = (quiet, y)
    assert best is not None  # 20 draws, each either returned or kept
    return best[1].copy()


def _pink(n: int, rng: np.random.Generator, exponent: float = 1.0) -> np.ndarray:
    """1/f^exponent noise by spectral shaping (exponent 1: pink, 2: brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    spec /= f ** (exponent / 2)
    y = np.fft.irfft(spec, n)
    return (y / (np.std(y) + 1e-12)).astype(np.float32)


def make_noise(seconds: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    n = seconds * SR_HZ
    t = np.arange(n) / SR_HZ
    kind = rng.choice(["white", "pink", "brown", "hum", "room"])
    if kind == "white":
        y = _at_level(rng.standard_normal(n).astype(np.float32), rng.uniform(-45, -20))
    elif kind == "pink":
        y = _at_level(_pink(n, rng), rng.uniform(-45, -20))
    elif kind == "brown":
        y = _at_level(_pink(n, rng, 2.0), rng.uniform(-40, -20))
    elif kind == "hum":  # mains hum with odd/even harmonics over pink noise
        f0 = float(rng.choice([50.0, 60.0]))
        hum = sum(((0.6 ** k) * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 6.3)) for k in range(8)),
                  np.zeros(n))
        y = _at_level(hum.astype(np.float32), rng.uniform(-40, -25)) + _at_level(_pink(n, rng), rng.uniform(-55, -35))
    else:  # room tone: low, low-passed noise with a little ventilation hum
        from scipy.signal import butter, sosfilt
        sos = butter(2, 400, fs=SR_HZ, output="sos")
        y = _at_level(sosfilt(sos, rng.standard_normal(n)).astype(np.float32), rng.uniform(-60, -45))
        y += _at_level(np.sin(2 * np.pi * rng.uniform(90, 130) * t).astype(np.float32), rng.uniform(-70, -60))
    return y.astype(np.float32), f"noise:{kind}"


def make_part(kind: str, seconds: int, music: list[Source], speech: list[Source], rng: np.random.Generator):
    """One part: audio, per-segment (speech, music) labels and a source description."""
    if kind == "music":
        src = music[rng.integers(len(music))]
        y = _at_level(_excerpt(src.audio, seconds, rng, True), rng.uniform(-30, -16))
        return y, (False, True), src.name
    if kind == "speech":
        src = speech[rng.integers(len(speech))]
        y = _at_level(_excerpt(src.audio, seconds, rng, True), rng.uniform(-30, -18))
        return y, (True, False), src.name
    if kind == "mixture":
        s = speech[rng.integers(len(speech))]
        m = music[rng.integers(len(music))]
        level = rng.uniform(-28, -18)
        bed_db = rng.uniform(-20, -10)
        y = _at_level(_excerpt(s.audio, seconds, rng, True), level)
        y += _at_level(_excerpt(m.audio, seconds, rng, True), level + bed_db)
        return y, (True, True), f"{s.name} | {m.name} @{bed_db:.0f}dB"
    if kind == "noise":
        y, name = make_noise(seconds, rng)
        return y, (False, False), name
    n = seconds * SR_HZ
    if rng.random() < 0.5:
        return np.zeros(n, np.float32), (False, False), "silence:digital"
    return _at_level(rng.standard_normal(n).astype(np.float32), rng.uniform(-80, -65)), (False, False), "silence:near"


def build_split(split: str, out_dir: Path = OUT_DIR, force: bool = False) -> list[dict]:
    """Build (or reuse) one split; returns its manifest: one dict per clip with ``path`` and
    ``segments`` (list of {speech, music, kind, source})."""
    split_dir = out_dir / split
    manifest_path = split_dir / "manifest.json"
    if manifest_path.exists() and not force:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("version") == CORPUS_VERSION and all(Path(c["path"]).exists() for c in manifest["clips"]):
            return manifest["clips"]
    music, speech = load_sources(split, out_dir / "sources" / split)
    rng = np.random.default_rng(SPLIT_SEED[split])
    clips = []
    split_dir.mkdir(parents=True, exist_ok=True)
    for ci in range(N_CLIPS[split]):
        parts, segs = [], []
        total = 0
        while total < 50:
            kind = str(rng.choice(PART_KINDS, p=PART_WEIGHTS))
            lo, hi = PART_SECONDS[kind]
            sec = int(rng.integers(lo, hi + 1))
            y, (is_speech, is_music), name = make_part(kind, sec, music, speech, rng)
            parts.append(y)
            segs += [{"speech": is_speech, "music": is_music, "kind": kind, "source": name}] * sec
            total += sec
        y = np.concatenate(parts)
        peak = float(np.max(np.abs(y)))
        if peak > 0.99:
            y *= 0.99 / peak
        path = split_dir / f"clip{ci:02d}.wav"
        sf.write(str(path), y, SR_HZ, subtype="FLOAT")
        clips.append({"path": str(path), "segments": segs})
    manifest_path.write_text(json.dumps({"version": CORPUS_VERSION, "sample_rate_hz": SR_HZ,
                                         "segment_s": SEGMENT_S, "clips": clips}, indent=1))
    return clips


def sources_of(clips: list[dict]) -> set[str]:
    out: set[str] = set()
    for c in clips:
        for s in c["segments"]:
            if s["kind"] in ("music", "speech", "mixture"):
                out.update(p.strip() for p in s["source"].split("@")[0].split(" | "))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild the clips even if cached")
    args = ap.parse_args(argv)
    for split in ("train", "test"):
        clips = build_split(split, force=args.force)
        segs = [s for c in clips for s in c["segments"]]
        counts = {k: sum(s["kind"] == k for s in segs) for k in KINDS}
        print(f"{split}: {len(clips)} clips, {len(segs)} segments {counts}, "
              f"{len(sources_of(clips))} music/speech source recordings")
    tr, te = sources_of(build_split("train")), sources_of(build_split("test"))
    print("sources shared by train and test:", sorted(tr & te) or "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
