"""The loudness meter's C kernels (audiolib/_dsp.c through audiolib/_kernels.py) against plain
numpy/scipy computations of the same quantities, over random signals cut into random blocks
(the kernels carry their state from one block to the next)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from audiolib import _kernels
from audiolib.loudness import _ANNEX2_PHASES, k_weighting_sos, second_difference_form, true_peak_taps


def _blocks(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=12, replace=False))
    edges = [0, *cuts.tolist(), n]
    return list(zip(edges[:-1], edges[1:], strict=True))


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
    ra, rb, sa, sb = np.zeros(wa), np.zeros(wb), np.zeros(5), np.zeros(5)
    for a, b in _blocks(n, rng):
        _kernels.sliding_sum_max2(np.ascontiguousarray(power[a:b]), ra, sa, rb, sb)
    c = np.concatenate(([0.0], np.cumsum(power)))
    assert abs(sa[3] - np.max(c[wa:] - c[:-wa])) < 1e-9 * sa[3]
    assert abs(sb[3] - np.max(c[wb:] - c[:-wb])) < 1e-9 * sb[3]
    assert sa[1] == sb[1] == n


def test_sliding_sum_max2_is_the_sum_taken_at_each_wrap_exactly():
    """The kernel accumulates each window's exact sum as the values arrive; the algorithm it stands
    for sums the ring at each wrap (in order, from 0.0). Both, run in Python on the same values,
    blocks and windows, give the same bits: running sums, best sums, positions and rings."""
    rng = np.random.default_rng(1770)
    n, wa, wb = 5000, 7, 300
    power = rng.exponential(1.0, n) * rng.choice([1e-9, 1.0, 1e6], n)  # rounding at every step
    ra, rb, sa, sb = np.zeros(wa), np.zeros(wb), np.zeros(5), np.zeros(5)
    ref = {w: {"ring": np.zeros(w), "pos": 0, "s": 0.0, "best": 0.0} for w in (wa, wb)}
    seen = 0
    for a, b in _blocks(n, rng):
        _kernels.sliding_sum_max2(np.ascontiguousarray(power[a:b]), ra, sa, rb, sb)
        for p in power[a:b].tolist():
            seen += 1
            for w, r in ref.items():
                r["s"] += p - r["ring"][r["pos"]]
                r["ring"][r["pos"]] = p
                r["pos"] += 1
                if r["pos"] == w:
                    r["pos"], t = 0, 0.0
                    for v in r["ring"].tolist():
                        t += v
                    r["s"] = t
                if seen >= w and r["s"] > r["best"]:
                    r["best"] = r["s"]
    for w, ring, state in ((wa, ra, sa), (wb, rb, sb)):
        r = ref[w]
        assert state[0] == r["pos"] and state[1] == seen
        assert state[2] == r["s"] and state[3] == r["best"]  # the same bits, not just close
        assert np.array_equal(ring, r["ring"])


def _all_phases_peak(x: np.ndarray, taps: np.ndarray) -> float:
    """max |interpolated value| over every window and phase, float64 numpy (no skipping)."""
    view = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), taps.shape[1])
    return float(np.max(np.abs(view @ taps.T.astype(np.float64))))


def _test_signals(rng: np.random.Generator):
    """Noise at random levels, noise with a loud burst (most chunks cannot beat it), and smooth
    programme-like signals (low-passed noise plus tones: small second differences, so the
    second-difference bound skips most chunks)."""
    for trial in range(30):
        n = int(rng.integers(30, 6000))
        kind = trial % 3
        if kind == 2:
            t = np.arange(n)
            x = sum(rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(0.001, 0.08) * t + rng.uniform(0, 6))
                    for _ in range(3))
            x = x + 0.05 * np.convolve(rng.standard_normal(n + 15), np.ones(16) / 16, "valid")
        else:
            x = rng.standard_normal(n) * rng.uniform(0.01, 0.9)
            if kind == 1:
                k = int(rng.integers(0, n - 11))
                x[k:k + 11] *= 8
        yield trial, x.astype(np.float32)


def test_true_peak_max_is_the_largest_interpolated_sample():
    """The interpolator's peak (chunks skipped where their bound cannot beat the maximum) against
    every window and phase computed with numpy over the whole signal: the meter's 24-tap phases
    with both bounds, and BS.1770-4 Annex 2's 12-tap phases with the tap-sum bound alone."""
    rng = np.random.default_rng(1771)
    tp = true_peak_taps(48000)
    annex2 = np.ascontiguousarray(_ANNEX2_PHASES[:, ::-1], dtype=np.float32)
    annex2_gain = float(np.abs(_ANNEX2_PHASES).sum(axis=1).max()) * (1 + 1e-5)
    for trial, x in _test_signals(rng):
        want = _all_phases_peak(x, tp.taps)
        for floor in (0.0, float(np.abs(x).max())):  # the meter passes the sample peak as the floor
            got = _kernels.true_peak_max(x, tp.taps, tp.bound_gain, floor, 512, tp.bound_lin, tp.bound_d2)
            assert abs(got - max(want, floor)) <= 1e-6 * want, (trial, floor, got, want)
        want12 = _all_phases_peak(x, annex2)
        got12 = _kernels.true_peak_max(x, annex2, annex2_gain, 0.0, 512)
        assert abs(got12 - want12) <= 1e-6 * want12, (trial, got12, want12)
        assert _kernels.true_peak_max(x, tp.taps, tp.bound_gain, 100.0, 512, tp.bound_lin, tp.bound_d2) == 100.0


