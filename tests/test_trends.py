"""Trends and alerts on synthetic report histories with known shifts (testing/material/reports.py),
the false-alarm rate over seeded null histories, stages, older schemas, the CLI and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from audioqc import history, report
from audioqc.stats import binomial_upper, holm
from audioqc.trends import analyse, trends, watch_list
from testing.material.reports import synthetic_history, write_history

SHIFT = {"group": "creatorB", "metric": "quality_score_average", "delta": -1.5}


def _table(hist) -> pa.Table:
    return pa.concat_tables([t for _, t in hist], promote_options="default")


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "audioqc", *args], capture_output=True, text=True, timeout=timeout)


def _strict_json(text: str):
    def no_constants(name):
        raise AssertionError(f"non-strict JSON token {name}")

    return json.loads(text, parse_constant=no_constants)


@pytest.fixture(scope="module")
def shifted(tmp_path_factory) -> str:
    """6 nightly runs of 300 new files in 3 creator folders; creatorB's last run is 1.5 quality
    points lower."""
    url = str(tmp_path_factory.mktemp("trends") / "report")
    write_history(url, synthetic_history(6, 300, shift=SHIFT, seed=1))
    return url


def test_a_shift_in_one_group_alerts_there_and_nowhere_else(shifted):
    result = trends(shifted, group_by="prefix")
    assert [(a.group, a.metric) for a in result.alerts] == [("creatorB", "quality_score_average")]
    a = result.alerts[0]
    assert a.baseline == pytest.approx(7.0, abs=0.25) and a.shift == pytest.approx(-1.5, abs=0.3)
    assert a.effect < -0.5 and a.p_value < 1e-10 and a.p_adjusted <= result.alpha
    assert a.run_id == "run-005" and a.baseline_runs == ("run-000", "run-001", "run-002", "run-003", "run-004")
    assert a.n_current == 100 and a.n_baseline == 500
    assert len(a.files) == 5 and all(f.file.startswith("creatorB/") and f.change < -1 for f in a.files)
    assert "creatorB" in a.message and "quality_score_average" in a.message and "p = " in a.message
    status = {g.value: g.status for g in result.groups}
    assert status == {"creatorA": "ok", "creatorB": "alert", "creatorC": "ok"}
    # every figure per run: files, rates, fail counts per rule, metric percentiles
    last = result.runs[-1]
    assert last.files == 300 and last.errors == 0
    assert sum(last.verdicts.values()) == 300 and last.rate("fail") == pytest.approx(last.verdicts["fail"] / 300)
    assert set(last.fail_counts) <= {
        "loudness_integrated_lufs between [-24.0, -22.0]",
        "loudness_true_peak_dbtp <= -1.0",
        "clipping_events == 0",
    }
    q = last.metrics["quality_score_average"]
    assert q.n == 300 and q.p10 < q.median < q.p90
    creator_b = next(g for g in result.groups if g.value == "creatorB")
    assert creator_b.runs[-1].metrics["quality_score_average"].median == pytest.approx(a.current)


def test_no_alert_without_the_shift_and_margins_override(tmp_path):
    url = str(tmp_path / "r")
    write_history(url, synthetic_history(6, 300, seed=2))
    assert trends(url, group_by="prefix").alerts == ()
    # the shifted report's alert goes away with a margin wider than the shift
    shifted = str(tmp_path / "s")
    write_history(shifted, synthetic_history(6, 300, shift=SHIFT, seed=2))
    assert trends(shifted, group_by="prefix", margins=["quality_score_average:2.0"]).alerts == ()
    assert len(trends(shifted, group_by="prefix", margins={"quality_score_average": 1.0}).alerts) == 1


def test_false_alarm_rate_over_200_null_histories():
    """With every margin at zero only the test decides: in a group of 11 metrics the Holm-corrected
    family-wise rate is at most alpha = 0.01, so over 200 independent null histories the number with
    any alert is Binomial(200, <= 0.01); a count at or above ``bound`` has probability < 1e-6."""
    zero = {w.column: 0.0 for w in watch_list(None, None)}
    watch = watch_list(None, zero)
    n = 200
    bound = binomial_upper(n, 0.01, 1e-6)
    hits, loose, p_values = 0, 0, []
    for seed in range(n):
        table = _table(synthetic_history(6, 60, groups=("all",), seed=1000 + seed))
        result = analyse(table, watch=watch, alpha=0.01)
        hits += bool(result.alerts)
        checks = result.groups[0].checks
        p_values += [c.p_value for c in checks if c.metric == "quality_score_average"]
        loose += any(c.p_adjusted <= 0.2 for c in checks if c.p_adjusted is not None)
        if seed < 50:  # the margins only ever remove alerts
            with_margins = {(a.group, a.metric) for a in analyse(table, alpha=0.01).alerts}
            assert with_margins <= {(a.group, a.metric) for a in result.alerts}
    assert hits < bound, (hits, bound)
    # the test is alive: at alpha 0.2 the same histories alarm far more often than 0.01 allows
    assert loose >= bound, (loose, bound)
    # and its one-sided p-values under the null are spread over (0, 1), not piled at 1
    p = np.array(p_values)
    assert 0.3 < np.mean(p < 0.5) < 0.7


def test_by_ingest_finds_a_drop_that_rereported_files_dilute(tmp_path):
    """A catalogue re-audited nightly: 1000 files a run, 60 of them new. The new files of the last
    night are 2 points worse: by run the median barely moves (no alert), by ingest it is caught."""
    url = str(tmp_path / "catalogue")
    hist = synthetic_history(6, 1000, groups=("shows",), new_per_run=60, seed=3,
                             shift={"group": "shows", "metric": "quality_score_average", "delta": -2.0})
    write_history(url, hist)
    by_run = trends(url)
    assert by_run.alerts == () and by_run.runs[-1].files == 1000
    by_ingest = trends(url, by="ingest")
    assert [a.metric for a in by_ingest.alerts] == ["quality_score_average"]
    assert by_ingest.runs[-1].files == 60 and by_ingest.runs[0].files == 1000
    assert by_ingest.alerts[0].shift == pytest.approx(-2.0, abs=0.4)


def test_only_original_rows_unless_asked(tmp_path):
    """Rows of the remedy branch (stage 'remedied', every value +100) never leak into trends of
    the original rows; --stage remedied reads them alone."""
    url = str(tmp_path / "staged")
    write_history(url, synthetic_history(3, 100, seed=4, stage=True, remedied=0.3))
    original = trends(url)
    assert [r.files for r in original.runs] == [100, 100, 100]
    assert original.runs[-1].metrics["quality_score_average"].p90 < 11
    remedied = trends(url, stage="remedied")
    assert [r.files for r in remedied.runs] == [30, 30, 30]
    assert remedied.runs[-1].metrics["quality_score_average"].p10 > 100
    assert [r.files for r in trends(url, stage="all").runs] == [130, 130, 130]


def test_older_schema_parts_read_with_missing_columns_null(tmp_path):
    url = str(tmp_path / "old")
    dropped = ["quality_score_average", "quality_score_worst_segment_score", "noise_score_average",
               "noise_score_snr_db", "bandwidth_hz", "media_info_audio_codec"]
    write_history(url, synthetic_history(3, 50, seed=5)[:2], drop=dropped)  # two runs from an older version
    write_history(url, synthetic_history(3, 50, seed=5)[2:])
    result = trends(url, group_by="codec")
    first, last = result.runs[0], result.runs[-1]
    assert first.metrics["quality_score_average"].n == 0 and first.metrics["loudness_integrated_lufs"].n == 50
    assert last.metrics["quality_score_average"].n == 50
    assert {g.value for g in result.groups} == {"(unknown)", "aac", "mp3", "pcm_s16le"}


def test_group_keys(tmp_path):
    url = str(tmp_path / "keys")
    hist = synthetic_history(2, 90, seed=6)
    write_history(url, hist)
    rates = {g.value for g in trends(url, group_by="sample_rate").groups}
    assert rates == {"44100", "48000"}
    verdicts = {g.value: g.runs[-1].files for g in trends(url, group_by="verdict").groups}
    expected = {v: int(n) for v, n in zip(*np.unique(hist[-1][1]["verdict"].to_numpy(zero_copy_only=False),
                                                   return_counts=True), strict=True)}
    assert verdicts == expected
    # policy: from the runs' manifests; runs without one are '(unknown)'
    history.write_manifest(url, "run-001", source="/collection", root="/collection", policy="ebu-r128")
    policies = {g.value: [r.run_id for r in g.runs] for g in trends(url, group_by="policy").groups}
    assert policies == {"(unknown)": ["run-000"], "ebu-r128": ["run-001"]}


def test_prefix_is_relative_to_the_manifest_root(tmp_path):
    """A run whose files all sit in one folder: without a manifest that folder is the root;
    the manifest (written by the audit's trends step) says where the audited root was."""
    url = str(tmp_path / "one-folder")
    write_history(url, synthetic_history(2, 30, groups=("creatorB",), seed=7))
    assert {g.value for g in trends(url, group_by="prefix").groups} == {"(root)"}
    assert {g.value for g in trends(url, group_by="prefix", root="/collection").groups} == {"creatorB"}
    for run in ("run-000", "run-001"):
        history.write_manifest(url, run, source="/collection", root="/collection", policy=None)
    assert {g.value for g in trends(url, group_by="prefix").groups} == {"creatorB"}
    # the manifests are invisible to the report's readers
    import duckdb
    import pandas as pd

    assert len(pd.read_parquet(url)) == 60 and report.read_report(url).num_rows == 60
    assert (
        duckdb.sql(f"select count(*) from read_parquet('{url}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
        == 60
    )


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    assert holm(p).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])


