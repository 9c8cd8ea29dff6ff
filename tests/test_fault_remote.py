"""Fault 2: remote reads that stall, drip, stop short or fail fail in about the configured timeout,
with a typed error naming the URL, the cause and the HTTP status or S3 code; an audit against a
frozen S3 endpoint ends with error rows, never minutes per file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audiolib import io
from audiolib.errors import RemoteError, SourceNotFound
from faults import cli, moto_process
from faulty_http import FaultyServer

TIMEOUTS = {"AUDIOQC_CONNECT_TIMEOUT_S": "2", "AUDIOQC_READ_TIMEOUT_S": "2"}


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("served")
    y = (0.1 * np.random.default_rng(1).standard_normal((2, 48000 * 20))).astype(np.float32)
    io.write(str(d / "a.wav"), y, 48000)
    return d


@pytest.mark.parametrize("kind, command, words, bound_s", [
    ("stall", "info", "cannot open: timed out", 8),
    ("stall", "loudness", "cannot open: timed out", 8),
    ("drip", "loudness", "cannot read: timed out", 8),
    ("short", "loudness", "the connection closed before the end of the body", 8),
    ("status/500", "info", "HTTP 500", 5),
    ("status/403", "loudness", "HTTP 403", 5),
    ("status/404", "info", "no such object (HTTP 404)", 5),
])
def test_http_faults_are_typed_errors_in_about_the_timeout(served, kind, command, words, bound_s):
    with FaultyServer(served, stall_s=60) as srv:
        url = srv.url(kind, "a.wav")
        run = cli(command, url, env=TIMEOUTS)
    assert run.returncode == 1, run.stdout
    assert len(run.lines) == 1 and run.lines[0].startswith(f"audioqc: error: {url}: "), run.stderr
    assert words in run.lines[0]
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    assert run.seconds < bound_s, f"{run.seconds:.1f} s"


def test_errors_say_whether_a_retry_could_help(served, monkeypatch):
    monkeypatch.setenv("AUDIOQC_READ_TIMEOUT_S", "2")
    with FaultyServer(served, stall_s=30) as srv:
        with pytest.raises(RemoteError) as e500:
            io.probe(srv.url("status/503", "a.wav"))
        with pytest.raises(RemoteError) as e403:
            io.probe(srv.url("status/403", "a.wav"))
        with pytest.raises(RemoteError) as stall:
            io.probe(srv.url("stall", "a.wav"))
        with pytest.raises(SourceNotFound):
            io.probe(srv.url("status/404", "a.wav"))
    assert e500.value.transient and e500.value.status == 503
    assert not e403.value.transient and e403.value.status == 403
    assert stall.value.transient


def test_s3_error_codes_are_in_the_message(served):
    with moto_process() as moto:
        fs = moto.fs()
        fs.mkdir("bkt")
        fs.put(str(served / "a.wav"), "bkt/a.wav")
        run = cli("info", "s3://bkt/missing.wav", env=moto.env)
        assert run.returncode == 1 and "no such object" in run.lines[0]
        run = cli("info", "s3://nobucket/a.wav", env=moto.env)
        assert run.returncode == 1 and "NoSuchBucket" in run.lines[0]


def grandchildren(pid: int) -> list[int]:
    """Live processes whose parent's parent is ``pid`` (from /proc)."""
    import os

    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return [p for p, parent in parents.items() if parents.get(parent) == pid]


def test_audit_against_a_frozen_s3_endpoint_finishes_with_error_rows(served, tmp_path):
    """moto frozen with SIGSTOP after the listing: each file fails in about the timeouts (2 s
    here, and botocore's one retry), the run ends, one row per file."""
    n = 4
    with moto_process() as moto:
        fs = moto.fs()
        fs.mkdir("media")
        for i in range(n):
            fs.put(str(served / "a.wav"), f"media/c/f{i}.wav")
        env = {**moto.env, **TIMEOUTS, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
        import os
        import subprocess
        import sys

        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "audioqc", "audit", "s3://media/c", "--report",
                                 str(tmp_path / "r"), "--batch-size", "1", "--part-rows", "1", "--workers", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **env})
        # freeze once the compute pool's worker exists (a child of the fork server, itself a child of
        # the CLI): the listing is done by then, and the worker starts reading the files (the
        # start-up feeds it before the flow even begins)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not grandchildren(proc.pid):
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        moto.freeze()
        out, err = proc.communicate(timeout=300)
        elapsed = time.monotonic() - t0
        moto.thaw()
    assert proc.returncode == 0, err[-2000:]
    rows = pd.read_parquet(tmp_path / "r")
    assert len(rows) == n and rows.source_url.is_unique
    errors = rows[rows.status == "error"]
    assert len(errors) >= 1
    assert errors.error.str.contains("timed out").all(), errors.error.tolist()
    assert elapsed < 20 * n, f"{elapsed:.0f} s"  # seconds per file, not minutes
    assert "Traceback" not in err
