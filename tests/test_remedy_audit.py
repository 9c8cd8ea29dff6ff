"""The audit's remedy branch with real components: S3 (moto's server on 127.0.0.1), a Prefect
server, the process pool; ffmpeg's ebur128 as the independent loudness meter of what it wrote."""

from __future__ import annotations

import os
import re
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
from conftest import SR, espeak_speech
from testing.material.media import coloured_noise, programme

pytestmark = pytest.mark.timeout(1200)

POLICY = """
name: remedy test
rules:
  - metric: loudness_integrated_lufs
    between: [-24.0, -22.0]
    severity: fail
    advice: normalise to -23 LUFS
    remedy: loudness
    when_missing: fail
  - metric: loudness_true_peak_dbtp
    max: -1.0
    severity: fail
    advice: limit the true peak
    remedy: loudness
  - metric: clipping_events
    equals: 0
    severity: fail
    advice: re-record
  - metric: noise_score_snr_db
    min: 20.0
    severity: warn
    advice: denoise
    remedy: denoise
    when_missing: pass
remedies:
  loudness: {target_lufs: -23.0, true_peak_max_dbtp: -1.0}
  denoise: {amount: 100}
"""
TARGET, CEILING = -23.0, -1.0



def ebur128(path: str | Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) by ffmpeg's ebur128 filter."""
    err = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    summary = err[err.rfind("Summary:"):]
    i = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    tp = re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary)
    assert i is not None and tp is not None, summary
    return float(i.group(1)), float(tp.group(1))


def lufs(y: np.ndarray) -> float:
    from audiolib.loudness import measure

    i = measure(y, SR).integrated_lufs
    assert i is not None
    return i


def at(y: np.ndarray, target: float) -> np.ndarray:
    return (y * 10 ** ((target - lufs(y)) / 20)).astype(np.float32)


def make_collection(root: Path, speech_s: float = 20.0) -> dict[str, str | None]:
    """Noisy quiet speech (fails loudness, warns on noise), too-loud music with inter-sample peaks,
    clipped speech, a passing tone; what each should become."""
    root.mkdir(parents=True, exist_ok=True)
    speech = espeak_speech(speech_s)
    noise = coloured_noise("white", speech.size, np.random.default_rng(4)).astype(np.float32)
    noisy = speech + 0.3 * np.sqrt(np.mean(speech ** 2) / np.mean(noise ** 2)) * noise  # 10 dB under the speech
    io.write(str(root / "noisy_speech.wav"), at(noisy, -31.0)[np.newaxis], SR, codec="pcm_s16le", sample_fmt="s16")
    music = programme(15.0, seed=9)
    t = np.arange(music.shape[1]) / SR
    music = music + 0.3 * np.sin(2 * np.pi * SR / 4 * t + np.pi / 4).astype(np.float32)  # fs/4 at 45 deg: ISPs
    music = music / np.max(np.abs(music)) * 0.999
    (root / "sub").mkdir(exist_ok=True)
    io.write(str(root / "sub" / "loud_music.flac"), music, SR, codec="flac", sample_fmt="s16")
    clipped = np.clip(3.0 * espeak_speech(12.0), -1.0, 1.0)  # flat tops at full scale
    io.write(str(root / "clipped.wav"), np.stack((clipped, clipped)), SR, codec="pcm_s16le", sample_fmt="s16")
    tone = (10 ** (-23 / 20) * np.sin(2 * np.pi * 997 * np.arange(10 * SR) / SR)).astype(np.float32)
    io.write(str(root / "pass.wav"), np.stack((tone, tone)), SR, codec="pcm_s16le", sample_fmt="s16")
    return {"noisy_speech.wav": "denoise+loudness", "sub/loud_music.flac": "loudness", "clipped.wav": "loudness",
            "pass.wav": None}


