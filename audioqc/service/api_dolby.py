"""Dolby's Media API: ``/media/diagnose`` and ``/media/enhance`` (dolby-audio-diagnose.txt).

Dolby's conventions: ``POST`` starts a job and answers ``{"job_id"}``; ``GET ?job_id=`` answers
``{"path", "status": "Pending" | "Running" | "Success" | "Failed", "progress", "api_version",
"result"}`` (``error`` instead of ``result`` when it failed); errors are RFC 7807 problem details.

- **diagnose** ``{"input": URL}``: the job runs ``diagnose(url)``, every block in one pass, and
  ``result`` is what ``audioqc diagnose URL`` prints. ``progress`` is the share of the audio decoded.
- **enhance** ``{"input": URL, "output": URL, "audio": {"noise": {"reduction": {"enable", "amount"}},
  "loudness": {"enable", "target_level", "peak_limit", "dialog_intelligence"}}}``: the remedies of
  ``audioqc audit --remedy-to`` (:func:`audiolib.remedy.remedy_file`): ``denoise`` with the amount
  mapped as :data:`NOISE_AMOUNTS` says, then ``loudness`` to ``target_level`` LUFS with a true-peak
  ceiling of ``peak_limit`` dBTP (dialogue-gated when ``dialog_intelligence`` is true), after the
  original's loudness is measured. The output's format is its URL's extension (the input's when it
  has none); the file is PUT to ``output`` (a presigned URL; ``s3://`` with ``--allow-s3``).
"""

from __future__ import annotations

import numbers
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from audiolib.io import OUTPUT_FORMATS

from .common import openapi_body, owner_of, parse_body, precheck, set_job, strict_json
from .errors import ApiError
from .runner import url_extension

router = APIRouter(tags=["dolby media api"])
API_VERSION = "v1.0"
#: Dolby's noise reduction amounts -> audioqc's amount (the most attenuation in dB, 100 =
#: unlimited; docs/denoise.md). "auto" is the full reduction: DeepFilterNet3 estimates the noise
#: itself. A number is taken as audioqc's amount (1..100; 0 turns the step off).
NOISE_AMOUNTS = {"low": 6, "medium": 12, "high": 24, "max": 100, "auto": 100}
#: Loudness defaults when ``audio.loudness`` leaves them out.
DEFAULT_TARGET_LUFS = -14.0
DEFAULT_PEAK_LIMIT_DBTP = -1.0
_STATUS = {"downloading": "Pending", "queued": "Pending", "running": "Running", "succeeded": "Success",
           "failed": "Failed"}


class DiagnoseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="URL of the media (http(s); s3:// with --allow-s3)")
    content: dict[str, Any] | None = Field(default=None, description="Dolby's content hints (accepted, unused)")


class NoiseReduction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enable: bool = True
    amount: str | float = Field(default="auto", description="low | medium | high | max | auto, or 0..100")