def test_true_peak_skipping_bounds_hold():
    """What skipping relies on: every phase of the meter's interpolator is exactly a two-tap
    interpolation plus a filter of second differences, so no value over a window exceeds
    bound_lin * (its sample peak) + bound_d2 * (its largest second difference), nor bound_gain *
    (its sample peak); checked on random, smooth and worst-case (sign-matched) windows."""
    rng = np.random.default_rng(1774)
    for sr in (48000, 96000):
        tp = true_peak_taps(sr)
        assert tp.taps.shape == ((7, 24) if sr < 96000 else (3, 24))
        windows = [rng.standard_normal(24), np.cos(0.05 * np.arange(24) + 0.3), np.ones(24)]
        windows += [np.sign(t.astype(np.float64)) for t in tp.taps]  # the tap-sum bound is reached
        for h in tp.taps.astype(np.float64):
            a, b, q = second_difference_form(h)
            for x in windows:
                d2 = np.zeros(24)
                d2[1:-1] = x[:-2] - 2 * x[1:-1] + x[2:]
                value = h @ x
                assert value == pytest.approx(a * x[11] + b * x[12] + q @ d2, abs=1e-12)
                peak, dmax = np.abs(x).max(), np.abs(d2).max()
                assert abs(value) <= tp.bound_lin * peak + tp.bound_d2 * dmax
                assert abs(value) <= tp.bound_gain * peak
        # on a smooth window the second-difference bound is within 2 % of its peak
        x = np.cos(2 * np.pi * 0.02 * np.arange(24))
        d2 = np.abs(x[:-2] - 2 * x[1:-1] + x[2:]).max()
        assert tp.bound_lin + tp.bound_d2 * d2 < 1.02


def test_meter_true_peak_is_independent_of_the_blocks():
    """LoudnessMeter's true peak over blocks of every size (shorter than the filter too, and the
    windows that straddle two blocks) equals the interpolator over the whole signal at once (zeros
    before the first and after the last sample), or the sample peak where that is larger."""
    from audiolib.loudness import LoudnessMeter

    rng = np.random.default_rng(1772)
    x = (rng.standard_normal((2, 20000)) * 0.2).astype(np.float32)
    x[1, 9995:10005] = [0.9, -0.9] * 5  # a near-Nyquist burst: its true peak lies between samples
    taps = true_peak_taps(48000).taps
    padded = np.concatenate((np.zeros((2, 23)), x.astype(np.float64), np.zeros((2, 23))), axis=1)
    want = max(_all_phases_peak(padded[c], taps) for c in range(2))
    for sizes in (
        [20000],
        [10000, 10000],
        [9996, 10004],
        [3, 5, 9995, 2, 10, 1, 9984],
        list(rng.integers(1, 40, 2000)),
    ):
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
    base.aq_true_peak_max.argtypes = [f32, ctypes.c_int64, f32, ctypes.c_int64, ctypes.c_int64, ctypes.c_float,
                                      ctypes.c_float, ctypes.c_float, ctypes.c_float, ctypes.c_int64]
    base.aq_true_peak_max.restype = ctypes.c_float
    rng = np.random.default_rng(1773)
    x = (rng.standard_normal((3, 40000)) * 0.3).astype(np.float32)
    sos, weights = k_weighting_sos(44100), np.array([1.0, 1.0, 1.41])
    out = np.empty(x.shape[1])
    base.aq_kweighted_power(x, 3, x.shape[1], x.shape[1], sos, np.zeros((3, 2, 2)), weights, out)
    ours = _kernels.kweighted_power(x, sos, np.zeros((3, 2, 2)), weights)
    assert np.allclose(out, ours, rtol=1e-9, atol=1e-15)
    tp = true_peak_taps(44100)
    for c in range(3):
        row = np.ascontiguousarray(x[c])
        want = base.aq_true_peak_max(row, row.size, tp.taps, 7, 24, tp.bound_gain, tp.bound_lin, tp.bound_d2, 0.0, 512)
        got = _kernels.true_peak_max(row, tp.taps, tp.bound_gain, 0.0, 512, tp.bound_lin, tp.bound_d2)
        assert abs(got - want) <= 1e-6 * want, (c, got, want)
