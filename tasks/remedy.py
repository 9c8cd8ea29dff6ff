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

from audiolib.errors import AudioQCError
from audioqc import report

from .analyze import _policy
from .storage import STORAGE_TASK


@dataclass(frozen=True)
class RemedyJob:
    """One file to remedy: the original's row facts the branch needs."""

    original_url: str
    dest_url: str
    remedies: tuple[str, ...]  # the policy's remedies, as text (denoise(amount=100), ...)
    steps: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]  # name -> parameters
    measured_lufs: float | None  # the original's loudness as the loudness remedy is gated
    reasons: tuple[dict[str, Any], ...]  # the original's verdict reasons (report form)
    format: str | None = None

    @property
    def name(self) -> str:
        return self.original_url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RemedyOutcome:
    job: RemedyJob
    error: str | None = None
    result: dict[str, Any] | None = None


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
    policy = _policy(policy_spec)
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

    outcome = task_run.parameters.get("outcome")
    return f"rediagnose {outcome.job.name}" if outcome else "rediagnose"


def _prepare_local(dest_url: str) -> None:
    """A local destination: its folder made (the remedied files keep the collection's tree), and
    the temporary files of an earlier attempt at this destination that was killed removed
    (:func:`audiolib.io.atomic_output` names them ``.<name>.<random>.part`` beside it)."""
    import glob
    import os

    if "://" in dest_url and not dest_url.startswith("file://"):
        return  # object storage: one PUT, or a multipart upload that never completed, leaves no object
    path = dest_url[len("file://"):] if dest_url.startswith("file://") else dest_url
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name[:120])}.*.part")):
        try:
            os.unlink(stale)
        except OSError:
            pass


@task(name="remedy", task_run_name=_remedy_name, cache_policy=NO_CACHE, persist_result=False)
def remedy(job: RemedyJob) -> RemedyOutcome:
    """Write the remedied file of ``job`` (atomically: a failed remedy leaves nothing)."""
    from audiolib.remedy import remedy_file

    try:
        _prepare_local(job.dest_url)
        result = remedy_file(job.original_url, job.dest_url, {n: dict(p) for n, p in job.steps},
                             measured_lufs=job.measured_lufs, format=job.format)
    except AudioQCError as exc:
        return RemedyOutcome(job, error=f"remedy failed: {exc}")
    except MemoryError:
        return RemedyOutcome(job, error=f"{job.original_url}: remedy failed: out of memory")
    except Exception as exc:  # a bug must not kill the audit: it goes on the file's row
        return RemedyOutcome(job, error=f"{job.original_url}: remedy failed: internal error: "
                                        f"{type(exc).__name__}: {exc}")
    return RemedyOutcome(job, result=result.to_dict())


KEPT = " (kept from the original: no applied remedy repairs it)"


def remedied_verdict(row: dict[str, Any], job: RemedyJob, policy_spec: str) -> tuple[str, list[dict[str, Any]]]:
    """The remedied file's verdict, without laundering: every failure of the original on a metric
    no applied remedy repairs is kept (a lower level moves a clipped file's flat tops under full
    scale, where the clipping detector no longer sees them)."""
    from audioqc.policy import evaluate
    from audioqc.remedies import addressed_by

    policy = _policy(policy_spec)
    applied = tuple(policy.remedy(n) for n, _ in job.steps)
    verdict = evaluate(policy, row)
    reasons = list(report.format_reasons(verdict.reasons))
    seen = {r["metric"] for r in reasons}
    for r in job.reasons:
        if r["metric"] not in seen and not addressed_by(r["metric"], applied):
            reasons.append({**r, "rule": (r.get("rule") or "") + KEPT})
    severities = {r["severity"] for r in reasons}
    return ("fail" if "fail" in severities else "warn" if severities else "pass"), reasons


def remedied_row(outcome: RemedyOutcome, run: report.RunInfo, policy_spec: str) -> dict[str, Any]:
    """Diagnose the remedied file; its report row (``stage = remedied``), never raises."""
    from audiolib.diagnose import diagnose

    from .storage import object_of

    job = outcome.job
    common: dict[str, Any] = dict(stage="remedied", original_url=job.original_url, remedies=list(job.remedies))
    if outcome.error is not None:
        return report.make_row(run, job.dest_url, etag=None, mtime=None, size_bytes=None, error=outcome.error,
                               **common)
    try:
        obj = object_of(job.dest_url)
        identity: dict[str, Any] = dict(etag=obj.etag, mtime=obj.mtime, size_bytes=obj.size_bytes)
    except Exception:  # the row is still worth writing without them
        identity = dict(etag=None, mtime=None, size_bytes=None)
    try:
        result = diagnose(job.dest_url)
    except AudioQCError as exc:
        return report.make_row(run, job.dest_url, error=str(exc), **identity, **common)
    except Exception as exc:
        return report.make_row(run, job.dest_url, error=f"{job.dest_url}: internal error: {type(exc).__name__}: {exc}",
                               **identity, **common)
    row = report.make_row(run, job.dest_url, result=result, **identity, **common)
    row["verdict"], row["verdict_reasons"] = remedied_verdict(row, job, policy_spec)
    return row


@task(name="rediagnose", task_run_name=_rediagnose_name, cache_policy=NO_CACHE, persist_result=False)
def rediagnose(outcome: RemedyOutcome, run: report.RunInfo, policy_spec: str) -> pa.Table:
    """The remedied row of ``outcome`` as a one-row table (see :func:`remedied_row`)."""
    return report.rows_to_table([remedied_row(outcome, run, policy_spec)])


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
