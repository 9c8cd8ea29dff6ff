"""A/B comparison and non-inferiority gates: synthetic runs with known deltas, the exact bootstrap
against the enumerated one, bad input, and end to end on real audio (a collection, a copy of it
with noise added to half its files, and a byte-identical copy)."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pyarrow as pa
import pytest

from audiolib import io
from audiolib.errors import InvalidParameter
from audioqc.compare import Gate, compare, format_markdown
from audioqc.stats import bootstrap_median_ci, bootstrap_median_draws
from conftest import SR, espeak_speech, run_cli
from testing.material.reports import synthetic_history, write_history

pytestmark = pytest.mark.timeout(900)


_cli = run_cli


def _set(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(name), pa.array(values, table.schema.field(name).type))


def _two_runs(url: str, change=None, n: int = 300, seed: int = 0) -> None:
    """run-000 and run-001 of the same files and values; ``change(table, rng)`` edits run-001."""
    hist = synthetic_history(2, n, new_per_run=0, seed=seed)
    if change is not None:
        run, table = hist[1]
        hist[1] = (run, change(table, np.random.default_rng(seed + 1)))
    write_history(url, hist)


def _shift(name: str, mean: float, sd: float = 0.1):
    def change(table, rng):
        values = table[name].to_numpy(zero_copy_only=False).astype(float)
        return _set(table, name, values + rng.normal(mean, sd, values.size))
    return change


@pytest.mark.parametrize("mean, holds", [(-0.5, False), (-0.1, True), (+0.4, True)])
def test_quality_gate_is_a_one_sided_non_inferiority_margin(tmp_path, mean, holds):
    url = str(tmp_path / "r")
    _two_runs(url, _shift("quality_score_average", mean))
    result = compare(f"{url}#run-000", f"{url}#run-001", gates=["quality_score_average:-0.3"])
    [gate] = result.gates
    m = next(m for m in result.metrics if m.metric == "quality_score_average")
    assert result.pairs == 300 and m.n == 300
    assert m.ci_low < m.median_delta < m.ci_high and m.ci_low <= mean <= m.ci_high + 0.02
    assert m.median_delta == pytest.approx(mean, abs=0.03)
    assert gate.holds is holds and result.passed is holds
    assert (gate.ci_low >= -0.3) is holds
    if not holds:
        assert len(gate.worst) == 5 and all(w.delta < mean for w in gate.worst)
    # an untouched metric: every delta zero, interval [0, 0], Wilcoxon p 1
    lufs = next(m for m in result.metrics if m.metric == "loudness_integrated_lufs")
    assert (lufs.median_delta, lufs.ci_low, lufs.ci_high, lufs.wilcoxon_p) == (0, 0, 0, 1.0)


@pytest.mark.parametrize("gate, shift, holds", [
    ("loudness_integrated_lufs:0.5", +0.2, True), ("loudness_integrated_lufs:0.5", +0.8, False),
    ("loudness_integrated_lufs:0.5", -0.8, False), ("loudness_true_peak_dbtp:+0.5", +0.8, False),
    ("loudness_true_peak_dbtp:+0.5", -0.8, True),
])
def test_two_sided_and_upper_gates(tmp_path, gate, shift, holds):
    url = str(tmp_path / "r")
    metric = gate.split(":")[0]
    _two_runs(url, _shift(metric, shift, 0.05))
    result = compare(f"{url}#run-000", f"{url}#run-001", gates=[gate])
    assert result.gates[0].holds is holds, result.gates[0].reason


def test_unpaired_files_new_errors_and_unmeasured_gates(tmp_path):
    url = str(tmp_path / "r")

    def change(table, rng):
        table = table.slice(10)  # 10 files gone
        extra = table.slice(0, 5)
        extra = _set(extra, "source_url", [u.replace(".wav", "-new.wav") for u in extra["source_url"].to_pylist()])
        table = pa.concat_tables([table, extra])  # 5 new files
        status = table["status"].to_pylist()
        status[20:22] = ["error", "error"]
        table = _set(table, "status", status)
        return _set(table, "quality_score_average", [None] * table.num_rows)

    _two_runs(url, change, n=100)
    result = compare(f"{url}#run-000", f"{url}#run-001", gates=["quality_score_average:-0.3",
                                                                "loudness_range_lu:1"])
    assert result.pairs == 90 and len(result.only_baseline) == 10 and len(result.only_candidate) == 5
    assert all(f.endswith("-new.wav") for f in result.only_candidate)
    assert len(result.new_errors) == 2
    quality, lra = result.gates
    assert not quality.holds and "measured on no file" in quality.reason
    assert lra.holds and not result.passed
    md = format_markdown(result)
    assert "❌" in md and "`quality_score_average:-0.3`" in md and "Only in the baseline" in md


def test_pair_by_stem_and_no_file_in_common(tmp_path):
    url = str(tmp_path / "r")

    def to_mp3(table, rng):
        return _set(table, "source_url", [u.replace(".wav", ".mp3") for u in table["source_url"].to_pylist()])

    _two_runs(url, to_mp3, n=30)
    with pytest.raises(InvalidParameter, match="no file in common.*--pair-by stem"):
        compare(f"{url}#run-000", f"{url}#run-001")
    assert compare(f"{url}#run-000", f"{url}#run-001", pair_by="stem").pairs == 30


def test_gate_parsing():
    assert Gate.parse("quality_score_average:-0.3") == Gate("quality_score_average", 0.3, "lower")
    assert Gate.parse("loudness_integrated_lufs:0.5") == Gate("loudness_integrated_lufs", 0.5, "both")
    assert Gate.parse("loudness_true_peak_dbtp:+1").side == "upper"
    with pytest.raises(InvalidParameter, match="did you mean quality_score_average"):
        Gate.parse("quality_scor_average:-0.3")
    with pytest.raises(InvalidParameter, match="not numeric"):
        Gate.parse("media_info_audio_codec:1")
    for bad in ("quality_score_average", "quality_score_average:", "quality_score_average:x", "a:b:c",
                "quality_score_average:nan"):
        with pytest.raises(InvalidParameter):
            Gate.parse(bad)


@pytest.mark.parametrize("n", [5, 6])
def test_exact_bootstrap_median_matches_the_enumerated_bootstrap(n):
    """Every one of the n^n resamples enumerated: the exact bootstrap distribution of the median.
    200,000 draws of the Beta construction must match its CDF within 0.01 everywhere (DKW: a larger
    gap has probability < 1e-17 if the construction is exact)."""
    x = np.array([0.3, 1.7, 2.2, 5.0, 9.1, 12.5][:n])
    medians = np.median(np.array(list(itertools.product(x, repeat=n))), axis=1)
    draws = bootstrap_median_draws(x, 200_000, seed=3)
    grid = np.unique(medians)
    exact = np.searchsorted(np.sort(medians), grid, side="right") / medians.size
    drawn = np.searchsorted(np.sort(draws), grid, side="right") / draws.size
    assert np.max(np.abs(exact - drawn)) < 0.01
    assert set(np.unique(draws)) <= set(grid)
    lo, hi = bootstrap_median_ci(x)
    assert lo == pytest.approx(np.quantile(medians, 0.025), abs=1e-9) or lo in grid
    assert x[0] <= lo <= np.median(x) <= hi <= x[-1]


# ----------------------------------------------------------------------------------------------
# the command line


@pytest.mark.parametrize("args, code, words", [
    (["--gate", "quality_score_averge:-0.3"], 2, "did you mean quality_score_average"),
    (["--gate", "quality_score_average:-lots"], 2, "is not a number"),
    (["--gate", "quality_score_average"], 2, "METRIC:VALUE"),
    (["--pair-by", "name"], 2, "invalid choice"),
])
def test_cli_usage_errors(tmp_path, args, code, words):
    url = str(tmp_path / "r")
    _two_runs(url, n=20)
    done = _cli("compare", f"{url}#run-000", f"{url}#run-001", *args)
    assert done.returncode == code and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr


def test_cli_data_errors_name_the_input(tmp_path):
    url = str(tmp_path / "r")
    _two_runs(url, n=20)
    for args, words in (([f"{url}#run-042", f"{url}#run-001"], "no run 'run-042'"),
                        ([str(tmp_path / "nowhere"), f"{url}#run-001"], "nowhere"),
                        ([f"{url}#run-000", str(tmp_path)], "neither a report")):
        done = _cli("compare", *args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and words in lines[0], done.stderr
    write_history(str(tmp_path / "third"), synthetic_history(2, 20, seed=51)[1:])  # files 20-39: none in common
    done = _cli("compare", f"{url}#run-000", str(tmp_path / "third"))
    assert done.returncode == 1 and "no file in common" in done.stderr


def test_cli_gate_failure_json_markdown_html(tmp_path):
    url = str(tmp_path / "r")
    _two_runs(url, _shift("quality_score_average", -0.6))
    md, page = tmp_path / "pr.md", tmp_path / "c.html"
    done = _cli("compare", f"{url}#run-000", f"{url}#run-001", "--gate", "quality_score_average:-0.3",
                "loudness_integrated_lufs:0.5", "--json", "--markdown", str(md), "--html", str(page))
    assert done.returncode == 1
    data = json.loads(done.stdout, parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
    assert [g["holds"] for g in data["gates"]] == [False, True] and data["passed"] is False
    assert data["pairs"] == 300 and len(data["gates"][0]["worst"]) == 5
    assert "gate quality_score_average:-0.3 fails" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "| `quality_score_average:-0.3` |" in md.read_text()
    text = page.read_text()
    assert "FAILS" in text and "<script" not in text.lower() and 'src="data:image/png;base64,' in text


# ----------------------------------------------------------------------------------------------
# end to end on real audio


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    """Six speech files in two folders; a byte-identical copy; a copy with noise on three files."""
    root = tmp_path_factory.mktemp("e2e")
    a = root / "a"
    names = []
    for i in range(6):
        name = f"{'news' if i % 2 else 'talk'}/take{i}.wav"
        (a / name).parent.mkdir(parents=True, exist_ok=True)
        y = espeak_speech(10.0 + 0.5 * i)
        io.write(str(a / name), y[None, :], SR, codec="pcm_s16le", sample_fmt="s16")
        names.append(name)
    copy = root / "copy"
    shutil.copytree(a, copy)
    noisy = root / "noisy"
    shutil.copytree(a, noisy)
    rng = np.random.default_rng(7)
    hit = names[::2]
    for name in hit:
        y = espeak_speech(10.0 + 0.5 * names.index(name))
        y = (y + rng.normal(0, 0.05, y.size)).astype(np.float32)
        io.write(str(noisy / name), y[None, :], SR, codec="pcm_s16le", sample_fmt="s16")
    return {"a": str(a), "copy": str(copy), "noisy": str(noisy), "hit": sorted(hit)}


def test_end_to_end_noise_on_half_the_files_fails_the_quality_gate(collections, tmp_path):
    report_url = str(tmp_path / "report")
    done = _cli("audit", collections["a"], "--report", report_url, "--policy", "ebu-r128", "--run-id", "base")
    assert done.returncode == 0, done.stderr
    md = tmp_path / "pr.md"
    done = _cli("compare", f"{report_url}#base", collections["noisy"], "--gate", "quality_score_average:-0.3",
                "--policy", "ebu-r128", "--markdown", str(md))
    assert done.returncode == 1, done.stderr
    assert "FAIL quality_score_average:-0.3" in done.stdout
    [line] = done.stderr.strip().splitlines()
    named = sorted(part.split(" (")[0] for part in line.split("worst: ")[1].split(", "))
    assert named == collections["hit"]  # exactly the noisy files, nothing else
    assert "6 files paired by path" in done.stdout
    assert all(f"`{name}`" in md.read_text() for name in collections["hit"])


def test_end_to_end_byte_identical_copy_passes(collections):
    result = compare(collections["a"], collections["copy"], gates=["quality_score_average:-0.3",
                                                                   "loudness_integrated_lufs:0.1"],
                     policy="ebu-r128", workers=1)
    assert result.passed and result.pairs == 6 and not result.only_baseline and not result.only_candidate
    assert result.baseline.kind == result.candidate.kind == "collection"
    measured = [m for m in result.metrics if m.n]
    assert {m.metric for m in measured} >= {"quality_score_average", "loudness_integrated_lufs"}
    assert all(m.median_delta == 0 and m.ci_low == 0 and m.ci_high == 0 for m in measured)
    assert json.dumps(result.to_dict(), allow_nan=False)
