"""The remedy branch of the audit: fix a failing file, then diagnose the fixed file again.

Two Prefect tasks per file, so the UI shows them apart: ``remedy`` (the file a policy's remedies
make of the original, written atomically under the remedy prefix) and ``rediagnose`` (its report
row, ``stage = remedied``). Neither raises: a failure becomes the remedied row's error.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from audioqc import report

from . import compute
from .storage import STORAGE_TASK

# the work itself has no Prefect in it (the compute pool's workers import it)
from .work import (
    WORKER_DIED,
    RemedyJob,
    RemedyOutcome,
    policy_of,
    remedied_table,
    remedied_verdict,
    remedy_outcome,
)


def dest_for(original_url: str, source: str, remedy_url: str, format: str | None = None) -> str:
    """Where the remedied file of ``original_url`` goes: ``remedy_url`` + its path relative to
    the audited ``source`` (the extension changed when a remedy asks for another format)."""
    src = source.rstrip("/")
    if original_url == src:  # a single file was audited
        rel = original_url.rsplit("/", 1)[-1]
    elif original_url.startswith(src + "/"):
        rel = original_url[len(src) + 1:]
    else:
        rel = original_url.rsplit("/", 1)[-1]
    if format:
        stem, ext = posixpath.splitext(rel)
        rel = f"{stem}.{format}"
    return f"{remedy_url.rstrip('/')}/{rel}"


def job_for(row: dict[str, Any], policy_spec: str, source: str, remedy_url: str) -> RemedyJob | None:
    """The remedy job of an original row, or None when it needs none (pass, error, or no failed
    rule names a remedy)."""
    if row.get("status") != "ok" or row.get("verdict") in (None, "pass"):
        return None
    policy = policy_of(policy_spec)
    named = {r.get("remedy") for r in row.get("verdict_reasons") or [] if r.get("remedy")}
    from audioqc.remedies import REMEDY_ORDER, output_format

    remedies = tuple(policy.remedy(n) for n in REMEDY_ORDER if n in named)
    if not remedies:
        return None
    fmt = output_format(remedies)
    loud = next((r for r in remedies if r.name == "loudness"), None)
    measured = None
    if loud is not None:
        key = "loudness_speech_integrated_lufs" if loud.options["gating"] == "speech" else "loudness_integrated_lufs"
        measured = row.get(key)
    steps = tuple((r.name, tuple((k, v) for k, v in r.params if k != "format")) for r in remedies)
    return RemedyJob(original_url=row["source_url"], dest_url=dest_for(row["source_url"], source, remedy_url, fmt),
                     remedies=tuple(r.text for r in remedies), steps=steps, measured_lufs=measured,
                     reasons=tuple(dict(r) for r in row.get("verdict_reasons") or []), format=fmt)


def _remedy_name() -> str:
    from prefect.runtime import task_run

    job = task_run.parameters.get("job")
    return f"remedy {job.name}" if job else "remedy"


def _rediagnose_name() -> str:
    from prefect.runtime import task_run

    # the name is made before Prefect resolves the upstream remedy's future into its outcome
    job = task_run.parameters.get("job")
    return f"rediagnose {job.name}" if job else "rediagnose"


@task(name="remedy", task_run_name=_remedy_name, cache_policy=NO_CACHE, persist_result=False)
def remedy(job: RemedyJob) -> RemedyOutcome:
    """Write the remedied file of ``job`` (atomically: a failed remedy leaves nothing), on the
    compute pool (:func:`tasks.work.remedy_outcome`); a worker that dies makes it an error."""
    try:
        return compute.run(remedy_outcome, job)
    except compute.WorkerDied:
        return RemedyOutcome(job, error=f"{job.original_url}: remedy failed: {WORKER_DIED}")


@task(name="rediagnose", task_run_name=_rediagnose_name, cache_policy=NO_CACHE, persist_result=False)
def rediagnose(outcome: RemedyOutcome, run: report.RunInfo, policy_spec: str, job: RemedyJob | None = None) -> pa.Table:
    """The remedied row of ``outcome`` as a one-row table (:func:`tasks.work.remedied_row`), on the
    compute pool. ``job``: the outcome's job, for the task run's name only (the outcome arrives
    as the upstream ``remedy`` task's future)."""
    try:
        return compute.run(remedied_table, outcome, run, policy_spec)
    except compute.WorkerDied:
        died = RemedyOutcome(outcome.job, error=f"{outcome.job.dest_url}: rediagnose failed: {WORKER_DIED}")
        return remedied_table(died, run, policy_spec)


# ----------------------------------------------------------------------------------------------
# what the report already holds: resume and reuse

#: Columns of an original row the branch needs to build its job.
JOB_COLUMNS = ["run_id", "run_time", "source_url", "stage", "original_url", "remedies", "status", "verdict",
               "verdict_reasons", "analysis_version", "etag", "mtime", "size_bytes", "loudness_integrated_lufs",
               "loudness_speech_integrated_lufs"]


@dataclass
class RemedyState:
    """The remedy branch's view of the report."""

    #: original rows of this run (source_url -> row) that have no remedied row in this run yet
    unremedied: dict[str, dict[str, Any]]
    #: remedied rows of earlier runs: (original_url, remedies, dest_url, run_id) -> (row identity)
    earlier: dict[tuple[str, tuple[str, ...], str, str], tuple[str | None, Any, int | None]]


def _is_original(stage: Any) -> bool:
    return stage in (None, "original")


@task(name="read remedy state", **STORAGE_TASK)
def read_remedy_state(report_url: str, run_id: str) -> RemedyState:
    """This run's originals still to remedy (a resumed run) and earlier runs' remedied rows."""
    from audiolib import ANALYSIS_VERSION

    state = RemedyState({}, {})
    try:
        table = report.read_report(report_url, columns=JOB_COLUMNS)
    except (FileNotFoundError, OSError):
        return state
    remedied_here: set[str] = set()
    for row in table.to_pylist():
        if row["run_id"] == run_id:
            if _is_original(row["stage"]):
                state.unremedied[row["source_url"]] = row
            else:
                remedied_here.add(row["original_url"])
        elif row["stage"] == "remedied" and row["status"] == "ok" and row["analysis_version"] == ANALYSIS_VERSION:
            key = (row["original_url"], tuple(row["remedies"] or ()), row["source_url"], row["run_id"])
            state.earlier[key] = (row["etag"], row["mtime"], row["size_bytes"])
    for url in remedied_here:
        state.unremedied.pop(url, None)
    return state


@task(name="reuse remedied rows", **STORAGE_TASK)
def reuse_remedied(report_url: str, jobs: list[tuple[RemedyJob, str]], run: report.RunInfo,
                   policy_spec: str) -> pa.Table:
    """Copy earlier remedied rows into this run (``(job, run_id of the row)`` pairs: checked by the
    caller), their verdict recomputed with this run's policy."""
    import pyarrow.dataset as ds

    data = report.dataset(report_url)
    wanted = {(job.dest_url, rid): job for job, rid in jobs}
    table = data.to_table(filter=ds.field("source_url").isin(sorted({j.dest_url for j, _ in jobs}))
                          & ds.field("run_id").isin(sorted({r for _, r in jobs})) & (ds.field("stage") == "remedied"))
    out = []
    for row in table.drop_columns([report.PARTITION]).to_pylist():
        job = wanted.pop((row["source_url"], row["run_id"]), None)
        if job is None:
            continue
        row.update(run_id=run.run_id, run_time=run.run_time)
        row["verdict"], row["verdict_reasons"] = remedied_verdict(row, job, policy_spec)
        out.append(row)
    return report.rows_to_table(out)


def reusable(job: RemedyJob, cached_run: str | None, state: RemedyState) -> str | None:
    """The run id of an earlier remedied row ``job`` may reuse: the original unchanged since that
    run (its row reused from ``cached_run``), the same remedies to the same destination, and the
    remedied object still the one that run wrote. None: remedy again."""
    if cached_run is None:
        return None
    ident = state.earlier.get((job.original_url, job.remedies, job.dest_url, cached_run))
    if ident is None:
        return None
    from .storage import object_of

    try:
        obj = object_of(job.dest_url)
    except (FileNotFoundError, OSError):
        return None
    etag, mtime, size = ident
    if etag and obj.etag:
        return cached_run if etag == obj.etag else None
    return cached_run if (size, mtime) == (obj.size_bytes, obj.mtime) else None
