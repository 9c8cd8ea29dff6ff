"""The audit's remedy branch: failing files fixed by their policy's remedies, then diagnosed again."""

from __future__ import annotations

from typing import Any

from audioqc import report
from flows.writer import BEFORE_AFTER, SHOWN, PartWriter
from tasks.remedy import RemedyJob, job_for, read_remedy_state, rediagnose, remedy, reusable, reuse_remedied


class RemedyBranch:
    """The remedy branch of one run: which files to fix, their tasks, what to reuse, the tally.

    For every original row whose verdict is not ``pass`` and whose failed or warned rules name a
    remedy: a ``remedy`` task (the fixed file under ``remedy_url``) and a ``rediagnose`` task (its
    row, ``stage = remedied``), on the flow's task runner. An earlier run's remedied row is reused
    instead when the original is unchanged since that run, the remedies and destination are the
    same and the remedied object is still the one it wrote (:func:`tasks.remedy.reusable`).
    """

    SHOWN = SHOWN

    def __init__(self, report_url: str, run: report.RunInfo, policy: str, source: str, remedy_url: str) -> None:
        self.report_url, self.run, self.policy = report_url, run, policy
        self.source, self.remedy_url = source, remedy_url
        self.state = read_remedy_state(report_url, run.run_id)
        self.not_fixable = 0
        self.reused = 0
        self.before: dict[str, dict[str, Any]] = {}

    def _keep_before(self, row: dict[str, Any]) -> None:
        if len(self.before) < self.SHOWN:
            self.before[row["source_url"]] = {k: row.get(k) for k in BEFORE_AFTER}

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
        # Prefect passes the remedy's result to rediagnose when the upstream future resolves
        return [rediagnose.submit(remedy.submit(job), self.run, self.policy, job)  # type: ignore[call-overload]
                for job in jobs]

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
            futures.append(Done(reuse_remedied(self.report_url, reuse, self.run, self.policy)))
        return futures

    def resume(self) -> list[Any]:
        """Futures for this run's originals (a resumed run) that have no remedied row yet."""
        return self._start(self._jobs(list(self.state.unremedied.values())))

    def summary(self, writer: PartWriter) -> dict[str, Any]:
        r = writer.remedied
        return {"remedy_url": self.remedy_url, "remedied": sum(r.values()), "fixed": r.get("pass", 0),
                "still_failing": r.get("warn", 0) + r.get("fail", 0), "errors": r.get("error", 0),
                "not_fixable": self.not_fixable, "reused": self.reused,
                "files": [{"file": url, "before": before, "after": writer.after.get(url)}
                          for url, before in self.before.items()]}


class Done:
    """A result already computed, where the submit loop expects a future."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value
