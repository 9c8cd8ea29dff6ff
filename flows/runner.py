"""Process-pool task runner whose workers start warm.

Prefect's ``ProcessPoolTaskRunner`` spawns each worker as a fresh interpreter that then imports
Prefect, pyarrow and audiolib before its first task: 3.3 s of imports per worker on the reference
machine (``python -X importtime -c "import tasks.analyze"``), paid inside the flow, once per
worker, every run.  :class:`WarmProcessPoolTaskRunner` is the same runner on the ``forkserver``
start method with those modules preloaded: one server process imports them once, and every worker
is a ``fork`` of it (milliseconds, and the imported pages are shared copy-on-write).
:func:`prewarm` starts that server early, so its imports overlap with the start of the temporary
Prefect API server instead of delaying the first task.

Workers are still separate, fresh processes forked from a single-threaded server that has only
imported modules, so none of the state Prefect avoids by not using plain ``fork`` (the flow
process's threads, event loops and open clients) reaches them.

With ``start_workers=False`` no worker starts until the first task is submitted: an audit in which
every file is reused never forks one (the pool's shutdown used to wait ~1-3.5 s for workers that
were still being forked from a fork server still importing, on a re-audit that needed none).
"""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from prefect import task_runners as _tr
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner

# the fork server and its preload live in a module without Prefect (the audit's start-up starts
# the server before Prefect is imported); these names are kept here too
from flows.prewarm import PRELOAD, prewarm  # noqa: F401
from flows.prewarm import context as _context

_in_pool_worker = False


def _enter_settings(settings: dict | None, initializer: Any = None, initargs: tuple = ()) -> None:
    """Pool worker initializer: enter the flow's Prefect settings once, for the worker's life."""
    global _in_pool_worker
    _in_pool_worker = True
    from flows.lifetime import die_with_parent

    die_with_parent()  # a worker ends with the fork server (flows/lifetime.py)
    if settings:
        from prefect.context import SettingsContext

        SettingsContext(**settings).__enter__()  # never exited: the worker ends with the pool
    if initializer is not None:
        initializer(*initargs)


def _started() -> None:
    """Submitted once per worker when the pool opens, so that every worker starts at once."""


class WarmProcessPoolTaskRunner(ProcessPoolTaskRunner):
    """``ProcessPoolTaskRunner`` with workers forked from a preloaded fork server.

    Also builds the flow's Prefect settings once per worker rather than once per task: Prefect
    sends the settings with every task and the worker rebuilds them (``hydrated_context``:
    ``SettingsContext(**settings)``, a pydantic-settings model that re-reads the environment,
    dotenv and profile files), ~115 ms of a no-op task's ~130 ms on the reference machine
    (py-spy).  Here the pool's initializer enters them once, and tasks are sent without them.

    ``start_workers``: start every worker when the runner opens (the default: their start-up
    overlaps the flow's first steps), or only when the first task is submitted (an audit that
    knows it has nothing to analyse: then none ever starts).
    """

    def __init__(self, max_workers: int | None = None, *args: Any, start_workers: bool = True, **kwargs: Any) -> None:
        super().__init__(max_workers, *args, **kwargs)
        self.start_workers = start_workers
        self._workers_started = False

    def duplicate(self) -> "WarmProcessPoolTaskRunner":
        # the flow engine runs a duplicate of the flow's runner (prefect 3.8, flow_engine.py)
        runner = super().duplicate()
        runner.start_workers = self.start_workers
        return runner

    def _start_workers(self) -> None:
        """Start every worker now (a pool starts them one per submit otherwise)."""
        if self._workers_started or _in_pool_worker or self._executor is None:
            return
        self._workers_started = True
        for _ in range(self._max_workers):
            self._executor.submit(_started)

    def __enter__(self) -> "WarmProcessPoolTaskRunner":
        # ProcessPoolTaskRunner.__enter__ with the start method changed (prefect 3.8,
        # src/prefect/task_runners.py); everything else as there.
        TaskRunner.__enter__(self)
        from prefect.context import SettingsContext

        # Not in a pool worker, where Prefect enters a copy of the flow's runner around every task
        # (``hydrated_context``) and serialising the settings would cost what is saved (~200 ms).
        current = None if _in_pool_worker else SettingsContext.get()
        self._worker_settings = current.serialize() if current else None
        mp_context = _context()
        self._subprocess_message_queue = mp_context.Queue()
        self._message_forwarding_thread = threading.Thread(
            target=self._forward_subprocess_messages, name="ProcessPoolTaskRunnerMessageForwarder", daemon=True)
        self._message_forwarding_thread.start()
        try:
            self._executor = ProcessPoolExecutor(
                max_workers=self._max_workers, mp_context=mp_context,
                initializer=_tr._initialize_process_pool_worker,
                initargs=(self._subprocess_message_queue, _enter_settings,
                          (self._worker_settings, getattr(self, "_initializer", None),
                           getattr(self, "_initargs", ()))))
            self._resolver_executor = ThreadPoolExecutor(max_workers=self._max_workers)
            self._workers_started = False
            if self.start_workers:
                # so that their start-up overlaps the flow's first steps instead of delaying the
                # first batches
                self._start_workers()
        except Exception:
            if self._executor is not None:
                self._executor.shutdown(cancel_futures=True, wait=True)
                self._executor = None
            self._stop_message_forwarding()
            raise
        return self

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None) -> Any:
        self._start_workers()  # the first task of a runner opened without them: all of them now
        if self._cached_context is None and getattr(self, "_worker_settings", None) is not None:
            # ProcessPoolTaskRunner.submit's context and environment (prefect 3.8), without the
            # settings, which the workers entered when they started (_enter_settings).
            import os

            from prefect.context import serialize_context
            from prefect.settings import get_current_settings

            context = serialize_context()
            context.pop("settings_context", None)
            self._cached_context = context
            self._cached_env = get_current_settings().to_environment_variables(exclude_unset=True) | os.environ
        return super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)
