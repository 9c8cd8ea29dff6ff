"""Listing a collection: every media object under a URL and its identity, without Prefect.

The audit's ``list media`` task (:mod:`tasks.storage`) runs :func:`list_objects`; so does the
audit's start-up (:mod:`flows.startup`), which lists the collection while the Prefect server
starts, before Prefect is imported (~1 s), and hands the listing to that task.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from audiolib import storage
from audiolib.errors import SourceNotFound

#: Extensions audited by default (audio, and video containers that carry audio).
MEDIA_EXTENSIONS = (
    ".wav", ".wave", ".bwf", ".w64", ".rf64", ".aif", ".aiff", ".aifc", ".flac", ".mp3", ".m4a", ".m4b",
    ".aac", ".ac3", ".eac3", ".ec3", ".dts", ".mka", ".ogg", ".oga", ".opus", ".spx", ".wma", ".wv",
    ".ape", ".caf", ".amr", ".au", ".mp2", ".mpa", ".mp4", ".mov", ".mkv", ".webm", ".avi", ".mxf",
    ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
)


@dataclass(frozen=True)
class MediaObject:
    """One object of a collection and its identity (what the result cache keys on)."""

    url: str
    size_bytes: int | None
    etag: str | None
    mtime: datetime | None
    #: why the object cannot be read (set by the listing: a FIFO, a broken link, an unreadable
    #: folder...); its row is an error saying so, and nothing opens it
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def identity(self) -> tuple[str, str | None, int | None, str | None]:
        """:func:`file_identity` of this object."""
        return file_identity(self.url, self.etag, self.size_bytes, self.mtime)


def file_identity(url: str, etag: str | None, size_bytes: int | None,
                  mtime: datetime | None) -> tuple[str, str | None, int | None, str | None]:
    """What the result cache keys a file on: URL + ETag where the store has one, else URL + size +
    mtime. The one definition: a listed object's (:meth:`MediaObject.identity`) and a report row's
    (:func:`tasks.report_state.identity_of`) must agree, or unchanged files are analysed again."""
    if etag:
        return (url, etag, None, None)
    return (url, None, size_bytes, mtime.isoformat() if mtime else None)


def _mtime(info: dict[str, Any]) -> datetime | None:
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _etag(info: dict[str, Any]) -> str | None:
    value = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    return str(value).strip('"') if value else None


def matches(path: str, include: list[str] | None, exclude: list[str] | None) -> bool:
    """Include globs (default: the media extensions) and exclude globs, matched against the path
    relative to the collection root (``sub/*.wav``) and against the file name (``*.flac``)."""
    name = path.rsplit("/", 1)[-1]
    if exclude and any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in exclude):
        return False
    if include:
        return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(name, p) for p in include)
    return os.path.splitext(name)[1].lower() in MEDIA_EXTENSIONS


def list_objects(source: str, include: list[str] | None = None, exclude: list[str] | None = None) -> list[MediaObject]:
    """Every media object under ``source`` (recursive), sorted by URL.

    Every entry that matches the include rules is listed, readable or not: a FIFO, a socket, a
    broken symbolic link, a link loop or a file that cannot be read is listed with its
    ``problem`` (its row is an error saying so; nothing opens it: a FIFO would block). A folder
    that cannot be listed is listed itself, with its problem, and said in a warning.
    """
    if storage.is_local(source):
        return _list_local(source, include, exclude)
    try:
        fs, root = storage.filesystem(source)
        if not fs.exists(root):
            raise SourceNotFound(source, "no such directory, bucket or prefix")
        if fs.isfile(root):
            entries = {root: fs.info(root)}
        else:
            entries = fs.find(root, withdirs=False, detail=True)
    except SourceNotFound:
        raise
    except Exception as exc:  # credentials, network: backend-specific exceptions
        raise storage.remote_error(source, exc, doing="list") from None
    out = []
    for path, info in entries.items():
        relative = path[len(root):].lstrip("/") if path.startswith(root) else path
        if info.get("type", "file") != "file" or not matches(relative or path, include, exclude):
            continue
        url = fs.unstrip_protocol(path) if "://" in source else path
        out.append(MediaObject(url=url, size_bytes=info.get("size"), etag=_etag(info), mtime=_mtime(info)))
    return sorted(out, key=lambda o: o.url)


def _kind_problem(mode: int) -> str | None:
    import stat

    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "not a regular file (FIFO): not opened"
    if stat.S_ISSOCK(mode):
        return "not a regular file (socket)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "not a regular file (device)"
    return "not a regular file"


def _list_local(source: str, include: list[str] | None, exclude: list[str] | None) -> list[MediaObject]:
    """:func:`list_objects` of a local folder: walked with ``os.scandir`` so that nothing is
    skipped in silence (see there). Symbolic links to folders are not followed (no loops)."""
    import logging

    root = os.path.abspath(source[len("file://"):] if source.startswith("file://") else source)
    if not os.path.exists(root) and not os.path.islink(root):
        raise SourceNotFound(source, "no such file or directory")
    if not os.path.isdir(root):
        st = os.stat(root)
        return [MediaObject(root, st.st_size, None, datetime.fromtimestamp(st.st_mtime, tz=timezone.utc),
                            problem=_kind_problem(st.st_mode))]
    out: list[MediaObject] = []
    log = logging.getLogger("audioqc.listing")
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            problem = f"cannot list this folder: {exc.strerror or exc}"
            log.warning("%s: %s", folder, problem)
            out.append(MediaObject(folder, None, None, None, problem=problem))
            continue
        for entry in entries:
            relative = os.path.relpath(entry.path, root).replace(os.sep, "/")
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                    continue
            except OSError:
                pass
            if not matches(relative, include, exclude):
                continue
            out.append(_local_object(entry))
    return sorted(out, key=lambda o: o.url)


def _local_object(entry: os.DirEntry) -> MediaObject:
    """One listed entry with its identity, or its problem (broken link, loop, FIFO, unreadable)."""
    path = entry.path
    try:
        st = os.stat(path)  # follows a link to a file
    except FileNotFoundError:
        return MediaObject(path, None, None, None, problem="broken symbolic link (its target does not exist)")
    except OSError as exc:
        why = "symbolic link loop" if exc.errno == 40 else f"cannot read: {exc.strerror or exc}"
        return MediaObject(path, None, None, None, problem=why)
    import stat

    mtime = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc)
    problem: str | None
    if stat.S_ISDIR(st.st_mode):  # a link to a folder with a media name: not followed
        problem = "a symbolic link to a folder (not followed)"
    else:
        problem = _kind_problem(st.st_mode)
    if problem is None and not os.access(path, os.R_OK):
        problem = "cannot read: Permission denied"
    return MediaObject(path, st.st_size if problem is None else None, None, mtime, problem=problem)


def object_of(url: str) -> MediaObject:
    """One object and its identity (what :func:`list_objects` gives for it)."""
    fs, path = storage.filesystem(url)
    info = fs.info(path)
    return MediaObject(url=url, size_bytes=info.get("size"), etag=_etag(info), mtime=_mtime(info))