# ----------------------------------------------------------------------------------------------
# the command line


def test_cli_summary_json_and_exit_codes(shifted, tmp_path):
    done = _cli("trends", shifted, "--group-by", "prefix")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.index("ALERTS (1)") < out.index("groups (") < out.index("runs (")
    assert "prefix=creatorB: quality score (quality_score_average) fell" in out
    alert = _cli("trends", shifted, "--group-by", "prefix", "--fail-on-alert", "--json")
    assert alert.returncode == 3 and alert.stderr == ""
    data = _strict_json(alert.stdout)
    assert set(data) == {"runs", "groups", "alerts"}
    assert len(data["runs"]) == 6 and data["runs"][0]["run_id"] == "run-000"
    assert {"files", "errors", "pass_rate", "warn_rate", "fail_rate", "fail_counts", "metrics"} <= set(data["runs"][0])
    assert set(data["runs"][0]["metrics"]["loudness_integrated_lufs"]) == {"n", "mean", "median", "p10", "p90"}
    [a] = data["alerts"]
    assert (a["group"], a["metric"]) == ("creatorB", "quality_score_average")
    assert {"baseline", "current", "effect", "p_value", "p_adjusted", "files", "margin"} <= set(a)
    assert [g["group"] for g in data["groups"]] == ["creatorA", "creatorB", "creatorC"]
    # margins override from the command line
    quiet = _cli("trends", shifted, "--group-by", "prefix", "--fail-on-alert", "--margin", "quality_score_average:3")
    assert quiet.returncode == 0 and "no alerts" in quiet.stdout


