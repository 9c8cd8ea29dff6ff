"""The worker fork server of the audit's process pool, started early (no Prefect imported here).

:class:`flows.runner.WarmProcessPoolTaskRunner` forks its workers from a ``forkserver`` that has
imported :data:`PRELOAD` (Prefect's task engine, pyarrow, audiolib, Prefect's collections: ~2 s
of imports on the reference machine).  :func:`prewarm` starts that server now, so that the imports
run while this process does something else (its own imports, the Prefect server's start-up);
the audit's start-up (:mod:`flows.startup`) calls it as soon as it knows that some file needs
analysis, and never otherwise.
"""

from __future__ import annotations

import multiprocessing
import threading

# What a worker needs before its first task (see the module).
PRELOAD = ["flows._preload"]

_lock = threading.Lock()


def context() -> multiprocessing.context.BaseContext:
    """The forkserver context with :data:`PRELOAD` set (before the server first starts)."""
    ctx = multiprocessing.get_context("forkserver")
    with _lock:
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def prewarm() -> None:
    """Start the fork server now (it imports :data:`PRELOAD` in the background).

    Returns at once; the first worker fork waits for the imports to finish.  Harmless to call more
    than once, and a no-op for the process pool's correctness if never called.
    """
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def running() -> bool:
    """Whether this process has started the fork server (and it has not been stopped)."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None) is not None
