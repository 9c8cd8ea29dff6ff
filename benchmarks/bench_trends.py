"""Time `audioqc trends` and `audioqc compare` on a large report.

Generates (once; kept under benchmarks/out/) a synthetic report of RUNS runs x FILES files
(default 100 x 10,000 = 1,000,000 rows) in the audit's own layout: hive partitions by run_date,
one Parquet part per 256 rows, every column of the report schema (most of them null, as nested
columns of a real report are not read anyway). Ten creator folders; the last run's quality score
of one folder is 1.5 points lower, so that the alert path runs.

The first trends over a report builds its run cache (one narrow Parquet file per run under
``_cache/``, see audioqc/history.py); the "cold" case removes it before every round, the others
find it in place (as a nightly trends does for every run but the new one).

Every case runs as its own command in a fresh process (wall time and that process's peak RSS,
from wait4), the cases in turn for each round, and the fastest round of each case is kept. Peers
in the same run: pandas.read_parquet of the whole report (every column: what reading a report
without column pruning costs) and DuckDB computing the per-run medians and percentiles of the
same 11 metrics over the hive partitions.

    .venv/bin/python benchmarks/bench_trends.py [--runs 100] [--files 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import cpu_model  # noqa: E402

TARGET_S = 10.0
TARGET_MB = 1024.0





def generate(url: Path, runs: int, files: int) -> None:
    from testing.material.reports import iter_history, write_history

    groups = tuple(f"creator{i:02d}" for i in range(10))
    shift = {"group": "creator03", "metric": "quality_score_average", "delta": -1.5, "runs": [runs - 1]}
    t0 = time.perf_counter()
    write_history(str(url), iter_history(runs, files, groups=groups, shift=shift, seed=0))
    (url / ".complete").write_text(f"{runs} {files}\n")
    print(f"generated {runs} x {files} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def run(cmd: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS MB and exit code of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1, 3):
        assert proc.stderr is not None  # PIPE
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, proc.returncode


PEER_PANDAS = "import sys, pandas as pd; df = pd.read_parquet(sys.argv[1]); print(len(df))"
PEER_DUCKDB = """
import sys, duckdb
cols = ["quality_score_average", "noise_score_average", "noise_score_snr_db", "loudness_integrated_lufs",
        "loudness_true_peak_dbtp", "loudness_range_lu", "speech_percentage", "music_percentage",
        "clipping_events", "silence_percentage", "bandwidth_hz"]
aggs = ", ".join(f"count({c}), avg({c}), median({c}), quantile_cont({c}, 0.1), quantile_cont({c}, 0.9)" for c in cols)
q = (f"select run_id, min(run_time), count(*), {aggs} from read_parquet('{sys.argv[1]}/**/*.parquet', "
     "hive_partitioning = true) where stage = 'original' or stage is null group by run_id order by 2")
print(len(duckdb.sql(q).fetchall()))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_trends"))
    args = ap.parse_args()
    out = Path(args.out)
    report = out / f"report-{args.runs}x{args.files}"
    if not (report / ".complete").exists():
        import shutil

        shutil.rmtree(report, ignore_errors=True)
        generate(report, args.runs, args.files)
    parts = list(report.glob("run_date=*/*.parquet"))
    size_mb = sum(p.stat().st_size for p in parts) / 2**20
    py = sys.executable
    cli = [py, "-m", "audioqc"]
    html = str(out / "trends.html")
    cases = {
        "trends, cold (run cache removed first)": cli + ["trends", str(report), "--json"],
        "trends": cli + ["trends", str(report), "--json"],
        "trends --group-by prefix": cli + ["trends", str(report), "--group-by", "prefix", "--json"],
        "trends --by ingest --group-by prefix": cli + ["trends", str(report), "--by", "ingest", "--group-by", "prefix",
                                                       "--json"],
        "trends --group-by prefix --html": cli + ["trends", str(report), "--group-by", "prefix", "--html", html],
        "compare (last two runs, 1 gate)": cli + ["compare", f"{report}#run-{args.runs - 2:03d}",
                                                  f"{report}#run-{args.runs - 1:03d}", "--gate",
                                                  "quality_score_average:-0.3", "--json"],
        "peer: pandas.read_parquet, all columns": [py, "-c", PEER_PANDAS, str(report)],
        "peer: DuckDB per-run percentiles": [py, "-c", PEER_DUCKDB, str(report)],
        "python -c 'import audioqc.trends' (start-up)": [py, "-c", "import audioqc.trends, audioqc.compare"],
    }
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in cases}
    import shutil

    for _ in range(args.repeat):
        for name, cmd in cases.items():
            if "cold" in name:
                shutil.rmtree(report / "_cache", ignore_errors=True)
            results[name].append(run(cmd))
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; report: {args.runs} runs x {args.files} files = "
          f"{args.runs * args.files:,} rows in {len(parts)} Parquet parts, {size_mb:.0f} MB on disk")
    print(f"each case a fresh process; fastest of {args.repeat} rounds (every round in turn)\n")
    width = max(len(k) for k in cases)
    print(f"{'case'.ljust(width)}  wall s  peak RSS MB  exit  every round s")
    print(f"{'-' * width}  ------  -----------  ----  -------------")
    for name, rounds in results.items():
        best = min(rounds, key=lambda r: r[0])
        every = " ".join(f"{r[0]:.2f}" for r in rounds)
        print(f"{name.ljust(width)}  {best[0]:6.2f}  {max(r[1] for r in rounds):11.0f}  {best[2]:4d}  {every}")
    print()
    for name, label in (("trends", "with the run cache in place"), ("trends, cold (run cache removed first)",
                                                                    "cold, building the run cache")):
        whole = min(r[0] for r in results[name])
        rss = max(r[1] for r in results[name])
        verdict = "meets" if whole < TARGET_S and rss < TARGET_MB else "MISSES"
        print(f"target: trends over the whole history < {TARGET_S:.0f} s and < {TARGET_MB:.0f} MB peak RSS, {label}: "
              f"{whole:.2f} s, {rss:.0f} MB [{verdict} target]")


if __name__ == "__main__":
    main()
