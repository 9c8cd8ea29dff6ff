"""Fault 3: the report destination is never created or re-created behind the operator's back; a
write that fails fails the run loudly, and the summary counts only the rows that were written."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from audiolib import io
from faults import cli, moto_process


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("m")
    rng = np.random.default_rng(2)
    for i in range(12):
        io.write(str(d / f"f{i:02d}.wav"), (0.1 * rng.standard_normal((2, 48000 * 6))).astype(np.float32), 48000)
    return d


def test_missing_report_bucket_is_an_error_unless_asked_to_create_it(media):
    with moto_process() as moto:
        fs = moto.fs()
        fs.mkdir("src-bucket")
        fs.put(str(media / "f00.wav"), "src-bucket/c/f00.wav")
        run = cli("audit", "s3://src-bucket/c", "--report", "s3://norep/r", env=moto.env)
        assert run.returncode == 1 and "bucket norep does not exist" in run.lines[0] and len(run.lines) == 1
        assert not fs.exists("norep")
        run = cli("audit", "s3://src-bucket/c", "--report", "s3://norep/r", "--create-report-bucket",
                  env={**moto.env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"})
        assert run.returncode == 0, run.stderr[-2000:]
        fs.invalidate_cache()
        assert fs.exists("norep") and fs.find("norep/r")


def test_bucket_deleted_mid_run_fails_the_run_loudly(media):
    with moto_process() as moto:
        fs = moto.fs()
        fs.mkdir("src-bucket")
        fs.mkdir("rep-bucket")
        for i in range(12):
            fs.put(str(media / f"f{i:02d}.wav"), f"src-bucket/c/f{i:02d}.wav")
        env = {**os.environ, **moto.env, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
        proc = subprocess.Popen([sys.executable, "-m", "audioqc", "audit", "s3://src-bucket/c", "--report",
                                 "s3://rep-bucket/r", "--batch-size", "1", "--part-rows", "1", "--workers", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            fs.invalidate_cache()
            if len(fs.find("rep-bucket/r")) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before the bucket could be deleted"
        # The audit keeps writing parts while the bucket is emptied, so a part can land between
        # the removal of the objects and that of the bucket ("bucket not empty"): empty it again.
        for attempt in range(20):
            try:
                fs.rm("rep-bucket", recursive=True)
                break
            except OSError as exc:
                if "not empty" not in str(exc) or attempt == 19:
                    raise
                fs.invalidate_cache()
        out, err = proc.communicate(timeout=300)
        fs.invalidate_cache()
        assert not fs.exists("rep-bucket")  # not re-created
    assert proc.returncode == 1, (out, err[-2000:])
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "rep-bucket" in lines[0] and "NoSuchBucket" in lines[0], err[-2000:]
    assert "run " not in out  # no summary claiming rows that were never written


def test_summary_counts_only_rows_that_were_written(monkeypatch):
    import flows.writer as writer_module
    from audioqc import report

    calls = {"n": 0}

    def write_part(table, report_url, run, part):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return "ok"

    monkeypatch.setattr(writer_module, "write_part", write_part)
    writer = writer_module.PartWriter("r", report.RunInfo.new("x"), 0, 2)
    rows = [{"source_url": f"f{i}", "status": "ok", "verdict": "pass", "stage": "original"} for i in range(4)]
    monkeypatch.setattr(report, "rows_to_table", lambda rows: rows)
    writer.add(rows[:2])
    with pytest.raises(OSError):
        writer.add(rows[2:])
    assert writer.written == 2 and writer.counts == {"pass": 2}
