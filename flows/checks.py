"""What an audit checks before it starts: every argument that can be wrong is refused here, in
well under a second, with one message naming the input and the problem, before a Prefect server
starts or a task is retried (a permanent error retried with delays cost 14-35 s and printed
tracebacks).
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any, Callable

from audiolib import storage
from audiolib.errors import AudioQCError, InvalidParameter, OutputError, SourceNotFound

#: A run id is a safe token: it names part files and folders (no ``/``, no ``..``, no leading dot).
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Upper bounds of the numeric options (far above any sensible value; they stop absurd input).
MAX_WORKERS = 256
MAX_BATCH_SIZE = 100_000
MAX_PART_ROWS = 1_000_000
_BUCKET_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidParameter(f"--{name.replace('_', '-')}={value!r} must be an integer from {lo} to {hi}")
    return value


def check_run_id(run_id: str | None) -> None:
    if run_id is not None and (not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id):
        raise InvalidParameter(f"--run-id {run_id!r}: a run id is 1-64 letters, digits, '.', '_' or '-', "
                               "starting with a letter or digit")


def check_source(source: str) -> None:
    """The collection exists and can be listed (a missing folder, bucket or prefix, or denied
    credentials, is an error now rather than an empty or failed run)."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidParameter(f"source {source!r}: give a directory or a URL")
    if storage.is_local(source):
        path = source[len("file://"):] if source.startswith("file://") else source
        if not os.path.exists(path):
            raise SourceNotFound(source, "no such file or directory")
        if os.path.isdir(path) and not os.access(path, os.R_OK | os.X_OK):
            raise SourceNotFound(source, "permission denied: cannot list this directory")
        return
    fs, root = storage.filesystem(source)
    try:
        if not fs.exists(root):
            raise SourceNotFound(source, "no such bucket, prefix or object")
        if fs.isdir(root):
            fs.ls(root, detail=False)  # credentials that may not list fail here
    except AudioQCError:
        raise
    except Exception as exc:
        raise storage.remote_error(source, exc, doing="list") from None


def check_report(report_url: str, *, create_bucket: bool = False) -> None:
    """The report destination can be written: a local folder (made if missing) that is not a
    file, or a bucket that exists (creating buckets is the operator's decision: ``create_bucket``)."""
    if not isinstance(report_url, str) or not report_url.strip():
        raise InvalidParameter(f"--report {report_url!r}: give a directory or a URL")
    if storage.is_local(report_url):
        path = os.path.abspath(report_url[len("file://"):] if report_url.startswith("file://") else report_url)
        if os.path.exists(path) and not os.path.isdir(path):
            raise OutputError(report_url, "is a file: the report is a folder of Parquet parts")
        try:  # made now (the run would make it), and written to once: os.access lies for root
            os.makedirs(path, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".audioqc-write-check-"):
                pass
        except OSError as exc:
            raise OutputError(report_url, f"cannot write: {exc.strerror or exc}") from None
        return
    protocol = report_url.split("://", 1)[0].lower()
    if protocol not in _BUCKET_PROTOCOLS:
        return
    fs, root = storage.filesystem(report_url)
    bucket = root.split("/", 1)[0]
    try:
        exists = fs.exists(bucket)
    except Exception as exc:
        raise OutputError(report_url, getattr(storage.remote_error(report_url, exc, doing="check its bucket"),
                                              "problem", "cannot check its bucket")) from None
    if not exists:
        if not create_bucket:
            raise OutputError(report_url, f"bucket {bucket} does not exist (creating buckets is the operator's "
                                          "decision: create it, or pass --create-report-bucket)")
        try:
            fs.mkdir(bucket)
        except Exception as exc:
            error = storage.remote_error(report_url, exc, doing=f"create bucket {bucket}")
            raise OutputError(report_url, getattr(error, "problem", "cannot create the bucket")) from None


def check_audit(source: str, report_url: str, *, policy: str | None = None, run_id: str | None = None,
                batch_size: int = 32, part_rows: int = 256, workers: int | None = None,
                remedy_url: str | None = None, trends: Any = False, create_report_bucket: bool = False,
                paths_checked: Callable[[], object] | None = None) -> None:
    """Every check of an audit's arguments, cheapest first (see the module docstring); the policy
    last (loading it imports the report schema and audiolib, ~0.9 s). ``paths_checked`` is called
    once the collection and the destinations passed, before the policy loads (the CLI starts the
    workers' fork server there when the report is new: flows/startup.py)."""
    check_run_id(run_id)
    _int("batch_size", batch_size, 1, MAX_BATCH_SIZE)
    _int("part_rows", part_rows, 1, MAX_PART_ROWS)
    if workers is not None:
        _int("workers", workers, 1, MAX_WORKERS)
    if remedy_url is not None and policy is None:
        raise InvalidParameter("--remedy-to needs --policy: the remedies and their parameters come from a policy")
    if trends:
        from tasks.trends import check_options

        check_options(trends)
    check_source(source)
    made = _missing_local_folders(report_url) + (_missing_local_folders(remedy_url) if remedy_url is not None else [])
    try:
        check_report(report_url, create_bucket=create_report_bucket)
        if remedy_url is not None:
            check_remedy_url(remedy_url, source)
        if paths_checked is not None:
            paths_checked()
        if policy is not None:
            from audioqc.policy import load_policy

            load_policy(policy)
    except AudioQCError:
        # a refused audit leaves nothing behind: the empty folders its checks made go again
        for folder in sorted(made, key=len, reverse=True):
            try:
                os.rmdir(folder)
            except OSError:
                pass
        raise


def _missing_local_folders(url: str) -> list[str]:
    """The folders of a local ``url`` (and its parents) that do not exist yet."""
    if not isinstance(url, str) or not url.strip() or not storage.is_local(url):
        return []
    path = os.path.abspath(url[len("file://"):] if url.startswith("file://") else url)
    missing = []
    while not os.path.exists(path) and not os.path.islink(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def check_remedy_url(remedy_url: str, source: str) -> None:
    """Refuse a remedy destination equal to or inside the audited collection (the remedied files
    would be audited as new originals next time), and one that cannot be written."""
    from audiolib.io import check_writable

    def norm(url: str) -> str:
        if "://" not in url or url.startswith("file://"):
            path = url[len("file://"):] if url.startswith("file://") else url
            return os.path.realpath(os.path.abspath(path)).rstrip("/") + "/"
        return url.rstrip("/") + "/"

    if not isinstance(remedy_url, str) or not remedy_url.strip():
        raise InvalidParameter(f"--remedy-to {remedy_url!r}: give a directory or URL prefix")
    r, s = norm(remedy_url), norm(source)
    if r.startswith(s):
        raise InvalidParameter(f"--remedy-to {remedy_url}: is inside the audited collection {source} (the remedied "
                               f"files would be audited as new originals next time): choose a prefix outside it")
    if "://" not in remedy_url or remedy_url.startswith("file://"):
        path = remedy_url[len("file://"):] if remedy_url.startswith("file://") else remedy_url
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise InvalidParameter(f"--remedy-to {remedy_url}: cannot create it: {exc.strerror or exc}") from None
    check_writable(f"{remedy_url.rstrip('/')}/.audioqc-write-check.wav")
