"""The report's schema and the measured values are versioned: a change to either without its
version bump fails here (cached audit rows are reused on the analysis version; readers of the
report rely on the schema version)."""

from __future__ import annotations

import json

from golden.__main__ import PATH, current


def test_schema_changes_only_with_a_schema_version_bump():
    golden, now = json.loads(PATH.read_text()), current()
    if now["schema_sha256"] != golden["schema_sha256"]:
        assert now["schema_version"] != golden["schema_version"], (
            "the report's columns changed: bump audioqc.report.SCHEMA_VERSION, then run "
            "`.venv/bin/python -m tests.golden`")
        raise AssertionError("SCHEMA_VERSION was bumped: record it with `.venv/bin/python -m tests.golden`")
    assert now["schema_version"] == golden["schema_version"], "run `.venv/bin/python -m tests.golden`"


def test_analysis_changes_only_with_an_analysis_version_bump():
    golden, now = json.loads(PATH.read_text()), current()
    if now["analysis_sha256"] != golden["analysis_sha256"]:
        assert now["analysis_version"] != golden["analysis_version"], (
            "an analysis default, constant or model changed: bump audiolib.ANALYSIS_VERSION (cached rows "
            "would be reused with old numbers), then run `.venv/bin/python -m tests.golden`")
        raise AssertionError("ANALYSIS_VERSION was bumped: record it with `.venv/bin/python -m tests.golden`")
    assert now["analysis_version"] == golden["analysis_version"], "run `.venv/bin/python -m tests.golden`"