def test_cli_one_run_says_there_is_nothing_to_compare(tmp_path):
    url = str(tmp_path / "one")
    write_history(url, synthetic_history(1, 40, seed=8))
    done = _cli("trends", url, "--fail-on-alert")
    assert done.returncode == 0 and "nothing to compare" in done.stdout
    data = _strict_json(_cli("trends", url, "--json").stdout)
    assert data["alerts"] == [] and data["groups"][0]["status"] == "no-history"


def test_cli_html_and_png(shifted, tmp_path):
    html = tmp_path / "t.html"
    pngs = tmp_path / "png"
    done = _cli(
        "trends", shifted, "--group-by", "prefix", "--html", str(html), "--png", str(pngs), "--policy", "ebu-r128"
    )
    assert done.returncode == 0, done.stderr
    names = {p.name for p in pngs.glob("*.png")}
    assert {"collection_quality.png", "distribution_loudness.png", "distribution_scores.png",
            "distribution_true_peak.png", "trend_quality_score_average.png"} <= names
    for p in pngs.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = html.read_text()
    assert page.count("<img ") == len(names) and page.count('src="data:image/png;base64,') == len(names)
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert page.index("ALERT") < page.index("<h2>Plots")  # alerts first
    assert "prefix=creatorB: quality score (quality_score_average) fell" in page


