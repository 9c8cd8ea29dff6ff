#!/usr/bin/env python3
"""Scale of the audit pipeline itself: list and schedule a collection of many objects.

Creates ``--objects`` (default 100,000) tiny files (empty ``.wav`` files, each an instant error row,
so the figure is the pipeline's own cost: listing, task scheduling through Prefect, rows, report
parts), runs ``audioqc audit`` on them in a child process, and prints wall time, objects/s and the
audit process's peak RSS, then checks the report has exactly one row per object.

    .venv/bin/python benchmarks/bench_audit_scale.py [--objects 100000] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_loudness import _default_audioqc, print_table, run_measured  # noqa: E402

# the audit records on a temporary Prefect server that stops with it: without this it would start
# the background server on first use (flows/server.py), which then spends minutes of CPU on the
# run's events after the benchmark ends and slows whatever is measured next
os.environ.setdefault("AUDIOQC_PREFECT_SERVER", "temporary")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    audioqc = _default_audioqc()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        media = tmp / "media"
        for i in range(args.objects):
            d = media / f"d{i // 1000:04d}"
            if i % 1000 == 0:
                d.mkdir(parents=True)
            (d / f"f{i:06d}.wav").touch()
        print(f"created {args.objects} objects in {args.objects // 1000 + 1} folders", flush=True)
        report_dir = tmp / "report"
        run = run_measured([audioqc, "audit", str(media), "--report", str(report_dir), "--workers",
                            str(args.workers), "--batch-size", str(args.batch_size), "--run-id", "scale"],
                           tmp, "audit")
        ok = run["returncode"] == 0
        rows = None
        if ok:
            import pyarrow.dataset as ds

            table = ds.dataset(report_dir, format="parquet", partitioning="hive").to_table(columns=["source_url"])
            rows = table.num_rows
            unique = len(set(table.column("source_url").to_pylist()))
        print_table(["objects", "batch", "workers", "wall s", "objects/s", "peak RSS MB", "rows", "status"],
                    [[str(args.objects), str(args.batch_size), str(args.workers), f"{run['wall_s']:.1f}",
                      f"{args.objects / run['wall_s']:.0f}", f"{run['peak_rss_mb']:.0f}", str(rows),
                      "ok" if ok and rows == unique == args.objects else f"FAILED {run['stderr'][-300:]}"]])
        if args.json:
            args.json.write_text(json.dumps({"objects": args.objects, "batch_size": args.batch_size,
                                             "workers": args.workers, "wall_s": run["wall_s"],
                                             "peak_rss_mb": run["peak_rss_mb"], "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
