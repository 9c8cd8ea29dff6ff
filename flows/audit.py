"""The audit flow: list a collection, diagnose every file in parallel, write the Parquet report.

Sequencing and decisions only; the numbers come from audiolib (through tasks/), the schema from
audioqc.report.

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
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from audiolib.errors import InvalidParameter
from audioqc import progress, report
from flows.checks import check_audit
from flows.runner import WarmProcessPoolTaskRunner
from flows.startup import Startup
from flows.state import ReportState, report_state  # noqa: F401 (ReportState: API)
from tasks.analyze import analyze_batch, verdict_for
from tasks.handoff import take
from tasks.remedy import RemedyJob, job_for, read_remedy_state, rediagnose, remedy, reusable, reuse_remedied
from tasks.storage import STORAGE_TASK, MediaObject, list_media
from tasks.trends import audit_trends
from tasks.trends import check_options as check_trends_options


@task(name="read report state", **STORAGE_TASK)
def read_report_state(report_url: str, run_id: str) -> ReportState:
    """Rows already written for ``run_id``, its next part number, and reusable earlier rows
    (:func:`flows.state.report_state`); what the audit's start-up read, when it read it
    (:mod:`flows.startup`)."""
    state = take("state", (report_url, run_id))
    return state if state is not None else report_state(report_url, run_id)


@task(name="write report part", **STORAGE_TASK)
def write_part(table: pa.Table, report_url: str, run: report.RunInfo, part: int) -> str:
    # A table, not a list of row dicts: Prefect walks every nested object of a task's parameters,
    # which cost ~1 s per 256 rows; a table is one opaque value.
    return report.write_table(table, report_url, run, part)


@task(name="reuse cached rows", **STORAGE_TASK)
def reuse_rows(report_url: str, objects: list[MediaObject], sources: list[str], run: report.RunInfo,
               policy_spec: str | None) -> pa.Table:
    """Copy earlier ``ok`` rows of unchanged files into this run (verdict recomputed)."""
    import pyarrow.dataset as ds

    wanted = {(o.url, src) for o, src in zip(objects, sources, strict=True)}
    data = report.dataset(report_url)
    table = data.to_table(filter=ds.field("source_url").isin([o.url for o in objects])
                          & ds.field("run_id").isin(sorted(set(sources))))
    rows: dict[str, dict[str, Any]] = {}
    for row in table.drop_columns([report.PARTITION]).to_pylist():
        if (row["source_url"], row["run_id"]) in wanted and row.get("stage") in (None, "original"):
            row["stage"] = "original"  # reports before schema 3 have no stage: every row an original
            rows[row["source_url"]] = row
    out = []
    for obj in objects:
        row = dict(rows[obj.url])
        row.update(run_id=run.run_id, run_time=run.run_time)
        row["verdict"], row["verdict_reasons"] = verdict_for(row, policy_spec)
        out.append(row)
    return report.rows_to_table(out)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# A batch holds at most this many bytes of media (and at most ``batch_size`` files): 64 MiB is
# ~6 min of 48 kHz stereo 24-bit WAV, ~3.5 s of work, against ~40 ms of Prefect's cost per task in
# the warm pool (worker and API server; benchmarks/bench_task_overhead.py).
BATCH_BYTES = 64 * 2**20
# The smallest batch towards the end of a run (guided self-scheduling): 8 MiB, ~0.8 s of work on
# 10 s WAVs, so workers finish within ~1 s of each other.
MIN_BATCH_BYTES = BATCH_BYTES // 8
_UNKNOWN_SIZE_BYTES = 2 * 2**20  # what an object of unknown size counts for


def _guided_batches(items: list[MediaObject], batch_size: int, workers: int | None) -> Iterator[list[MediaObject]]:
    """Batches sized by bytes that shrink towards the end, so that workers finish together.

    Guided self-scheduling (Polychronopoulos and Kuck, IEEE Trans. Computers 36(12), 1987) on the
    objects' sizes: each batch takes 1/(2 x workers) of the bytes still to schedule, at most
    :data:`BATCH_BYTES` (and ``batch_size`` files), at least :data:`MIN_BATCH_BYTES`; a file larger than
    the target is a batch alone, so hour-long files spread over the workers one by one.  With
    fixed batches of 32, 200 files of 10 s on 2 workers made 7 batches and one worker sat idle
    while the other ran the last (measured: ~1/7 of the run); this makes 13, the last of 3 files.
    With one worker there is nothing to balance, and without a known worker count (a Dask
    cluster) nothing to balance against: the target stays at :data:`BATCH_BYTES` (200 files of
    10 s on 1 worker: 7 batches rather than 9).
    """
    def size(o: MediaObject) -> int:
        return o.size_bytes if o.size_bytes is not None else _UNKNOWN_SIZE_BYTES

    left = sum(size(o) for o in items)
    if workers and workers > 1:
        # a small collection: at most 1/(2 x workers) of its files per batch, so that every worker
        # has some (the 8 demo files, 14 MB, were one batch of 7 and one of 1 under the byte floor)
        batch_size = min(batch_size, max(1, -(-len(items) // (2 * workers))))
    batch: list[MediaObject] = []
    filled = target = 0
    for obj in items:
        if not batch:
            target = BATCH_BYTES if not workers or workers == 1 else \
                min(BATCH_BYTES, max(MIN_BATCH_BYTES, left // (2 * workers)))
        batch.append(obj)
        filled += size(obj)
        left -= size(obj)
        if filled >= target or len(batch) >= batch_size:
            yield batch
            batch, filled = [], 0
    if batch:
        yield batch


def _workers() -> int | None:
    """Worker processes of the running flow's task runner, if it says."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return getattr(ctx.task_runner, "_max_workers", None) if ctx else None


