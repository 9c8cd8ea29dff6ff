"""Per-sample inner loops of the streaming analyzers (C, in ``_dsp.c``, called through ctypes).

Plain C rather than numba: numba's import alone costs ~150 MB of resident memory and ~1.5 s of
start-up per process, which broke the 200 MB budget of a loudness run (measured with
benchmarks/bench_loudness.py); the C loops are as fast and cost nothing to load.
"""

from __future__ import annotations

import ctypes
import importlib.util
from typing import Any

import numpy as np

from .errors import AudioQCError

_spec = importlib.util.find_spec("audiolib._dsp")
if _spec is None or _spec.origin is None:  # pragma: no cover - a broken install
    raise ImportError("audiolib._dsp is not built: run `pip install -e .` (scripts/setup.sh)")
_lib = ctypes.CDLL(_spec.origin)

_f32 = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
_f64 = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64 = ctypes.c_int64

_lib.aq_kweighted_power.argtypes = [_f32, _i64, _i64, _i64, _f64, _f64, _f64, _f64]
_lib.aq_kweighted_power.restype = ctypes.c_int
_lib.aq_true_peak_max.argtypes = [_f32, _i64, _f32, _i64, _i64, ctypes.c_float, ctypes.c_float, ctypes.c_float,
                                  ctypes.c_float, _i64]
_lib.aq_true_peak_max.restype = ctypes.c_float
_lib.aq_transitions.argtypes = [_f32, _i64, _i64, _i64, ctypes.c_float, ctypes.c_int,
                                ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int8),
                                np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")]
_lib.aq_transitions.restype = _i64
_lib.aq_long_runs.argtypes = [_f32, _i64, _i64, _i64, ctypes.c_float, ctypes.c_int, _i64,
                              ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int8),
                              np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")]
_lib.aq_long_runs.restype = _i64
_lib.aq_sosfilt_f32.argtypes = [_f32, _i64, _f32, _i64, _f32, _f32]
_lib.aq_sosfilt_f32.restype = None
_lib.aq_sliding_sum_max2.argtypes = [_f64, _i64, _f64, _i64, _f64, _f64, _i64, _f64]
_lib.aq_sliding_sum_max2.restype = None
_lib.aq_tp_intervals.argtypes = [_f32, _i64, _i64, _i64, _i64, _f32, _i64, _i64, ctypes.c_float, ctypes.c_float,
                                 _i64, ctypes.c_int, _f32]