class Noise(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduction: NoiseReduction | None = None


class Loudness(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enable: bool = True
    target_level: float = Field(default=DEFAULT_TARGET_LUFS, ge=-70, le=-5)
    peak_limit: float = Field(default=DEFAULT_PEAK_LIMIT_DBTP, ge=-12, le=0)
    dialog_intelligence: bool = False


class Audio(BaseModel):
    model_config = ConfigDict(extra="forbid")

    noise: Noise | None = None
    loudness: Loudness | None = None


class EnhanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str
    output: str
    content: dict[str, Any] | None = None
    audio: Audio | None = None


def _is_number(value: Any) -> bool:
    """A real number, not a bool. (A helper, so that ``value`` stays ``Any``: narrowed to
    ``numbers.Real``, whose stub has no ``__ge__``, ``0 <= value`` would not type-check.)"""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def noise_amount(value: Any) -> int:
    """audioqc's amount (0 = off) for Dolby's ``amount`` (see :data:`NOISE_AMOUNTS`)."""
    if isinstance(value, str):
        key = value.strip().lower()
        if key in NOISE_AMOUNTS:
            return NOISE_AMOUNTS[key]
        raise ApiError(400, f"audio.noise.reduction.amount={value!r}: one of {', '.join(NOISE_AMOUNTS)} or 0..100")
    if _is_number(value) and 0 <= value <= 100:
        return 0 if value == 0 else max(1, int(round(value)))
    raise ApiError(400, f"audio.noise.reduction.amount={value!r}: one of {', '.join(NOISE_AMOUNTS)} or 0..100")


def enhance_steps(audio: Audio | None) -> dict[str, dict[str, Any]]:
    """The remedy steps of an enhance request (Dolby's defaults: both enabled)."""
    noise = (audio.noise.reduction if audio and audio.noise and audio.noise.reduction else NoiseReduction())
    loud = audio.loudness if audio and audio.loudness else Loudness()
    steps: dict[str, dict[str, Any]] = {}
    if noise.enable:
        amount = noise_amount(noise.amount)
        if amount:
            steps["denoise"] = {"amount": amount}
    if loud.enable:
        steps["loudness"] = {"target_lufs": loud.target_level, "true_peak_max_dbtp": loud.peak_limit,
                             "gating": "speech" if loud.dialog_intelligence else "level"}
    if not steps:
        raise ApiError(400, "audio: nothing to do (noise reduction and loudness both disabled)")
    return steps


def _status(request: Request, path: str, job_id: str | None) -> Any:
    owner = owner_of(request)
    if not job_id:
        raise ApiError(400, "job_id is required")
    runner = request.app.state.runner
    job = runner.store.get(job_id)
    kind = path.rsplit("/", 1)[-1]
    if job is None or job.owner != owner or job.api != "dolby" or job.kind != kind:
        raise ApiError(404, f"no {kind} job {job_id!r}")
    set_job(request, job.id)
    body: dict[str, Any] = {"path": path, "status": _STATUS[job.state], "progress": runner.progress(job),
                            "api_version": API_VERSION}
    if job.state == "succeeded" and kind == "diagnose":
        body["result"] = job.result["result"]
    if job.state == "failed":
        body["error"] = {"type": "/problem-types/job-failed", "title": "Job failed", "status": job.error_status,
                         "detail": job.error}
    return strict_json(body)


_ERRORS: dict[int | str, dict[str, Any]] = {400: {"description": "bad request"}, 401: {"description": "unauthorized"},
           404: {"description": "no such job for this key"}, 429: {"description": "queue full"}}


@router.post("/media/diagnose", openapi_extra=openapi_body(DiagnoseRequest), summary="Start a diagnose job",
             responses=_ERRORS)
async def start_diagnose(request: Request) -> Any:
    owner = owner_of(request)
    body: DiagnoseRequest = await parse_body(request, DiagnoseRequest)
    await precheck(request, body.input, "input")
    job = await request.app.state.runner.submit(owner=owner, api="dolby", kind="diagnose", params={},
                                                input_url=body.input)
    set_job(request, job.id)
    return strict_json({"job_id": job.id})


@router.get("/media/diagnose", summary="A diagnose job's status and result", responses=_ERRORS)
async def get_diagnose(request: Request, job_id: str | None = None) -> Any:
    return _status(request, "/media/diagnose", job_id)


@router.post("/media/enhance", openapi_extra=openapi_body(EnhanceRequest), summary="Start an enhance job",
             responses=_ERRORS)
async def start_enhance(request: Request) -> Any:
    owner = owner_of(request)
    body: EnhanceRequest = await parse_body(request, EnhanceRequest)
    steps = enhance_steps(body.audio)
    await precheck(request, body.input, "input")
    await precheck(request, body.output, "output")
    ext = url_extension(body.output) or url_extension(body.input)
    if ext not in OUTPUT_FORMATS:
        raise ApiError(400, f"output: name the format by the URL's extension ({', '.join(OUTPUT_FORMATS)})")
    job = await request.app.state.runner.submit(owner=owner, api="dolby", kind="enhance",
                                                params={"steps": steps, "format": ext}, input_url=body.input,
                                                output_url=body.output, output_ext=ext)
    set_job(request, job.id)
    return strict_json({"job_id": job.id})


@router.get("/media/enhance", summary="An enhance job's status", responses=_ERRORS)
async def get_enhance(request: Request, job_id: str | None = None) -> Any:
    return _status(request, "/media/enhance", job_id)
