"""Faults 1 and 6: a user error in `audit` (and a hostile policy) is one line, exit 1 or 2, in well
under 3 s, before any Prefect server starts: no flood, no retries with delays, no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiolib import io
from faults import NO_OVERRIDE, cli, moto_process

#: The issue's bound for every case here.
BOUND_S = 3.0


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("coll")
    io.write(str(d / "a.wav"), (0.1 * np.random.default_rng(0).standard_normal((1, 4800))).astype(np.float32), 48000)
    return d


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("policies")
    bomb = ["name: bomb", 'description: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "a" if i == 0 else "bcdefghi"[i - 1]
        bomb.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb.append("rules: []")
    files = {
        "bomb.yaml": "\n".join(bomb) + "\n",
        "deep.yaml": "name: deep\nrules: " + "[" * 3000 + "]" * 3000 + "\n",
        "big.yaml": "name: big\nrules:\n"
        + "  - {metric: clipping_events, equals: 0, severity: fail, advice: x}\n" * 20000,
        "many.yaml": "name: many\nrules:\n"
        + "  - {metric: clipping_events, equals: 0, severity: fail, advice: x}\n" * 1200,
        "typo.yaml": "name: typo\nrules:\n  - {metric: loudness_integrated_lufz, max: 0, severity: fail, advice: x}\n",
    }
    out = {}
    for name, text in files.items():
        out[name] = d / name
        out[name].write_text(text)
    return out


def assert_one_line(run, words: str) -> None:
    assert run.returncode in (1, 2), (run.returncode, run.stderr[-2000:])
    assert len(run.lines) == 1, run.stderr[-3000:]
    assert run.lines[0].startswith("audioqc:"), run.lines
    assert words in run.lines[0], run.lines[0]
    assert "Traceback" not in run.stderr and "Error logging to API" not in run.stderr
    assert run.seconds < BOUND_S, f"{run.seconds:.1f} s"


@pytest.mark.parametrize("case, args, words", [
    ("missing folder", ["{tmp}/nope", "--report", "{tmp}/r"], "nope: no such file or directory"),
    ("run id with a slash", ["{coll}", "--report", "{tmp}/r", "--run-id", "a/b"], "--run-id 'a/b'"),
    ("run id escaping", ["{coll}", "--report", "{tmp}/r", "--run-id", "../../escape"], "--run-id '../../escape'"),
    ("batch size 0", ["{coll}", "--report", "{tmp}/r", "--batch-size", "0"], "--batch-size=0"),
    ("part rows 0", ["{coll}", "--report", "{tmp}/r", "--part-rows", "0"], "--part-rows=0"),
    ("workers 0", ["{coll}", "--report", "{tmp}/r", "--workers", "0"], "--workers=0"),
    ("report is a file", ["{coll}", "--report", "{coll}/a.wav"], "is a file"),
    ("unknown preset", ["{coll}", "--report", "{tmp}/r", "--policy", "ebu-r129"], "did you mean ebu-r128"),
    ("policy missing", ["{coll}", "--report", "{tmp}/r", "--policy", "{tmp}/none.yaml"], "policy file not found"),
    ("policy URL refused", ["{coll}", "--report", "{tmp}/r", "--policy", "http://127.0.0.1:1/p.yaml"],
     "cannot connect"),
    ("alias bomb", ["{coll}", "--report", "{tmp}/r", "--policy", "{pol[bomb.yaml]}"], "YAML aliases"),
    ("deep nesting", ["{coll}", "--report", "{tmp}/r", "--policy", "{pol[deep.yaml]}"], "nested deeper"),
    ("1 MB+ policy", ["{coll}", "--report", "{tmp}/r", "--policy", "{pol[big.yaml]}"], "at most 1024 KiB"),
    ("too many rules", ["{coll}", "--report", "{tmp}/r", "--policy", "{pol[many.yaml]}"], "at most 1000"),
    ("metric typo", ["{coll}", "--report", "{tmp}/r", "--policy", "{pol[typo.yaml]}"], "loudness_integrated_lufs"),
    ("remedy without policy", ["{coll}", "--report", "{tmp}/r", "--remedy-to", "{tmp}/fix"], "needs --policy"),
])
def test_local_user_errors(case, args, words, collection, policies, tmp_path):
    argv = [a.format(tmp=tmp_path, coll=collection, pol={k: str(v) for k, v in policies.items()}) for a in args]
    run = cli("audit", *argv)
    assert_one_line(run, words)
    assert not (tmp_path / "r" / "run_date=").exists()


def test_error_messages_quote_a_short_excerpt_only(collection, tmp_path):
    policy = tmp_path / "p.yaml"
    policy.write_text("name: x\ndescription: [" + ", ".join(["y" * 50] * 200) + "]\nrules: []\n")
    run = cli("audit", str(collection), "--report", str(tmp_path / "r"), "--policy", str(policy))
    assert_one_line(run, "description must be text")
    assert len(run.lines[0]) < 400


def test_read_only_report_folder(collection, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    run = cli("audit", str(collection), "--report", str(ro / "r"), prefix=NO_OVERRIDE)
    assert_one_line(run, "cannot write")


def test_s3_user_errors(collection):
    with moto_process() as moto:
        fs = moto.fs()
        fs.mkdir("have")
        fs.put(str(collection / "a.wav"), "have/coll/a.wav")
        env = moto.env
        for args, words in (
            (["s3://nobucket/coll", "--report", "s3://have/r"], "no such bucket"),
            (["s3://have/noprefix", "--report", "s3://have/r"], "no such bucket, prefix or object"),
            (["s3://have/coll", "--report", "s3://norepbucket/r"], "bucket norepbucket does not exist"),
            (["s3://Bad_Bucket!/x", "--report", "s3://have/r"], "Bad_Bucket!"),
        ):
            run = cli("audit", *args, env=env)
            assert_one_line(run, words)
        assert not fs.exists("norepbucket")  # never created behind the operator's back
