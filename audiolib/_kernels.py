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
_lib.aq_true_peak_max.argtypes = [_f32, _i64, _f32, _i64, ctypes.c_float, ctypes.c_float, _i64]
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


def true_peak_max(x: np.ndarray, taps: np.ndarray, bound_gain: float, floor: float, chunk: int) -> float:
    """Largest absolute interpolated sample of the 4-phase, 12-tap interpolator ``taps`` over
    ``x`` (float32, the first 11 samples being history), at least ``floor``."""
    nph, ntap = taps.shape
    if ntap != 12:
        raise AudioQCError(f"true-peak kernel takes 12 taps per phase, not {ntap}")
    result = _lib.aq_true_peak_max(x, x.shape[0], taps, nph, bound_gain, floor, chunk)
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


def sliding_sum_max2(power: np.ndarray, ring_a: np.ndarray, state_a: np.ndarray, ring_b: np.ndarray,
                     state_b: np.ndarray) -> None:
    """Track the largest sum of ``len(ring_a)`` and of ``len(ring_b)`` consecutive values of a
    stream, at every sample, in one pass (both windows share the samples seen).

    Each ``state`` is ``[position, samples seen, running sum, best sum]`` (float64), updated in place.
    """
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
