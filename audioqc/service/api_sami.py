"""SAMI LoudnessDetect: ``POST /api/v1/invoke?namespace=LoudnessDetect`` (sami-loudness-detect.txt).

The body is SAMI's general request: ``payload`` (JSON text: ``url``, ``audio_info``) and/or
``data`` (the audio, standard base64); ``appkey``, ``token``, ``namespace`` and ``version`` may be
in the query or the body. ``data`` wins over ``payload.url``, as SAMI says. ``audio_info.format =
"pcm"`` means raw 16-bit little-endian PCM: ``audio_info.sample_rate`` and ``audio_info.channel``
are then required and the bytes are read as such (a WAV header is put in front); other formats
are recognised from the bytes, so ``audio_info`` is a hint that changes nothing.

The job runs the CLI's call, ``diagnose(url, only="loudness").blocks["loudness"].to_sami()``
(``audioqc loudness --sami``): ``{"loudness": LUFS, "peak": linear sample peak}``, ``-100`` when the
input is too quiet to measure. The answer is ``{"task_id", "namespace", "payload", "status_code":
20000000, "status_text": "OK"}``: SAMI's general protocol's success code. No 10-minute or 100 MB
limit: the server's own ``--max-upload-mb`` applies.

Auth: ``x-api-key``, or SAMI's ``token`` (query or body) holding an accepted key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import struct
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .common import openapi_body, parse_body, precheck, set_job, strict_json, validation_message
from .errors import ApiError

router = APIRouter(tags=["sami"])
NAMESPACE = "LoudnessDetect"
#: SAMI's success status (its general protocol's 20000000, text "OK").
SUCCESS_CODE = 20000000


class InvokeRequest(BaseModel):
    """SAMI's general request body (unknown fields are ignored, as SAMI's clients send others)."""

    model_config = ConfigDict(extra="ignore")

    payload: str | None = Field(default=None, description="JSON text: {\"url\": ..., \"audio_info\": {...}}")
    data: str | None = Field(default=None, description="the audio, standard base64 (RFC 4648)")
    appkey: str | None = None
    token: str | None = None
    namespace: str | None = None
    version: str | None = None


class AudioInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: str | None = None
    sample_rate: int | None = Field(default=None, ge=1, le=768000)
    channel: int | None = Field(default=None, ge=1, le=64)


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str | None = None
    audio_info: AudioInfo | None = None


def _wav_header(n_bytes: int, rate: int, channels: int) -> bytes:
    """A 16-bit PCM WAV header for ``n_bytes`` of samples."""
    block = 2 * channels
    return (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate,
            rate * block, block, 16) + b"data" + struct.pack("<I", n_bytes))


@router.post("/api/v1/invoke", openapi_extra=openapi_body(InvokeRequest),
             summary="SAMI LoudnessDetect: {loudness, peak}",
             responses={400: {"description": "bad request"}, 401: {"description": "no valid key or token"},
                        413: {"description": "audio over the size limit"}, 429: {"description": "queue full"}})
async def invoke(request: Request, namespace: str | None = None, version: str | None = None,
                 token: str | None = None, appkey: str | None = None) -> Any:
    body: InvokeRequest = await parse_body(request, InvokeRequest)
    owner = getattr(request.state, "owner", None)
    if owner is None:
        owner = request.app.state.keys.owner(body.token)
        if owner is None:
            raise ApiError(401, "Unauthorized")
    ns = namespace or body.namespace
    if ns != NAMESPACE:
        raise ApiError(400, f"namespace={ns!r}: this server provides {NAMESPACE}")
    try:
        payload = Payload.model_validate(json.loads(body.payload)) if body.payload else Payload()
    except json.JSONDecodeError:
        raise ApiError(400, "payload is not JSON text") from None
    except ValidationError as exc:
        raise ApiError(400, "payload: " + validation_message(exc)) from None
    runner = request.app.state.runner
    config = request.app.state.config
    info = payload.audio_info or AudioInfo()
    job_id = str(uuid.uuid4())
    if body.data:
        if len(body.data) > config.max_media_bytes * 4 // 3 + 4:
            raise ApiError(413, f"data is over this server's limit of {config.max_media_bytes} bytes")
        try:
            audio = base64.b64decode(body.data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "data is not standard base64") from None
        if not audio:
            raise ApiError(400, "data is empty")
        ext = "bin"
        if (info.format or "").lower() == "pcm":
            if info.sample_rate is None or info.channel is None:
                raise ApiError(400, "audio_info.format 'pcm' needs audio_info.sample_rate and audio_info.channel")
            audio = _wav_header(len(audio) - len(audio) % (2 * info.channel), info.sample_rate, info.channel) + audio
            ext = "wav"
        path = os.path.join(runner.inputs_dir, f"{job_id}.{ext}")
        with open(path, "wb") as f:
            f.write(audio)
        try:
            job = await runner.submit(owner=owner, api="sami", kind="loudness", params={"input_name": "data"},
                                      input_path=path, sync=True, job_id=job_id)
        except BaseException:
            os.unlink(path)
            raise
    elif payload.url:
        await precheck(request, payload.url, "payload.url")
        job = await runner.submit(owner=owner, api="sami", kind="loudness", params={}, input_url=payload.url,
                                  sync=True, job_id=job_id)
    else:
        raise ApiError(400, "give the audio as data (base64) or payload.url")
    set_job(request, job.id)
    job = await runner.wait_done(job.id)
    if job.state != "succeeded":
        return strict_json(
            {
                "task_id": job.id,
                "namespace": NAMESPACE,
                "status_code": (job.error_status or 500) * 100000,
                "status_text": job.error or "error",
            },
            job.error_status or 500,
        )
    return strict_json({"task_id": job.id, "namespace": NAMESPACE,
                        "payload": json.dumps(job.result["result"], allow_nan=False),
                        "status_code": SUCCESS_CODE, "status_text": "OK"})
