"""The audit's report writer: rows buffered into parts, and the tallies the summary gives."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from audioqc import report
from tasks.storage import write_part

#: Figures the summary shows before and after a remedy.
BEFORE_AFTER = ("verdict", "loudness_integrated_lufs", "loudness_true_peak_dbtp", "noise_score_snr_db",
                 "quality_score_average")
#: before/after figures kept for the summary (the CLI's table), at most this many files
SHOWN = 50


class PartWriter:
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
                if len(self.after) < SHOWN:
                    self.after[row["original_url"]] = {"url": row["source_url"], "error": row.get("error"),
                                                       **{k: row.get(k) for k in BEFORE_AFTER}}
                continue
            self.counts[key] += 1
            if key in ("error", "fail") and len(self.worst) < 20:
                self.worst.append({"file": row["source_url"], "status": key,
                                   "why": row.get("error") or "; ".join(r["metric"] + " " + r["rule"]
                                                                       for r in row.get("verdict_reasons") or [])})
        self.written += len(self.buffer)
        self.part += 1
        self.buffer = []
