"""One ASGI middleware in front of every route: API key, body size limit, structured access log.

- **Key**: ``x-api-key`` must be an accepted key (:class:`~.auth.KeyRing`); SAMI's clients send
  their ``token`` in the query (or the JSON body, checked by that route), so on ``/api/v1/invoke``
  the ``token`` query parameter is accepted as the key too. The owner id is put in the request's
  state for the routes. ``/openapi.json`` and ``/healthz`` are open (no data). 401 otherwise, in
  the API's error shape; a websocket without a key is refused with an HTTP 401 before the upgrade.
- **Body limit**: a ``Content-Length`` over the limit is answered 413 at once; a body without one
  is counted as it arrives and cut off at the limit (:class:`BodyTooLarge`, answered 413). The
  limit is the media limit for uploads and the JSON limit (room for base64 data) elsewhere.
- **Access log**: one JSON line per request on the ``audioqc.service.access`` logger: method, path
  (never the query, which may hold SAMI's token or a presigned URL), status, duration in ms, the
  job id the route set, the client address. Never the key.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from typing import Any

from .auth import KeyRing
from .errors import api_of, error_body

__all__ = ["ServiceMiddleware", "BodyTooLarge", "OPEN_PATHS"]

access_log = logging.getLogger("audioqc.service.access")

#: Paths served without a key.
OPEN_PATHS = frozenset({"/openapi.json", "/healthz"})


class BodyTooLarge(Exception):
    """The request body went past the limit while it was being read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body over this server's limit of {limit} bytes")
        self.limit = limit


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


class ServiceMiddleware:
    """See the module. ``media_limit``/``json_limit`` in bytes."""

    def __init__(self, app: Any, *, keys: KeyRing, media_limit: int, json_limit: int) -> None:
        self.app = app
        self.keys = keys
        self.media_limit = media_limit
        self.json_limit = json_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope.get("path", "")
        api = api_of(path)
        state = scope.setdefault("state", {})
        status_box: dict[str, Any] = {"status": None}
        try:
            owner = self.keys.owner(_header(scope, b"x-api-key"))
            if owner is None and path.startswith("/api/v1/invoke"):
                query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
                owner = self.keys.owner((query.get("token") or [None])[0])
                state["sami_body_token"] = owner is None  # the route may still find it in the body
            state["owner"] = owner
            if owner is None and path not in OPEN_PATHS and not state.get("sami_body_token"):
                await self._refuse(scope, receive, send, api, 401, "Unauthorized", status_box)
                return
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                status_box["status"] = 101
                return
            limit = self.media_limit if path.startswith("/v1/upload") else self.json_limit
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await self._refuse(scope, receive, send, api, 413,
                                   f"request body of {declared} bytes is over this server's limit of {limit} bytes",
                                   status_box)
                return
            received = 0

            async def limited_receive() -> dict[str, Any]:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message

            async def logged_send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status_box["status"] = message["status"]
                await send(message)

            await self.app(scope, limited_receive, logged_send)
        finally:
            record = {"method": scope.get("method", "WS"), "path": path, "status": status_box["status"],
                      "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                      "job_id": state.get("job_id"), "client": (scope.get("client") or ("", 0))[0]}
            access_log.info(json.dumps(record))

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, api: str, status: int, message: str,
                      status_box: dict[str, Any]) -> None:
        body = json.dumps(error_body(api, status, message, instance=scope.get("path"))).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        status_box["status"] = status
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
