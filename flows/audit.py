"""The audit flow: list a collection, diagnose every file in parallel, write the Parquet report.

Sequencing and decisions only, read as the pipeline: list (:mod:`tasks.storage`), reuse unchanged
rows, analyse the rest in batches (:mod:`flows.batching`, :mod:`tasks.analyze`), remedy the
failing files (:mod:`flows.remedy_branch`), write the parts (:mod:`flows.writer`), summarise (and
the trends, :mod:`tasks.trends`). The numbers come from audiolib (through tasks/), the schema from
audioqc.report; the Prefect server and the workarounds of Prefect's costs live in
:mod:`flows.server`, :mod:`flows.startup` and :mod:`flows.workarounds`.

- Exactly one row per file per run: ``ok`` (every diagnose block, the policy verdict) or
  ``error`` (the message names the file and the problem); an error never fails the run.
- Rows stream to the report in parts of at most ``part_rows`` rows as batches finish, so memory
  does not grow with the collection and a killed run loses at most the rows not yet written.
- Resume: run again with the killed run's ``run_id``: files that already have a row in that run
  are skipped, the rest are analysed and appended; no row is lost or duplicated.
- Reuse (the result cache): a file whose identity (URL + ETag, or URL + size + mtime) and analysis
  version match an ``ok`` row of an earlier run is not decoded again; its row is copied into this
  run (the verdict recomputed with this run's policy). The report itself is the cache: nothing else
  to keep in sync, and it works from any machine that reads the report.
"""

from __future__ import annotations

import gc
import sys
from collections import deque
from typing import Any
from uuid import UUID

import pyarrow as pa
from prefect import flow
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.task_runners import ThreadPoolTaskRunner

from audiolib.errors import InvalidParameter
from audioqc import progress, report
from flows.batching import chunks, flow_pool, guided_batches
from flows.checks import check_audit
from flows.remedy_branch import RemedyBranch
from flows.startup import Startup
from flows.workarounds import frozen_gc, heartbeat_thread_not_joined, one_certificate_file
from flows.writer import PartWriter
from tasks import compute
from tasks.analyze import analyze_batch
from tasks.handoff import take
from tasks.storage import list_media, read_report_state, reuse_rows
from tasks.trends import audit_trends
from tasks.trends import check_options as check_trends_options


def task_runner() -> ThreadPoolTaskRunner:
    """The audit's task runner: Prefect's thread pool, in the flow's process. The tasks only wait:
    their work runs on the compute pool (:mod:`tasks.compute`). Unbounded (threads start as tasks
    are submitted; the submit loop keeps at most ``max_in_flight`` batches and their remedies in
    flight): a bounded pool could deadlock, a ``rediagnose`` waiting in a thread for a ``remedy``
    queued behind it."""
    return ThreadPoolTaskRunner(max_workers=sys.maxsize)


