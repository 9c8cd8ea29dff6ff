"""Rewrite tests/golden/versions.json from the code: ``.venv/bin/python -m tests.golden``.

Run it after bumping audioqc.report.SCHEMA_VERSION (the report's columns changed) or
audiolib.ANALYSIS_VERSION (a measured value changed): tests/test_versions.py fails until then.
"""

from __future__ import annotations

import json
from pathlib import Path

from audiolib import ANALYSIS_VERSION
from audiolib.diagnose import analysis_fingerprint
from audioqc.report import SCHEMA_VERSION, schema_fingerprint

PATH = Path(__file__).resolve().parent / "versions.json"


def current() -> dict:
    return {"schema_version": SCHEMA_VERSION, "schema_sha256": schema_fingerprint(),
            "analysis_version": ANALYSIS_VERSION, "analysis_sha256": analysis_fingerprint()}


if __name__ == "__main__":
    PATH.write_text(json.dumps(current(), indent=1) + "\n")
    print(f"wrote {PATH}")