@contextmanager
def _frozen_gc() -> Iterator[None]:
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


class _PartWriter:
    """Buffers rows and writes a report part every ``part_rows`` rows.

    The tallies (``counts`` of original rows by verdict, ``remedied`` of remedied rows) count rows
    once their part is written: a write that fails fails the run, and the summary never counts a
    row the report does not hold.
    """

    def __init__(self, report_url: str, run: report.RunInfo, first_part: int, part_rows: int) -> None:
        self.report_url, self.run, self.part, self.part_rows = report_url, run, first_part, part_rows
        self.buffer: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.remedied: Counter[str] = Counter()  # remedied rows: pass / warn / fail / error
        self.after: dict[str, dict[str, Any]] = {}  # original URL -> the remedied row's figures
        self.worst: list[dict[str, Any]] = []
        self.written = 0

    @staticmethod
    def _key(row: dict[str, Any]) -> str:
        return "error" if row["status"] == "error" else (row.get("verdict") or "ok")

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        self.buffer.extend(rows)
        if len(self.buffer) >= self.part_rows:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        write_part(report.rows_to_table(self.buffer), self.report_url, self.run, self.part)
        for row in self.buffer:  # written: now they count
            key = self._key(row)
            if row.get("stage") == "remedied":
                self.remedied[key] += 1
                if len(self.after) < _RemedyBranch.SHOWN:
                    self.after[row["original_url"]] = {"url": row["source_url"], "error": row.get("error"),
                                                       **{k: row.get(k) for k in _BEFORE_AFTER}}
                continue
            self.counts[key] += 1
            if key in ("error", "fail") and len(self.worst) < 20:
                self.worst.append({"file": row["source_url"], "status": key,
                                   "why": row.get("error") or "; ".join(r["metric"] + " " + r["rule"]
                                                                       for r in row.get("verdict_reasons") or [])})
        self.written += len(self.buffer)
        self.part += 1
        self.buffer = []


