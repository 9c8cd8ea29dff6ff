"""Jobs and uploads in SQLite: what a restarted server answers from.

Why SQLite rather than Prefect's database: the per-request path must not depend on a Prefect API
server (a temporary one takes seconds to start, a permanent one is a second service to run), and a
job is one row written three or four times in its life. SQLite is in the standard library, one file
in ``--data-dir``, transactional, and in WAL mode with ``synchronous=NORMAL`` a committed row
survives the process being killed (a power loss may lose the last transactions; the jobs are then
simply not accepted, never half-written). One connection, serialised by a lock: every statement
is a primary-key read or write that takes microseconds.

Rows keep the job's parameters, input and output URLs, which may be presigned URLs (credentials
for one object): the data directory is created private to the server's user (0700).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Job", "Upload", "JobStore", "ACTIVE_STATES", "TERMINAL_STATES"]

#: Job states in order. ``downloading``: a remote input being fetched; ``queued``: waiting for a
#: worker; ``running``: in a worker (or its output being uploaded); then ``succeeded``/``failed``.
ACTIVE_STATES = ("downloading", "queued", "running")
TERMINAL_STATES = ("succeeded", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    api TEXT NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    input_url TEXT,
    input_path TEXT,
    output_url TEXT,
    output_path TEXT,
    webhook_url TEXT,
    webhook_state TEXT,
    sync INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    queued REAL,
    started REAL,
    finished REAL,
    queue_length INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error_status INTEGER,
    error TEXT,
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    path TEXT NOT NULL,
    ext TEXT,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Job:
    """One job row (times are Unix seconds; ``result`` is the parsed JSON)."""

    seq: int
    id: str
    owner: str
    api: str
    kind: str
    params: dict[str, Any]
    input_url: str | None
    input_path: str | None
    output_url: str | None
    output_path: str | None
    webhook_url: str | None
    webhook_state: str | None
    sync: bool
    state: str
    attempts: int
    created: float
    queued: float | None
    started: float | None
    finished: float | None
    queue_length: int
    result: Any
    error_status: int | None
    error: str | None
    pid: int | None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class Upload:
    """An uploaded file (``POST /v1/upload``)."""

    id: str
    owner: str
    path: str
    ext: str | None
    size: int
    created: float


def _job(row: sqlite3.Row) -> Job:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    d["result"] = json.loads(d["result"]) if d["result"] is not None else None
    d["sync"] = bool(d["sync"])
    return Job(**d)


class JobStore:
    """The SQLite database under ``data_dir`` (created if missing)."""

    def __init__(self, data_dir: str) -> None:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(data_dir, "jobs.sqlite3")
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # jobs -------------------------------------------------------------------------------------

    def insert_job(self, *, id: str, owner: str, api: str, kind: str, params: dict[str, Any],
                   input_url: str | None, input_path: str | None, output_url: str | None,
                   output_path: str | None, webhook_url: str | None, sync: bool, state: str,
                   queue_length: int) -> Job:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, owner, api, kind, params, input_url, input_path, output_url, output_path,"
                " webhook_url, webhook_state, sync, state, created, queued, queue_length)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (id, owner, api, kind, json.dumps(params), input_url, input_path, output_url, output_path,
                 webhook_url, "pending" if webhook_url else None, int(sync), state, now,
                 now if state == "queued" else None, queue_length))
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (id,)).fetchone()
        return _job(row)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of one job (``result`` is stored as JSON)."""
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"], allow_nan=False)
        if "params" in fields:
            fields["params"] = json.dumps(fields["params"])
        names = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {names} WHERE id = ?", (*fields.values(), job_id))

    def unfinished(self) -> list[Job]:
        """Jobs not succeeded nor failed, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state IN ('downloading', 'queued', 'running') ORDER BY seq").fetchall()
        return [_job(r) for r in rows]

    def pending_webhooks(self) -> list[Job]:
        """Finished jobs whose webhook has not been delivered (nor given up on)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE webhook_state = 'pending' AND state IN ('succeeded', 'failed')"
                " ORDER BY seq").fetchall()
        return [_job(r) for r in rows]

    def iter_jobs(self) -> Iterator[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
        yield from (_job(r) for r in rows)

    # uploads ----------------------------------------------------------------------------------

    def insert_upload(self, *, id: str, owner: str, path: str, ext: str | None, size: int) -> Upload:
        now = time.time()
        with self._lock:
            self._db.execute("INSERT INTO uploads (id, owner, path, ext, size, created) VALUES (?, ?, ?, ?, ?, ?)",
                             (id, owner, path, ext, size, now))
        return Upload(id, owner, path, ext, size, now)

    def get_upload(self, upload_id: str) -> Upload | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return Upload(**dict(row)) if row is not None else None
