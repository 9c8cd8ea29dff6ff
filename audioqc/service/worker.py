"""What a worker process runs: the library calls the CLI makes, on a local copy of the input.

Imported once by the fork server (:data:`audioqc.service.runner.PRELOAD`), so a forked worker has
numpy, PyAV and the analyzers loaded before its first job; the models (Silero VAD, DNSMOS,
DeepFilterNet3) load on a worker's first job that needs them and stay loaded for its life.

:func:`run_job` never raises: it returns ``("ok", result, pid)`` or ``("error", status, message,
pid)``. An audioqc error (bad input, bad parameter) is a 400 with its message; anything else is
logged here with its traceback and answered as a 500 without one. Messages never carry the
server's paths: the job's local files are named by the URL or id the client gave.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import audiolib.denoise  # noqa: F401 (preloaded: see the module)
import audiolib.diagnose  # noqa: F401
import audiolib.remedy  # noqa: F401 (preloaded)
from audiolib.errors import AudioQCError

__all__ = ["run_job", "init_worker"]

log = logging.getLogger("audioqc.service.worker")

_progress_queue: Any = None


def init_worker(progress_queue: Any) -> None:
    """Pool initializer: where progress goes (a multiprocessing queue read by the server)."""
    global _progress_queue
    _progress_queue = progress_queue
    logging.basicConfig(level=logging.INFO, format="%(message)s")


class _Progress:
    """Sends ``(job_id, percent)`` when the integer percent changes, scaled into ``[lo, hi]``."""

    def __init__(self, job_id: str, lo: float = 0.0, hi: float = 100.0) -> None:
        self.job_id, self.lo, self.hi = job_id, lo, hi
        self._last = -1

    def __call__(self, done_s: float, total_s: float | None) -> None:
        if _progress_queue is None or not total_s:
            return
        pct = int(self.lo + (self.hi - self.lo) * min(1.0, max(0.0, done_s / total_s)))
        if pct != self._last:
            self._last = pct
            try:
                _progress_queue.put_nowait((self.job_id, pct))
            except Exception:  # progress is best effort; the job goes on
                pass


def _scrub(message: str, params: dict[str, Any]) -> str:
    """Replace the job's local paths in ``message`` with what the client named them by."""
    for local, shown in params.get("_names", {}).items():
        message = message.replace(local, shown)
    data_dir = params.get("_data_dir")
    if data_dir:
        message = message.replace(data_dir, "(data)")
    return message


def _silence(p: dict[str, Any], progress: _Progress) -> Any:
    from audiolib.diagnose import DiagnoseOptions, diagnose

    options = DiagnoseOptions(silence_noise=p["noise"], silence_duration_s=p["duration"], silence_mono=p["mono"])
    result = diagnose(p["input"], only="silence", start=p.get("start"), end=p.get("end"), options=options,
                      progress=progress)
    return result.blocks["silence"].to_list()


def _loudness(p: dict[str, Any], progress: _Progress) -> Any:
    from audiolib.diagnose import diagnose

    result = diagnose(p["input"], only="loudness", progress=progress)
    return result.blocks["loudness"].to_sami()


def _format(p: dict[str, Any], progress: _Progress) -> Any:
    from audiolib.channel_format import AlarmSettings
    from audiolib.diagnose import DiagnoseOptions, diagnose

    alarms = AlarmSettings(**p["alarms"]) if p.get("alarms") else None
    options = DiagnoseOptions(compressed_channels=tuple(p.get("compressed_channels", ())), alarms=alarms)
    result = diagnose(p["input"], only="audio_format", options=options, progress=progress)
    return result.blocks["audio_format"].to_dict()


def _diagnose(p: dict[str, Any], progress: _Progress) -> Any:
    from audiolib.diagnose import diagnose

    return diagnose(p["input"], progress=progress).to_dict()


def _denoise(p: dict[str, Any], progress: _Progress) -> Any:
    from audiolib.denoise import denoise_file

    result = denoise_file(p["input"], p["output"], amount=p["amount"], format=p.get("format"), progress=progress)
    return result.to_dict()


def _enhance(p: dict[str, Any], progress: _Progress) -> Any:
    """Dolby's Enhance: the original's loudness measured (0-30 %) when only the loudness step runs,
    then :func:`remedy_file` (the rest, as its steps advance)."""
    from audiolib.diagnose import diagnose
    from audiolib.remedy import remedy_file

    steps = p["steps"]
    measured = None
    if "loudness" in steps and "denoise" not in steps:
        gating = steps["loudness"].get("gating", "level")
        loud = diagnose(p["input"], only="loudness", gating=gating,
                        progress=_Progress(progress.job_id, 0, 30)).blocks["loudness"]
        measured = loud.speech_integrated_lufs if gating == "speech" else loud.integrated_lufs
    elif "denoise" in steps and "loudness" not in steps:
        from audiolib.denoise import denoise_file

        return denoise_file(p["input"], p["output"], amount=steps["denoise"]["amount"], format=p.get("format"),
                            progress=progress).to_dict()
    result = remedy_file(p["input"], p["output"], steps, measured_lufs=measured, format=p.get("format"),
                         progress=_Progress(progress.job_id, 30 if measured is not None else 0, 100))
    return result.to_dict()


_KINDS = {"silence": _silence, "loudness": _loudness, "format": _format, "diagnose": _diagnose,
          "denoise": _denoise, "enhance": _enhance}


def run_job(job_id: str, kind: str, params: dict[str, Any]) -> tuple[Any, ...]:
    """Run one job; see the module for what it returns."""
    pid = os.getpid()
    started = time.perf_counter()
    try:
        result = _KINDS[kind](params, _Progress(job_id))
    except AudioQCError as exc:
        return ("error", 400, _scrub(str(exc), params), pid)
    except MemoryError:
        return ("error", 500, "out of memory", pid)
    except Exception:
        log.exception("job %s (%s) failed with an internal error", job_id, kind)
        return ("error", 500, "internal error", pid)
    from audioqc.jsonout import clean

    out = clean(result)
    if isinstance(out, dict):
        for key in ("input_url", "output_url"):
            if isinstance(out.get(key), str):
                out[key] = _scrub(out[key], params)
    return ("ok", out, pid, time.perf_counter() - started)
