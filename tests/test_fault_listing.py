"""Fault 4: every entry that matches the include rules gets a row. A FIFO is never opened (it
would block), a broken link, a link loop, a link to a folder and an unreadable file are error rows
saying so, and a folder that cannot be listed is an error row and a warning line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audiolib import io
from faults import NO_OVERRIDE, cli

pytestmark = pytest.mark.timeout(600)


def make_tree(root: Path) -> dict[str, str]:
    """name -> the start of its expected error, or "ok"."""
    root.mkdir()
    y = (0.1 * np.random.default_rng(3).standard_normal((1, 48000))).astype(np.float32)
    io.write(str(root / "good.wav"), y, 48000)
    (root / "sub").mkdir()
    io.write(str(root / "sub" / "good2.wav"), y, 48000)
    os.mkfifo(root / "fifo.wav")
    os.symlink("nowhere.wav", root / "dangling.wav")
    os.symlink("loop2.wav", root / "loop1.wav")
    os.symlink("loop1.wav", root / "loop2.wav")
    os.symlink("sub", root / "folder.wav")
    (root / "locked").mkdir()
    io.write(str(root / "locked" / "hidden.wav"), y, 48000)
    (root / "locked").chmod(0)
    (root / "unreadable.wav").write_bytes((root / "good.wav").read_bytes())
    (root / "unreadable.wav").chmod(0)
    (root / "notes.txt").write_text("not media: no row")
    return {"good.wav": "ok", "sub/good2.wav": "ok", "fifo.wav": "not a regular file (FIFO)",
            "dangling.wav": "broken symbolic link", "loop1.wav": "symbolic link loop",
            "loop2.wav": "symbolic link loop", "folder.wav": "a symbolic link to a folder",
            "locked": "cannot list this folder: Permission denied", "unreadable.wav": "cannot read: Permission denied"}


def test_every_matching_entry_gets_a_row(tmp_path):
    expected = make_tree(tmp_path / "tree")
    # without root's permission override, so that the modes bind as they bind users
    run = cli("audit", str(tmp_path / "tree"), "--report", str(tmp_path / "r"), "--workers", "1",
              env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"}, prefix=NO_OVERRIDE, timeout=300)
    (tmp_path / "tree" / "locked").chmod(0o755)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = pd.read_parquet(tmp_path / "r").set_index("source_url")
    base = str(tmp_path / "tree")
    assert sorted(rows.index) == sorted(f"{base}/{name}" for name in expected)
    for name, what in expected.items():
        row = rows.loc[f"{base}/{name}"]
        if what == "ok":
            assert row.status == "ok", (name, row.error)
        else:
            assert row.status == "error" and what in row.error, (name, row.error)
    warnings = [line for line in run.lines if "warning" in line]
    assert len(warnings) == 1 and "locked: cannot list this folder" in warnings[0]
    assert "Traceback" not in run.stderr


def test_a_fifo_is_never_opened_by_the_per_file_commands(tmp_path):
    os.mkfifo(tmp_path / "f.wav")
    for command in ("info", "loudness"):
        run = cli(command, str(tmp_path / "f.wav"), timeout=30)
        assert run.returncode == 1 and "not a regular file (FIFO)" in run.lines[0]
