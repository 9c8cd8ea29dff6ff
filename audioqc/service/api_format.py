"""Audio Format: ``POST /v1/videos:annotate`` (nobrolla-audio-format.txt).

``{"inputUri", "features": ["AUDIO_FORMAT"], "videoContext": {"audioFormatConfig":
{"compressed_channels": [...], "alarmSettings": {...}}}}`` -> what ``audioqc format`` prints:
``{"audioFormatAnnotations": [...], "compressedChannels": [...], "alarms": [...]}``. The
configuration is parsed by :func:`audioqc.audio_format_config.parse_audio_format_config`, the
CLI's own parser (``alarmSettings.enabled`` defaults to false here, as the document says; the CLI
turns a settings file on by default).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from audiolib.errors import InvalidParameter
from audioqc.audio_format_config import parse_audio_format_config, parse_compressed_channels

from .common import openapi_body, owner_of, parse_body, precheck, set_job, strict_json
from .errors import ApiError

router = APIRouter(tags=["audio format"])


class AlarmSettingsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    sensitivity: float = Field(default=1.0, ge=0, le=1)
    secsInAlarmDuration: float = Field(default=10.0, ge=0)
    allowCompressedAudio: int = Field(default=0, ge=0, le=255)
    allowableAudioFormat: int = Field(default=255, ge=0, le=255)


class AudioFormatConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    compressed_channels: list[int] = Field(default_factory=list)
    alarmSettings: AlarmSettingsModel | None = None


class VideoContext(BaseModel):
    model_config = ConfigDict(extra="ignore")

    audioFormatConfig: AudioFormatConfig | None = None


class AnnotateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    inputUri: str = Field(json_schema_extra={"format": "uri"})
    features: list[str] = Field(min_length=1)
    videoContext: VideoContext | None = None


@router.post("/v1/videos:annotate", openapi_extra=openapi_body(AnnotateRequest),
             summary="Audio Format annotations over time, compressed audio, alarms",
             responses={400: {"description": "bad request"}, 401: {"description": "unauthorized"},
                        413: {"description": "input over the size limit"}, 429: {"description": "queue full"}})
async def annotate(request: Request) -> Any:
    owner = owner_of(request)
    body: AnnotateRequest = await parse_body(request, AnnotateRequest)
    if "AUDIO_FORMAT" not in body.features:
        raise ApiError(400, f"features={body.features!r}: this server provides AUDIO_FORMAT")
    config = body.videoContext.audioFormatConfig if body.videoContext else None
    alarms = None
    compressed: tuple[int, ...] = ()
    if config is not None:
        raw = config.model_dump(exclude_none=True)
        try:
            if config.alarmSettings is not None:
                settings, compressed = parse_audio_format_config(raw, "videoContext.audioFormatConfig",
                                                                 enabled_default=False)
                alarms = dataclasses.asdict(settings)
            else:
                compressed = parse_compressed_channels(raw.get("compressed_channels", []),
                                                       "videoContext.audioFormatConfig")
        except InvalidParameter as exc:
            raise ApiError(400, str(exc)) from None
    await precheck(request, body.inputUri, "inputUri")
    runner = request.app.state.runner
    job = await runner.submit(owner=owner, api="format", kind="format", input_url=body.inputUri, sync=True,
                              params={"compressed_channels": sorted(set(compressed)), "alarms": alarms})
    set_job(request, job.id)
    job = await runner.wait_done(job.id)
    if job.state != "succeeded":
        raise ApiError(job.error_status or 500, job.error or "error")
    return strict_json(job.result["result"])