_lib.aq_tp_intervals.restype = None
_lib.aq_limiter_envelope.argtypes = [_f64, _i64, _i64, ctypes.c_double, ctypes.c_double, ctypes.c_double, _f64,
                                     np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")]
_lib.aq_limiter_envelope.restype = ctypes.c_double
_lib.aq_limiter_smooth.argtypes = [_f64, _i64, _f32, _i64, _f64, _f32]
_lib.aq_limiter_smooth.restype = None
_lib.aq_cpu_features.argtypes = []
_lib.aq_cpu_features.restype = _i64


def kweighted_power(x: np.ndarray, sos: np.ndarray, state: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """K-weight every channel and return the channel-weighted power per sample.

    Parameters
    ----------
    x : (channels, n) float32, C-contiguous
    sos : (2, 6) float64
        The two K-weighting biquads ``[b0, b1, b2, 1, a1, a2]``.
    state : (channels, 2, 2) float64
        Transposed direct form II state of each biquad, updated in place.
    weights : (channels,) float64
        BS.1770-4 channel weights G_i.

    Returns
    -------
    (n,) float64
        ``sum_i G_i * y_i[n]**2`` (BS.1770-4 eq. 2 before the mean).
    """
    nch, n = x.shape
    out = np.empty(n, np.float64)
    if _lib.aq_kweighted_power(x, nch, n, n, sos, state, weights, out) != 0:
        raise MemoryError("K-weighting kernel could not allocate its channel table")
    return out


def true_peak_max(x: np.ndarray, taps: np.ndarray, bound_gain: float, floor: float, chunk: int,
                  bound_lin: float | None = None, bound_d2: float | None = None) -> float:
    """Largest absolute interpolated sample over ``x``, at least ``floor``.

    Parameters
    ----------
    x : (n,) float32, C-contiguous
        Samples, the first ``ntap - 1`` being history.
    taps : (phases, ntap) float32, C-contiguous, ntap = 12 or 24
        Correlation taps: phase ``p`` of window ``i`` is ``sum_k taps[p, k] * x[i + k]``.
    bound_gain : float
        At least the largest ``sum |taps[p]|``.
    floor : float
        Linear; the result is at least this (the running maximum).
    chunk : int
        Windows per chunk; a chunk whose bound cannot beat the running maximum is not interpolated.
    bound_lin, bound_d2 : float, optional
        The second-difference bound of :class:`audiolib.loudness.TruePeakTaps` (no value over a
        chunk exceeds ``bound_lin * P + bound_d2 * D``); without them only ``bound_gain * P`` is
        used.

    Returns
    -------
    float
        ``max(floor, max over windows and phases of |value|)``, exactly: skipping never changes it.
    """
    nph, ntap = taps.shape
    if ntap not in (12, 24):
        raise AudioQCError(f"true-peak kernel takes 12 or 24 taps per phase, not {ntap}")
    if bound_lin is None or bound_d2 is None:
        bound_lin = bound_d2 = 1e30  # finite (0 * inf would be NaN): the gain bound decides alone
    result = _lib.aq_true_peak_max(x, x.shape[0], taps, nph, ntap, bound_gain, bound_lin, bound_d2, floor, chunk)
    if result < 0:
        raise MemoryError("true-peak kernel could not allocate its chunk table")
    return float(result)


def sosfilt_f32(x: np.ndarray, sos: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """``x`` (1-D float32) through the second-order sections ``sos`` (n, 6; a0 = 1) in float32;
    ``zi`` (n, 2) float32, C-contiguous, is the state, updated in place."""
    if zi.dtype != np.float32 or not zi.flags.c_contiguous or zi.shape != (sos.shape[0], 2):
        raise AudioQCError(f"sosfilt state must be C-contiguous float32 of shape ({sos.shape[0]}, 2)")
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _lib.aq_sosfilt_f32(x, x.shape[0], np.ascontiguousarray(sos, dtype=np.float32), sos.shape[0], zi, out)
    return out


#: Values in a :func:`sliding_sum_max2` window's state.
SLIDING_STATE = 5


def sliding_sum_max2(power: np.ndarray, ring_a: np.ndarray, state_a: np.ndarray, ring_b: np.ndarray,
                     state_b: np.ndarray) -> None:
    """Track the largest sum of ``len(ring_a)`` and of ``len(ring_b)`` consecutive values of a
    stream, at every sample, in one pass (both windows share the samples seen).

    Each ``state`` is ``[position, samples seen, running sum, best sum, sum since position 0]``
    (float64, :data:`SLIDING_STATE` values, zeros at the start), updated in place.
    """
    if state_a.shape != (SLIDING_STATE,) or state_b.shape != (SLIDING_STATE,):
        raise AudioQCError(f"sliding-window state must hold {SLIDING_STATE} values")
    _lib.aq_sliding_sum_max2(power, power.shape[0], ring_a, ring_a.shape[0], state_a, ring_b, ring_b.shape[0], state_b)


#: Conditions of :func:`transitions`.
ALL_BELOW, MEAN_BELOW, AT_OR_ABOVE, ABOVE = 0, 1, 2, 3


def transitions(x: np.ndarray, threshold: float, mode: int) -> tuple[np.ndarray, bool, bool]:
    """Where a per-sample threshold condition changes along a block, in one pass.

    Parameters
    ----------
    x : (channels, n) float32, C-contiguous (one row for modes AT_OR_ABOVE and ABOVE)
    threshold : float
    mode : int
        ``ALL_BELOW`` (every channel ``|x| < t``), ``MEAN_BELOW`` (``|mean| < t``),
        ``AT_OR_ABOVE`` (``|x| >= t``) or ``ABOVE`` (``|x| > t``).

    Returns
    -------
    edges : int64 array
        Indices where the condition differs from the previous sample's.
    first, last : bool
        The condition at the first and the last sample.
    """
    return _edges(_lib.aq_transitions, x, threshold, mode)


def _edges(kernel: Any, x: np.ndarray, threshold: float, mode: int, *extra: int) -> tuple[np.ndarray, bool, bool]:
    """Call an edge kernel of ``_dsp.c`` (``aq_transitions``, ``aq_long_runs``): the condition's
    change indices and its value at the block's first and last sample."""
    nch, n = x.shape
    out = np.empty(max(n, 1), np.int64)
    first = ctypes.c_int8(0)
    last = ctypes.c_int8(0)
    count = kernel(x, nch, n, n, threshold, mode, *extra, ctypes.byref(first), ctypes.byref(last), out)
    return out[:count], bool(first.value), bool(last.value)


def long_runs(x: np.ndarray, threshold: float, mode: int, min_len: int) -> tuple[np.ndarray, bool, bool]:
    """:func:`transitions` for the runs of samples meeting the condition that are at least
    ``min_len`` samples long or touch the block's first or last sample; every sample of a shorter
    run inside the block counts as not meeting it. What a :class:`audiolib.runs.RunTracker` with
    ``min_samples = min_len`` keeps is the same; the kernel probes every ``min_len``-th sample
    instead of scanning them all where no long run is (see ``aq_long_runs`` in ``_dsp.c``)."""
    return _edges(_lib.aq_long_runs, x, threshold, mode, int(min_len))


def tp_intervals(x: np.ndarray, start: int, n: int, taps: np.ndarray, bound_gain: float, thresh: float,
                 chunk: int, out: np.ndarray | None = None) -> np.ndarray:
    """Linked interval peaks of the limiter's detector (``aq_tp_intervals`` in ``_dsp.c``).

    Parameters
    ----------
    x : (channels, m) float32, C-contiguous
        The buffer; columns ``start .. start + n`` are read.
    taps : (phases, ntap) float32, C-contiguous, ntap = 12 or 24
        Interpolator phases as correlation taps: phase ``p`` of window ``i`` is
        ``sum_k taps[p, k] * x[i + k]``, a value between ``x[i + h - 1]`` and ``x[i + h]``,
        ``h = ntap // 2``.
    bound_gain : float
        At least ``max(1, max over phases of sum |taps|)``.
    thresh : float
        Linear level; intervals that cannot exceed it may be returned as 0.
    out : (n - ntap + 1,) float32, optional
        Accumulate into it (the larger of its values and the new ones) instead of a new array.

    Returns
    -------
    (n - ntap + 1,) float32
        ``out[i]``: the largest absolute value over every channel of ``x[i + h - 1]``,
        ``x[i + h]`` and the interpolated values between them (exact wherever it exceeds ``thresh``).
    """
    nch, stride = x.shape
    ntap = taps.shape[1]
    if not (x.dtype == np.float32 and x.flags.c_contiguous and 0 <= start and start + n <= stride):
        raise AudioQCError("tp_intervals needs a C-contiguous float32 buffer holding columns start..start+n")
    if ntap not in (12, 24) or taps.dtype != np.float32 or not taps.flags.c_contiguous:
        raise AudioQCError(f"tp_intervals takes C-contiguous float32 taps of 12 or 24 per phase, not {taps.shape}")
    size = max(n - ntap + 1, 0)
    accumulate = out is not None
    if out is None:
        out = np.empty(size, np.float32)
    elif out.shape != (size,) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise AudioQCError(f"tp_intervals accumulates into C-contiguous float32 of shape ({size},)")
    if size:
        _lib.aq_tp_intervals(x, nch, stride, start, n, taps, taps.shape[0], ntap, bound_gain, thresh, chunk,
                             int(accumulate), out)
    return out


def limiter_envelope(r: np.ndarray, length: int, coef: float, env_prev: float, snap: float) -> tuple[np.ndarray, float]:
    """Hold-then-release envelope of the limiter (``aq_limiter_envelope`` in ``_dsp.c``): for each
    ``r`` position from ``length - 1`` on (the first ``length - 1`` values are history), the minimum
    of the last ``length`` values of ``r``, followed by an exponential release
    (``env = min(m, m + coef * (env_prev - m))``, 1.0 within ``snap`` of 1). Returns the envelope
    (``r.size - length + 1`` values) and its last value."""
    r = np.ascontiguousarray(r, dtype=np.float64)
    n_out = r.size - length + 1
    env = np.empty(max(n_out, 0), np.float64)
    if n_out <= 0:
        return env, env_prev
    ws = np.empty(length, np.int64)
    last = _lib.aq_limiter_envelope(r, r.size, length, coef, env_prev, snap, env, ws)
    return env, float(last)


def limiter_smooth(env: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``1 - sum_k weights[k] * (1 - env[j + k])`` for each full window of ``env``
    (``aq_limiter_smooth`` in ``_dsp.c``; the sum in float32); exactly 1.0 where the whole window
    is 1."""
    env = np.ascontiguousarray(env, dtype=np.float64)
    length = weights.shape[0]
    out = np.empty(max(env.size - length + 1, 0), np.float64)
    if out.size:
        ws = np.empty(env.size + 64, np.float32)  # AQ_SMOOTH_TILE of zero padding
        _lib.aq_limiter_smooth(env, env.size, np.ascontiguousarray(weights, dtype=np.float32), length, out, ws)
    return out
