"""Butterworth filters as second-order sections, designed and run without ``scipy.signal``.

``scipy.signal`` costs ~0.5 s to import (it pulls in ``scipy.stats``), which every ``audioqc``
process paid for the speech-event detector's three Butterworth filters: a third of the start-up of a
command on a short file. :func:`butter_sos` designs the same digital filters as
``scipy.signal.butter(N, Wn, btype, fs=fs, output="sos")`` (the analog prototype, frequency
pre-warping, the low-pass to low/high/band-pass transform and the bilinear transform, then
SciPy's "nearest" pairing of poles and zeros into sections, worst section last, gain in the
first); ``tests/test_iir.py`` checks it against SciPy coefficient for coefficient. :func:`sosfilt`
runs sections in float32 in C (``aq_sosfilt_f32`` in ``_dsp.c``), like ``scipy.signal.sosfilt``
on float32 input.
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels
from .errors import InvalidParameter

__all__ = ["butter_sos", "sosfilt"]

BTYPES = ("lowpass", "highpass", "bandpass")


def _bilinear(z: np.ndarray, p: np.ndarray, k: float, degree: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Analog zeros/poles/gain -> digital, by the bilinear transform at SciPy's normalised fs = 2."""
    fs2 = 4.0  # 2 * fs
    zd = np.concatenate(((fs2 + z) / (fs2 - z), -np.ones(degree)))
    pd = (fs2 + p) / (fs2 - p)
    kd = k * float(np.real(np.prod(fs2 - z) / np.prod(fs2 - p)))
    return zd, pd, kd


def _worst(p: np.ndarray) -> int:
    """Index of the pole closest to the unit circle (the section that goes last)."""
    return int(np.argmin(np.abs(1.0 - np.abs(p))))


def _nearest_real(z: np.ndarray, to: complex) -> int:
    return int(np.argsort(np.abs(z - to))[0])


def _sections(z: np.ndarray, p: np.ndarray, k: float) -> np.ndarray:
    """SciPy's ``zpk2sos(z, p, k, pairing="nearest")`` for real zeros (every Butterworth design)."""
    if np.any(np.abs(z.imag) > 0):
        raise InvalidParameter("butter_sos: complex zeros are not supported")
    z = z.real.astype(np.float64)
    if len(p) % 2 == 1:  # an odd order: a pole and a zero at the origin make the last pair
        p = np.concatenate((p, [0.0]))
        z = np.concatenate((z, [0.0]))
    n_sections = len(p) // 2
    tol = 100 * np.finfo(np.float64).eps
    p = p[np.lexsort((np.abs(p.imag), p.real))]
    real = np.abs(p.imag) <= tol * np.abs(p)
    # one pole of each conjugate pair (the one above the real axis), then the real poles
    p = np.concatenate((p[~real][p[~real].imag > 0], p[real].real.astype(complex)))
    z = np.sort(z)
    sos = np.zeros((n_sections, 6))
    for si in range(n_sections - 1, -1, -1):
        i = _worst(p)
        p1 = p[i]
        p = np.delete(p, i)
        p1_real = abs(p1.imag) <= tol * abs(p1)
        if p1_real:
            reals = np.flatnonzero(np.abs(p.imag) <= tol * np.maximum(np.abs(p), 1e-300))
            j = reals[_worst(p[reals])]
            p2 = p[j]
            p = np.delete(p, j)
            a = [1.0, -(p1.real + p2.real), p1.real * p2.real]
        else:
            a = [1.0, -2.0 * p1.real, abs(p1) ** 2]
        i1 = _nearest_real(z, p1)
        z1 = z[i1]
        z = np.delete(z, i1)
        i2 = _nearest_real(z, p1)
        z2 = z[i2]
        z = np.delete(z, i2)
        sos[si] = [1.0, -(z1 + z2), z1 * z2, *a]
    sos[0, :3] *= k
    return sos


def butter_sos(order: int, cutoff_hz: float | tuple[float, float], btype: str, fs: float) -> np.ndarray:
    """Digital Butterworth filter as second-order sections ``(n, 6)``, float64.

    Parameters
    ----------
    order : int
        Filter order N (a band-pass has 2N poles, as in SciPy).
    cutoff_hz : float or (float, float)
        -3 dB frequency, or the band edges for ``"bandpass"``, Hz.
    btype : str
        ``"lowpass"``, ``"highpass"`` or ``"bandpass"``.
    fs : float
        Sample rate, Hz.
    """
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise InvalidParameter(f"order={order!r}: an integer >= 1")
    if btype not in BTYPES:
        raise InvalidParameter(f"btype={btype!r}: one of {', '.join(BTYPES)}")
    edges = np.atleast_1d(np.asarray(cutoff_hz, dtype=np.float64)) / (fs / 2.0)
    if edges.size != (2 if btype == "bandpass" else 1) or not np.all((edges > 0) & (edges < 1)):
        raise InvalidParameter(f"cutoff_hz={cutoff_hz!r}: must lie strictly between 0 and fs/2 = {fs / 2:g} Hz"
                               + (" (two edges for a band-pass)" if btype == "bandpass" else ""))
    warped = 4.0 * np.tan(math.pi * edges / 2.0)  # pre-warped, at SciPy's normalised fs = 2
    m = np.arange(-order + 1, order, 2)
    p = -np.exp(1j * math.pi * m / (2 * order))  # the analog prototype (buttap): no zeros, gain 1
    z = np.zeros(0, complex)
    if btype == "lowpass":
        wo = warped[0]
        p, k, degree = wo * p, wo ** order, order
    elif btype == "highpass":
        wo = warped[0]
        k = float(np.real(1.0 / np.prod(-p)))
        p = wo / p
        z, degree = np.zeros(order, complex), 0
    else:
        wo, bw = math.sqrt(warped[0] * warped[1]), warped[1] - warped[0]
        p_lp = p * bw / 2.0
        root = np.sqrt(p_lp ** 2 - wo ** 2)
        p = np.concatenate((p_lp + root, p_lp - root))
        z, k, degree = np.zeros(order, complex), bw ** order, order
    zd, pd, kd = _bilinear(z, p, k, degree)
    return _sections(zd, pd, kd)


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """Filter float32 ``x`` (1-D) through ``sos`` (n, 6; a0 = 1) in float32, transposed direct form II.

    ``zi`` (n, 2) float32 is the sections' state, updated in place (the stream continues from it).
    """
    return _kernels.sosfilt_f32(x, sos, zi)
