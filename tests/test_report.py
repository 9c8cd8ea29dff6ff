"""The Parquet report: schema derived from the results, rows, atomic parts, readers."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from audiolib import ANALYSIS_VERSION, __version__, io
from audiolib.diagnose import BLOCKS, diagnose
from audioqc import report
from conftest import SR


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    y = np.zeros((2, 6 * SR), np.float32)
    t = np.arange(4 * SR) / SR
    y[:, SR:5 * SR] = np.clip(1.5 * np.sin(2 * np.pi * 50 * t), -1, 1)
    path = tmp_path_factory.mktemp("rep") / "clip.wav"
    io.write(str(path), y, SR, codec="pcm_s16le", sample_fmt="s16")
    return diagnose(str(path))


def test_schema_has_provenance_and_every_block():
    s = report.schema()
    for name in ("schema_version", "run_id", "run_time", "source_url", "etag", "mtime", "size_bytes",
                 "status", "error", "audioqc_version", "analysis_version", "verdict", "verdict_reasons"):
        assert name in s.names
    assert s.metadata[b"audioqc_schema_version"] == str(report.SCHEMA_VERSION).encode()
    columns = report.metric_columns()
    for block in BLOCKS:
        assert any(c == block or c.startswith(block + "_") for c in columns), block
    for name, dtype in [("loudness_integrated_lufs", pa.float64()), ("loudness_true_peak_dbtp", pa.float64()),
                        ("clipping_events", pa.int64()), ("silence_percentage", pa.float64()),
                        ("media_info_audio_sample_rate_hz", pa.int64()), ("phase_front_correlation", pa.float64())]:
        assert report.metric_type(name) == dtype
    assert pa.types.is_list(report.metric_type("silence_intervals"))  # nested list column
    assert pa.types.is_struct(report.metric_type("silence_intervals").value_type)
    assert len(columns) == len(set(columns))


def test_row_values_match_the_result(result):
    row = report.flatten(result)
    loud = result.blocks["loudness"]
    assert row["loudness_integrated_lufs"] == loud.integrated_lufs
    assert row["clipping_events"] == result.blocks["clipping"].events == 800  # 2 channels x 400 flat tops
    assert row["silence_at_beginning_s"] == pytest.approx(1.0, abs=1e-3)  # the sine starts at 0
    assert row["silence_intervals"][0] == {"start_s": 0.0, "end_s": pytest.approx(1.0, abs=1e-3)}
    assert row["media_info_audio_codec"] == "pcm_s16le"


def test_write_and_read_back_with_three_readers(result, tmp_path):
    run = report.RunInfo.new("run-a")
    rows = [
        report.make_row(run, "file:///a.wav", etag="e1", mtime=datetime(2026, 1, 2, tzinfo=timezone.utc),
                        size_bytes=123, result=result, verdict="fail",
                        reasons=[{"metric": "clipping_events", "rule": "== 0", "severity": "fail",
                                  "advice": "reduce gain", "value": 800}]),
        report.make_row(run, "file:///b.wav", etag=None, mtime=None, size_bytes=0, error="b.wav: file is empty"),
    ]
    dest = tmp_path / "report"
    path = report.write_rows(rows, str(dest), run, 0)
    assert path.endswith(f"run_date={run.run_date}/part-run-a-000000.parquet")
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".")]  # no temp left
    table = report.read_report(str(dest))
    assert table.num_rows == 2
    assert table.schema.field("run_date").type == pa.string()
    frame = pd.read_parquet(dest)
    assert sorted(frame["status"]) == ["error", "ok"]
    ok = frame[frame.status == "ok"].iloc[0]
    assert ok["clipping_events"] == 800 and ok["verdict"] == "fail"
    assert ok["audioqc_version"] == __version__ and ok["analysis_version"] == ANALYSIS_VERSION
    assert list(ok["verdict_reasons"][0].keys()) == ["metric", "rule", "severity", "advice", "value", "remedy"]
    data = pads.dataset(dest, format="parquet", partitioning="hive")
    assert data.to_table().num_rows == 2
    import duckdb

    con = duckdb.connect()
    n, worst = con.execute(
        f"select count(*), max(clipping_events) from read_parquet('{dest}/**/*.parquet', hive_partitioning=true)"
    ).fetchone()
    assert (n, worst) == (2, 800)


def test_second_run_appends_and_runs_are_separable(result, tmp_path):
    dest = str(tmp_path / "r")
    for run_id in ("one", "two"):
        run = report.RunInfo.new(run_id)
        report.write_rows([report.make_row(run, "x.wav", etag=None, mtime=None, size_bytes=1, result=result)],
                          dest, run, 0)
    assert report.read_report(dest).num_rows == 2
    assert report.read_report(dest, run_id="two").column("run_id").to_pylist() == ["two"]


def test_non_finite_values_become_null():
    assert report._plain(float("nan"), pa.float64()) is None
    assert report._plain(float("inf"), pa.float64()) is None
