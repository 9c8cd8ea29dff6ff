"""The loudness meter's C kernels (audiolib/_dsp.c through audiolib/_kernels.py) against plain
numpy/scipy computations of the same quantities, over random signals cut into random blocks
(the kernels carry their state from one block to the next)."""

from __future__ import annotations

import numpy as np
import scipy.signal

from audiolib import _kernels
from audiolib.loudness import _TP_BOUND_GAIN, _TRUE_PEAK_PHASES, k_weighting_sos


def _blocks(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=12, replace=False))
    edges = [0, *cuts.tolist(), n]
    return list(zip(edges[:-1], edges[1:]))


def test_kweighted_power_is_the_two_biquads_in_float64():
    """Channel pairs run as the two lanes of a vector, an odd channel alone, an LFE (weight 0)
    skipped: each against scipy's sosfilt of the K-weighting in float64, weighted and summed."""
    rng = np.random.default_rng(1770)
    sr, n = 48000, 30000
    x = (rng.standard_normal((5, n)) * np.array([[0.3], [0.1], [0.5], [0.2], [0.05]])).astype(np.float32)
    weights = np.array([1.0, 1.0, 0.0, 1.41, 1.41])  # FL FR LFE SL SR: a pair, then the 1.41 pair
    sos = k_weighting_sos(sr)
    for nch in (5, 3):  # 5: two pairs (FL FR, SL SR); 3: one pair and the LFE; one channel below
        state = np.zeros((nch, 2, 2))
        got = np.concatenate([_kernels.kweighted_power(np.ascontiguousarray(x[:nch, a:b]), sos, state, weights[:nch])
                              for a, b in _blocks(n, rng)])
        want = sum(weights[c] * scipy.signal.sosfilt(sos, x[c].astype(np.float64)) ** 2 for c in range(nch))
        assert np.allclose(got, want, rtol=1e-9, atol=1e-15)
    state = np.zeros((1, 2, 2))
    single = _kernels.kweighted_power(np.ascontiguousarray(x[4:5]), sos, state, weights[4:5])
    assert np.allclose(single, 1.41 * scipy.signal.sosfilt(sos, x[4].astype(np.float64)) ** 2, rtol=1e-9, atol=1e-15)


def test_sliding_sum_max2_finds_the_loudest_windows_at_every_offset():
    """Both windows' largest sums against numpy's sliding sums over the whole signal."""
    rng = np.random.default_rng(3341)
    n, wa, wb = 60000, 1900, 14400
    power = rng.exponential(1.0, n) * np.repeat(rng.uniform(0.01, 1.0, n // 600), 600)  # a varying envelope
    ra, rb, sa, sb = np.zeros(wa), np.zeros(wb), np.zeros(4), np.zeros(4)
    for a, b in _blocks(n, rng):
        _kernels.sliding_sum_max2(np.ascontiguousarray(power[a:b]), ra, sa, rb, sb)
    c = np.concatenate(([0.0], np.cumsum(power)))
    assert abs(sa[3] - np.max(c[wa:] - c[:-wa])) < 1e-9 * sa[3]
    assert abs(sb[3] - np.max(c[wb:] - c[:-wb])) < 1e-9 * sb[3]
    assert sa[1] == sb[1] == n


def test_true_peak_max_is_the_largest_interpolated_sample():
    """The 4x interpolator's peak (chunks skipped where they cannot win) against every phase of
    the BS.1770-4 Annex 2 filter computed with numpy over the whole signal."""
    rng = np.random.default_rng(1771)
    taps = np.ascontiguousarray(_TRUE_PEAK_PHASES[:, ::-1], dtype=np.float32)
    for trial in range(20):
        n = int(rng.integers(20, 5000))
        x = (rng.standard_normal(n) * rng.uniform(0.01, 0.9)).astype(np.float32)
        if trial % 2:  # a loud burst somewhere: most chunks cannot beat it
            k = int(rng.integers(0, n - 11))
            x[k:k + 11] *= 8
        view = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), 12)
        want = float(np.max(np.abs(view @ taps.T.astype(np.float64))))
        got = _kernels.true_peak_max(x, taps, _TP_BOUND_GAIN, 0.0, 512)
        assert abs(got - want) <= 1e-6 * want, (trial, got, want)
        assert _kernels.true_peak_max(x, taps, _TP_BOUND_GAIN, 100.0, 512) == 100.0  # a floor above it holds


