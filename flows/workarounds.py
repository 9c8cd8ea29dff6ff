"""Workarounds for Prefect 3.8's costs in the audit, each measured and each undone where another
Prefect does not need it: the submit loop's garbage (futures in reference cycles), the flow run's
heartbeat join, and certifi's bundle loaded for every client of a plain-HTTP local server."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def frozen_gc() -> Iterator[None]:
    """Let the submit loop free each batch's result promptly, at a few ms per collection.

    A finished task's future sits in a reference cycle inside Prefect's process-pool futures
    (prefect 3.8: the chained future's done-callbacks refer back to it), so the batch's Arrow table
    lives until CPython's next full collection, which its generational thresholds put off for
    hundreds of batches in a process holding ~450,000 objects after Prefect's imports.  Measured on
    20,000 empty objects (batches of 256): RSS rose ~0.7 MB per batch, 333 -> 421 MB, and 40
    finished futures were still alive after 40 batches; 100,000 objects peaked at 593 MB.
    ``gc.collect()`` after each batch keeps it flat but costs 0.4-0.6 s a call over all those
    objects; :func:`gc.freeze` first moves the objects alive before the loop (imports, the
    listing) out of the collector's view, so each collection scans only the loop's own objects
    (2-30 ms) and RSS stays at 379 MB.  :func:`gc.unfreeze` afterwards hands them back.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def heartbeat_thread_not_joined() -> Iterator[None]:
    """While active, a flow run does not wait for its heartbeat thread when it ends.

    The flow engine (prefect 3.8, ``flow_engine._send_heartbeats``) sends a heartbeat when a run
    starts and then every 180 s from a daemon thread that sleeps in whole seconds; when the run
    ends it sets the thread's stop event and joins it, which waits for the rest of the current
    second: 0.54 s of the 1.41 s an unchanged re-audit of the demo spent in its flow (cProfile).
    The engine has a switch for not joining (``join_on_exit``, used by its async engine); this
    sets it. The heartbeats are the same: the thread still stops at its next check, and it sends
    nothing once the run is final."""
    import inspect

    import prefect.flow_engine as engine

    original = getattr(engine, "_send_heartbeats", None)
    if original is None or "join_on_exit" not in inspect.signature(original).parameters:
        yield  # another Prefect: left as it is
        return

    def send_heartbeats(flow_engine: Any, join_on_exit: bool = True) -> Any:
        return original(flow_engine, join_on_exit=False)

    engine._send_heartbeats = send_heartbeats  # type: ignore[assignment]
    try:
        yield
    finally:
        engine._send_heartbeats = original


def one_certificate_file(directory: str) -> str | None:
    """A CA file holding one certificate (the first of certifi's bundle), written in ``directory``.

    For the temporary server only, which is plain HTTP on 127.0.0.1: no certificate is ever
    verified, but Prefect's client still builds a verifying SSL context from its CA file every
    time a client is made (prefect 3.8, ``SyncPrefectClient.__init__``), and loading certifi's
    ~150-certificate bundle costs ~64 ms a time on the reference machine (measured), with two
    clients made per task in a worker.  ``PREFECT_API_SSL_CERT_FILE`` pointing at this file
    makes that 0.7 ms.  A user's own API (``PREFECT_API_URL``) is left alone.  None (Prefect's
    default then) if certifi's bundle cannot be read.
    """
    import os
    import re

    try:
        import certifi

        with open(certifi.where(), encoding="ascii") as f:
            first = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n", f.read(), re.S)
        if not first:
            return None
        path = os.path.join(directory, "one-ca.pem")
        with open(path, "w", encoding="ascii") as f:
            f.write(first.group(0))
        return path
    except (ImportError, OSError, UnicodeDecodeError):
        return None
