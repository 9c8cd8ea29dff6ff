"""audo.ai noise removal (audo-noise-removal.txt): upload, job, status, websocket, download.

- ``POST /v1/upload`` (multipart ``file``, optional ``?inputExt=wav``) -> ``{"fileId"}``. The body
  is parsed as it streams, straight into ``uploads/`` (never whole in memory), and cut off with 413
  past ``--max-upload-mb``.
- ``POST /v1/remove-noise`` ``{"input": fileId | URL, "outputExtension", "output" (a URL to PUT the
  result to), "noiseReductionAmount" (1..100, a number or its text as in the document; default
  100)}`` -> ``{"jobId"}``. The job runs ``denoise_file`` (``audioqc denoise``); the output format
  is ``outputExtension``, else the input's extension, else wav.
- ``GET /v1/remove-noise/{jobId}/status`` -> ``{"state": "downloading"}``, ``{"state": "queued",
  "jobsAhead": n}``, ``{"state": "in_progress", "percent": p}`` (the denoiser's real progress),
  ``{"state": "succeeded", "downloadPath"}`` or ``{"state": "failed", "reason"}``.
- ``WEBSOCKET /v1/wss/remove-noise/{jobId}/status``: the same messages as they change, closed
  after the final one.
- ``GET /v1/{downloadPath}`` (``dl/artifacts/clean/audo_enhanced_<jobId>.<ext>``): the result.
  Unlike audo's example, it needs the key too: a result is visible only to the key that made it.

File ids and download paths are looked up in the database, never joined to a path: nothing a
client sends can name a file outside the data directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from audiolib.denoise import validate_amount
from audiolib.errors import InvalidParameter
from audiolib.io import OUTPUT_FORMATS

from .common import openapi_body, owner_of, parse_body, precheck, set_job, strict_json
from .errors import ApiError
from .runner import url_extension
from .store import Job

router = APIRouter(tags=["audo noise removal"])
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_EXT = re.compile(r"^[a-z0-9]{1,5}$")
_DOWNLOAD = re.compile(r"^dl/artifacts/clean/audo_enhanced_([0-9a-f-]{36})\.([a-z0-9]{1,5})$")


def download_path(job: Job) -> str:
    return f"dl/artifacts/clean/audo_enhanced_{job.id}.{job.params['format']}"


def status_message(runner: Any, job: Job) -> dict[str, Any]:
    """The document's status object for ``job``."""
    if job.state == "downloading":
        return {"state": "downloading"}
    if job.state == "queued":
        return {"state": "queued", "jobsAhead": runner.jobs_ahead(job.id)}
    if job.state == "running":
        return {"state": "in_progress", "percent": runner.progress(job)}
    if job.state == "succeeded":
        return {"state": "succeeded", "downloadPath": download_path(job)}
    return {"state": "failed", "reason": job.error or "error"}


def _own_job(request: Request | WebSocket, owner: str, job_id: str) -> Job:
    job = request.app.state.runner.store.get(job_id) if _ID.match(job_id) else None
    if job is None or job.owner != owner or job.api != "audo":
        raise ApiError(404, f"no job {job_id!r}")
    return job


# upload ---------------------------------------------------------------------------------------