def test_remedy_branch_on_s3(prefect_api, s3, tmp_path):
    from flows.audit import run_audit

    expected = make_collection(tmp_path / "media")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    for bucket in ("rem-media", "rem-reports", "rem-fixed"):
        s3.mkdir(bucket)
    s3.put(str(tmp_path / "media") + "/", "rem-media/coll", recursive=True)
    summary = run_audit("s3://rem-media/coll", "s3://rem-reports/qc", workers=2, run_id="rem1",
                        policy=str(policy), remedy_url="s3://rem-fixed/out")
    rows = report.read_report("s3://rem-reports/qc", run_id="rem1").to_pandas()
    original = rows[rows.stage == "original"].set_index("source_url")
    remedied = rows[rows.stage == "remedied"].set_index("original_url")
    assert len(original) == 4 and len(remedied) == 3 and len(rows) == 7
    base = "s3://rem-media/coll/"
    assert set(remedied.index) == {base + n for n, what in expected.items() if what}
    assert remedied.source_url.tolist() == ["s3://rem-fixed/out/" + u[len(base):] for u in remedied.index]
    assert original.loc[base + "pass.wav", "verdict"] == "pass"
    s3.invalidate_cache()
    assert not s3.exists("rem-fixed/out/pass.wav")  # a passing file is not touched
    assert sorted(s3.find("rem-fixed")) == sorted(u[len("s3://"):] for u in remedied.source_url)  # nothing else
    # remedies as text, in order: denoise first
    assert list(remedied.loc[base + "noisy_speech.wav", "remedies"]) == [
        "denoise(amount=100)", "loudness(target_lufs=-23.0, true_peak_max_dbtp=-1.0)"]
    assert list(remedied.loc[base + "clipped.wav", "remedies"]) == [
        "loudness(target_lufs=-23.0, true_peak_max_dbtp=-1.0)"
    ]
    # every remedied file on target by an independent meter
    for url in remedied.source_url:
        local = tmp_path / url.rsplit("/", 1)[-1]
        s3.get(url[len("s3://"):], str(local))
        i, tp = ebur128(local)
        assert abs(i - TARGET) <= 0.3, (url, i)
        assert tp <= CEILING, (url, tp)
    # the noise went down
    noisy = base + "noisy_speech.wav"
    assert remedied.loc[noisy, "noise_score_snr_db"] > original.loc[noisy, "noise_score_snr_db"] + 5
    assert remedied.loc[noisy, "verdict"] == "pass" and remedied.loc[base + "sub/loud_music.flac", "verdict"] == "pass"
    # the clipped file still fails on clipping, whatever its level now
    clipped = remedied.loc[base + "clipped.wav"]
    assert clipped["verdict"] == "fail"
    reasons = {r["metric"]: r for r in clipped["verdict_reasons"]}
    assert "clipping_events" in reasons and "kept from the original" in reasons["clipping_events"]["rule"]
    assert "loudness_integrated_lufs" not in reasons
    assert summary["remedy"]["fixed"] == 2 and summary["remedy"]["still_failing"] == 1
    assert summary["remedy"]["errors"] == 0 and summary["remedy"]["reused"] == 0
    # an unchanged re-audit remedies nothing again: the remedied rows and objects are reused
    etags = {u: s3.info(u[len("s3://"):])["ETag"] for u in remedied.source_url}
    again = run_audit("s3://rem-media/coll", "s3://rem-reports/qc", workers=1, run_id="rem2",
                      policy=str(policy), remedy_url="s3://rem-fixed/out")
    assert again["reused"] == 4 and again["remedy"]["reused"] == 3 and again["remedy"]["remedied"] == 3
    s3.invalidate_cache()
    assert {u: s3.info(u[len("s3://"):])["ETag"] for u in remedied.source_url} == etags
    rows2 = report.read_report("s3://rem-reports/qc", run_id="rem2").to_pandas()
    assert (rows2.stage == "remedied").sum() == 3
    # other remedy parameters: remedied again
    policy.write_text(POLICY.replace("target_lufs: -23.0", "target_lufs: -22.5"))
    third = run_audit("s3://rem-media/coll", "s3://rem-reports/qc", workers=1, run_id="rem3",
                      policy=str(policy), remedy_url="s3://rem-fixed/out")
    assert third["remedy"]["reused"] == 0 and third["remedy"]["remedied"] == 3


