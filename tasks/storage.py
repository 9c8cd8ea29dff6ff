"""Storage steps of the audit: list a collection, read the report's state, write report parts, copy
reused rows (Prefect tasks, retried on transient errors only)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from audioqc import report

from .handoff import take

# the listing itself has no Prefect in it (the audit's start-up lists before Prefect is imported)
from .listing import MEDIA_EXTENSIONS, MediaObject, list_objects, matches, object_of  # noqa: F401
from .report_state import ReportState, report_state
from .work import verdict_for

STORAGE_RETRIES = 3
STORAGE_RETRY_DELAYS_S = [1, 4, 10]


def is_transient(exc: BaseException | None) -> bool:
    """Whether trying a storage step again could help: a timeout, a dropped connection, a 5xx,
    throttling; not a missing object or bucket, denied credentials or an invalid request."""
    from audiolib.errors import AudioQCError, RemoteError
    from audiolib.storage import remote_error

    if exc is None:
        return False
    if isinstance(exc, RemoteError):
        return exc.transient
    if isinstance(exc, AudioQCError) or isinstance(exc, (FileNotFoundError, PermissionError, ValueError,
                                                         TypeError, KeyError)):
        return False
    mapped = remote_error("storage", exc)
    return isinstance(mapped, RemoteError) and mapped.transient


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn`` of the storage tasks: retry transient errors only."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # the result could not be read: decide on what was raised
        exc = err
    return is_transient(exc if isinstance(exc, BaseException) else None)


#: Options of every storage task: no Prefect caching or result persistence (the report is the
#: cache), retries with delays for transient errors only.
STORAGE_TASK: dict[str, Any] = dict(cache_policy=NO_CACHE, persist_result=False, retries=STORAGE_RETRIES,
                                    retry_delay_seconds=STORAGE_RETRY_DELAYS_S, retry_condition_fn=retry_transient)


def _list_media(source: str, include: list[str] | None = None, exclude: list[str] | None = None) -> list[MediaObject]:
    """Every media object under ``source`` (:func:`tasks.listing.list_objects`); the listing the
    audit's start-up made while the Prefect server started, when it made one for these arguments
    (:mod:`tasks.handoff`)."""
    listed = take("listing", (source, tuple(include or ()), tuple(exclude or ())))
    return listed if listed is not None else list_objects(source, include, exclude)


list_media = task(name="list media", **STORAGE_TASK)(_list_media)


@task(name="read report state", **STORAGE_TASK)
def read_report_state(report_url: str, run_id: str) -> ReportState:
    """Rows already written for ``run_id``, its next part number, and reusable earlier rows
    (:func:`tasks.report_state.report_state`); what the audit's start-up read, when it read it
    (:mod:`flows.startup`, :mod:`tasks.handoff`)."""
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
