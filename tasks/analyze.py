"""The analysis task of the audit: diagnose a batch of files, one report row each.

The task runs in a thread of the flow's process and sends the work (:func:`tasks.work.analyze_rows`)
to the compute pool (:mod:`tasks.compute`); a batch the audit's start-up sent already is taken
from there.
"""

from __future__ import annotations

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from audioqc import report

from . import compute
from .listing import MediaObject

# the work itself has no Prefect in it (the compute pool's workers import it)
from .work import WORKER_DIED as _DIED
from .work import analyze_rows, batch_key, error_rows

#: The error of a file whose worker died twice while analysing it (once in its batch, once alone).
WORKER_DIED = f"{_DIED}, twice"


def _run_name() -> str:
    from prefect.runtime import task_run

    batch = task_run.parameters.get("batch") or []
    first = batch[0].name if batch else "empty"
    return f"diagnose {first}" + (f" +{len(batch) - 1}" if len(batch) > 1 else "")


def diagnose_batch(batch: list[MediaObject], run: report.RunInfo, policy_spec: str | None) -> pa.Table:
    """The rows of ``batch`` from the compute pool: sent ahead by the start-up (for the same run:
    the flow takes the start-up's :class:`~audioqc.report.RunInfo`), else sent now. If a
    worker dies on the batch, its files are analysed again one at a time in new workers; a file
    whose worker dies again gets an error row (the others are measured)."""
    sent = compute.take(batch_key(batch, run, policy_spec))
    try:
        if sent is not None:
            return compute.wait(*sent)
        return compute.run(analyze_rows, batch, run, policy_spec)
    except compute.WorkerDied:
        pass
    tables = []
    for obj in batch:
        try:
            tables.append(compute.run(analyze_rows, [obj], run, policy_spec))
        except compute.WorkerDied:
            tables.append(error_rows([obj], run, WORKER_DIED))
    return pa.concat_tables(tables)


# No Prefect caching or result persistence: reuse is decided from the report (flows/audit.py), and
# hashing a batch's inputs for a cache key cost more than the work on short files.
@task(name="diagnose batch", task_run_name=_run_name, cache_policy=NO_CACHE, persist_result=False)
def analyze_batch(batch: list[MediaObject], run: report.RunInfo, policy_spec: str | None) -> pa.Table:
    """Diagnose each object of ``batch`` (decoded once each); one row per object, never raises
    (:func:`diagnose_batch`).

    Returns the rows as an Arrow table: Prefect's task runner keeps every task's result until the
    run ends, and a table of rows is ~100x smaller than the same rows as Python dicts.
    """
    return diagnose_batch(batch, run, policy_spec)
