"""Make the figures of docs/trends.md (and the README's trends section) with the real commands.

A synthetic nightly history (testing/material/reports.py: 8 runs of 300 new files in three
creator folders; on the last night creatorB's files are 1.5 quality points worse) is written as
a report; `audioqc trends` and `audioqc compare` then draw the figures:

    .venv/bin/python docs/make_trends_figures.py [--out docs/figures]

writes trend_quality_score_average.png, collection_quality.png, compare_quality_score_average.png
and the two HTML reports (trends.html, compare.html; these are ~1 MB and not committed).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"))
    args = ap.parse_args()
    from testing.material.reports import synthetic_history, write_history

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        report = f"{tmp}/report"
        shift = {"group": "creatorB", "metric": "quality_score_average", "delta": -1.5}
        write_history(report, synthetic_history(8, 300, shift=shift, seed=1))
        cli = [sys.executable, "-m", "audioqc"]
        subprocess.run(cli + ["trends", report, "--group-by", "prefix", "--policy", "ebu-r128", "--png", f"{tmp}/png",
                              "--html", str(out / "trends.html")], check=True)
        # the same files in the last two runs of a catalogue, the candidate 0.6 points worse
        cat = f"{tmp}/catalogue"
        hist = synthetic_history(2, 200, new_per_run=0, seed=2)
        import numpy as np
        import pyarrow as pa

        run, table = hist[1]
        q = table["quality_score_average"].to_numpy(zero_copy_only=False).astype(float)
        q = q + np.random.default_rng(3).normal(-0.6, 0.3, q.size)
        i = table.schema.get_field_index("quality_score_average")
        hist[1] = (run, table.set_column(i, table.schema.field(i), pa.array(q, pa.float64())))
        write_history(cat, hist)
        subprocess.run(cli + ["compare", f"{cat}#run-000", f"{cat}#run-001", "--gate", "quality_score_average:-0.3",
                              "--png", f"{tmp}/cmp", "--html", str(out / "compare.html"),
                              "--markdown", str(out / "compare.md")], check=False)
        for name, src in (("trend_quality_score_average.png", f"{tmp}/png/trend_quality_score_average.png"),
                          ("collection_quality.png", f"{tmp}/png/collection_quality.png"),
                          ("compare_quality_score_average.png", f"{tmp}/cmp/compare_quality_score_average.png")):
            shutil.copy(src, out / name)
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
