"""Remedies applied to a file: noise removal, then loudness normalisation, into any format.

:func:`remedy_file` is what an audit's remedy branch runs on a failing file: the steps a policy
names (``denoise``, ``loudness``, in that order), from the original to a new file, in the
original's format (or another), its video kept, written atomically.

Passes over the audio (the original is decoded once):

- ``loudness`` alone: original -> gain and true-peak limiter -> output. The gain is ``target -
  measured``, from the loudness the diagnose already measured (no measuring pass over the
  original). The limiter lowers the loudness a little where it works hard: the output is measured
  as it is written and, if it is off the target by more than :data:`TOLERANCE_LU`, the pass is made
  again with a corrected gain (:func:`audiolib.normalize` does the same on arrays).
- ``denoise`` alone: original -> denoiser -> output (:func:`audiolib.denoise.denoise_file`).
- both: original -> denoiser -> a lossless float WAV (local, temporary) whose loudness is measured
  as it is written (the denoiser changed it; a speech-gated target measures it with the voice
  activity of that file) -> gain and limiter -> output.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InvalidParameter
from .validate import json_fields

__all__ = ["RemedyResult", "remedy_file", "STEPS"]

#: Steps in the order they are applied.
STEPS = ("denoise", "loudness")
#: How far the remedied output may be from the loudness target before a correcting pass, LU.
TOLERANCE_LU = 0.1
#: Correcting passes at most.
MAX_CORRECTIONS = 3
#: Codecs whose output is the samples written (no margin, measured as written).
LOSSLESS_CODECS = ("flac", "alac", "wavpack", "tta")
#: Headroom under the ceiling kept for a lossy encode, dB (docs/normalize.md: FFmpeg's AAC at 128
#: kb/s raised the true peak by up to 0.55 dB, libmp3lame by up to 0.4; other codecs unmeasured:
#: 1 dB). The encoded file is measured anyway and the margin raised where it still overshoots.
CODEC_MARGIN_DB = {"aac": 1.0, "libmp3lame": 0.5}


@dataclass(frozen=True)
class RemedyResult:
    """What :func:`remedy_file` did."""

    input_url: str
    output_url: str
    steps: tuple[str, ...]
    format: str
    codec: str
    duration_s: float
    elapsed_s: float
    gain_db: float | None
    limited_fraction: float | None
    output_integrated_lufs: float | None
    output_true_peak_dbtp: float | None
    noise_reduction_db: float | None
    correction_passes: int
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return json_fields(self.__dict__)


def _check_steps(steps: Mapping[str, Mapping[str, Any]]) -> list[str]:
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise InvalidParameter(f"unknown remedy step(s) {', '.join(map(repr, unknown))}; steps: {', '.join(STEPS)}")
    if not steps:
        raise InvalidParameter("no remedy step given")
    return [s for s in STEPS if s in steps]


def _denoise_to_float_wav(
    url: str, dest: str, amount: int, stream_index: int | None, gating: str, progress: Any = None
) -> tuple[float | None, float | None]:
    """Denoise ``url`` into a float WAV at ``dest``; returns its integrated loudness (as ``gating``
    asks) and the noise removed (dB, non-speech frames). ``progress(seconds_done, seconds_total)``
    after each block, as :func:`audiolib.denoise.denoise_file` calls it."""
    from . import io
    from .denoise import Denoiser, NoiseReductionMeter, _Fifo
    from .loudness import LoudnessMeter

    with io.stream(url, stream_index=stream_index) as s:
        denoiser = Denoiser(s.sample_rate, s.channel_names or s.channels, amount=amount)
        meter = LoudnessMeter(s.sample_rate, s.channel_names, channels=s.channels, true_peak=False)
        noise = NoiseReductionMeter(s.sample_rate, s.channels)
        fifo = _Fifo(s.channels)
        with _FloatWav(dest, s.sample_rate, s.channels) as wav:
            def emit(y: np.ndarray) -> None:
                if y.shape[1]:
                    wav.write(y)
                    meter.push(y)
                    noise.push(fifo.pop(y.shape[1]), y)

            total_s = s.info.audio.duration_s or s.info.container.duration_s
            for block in s:
                fifo.push(block)
                emit(denoiser.push(block))
                if progress is not None:
                    progress(denoiser.frames_in / s.sample_rate, total_s)
            emit(denoiser.flush())
    loud = meter.result().integrated_lufs
    if gating == "speech":
        from .diagnose import diagnose

        loud = diagnose(dest, only="loudness", gating="speech").blocks["loudness"].speech_integrated_lufs
    return (None if loud is None or not math.isfinite(loud) else loud), noise.result()


def _share(progress: Any, lo: float, hi: float) -> Any:
    """``progress`` for one step of several: the step's ``done / total`` mapped into ``[lo, hi]``."""
    if progress is None:
        return None

    def step(done_s: float, total_s: float | None) -> None:
        if total_s:
            progress(lo + (hi - lo) * min(1.0, max(0.0, done_s / total_s)), 1.0)

    return step


class _FloatWav:
    """A streaming 32-bit float WAV (RF64 past 4 GiB): the lossless intermediate."""

    def __init__(self, path: str, sample_rate: int, channels: int) -> None:
        import av

        from .channels import default_layout

        self._av = av
        self._layout = default_layout(channels)[0]
        self._out = av.open(path, mode="w", format="wav", options={"rf64": "auto"})
        self._stream = self._out.add_stream("pcm_f32le", rate=sample_rate, layout=self._layout)
        self._rate = sample_rate
        self._pts = 0

    def __enter__(self) -> _FloatWav:
        return self

    def write(self, block: np.ndarray) -> None:
        data = np.ascontiguousarray(block.T, dtype=np.float32).reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(data, format="flt", layout=self._layout)
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += block.shape[1]
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                for packet in self._stream.encode(None):
                    self._out.mux(packet)
        finally:
            self._out.close()


