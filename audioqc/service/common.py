"""Helpers shared by the routes: request bodies, owners, strict JSON responses, URL pre-checks."""

from __future__ import annotations

import copy
import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from audioqc.jsonout import clean

from .errors import ApiError
from .netguard import FetchError

__all__ = ["parse_body", "openapi_body", "owner_of", "strict_json", "validation_message", "precheck", "set_job"]


def validation_message(exc: ValidationError | Any) -> str:
    """Pydantic errors as one line: ``field: problem; ...`` (never the offending values)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body validated as ``model``, whatever the Content-Type (``curl -d`` sends
    ``application/x-www-form-urlencoded``, and the documents' examples use it).

    Raises
    ------
    ApiError
        400 naming the problem.
    """
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "a JSON request body is required")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the request body is not JSON ({exc.__class__.__name__})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, validation_message(exc)) from None


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references replaced by the definitions (no recursion here)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref.split("/")[-1]]))
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON request body."""
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": _inline(model.model_json_schema())}}}}


def owner_of(request: Request) -> str:
    """The owner id the middleware found (401 if none: routes that reach here need one)."""
    owner = getattr(request.state, "owner", None)
    if not owner:
        raise ApiError(401, "Unauthorized")
    return owner


def set_job(request: Request, job_id: str) -> None:
    """Name the job in the access log line of this request."""
    request.state.job_id = job_id


def strict_json(body: Any, status: int = 200) -> Response:
    """A JSON response without NaN or Infinity (null instead)."""
    return Response(json.dumps(clean(body), allow_nan=False, ensure_ascii=False), status_code=status,
                    media_type="application/json")


async def precheck(request: Request, url: str, what: str) -> None:
    """Check ``url``'s form and its host's addresses now, so a refused URL is a 400 at once (the
    address is checked again when it is used)."""
    guard = request.app.state.guard
    try:
        parts = guard.check_url(url, what)
        if parts.scheme.lower() != "s3":
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            await guard.resolve(parts.hostname or "", port, what)
    except FetchError as exc:
        raise ApiError(exc.status, exc.message) from None
