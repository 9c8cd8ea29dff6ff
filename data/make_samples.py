"""Generate the bundled sample media (deterministic; nothing is downloaded).

    python data/make_samples.py data/samples

Writes short files that exercise the decoder and the analyses: a calibrated tone, a synthetic
speech-like signal, a stereo music-like signal, a 5.1 programme, and lossy encodings (AAC in M4A,
MP3, Opus). Encoding is done by ``audiolib.io.write`` (PyAV).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from audiolib.io import write

SR = 48000


def tone(seconds: float, freq: float, dbfs: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return 10 ** (dbfs / 20) * np.sin(2 * np.pi * freq * t)


def speech_like(seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Voiced syllables: a glottal pulse train (pitch 90-180 Hz, gliding) through three formant
    resonators, with 4 Hz syllable envelopes and pauses; plus a little breath noise."""
    from scipy.signal import lfilter

    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t) + 15 * np.sin(2 * np.pi * 3.1 * t)
    phase = np.cumsum(f0) / sr
    pulses = np.diff(np.floor(phase), prepend=0.0)
    src = np.convolve(pulses, np.hanning(int(0.004 * sr)), mode="same") + 0.02 * rng.standard_normal(n)
    out = np.zeros(n)
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (570, 840, 2410), (530, 1840, 2480)]
    seg = int(0.25 * sr)
    for start in range(0, n, seg):
        f1, f2, f3 = vowels[rng.integers(len(vowels))]
        x = src[start:start + seg]
        y = np.zeros_like(x)
        for fc, bw, g in ((f1, 80, 1.0), (f2, 120, 0.5), (f3, 160, 0.25)):
            r = np.exp(-np.pi * bw / sr)
            a = [1, -2 * r * np.cos(2 * np.pi * fc / sr), r * r]
            y += g * lfilter([1 - r], a, x)
        env = np.sin(np.pi * np.arange(len(x)) / len(x)) ** 2
        if rng.random() < 0.2:  # a pause
            env *= 0.0
        out[start:start + seg] = y * env
    out -= out.mean()  # the pulse train is one-sided: speech carries no DC
    out /= np.max(np.abs(out)) + 1e-12
    return 10 ** (-6 / 20) * out


def music_like(seconds: float, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """Stereo: a chord progression of harmonic tones with decays, bass, and a hi-hat pattern,
    panned differently left and right."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    left = np.zeros(n)
    right = np.zeros(n)
    chords = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    beat = int(0.5 * sr)
    for b, start in enumerate(range(0, n, beat * 2)):
        chord = chords[b % len(chords)]
        seg = slice(start, min(n, start + beat * 2))
        tt = t[seg] - t[start]
        env = np.exp(-tt * 1.5)
        for i, f in enumerate(chord):
            note = sum((0.5 ** h) * np.sin(2 * np.pi * f * (h + 1) * tt) for h in range(4)) * env
            pan = (i + 1) / (len(chord) + 1)
            left[seg] += (1 - pan) * note
            right[seg] += pan * note
        bass = np.sin(2 * np.pi * chord[0] / 2 * tt) * env
        left[seg] += 0.6 * bass
        right[seg] += 0.6 * bass
    hat = rng.standard_normal(n) * np.exp(-((t % 0.25) * 60))
    left += 0.08 * hat
    right += 0.05 * hat
    y = np.stack([left, right])
    return 10 ** (-3 / 20) * y / np.max(np.abs(y))


def main(dest: str) -> int:
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261123)
    t1k = tone(10.0, 1000.0, -23.0)
    write(out / "tone_1k_-23dBFS_stereo.wav", np.stack([t1k, t1k]), SR, codec="pcm_s16le",
          layout="stereo", sample_fmt="s16")
    speech = speech_like(12.0, rng)
    write(out / "speech_like_mono_24bit.flac", speech[np.newaxis, :], SR, codec="flac",
          layout="mono", sample_fmt="s32")
    music = music_like(12.0, rng, 44100)
    write(out / "music_like_stereo_44k.wav", music, 44100, codec="pcm_s16le", layout="stereo", sample_fmt="s16")
    # 5.1(side): L/R music, C speech, SL/SR ambience, LFE 50 Hz.
    m48 = music_like(8.0, rng)
    s48 = speech_like(8.0, rng)
    amb = 0.05 * rng.standard_normal((2, m48.shape[1]))
    lfe = tone(8.0, 50.0, -12.0)
    surround = np.stack([m48[0], m48[1], s48, lfe, amb[0], amb[1]])
    write(out / "surround_5.1.wav", surround, SR, codec="pcm_s24le", layout="5.1(side)", sample_fmt="s32")
    # Lossy encodings of a speech-over-music mix.
    mix = 0.5 * music_like(10.0, rng) + speech_like(10.0, rng)
    write(out / "mix_stereo.m4a", mix, SR, codec="aac", layout="stereo", sample_fmt="fltp", bit_rate=128000)
    write(out / "mix_stereo.mp3", mix, SR, codec="libmp3lame", layout="stereo", sample_fmt="fltp",
          bit_rate=128000)
    write(out / "speech_like_mono.opus", speech[np.newaxis, :], SR, codec="libopus", layout="mono",
          sample_fmt="flt", bit_rate=32000, container_format="ogg")
    # Faults to find: 1 s of digital silence at both ends, and a passage driven into clipping.
    faulty = speech_like(10.0, rng)
    faulty[int(4 * SR):int(6 * SR)] *= 4.0
    faulty = np.concatenate([np.zeros(SR), np.clip(faulty, -1.0, 1.0), np.zeros(SR)])
    write(out / "faulty_speech_clipped_gaps.wav", np.stack([faulty, faulty]), SR, codec="pcm_s16le",
          layout="stereo", sample_fmt="s16")
    for p in sorted(out.iterdir()):
        print(f"{p}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "data/samples"))
