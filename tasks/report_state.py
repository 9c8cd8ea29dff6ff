"""What an existing report says about a run: its rows so far, and the rows an unchanged file may
reuse. No Prefect here: the audit's ``read report state`` task (:mod:`tasks.storage`) reads it, and
so does the audit's start-up (:mod:`flows.startup`) while the Prefect server starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from audiolib import ANALYSIS_VERSION, storage
from audioqc import report

from .listing import file_identity


@dataclass
class ReportState:
    """What an existing report says about this run and earlier ones."""

    done: set[str] = field(default_factory=set)  # URLs with a row in this run already
    next_part: int = 0
    cache: dict[tuple, str] = field(default_factory=dict)  # identity -> run_id of a reusable row


def identity_of(row: dict[str, Any]) -> tuple:
    """A report row's file identity (:func:`tasks.listing.file_identity`, the listing's own)."""
    return file_identity(row["source_url"], row.get("etag"), row.get("size_bytes"), row.get("mtime"))


def report_state(report_url: str, run_id: str | None) -> ReportState:
    """Rows already written for ``run_id`` (None: a new run, none), its next part number, and
    reusable earlier rows."""
    state = ReportState()
    try:
        table = report.read_report(report_url, columns=["run_id", "run_time", "source_url", "etag", "mtime",
                                                        "size_bytes", "status", "analysis_version"])
    except (FileNotFoundError, OSError):
        return state
    if table.num_rows == 0:
        return state
    if run_id is not None:
        this = table.filter(pc.equal(table["run_id"], run_id))
        state.done = set(this["source_url"].to_pylist())
        if this.num_rows:
            fs, root = storage.filesystem(report_url)
            numbers = [parsed[1] for parsed in map(report.parse_part_name, fs.find(root))
                       if parsed is not None and parsed[0] == run_id]
            state.next_part = 1 + max(numbers)
    ok = table.filter(pc.and_(pc.equal(table["status"], "ok"), pc.equal(table["analysis_version"], ANALYSIS_VERSION)))
    if run_id is not None:
        ok = ok.filter(pc.invert(pc.equal(ok["run_id"], run_id)))
    ok = ok.sort_by([("run_time", "ascending")])
    for row in ok.select(["run_id", "source_url", "etag", "mtime", "size_bytes"]).to_pylist():
        state.cache[identity_of(row)] = row["run_id"]  # the latest run wins
    return state