def remedy_file(url_in: str, url_out: str, steps: Mapping[str, Mapping[str, Any]], *,
                measured_lufs: float | None = None, format: str | None = None,
                stream_index: int | None = None, progress: Any = None) -> RemedyResult:
    """Apply remedy ``steps`` to ``url_in``, writing ``url_out`` atomically.

    Parameters
    ----------
    steps : mapping
        ``{"denoise": {"amount": 100}, "loudness": {"target_lufs": -23.0,
        "true_peak_max_dbtp": -1.0, "gating": "level"}}`` (either or both; applied denoise first).
    measured_lufs : float, optional
        The original's integrated loudness (dialogue-gated when the loudness step's ``gating`` is
        ``speech``), as the diagnose measured it: required for ``loudness`` alone (None: a silent
        file, which gets no gain). Not used after ``denoise``, whose output is measured instead.
    format : str, optional
        The output format; default the output URL's extension.
    progress : callable, optional
        Called as ``progress(done, total)`` as the work advances (``done / total`` is the share
        done: the denoiser's pass is the first half when both steps run, the normaliser's first
        pass the rest).
    """
    from . import io

    order = _check_steps(steps)
    started = time.perf_counter()
    info = io.probe(url_in, stream_index=stream_index)
    plan = io.plan_output(info, url_out, format=format, source_url=url_in)
    notes = list(plan.notes)
    loud = steps.get("loudness")
    if loud is not None:
        target = float(loud["target_lufs"])
        ceiling = float(loud.get("true_peak_max_dbtp", -1.0))
        gating = loud.get("gating", "level")
        if gating not in ("level", "speech"):
            raise InvalidParameter(f"loudness gating={gating!r}: 'level' or 'speech'")
    if order == ["denoise"]:
        from .denoise import denoise_file

        d = denoise_file(url_in, url_out, amount=int(steps["denoise"].get("amount", 100)), format=format,
                         stream_index=stream_index, progress=progress)
        return RemedyResult(url_in, url_out, tuple(order), d.format, d.codec, d.duration_s,
                            time.perf_counter() - started, None, None, None, None, d.noise_reduction_db, 0,
                            tuple(notes) + d.warnings)
    from .diagnose import diagnose
    from .normalize import normalize_file

    noise_db = None
    lossy = plan.bit_depth is None
    margin = CODEC_MARGIN_DB.get(plan.codec, 1.0) if lossy else 0.0
    aim = target
    passes = 0
    with tempfile.TemporaryDirectory(prefix="audioqc-remedy-") as scratch, io.atomic_output(url_out) as tmp:
        source = url_in
        if "denoise" in order:
            source = os.path.join(scratch, "denoised.wav")
            measured_lufs, noise_db = _denoise_to_float_wav(url_in, source, int(steps["denoise"].get("amount", 100)),
                                                            stream_index, gating, _share(progress, 0.0, 0.5))
        # Written to a local file first: a lossy encode moves the peaks and (its low-pass) the
        # loudness, so the file as encoded is measured before it is published.
        local = os.path.join(scratch, "out." + plan.format)
        local_plan = io.plan_output(info, local, format=plan.format, source_url=url_in)
        while True:
            res = normalize_file(source, local, measured_lufs=measured_lufs, target_lufs=aim,
                                 true_peak_max_dbtp=ceiling, codec_margin_db=margin, gating=gating,
                                 stream_index=stream_index if source == url_in else None, plan=local_plan,
                                 progress=_share(progress, 0.5 if "denoise" in order else 0.0, 1.0) if not passes
                                 else None)
            if res.note:
                notes.append(res.note)
            if not lossy and gating == "level":  # the samples written are the ones the limiter measured
                out_lufs, out_tp = res.output_integrated_lufs, res.output_true_peak_dbtp
                break
            m = diagnose(local, only="loudness", gating=gating).blocks["loudness"]
            out_lufs = m.speech_integrated_lufs if gating == "speech" else m.integrated_lufs
            out_tp = m.true_peak_dbtp
            over = out_tp is not None and out_tp > ceiling
            off = out_lufs is not None and abs(out_lufs - target) > TOLERANCE_LU
            if not (over or off) or passes >= MAX_CORRECTIONS or res.note:
                break
            passes += 1
            if over:  # more headroom for the encoder
                margin = min(6.0, margin + out_tp - ceiling + 0.1)
            if off:  # aim past the target by what the encode took away
                aim = max(-70.0, min(0.0, aim + (target - out_lufs)))
        if out_tp is not None and out_tp > ceiling:
            notes.append(f"true peak {out_tp:.2f} dBTP over the {ceiling:g} dBTP ceiling after the {plan.codec} encode")
        with open(local, "rb") as src, open(tmp, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
    notes.extend(res.warnings)
    return RemedyResult(url_in, url_out, tuple(order), plan.format, plan.codec, res.frames / info.audio.sample_rate_hz,
                        time.perf_counter() - started, res.gain_db, res.limited_fraction, out_lufs, out_tp, noise_db,
                        res.correction_passes + passes, tuple(dict.fromkeys(notes)))
