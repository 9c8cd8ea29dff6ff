"""The audit ending with its trends (the flow's ``trends`` parameter, ``audioqc audit --trends``):
the run's manifest, the HTML report beside the Parquet report, the Prefect artifacts, and the
flow run marked with the alert (tag and event) for an automation to notify on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from audiolib import io
from audiolib.errors import InvalidParameter
from audioqc import report
from conftest import SR, programme

pytestmark = pytest.mark.timeout(900)



def _collection(root: Path) -> None:
    for i in range(6):
        path = root / ("creatorA" if i % 2 else "creatorB") / f"take{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write(str(path), programme(2.0 + 0.25 * i, seed=300 + i), SR, codec="pcm_s16le", sample_fmt="s16")


def _earlier_runs(rows: pa.Table, report_url: str, runs: int = 5, lufs_offset: float = -8.0) -> None:
    """Copies of a run's rows as ``runs`` earlier nightly runs, 8 LU quieter (and not reusable)."""
    first = rows["run_time"][0].as_py()
    for k in range(runs):
        run = report.RunInfo(f"night-{k}", first - timedelta(days=runs - k))
        t = rows
        for name, value in (("run_id", pa.array([run.run_id] * t.num_rows, pa.string())),
                            ("run_time", pa.array([run.run_time] * t.num_rows, pa.timestamp("us", tz="UTC"))),
                            ("analysis_version", pa.array(["older"] * t.num_rows, pa.string())),
                            ("loudness_integrated_lufs", pc.add(t["loudness_integrated_lufs"], lufs_offset))):
            i = t.schema.get_field_index(name)
            t = t.set_column(i, t.schema.field(name), value.cast(t.schema.field(name).type))
        report.write_table(t, report_url, run, 0)


def test_audit_with_trends_marks_the_run_and_writes_the_report(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.audit import run_audit

    media = tmp_path / "media"
    _collection(media)
    scratch = str(tmp_path / "scratch")
    run_audit(str(media), scratch, workers=1, run_id="seed")
    dest = str(tmp_path / "report")
    _earlier_runs(report.read_report(scratch).drop_columns([report.PARTITION]), dest)

    summary = run_audit(str(media), dest, workers=1, policy="ebu-r128", run_id="tonight",
                        trends={"baseline_runs": 5})
    found = summary["trends"]
    assert [a["metric"] for a in found["alerts"]] == ["loudness_integrated_lufs"], found["text"]
    assert found["alerts"][0]["shift"] == pytest.approx(8.0, abs=0.01)
    assert found["alerts"][0]["baseline_runs"] == [f"night-{k}" for k in range(5)]
    # the manifest (root and policy of the run), the HTML report beside the Parquet parts
    manifest = json.loads((Path(str(dest) + ".audioqc") / "runs" / "tonight.json").read_text())
    assert manifest["root"] == str(media) and manifest["policy"] == "ebu-r128"
    page = Path(found["html"])
    assert (
        page.parent == Path(str(dest) + ".audioqc") / "trends"
        and page.exists()
        and (page.parent / "latest.html").exists()
    )
    assert "loudness_integrated_lufs" in page.read_text() and "ALERT" in page.read_text()
    assert report.read_report(dest).num_rows == 6 * 6  # the readers never see the extra files
    # Prefect: the artifacts, and the flow run tagged for an automation
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["trends-alerts"])))
        assert any("loudness_integrated_lufs" in str(a.data) for a in artifacts)
        tables = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["trends-summary"])))
        assert tables
        runs = client.read_flow_runs()
        tagged = [r for r in runs if "trends-alert" in (r.tags or [])]
        assert len(tagged) == 1 and tagged[0].parameters.get("run_id") == "tonight"
        # the event an automation triggers on, about that flow run (the server stores events
        # asynchronously: wait for it, up to a minute)
        from prefect.events.filters import EventFilter, EventNameFilter
        from prefect.events.worker import EventsWorker

        EventsWorker.drain_all(timeout=30)
        wanted = EventFilter(event=EventNameFilter(name=["audioqc.trends.alert"]))
        events = []
        for _ in range(120):
            events = client.read_events(filter=wanted, limit=10).events
            if events:
                break
            time.sleep(0.5)
        assert len(events) == 1 and events[0].resource.id == f"prefect.flow-run.{tagged[0].id}"
        assert "loudness_integrated_lufs" in events[0].payload["messages"][0]


def test_trends_options_are_checked_before_any_work(prefect_api, tmp_path):
    from flows.audit import run_audit

    media = tmp_path / "media"
    _collection(media)
    for bad, words in (({"group_by": "creator"}, "group_by"), ({"margins": {"quality_scor": 1}}, "did you mean"),
                       ({"colour": "red"}, "unknown option")):
        with pytest.raises(InvalidParameter, match=words):
            run_audit(str(media), str(tmp_path / "r"), workers=1, trends=bad)
    assert not (tmp_path / "r").exists()


def test_cli_audit_trends_prints_the_summary(tmp_path):
    media = tmp_path / "media"
    _collection(media)
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run([sys.executable, "-m", "audioqc", "audit", str(media), "--report", str(tmp_path / "r"),
                           "--workers", "1", "--trends"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nothing to compare yet" in done.stdout and "trends report: " in done.stdout
    assert list((tmp_path / "r.audioqc" / "trends").glob("*.html"))


def test_deployment_with_trends_has_valid_options():
    import yaml

    from tasks.trends import check_options

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "prefect.yaml").read_text())
    with_trends = [d for d in config["deployments"] if d["parameters"].get("trends")]
    assert [d["name"] for d in with_trends] == ["nightly-audit-with-trends"]
    assert check_options(with_trends[0]["parameters"]["trends"]) == {"group_by": "prefix", "by": "ingest",
                                                                     "baseline_runs": 5}
