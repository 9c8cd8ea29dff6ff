"""The audit pipeline with real components: a Prefect server (prefect_test_harness), a process
pool, a Dask LocalCluster, an S3 server (moto) on 127.0.0.1, and a killed-then-resumed run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audiolib import io
from audioqc import report
from conftest import SR, programme

pytestmark = pytest.mark.timeout(900)



def make_collection(root: Path, n_good: int = 6) -> dict[str, str]:
    """Good files in several formats (one in a subfolder), and broken ones among them."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    kinds = {}
    for i in range(n_good):
        y = programme(2.0 + 0.5 * i, seed=100 + i)
        if i % 2:
            y *= 10 ** (-8 / 20)
        name = f"good{i}.wav" if i % 3 else f"sub/good{i}.flac"
        codec = "flac" if name.endswith("flac") else "pcm_s16le"
        io.write(str(root / name), y, SR, codec=codec, sample_fmt="s16")
        kinds[name] = "ok"
    (root / "empty.wav").write_bytes(b"")
    kinds["empty.wav"] = "error"
    (root / "sub" / "random.mp3").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    kinds["sub/random.mp3"] = "error"
    (root / "text.wav").write_text("not audio at all\n" * 50)
    kinds["text.wav"] = "error"
    (root / "README.txt").write_text("skipped: not media")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    return kinds


def rows_of(report_url: str, run_id: str) -> pd.DataFrame:
    return report.read_report(report_url, run_id=run_id).to_pandas()


def test_local_collection_one_row_per_file(prefect_api, tmp_path):
    from flows.audit import run_audit

    kinds = make_collection(tmp_path / "media")
    dest = str(tmp_path / "report")
    summary = run_audit(str(tmp_path / "media"), dest, workers=2, policy="ebu-r128", batch_size=2, run_id="first")
    assert summary["files"] == len(kinds) and summary["written"] == len(kinds)
    frame = rows_of(dest, "first")
    assert sorted(frame["source_url"]) == sorted(str(tmp_path / "media" / k) for k in kinds)
    by_name = {
        Path(u).relative_to(tmp_path / "media").as_posix(): r
        for u, r in zip(frame.source_url, frame.itertuples(), strict=True)
    }
    for name, status in kinds.items():
        assert by_name[name].status == status, name
    errors = frame[frame.status == "error"]
    assert all(url in msg for url, msg in zip(errors.source_url, errors.error, strict=True))
    ok = frame[frame.status == "ok"]
    assert ok["loudness_integrated_lufs"].notna().all() and set(ok["verdict"]) <= {"pass", "warn", "fail"}
    assert errors["verdict"].isna().all()
    # the verdict agrees with the measured loudness for the EBU R128 range
    for row in ok.itertuples():
        inside = -24 <= row.loudness_integrated_lufs <= -22
        named = any(r["metric"] == "loudness_integrated_lufs" for r in row.verdict_reasons)
        assert named != inside

    # Second run of the unchanged collection: every ok row is reused, nothing decoded again.
    again = run_audit(str(tmp_path / "media"), dest, workers=2, policy="ebu-r128", run_id="second")
    assert again["reused"] == len(ok) and again["analysed"] == len(kinds) - len(ok)
    second = rows_of(dest, "second")
    assert len(second) == len(kinds)
    merged = second.merge(frame, on="source_url", suffixes=("", "_1"))
    same = merged[merged.status == "ok"]
    assert (same.loudness_integrated_lufs == same.loudness_integrated_lufs_1).all()
    # A changed file is analysed again.
    changed = tmp_path / "media" / "good1.wav"
    io.write(str(changed), programme(3.0, seed=999), SR, codec="pcm_s16le", sample_fmt="s16")
    third = run_audit(str(tmp_path / "media"), dest, workers=1, run_id="third")
    assert third["analysed"] == len(kinds) - len(ok) + 1


def test_include_exclude_and_bad_inputs(prefect_api, tmp_path):
    from audiolib.errors import InvalidParameter, SourceNotFound
    from flows.audit import run_audit

    make_collection(tmp_path / "m", n_good=3)
    dest = str(tmp_path / "r")
    summary = run_audit(str(tmp_path / "m"), dest, workers=1, include=["*.flac"], run_id="flac-only")
    assert summary["files"] == 1
    summary = run_audit(str(tmp_path / "m"), dest, workers=1, exclude=["sub/*"], run_id="no-sub")
    assert all("/sub/" not in u for u in rows_of(dest, "no-sub").source_url)
    with pytest.raises(SourceNotFound):
        run_audit(str(tmp_path / "nowhere"), dest, workers=1)
    with pytest.raises(InvalidParameter, match="unknown"):
        run_audit(str(tmp_path / "m"), dest, workers=1, policy=str(_bad_policy(tmp_path)))
    with pytest.raises(InvalidParameter):
        run_audit(str(tmp_path / "m"), dest, workers=0)


