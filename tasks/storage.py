"""Storage steps of the audit: list a collection, read and write report parts (retried)."""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE

from audiolib.errors import SourceNotFound

#: Extensions audited by default (audio, and video containers that carry audio).
MEDIA_EXTENSIONS = (
    ".wav", ".wave", ".bwf", ".w64", ".rf64", ".aif", ".aiff", ".aifc", ".flac", ".mp3", ".m4a", ".m4b",
    ".aac", ".ac3", ".eac3", ".ec3", ".dts", ".mka", ".ogg", ".oga", ".opus", ".spx", ".wma", ".wv",
    ".ape", ".caf", ".amr", ".au", ".mp2", ".mpa", ".mp4", ".mov", ".mkv", ".webm", ".avi", ".mxf",
    ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp",
)
STORAGE_RETRIES = 3
STORAGE_RETRY_DELAYS_S = [1, 4, 10]


@dataclass(frozen=True)
class MediaObject:
    """One object of a collection and its identity (what the result cache keys on)."""

    url: str
    size_bytes: int | None
    etag: str | None
    mtime: datetime | None

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    def identity(self) -> tuple[str, str | None, int | None, str | None]:
        """URL + ETag where the store has one, else URL + size + mtime."""
        if self.etag:
            return (self.url, self.etag, None, None)
        return (self.url, None, self.size_bytes, self.mtime.isoformat() if self.mtime else None)


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
    """Every media object under ``source`` (recursive), sorted by URL."""
    try:
        fs, root = fsspec.core.url_to_fs(source)
        if not fs.exists(root):
            raise SourceNotFound(source, "no such directory, bucket or prefix")
        if fs.isfile(root):
            entries = {root: fs.info(root)}
        else:
            entries = fs.find(root, withdirs=False, detail=True)
    except SourceNotFound:
        raise
    except Exception as exc:  # credentials, network: backend-specific exceptions
        raise SourceNotFound(source, f"cannot list: {type(exc).__name__}: {exc}") from None
    out = []
    for path, info in entries.items():
        relative = path[len(root):].lstrip("/") if path.startswith(root) else path
        if info.get("type", "file") != "file" or not matches(relative or path, include, exclude):
            continue
        url = fs.unstrip_protocol(path) if "://" in source else path
        out.append(MediaObject(url=url, size_bytes=info.get("size"), etag=_etag(info), mtime=_mtime(info)))
    return sorted(out, key=lambda o: o.url)


def object_of(url: str) -> MediaObject:
    """One object and its identity (what :func:`list_objects` gives for it)."""
    fs, path = fsspec.core.url_to_fs(url)
    info = fs.info(path)
    return MediaObject(url=url, size_bytes=info.get("size"), etag=_etag(info), mtime=_mtime(info))


list_media = task(list_objects, name="list media", retries=STORAGE_RETRIES, cache_policy=NO_CACHE,
                  persist_result=False, retry_delay_seconds=STORAGE_RETRY_DELAYS_S)
