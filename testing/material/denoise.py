"""Test material and metrics for the speech denoiser benchmark.

Everything is generated (seeded, deterministic for given package versions) or comes from Debian
packages; nothing is downloaded. The Debian packages it reads (for scripts/setup.sh to install):
``asterisk-core-sounds-en-g722`` (the target speech), ``asterisk-core-sounds-fr-g722``,
``-it-g722`` and ``-ru-g722`` (babble talkers), ``flite`` and ``espeak-ng`` (synthetic speech),
``extremetuxracer-data`` (the recorded ``rustle`` noise).

Speech
------
``clean_speech("recorded", ...)``
    Real recorded speech: the prompts of Asterisk's US English core sounds, all spoken by one
    professional voice (Allison Smith; CC-BY-SA 3.0, see /usr/share/doc/asterisk-core-sounds-en-
    g722/copyright), as Debian ships them: 16 kHz G.722, studio-quiet (floor about -80 dBFS).
    Prompts of 1.5 s or more (shorter ones include the beeps and tones) in a seeded order, each
    trimmed to its speech (20 ms frames above -50 dBFS, 50 ms kept either side), with seeded
    pauses of digital silence between them, upsampled with soxr (HQ). **Above 8 kHz it is
    empty at any output rate** (G.722 is wideband speech), whatever a denoiser does there.
``clean_speech("tts", ...)``
    Synthetic speech: flite's ``slt`` and ``rms`` voices in turn (flite sounds more natural than
    espeak-ng), speaking Harvard sentences (IEEE 1969, public domain), at flite's native 16 kHz,
    resampled to the asked rate the same way (so also empty above 8 kHz).

Both are set to an active speech level of ``level_dbfs`` (default -26 dBFS) over the samples
:func:`speech_activity` marks.

Noise
-----
``white``, ``pink``
    :func:`testing.material.media.coloured_noise`.
``babble``
    Seven talkers, none of them a target voice: three real recorded ones (Asterisk's Canadian
    French June Wallack, CC-BY-SA 3.0; Italian Carlo Flora, CC-BY 3.0; the Russian IVR voice,
    CC-BY 3.0) and four synthetic (flite ``awb`` and ``kal16``, espeak-ng ``en-us+m3`` and
    ``en-gb+f4``, with texts the targets never say). Each talker is a seeded sequence of its
    prompts or sentences with short pauses (0.1-0.4 s), circularly shifted by a seeded offset,
    set to the same active level; they are summed. Speech-like, but not the target.
``rustle``
    Real recorded non-speech noise: the six looping "slide" effects (grass, ice, leaves, mud,
    rock, snow) of Debian's ``extremetuxracer-data`` (GPL-2+), 44.1 kHz, downmixed, resampled,
    concatenated in a seeded order with 50 ms crossfades and repeated to length.

Mixing
------
:func:`mix` sets the noise to ``snr_db`` below the clean speech *on active speech*:
``10 log10(sum(clean^2) / sum(noise^2))`` over the samples :func:`speech_activity` marks (an
energy detector on the clean reference, which has no noise, so energy suffices: 20 ms frames
within :data:`ACTIVE_RANGE_DB` of the 99th-percentile frame level). Both are then scaled
together if the mix would peak above :data:`MAX_PEAK` (the SNR does not change).

Metrics
-------
See :func:`si_sdr`, :func:`snr_db`, :func:`snr_gain`, :func:`seg_snr_db` and
:func:`dnsmos_ovrl_bak`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache

import numpy as np

from testing.material.media import coloured_noise

SPEECH_DIR = "/usr/share/asterisk/sounds"
#: The target voice of ``clean_speech("recorded")`` (apt asterisk-core-sounds-en-g722).
TARGET_VOICE = "en_US_f_Allison"
#: Recorded babble talkers (apt asterisk-core-sounds-{fr,it,ru}-g722). Not es: that is Allison too.
BABBLE_VOICES = ("fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU")
APT_PACKAGES = {"en_US_f_Allison": "asterisk-core-sounds-en-g722", "fr_CA_f_June": "asterisk-core-sounds-fr-g722",
                "it_IT_m_Carlo": "asterisk-core-sounds-it-g722", "ru_RU_f_IvrvoiceRU": "asterisk-core-sounds-ru-g722"}
PROMPT_RATE = 16000
#: Prompts shorter than this are left out (the beeps and tones are 0.2-0.4 s).
MIN_PROMPT_S = 1.5
#: flite voices of the synthetic target, and the synthetic babble talkers (engine, voice).
TTS_VOICES = ("slt", "rms")
BABBLE_TTS = (("flite", "awb"), ("flite", "kal16"), ("espeak", "en-us+m3"), ("espeak", "en-gb+f4"))
RUSTLE_DIR = "/usr/share/games/etr/sounds"  # apt extremetuxracer-data (GPL-2+)
RUSTLE_FILES = ("grass_slide.wav", "ice_slide.wav", "leaves_slide.wav", "mud_slide.wav", "rock_slide.wav",
                "snow_slide.wav")
NOISE_KINDS = ("white", "pink", "babble", "rustle")

#: Harvard sentences (IEEE Recommended Practice for Speech Quality Measurements, 1969): the
#: synthetic target's texts.
TARGET_TEXTS = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
)
#: Harvard sentences the babble talkers say (none of the target's).
BABBLE_TEXTS = (
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
    "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.",
    "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.",
    "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.",
    "The colt reared and threw the tall rider.",
)

#: Speech activity: 20 ms frames within this many dB of the 99th-percentile frame level.
ACTIVE_FRAME_S = 0.02
ACTIVE_RANGE_DB = 40.0
#: Default active speech level of clean_speech (dBFS).
SPEECH_LEVEL_DBFS = -26.0
#: mix() scales clean and noise together so that the noisy signal peaks at most here.
MAX_PEAK = 0.99
#: Segmental SNR: frame length and the per-frame clamp (dB).
SEG_FRAME_S = 0.02
SEG_SNR_RANGE_DB = (-10.0, 35.0)


# ---------------------------------------------------------------------------------------------
# decoding and synthesis


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import soxr

    y = np.asarray(y, dtype=np.float32)
    return y if sr_in == sr_out else soxr.resample(y, sr_in, sr_out, quality="HQ").astype(np.float32)


def _decode_mono(path: str) -> tuple[np.ndarray, int]:
    """A file decoded with audiolib.io (PyAV), channels averaged: (float32 samples, rate)."""
    from audiolib import io

    with io.stream(path) as s:
        blocks = list(s)
        rate = s.sample_rate
    y = np.concatenate(blocks, axis=1) if blocks else np.zeros((1, 0), np.float32)
    return y.mean(axis=0).astype(np.float32), rate


@lru_cache(maxsize=8)
def prompt_files(voice: str) -> tuple[str, ...]:
    """The prompts (top-level ``*.g722`` files, sorted) of an Asterisk voice; FileNotFoundError
    naming the apt package when it is not installed."""
    files = sorted(f for f in glob.glob(os.path.join(SPEECH_DIR, voice, "*.g722")) if os.path.getsize(f) > 0)
    if not files:
        raise FileNotFoundError(f"{SPEECH_DIR}/{voice}: install the Debian package {APT_PACKAGES.get(voice, '?')}")
    return tuple(files)


def _load_prompt(path: str) -> np.ndarray:
    """One prompt at 16 kHz, trimmed to its speech (see the module docstring)."""
    y, rate = _decode_mono(path)
    if rate != PROMPT_RATE:
        y = _resample(y, rate, PROMPT_RATE)
    return _trim(y, PROMPT_RATE)


@lru_cache(maxsize=256)  # ~40 MB at most; all prompts of the four voices would be ~300 MB
def _prompt(path: str) -> np.ndarray:
    """:func:`_load_prompt`, cached, read-only."""
    y = _load_prompt(path)
    y.setflags(write=False)
    return y


def _trim(y: np.ndarray, sr: int, floor_dbfs: float = -50.0, keep_s: float = 0.05) -> np.ndarray:
    hop = int(ACTIVE_FRAME_S * sr)
    n = y.size // hop
    if n == 0:
        return y
    lv = 10 * np.log10(np.mean(y[:n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1) + 1e-20)
    on = np.flatnonzero(lv > floor_dbfs)
    if on.size == 0:
        return y[:0]
    keep = int(keep_s * sr)
    return y[max(0, on[0] * hop - keep):min(y.size, (on[-1] + 1) * hop + keep)].copy()


@lru_cache(maxsize=8)
def _speech_prompts(voice: str) -> tuple[str, ...]:
    """The prompts of ``voice`` long enough to be speech (:data:`MIN_PROMPT_S`, after trimming)."""
    return tuple(f for f in prompt_files(voice) if _load_prompt(f).size >= MIN_PROMPT_S * PROMPT_RATE)


@lru_cache(maxsize=512)
def _tts(engine: str, voice: str, text: str) -> tuple[np.ndarray, int]:
    """One sentence from flite or espeak-ng at its native rate (flite 16 kHz, espeak-ng
    22.05 kHz), trimmed like the prompts; read-only."""
    exe = {"flite": "flite", "espeak": "espeak-ng"}[engine]
    if not shutil.which(exe):
        raise FileNotFoundError(f"{exe} makes the synthetic speech: scripts/setup.sh installs it (apt {exe})")
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "s.wav")
        cmd = (["flite", "-voice", voice, "-t", text, "-o", wav] if engine == "flite"
               else ["espeak-ng", "-v", voice, "-w", wav, text])
        subprocess.run(cmd, check=True, capture_output=True)
        y, rate = _decode_mono(wav)
    y = _trim(y, rate)
    y.setflags(write=False)
    return y, rate


def _sequence(pieces, n: int, sr: int, rng: np.random.Generator, pause_s: tuple[float, float]) -> np.ndarray:
    """Pieces (callables returning (samples, rate), drawn in turn) with seeded pauses between them,
    resampled to ``sr``, until ``n`` samples; cut to ``n`` with a 10 ms fade-out."""
    out: list[np.ndarray] = []
    total = 0
    i = 0
    while total < n:
        y, rate = pieces(i)
        y = _resample(y, rate, sr)
        pause = np.zeros(int(rng.uniform(*pause_s) * sr), np.float32)
        out += [y, pause]
        total += y.size + pause.size
        i += 1
    y = np.concatenate(out)[:n].astype(np.float32)
    fade = min(n, int(0.01 * sr))
    y[n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return y


def _set_active_level(y: np.ndarray, sr: int, level_dbfs: float) -> np.ndarray:
    act = speech_activity(y, sr)
    p = np.mean(y[act].astype(np.float64) ** 2) if act.any() else np.mean(y.astype(np.float64) ** 2)
    return (y * (10 ** (level_dbfs / 20) / np.sqrt(max(p, 1e-20)))).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# speech and noise


def clean_speech(kind: str, seconds: float, sr: int = 48000, seed: int = 0, *,
                 level_dbfs: float = SPEECH_LEVEL_DBFS) -> np.ndarray:
    """Mono float32 clean speech, ``seconds`` long at ``sr``: ``"recorded"`` (Asterisk's Allison
    prompts) or ``"tts"`` (flite), with pauses of 0.3-0.9 s, active level ``level_dbfs``;
    deterministic for a ``seed``. Empty above 8 kHz (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    if kind == "recorded":
        files = _speech_prompts(TARGET_VOICE)
        order = rng.permutation(len(files))
        y = _sequence(lambda i: (_prompt(files[order[i % len(files)]]), PROMPT_RATE), n, sr, rng, (0.3, 0.9))
    elif kind == "tts":
        order = rng.permutation(len(TARGET_TEXTS))
        y = _sequence(lambda i: _tts("flite", TTS_VOICES[i % len(TTS_VOICES)], TARGET_TEXTS[order[i % len(order)]]),
                      n, sr, rng, (0.3, 0.9))
    else:
        raise ValueError(f"kind={kind!r}: 'recorded' or 'tts'")
    return _set_active_level(y, sr, level_dbfs)


def babble(n: int, sr: int = 48000, seed: int = 0) -> np.ndarray:
    """Mono float32 babble of seven talkers (see the module docstring), RMS 0.1; deterministic."""
    rng = np.random.default_rng(seed)
    talkers: list[np.ndarray] = []
    for voice in BABBLE_VOICES:
        files = _speech_prompts(voice)
        order = rng.permutation(len(files))
        talkers.append(_sequence(lambda i, f=files, o=order: (_prompt(f[o[i % len(f)]]), PROMPT_RATE),
                                 n, sr, rng, (0.1, 0.4)))
    for engine, voice in BABBLE_TTS:
        order = rng.permutation(len(BABBLE_TEXTS))
        talkers.append(_sequence(lambda i, e=engine, v=voice, o=order: _tts(e, v, BABBLE_TEXTS[o[i % len(o)]]),
                                 n, sr, rng, (0.1, 0.4)))
    mixed = np.zeros(n, np.float64)
    for t in talkers:
        mixed += np.roll(_set_active_level(t, sr, -30.0), int(rng.integers(n)))
    return (mixed * (0.1 / np.sqrt(np.mean(mixed ** 2)))).astype(np.float32)


def rustle(n: int, sr: int = 48000, seed: int = 0) -> np.ndarray:
    """Mono float32 recorded non-speech noise (the extremetuxracer-data slide sounds), RMS 0.1."""
    paths = [os.path.join(RUSTLE_DIR, f) for f in RUSTLE_FILES]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: install the Debian package extremetuxracer-data")
    rng = np.random.default_rng(seed)
    clips = []
    for p in paths:
        y, rate = _decode_mono(p)
        y = _resample(y, rate, sr).astype(np.float64)
        clips.append(y / np.sqrt(np.mean(y ** 2)))
    fade = int(0.05 * sr)
    ramp = np.linspace(0.0, 1.0, fade)
    out = np.zeros(0)
    while out.size < n + fade:
        for k in rng.permutation(len(clips)):
            c = clips[k]
            if out.size < fade:
                out = c.copy()
            else:
                head = out[-fade:] * (1 - ramp) + c[:fade] * ramp
                out = np.concatenate([out[:-fade], head, c[fade:]])
    out = out[:n]
    return (out * (0.1 / np.sqrt(np.mean(out ** 2)))).astype(np.float32)


def noise(kind: str, n: int, sr: int = 48000, seed: int = 0) -> np.ndarray:
    """Mono float32 noise of :data:`NOISE_KINDS`, ``n`` samples at ``sr``; deterministic."""
    if kind in ("white", "pink"):
        y = coloured_noise(kind, n, np.random.default_rng(seed))
        return (y * (0.1 / np.sqrt(np.mean(y ** 2)))).astype(np.float32)
    if kind == "babble":
        return babble(n, sr, seed)
    if kind == "rustle":
        return rustle(n, sr, seed)
    raise ValueError(f"kind={kind!r}: one of {', '.join(NOISE_KINDS)}")


# ---------------------------------------------------------------------------------------------
# mixing


def speech_activity(clean: np.ndarray, sr: int) -> np.ndarray:
    """Per-sample bool mask of active speech in a *clean* signal: the 20 ms frames whose mean
    power is within :data:`ACTIVE_RANGE_DB` of the 99th-percentile frame power (and not digital
    silence); the tail shorter than a frame takes the last frame's verdict."""
    y = np.asarray(clean, dtype=np.float64).ravel()
    hop = max(1, int(round(ACTIVE_FRAME_S * sr)))
    n = y.size // hop
    if n == 0:
        return np.zeros(y.size, bool)
    lv = 10 * np.log10(np.mean(y[:n * hop].reshape(n, hop) ** 2, axis=1) + 1e-30)
    active = (lv >= np.percentile(lv, 99) - ACTIVE_RANGE_DB) & (lv > -200)
    return np.concatenate([np.repeat(active, hop), np.full(y.size - n * hop, active[-1])])


def mix(clean: np.ndarray, noise: np.ndarray, snr_db: float,  # noqa: F811 (shadows noise())
        sr: int = 48000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(noisy, clean_scaled, noise_scaled)``, float32, with ``noisy = clean_scaled +
    noise_scaled`` and the noise ``snr_db`` below the speech on the active-speech samples of
    ``clean`` (:func:`speech_activity`); both scaled together if the mix would peak above
    :data:`MAX_PEAK`. ``noise`` is cut or tiled to ``clean``'s length."""
    clean = np.asarray(clean, dtype=np.float64)
    nz = np.resize(np.asarray(noise, dtype=np.float64), clean.shape)
    act = speech_activity(clean, sr)
    if not act.any():
        raise ValueError("clean has no active speech: the SNR is undefined")
    ps, pn = np.mean(clean[act] ** 2), np.mean(nz[act] ** 2)
    nz *= np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    noisy = clean + nz
    peak = np.max(np.abs(noisy))
    g = MAX_PEAK / peak if peak > MAX_PEAK else 1.0
    return (noisy * g).astype(np.float32), (clean * g).astype(np.float32), (nz * g).astype(np.float32)


def active_snr_db(clean: np.ndarray, noise: np.ndarray, sr: int = 48000) -> float:  # noqa: F811
    """The SNR :func:`mix` sets: over the active-speech samples of ``clean``."""
    clean = np.asarray(clean, dtype=np.float64)
    nz = np.asarray(noise, dtype=np.float64)
    act = speech_activity(clean, sr)
    return float(10 * np.log10(np.sum(clean[act] ** 2) / np.sum(nz[act] ** 2)))


# ---------------------------------------------------------------------------------------------
# metrics


def _flat(est: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est = np.asarray(est, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    if est.size != ref.size:
        raise ValueError(f"est has {est.size} samples, ref {ref.size}: align and cut them first")
    return est, ref


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (dB) of ``est`` against ``ref``.

    Le Roux, Wisdom, Erdogan & Hershey, "SDR – half-baked or well done?", ICASSP 2019, eq. (5):
    both zero-mean, ``e_target = (<est, ref> / ||ref||^2) ref``, ``e_res = est - e_target``,
    ``SI-SDR = 10 log10(||e_target||^2 / ||e_res||^2)``. Scaling ``est`` does not change it, so a
    denoiser that changes the level is not penalised for that (DFN3 can). Sample-aligned inputs of
    equal shape ((n,) or (channels, n): all samples pooled)."""
    est, ref = _flat(est, ref)
    est = est - est.mean()
    ref = ref - ref.mean()
    alpha = np.dot(est, ref) / max(np.dot(ref, ref), 1e-30)
    target = alpha * ref
    return float(10 * np.log10(max(np.sum(target ** 2), 1e-30) / max(np.sum((est - target) ** 2), 1e-30)))


def snr_db(est: np.ndarray, ref: np.ndarray) -> float:
    """Plain SNR (dB) of ``est`` against the clean ``ref``: ``10 log10(||ref||^2 / ||est - ref||^2)``
    (not scale-invariant: a level change counts as error). For the noisy input this is its SNR
    over the whole signal (pauses included; :func:`mix` sets it on active speech)."""
    est, ref = _flat(est, ref)
    return float(10 * np.log10(max(np.sum(ref ** 2), 1e-30) / max(np.sum((est - ref) ** 2), 1e-30)))


def snr_gain(out: np.ndarray, noisy: np.ndarray, ref: np.ndarray) -> float:
    """SNR improvement (dB): ``snr_db(out, ref) - snr_db(noisy, ref)``."""
    return snr_db(out, ref) - snr_db(noisy, ref)


def seg_snr_db(est: np.ndarray, ref: np.ndarray, sr: int) -> float:
    """Segmental SNR (dB): the mean over the active-speech 20 ms frames of ``ref``
    (:func:`speech_activity`) of each frame's SNR, clamped to -10..35 dB (Quackenbush, Barnwell &
    Clements, *Objective Measures of Speech Quality*, 1988; Hansen & Pellom, ICSLP 1998)."""
    est, ref = _flat(est, ref)
    hop = int(round(SEG_FRAME_S * sr))
    n = ref.size // hop
    r = ref[:n * hop].reshape(n, hop)
    e = est[:n * hop].reshape(n, hop)
    act = speech_activity(ref, sr)[:n * hop].reshape(n, hop).all(axis=1)
    if not act.any():
        return float("nan")
    snr = 10 * np.log10(np.maximum(np.sum(r ** 2, axis=1), 1e-30) / np.maximum(np.sum((e - r) ** 2, axis=1), 1e-30))
    return float(np.mean(np.clip(snr[act], *SEG_SNR_RANGE_DB)))


def dnsmos_ovrl_bak(y: np.ndarray, sr: int, model: str = "float") -> tuple[float, float, float]:
    """DNSMOS P.835 ``(OVRL, BAK, SIG)`` MOS (1-5) of a signal, averaged over its 9.01 s windows.

    As ``audiolib.perceptual`` does it: channels averaged, resampled to 16 kHz with
    :func:`audiolib.speech.resampler` (soxr HQ, streaming), cut into consecutive windows of
    ``DNSMOS_WINDOW_SAMPLES`` from the first sample, a last partial window of at least
    ``MIN_LAST_WINDOW_S`` repeated to full length (``np.resize``) and weighted by its real
    duration, scored by :func:`audiolib.perceptual.dnsmos_p835`. Unlike the analyzer, every
    window is scored (no Silero VAD gate: the material is speech by construction).
    ``model="float"`` (default: the published model, as speechmos ships it, for numbers
    comparable with the literature) or ``"int8"`` (the analyzer's default, faster)."""
    from audiolib.perceptual import DNSMOS_WINDOW_SAMPLES, MIN_LAST_WINDOW_S, dnsmos_p835
    from audiolib.speech import INPUT_RATE_HZ, resampler

    y = np.asarray(y, dtype=np.float32)
    mono = np.ascontiguousarray(y.mean(axis=0) if y.ndim == 2 else y, dtype=np.float32)
    if sr != INPUT_RATE_HZ:
        mono = resampler(sr, INPUT_RATE_HZ).resample_chunk(mono, last=True)
    full = mono.size // DNSMOS_WINDOW_SAMPLES
    clips = [mono[i * DNSMOS_WINDOW_SAMPLES:(i + 1) * DNSMOS_WINDOW_SAMPLES] for i in range(full)]
    weights = [float(DNSMOS_WINDOW_SAMPLES)] * full
    rest = mono[full * DNSMOS_WINDOW_SAMPLES:]
    if rest.size >= MIN_LAST_WINDOW_S * INPUT_RATE_HZ:
        clips.append(np.resize(rest, DNSMOS_WINDOW_SAMPLES))
        weights.append(float(rest.size))
    if not clips:
        raise ValueError(f"{mono.size / INPUT_RATE_HZ:.2f} s: DNSMOS needs at least {MIN_LAST_WINDOW_S} s")
    sig, bak, ovrl = np.average(dnsmos_p835(np.stack(clips), model), axis=0, weights=weights)
    return float(ovrl), float(bak), float(sig)
