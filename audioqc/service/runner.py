"""The job queue and the worker pool: every job's life from acceptance to its result.

A job is accepted (one row in :class:`~.store.JobStore`), its remote input downloaded by the
server (``downloading``, through :class:`~.netguard.NetGuard`, at most :data:`DOWNLOAD_SLOTS` at
once), queued in arrival order (``queued``), run in a worker process (``running``), its output
PUT where the client asked, and finished (``succeeded``/``failed``). At most ``max_queue`` jobs are
unfinished at any time; one more is refused (429) before anything is stored.

Workers are processes (the analysis is CPU-bound and the GIL would serialise threads), forked from
a fork server that preloaded :mod:`audioqc.service.worker` (numpy, PyAV, the analyzers) as the
audit's pool does (flows/runner.py), and started and warmed when the server starts: a request never
pays an interpreter's start-up, an import or a model load. Progress comes from the engine
(``diagnose``'s and ``denoise_file``'s ``progress`` callbacks) over a multiprocessing queue.

On start-up, every unfinished job of the database is picked up again: downloads restart, jobs that
were queued or running are queued again in their original order, undelivered webhooks are sent.
A worker that dies (killed, out of memory) fails nothing at once: its jobs are queued again, and
fail after :data:`MAX_ATTEMPTS` tries. A job running longer than ``job_timeout_s`` is failed and its
worker killed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import os
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .config import ServiceConfig
from .errors import QueueFull
from .netguard import FetchError, NetGuard, redact
from .store import Job, JobStore

__all__ = ["Runner", "PRELOAD", "MAX_ATTEMPTS", "DOWNLOAD_SLOTS"]

log = logging.getLogger("audioqc.service")

#: Modules the fork server imports once for every worker.
PRELOAD = ["audioqc.service.worker"]
#: Tries of a job whose worker died under it.
MAX_ATTEMPTS = 3
#: Downloads at once.
DOWNLOAD_SLOTS = 8
_EXT = re.compile(r"^[a-z0-9]{1,5}$")


def url_extension(url: str) -> str | None:
    """The lower-case extension of a URL's path (``mp3``), if it looks like one."""
    try:
        path = urllib.parse.urlsplit(url).path
    except ValueError:
        return None
    name = path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return ext if _EXT.match(ext) else None


def _warm() -> int:
    """Run once in every worker at start-up: a tiny diagnose, so the first job pays no first-call costs."""
    import tempfile

    import numpy as np

    from audiolib import io
    from audiolib.diagnose import diagnose

    with tempfile.TemporaryDirectory(prefix="audioqc-warm-") as tmp:
        path = os.path.join(tmp, "warm.wav")
        io.write(path, np.zeros((2, 4800), np.float32), 48000, codec="pcm_s16le", sample_fmt="s16")
        diagnose(path, only="silence,loudness,audio_format")
    time.sleep(0.2)  # keep this worker busy so the next warm-up goes to another one
    return os.getpid()


