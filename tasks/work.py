"""The CPU work of the audit's tasks, without Prefect: what the compute pool's workers import.

The audit's Prefect tasks (:mod:`tasks.analyze`, :mod:`tasks.remedy`) run in threads of the flow's
process and send this work to the compute pool (:mod:`tasks.compute`), whose workers import
audiolib and the report schema, never Prefect (~1.3 s of imports and ~200 MB of shared pages
saved per pool, and no Prefect state to rebuild per task). Everything a worker unpickles (the
functions and the job classes) is defined here or in other modules without Prefect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pyarrow as pa

from audiolib.errors import AudioQCError
from audioqc import report

from .listing import MediaObject, object_of

# ----------------------------------------------------------------------------------------------
# policies


def policy_of(spec: str | None) -> Any:
    """The policy ``spec`` names, loaded once per version of its file (a policy file edited between
    two audits in one process, a server or a test, is read again)."""
    if spec is None:
        return None
    try:
        stamp = os.stat(spec).st_mtime_ns if "://" not in spec and os.path.exists(spec) else None
    except OSError:
        stamp = None
    return _load_policy(spec, stamp)


@lru_cache(maxsize=8)
def _load_policy(spec: str, stamp: int | None) -> Any:
    from audioqc.policy import load_policy

    return load_policy(spec)


def verdict_for(row: dict[str, Any], policy_spec: str | None) -> tuple[str | None, list[dict[str, Any]]]:
    """The policy verdict of an ``ok`` row (None without a policy)."""
    policy = policy_of(policy_spec)
    if policy is None or row.get("status") != "ok":
        return None, []
    from audioqc.policy import evaluate

    verdict = evaluate(policy, row)
    return verdict.verdict, report.format_reasons(verdict.reasons)


# ----------------------------------------------------------------------------------------------
# diagnose


def diagnosed(url: str) -> tuple[Any, str | None]:
    """``(result, None)`` of diagnosing ``url``, or ``(None, error)`` naming the file and the problem:
    any failure, so that a bug or a file that exhausts memory never kills the audit."""
    from audiolib.diagnose import diagnose

    try:
        return diagnose(url), None
    except AudioQCError as exc:
        return None, str(exc)
    except MemoryError:
        return None, f"{url}: out of memory"
    except Exception as exc:  # a bug: recorded on the file's row
        return None, f"{url}: internal error: {type(exc).__name__}: {exc}"


def analyze_one(obj: MediaObject, run: report.RunInfo, policy_spec: str | None) -> dict[str, Any]:
    """Diagnose one object; any failure becomes an error row naming the problem."""
    common: dict[str, Any] = dict(etag=obj.etag, mtime=obj.mtime, size_bytes=obj.size_bytes)
    if obj.problem is not None:  # the listing saw it cannot be read: never opened (a FIFO would block)
        return report.make_row(run, obj.url, error=f"{obj.url}: {obj.problem}", **common)
    result, error = diagnosed(obj.url)
    if error is not None:
        return report.make_row(run, obj.url, error=error, **common)
    row = report.make_row(run, obj.url, result=result, **common)
    if result.decode.truncated:
        row["error"] = result.decode.problem  # measured, but say what was wrong
    row["verdict"], row["verdict_reasons"] = verdict_for(row, policy_spec)
    return row


def analyze_rows(batch: list[MediaObject], run: report.RunInfo, policy_spec: str | None) -> pa.Table:
    """One row per object of ``batch`` (decoded once each), as an Arrow table; never raises.

    A table rather than row dicts: it crosses the process boundary as a few buffers, and Prefect
    keeps every task's result until the run ends (row dicts: ~100x larger; the audit of 20,000
    files peaked at 585 MB with dicts)."""
    return report.rows_to_table([analyze_one(obj, run, policy_spec) for obj in batch])


def batch_key(batch: list[MediaObject], run: report.RunInfo, policy_spec: str | None) -> tuple[Any, ...]:
    """What identifies a batch's analysis sent ahead by the audit's start-up (:func:`prefetch`): its
    files, the run (id and time: the rows carry both) and the policy."""
    return ("diagnose", run.run_id, run.run_time, tuple(o.url for o in batch), policy_spec)


def prefetch(batch: list[MediaObject], run: report.RunInfo, policy_spec: str | None) -> Any:
    """Send ``batch``'s analysis to the compute pool now; the flow's task for the same batch takes
    it (:func:`tasks.analyze.diagnose_batch`). No Prefect here: the start-up calls it while
    Prefect is being imported. The call's future (None: no compute pool)."""
    from . import compute

    return compute.prefetch(batch_key(batch, run, policy_spec), analyze_rows, batch, run, policy_spec)


#: What a call whose worker process died says (:class:`tasks.compute.WorkerDied`).
WORKER_DIED = "its worker process died (killed by the system: out of memory, or a crash in a decoder)"


def error_rows(batch: list[MediaObject], run: report.RunInfo, problem: str) -> pa.Table:
    """An error row for each object of ``batch``: ``<url>: <problem>``."""
    return report.rows_to_table([report.make_row(run, o.url, error=f"{o.url}: {problem}", etag=o.etag,
                                                 mtime=o.mtime, size_bytes=o.size_bytes) for o in batch])


# ----------------------------------------------------------------------------------------------
# remedy


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


def _prepare_local(dest_url: str) -> None:
    """A local destination: its folder made (the remedied files keep the collection's tree), and
    the temporary files of an earlier attempt at this destination that was killed removed
    (:func:`audiolib.io.atomic_output` names them ``.<name>.<random>.part`` beside it)."""
    import glob

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


def remedy_outcome(job: RemedyJob) -> RemedyOutcome:
    """Write the remedied file of ``job`` (atomically: a failed remedy leaves nothing); never raises."""
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

    policy = policy_of(policy_spec)
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
    result, error = diagnosed(job.dest_url)
    if error is not None:
        return report.make_row(run, job.dest_url, error=error, **identity, **common)
    row = report.make_row(run, job.dest_url, result=result, **identity, **common)
    row["verdict"], row["verdict_reasons"] = remedied_verdict(row, job, policy_spec)
    return row


def remedied_table(outcome: RemedyOutcome, run: report.RunInfo, policy_spec: str) -> pa.Table:
    """The remedied row of ``outcome`` as a one-row table (see :func:`remedied_row`)."""
    return report.rows_to_table([remedied_row(outcome, run, policy_spec)])
