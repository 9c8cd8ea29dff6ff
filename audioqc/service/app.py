"""The application: routes of the five APIs, the middleware, error handlers, start-up and shutdown."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from audiolib import __version__

from . import api_audo, api_dolby, api_format, api_sami, api_silence
from .auth import KeyRing
from .common import strict_json, validation_message
from .config import ServiceConfig
from .errors import ApiError, api_of, error_body
from .middleware import BodyTooLarge, ServiceMiddleware
from .netguard import NetGuard
from .runner import Runner
from .store import JobStore

__all__ = ["create_app"]

log = logging.getLogger("audioqc.service")
# httpx logs every request with its full URL at INFO: a presigned URL's query is a credential.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _error(request: Request, status: int, message: str) -> Any:
    return strict_json(error_body(api_of(request.url.path), status, message, instance=request.url.path), status)


def create_app(config: ServiceConfig) -> FastAPI:
    """The ASGI app serving ``config``; the pool starts and the database's jobs are picked up
    again when the app starts (its lifespan)."""
    keys = KeyRing(config.api_keys)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = JobStore(config.data_dir)
        guard = NetGuard(allow_private=config.allow_private_urls, allowed_networks=config.allowed_networks,
                         allow_s3=config.allow_s3, max_bytes=config.max_media_bytes,
                         timeout_s=config.download_timeout_s, hosts_only=config.hosts_only)
        runner = Runner(config, store, guard)
        api_silence.register(runner, config.build_number)
        app.state.config, app.state.keys, app.state.store = config, keys, store
        app.state.guard, app.state.runner = guard, runner
        await runner.start()
        log.info('{"event": "ready", "workers": %d, "worker_pids": %s}', config.workers, runner.worker_pids)
        try:
            yield
        finally:
            await runner.stop()
            await guard.aclose()
            store.close()

    app = FastAPI(title="audioqc service", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="The silence endpoint, SAMI LoudnessDetect, Audio Format, Dolby's Media API "
                              "diagnose/enhance and audo.ai noise removal on audioqc's engine (docs/service.md). "
                              "Every endpoint needs the x-api-key header.")
    app.add_middleware(ServiceMiddleware, keys=keys, media_limit=config.max_media_bytes,
                       json_limit=config.max_json_bytes)
    for module in (api_silence, api_sami, api_format, api_dolby, api_audo):
        app.include_router(module.router)

    @app.get("/healthz", summary="Liveness (no key needed)", tags=["service"])
    async def healthz(request: Request) -> Any:
        runner = request.app.state.runner
        return strict_json({"status": "ok", "version": __version__, "workers": config.workers,
                            "queue_length": runner.queue_length, "active_jobs": runner.active})

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Any:
        return _error(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Any:
        return _error(request, 400, validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        return _error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> Any:
        return _error(request, 413, str(exc))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Any:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(request, 500, "internal error")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {})["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}
            schema["security"] = [{"ApiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
