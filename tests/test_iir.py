"""audiolib.iir (Butterworth sections designed and run without scipy.signal) against scipy.signal."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.signal

from audiolib import iir
from audiolib.errors import InvalidParameter

DESIGNS = [
    (order, cutoff, btype, fs)
    for fs in (2000, 8000, 16000, 44100, 48000, 96000)
    for order in (1, 2, 3, 4, 5, 8)
    for cutoff, btype in (
        (0.002 * fs, "lowpass"),
        (0.21 * fs, "lowpass"),
        (0.01 * fs, "highpass"),
        (0.4 * fs, "highpass"),
        ((0.08 * fs, 0.2 * fs), "bandpass"),
        ((0.003 * fs, 0.45 * fs), "bandpass"),
    )
]


@pytest.mark.parametrize("order,cutoff,btype,fs", DESIGNS)
def test_butter_sos_is_scipys_design(order, cutoff, btype, fs):
    """The same sections as scipy.signal.butter(..., output="sos"): poles, pairing, order, gain."""
    ours = iir.butter_sos(order, cutoff, btype, fs)
    theirs = scipy.signal.butter(order, cutoff, btype, fs=fs, output="sos")
    assert ours.shape == theirs.shape
    assert np.allclose(ours, theirs, rtol=1e-9, atol=1e-13)


def test_the_detector_filters_are_scipys():
    """The filters audiolib.speech_events designs, at the rates it meets."""
    for rate in (8000, 11025, 16000, 22050, 44100, 48000, 96000):
        sub = rate / max(1, round(rate / 2000))
        for args in ((2, 5.0, "lowpass", sub), (2, 20.0, "highpass", sub), (4, 150.0, "lowpass", sub)):
            assert np.allclose(
                iir.butter_sos(*args), scipy.signal.butter(*args[:3], fs=args[3], output="sos"), rtol=1e-9, atol=1e-13
            )
        if 0.45 * rate >= 7000:
            band = (4000.0, min(10000.0, 0.45 * rate))
            assert np.allclose(iir.butter_sos(2, band, "bandpass", rate),
                               scipy.signal.butter(2, band, "bandpass", fs=rate, output="sos"), rtol=1e-9, atol=1e-13)


def test_sosfilt_streams_like_scipys_float32_sosfilt():
    """Float32 filtering in blocks, the state carried over, against scipy.signal.sosfilt in one go."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(50000) * 0.3).astype(np.float32)
    for sos in (iir.butter_sos(2, (4000, 10000), "bandpass", 48000), iir.butter_sos(4, 150, "lowpass", 2000),
                iir.butter_sos(5, 300, "highpass", 16000)):  # 2 sections (the unrolled path), 2, 3
        sos32 = sos.astype(np.float32)
        want = scipy.signal.sosfilt(sos32, x.astype(np.float64))
        zi = np.zeros((sos.shape[0], 2), np.float32)
        got = np.concatenate(
            [iir.sosfilt(sos32, x[a:b], zi) for a, b in ((0, 1), (1, 777), (777, 30000), (30000, 50000))]
        )
        assert got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()


def test_bad_designs_are_refused():
    with pytest.raises(InvalidParameter, match="fs/2"):
        iir.butter_sos(2, 30000, "lowpass", 48000)
    with pytest.raises(InvalidParameter, match="two edges"):
        iir.butter_sos(2, 1000, "bandpass", 48000)
    with pytest.raises(InvalidParameter, match="order"):
        iir.butter_sos(0, 1000, "lowpass", 48000)
    with pytest.raises(InvalidParameter, match="btype"):
        iir.butter_sos(2, 1000, "notch", 48000)


def test_diagnose_does_not_import_scipy_signal():
    """What this module is for: scipy.signal's import (~0.5 s) stays out of every diagnose."""
    code = "import sys, audiolib.diagnose, audioqc.cli; print('scipy.signal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