@pytest.mark.parametrize("setup, args, code, words", [
    ("text", [], 1, "not an audioqc report"),
    ("empty", [], 1, "no runs"),
    ("missing", [], 1, "no such report"),
    ("file", [], 1, "not a report: a file"),
    ("corrupt", [], 1, "cannot be read"),
    ("report", ["--margin", "quality_score_averag:0.3"], 2, "did you mean quality_score_average"),
    ("report", ["--margin", "quality_score_average:lots"], 2, "is not a number"),
    ("report", ["--margin", "quality_score_average"], 2, "METRIC:VALUE"),
    ("report", ["--group-by", "creator"], 2, "invalid choice"),
    ("report", ["--baseline-runs", "0"], 2, "at least 1"),
    ("report", ["--stage", "remedied"], 1, "no runs of stage 'remedied'"),
])
def test_cli_bad_input_is_one_line(tmp_path, setup, args, code, words):
    target = tmp_path / "target"
    if setup == "text":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    elif setup == "empty":
        target.mkdir()
    elif setup == "file":
        target.write_bytes(b"PAR1")
    elif setup == "corrupt":
        (target / "run_date=2026-01-01").mkdir(parents=True)
        (target / "run_date=2026-01-01" / "part-x-000000.parquet").write_text("not parquet")
    elif setup == "report":
        write_history(str(target), synthetic_history(2, 20, seed=9))
    done = _cli("trends", str(target), *args)
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    if code == 1:
        assert str(target) in lines[0]


def test_run_cache_is_built_once_refreshed_when_a_run_grows_and_invisible_to_readers(tmp_path):
    """The first read writes one narrow file per run under the sidecar folder r.audioqc/cache/; a run that gains parts
    (a resumed audit) is cached again; pandas, pyarrow and DuckDB still see exactly the report's rows."""
    import duckdb
    import pandas as pd

    url = str(tmp_path / "r")
    hist = synthetic_history(3, 100, seed=11)
    write_history(url, hist[:2], part_rows=30)
    first = trends(url)
    cache = sorted((tmp_path / "r.audioqc" / "cache").glob("runs-*/*.pqcache"))
    assert [p.name.split(".")[0] for p in cache] == ["run-000", "run-001"]
    stamps = {p.name: p.stat().st_mtime_ns for p in cache}
    write_history(url, hist[2:], part_rows=30)  # a new run
    run, table = hist[1]
    report.write_table(table.slice(0, 10), url, run, 99)  # run-001 resumed: one more part
    second = trends(url)
    cache2 = sorted((tmp_path / "r.audioqc" / "cache").glob("runs-*/*.pqcache"))
    assert [p.name.split(".")[0] for p in cache2] == ["run-000", "run-001", "run-002"]
    assert {p.name: p.stat().st_mtime_ns for p in cache2}["run-000" + cache[0].name[7:]] == stamps[cache[0].name]
    assert [r.files for r in first.runs] == [100, 100] and [r.files for r in second.runs] == [100, 110, 100]
    # the same numbers with and without the cache
    direct = history.read(url, ["run_id", "quality_score_average"], cache=False)
    cached = history.read(url, ["run_id", "quality_score_average"])
    assert sorted(direct.to_pylist(), key=str) == sorted(cached.to_pylist(), key=str)
    assert len(pd.read_parquet(url)) == 310 and report.read_report(url).num_rows == 310
    assert (
        duckdb.sql(f"select count(*) from read_parquet('{url}/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
        == 310
    )