def test_meter_true_peak_is_independent_of_the_blocks():
    """LoudnessMeter's true peak over blocks of every size (shorter than the filter too, and the
    windows that straddle two blocks) equals the interpolator over the whole signal at once."""
    from audiolib.loudness import LoudnessMeter

    rng = np.random.default_rng(1772)
    x = (rng.standard_normal((2, 20000)) * 0.2).astype(np.float32)
    x[1, 9995:10005] = [0.9, -0.9] * 5  # a near-Nyquist burst: its true peak lies between samples
    taps = np.ascontiguousarray(_TRUE_PEAK_PHASES[:, ::-1])
    padded = np.concatenate((np.zeros((2, 11)), x.astype(np.float64), np.zeros((2, 11))), axis=1)
    want = max(float(np.max(np.abs(np.lib.stride_tricks.sliding_window_view(padded[c], 12) @ taps.T))) for c in range(2))
    for sizes in ([20000], [10000, 10000], [9996, 10004], [3, 5, 9995, 2, 10, 1, 9984], list(rng.integers(1, 40, 2000))):
        meter = LoudnessMeter(48000, ("FL", "FR"))
        pos = 0
        for n in sizes:
            if pos < x.shape[1]:
                meter.push(x[:, pos:pos + int(n)])
                pos += int(n)
        if pos < x.shape[1]:
            meter.push(x[:, pos:])
        got = 10 ** (meter.result().true_peak_dbtp / 20)
        assert abs(got - want) <= 1e-6 * want, (sizes[:5], got, want)
    assert want > 1.0  # the burst's peak is above its samples' 0.9


def test_the_baseline_build_computes_what_this_cpus_clone_does(tmp_path):
    """The kernels are built for x86-64 v4/v3/baseline and the loader picks one (target_clones);
    this CPU runs one of them. The same source built once for baseline x86-64 (no clones: SSE2,
    no FMA), as a CPU without AVX would run it, against the installed build on the same input."""
    import ctypes
    import shutil
    import subprocess
    import sysconfig
    from pathlib import Path

    import audiolib

    if shutil.which("gcc") is None:
        raise AssertionError("gcc is required (scripts/setup.sh installs it)")
    src = Path(audiolib.__file__).with_name("_dsp.c")
    lib_path = tmp_path / "dsp_baseline.so"
    subprocess.run(["gcc", "-O3", "-fno-math-errno", "-ffp-contract=fast", "-std=c99", "-fPIC", "-shared",
                    "-march=x86-64", "-DAQ_NO_CLONES", f"-I{sysconfig.get_paths()['include']}", str(src),
                    "-o", str(lib_path)], check=True)
    base = ctypes.CDLL(str(lib_path))
    f32 = np.ctypeslib.ndpointer(dtype=np.float32, flags="C_CONTIGUOUS")
    f64 = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
    base.aq_kweighted_power.argtypes = [f32, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, f64, f64, f64, f64]
    base.aq_true_peak_max.argtypes = [f32, ctypes.c_int64, f32, ctypes.c_int64, ctypes.c_float, ctypes.c_float, ctypes.c_int64]
    base.aq_true_peak_max.restype = ctypes.c_float
    rng = np.random.default_rng(1773)
    x = (rng.standard_normal((3, 40000)) * 0.3).astype(np.float32)
    sos, weights = k_weighting_sos(44100), np.array([1.0, 1.0, 1.41])
    out = np.empty(x.shape[1])
    base.aq_kweighted_power(x, 3, x.shape[1], x.shape[1], sos, np.zeros((3, 2, 2)), weights, out)
    ours = _kernels.kweighted_power(x, sos, np.zeros((3, 2, 2)), weights)
    assert np.allclose(out, ours, rtol=1e-9, atol=1e-15)
    taps = np.ascontiguousarray(_TRUE_PEAK_PHASES[:, ::-1], dtype=np.float32)
    for c in range(3):
        row = np.ascontiguousarray(x[c])
        want = base.aq_true_peak_max(row, row.size, taps, 4, ctypes.c_float(_TP_BOUND_GAIN), ctypes.c_float(0.0), 512)
        got = _kernels.true_peak_max(row, taps, _TP_BOUND_GAIN, 0.0, 512)
        assert abs(got - want) <= 1e-6 * want, (c, got, want)
