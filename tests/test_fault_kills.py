"""Fault 5: a kill -9 leaves nothing a reader trips on and nothing running. Part files are written
under temporary names outside the report folder (DuckDB's read_parquet('report/**') reads parts
only, at any moment); a resumed run removes its own stale temporaries; every helper process the
CLI started (the temporary Prefect server, the fork server, the workers) dies with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from audiolib import io
from audioqc import report

pytestmark = pytest.mark.timeout(900)


def media(root: Path, n: int, seconds: float = 8.0) -> None:
    root.mkdir()
    rng = np.random.default_rng(5)
    for i in range(n):
        io.write(str(root / f"f{i:02d}.wav"), (0.1 * rng.standard_normal((2, int(48000 * seconds)))).astype(np.float32),
                 48000)


def audit_cmd(src: Path, dest: Path, run_id: str) -> list[str]:
    return [sys.executable, "-m", "audioqc", "audit", str(src), "--report", str(dest), "--workers", "1",
            "--batch-size", "1", "--part-rows", "1", "--run-id", run_id]


def env_with(marker: str) -> dict[str, str]:
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", "AUDIOQC_TEST_MARKER": marker}
    env.pop("PREFECT_API_URL", None)
    return env


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds the marker (children inherit it)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"AUDIOQC_TEST_MARKER={marker}".encode() in f.read():
                    with open(f"/proc/{pid}/stat") as s:
                        if s.read().split(") ", 1)[1].split()[0] != "Z":  # not a zombie
                            found.append(int(pid))
        except OSError:
            continue
    return found


def wait_for_parts(dest: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(dest.glob("run_date=*/part-*.parquet"))) >= n:
            return
        time.sleep(0.05)


def test_kills_leave_readable_reports_and_resume_cleans_its_temporaries(tmp_path):
    import duckdb

    n = 10
    media(tmp_path / "m", n)
    dest = tmp_path / "report"
    marker = uuid.uuid4().hex
    for kill in range(2):
        proc = subprocess.Popen(audit_cmd(tmp_path / "m", dest, "k1"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env_with(marker), start_new_session=True)
        wait_for_parts(dest, 2 + 3 * kill, proc)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # whatever the moment, every reader reads the report
        count = duckdb.sql(f"select count(*) from read_parquet('{dest}/**')").fetchall()[0][0]
        assert count == len(report.read_report(str(dest)))
    # what a kill in the middle of a part write leaves: its run's temporary, outside the folder
    scratch = Path(report.temporary_dir(str(dest)))
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "part-k1-000099.parquet.deadbeef.tmp").write_bytes(b"PAR1 no footer")
    (scratch / "part-other-000001.parquet.deadbeef.tmp").write_bytes(b"PAR1 another run's")
    assert not list(dest.rglob("*.tmp"))  # never inside the report folder
    done = subprocess.run(audit_cmd(tmp_path / "m", dest, "k1"), capture_output=True, text=True,
                          env=env_with(marker), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = report.read_report(str(dest), run_id="k1").to_pandas()
    assert len(rows) == n and rows.source_url.is_unique
    assert sorted(p.name for p in scratch.iterdir()) == ["part-other-000001.parquet.deadbeef.tmp"]
    assert duckdb.sql(f"select count(*) from read_parquet('{dest}/**')").fetchall()[0][0] == n


def test_helpers_die_with_a_killed_audit(tmp_path):
    media(tmp_path / "m", 8, seconds=20.0)
    dest = tmp_path / "report"
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(audit_cmd(tmp_path / "m", dest, "k2") + ["--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env_with(marker))
    wait_for_parts(dest, 1, proc)
    assert proc.poll() is None, "the run finished before it could be killed"
    helpers = [p for p in processes_with(marker) if p != proc.pid]
    assert len(helpers) >= 3  # the API server, the fork server, workers
    proc.send_signal(signal.SIGKILL)  # only the CLI: nothing else is sent a signal
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and processes_with(marker):
        time.sleep(0.2)
    assert processes_with(marker) == []


def test_a_killed_worker_costs_no_row(tmp_path):
    """The system kills a compute worker in the middle of a file (as the OOM killer does): the audit
    goes on, the files it held are analysed again in a new worker, and every file has exactly one
    row, measured."""
    n = 6
    media(tmp_path / "m", n, seconds=30.0)
    dest = tmp_path / "report"
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(audit_cmd(tmp_path / "m", dest, "k3"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env_with(marker), text=True)
    wait_for_parts(dest, 1, proc)
    assert proc.poll() is None, "the run finished before a worker could be killed"

    def parent(pid: int) -> int:
        with open(f"/proc/{pid}/stat") as s:
            return int(s.read().split(") ", 1)[1].split()[1])

    # the workers are the children of the fork server, itself a child of the CLI
    helpers = [p for p in processes_with(marker) if p != proc.pid]
    workers = [p for p in helpers if parent(p) in helpers and parent(parent(p)) == proc.pid]
    assert workers, helpers
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "analysed 6" in out, (out[-1000:], err[-2000:])
    rows = report.read_report(str(dest), run_id="k3").to_pandas()
    assert len(rows) == n and rows.source_url.is_unique
    assert (rows.status == "ok").all(), rows[["source_url", "status", "error"]]
