"""The audit's compute pool: worker processes that import audiolib and never Prefect.

The audit's Prefect tasks (``diagnose batch``, ``remedy``, ``rediagnose``) run in threads of the
flow's process, on Prefect's ``ThreadPoolTaskRunner``: Prefect records every task run there as it
always does (states, names, logs, retries). Each task sends its CPU work (:mod:`tasks.work`) to
this pool with :func:`run` and waits for it, so the threads only wait and talk to the API.

Why not Prefect's process pool, as before: its workers must import Prefect's task engine before
their first task (~1.3 s of the ~2 s a worker imported, on the critical path of every audit that
analyses anything: the first batch began ~2.7 s after launch with a server running, against the
plain loop's ~0.7 s), rebuild the flow's context for every task, and carry Prefect's pages and
threads. These workers import :data:`PRELOAD` (audiolib, the report schema: ~0.7 s, once, in the
fork server) and are ``fork``\\ s of it.

- Started early: the audit's start-up (:mod:`flows.startup`) knows which files need analysis
  before Prefect is imported, starts the pool then and keeps it busy with the run's batches
  until the flow begins (:func:`prefetch`); the flow's tasks for those batches take their
  results (:func:`take`) instead of sending them again, and are recorded as before.
- A worker that dies (killed by the system, out of memory) breaks a ``ProcessPoolExecutor``:
  every unfinished call fails with ``BrokenProcessPool``. :func:`run` then replaces the pool once
  per breakage and raises :class:`WorkerDied`, and the caller decides (the analysis task analyses
  the batch's files again one at a time, and a file whose worker dies again gets an error row).
- No pool configured (a task called outside an audit, a Dask worker): :func:`run` runs the work
  in the calling thread.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, TypeVar

from .handoff import offer
from .handoff import take as _take

T = TypeVar("T")

#: What the fork server imports once, before it forks any worker: audiolib, the report schema, the
#: work functions (no Prefect).
PRELOAD = ["flows._preload"]

_lock = threading.RLock()
_pool: ProcessPoolExecutor | None = None
_generation = 0  # bumped when a broken pool is replaced
_workers: int | None = None  # the size of the pool this process's audit uses (None: no pool)
_killed = False  # the pool was killed (an interrupted audit): calls fail rather than run here


class WorkerDied(RuntimeError):
    """The worker running the call died (killed by the system, out of memory, a crash)."""


def context() -> multiprocessing.context.BaseContext:
    """The forkserver context with :data:`PRELOAD` set (before the server first starts)."""
    ctx = multiprocessing.get_context("forkserver")
    with _lock:
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def prewarm() -> None:
    """Start the fork server now (it imports :data:`PRELOAD` in the background); returns at once.
    The first worker's fork waits for those imports. Harmless to call more than once."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def running() -> bool:
    """Whether this process has started the fork server (and it has not been stopped)."""
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None) is not None


def _worker_init(environ: dict[str, str], cwd: str) -> None:
    """A worker's start: the environment and working directory of the process that opened the pool
    (the fork server has those of the moment it started, which an earlier audit in the same
    process may have started: S3 endpoints and credentials, settings, relative paths)."""
    from flows.lifetime import die_with_parent

    die_with_parent()  # a worker ends with the fork server, which ends with the audit (flows/lifetime.py)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    try:
        os.chdir(cwd)
    except OSError:
        pass


def _started() -> int:
    return os.getpid()


def _new_pool(workers: int) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context(), initializer=_worker_init,
                               initargs=(dict(os.environ), os.getcwd()))
    for _ in range(workers):  # every worker starts now, not one per call submitted
        pool.submit(_started)
    return pool


def configure(workers: int) -> None:
    """Use a pool of ``workers`` processes for this process's audit (started by :func:`start` or by
    the first :func:`run`)."""
    global _workers, _killed
    if workers < 1:
        raise ValueError(f"workers={workers!r} must be >= 1")
    with _lock:
        _workers, _killed = workers, False


def configured() -> int | None:
    """The pool size in use (None: no pool, work runs in the calling thread)."""
    return _workers


def start(workers: int | None = None) -> ProcessPoolExecutor:
    """The pool, started now if it is not running (``workers``: configure first)."""
    global _pool
    with _lock:
        if workers is not None:
            configure(workers)
        if _workers is None:
            raise RuntimeError("the compute pool is not configured")
        if _pool is None:
            _pool = _new_pool(_workers)
        return _pool


def _current() -> tuple[ProcessPoolExecutor | None, int]:
    with _lock:
        if _workers is None:
            return None, _generation
        return start(), _generation


def _replace(generation: int) -> None:
    """A new pool for the broken one (once per breakage, however many calls saw it break)."""
    global _pool, _generation
    with _lock:
        if generation != _generation or _pool is None:
            return
        broken, _pool = _pool, None
        _generation += 1
    broken.shutdown(wait=False, cancel_futures=True)


def submit(fn: Callable[..., T], *args: Any) -> tuple[Future[T] | None, int]:
    """``fn(*args)`` sent to the pool now: its future and the pool's generation (None, if no pool
    is configured: nothing was sent)."""
    pool, generation = _current()
    if pool is None:
        return None, generation
    try:
        return pool.submit(fn, *args), generation
    except BrokenProcessPool:  # a worker died since the last call: a new pool, once
        _replace(generation)
        pool, generation = _current()
        if pool is None:
            return None, generation
        return pool.submit(fn, *args), generation


def wait(future: Future[T], generation: int) -> T:
    """The result of a call :func:`submit` sent; :class:`WorkerDied` if its worker died."""
    try:
        return future.result()
    except BrokenProcessPool as exc:
        _replace(generation)
        raise WorkerDied(str(exc) or "a worker process died") from exc


def run(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a pool worker (in this thread if no pool is configured); raises what
    ``fn`` raises, or :class:`WorkerDied`."""
    future, generation = submit(fn, *args)
    if future is None:
        if _killed:  # the audit was interrupted: its tasks' last calls must not run in its process
            raise WorkerDied("the compute pool was stopped")
        return fn(*args)
    return wait(future, generation)


def prefetch(key: Any, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
    """Send ``fn(*args)`` now; the task that needs it later takes it with :func:`take` ``(key)``.
    Its future (None: no pool, nothing sent)."""
    future, generation = submit(fn, *args)
    if future is not None:
        offer("compute", key, (future, generation))
    return future


def take(key: Any) -> tuple[Future[Any], int] | None:
    """A call :func:`prefetch` sent for ``key`` (once), or None."""
    taken = _take("compute", key)
    return taken if isinstance(taken, tuple) else None


def shutdown(kill: bool = False) -> None:
    """Stop the pool (``kill``: its workers now, without waiting for their calls) and forget the
    configuration."""
    global _pool, _workers, _killed
    with _lock:
        pool, _pool, _workers = _pool, None, None
        _killed = kill and pool is not None
    if pool is None:
        return
    if kill:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.kill()
    pool.shutdown(wait=not kill, cancel_futures=True)


@contextmanager
def session(workers: int, start_now: bool = True) -> Iterator[None]:
    """A pool of ``workers`` for the block (started now, or by the first call), stopped after it;
    killed if the block ends with an exception (an interrupt must not wait for hour-long files)."""
    configure(workers)
    if start_now:
        start()
    ok = False
    try:
        yield
        ok = True
    finally:
        shutdown(kill=not ok)