def _bad_policy(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nrules:\n  - metric: loudness_integrated_lufz\n    max: -10\n"
                    "    severity: fail\n    advice: x\n")
    return path


def test_dask_cluster(prefect_api, tmp_path):
    from distributed import LocalCluster

    from flows.audit import run_audit

    kinds = make_collection(tmp_path / "media", n_good=4)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        summary = run_audit(str(tmp_path / "media"), str(tmp_path / "report"), dask_address=cluster.scheduler_address,
                            batch_size=1, run_id="dask")
    assert summary["written"] == len(kinds)
    assert len(rows_of(str(tmp_path / "report"), "dask")) == len(kinds)


def test_s3_source_and_report(prefect_api, s3, tmp_path):
    from flows.audit import run_audit

    kinds = make_collection(tmp_path / "media", n_good=3)
    s3.mkdir("audit-media")
    s3.mkdir("reports")
    s3.put(str(tmp_path / "media"), "audit-media/show/", recursive=True)
    summary = run_audit("s3://audit-media/show", "s3://reports/qc", workers=2, run_id="s3run")
    assert summary["written"] == len(kinds)
    frame = pd.read_parquet("s3://reports/qc", storage_options={"client_kwargs": {
        "endpoint_url": os.environ["AWS_ENDPOINT_URL_S3"]}})
    assert len(frame) == len(kinds) and frame.source_url.str.startswith("s3://audit-media/show/").all()
    # the workers read S3 too (the pool's workers get the audit's environment: the endpoint)
    assert (frame.status == "ok").sum() == sum(1 for v in kinds.values() if v == "ok")
    assert frame[frame.status == "ok"].etag.notna().all()  # identity from S3 ETags
    keys = s3.find("reports/qc")
    assert keys and all(k.endswith(".parquet") and "/run_date=" in k for k in keys)  # nothing temporary
    again = run_audit("s3://audit-media/show", "s3://reports/qc", workers=1, run_id="s3again")
    assert again["reused"] == sum(1 for v in kinds.values() if v == "ok")


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path):
    """SIGKILL an `audioqc audit` mid-run, resume it with its run id: one row per file."""
    media = tmp_path / "media"
    media.mkdir()
    n = 16
    for i in range(n):
        io.write(str(media / f"f{i:02d}.wav"), programme(20.0, seed=i), SR, codec="pcm_s16le", sample_fmt="s16")
    dest = tmp_path / "report"
    cmd = [sys.executable, "-m", "audioqc", "audit", str(media), "--report", str(dest), "--workers", "1",
           "--batch-size", "1", "--part-rows", "1", "--run-id", "killme"]
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        parts = list(dest.glob("run_date=*/part-*.parquet")) if dest.exists() else []
        if len(parts) >= 3 or proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = rows_of(str(dest), "killme")
    assert 3 <= len(before) < n and before.source_url.is_unique
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    after = rows_of(str(dest), "killme")
    assert len(after) == n and after.source_url.is_unique
    assert set(before.source_url) <= set(after.source_url)
    assert "already in this run" in done.stdout


def test_prefect_yaml_deployments_are_valid():
    """Every deployment's entrypoint loads, its parameters are the flow's, its schedule parses,
    and its policy preset exists."""
    import importlib
    import inspect

    import yaml
    from prefect.client.schemas.schedules import CronSchedule

    from audioqc.policy import list_presets

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "prefect.yaml").read_text())
    assert len(config["deployments"]) >= 2
    for dep in config["deployments"]:
        module, name = dep["entrypoint"].split(":")
        flow_obj = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), name)
        accepted = set(inspect.signature(flow_obj.fn).parameters)
        assert set(dep["parameters"]) <= accepted, dep["name"]
        assert {"source", "report_url"} <= set(dep["parameters"])
        assert dep["parameters"].get("policy") in list_presets()
        for schedule in dep.get("schedules", []):
            CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone", "UTC"))