# (Prefect types a flow's runner as TaskRunner[PrefectFuture], invariant in the future: its own
# ThreadPoolTaskRunner, whose futures are PrefectConcurrentFuture, fails the same check)
@flow(name="audit", task_runner=task_runner())  # type: ignore[arg-type]
def audit(source: str, report_url: str, policy: str | None = None, include: list[str] | None = None,
          exclude: list[str] | None = None, batch_size: int = 32, part_rows: int = 256,
          run_id: str | None = None, reuse: bool = True, max_in_flight: int = 8,
          trends: bool | dict[str, Any] = False, remedy_url: str | None = None,
          create_report_bucket: bool = False) -> dict[str, Any]:
    """Audit every media file under ``source`` into the Parquet dataset at ``report_url``.

    Parameters
    ----------
    source : str
        A local directory or fsspec URL (``s3://bucket/prefix``); listed recursively.
    report_url : str
        Where the report dataset lives (local directory or fsspec URL).
    policy : str, optional
        A preset name (``ebu-r128``) or a YAML path: every ``ok`` row gets a verdict.
    include, exclude : list of str, optional
        Globs on the path or file name; default include: media file extensions.
    batch_size : int
        Files per analysis task at most (amortises per-task overhead on short files); batches
        shrink to a quarter of it towards the end of the run so that workers finish together.
    part_rows : int
        Rows per report part file.
    run_id : str, optional
        Resume the run with this id (or name a new run).
    reuse : bool
        Reuse rows of unchanged files from earlier runs.
    trends : bool or dict
        End with the report's trends (:mod:`tasks.trends`): true, or options of
        :func:`audioqc.trends.trends` (``group_by``, ``by``, ``baseline_runs``, ``margins``, ...).
    remedy_url : str, optional
        The remedy branch: every file whose verdict is not ``pass`` and whose failed or warned rules
        name a remedy is fixed by the policy's remedies into this prefix (same relative path),
        then diagnosed again: a second row, ``stage = remedied`` (:mod:`tasks.remedy`).
    """
    if not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise InvalidParameter(f"max_in_flight={max_in_flight!r} must be an integer >= 1")
    # every argument that can be wrong, before any work (run_audit checked them already; a
    # deployment's run arrives here directly)
    check_audit(source, report_url, policy=policy, run_id=run_id, batch_size=batch_size, part_rows=part_rows,
                remedy_url=remedy_url, trends=trends, create_report_bucket=create_report_bucket)
    trends_options = check_trends_options(trends)
    # the run the audit's start-up began (its batches sent ahead carry it), else a new one
    run = (take("run", run_id) if run_id else None) or report.RunInfo.new(run_id)
    report.remove_stale_temporaries(report_url, run.run_id)  # a killed attempt of this run
    objects = list_media(source, include, exclude)
    state = read_report_state(report_url, run.run_id)
    # (check_audit refused a remedy_url without a policy)
    branch = RemedyBranch(report_url, run, policy, source, remedy_url) if remedy_url and policy else None
    todo = [o for o in objects if o.url not in state.done]
    cached = [(o, state.cache[o.identity()]) for o in todo if reuse and o.identity() in state.cache]
    cached_urls = {o.url for o, _ in cached}
    fresh = [o for o in todo if o.url not in cached_urls]
    total = len(todo)
    progress_id = create_progress_artifact(0.0, key=None, description=f"audit of {source}")
    assert isinstance(progress_id, UUID)  # called from a sync flow: the id, not a coroutine
    writer = PartWriter(report_url, run, state.next_part, part_rows)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress.report(done, total)
        if total:
            update_progress_artifact(progress_id, 100.0 * done / total)

    pending: deque[Any] = deque()  # futures of Arrow tables of rows

    def consume() -> None:
        rows = pending.popleft().result().to_pylist()
        writer.add(rows)
        if branch is not None:
            pending.extend(branch.submit(rows) if rows and rows[0].get("stage") != "remedied" else ())
        advance(sum(1 for r in rows if r.get("stage") != "remedied"))
        gc.collect()  # the batch's table is in a reference cycle of Prefect's futures (flows.workarounds)

    with frozen_gc(), flow_pool():
        if branch is not None:  # a resumed run: its originals that were not remedied yet
            pending.extend(branch.resume())
        for chunk in chunks(cached, 512):
            table = reuse_rows(report_url, [o for o, _ in chunk], [r for _, r in chunk], run, policy)
            assert isinstance(table, pa.Table)  # a sync task called in a sync flow returns its value
            rows = table.to_pylist()
            writer.add(rows)
            advance(len(chunk))
            if branch is not None:
                pending.extend(branch.submit(rows, {o.url: rid for o, rid in chunk}))
            while len(pending) >= max_in_flight:
                consume()
        for batch in guided_batches(fresh, batch_size, compute.configured()):
            pending.append(analyze_batch.submit(batch, run, policy))
            while len(pending) >= max_in_flight:
                consume()
        while pending:
            consume()
    writer.flush()
    from prefect.runtime import flow_run

    summary = {
        "run_id": run.run_id,
        "flow_run_id": flow_run.id,
        "run_date": run.run_date,
        "source": source,
        "report": report_url,
        "files": len(objects),
        "already_done": len(objects) - total,
        "reused": len(cached),
        "analysed": len(fresh),
        "written": writer.written,
        "counts": dict(writer.counts),
        "worst": writer.worst,
        # folders the listing could not read: their rows say so, and so does the terminal
        "warnings": [f"{o.url}: {o.problem}" for o in objects if o.problem and o.problem.startswith("cannot list")],
    }
    if branch is not None:
        summary["remedy"] = branch.summary(writer)
    _artifacts(summary)
    if trends:
        summary["trends"] = audit_trends(report_url, run.run_id, run.run_date, source, policy, trends_options)
    return summary


def _artifacts(summary: dict[str, Any]) -> None:
    counts = summary["counts"]
    create_table_artifact(
        key="audit-summary",
        table=[{"status": k, "files": v} for k, v in sorted(counts.items())],
        description=f"audit {summary['run_id']} of {summary['source']}",
    )
    lines = [f"# Audit {summary['run_id']}", "", f"Source: `{summary['source']}`  ",
             f"Report: `{summary['report']}` (run_date={summary['run_date']})", "",
             "| status | files |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    lines += ["", f"{summary['analysed']} analysed, {summary['reused']} reused from earlier runs, "
                  f"{summary['already_done']} already in this run.", ""]
    remedy = summary.get("remedy")
    if remedy:
        lines += ["## Remedies", "", f"Remedied files written under `{remedy['remedy_url']}` and diagnosed again:", "",
                  "| outcome | files |", "|---|---|",
                  f"| fixed (now pass) | {remedy['fixed']} |",
                  f"| improved but still failing | {remedy['still_failing']} |",
                  f"| remedy failed (error row) | {remedy['errors']} |",
                  f"| not fixable (no remedy for its failures) | {remedy['not_fixable']} |", ""]
        create_table_artifact(key="audit-remedies", table=[{"outcome": k, "files": remedy[k]} for k in
                              ("fixed", "still_failing", "errors", "not_fixable", "reused")],
                              description=f"remedies of audit {summary['run_id']}")
    if summary["worst"]:
        lines += ["## Files that failed", "", "| file | status | why |", "|---|---|---|"]
        lines += [f"| {w['file']} | {w['status']} | {w['why']} |" for w in summary["worst"]]
    create_markdown_artifact(key="audit-report", markdown="\n".join(lines))


