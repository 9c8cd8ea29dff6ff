"""Compiled inner loops (numba) for the per-sample work of the streaming analyzers.

Each kernel is a plain loop over samples, compiled once per machine (``cache=True`` stores the
machine code beside this file), and called once per block. They hold no state: callers pass the
filter state in and get it back.
"""

from __future__ import annotations

import numba
import numpy as np

_JIT = dict(cache=True, nogil=True)


@numba.njit(**_JIT)
def kweighted_power(x: np.ndarray, sos: np.ndarray, state: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """K-weight every channel and return the channel-weighted power per sample.

    Parameters
    ----------
    x : (channels, n) float32
        Block of samples.
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
    out = np.zeros(n, np.float64)
    for c in range(nch):
        g = weights[c]
        if g == 0.0:
            continue
        b10, b11, b12, a11, a12 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
        b20, b21, b22, a21, a22 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
        s10, s11 = state[c, 0, 0], state[c, 0, 1]
        s20, s21 = state[c, 1, 0], state[c, 1, 1]
        for i in range(n):
            v = np.float64(x[c, i])
            y1 = b10 * v + s10
            s10 = b11 * v - a11 * y1 + s11
            s11 = b12 * v - a12 * y1
            y2 = b20 * y1 + s20
            s20 = b21 * y1 - a21 * y2 + s21
            s21 = b22 * y1 - a22 * y2
            # After sound stops the state decays into subnormal numbers, which make every later
            # sample ~35x slower; below 1e-30 (-600 dB) it is exactly zero for our purposes.
            if abs(s10) + abs(s11) + abs(s20) + abs(s21) < 1e-30:
                s10 = 0.0
                s11 = 0.0
                s20 = 0.0
                s21 = 0.0
            out[i] += g * y2 * y2
        state[c, 0, 0], state[c, 0, 1] = s10, s11
        state[c, 1, 0], state[c, 1, 1] = s20, s21
    return out


@numba.njit(**_JIT)
def _phase_max(x: np.ndarray, lo: int, hi: int, taps: np.ndarray) -> float:
    """max |sum_k taps[p, k] * x[i + k]| over phases p and start positions lo <= i < hi."""
    nph = taps.shape[0]
    m = np.float32(0.0)
    for p in range(nph):
        h0, h1, h2, h3 = taps[p, 0], taps[p, 1], taps[p, 2], taps[p, 3]
        h4, h5, h6, h7 = taps[p, 4], taps[p, 5], taps[p, 6], taps[p, 7]
        h8, h9, h10, h11 = taps[p, 8], taps[p, 9], taps[p, 10], taps[p, 11]
        for i in range(lo, hi):
            acc = (x[i] * h0 + x[i + 1] * h1 + x[i + 2] * h2 + x[i + 3] * h3
                   + x[i + 4] * h4 + x[i + 5] * h5 + x[i + 6] * h6 + x[i + 7] * h7
                   + x[i + 8] * h8 + x[i + 9] * h9 + x[i + 10] * h10 + x[i + 11] * h11)
            a = abs(acc)
            if a > m:
                m = a
    return m


@numba.njit(**_JIT)
def true_peak_max(x: np.ndarray, taps: np.ndarray, bound_gain: float, floor: float, chunk: int) -> float:
    """Largest absolute interpolated sample of a 12-tap polyphase interpolator over ``x``.

    ``x`` holds 11 samples of history before the new samples. Chunks whose sample peak (with the
    11-sample margin each side) times ``bound_gain`` (max over phases of sum |taps|, so no
    interpolated value can exceed it) cannot beat ``floor`` (the running maximum) are skipped:
    exact, and most chunks of ordinary programme are never interpolated.
    """
    ntap = taps.shape[1]
    n_out = x.shape[0] - ntap + 1
    if n_out <= 0:
        return floor
    nchunks = (n_out + chunk - 1) // chunk
    peaks = np.empty(nchunks, np.float32)
    for j in range(nchunks):
        lo = j * chunk
        hi = min(lo + chunk, n_out) + ntap - 1
        m = np.float32(0.0)
        for i in range(lo, hi):
            a = abs(x[i])
            if a > m:
                m = a
        peaks[j] = m
    order = np.argsort(-peaks)
    best = floor
    for jj in range(nchunks):
        j = order[jj]
        if peaks[j] * bound_gain <= best:
            break
        lo = j * chunk
        hi = min(lo + chunk, n_out)
        m = _phase_max(x, lo, hi, taps)
        if m > best:
            best = m
    return best


@numba.njit(**_JIT)
def sliding_sum_max(power: np.ndarray, ring: np.ndarray, state: np.ndarray) -> None:
    """Track the largest sum of ``len(ring)`` consecutive values of a stream, at every sample.

    ``state`` is ``[position, samples seen, running sum, best sum]`` (float64), updated in place
    with ``ring`` (the last window of values). The running sum is recomputed exactly each time the
    ring wraps, so rounding cannot drift over hours.
    """
    w = ring.shape[0]
    pos = int(state[0])
    seen = state[1]
    s = state[2]
    best = state[3]
    for i in range(power.shape[0]):
        p = power[i]
        s += p - ring[pos]
        ring[pos] = p
        pos += 1
        if pos == w:
            pos = 0
            s = 0.0
            for j in range(w):
                s += ring[j]
        seen += 1.0
        if seen >= w and s > best:
            best = s
    state[0] = pos
    state[1] = seen
    state[2] = s
    state[3] = best
