"""One decode pass, every analysis: the ``diagnose`` result in Dolby's shape.

Each block of the result is produced by an analyzer with ``push(block)`` and ``result()``; all
analyzers consume the same stream of decoded blocks, so a file is decoded once whatever the number
of blocks asked for. Every block has one entry in :data:`REGISTRY`, from which the blocks, their
analyzers, result types, the report's schema and the CLI table are derived.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from . import io
from .channel_format import AlarmSettings, ChannelFormatAnalyzer, ChannelFormatResult
from .clipping import ClippingDetector, ClippingResult
from .errors import InvalidParameter
from .loudness import GATING_MODES, LoudnessMeter, LoudnessResult
from .perceptual import (
    DEFAULT_QUALITY_MODEL,
    DEFAULT_QUALITY_WINDOWS,
    ContentResult,
    NoiseScoreResult,
    PerceptualAnalyzer,
    ScoreResult,
    SpeechResult,
    validate_quality_model,
    validate_quality_stride,
    validate_quality_windows,
)
from .silence import SilenceDetector, SilenceResult, parse_noise_db, validate_duration
from .technical import (
    BandwidthAnalyzer,
    BandwidthResult,
    DcOffsetAnalyzer,
    DcOffsetResult,
    DropoutAnalyzer,
    DropoutResult,
    PhaseAnalyzer,
    PhaseResult,
)


class Analyzer(Protocol):
    """A streaming analysis: fed every block of the file, then asked for its result."""

    def push(self, block: np.ndarray) -> None: ...

    def result(self) -> Any: ...


@dataclass(frozen=True)
class DiagnoseOptions:
    """Options of the analyzers (all keyword, validated once).

    The ``silence`` block of ``diagnose`` uses its own defaults (-60 dBFS, 0.5 s, every channel):
    Dolby's block describes digital/near-digital silence in the programme, not the silence
    endpoint's -30 dB speech pauses; both are configurable.
    """

    gating: str = "level"
    silence_noise: str | float = "-60dB"
    silence_duration_s: float = 0.5
    silence_mono: bool = False
    compressed_channels: tuple[int, ...] = ()
    alarms: AlarmSettings | None = None
    quality_stride: int = 1
    #: At most this many DNSMOS windows of a file are scored, spread evenly (None: every speech
    #: window; audiolib.perceptual's "Cost" paragraph).
    quality_windows: int | None = DEFAULT_QUALITY_WINDOWS
    #: DNSMOS P.835 model of the quality and noise scores: "int8" (default, ~2.5-2.8x faster) or "float".
    quality_model: str = DEFAULT_QUALITY_MODEL

    def __post_init__(self) -> None:
        bad = [c for c in self.compressed_channels if isinstance(c, bool) or not isinstance(c, int) or c < 0]
        if bad:
            raise InvalidParameter(f"compressed_channels={list(self.compressed_channels)!r}: "
                                   "channel indices are integers >= 0")
        if self.gating not in GATING_MODES:
            raise InvalidParameter(f"gating={self.gating!r}: must be one of {', '.join(GATING_MODES)}")
        validate_quality_stride(self.quality_stride)
        validate_quality_windows(self.quality_windows)
        validate_quality_model(self.quality_model)
        parse_noise_db(self.silence_noise)
        validate_duration(self.silence_duration_s)


class _Bound:
    """An analyzer whose result needs the options (adapts ``result()``)."""

    def __init__(self, analyzer: Any, finish: Callable[[Any], Any]) -> None:
        self.push = analyzer.push
        self._analyzer = analyzer
        self._finish = finish

    def result(self) -> Any:
        return self._finish(self._analyzer)


Shared = dict[str, Any]
#: Blocks computed by the perceptual analyzer (voice activity, DNSMOS, music, speech events).
PERCEPTUAL_BLOCKS = ("quality_score", "noise_score", "speech", "music", "other")


def _perceptual(s: io.AudioStream, o: DiagnoseOptions, shared: Shared, requested: Sequence[str]) -> PerceptualAnalyzer:
    """The one perceptual analyzer of this decode (several blocks read it; it is pushed once).

    DNSMOS (the costly part) and the speech events run only when a block needs them: ``loudness
    --gating speech`` alone costs the voice activity and nothing more.
    """
    if "perceptual" not in shared:
        shared["perceptual"] = PerceptualAnalyzer(
            s.sample_rate, s.channel_names, start_s=s.start_s, quality_stride=o.quality_stride,
            quality_model=o.quality_model, quality_windows=o.quality_windows, duration_s=_expected_seconds(s),
            quality=bool({"quality_score", "noise_score"} & set(requested)), events="speech" in requested,
            music=bool({"music", "other"} & set(requested)))
    return shared["perceptual"]


def _expected_seconds(s: io.AudioStream) -> float | None:
    """Seconds the stream will yield, from the headers and the range (None: the header does not say)."""
    duration = s.info.audio.duration_s or s.info.container.duration_s
    if not duration or not math.isfinite(duration):
        return None
    frames = int(round(duration * s.sample_rate))
    if s.end_frame is not None:
        frames = min(frames, s.end_frame)
    return max(0, frames - s.start_frame) / s.sample_rate


class _View:
    """A block computed by a shared analyzer: pushes nothing itself."""

    def __init__(self, source: Any, finish: Callable[[Any], Any]) -> None:
        self.source, self._finish = source, finish

    def push(self, block: np.ndarray) -> None:  # the shared analyzer is pushed once, by diagnose
        pass

    def result(self) -> Any:
        return self._finish(self.source)


def _loudness(s: io.AudioStream, o: DiagnoseOptions, shared: Shared, requested: Sequence[str]) -> Analyzer:
    meter = LoudnessMeter(s.sample_rate, s.channel_names)
    if o.gating == "speech" or set(PERCEPTUAL_BLOCKS) & set(requested):  # voice activity measured anyway
        p = _perceptual(s, o, shared, requested)
        return _Bound(meter, lambda m: m.result(gating_mode=o.gating,
                                                 speech_steps=p.speech_step_mask(m.step_energies().size)))
    return _Bound(meter, lambda m: m.result(gating_mode=o.gating))


def _view(pick: Callable[[Any], Any]) -> Callable[..., Analyzer]:
    return lambda s, o, shared, requested: _View(_perceptual(s, o, shared, requested), lambda p: pick(p.results()))


def _silence(s: io.AudioStream, o: DiagnoseOptions, shared: Shared, requested: Sequence[str]) -> Analyzer:
    return SilenceDetector(s.sample_rate, s.channel_names, noise=o.silence_noise,
                           duration=o.silence_duration_s, mono=o.silence_mono, start_s=s.start_s)


def _clipping(s: io.AudioStream, o: DiagnoseOptions, shared: Shared, requested: Sequence[str]) -> Analyzer:
    return ClippingDetector(s.sample_rate, s.channel_names, codec=s.info.audio.codec,
                            bit_depth=s.info.audio.bit_depth, start_s=s.start_s)


def _audio_format(s: io.AudioStream, o: DiagnoseOptions, shared: Shared, requested: Sequence[str]) -> Analyzer:
    return ChannelFormatAnalyzer(s.sample_rate, s.channel_names, start_s=s.start_s,
                                 codec=s.info.audio.codec, container=s.info.container.kind,
                                 compressed_channels=o.compressed_channels, alarms=o.alarms)


def _technical(cls: type) -> Callable[..., Analyzer]:
    return lambda s, o, shared, requested: cls(s.sample_rate, s.channel_names, start_s=s.start_s)


def format_cell(value: Any, digits: int = 1) -> str:
    """A value for the CLI's tables: ``-`` when unmeasured, floats with ``digits`` decimals."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