def test_guided_batches_cover_every_file_once_and_shrink():
    from flows.batching import BATCH_BYTES
    from flows.batching import guided_batches as _guided_batches
    from tasks.storage import MediaObject

    def objs(n, size):
        return [MediaObject(f"f{i}", size, None, None) for i in range(n)]

    short = objs(200, 1_920_044)  # 10 s of 48 kHz stereo 16-bit WAV
    batches = list(_guided_batches(short, 32, 2))
    assert [o.url for b in batches for o in b] == [o.url for o in short]  # every file once, in order
    sizes = [len(b) for b in batches]
    assert max(sizes) == 32 and sizes == sorted(sizes, reverse=True) and sizes[-1] <= 5
    # files larger than a batch's byte budget are batches alone, so long files spread over workers
    assert [len(b) for b in _guided_batches(objs(5, 2 * BATCH_BYTES), 32, 2)] == [1] * 5
    # batch_size still caps, and unknown sizes and an unknown worker count (Dask) work
    assert {len(b) for b in _guided_batches(objs(10, 1), 1, 2)} == {1}
    assert sum(len(b) for b in _guided_batches(objs(100, None), 32, None)) == 100
    assert list(_guided_batches([], 32, 2)) == []
    # one worker: nothing to balance, so full batches to the end (fewer tasks)
    assert [len(b) for b in _guided_batches(short, 32, 1)] == [32] * 6 + [8]


def test_batches_sent_ahead_by_the_start_up_are_the_flows_rows(prefect_api, tmp_path):
    """The start-up analyses batches before the flow begins; the flow's tasks take those rows:
    each file analysed once, its row the run's (the flow's run time), the same numbers as an
    audit that sent nothing ahead."""
    import flows.startup as startup_module
    from flows.audit import run_audit
    from flows.startup import Startup
    from tasks import work

    kinds = make_collection(tmp_path / "media", n_good=4)
    startup = Startup.begin(str(tmp_path / "media"), str(tmp_path / "ahead"), workers=2, run_id="ahead",
                            policy="ebu-r128", batch_size=2)
    startup._prefetching.join(timeout=120)  # every batch sent (a small collection: all of them)
    assert startup.prefetched == -(-len(kinds) // 2) and startup_module.Startup.PREFETCH_BATCHES_PER_WORKER >= 1
    summary = run_audit(str(tmp_path / "media"), str(tmp_path / "ahead"), workers=2, policy="ebu-r128", batch_size=2,
                        run_id="ahead", startup=startup)
    assert summary["analysed"] == len(kinds) and summary["written"] == len(kinds)
    ahead = rows_of(str(tmp_path / "ahead"), "ahead")
    assert ahead.run_time.nunique() == 1 and ahead.source_url.is_unique
    # the same files analysed here, nothing sent ahead (no compute pool: in this thread)
    from tasks import compute
    from tasks.listing import list_objects

    assert compute.configured() is None
    table = work.analyze_rows(list_objects(str(tmp_path / "media")), report.RunInfo.new("direct"), "ebu-r128")
    direct = table.to_pandas().set_index("source_url").sort_index()
    ahead = ahead.set_index("source_url").sort_index()
    for col in ("status", "verdict", "loudness_integrated_lufs", "loudness_true_peak_dbtp", "silence_percentage"):
        pd.testing.assert_series_equal(ahead[col], direct[col], check_names=False)


def test_the_flow_called_as_a_deployment_runs_it_makes_its_own_compute_pool(prefect_api, tmp_path):
    """A deployment's run calls the flow itself (no run_audit, no start-up): the flow makes a compute
    pool for the run (one worker per CPU), and none is left after it."""
    from flows.audit import audit
    from tasks import compute

    kinds = make_collection(tmp_path / "media", n_good=2)
    summary = audit(str(tmp_path / "media"), str(tmp_path / "report"), run_id="deployed", batch_size=1)
    assert summary["analysed"] == len(kinds) == summary["written"]
    frame = rows_of(str(tmp_path / "report"), "deployed")
    assert (frame.status == "ok").sum() == sum(1 for v in kinds.values() if v == "ok")
    assert compute.configured() is None


def test_compute_workers_fork_from_a_preloaded_server_without_prefect():
    """The audit's compute workers are forks of the fork server, which imported the analysis and
    never Prefect (the tasks run in the flow's threads; only their work comes here)."""
    from tasks import compute

    probe = ("(__import__('os').getpid(), 'prefect' in __import__('sys').modules, "
             "'audiolib.diagnose' in __import__('sys').modules, __import__('multiprocessing').get_start_method())")
    with compute.session(2):
        out = [compute.run(eval, probe) for _ in range(4)]
    assert all(pid != os.getpid() and not prefect and analysis and method == "forkserver"
               for pid, prefect, analysis, method in out), out
    assert compute.configured() is None  # the session ended: no pool left
    assert compute.run(eval, "1 + 1") == 2  # without a pool: in this thread


def test_compute_pool_starts_every_worker_when_it_opens():
    """The pool's workers start with it, not one per call."""
    import time

    from tasks import compute

    with compute.session(2):
        pool = compute.start()
        deadline = time.monotonic() + 60
        while len(pool._processes) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool._processes) == 2


