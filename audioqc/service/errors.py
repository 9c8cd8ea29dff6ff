"""Each API's error bodies, chosen by the request's path.

- silence endpoint: its document's ``{"code": 400, "message": "Invalid request payload"}`` (the
  document's messages for 400/401/500), with ``detail`` naming the problem;
- SAMI (``/api/v1/invoke``): its response shape, ``{"task_id", "namespace", "status_code",
  "status_text"}``; ``status_code`` is the HTTP status times 100000 (SAMI's codes are eight digits,
  20000000 success) and ``status_text`` the problem;
- Audio Format (``/v1/videos:annotate``, a Google-style API): ``{"error": {"code", "message",
  "status"}}`` with the gRPC status name;
- Dolby Media API (``/media/...``): RFC 7807 problem details, ``{"type", "title", "status",
  "detail"}``, as Dolby's Media APIs answer;
- audo.ai (``/v1/...``): ``{"message": ...}``.

No body carries a traceback or a server path.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any

__all__ = ["ApiError", "api_of", "error_body", "QueueFull"]

_GRPC = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
         405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
         502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_SILENCE_MESSAGES = {400: "Invalid request payload", 401: "Unauthorized",
                     500: "An error occurred during the silence detection process"}


class ApiError(Exception):
    """An error answered with ``status`` and ``message`` in the shape of the API it happened in."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class QueueFull(ApiError):
    """The queue holds ``max_queue`` unfinished jobs (429)."""

    def __init__(self, limit: int) -> None:
        super().__init__(429, f"Too many requests: the queue is full ({limit} jobs, MAX_QUEUE_LENGTH); retry later")


def api_of(path: str) -> str:
    """The API a request path belongs to: silence, sami, format, dolby, audo or service."""
    if path.startswith("/v1/media/silence"):
        return "silence"
    if path.startswith("/api/v1/invoke"):
        return "sami"
    if path.startswith("/v1/videos"):
        return "format"
    if path.startswith("/media/"):
        return "dolby"
    if path.startswith("/v1/"):
        return "audo"
    return "service"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(api: str, status: int, message: str, *, namespace: str = "LoudnessDetect",
               instance: str | None = None) -> dict[str, Any]:
    """The body of an error answered with ``status`` by ``api`` (see the module)."""
    if api == "silence":
        doc = _SILENCE_MESSAGES.get(status)
        if doc is None:
            return {"code": status, "message": message}
        return {"code": status, "message": doc, **({"detail": message} if message != doc else {})}
    if api == "sami":
        return {"task_id": str(uuid.uuid4()), "namespace": namespace, "status_code": status * 100000,
                "status_text": message}
    if api == "format":
        return {"error": {"code": status, "message": message, "status": _GRPC.get(status, "UNKNOWN")}}
    if api == "dolby":
        title = _phrase(status)
        body = {"type": "/problem-types/" + title.lower().replace(" ", "-"), "title": title, "status": status,
                "detail": message}
        if instance:
            body["instance"] = instance
        return body
    if api == "audo":
        return {"message": message}
    return {"code": status, "message": message}