def test_a_failing_remedy_is_an_error_row_and_the_audit_goes_on(prefect_api, tmp_path):
    """The remedies write mp3; a 3-channel file cannot be an mp3: its remedied row is an error,
    and every other file is remedied."""
    from flows.audit import run_audit

    make_collection(tmp_path / "media", speech_s=10.0)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace("true_peak_max_dbtp: -1.0}", "true_peak_max_dbtp: -1.0, format: mp3}"))
    y = programme(4.0, seed=3)
    io.write(str(tmp_path / "media" / "three.wav"), np.clip(np.vstack((y, y[:1])) * 3.0, -1, 1), SR,
             codec="pcm_s16le", sample_fmt="s16")
    summary = run_audit(str(tmp_path / "media"), str(tmp_path / "report"), workers=2, run_id="e1",
                        policy=str(policy), remedy_url=str(tmp_path / "fixed"))
    rows = report.read_report(str(tmp_path / "report"), run_id="e1").to_pandas()
    assert (rows.stage == "original").sum() == 5
    remedied = rows[rows.stage == "remedied"].set_index("original_url")
    assert len(remedied) == 4
    three = remedied.loc[str(tmp_path / "media" / "three.wav")]
    assert three["status"] == "error" and "remedy failed" in three["error"] and "mp3" in three["error"]
    assert three["source_url"].endswith("/fixed/three.mp3")
    ok = remedied.drop(index=str(tmp_path / "media" / "three.wav"))
    assert (ok.status == "ok").all() and ok.source_url.str.endswith(".mp3").all()
    assert summary["remedy"]["errors"] == 1 and summary["remedy"]["remedied"] == 4
    assert sorted(os.listdir(tmp_path / "fixed")) == ["clipped.mp3", "noisy_speech.mp3", "sub"]
    assert os.listdir(tmp_path / "fixed" / "sub") == ["loud_music.mp3"]


def test_remedy_to_inside_the_collection_or_without_a_policy_is_refused_at_once(tmp_path):
    make_collection(tmp_path / "media", speech_s=4.0)
    for extra, words in ((["--policy", "ebu-r128", "--remedy-to", str(tmp_path / "media" / "fixed")],
                          "is inside the audited collection"),
                         (["--remedy-to", str(tmp_path / "fixed")], "--remedy-to needs --policy"),
                         (["--policy", "ebu-r128", "--remedy-to", "/proc/nope/fixed"], "--remedy-to /proc/nope/fixed")):
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "audioqc", "audit", str(tmp_path / "media"), "--report",
                               str(tmp_path / "report"), *extra], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], proc.stderr
        assert time.monotonic() - t0 < 20  # before any Prefect server starts
    assert not (tmp_path / "report").exists() and not (tmp_path / "media" / "fixed").exists()


def test_killed_during_the_branch_resumes_with_one_row_each(tmp_path):
    """SIGKILL an audit while it remedies, resume it by run id: one original row per file, one
    remedied row per remedied file, no temporary file left under the prefix."""
    media = tmp_path / "media"
    media.mkdir()
    n = 6
    for i in range(n):
        y = programme(40.0, seed=50 + i) * 2.0  # too loud: every file is remedied
        io.write(str(media / f"f{i}.wav"), np.clip(y, -1, 1), SR, codec="pcm_s16le", sample_fmt="s16")
    fixed, dest = tmp_path / "fixed", tmp_path / "report"
    cmd = [sys.executable, "-m", "audioqc", "audit", str(media), "--report", str(dest), "--workers", "1",
           "--batch-size", "1", "--part-rows", "1", "--run-id", "remkill", "--policy", "ebu-r128",
           "--remedy-to", str(fixed)]
    env = {**os.environ, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:
        done = [p for p in fixed.glob("*.wav")] if fixed.exists() else []
        if len(done) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = report.read_report(str(dest), run_id="remkill").to_pandas() if dest.exists() else pd.DataFrame()
    assert len(before) < 2 * n
    finished = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert finished.returncode == 0, finished.stderr[-2000:]
    after = report.read_report(str(dest), run_id="remkill").to_pandas()
    assert (after.stage == "original").sum() == n and after[after.stage == "original"].source_url.is_unique
    assert (after.stage == "remedied").sum() == n and after[after.stage == "remedied"].original_url.is_unique
    assert sorted(os.listdir(fixed)) == [f"f{i}.wav" for i in range(n)]  # no .part left behind
    for i in range(n):
        i_lufs, tp = ebur128(fixed / f"f{i}.wav")
        assert abs(i_lufs + 23.0) <= 0.3 and tp <= -1.0