class Runner:
    """Owns the queue, the pool and the job lifecycle (all on the server's event loop).

    Parameters
    ----------
    config : ServiceConfig
    store : JobStore
    guard : NetGuard
    """

    def __init__(self, config: ServiceConfig, store: JobStore, guard: NetGuard) -> None:
        self.config = config
        self.store = store
        self.guard = guard
        self.inputs_dir = os.path.join(config.data_dir, "inputs")
        self.outputs_dir = os.path.join(config.data_dir, "outputs")
        self.uploads_dir = os.path.join(config.data_dir, "uploads")
        for d in (self.inputs_dir, self.outputs_dir, self.uploads_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._queue: collections.deque[str] = collections.deque()
        self._active = 0
        self._progress: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._webhook_bodies: dict[str, Callable[[Job], dict[str, Any]]] = {}
        self._pool: ProcessPoolExecutor | None = None
        self._mpq: Any = None
        self._cond: asyncio.Condition | None = None
        self._download_slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.worker_pids: list[int] = []

    # start and stop ----------------------------------------------------------------------------

    def _context(self) -> multiprocessing.context.BaseContext:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx

    def _new_pool(self) -> ProcessPoolExecutor:
        from . import worker

        return ProcessPoolExecutor(max_workers=self.config.workers, mp_context=self._context(),
                                   initializer=worker.init_worker, initargs=(self._mpq,))

    async def start(self) -> None:
        """Start the pool (warmed), the progress reader, the dispatchers; recover the database's jobs."""
        self._loop = asyncio.get_running_loop()
        self._cond = asyncio.Condition()
        self._download_slots = asyncio.Semaphore(DOWNLOAD_SLOTS)
        self._mpq = self._context().Queue()
        threading.Thread(target=self._pump_progress, name="audioqc-progress", daemon=True).start()
        self._pool = self._new_pool()
        await self._warm_pool()
        for job in self.store.unfinished():
            self._active += 1
            if job.state == "downloading":
                self._spawn(self._download(job))
            else:
                if job.state == "running":
                    self.store.update(job.id, state="queued")
                self._queue.append(job.id)
        recovered = len(self._queue)
        for job in self.store.pending_webhooks():
            self._spawn(self._deliver_webhook(job.id))
        for _ in range(self.config.workers):
            self._spawn(self._dispatch())
        if self._active:
            log.info('{"event": "recovered", "unfinished_jobs": %d, "queued": %d}', self._active, recovered)

    async def _warm_pool(self) -> None:
        assert self._pool is not None
        futures = [asyncio.wrap_future(self._pool.submit(_warm)) for _ in range(self.config.workers)]
        self.worker_pids = sorted(set(await asyncio.gather(*futures)))

    async def stop(self) -> None:
        """Cancel the server-side tasks and end the workers (unfinished jobs stay in the database
        and are picked up by the next start)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._kill_pool()
        if self._mpq is not None:
            with contextlib.suppress(Exception):
                self._mpq.put_nowait(None)

    def _kill_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("background task failed", exc_info=(type(exc), exc, exc.__traceback__))

    # state and notifications --------------------------------------------------------------------

    def register_webhook_body(self, api: str, build: Callable[[Job], dict[str, Any]]) -> None:
        """How the webhook body of ``api``'s jobs is built from the finished job."""
        self._webhook_bodies[api] = build

    @property
    def queue_length(self) -> int:
        """Jobs waiting for a worker."""
        return len(self._queue)

    @property
    def active(self) -> int:
        """Jobs accepted and not finished."""
        return self._active

    def jobs_ahead(self, job_id: str) -> int:
        """Queued jobs ahead of ``job_id`` (0 when it is next or not queued)."""
        try:
            return self._queue.index(job_id)
        except ValueError:
            return 0

    def progress(self, job: Job) -> int:
        """Percent done: the engine's last report while running, 100 when succeeded."""
        if job.state == "succeeded":
            return 100
        return self._progress.get(job.id, 0)

    def _notify(self, job_id: str) -> None:
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()

    async def wait_change(self, job_id: str, timeout: float | None = None) -> None:
        """Return when ``job_id`` changes state or progress (or after ``timeout`` seconds)."""
        event = self._events.setdefault(job_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def wait_done(self, job_id: str) -> Job:
        """The job once it has succeeded or failed."""
        while True:
            event = self._events.setdefault(job_id, asyncio.Event())
            job = self.store.get(job_id)
            if job is None or job.done:
                assert job is not None
                return job
            await event.wait()

    def _pump_progress(self) -> None:
        """Thread: worker progress messages -> the event loop."""
        while True:
            try:
                item = self._mpq.get()
            except (EOFError, OSError):
                return
            if item is None:
                return
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_progress, *item)

    def _on_progress(self, job_id: str, percent: int) -> None:
        if percent > self._progress.get(job_id, -1):
            self._progress[job_id] = percent
            self._notify(job_id)

    # acceptance --------------------------------------------------------------------------------

    async def submit(self, *, owner: str, api: str, kind: str, params: dict[str, Any],
                     input_url: str | None = None, input_path: str | None = None, output_url: str | None = None,
                     output_ext: str | None = None, webhook_url: str | None = None, sync: bool = False,
                     job_id: str | None = None) -> Job:
        """Accept a job (or raise :class:`QueueFull`).

        Either ``input_url`` (downloaded into the data directory first) or ``input_path`` (a file
        already there: an upload, decoded base64 data). ``output_ext`` asks for an output file
        (``outputs/<id>.<ext>``); ``output_url``, if given, receives it by PUT.
        """
        if self._active >= self.config.max_queue:
            raise QueueFull(self.config.max_queue)
        job_id = job_id or str(uuid.uuid4())
        if input_url is not None:
            ext = url_extension(input_url)
            input_path = os.path.join(self.inputs_dir, job_id + (f".{ext}" if ext else ""))
        output_path = os.path.join(self.outputs_dir, f"{job_id}.{output_ext}") if output_ext else None
        job = self.store.insert_job(
            id=job_id, owner=owner, api=api, kind=kind, params=params, input_url=input_url, input_path=input_path,
            output_url=output_url, output_path=output_path, webhook_url=webhook_url, sync=sync,
            state="downloading" if input_url is not None else "queued", queue_length=len(self._queue))
        self._active += 1
        if input_url is not None:
            self._spawn(self._download(job))
        else:
            await self._enqueue(job.id)
        return job

    async def _enqueue(self, job_id: str, *, front: bool = False) -> None:
        assert self._cond is not None
        async with self._cond:
            if front:
                self._queue.appendleft(job_id)
            else:
                self._queue.append(job_id)
            self._cond.notify()
        self._notify(job_id)

    async def _download(self, job: Job) -> None:
        assert self._download_slots is not None and job.input_url and job.input_path
        try:
            async with self._download_slots:
                await self.guard.download(job.input_url, job.input_path)
        except FetchError as exc:
            self._finish(job.id, error=(exc.status, exc.message))
            return
        except Exception:
            log.exception("download of job %s failed", job.id)
            self._finish(job.id, error=(500, "internal error while downloading the input"))
            return
        self.store.update(job.id, state="queued", queued=time.time())
        await self._enqueue(job.id)

    # running -----------------------------------------------------------------------------------

    async def _dispatch(self) -> None:
        assert self._cond is not None
        while True:
            async with self._cond:
                await self._cond.wait_for(lambda: bool(self._queue))
                job_id = self._queue.popleft()
            for other in self._queue:  # their jobsAhead changed
                self._notify(other)
            try:
                await self._run(job_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job %s failed in the dispatcher", job_id)
                self._finish(job_id, error=(500, "internal error"))

    def _worker_params(self, job: Job) -> dict[str, Any]:
        names = {}
        if job.input_path:
            names[job.input_path] = redact(job.input_url) if job.input_url else job.params.get("input_name", "input")
        if job.output_path:
            names[job.output_path] = redact(job.output_url) if job.output_url else "output"
        return {**job.params, "input": job.input_path, "output": job.output_path, "_names": names,
                "_data_dir": self.config.data_dir}

    async def _run(self, job_id: str) -> None:
        job = self.store.get(job_id)
        if job is None or job.done:
            return
        self.store.update(job_id, state="running", started=time.time(), attempts=job.attempts + 1)
        self._progress[job_id] = 0
        self._notify(job_id)
        pool = self._pool
        if pool is None:
            return
        try:
            future = pool.submit(_run_job, job.id, job.kind, self._worker_params(job))
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), self.config.job_timeout_s)
        except BrokenProcessPool:
            if pool is self._pool:
                log.error('{"event": "worker_died", "job_id": "%s"}', job_id)
                self._kill_pool()
                self._pool = self._new_pool()
            if job.attempts + 1 >= MAX_ATTEMPTS:
                self._finish(job_id, error=(500, "the worker process ended unexpectedly (tried "
                                                 f"{MAX_ATTEMPTS} times)"))
            else:
                self.store.update(job_id, state="queued")
                await self._enqueue(job_id, front=True)
            return
        except TimeoutError:
            log.error('{"event": "job_timeout", "job_id": "%s"}', job_id)
            if pool is self._pool:
                self._kill_pool()
                self._pool = self._new_pool()
            self._finish(job_id, error=(504, f"the job ran longer than this server's limit of "
                                             f"{self.config.job_timeout_s:g} s"))
            return
        if outcome[0] != "ok":
            _, status, message, pid = outcome
            self._finish(job_id, error=(status, message), pid=pid)
            return
        _, result, pid, run_time = outcome
        if job.output_url and job.output_path:
            try:
                await self.guard.publish(job.output_url, job.output_path)
            except FetchError as exc:
                self._finish(job_id, error=(exc.status, f"the result could not be written: {exc.message}"), pid=pid)
                return
        self._finish(job_id, result={"result": result, "run_time": run_time}, pid=pid)

    def _finish(self, job_id: str, *, result: Any = None, error: tuple[int, str] | None = None,
                pid: int | None = None) -> None:
        job = self.store.get(job_id)
        if job is None or job.done:
            return
        fields: dict[str, Any] = {"finished": time.time(), "pid": pid}
        if error is not None:
            fields.update(state="failed", error_status=error[0], error=error[1])
        else:
            fields.update(state="succeeded", result=result)
        self.store.update(job_id, **fields)
        self._active -= 1
        self._progress.pop(job_id, None)
        if job.input_path and job.input_path.startswith(self.inputs_dir + os.sep):
            with contextlib.suppress(OSError):
                os.unlink(job.input_path)  # downloads and decoded data; uploads are kept
        self._notify(job_id)
        if job.webhook_url:
            self._spawn(self._deliver_webhook(job_id))

    # webhooks ----------------------------------------------------------------------------------

    async def _deliver_webhook(self, job_id: str) -> None:
        from .webhooks import deliver

        job = self.store.get(job_id)
        if job is None or not job.webhook_url:
            return
        build = self._webhook_bodies.get(job.api)
        if build is None:
            return
        delivered = await deliver(self.guard, job.webhook_url, build(job), attempts=self.config.webhook_attempts,
                                  backoff_s=self.config.webhook_backoff_s, timeout_s=self.config.webhook_timeout_s,
                                  job_id=job_id)
        self.store.update(job_id, webhook_state="delivered" if delivered else "failed")


def _run_job(job_id: str, kind: str, params: dict[str, Any]) -> tuple[Any, ...]:
    from .worker import run_job

    return run_job(job_id, kind, params)
