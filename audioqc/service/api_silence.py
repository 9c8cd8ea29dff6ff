"""The silence endpoint: ``POST /v1/media/silence`` (media-silence-endpoint.txt).

The request body is validated against exactly the document's JSON schema (``media_url`` and
``duration`` required, ``duration >= 0.1``, no other properties), then its values as ``audioqc
silence`` validates them (``noise`` a level in dB, ``start``/``end`` times). The job runs the CLI's
call: ``diagnose(url, only="silence", options=DiagnoseOptions(silence_noise, silence_duration_s,
silence_mono))``, whose ``to_list()`` is the envelope's ``response``.

Without ``webhook_url`` the answer is the envelope. With it: 202 at once (``{"code": 202, "id",
"job_id", "message": "queued", "queue_length"}``), and the envelope is POSTed to the webhook when
the job ends. ``GET /v1/media/silence/{job_id}`` (an addition) answers the envelope of a job the
same key made: 202 while it runs.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from audiolib.errors import InvalidParameter
from audiolib.io import parse_time
from audiolib.silence import parse_noise_db, validate_duration

from .common import openapi_body, owner_of, parse_body, precheck, set_job, strict_json
from .errors import ApiError
from .store import Job

router = APIRouter(tags=["silence"])
ENDPOINT = "/v1/media/silence"


class SilenceRequest(BaseModel):
    """The document's schema, property for property."""

    model_config = ConfigDict(extra="forbid", strict=True)

    media_url: str = Field(json_schema_extra={"format": "uri"})
    start: str = Field(default=None, description="HH:MM:SS.ms (or seconds)")  # type: ignore[assignment]
    end: str = Field(default=None, description="HH:MM:SS.ms (or seconds)")  # type: ignore[assignment]
    noise: str = Field(default=None, description="threshold in dB, default -30dB")  # type: ignore[assignment]
    duration: float = Field(ge=0.1, description="minimum silence, seconds")
    mono: bool = Field(default=True, description="detect on the channel average (default true)")
    webhook_url: str = Field(default=None, json_schema_extra={"format": "uri"})  # type: ignore[assignment]
    id: str = Field(default=None)  # type: ignore[assignment]


def _schema() -> dict[str, Any]:
    extra = openapi_body(SilenceRequest)
    schema = extra["requestBody"]["content"]["application/json"]["schema"]
    for prop in schema["properties"].values():  # the document's schema: no null defaults
        prop.pop("default", None) if prop.get("default") is None else None
    return extra


def envelope(job: Job, build_number: str) -> dict[str, Any]:
    """The document's response envelope for a finished job."""
    ok = job.state == "succeeded"
    created = job.created
    started = job.started or job.finished or created
    finished = job.finished or time.time()
    return {
        "endpoint": ENDPOINT,
        "code": 200 if ok else (job.error_status or 500),
        "id": job.params.get("id"),
        "job_id": job.id,
        "response": job.result["result"] if ok else None,
        "message": "success" if ok else (job.error or "error"),
        "pid": job.pid,
        "queue_id": job.seq,
        "run_time": round(job.result["run_time"], 6) if ok else round(max(0.0, finished - started), 6),
        "queue_time": round(max(0.0, started - created), 6),
        "total_time": round(max(0.0, finished - created), 6),
        "queue_length": job.queue_length,
        "build_number": build_number,
    }


@router.post(ENDPOINT, openapi_extra=_schema(), summary="Silence intervals (FFmpeg silencedetect semantics)",
             responses={200: {"description": "the envelope; `response` is the interval list"},
                        202: {"description": "accepted; the envelope goes to `webhook_url`"},
                        400: {"description": "invalid request payload"}, 401: {"description": "unauthorized"},
                        413: {"description": "input over the size limit"},
                        429: {"description": "queue full (MAX_QUEUE_LENGTH)"}})
async def silence(request: Request) -> Any:
    owner = owner_of(request)
    body: SilenceRequest = await parse_body(request, SilenceRequest)
    try:
        noise = body.noise if body.noise is not None else "-30dB"
        parse_noise_db(noise)
        validate_duration(body.duration)
        start = parse_time(body.start, name="start")
        end = parse_time(body.end, name="end")
        if start is not None and end is not None and end <= start:
            raise InvalidParameter(f"end={body.end!r} must be after start={body.start!r}")
    except InvalidParameter as exc:
        raise ApiError(400, str(exc)) from None
    await precheck(request, body.media_url, "media_url")
    if body.webhook_url is not None:
        await precheck(request, body.webhook_url, "webhook_url")
    runner = request.app.state.runner
    params = {"noise": noise, "duration": body.duration, "mono": body.mono, "start": start, "end": end,
              "id": body.id}
    job = await runner.submit(owner=owner, api="silence", kind="silence", params=params, input_url=body.media_url,
                              webhook_url=body.webhook_url, sync=body.webhook_url is None)
    set_job(request, job.id)
    if body.webhook_url is not None:
        return strict_json({"code": 202, "id": body.id, "job_id": job.id, "message": "queued",
                            "queue_length": job.queue_length}, 202)
    job = await runner.wait_done(job.id)
    out = envelope(job, request.app.state.config.build_number)
    return strict_json(out, out["code"])


@router.get(ENDPOINT + "/{job_id}", summary="The envelope of a silence job (an addition to the document)",
            responses={202: {"description": "not finished"}, 404: {"description": "no such job for this key"}})
async def silence_job(job_id: str, request: Request) -> Any:
    owner = owner_of(request)
    job = request.app.state.runner.store.get(job_id)
    if job is None or job.owner != owner or job.api != "silence":
        raise ApiError(404, f"no silence job {job_id!r}")
    set_job(request, job.id)
    if not job.done:
        return strict_json({"code": 202, "id": job.params.get("id"), "job_id": job.id, "message": job.state}, 202)
    out = envelope(job, request.app.state.config.build_number)
    return strict_json(out, out["code"])


def register(runner: Any, build_number: str) -> None:
    """The webhook body of a silence job: its envelope."""
    runner.register_webhook_body("silence", lambda job: envelope(job, build_number))