def run_audit(source: str, report_url: str, *, workers: int = 2, dask_address: str | None = None,
              startup: Startup | None = None, **params: Any) -> dict[str, Any]:
    """Run :func:`audit` with process parallelism (or on a Dask cluster) and one Prefect API.

    The Prefect API (:mod:`flows.server`): ``PREFECT_API_URL`` if one is configured, else a
    background server that is up (``audioqc server start``), else a temporary local server started
    for this run alone (once here, its URL exported before any worker starts, so that workers do
    not each start their own; docs/design.md), which dies with this process and is stopped at the end.
    ``startup`` (:class:`flows.startup.Startup`; made here if not given: the CLI makes it before it
    imports Prefect) has launched that server, listed the collection, read the report's state and,
    if any file needs analysis, started the worker fork server; if none does, no pool worker ever
    starts.  The clients of a server audioqc chose load a one-certificate CA file
    (:func:`flows.workarounds.one_certificate_file`).  The summary gains ``timings_s``: ``server_start``, ``flow``,
    ``server_stop`` and the start-up's phases (what ``benchmarks/bench_audit*.py`` report), and
    ``prefect_api``: ``{"kind": "configured" | "background" | "temporary", "url": ...}``.
    """
    import os
    import time
    from contextlib import nullcontext

    # refused before the flow, and its server, start: one clear error in well under a second
    check_audit(source, report_url, workers=workers,
                **{k: params[k] for k in ("policy", "run_id", "batch_size", "part_rows", "remedy_url", "trends",
                                          "create_report_bucket") if k in params})
    if startup is None:
        startup = Startup.begin(source, report_url, workers=workers, dask_address=dask_address,
                                **{k: params[k] for k in ("include", "exclude", "run_id", "reuse", "policy",
                                                          "batch_size") if k in params})
    params["run_id"] = startup.run_id
    timings: dict[str, float] = {}
    try:
        if dask_address is not None:
            from prefect_dask import DaskTaskRunner

            runner: Any = DaskTaskRunner(address=dask_address)
        else:
            runner = task_runner()
        flow_ = audit.with_options(task_runner=runner)
        from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

        kind, api_url = startup.api(timeout=float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                                                                 "90")))

        def run_flow() -> dict[str, Any]:
            t0 = time.perf_counter()
            # the compute pool: started by the start-up when it saw files to analyse, else by the
            # first task that needs it (a remedy the branch cannot reuse), or never
            pool: Any = compute.session(workers, start_now=startup.fresh is not False) \
                if dask_address is None else nullcontext()
            with heartbeat_thread_not_joined(), pool:
                startup.prefetch_sent()
                summary = flow_(source, report_url, **params)
            timings["flow"] = time.perf_counter() - t0
            return {**summary, "timings_s": timings, "prefect_api": {"kind": kind, "url": api_url}}

        if kind == "configured":  # a deployment, a test harness, the user's own: left as it is
            return run_flow()
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="audioqc-")
        updates: dict[Any, str] = {PREFECT_API_URL: api_url}
        ca_file = one_certificate_file(scratch.name)
        if ca_file:
            updates[PREFECT_API_SSL_CERT_FILE] = ca_file
        os.environ.update({setting.name: value for setting, value in updates.items()})
        import prefect.context

        # Threads that do not inherit the flow's settings context read the process-global one,
        # made when Prefect was imported: without this, the process pool's message-forwarding
        # thread saw no API and started a second, ephemeral server of its own for the workers'
        # events (prefect 3.8: EventsWorker.instance; 5.1 s at the end of every audit, measured).
        prior_global = prefect.context.GLOBAL_SETTINGS_CONTEXT
        prefect.context.refresh_global_settings_context()
        try:
            with temporary_settings(updates=updates):
                return run_flow()
        finally:
            prefect.context.GLOBAL_SETTINGS_CONTEXT = prior_global
            try:  # send the run's last log lines while the server is still there
                from prefect.logging.handlers import APILogWorker

                APILogWorker.drain_all(timeout=5)
            except Exception:  # logging must never fail the audit
                pass
            for setting in updates:
                os.environ.pop(setting.name, None)
            scratch.cleanup()
    finally:
        startup.close()
        compute.shutdown(kill=True)  # the start-up's pool, if the flow never ran (its own session stops it)
        timings.update({k: v for k, v in startup.timings.items() if k not in timings})