class _RemedyBranch:
    """The remedy branch of one run: which files to fix, their tasks, what to reuse, the tally.

    For every original row whose verdict is not ``pass`` and whose failed or warned rules name a
    remedy: a ``remedy`` task (the fixed file under ``remedy_url``) and a ``rediagnose`` task (its
    row, ``stage = remedied``), on the flow's task runner. An earlier run's remedied row is reused
    instead when the original is unchanged since that run, the remedies and destination are the
    same and the remedied object is still the one it wrote (:func:`tasks.remedy.reusable`).
    """

    #: before/after figures kept for the summary (the CLI's table), at most this many files
    SHOWN = 50

    def __init__(self, report_url: str, run: report.RunInfo, policy: str, source: str, remedy_url: str) -> None:
        self.report_url, self.run, self.policy = report_url, run, policy
        self.source, self.remedy_url = source, remedy_url
        self.state = read_remedy_state(report_url, run.run_id)
        self.not_fixable = 0
        self.reused = 0
        self.before: dict[str, dict[str, Any]] = {}

    def _keep_before(self, row: dict[str, Any]) -> None:
        if len(self.before) < self.SHOWN:
            self.before[row["source_url"]] = {k: row.get(k) for k in _BEFORE_AFTER}

    def _jobs(self, rows: list[dict[str, Any]]) -> list[RemedyJob]:
        jobs = []
        for row in rows:
            job = job_for(row, self.policy, self.source, self.remedy_url)
            if job is not None:
                jobs.append(job)
                self._keep_before(row)
            elif row.get("status") == "ok" and row.get("verdict") not in (None, "pass"):
                self.not_fixable += 1
        return jobs

    def _start(self, jobs: list[RemedyJob]) -> list[Any]:
        return [rediagnose.submit(remedy.submit(job), self.run, self.policy) for job in jobs]

    def submit(self, rows: list[dict[str, Any]], cached_runs: dict[str, str] | None = None) -> list[Any]:
        """Futures of the remedied rows of ``rows`` (original rows just written); ``cached_runs``:
        for rows reused from earlier runs, the run each came from."""
        jobs = self._jobs(rows)
        reuse: list[tuple[RemedyJob, str]] = []
        fresh: list[RemedyJob] = []
        for job in jobs:
            rid = reusable(job, (cached_runs or {}).get(job.original_url), self.state)
            (reuse.append((job, rid)) if rid else fresh.append(job))
        futures = self._start(fresh)
        if reuse:
            self.reused += len(reuse)
            # run here, not on the pool: a storage step (it copies rows), and an unchanged re-audit
            # then starts no worker at all
            futures.append(_Done(reuse_remedied(self.report_url, reuse, self.run, self.policy)))
        return futures

    def resume(self) -> list[Any]:
        """Futures for this run's originals (a resumed run) that have no remedied row yet."""
        return self._start(self._jobs(list(self.state.unremedied.values())))

    def summary(self, writer: _PartWriter) -> dict[str, Any]:
        r = writer.remedied
        return {"remedy_url": self.remedy_url, "remedied": sum(r.values()), "fixed": r.get("pass", 0),
                "still_failing": r.get("warn", 0) + r.get("fail", 0), "errors": r.get("error", 0),
                "not_fixable": self.not_fixable, "reused": self.reused,
                "files": [{"file": url, "before": before, "after": writer.after.get(url)}
                          for url, before in self.before.items()]}


