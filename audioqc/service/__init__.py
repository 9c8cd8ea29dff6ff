"""``audioqc serve``: the five hosted APIs audioqc replaces, over HTTP, on the same engine.

One ASGI application (FastAPI on uvicorn) with the endpoints of the silence endpoint
(``/v1/media/silence``), SAMI LoudnessDetect (``/api/v1/invoke``), the Audio Format feature
(``/v1/videos:annotate``), Dolby's Media API (``/media/diagnose``, ``/media/enhance``) and audo.ai's
noise removal (``/v1/upload``, ``/v1/remove-noise``, its status and websocket, downloads). Jobs run
the library calls the CLI runs, in worker processes forked from a preloaded fork server; jobs and
uploads persist in SQLite in the data directory. docs/service.md is the manual.

Modules: :mod:`.config` (settings, keys), :mod:`.auth`, :mod:`.store` (SQLite jobs and uploads),
:mod:`.netguard` (URL checks, guarded downloads, PUTs and POSTs), :mod:`.runner` (queue, worker
pool, job lifecycle), :mod:`.worker` (what a worker process runs), :mod:`.webhooks`,
:mod:`.errors` (each API's error bodies), :mod:`.middleware` (auth, body limit, access log),
:mod:`.app` (the app factory) and one module of routes per API (``api_*``).
"""

from __future__ import annotations

from .config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def create_app(config: ServiceConfig):  # noqa: ANN201 (FastAPI imported lazily)
    """The ASGI application for ``config`` (see :func:`audioqc.service.app.create_app`)."""
    from .app import create_app as _create

    return _create(config)
