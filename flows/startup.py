"""What an audit does before its flow starts, while Prefect is still being imported.

The fixed cost of a small audit was start-up, run one step after the other: Prefect's imports in
the CLI (~1 s, plus ~1.8 s for the module of Prefect's temporary server), the temporary server's
own start (~4-8 s on the reference machine), then, inside the flow, the listing and the report's
state, then a process pool that a re-audit never used (its shutdown waited ~1-3.5 s for workers
forked from a fork server still importing).  :meth:`Startup.begin` runs, before Prefect is
imported:

1. which Prefect API the audit records on (:func:`flows.server.resolve`): a configured one, a
   background server that is up (its use registered, :func:`flows.server.acquire_background`),
   else, with ``auto_start`` (the CLI's default), the background server started now, or else a
   temporary server; a server started now starts while everything below runs;
2. the listing and the report's state (the reuse check): whether any file needs analysis;
3. only if one does, the compute pool (:mod:`tasks.compute`: its fork server's imports then
   overlap with this process's own), and the run's batches are sent to it, a worker's worth
   at a time, until the flow begins (:func:`tasks.work.prefetch`): the flow's tasks for those
   batches take their rows.

The flow's ``list media`` and ``read report state`` tasks are still run and recorded in Prefect;
they take what was read here (:mod:`tasks.handoff`) instead of reading it again.  If anything here fails
(a listing that needs a retry, a report that cannot be read), nothing is handed over and the tasks
do it themselves, with their retries.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flows import server as servers
from tasks.handoff import clear, offer, take  # noqa: F401 (take: what the flow's tasks call)


def prewarm_for_new_report(report_url: str, dask_address: str | None = None) -> bool:
    """Start the workers' fork server at once if the report holds no part yet (a first audit:
    every file will need analysis), before the policy loads and the listing runs, so that its
    ~2 s of imports start ~1 s earlier. True if started. A remote report is left to
    :meth:`Startup.begin`, which knows after the listing."""
    import os

    from audiolib import storage

    if dask_address is not None or not storage.is_local(report_url):
        return False
    path = report_url[len("file://"):] if report_url.startswith("file://") else report_url
    try:
        if any(not e.name.startswith(".") for e in os.scandir(path)):
            return False
    except OSError:
        return False
    from tasks.compute import prewarm

    prewarm()
    return True


def _prefect_settings_loaded() -> bool:
    return "prefect.settings" in sys.modules


@dataclass
class Startup:
    """An audit's start-up (see the module); :meth:`begin` makes one."""

    source: str
    report_url: str
    run_id: str
    #: "configured", "background" or "temporary": where the flow's runs are recorded
    api_kind: str = "temporary"
    api_url: str | None = None
    temporary: servers.TemporaryServer | None = None
    #: the background server's use by this audit (registered; released by :meth:`close`)
    use: servers.ServerUse | None = None
    #: the background server this audit started (its first use), if it did
    started_server: servers.BackgroundServer | None = None
    #: why a background server this audit started could not be used (it used a temporary one)
    warning: str | None = None
    #: whether any file needs analysis (None: unknown, the listing or the state read failed)
    fresh: bool | None = None
    files: int | None = None
    prewarmed: bool = False
    #: batches sent to the compute pool before the flow started
    prefetched: int = 0
    _prefetching: threading.Thread | None = None
    _stop_prefetch: threading.Event = field(default_factory=threading.Event)
    _first_sent: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: the run (id and start time), handed to the flow
    run: Any = None

    @classmethod
    def begin(cls, source: str, report_url: str, *, workers: int | None = 2, dask_address: str | None = None,
              include: list[str] | None = None, exclude: list[str] | None = None, run_id: str | None = None,
              reuse: bool = True, auto_start: bool = False, policy: str | None = None,
              batch_size: int = 32) -> "Startup":
        """Resolve the API (launching a server if needed: the background one on first use with
        ``auto_start``, else a temporary one), list, read the report's state, and if there is work
        start the compute pool and send it batches until the flow begins. Arguments as ``run_audit``'s."""
        t0 = time.perf_counter()
        # a new run's id is chosen here: the state read below is for it, and the flow gets it
        self = cls(source, report_url, run_id or uuid.uuid4().hex[:16])
        self._resolve_api(auto_start)  # first: a server started here starts while the rest runs
        self.timings["resolve_api"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        from audioqc import report  # (after the server's launch: ~0.5 s of imports, needed below anyway)

        # the run begins now: the flow takes it (its rows' run_time), and so do the batches sent ahead
        self.run = report.RunInfo.new(self.run_id)
        offer("run", self.run_id, self.run)
        fresh = self._preflight(include, exclude, reuse)
        self.timings["preflight"] = time.perf_counter() - t1
        if dask_address is None and self.fresh is not False:
            from tasks import compute

            compute.prewarm()  # a no-op if prewarm_for_new_report started it already
            self.prewarmed = True
            if fresh and workers:
                # in a thread: starting a worker waits for the fork server's imports, which this
                # process's own imports (Prefect's) must not wait for
                self._prefetching = threading.Thread(target=self._prefetch, args=(fresh, workers, policy, batch_size),
                                                     name="audioqc-prefetch", daemon=True)
                self._prefetching.start()
        self.timings["begin"] = time.perf_counter() - t0
        return self

    def _resolve_api(self, auto_start: bool = False) -> None:
        if _prefect_settings_loaded():  # Prefect is imported already: ask it (temporary_settings too)
            from prefect.settings import PREFECT_API_URL

            configured = PREFECT_API_URL.value()
        else:
            configured = servers.configured_api_url()
        if configured:
            self.api_kind, self.api_url = "configured", configured
            return
        # a background server that runs (its use registered), else the one started now
        self.use, started = servers.acquire_background(start=auto_start)
        if self.use is not None:
            self.api_kind, self.api_url = "background", self.use.server.api_url
            self.started_server = self.use.server if started else None
            return
        self._start_temporary()

    def _start_temporary(self) -> None:
        self.api_kind, self.api_url = "temporary", None
        self.temporary = servers.TemporaryServer(self._settings_env())
        self.temporary.start()

    @staticmethod
    def _settings_env() -> dict[str, str]:
        """Settings this process holds beyond the environment (Prefect's ``temporary_settings``),
        for the temporary server, as ``SubprocessASGIServer`` passes them."""
        if not _prefect_settings_loaded():
            return {}
        from prefect.settings import get_current_settings

        env = get_current_settings().to_environment_variables(exclude_unset=True)
        env.pop("PREFECT_API_URL", None)
        return env

    #: batches the start-up sends ahead at most (their rows wait in memory for the flow's tasks)
    PREFETCH_BATCHES_PER_WORKER = 16

    def _prefetch(self, fresh: list, workers: int, policy: str | None, batch_size: int) -> None:
        """Start the compute pool and keep it busy with the run's batches, cut exactly as the flow
        will cut them, one more than there are workers at a time, until the flow begins
        (:meth:`prefetch_sent`): the workers analyse while Prefect is imported and its server
        starts, instead of waiting for the flow's first tasks."""
        from flows.batching import guided_batches
        from tasks import compute
        from tasks.work import prefetch

        try:
            compute.start(workers)
            slots = threading.Semaphore(workers + 1)
            for i, batch in enumerate(guided_batches(fresh, batch_size, workers)):
                while not slots.acquire(timeout=0.05):
                    if self._stop_prefetch.is_set():
                        return
                if self._stop_prefetch.is_set() or i == self.PREFETCH_BATCHES_PER_WORKER * workers:
                    return
                future = prefetch(batch, self.run, policy)
                if future is None:
                    return
                if not self.prefetched:
                    self._first_sent = time.perf_counter()
                self.prefetched += 1
                future.add_done_callback(lambda _: slots.release())
        except Exception:  # nothing more sent ahead: the flow's tasks send their batches themselves
            pass

    def prefetch_sent(self) -> None:
        """Stop sending batches ahead (the flow begins: its tasks take those sent, and send the rest)."""
        self._stop_prefetch.set()
        if self._prefetching is not None:
            self._prefetching.join()
            self._prefetching = None
            if self._first_sent is not None:
                # how long the pool analysed before the flow began (benchmarks add it to the flow's time)
                self.timings["analysis_lead"] = time.perf_counter() - self._first_sent

    def _preflight(self, include: list[str] | None, exclude: list[str] | None, reuse: bool) -> list | None:
        """List the collection and read the report's state; hand both to the flow's tasks. The
        objects to analyse (None: unknown)."""
        from tasks.listing import list_objects
        from tasks.report_state import report_state

        try:
            objects = list_objects(self.source, include, exclude)
            state = report_state(self.report_url, self.run_id)
        except Exception:  # the flow's tasks list and read again, with their retries
            return None
        offer("listing", (self.source, tuple(include or ()), tuple(exclude or ())), objects)
        offer("state", (self.report_url, self.run_id), state)
        todo = [o for o in objects if o.url not in state.done]
        self.files = len(objects)
        fresh = [o for o in todo if not (reuse and o.identity() in state.cache)]
        self.fresh = bool(fresh)
        return fresh

    def api(self, timeout: float = 90.0) -> tuple[str, str]:
        """The API the flow records on, ready: ``(kind, url)``. Checks what was read from the
        environment and the profile against Prefect's settings (imported by now): a configured
        URL wins, and a temporary server launched for nothing is stopped."""
        from prefect.settings import PREFECT_API_URL

        configured = PREFECT_API_URL.value()
        if configured and self.api_kind != "configured":
            self._stop_temporary()
            self._release()
            self.api_kind, self.api_url = "configured", configured
        elif not configured and self.api_kind == "configured":  # the guess was wrong: no API after all
            self._start_temporary()
        if self.api_kind == "background" and self.use is not None \
                and not servers.wait_healthy(self.use.server, timeout):
            # stopped since the start-up saw it, or the one started now failed: this audit makes its own
            server = self.use.server
            self._release()
            if self.started_server is not None:
                servers.stop_background()
                self.warning = (f"the background Prefect server did not start (log: {server.log}); "
                                "this audit used a temporary one")
                self.started_server = None
            self._start_temporary()
        if self.api_kind == "temporary":
            assert self.temporary is not None
            t0 = time.perf_counter()
            self.temporary.wait(timeout)
            self.timings["server_wait"] = time.perf_counter() - t0
            self.timings["server_start"] = time.perf_counter() - (self.temporary.started_at or t0)
            self.api_url = self.temporary.api_url
        assert self.api_url is not None
        return self.api_kind, self.api_url

    def _stop_temporary(self) -> None:
        if self.temporary is not None:
            self.temporary.stop()
            self.temporary = None

    def _release(self) -> None:
        if self.use is not None:
            self.use.release()
            self.use = None

    def close(self) -> None:
        """Stop the temporary server (if any), release the background server's use (its idle time
        starts now) and forget what was not handed over."""
        t0 = time.perf_counter()
        self._stop_temporary()
        self._release()
        self.timings["server_stop"] = time.perf_counter() - t0
        self.prefetch_sent()
        clear()