class _Done:
    """A result already computed, where the submit loop expects a future."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


#: Figures the summary shows before and after a remedy.
_BEFORE_AFTER = ("verdict", "loudness_integrated_lufs", "loudness_true_peak_dbtp", "noise_score_snr_db",
                 "quality_score_average")


@flow(name="audit", task_runner=WarmProcessPoolTaskRunner())
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
    run = report.RunInfo.new(run_id)
    report.remove_stale_temporaries(report_url, run.run_id)  # a killed attempt of this run
    objects = list_media(source, include, exclude)
    state = read_report_state(report_url, run.run_id)
    branch = _RemedyBranch(report_url, run, policy, source, remedy_url) if remedy_url is not None else None
    todo = [o for o in objects if o.url not in state.done]
    cached = [(o, state.cache[o.identity()]) for o in todo if reuse and o.identity() in state.cache]
    cached_urls = {o.url for o, _ in cached}
    fresh = [o for o in todo if o.url not in cached_urls]
    total = len(todo)
    progress_id = create_progress_artifact(0.0, key=None, description=f"audit of {source}")
    writer = _PartWriter(report_url, run, state.next_part, part_rows)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress.report(done, total)
        if total:
            update_progress_artifact(progress_id, 100.0 * done / total)

    pending: deque = deque()

    def consume() -> None:
        rows = pending.popleft().result().to_pylist()
        writer.add(rows)
        if branch is not None:
            pending.extend(branch.submit(rows) if rows and rows[0].get("stage") != "remedied" else ())
        advance(sum(1 for r in rows if r.get("stage") != "remedied"))
        gc.collect()  # the batch's table is in a reference cycle of Prefect's futures (see _frozen_gc)

    with _frozen_gc():
        if branch is not None:  # a resumed run: its originals that were not remedied yet
            pending.extend(branch.resume())
        for chunk in _chunks(cached, 512):
            rows = reuse_rows(report_url, [o for o, _ in chunk], [r for _, r in chunk], run, policy).to_pylist()
            writer.add(rows)
            advance(len(chunk))
            if branch is not None:
                pending.extend(branch.submit(rows, {o.url: rid for o, rid in chunk}))
            while len(pending) >= max_in_flight:
                consume()
        for batch in _guided_batches(fresh, batch_size, _workers()):
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


@contextmanager
def _heartbeat_thread_not_joined() -> Iterator[None]:
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


def _one_certificate_file(directory: str) -> str | None:
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
    (:func:`_one_certificate_file`).  The summary gains ``timings_s``: ``server_start``, ``flow``,
    ``server_stop`` and the start-up's phases (what ``benchmarks/bench_audit*.py`` report), and
    ``prefect_api``: ``{"kind": "configured" | "background" | "temporary", "url": ...}``.
    """
    import os
    import time

    # refused before the flow, and its server, start: one clear error in well under a second
    check_audit(source, report_url, workers=workers,
                **{k: params[k] for k in ("policy", "run_id", "batch_size", "part_rows", "remedy_url", "trends",
                                          "create_report_bucket") if k in params})
    if startup is None:
        startup = Startup.begin(source, report_url, workers=workers, dask_address=dask_address,
                                **{k: params[k] for k in ("include", "exclude", "run_id", "reuse") if k in params})
    params["run_id"] = startup.run_id
    timings: dict[str, float] = {}
    try:
        if dask_address is not None:
            from prefect_dask import DaskTaskRunner

            runner: Any = DaskTaskRunner(address=dask_address)
        else:
            # workers start with the pool when the start-up saw files to analyse, else on the first
            # task (a remedy the branch cannot reuse) or never
            runner = WarmProcessPoolTaskRunner(max_workers=workers, start_workers=startup.fresh is not False)
        flow_ = audit.with_options(task_runner=runner)
        from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

        kind, api_url = startup.api(timeout=float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
                                                                 "90")))

        def run_flow() -> dict[str, Any]:
            t0 = time.perf_counter()
            with _heartbeat_thread_not_joined():
                summary = flow_(source, report_url, **params)
            timings["flow"] = time.perf_counter() - t0
            return {**summary, "timings_s": timings, "prefect_api": {"kind": kind, "url": api_url}}

        if kind == "configured":  # a deployment, a test harness, the user's own: left as it is
            return run_flow()
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="audioqc-")
        updates: dict[Any, str] = {PREFECT_API_URL: api_url}
        ca_file = _one_certificate_file(scratch.name)
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
        timings.update({k: v for k, v in startup.timings.items() if k not in timings})