def test_a_dead_compute_worker_is_replaced():
    """A worker that dies (here: it exits in the middle of a call) fails that call with WorkerDied,
    and the next call runs on a new pool."""
    from tasks import compute

    with compute.session(1):
        first = compute.run(os.getpid)
        with pytest.raises(compute.WorkerDied):
            compute.run(os._exit, 3)
        second = compute.run(os.getpid)
    assert first != second and second != os.getpid()


def test_a_batch_whose_worker_dies_is_analysed_again_file_by_file(tmp_path, monkeypatch):
    """A worker that dies on a batch (killed by the system) costs the batch nothing but time: its
    files are analysed again one at a time; a file whose worker dies again gets an error row
    naming the problem; every file has exactly one row."""
    from tasks import analyze, compute

    media = tmp_path / "m"
    media.mkdir()
    for name in ("a", "bad", "c"):
        io.write(str(media / f"{name}.wav"), np.zeros((1, 4800), np.float32), 48000)
    from tasks.listing import list_objects

    batch = list_objects(str(media))
    run = report.RunInfo.new("died")
    real_run = compute.run
    calls: list[list[str]] = []

    def dying_run(fn, *args):
        names = [o.name for o in args[0]]
        calls.append(names)
        if len(names) > 1 or names == ["bad.wav"]:
            raise compute.WorkerDied("a worker process died")
        return real_run(fn, *args)

    monkeypatch.setattr(compute, "run", dying_run)
    rows = analyze.diagnose_batch(batch, run, None).to_pylist()
    assert calls == [["a.wav", "bad.wav", "c.wav"], ["a.wav"], ["bad.wav"], ["c.wav"]]
    by_name = {r["source_url"].rsplit("/", 1)[-1]: r for r in rows}
    assert [by_name[n]["status"] for n in ("a.wav", "bad.wav", "c.wav")] == ["ok", "error", "ok"]
    assert by_name["bad.wav"]["error"] == f"{media / 'bad.wav'}: {analyze.WORKER_DIED}"
    assert {r["run_id"] for r in rows} == {"died"}


def test_one_certificate_file_loads_as_a_ca_file(tmp_path):
    import ssl

    from flows.workarounds import one_certificate_file as _one_certificate_file

    path = _one_certificate_file(str(tmp_path))
    text = Path(path).read_text()
    assert text.count("BEGIN CERTIFICATE") == 1
    ssl.create_default_context(cafile=path)  # raises if it held no usable certificate


def test_finished_batches_are_freed_during_the_run(prefect_api, tmp_path, monkeypatch):
    """Memory does not grow with the collection: a consumed batch's future (and its table) is gone
    before the next is consumed.  Without the per-batch collection in the submit loop Prefect's
    futures sit in reference cycles until a full GC, which a process this size rarely runs."""
    import gc
    import weakref

    from prefect.futures import PrefectConcurrentFuture

    import flows.audit as audit_module

    media = tmp_path / "m"
    media.mkdir()
    for i in range(40):
        (media / f"e{i:02d}.wav").write_bytes(b"")  # instant error rows: 40 batches of one
    # Futures not yet destroyed (a future in an uncollected cycle stays here), counted through weak
    # references: scanning gc.get_objects() from this thread could catch a tuple that Prefect's
    # submitting thread is still building, and that tuple's resize then fails with SystemError.
    futures: weakref.WeakSet = weakref.WeakSet()
    init = PrefectConcurrentFuture.__init__

    def tracking_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        futures.add(self)

    alive: list[int] = []
    from flows.writer import PartWriter

    add = PartWriter.add

    def counting_add(self, rows):
        alive.append(len(futures))
        add(self, rows)

    monkeypatch.setattr(PrefectConcurrentFuture, "__init__", tracking_init)
    monkeypatch.setattr(PartWriter, "add", counting_add)
    summary = audit_module.run_audit(str(media), str(tmp_path / "r"), workers=2, batch_size=1, max_in_flight=4,
                                     run_id="gc")
    assert summary["written"] == 40 and len(alive) == 40
    assert max(alive) <= 4 + 1, alive  # the ones in flight (and the one being consumed), not all so far
    assert gc.isenabled() and not gc.get_freeze_count()  # the process's collector is handed back


