"""Webhook delivery: the finished job's body POSTed to the client's URL, retried with backoff.

Each delivery is its own task on the event loop, apart from the queue and the workers: a webhook
that never answers costs a waiting coroutine, never a worker or a queue slot. An attempt that
gets no 2xx within ``timeout_s`` is retried after ``backoff_s``, then twice that, and so on, up to
``attempts`` attempts. The URL goes through the same guard as inputs (a webhook is a request the
server makes on a client's behalf). Whether it was delivered is stored with the job; a restarted
server sends the ones still pending.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from .netguard import FetchError, NetGuard, redact

__all__ = ["deliver"]

log = logging.getLogger("audioqc.service")


async def deliver(guard: NetGuard, url: str, body: dict[str, Any], *, attempts: int, backoff_s: float,
                  timeout_s: float, job_id: str) -> bool:
    """POST ``body`` to ``url`` until a 2xx answer; returns whether one came."""
    data = json.dumps(body, allow_nan=False).encode()
    delay = backoff_s
    for attempt in range(1, attempts + 1):
        try:
            status = await guard.post_json(url, data, timeout_s=timeout_s)
            outcome = f"HTTP {status}"
            if 200 <= status < 300:
                log.info(json.dumps({"event": "webhook", "job_id": job_id, "url": redact(url), "attempt": attempt,
                                     "status": status}))
                return True
        except FetchError as exc:
            outcome = exc.message
            if exc.status == 400:  # refused by the guard: trying again changes nothing
                attempts = attempt
        except (TimeoutError, OSError) as exc:
            outcome = type(exc).__name__
        log.warning(json.dumps({"event": "webhook_failed", "job_id": job_id, "url": redact(url), "attempt": attempt,
                                "outcome": outcome}))
        if attempt < attempts:
            await asyncio.sleep(delay)
            delay *= 2
    return False