_fmt = format_cell  # short, for the table cells below


@dataclass(frozen=True)
class Cell:
    """One column of ``audioqc diagnose --table``: its header, width and text for a block's result."""

    header: str
    width: int
    text: Callable[[Any], str]


@dataclass(frozen=True)
class Block:
    """One block of the ``diagnose`` result: everything the rest of audioqc derives from it.

    ``make(stream, options, shared, requested)`` builds its analyzer (``shared`` holds analyzers
    several blocks read, pushed once; ``requested`` the blocks asked for); ``result`` is the frozen
    dataclass it returns (the report's columns are its fields and its declared
    ``REPORT_PROPERTIES``); ``kind`` is ``info``, ``signal`` or ``perceptual`` (the costly
    model-based blocks); ``cells`` its columns in the CLI table.
    """

    name: str
    make: Callable[..., Analyzer] | None
    result: type
    kind: str
    cells: tuple[Cell, ...] = ()


def _media_cells() -> tuple[Cell, ...]:
    return (Cell("codec", 9, lambda m: m.audio.codec), Cell("ch", 3, lambda m: str(m.audio.channels)),
            Cell("rate", 6, lambda m: str(m.audio.sample_rate_hz)),
            Cell("dur_s", 8, lambda m: _fmt(m.audio.duration_s, 2)))