async def _receive_file(request: Request, dest: str, limit: int) -> int:  # noqa: C901 (parser callbacks share the part state)
    """Stream the multipart body's ``file`` part into ``dest``; returns its size in bytes."""
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise ApiError(400, "send the file as multipart/form-data with a field named 'file'")
    state: dict[str, Any] = {"field": b"", "value": b"", "headers": {}, "out": None, "size": 0, "found": False}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if disp.get(b"name") == b"file" and not state["found"]:
            state["found"] = True
            state["out"] = open(dest, "wb")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["out"] is not None:
            state["size"] += end - start
            if state["size"] > limit:
                raise ApiError(413, f"file is over this server's limit of {limit} bytes")
            state["out"].write(data[start:end])

    def on_part_end() -> None:
        if state["out"] is not None:
            state["out"].close()
            state["out"] = None
        state["headers"] = {}

    parser = MultipartParser(boundary, {"on_header_field": on_header_field, "on_header_value": on_header_value,
                                        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError:
        raise ApiError(400, "malformed multipart/form-data body") from None
    finally:
        if state["out"] is not None:
            state["out"].close()
    if not state["found"]:
        raise ApiError(400, "the multipart body has no field named 'file'")
    if state["size"] == 0:
        raise ApiError(400, "file is empty")
    return state["size"]


_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


@router.post("/v1/upload", openapi_extra=_UPLOAD_BODY, summary="Upload a file for later jobs",
             responses={400: {"description": "no file"}, 401: {"description": "unauthorized"},
                        413: {"description": "over the size limit"}})
async def upload(request: Request, inputExt: str | None = None) -> Any:  # noqa: N803 (the document's name)
    owner = owner_of(request)
    runner = request.app.state.runner
    ext = inputExt.strip(". ").lower() if inputExt else None
    if ext is not None and not _EXT.match(ext):
        raise ApiError(400, f"inputExt={inputExt!r}: a file extension such as wav")
    file_id = str(uuid.uuid4())
    path = os.path.join(runner.uploads_dir, file_id + (f".{ext}" if ext else ""))
    try:
        size = await _receive_file(request, path, request.app.state.config.max_media_bytes)
    except BaseException:
        if os.path.exists(path):
            os.unlink(path)
        raise
    runner.store.insert_upload(id=file_id, owner=owner, path=path, ext=ext, size=size)
    return strict_json({"fileId": file_id})


# jobs -----------------------------------------------------------------------------------------

class RemoveNoiseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="a fileId from /v1/upload, or a URL to download")
    outputExtension: str | None = Field(default=None, description="output format, e.g. mp3")
    output: str | None = Field(default=None, description="URL to PUT the result to")
    noiseReductionAmount: int | str | None = Field(default=None, description="1..100 (default 100)")


def _amount(value: int | str | None) -> int:
    if value is None:
        return 100
    try:
        number = int(value.strip()) if isinstance(value, str) else value
        return validate_amount(number)
    except (ValueError, InvalidParameter):
        raise ApiError(400, f"noiseReductionAmount={value!r}: an integer from 1 (almost none) to 100 (full)") from None


@router.post("/v1/remove-noise", openapi_extra=openapi_body(RemoveNoiseRequest), summary="Start a noise removal job",
             responses={400: {"description": "bad request"}, 401: {"description": "unauthorized"},
                        404: {"description": "no such fileId"}, 429: {"description": "queue full"}})
async def remove_noise(request: Request) -> Any:
    owner = owner_of(request)
    body: RemoveNoiseRequest = await parse_body(request, RemoveNoiseRequest)
    runner = request.app.state.runner
    amount = _amount(body.noiseReductionAmount)
    source = body.input.strip()
    input_url = input_path = None
    if _ID.match(source):
        up = runner.store.get_upload(source)
        if up is None or up.owner != owner:
            raise ApiError(404, f"no uploaded file {source!r}")
        input_path, in_ext = up.path, up.ext
    elif "://" in source:
        await precheck(request, source, "input")
        input_url, in_ext = source, url_extension(source)
    else:
        raise ApiError(400, "input: give a fileId from /v1/upload or a URL")
    ext = (body.outputExtension or "").strip(". ").lower() or (in_ext if in_ext in OUTPUT_FORMATS else "wav")
    if ext not in OUTPUT_FORMATS:
        raise ApiError(400, f"outputExtension={body.outputExtension!r}: one of {', '.join(OUTPUT_FORMATS)}")
    if body.output is not None:
        await precheck(request, body.output, "output")
    job = await runner.submit(owner=owner, api="audo", kind="denoise", params={"amount": amount, "format": ext,
                                                                                 "input_name": source},
                              input_url=input_url, input_path=input_path, output_url=body.output, output_ext=ext)
    set_job(request, job.id)
    return strict_json({"jobId": job.id})


@router.get("/v1/remove-noise/{jobId}/status", summary="A job's state",
            responses={401: {"description": "unauthorized"}, 404: {"description": "no such job for this key"}})
async def status(jobId: str, request: Request) -> Any:  # noqa: N803
    job = _own_job(request, owner_of(request), jobId)
    set_job(request, job.id)
    return strict_json(status_message(request.app.state.runner, job))


@router.websocket("/v1/wss/remove-noise/{jobId}/status")
async def status_stream(websocket: WebSocket, jobId: str) -> None:  # noqa: N803
    owner = websocket.scope.get("state", {}).get("owner")
    runner = websocket.app.state.runner
    try:
        job = _own_job(websocket, owner or "", jobId)
    except ApiError:
        await websocket.close(code=4404, reason="no such job")
        return
    await websocket.accept()
    last = None
    try:
        while True:
            job = runner.store.get(job.id)
            message = status_message(runner, job)
            if message != last:
                await websocket.send_json(message)
                last = message
            if job.done:
                break
            await runner.wait_change(job.id, timeout=15.0)
        await websocket.close()
    except (WebSocketDisconnect, asyncio.CancelledError, RuntimeError):
        return


@router.get("/v1/dl/{path:path}", summary="Download a result (downloadPath)",
            responses={401: {"description": "unauthorized"}, 404: {"description": "no such result for this key"}})
async def download(path: str, request: Request) -> Any:
    owner = owner_of(request)
    match = _DOWNLOAD.match("dl/" + path)
    if match is None:
        raise ApiError(404, "no such result")
    runner = request.app.state.runner
    job = runner.store.get(match.group(1))
    if (job is None or job.owner != owner or job.api != "audo" or job.state != "succeeded"
            or match.group(2) != job.params.get("format") or not job.output_path):
        raise ApiError(404, "no such result")
    real = os.path.realpath(job.output_path)
    if not real.startswith(os.path.realpath(runner.outputs_dir) + os.sep) or not os.path.isfile(real):
        raise ApiError(404, "no such result")
    set_job(request, job.id)
    return FileResponse(real, filename=os.path.basename(match.group(0)))