#: Every block, in output order. Adding a block: its module, its entry here, its tests.
REGISTRY: tuple[Block, ...] = (
    Block("media_info", None, io.MediaInfo, "info", _media_cells()),
    Block("loudness", _loudness, LoudnessResult, "signal", (
        Cell("I_LUFS", 7, lambda r: _fmt(r.integrated_lufs)), Cell("LRA_LU", 6, lambda r: _fmt(r.loudness_range_lu)),
        Cell("TP_dBTP", 7, lambda r: _fmt(r.true_peak_dbtp)), Cell("M_max", 6, lambda r: _fmt(r.momentary_max_lufs)),
        Cell("S_max", 6, lambda r: _fmt(r.short_term_max_lufs)))),
    Block("silence", _silence, SilenceResult, "signal", (Cell("silence_%", 9, lambda r: _fmt(r.percentage)),)),
    Block("clipping", _clipping, ClippingResult, "signal", (Cell("clip_events", 11, lambda r: str(r.events)),)),
    Block("audio_format", _audio_format, ChannelFormatResult, "signal"),
    Block("dc_offset", _technical(DcOffsetAnalyzer), DcOffsetResult, "signal"),
    Block("phase", _technical(PhaseAnalyzer), PhaseResult, "signal"),
    Block("bandwidth", _technical(BandwidthAnalyzer), BandwidthResult, "signal"),
    Block("dropouts", _technical(DropoutAnalyzer), DropoutResult, "signal"),
    Block("quality_score", _view(lambda r: r.quality), ScoreResult, "perceptual",
          (Cell("quality", 7, lambda r: _fmt(r.average)),)),
    Block("noise_score", _view(lambda r: r.noise), NoiseScoreResult, "perceptual",
          (Cell("noise", 5, lambda r: _fmt(r.average)),)),
    Block("speech", _view(lambda r: r.speech), SpeechResult, "perceptual",
          (Cell("speech_%", 8, lambda r: _fmt(r.percentage)),)),
    Block("music", _view(lambda r: r.music), ContentResult, "perceptual",
          (Cell("music_%", 7, lambda r: _fmt(r.percentage)),)),
    Block("other", _view(lambda r: r.other), ContentResult, "perceptual"),
)
#: Block name -> analyzer factory (every block but ``media_info``), in output order.
ANALYZERS: dict[str, Callable[..., Analyzer]] = {b.name: b.make for b in REGISTRY if b.make is not None}
BLOCKS: tuple[str, ...] = tuple(b.name for b in REGISTRY)
#: Block name -> the frozen dataclass its analyzer returns (the report derives its schema from it).
RESULT_TYPES: dict[str, type] = {b.name: b.result for b in REGISTRY}
#: The blocks measured from the signal alone (what `--only` takes for a fast pass).
SIGNAL_BLOCKS: tuple[str, ...] = tuple(b.name for b in REGISTRY if b.kind in ("info", "signal"))
if PERCEPTUAL_BLOCKS != tuple(b.name for b in REGISTRY if b.kind == "perceptual"):  # the analyzer's own list
    raise RuntimeError("audiolib.diagnose: PERCEPTUAL_BLOCKS and the registry disagree")


@dataclass(frozen=True)
class DiagnoseResult:
    """Everything measured in one pass. ``blocks`` maps block name -> result object."""

    url: str
    media_info: io.MediaInfo
    blocks: dict[str, Any]
    decode: io.DecodeReport
    requested: tuple[str, ...] = field(default=BLOCKS)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "media_info" in self.requested:
            out["media_info"] = self.media_info.to_dict()
        for name, value in self.blocks.items():
            out[name] = value.to_dict()
        out["decode"] = {
            "decoded_duration": self.decode.frames / self.media_info.audio.sample_rate_hz,
            "truncated": self.decode.truncated,
            "problem": self.decode.problem,
            "corrupt_packets": self.decode.corrupt_packets,
            "nonfinite_samples": self.decode.nonfinite_samples,
            "clamped_samples": self.decode.clamped_samples,
            "warnings": list(self.decode.warnings),
        }
        return out


def parse_blocks(only: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate a block selection (``"loudness,media_info"`` or a list); default: all blocks."""
    if only is None:
        return BLOCKS
    names = [s.strip() for s in only.split(",")] if isinstance(only, str) else [str(s) for s in only]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in BLOCKS]
    if unknown or not names:
        raise InvalidParameter(
            f"unknown block(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(BLOCKS)}"
        )
    return tuple(n for n in BLOCKS if n in names)


def _range_seconds(duration_s: float | None, start_s: float, end_s: float | None) -> float | None:
    """Seconds of audio a ``diagnose`` over ``[start_s, end_s)`` decodes (None: unknown)."""
    stop = duration_s if end_s is None else (end_s if duration_s is None else min(end_s, duration_s))
    if stop is None or not math.isfinite(stop):
        return None
    return max(0.0, stop - start_s)


def diagnose(url: str, *, only: str | Sequence[str] | None = None, start: float | str | None = None,
             end: float | str | None = None, stream_index: int | None = None,
             gating: str = "level", options: DiagnoseOptions | None = None,
             progress: Callable[[float, float | None], None] | None = None) -> DiagnoseResult:
    """Decode ``url`` once and run every requested analysis on the same blocks.

    Parameters
    ----------
    url : str
        Local path or fsspec URL.
    only : str or sequence of str, optional
        Blocks to compute (default all): see :data:`BLOCKS`.
    start, end : float or str, optional
        Range to analyse, seconds of file time.
    stream_index : int, optional
        Audio stream (0-based among audio streams).
    gating : str
        Loudness gating mode (ignored when ``options`` is given).
    options : DiagnoseOptions, optional
        Every analyzer option; default: the defaults with ``gating``.
    progress : callable, optional
        Called as ``progress(seconds_decoded, seconds_total_or_None)`` after each block: seconds of
        audio decoded so far from the start of the range, and the range's duration (None when the
        container does not say). The last call has ``seconds_decoded`` equal to what was decoded.
    """
    requested = parse_blocks(only)
    options = options if options is not None else DiagnoseOptions(gating=gating)
    with io.stream(url, start=start, end=end, stream_index=stream_index) as s:
        shared: Shared = {}
        try:
            analyzers = {name: ANALYZERS[name](s, options, shared, requested)
                         for name in requested if name in ANALYZERS}
        except InvalidParameter as exc:  # the file's own parameters (a 1 Hz WAV): say which file
            raise InvalidParameter(str(exc) if str(exc).startswith(url) else f"{url}: {exc}") from None
        pushed = [a for a in analyzers.values() if not isinstance(a, _View)] + list(shared.values())
        total_s = _range_seconds(s.info.audio.duration_s or s.info.container.duration_s, s.start_s,
                                 io.parse_time(end, name="end"))
        decoded = 0
        if analyzers:
            for block in s:
                for analyzer in pushed:
                    analyzer.push(block)
                if progress is not None:
                    decoded += block.shape[1]
                    progress(decoded / s.sample_rate, total_s)
        return DiagnoseResult(
            url=url,
            media_info=s.info,
            blocks={name: a.result() for name, a in analyzers.items()},
            decode=s.report,
            requested=requested,
        )


# ----------------------------------------------------------------------------------------------
# what ANALYSIS_VERSION stands for

#: Modules whose constants decide the measured values besides the result types' own modules.
_ANALYSIS_MODULES = ("audiolib.loudness", "audiolib.silence", "audiolib.clipping", "audiolib.perceptual",
                     "audiolib.speech", "audiolib.music", "audiolib.speech_events", "audiolib.iir", "audiolib.runs",
                     "audiolib.channel_format.analyzer", "audiolib.channel_format.st337",
                     "audiolib.channel_format.alarms", "audiolib.io")


def analysis_fingerprint() -> str:
    """SHA-256 of what decides the measured values: the options' defaults, the analysis modules'
    constants (UPPER_CASE numbers, strings and tuples of them, dict tables) and the shipped model
    files. tests/golden/versions.json holds it with ANALYSIS_VERSION: a test fails when it changes
    without a version bump (cached audit rows would otherwise be reused with old numbers)."""
    import dataclasses
    import hashlib
    import importlib
    import json
    import os

    def plain(value: Any) -> Any:
        if isinstance(value, str) and os.path.isabs(value):
            return None  # a path on this machine (a model file's: its bytes count below)
        if isinstance(value, (bool, int, str)) or value is None:
            return value
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, (tuple, list, frozenset, set)):
            items = [plain(v) for v in value]
            return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in sorted(value.items(), key=lambda kv: repr(kv[0]))}
        if isinstance(value, np.ndarray) and value.size <= 4096:
            return [plain(v) for v in value.ravel().tolist()]
        return None

    state: dict[str, Any] = {"options": {f.name: plain(f.default) for f in dataclasses.fields(DiagnoseOptions)}}
    modules = sorted({b.result.__module__ for b in REGISTRY} | set(_ANALYSIS_MODULES))
    for name in modules:
        module = importlib.import_module(name)
        consts = {k: plain(v) for k, v in vars(module).items()
                  if k.isupper() and not k.startswith("_") and plain(v) is not None}
        state[name] = consts
    models = os.path.join(os.path.dirname(__file__), "models")
    for fname in sorted(os.listdir(models)) if os.path.isdir(models) else ():
        with open(os.path.join(models, fname), "rb") as f:
            state[f"model:{fname}"] = hashlib.sha256(f.read()).hexdigest()
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()
