"""Every filesystem audioqc opens: one place for timeouts, retries and error messages.

``filesystem(url)`` gives fsspec's filesystem for a URL with connect and read timeouts on every
remote read (HTTP through aiohttp, S3 through botocore), so that a stalled endpoint fails in
about the configured time instead of hanging; :func:`remote_error` turns what the backends raise
into one typed error naming the URL, the cause, the HTTP status or the S3 error code, and whether
trying again could help (``transient``: timeouts, 5xx, throttling) or not (not found, denied,
invalid).

Timeouts, seconds, from the environment: ``AUDIOQC_CONNECT_TIMEOUT_S`` (default 10: connecting)
and ``AUDIOQC_READ_TIMEOUT_S`` (default 60: waiting for the next byte).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from .errors import AudioQCError, RemoteError, SourceNotFound

__all__ = ["filesystem", "remote_error", "timeouts", "is_local", "http_status", "TRANSIENT_S3_CODES"]

#: Connect and read timeouts when the environment sets none, seconds.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 60.0
#: S3 error codes worth another try (AWS S3 API reference, "Error responses").
TRANSIENT_S3_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                                "RequestTimeTooSkewed", "Throttling", "ThrottlingException", "503", "500"})
#: How many times s3fs tries a call that timed out or lost its connection.
S3FS_RETRIES = 2
#: S3 error codes meaning "not there".
MISSING_S3_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "404", "NotFound"})


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        return default
    return value if 0 < value <= 3600 else default


def timeouts() -> tuple[float, float]:
    """(connect, read) timeouts in seconds, from the environment or the defaults."""
    return (_seconds("AUDIOQC_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S),
            _seconds("AUDIOQC_READ_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S))


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url``'s backend: the timeouts (HTTP and S3) and S3's retry budget."""
    connect, read = timeouts()
    protocol = _protocol(url)
    if protocol in ("http", "https"):
        import aiohttp

        return {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=None, connect=connect,
                                                                   sock_connect=connect, sock_read=read)}}
    if protocol in ("s3", "s3a"):
        # botocore's own retries: one more attempt (standard mode: throttling, 5xx, timeouts)
        return {"config_kwargs": {"connect_timeout": connect, "read_timeout": read,
                                  "retries": {"max_attempts": 2, "mode": "standard"}}}
    return {}


def filesystem(url: str) -> tuple[Any, str]:
    """``(fs, path)`` for ``url`` with :func:`storage_options` (fsspec caches the instances)."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
    except (ImportError, ValueError) as exc:
        raise SourceNotFound(url, f"cannot open URL: {_one_line(str(exc))}") from None
    if hasattr(fs, "retries") and _protocol(url) in ("s3", "s3a"):
        # s3fs retries timeouts and dropped connections 5 times on top of botocore (class
        # attribute, no option): twice, so a frozen endpoint fails in ~2 x the timeouts per call
        fs.retries = S3FS_RETRIES
    return fs, path


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def http_status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _s3_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    for arg in getattr(exc, "args", ()):  # s3fs keeps botocore's error as an argument
        if isinstance(arg, BaseException) and arg is not exc:
            code = _s3_code(arg)
            if code:
                return code
    cause = exc.__cause__ or exc.__context__
    return _s3_code(cause) if cause is not None and cause is not exc else None


def remote_error(url: str, exc: BaseException, *, doing: str = "read") -> AudioQCError:
    """The typed error for what a backend raised while ``doing`` something with ``url``.

    A timeout, a 5xx, throttling or a dropped connection is :class:`RemoteError` with
    ``transient=True``; not found is :class:`SourceNotFound`; denied and other client errors
    :class:`RemoteError` with ``transient=False``.
    """
    if isinstance(exc, AudioQCError):
        return exc
    connect, read = timeouts()
    name = type(exc).__name__
    status = http_status(exc)
    code = _s3_code(exc)
    if isinstance(exc, FileNotFoundError) or status == 404 or code in MISSING_S3_CODES:
        what = {"NoSuchBucket": "no such bucket (NoSuchBucket)"}.get(code or "", "no such object")
        if status == 404:
            what += " (HTTP 404)"
        elif code and code not in what:
            what += f" ({code})"
        return SourceNotFound(url, what)
    if code:
        return RemoteError(url, f"cannot {doing}: {code}: {_one_line(str(exc))}", status=status, code=code,
                           transient=code in TRANSIENT_S3_CODES)
    if status is not None:
        reason = getattr(exc, "message", "") or ""
        return RemoteError(url, f"cannot {doing}: HTTP {status}" + (f" {reason}" if reason else ""),
                           status=status, transient=status >= 500 or status in (408, 429))
    if isinstance(exc, PermissionError):
        return RemoteError(url, f"cannot {doing}: access denied ({_one_line(str(exc)) or name})", transient=False)
    if _is_timeout(exc):
        return RemoteError(url, f"cannot {doing}: timed out (no answer within {read:g} s, or no connection "
                                f"within {connect:g} s)", transient=True)
    if name in ("ClientPayloadError", "ContentLengthError", "IncompleteRead", "ResponseStreamingError"):
        return RemoteError(url, f"cannot {doing}: the connection closed before the end of the body "
                                f"({_one_line(str(exc)) or name})", transient=True)
    if name in ("ClientConnectorError", "ClientConnectionError", "ServerDisconnectedError",
                "EndpointConnectionError", "ConnectionClosedError", "ConnectionRefusedError", "ClientOSError"):
        return RemoteError(url, f"cannot {doing}: cannot connect ({_one_line(str(exc)) or name})", transient=True)
    if isinstance(exc, OSError) and exc.strerror:
        return RemoteError(url, f"cannot {doing}: {exc.strerror}", transient=False)
    return RemoteError(url, f"cannot {doing}: {name}: {_one_line(str(exc)) or 'no message'}", transient=False)


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or type(exc).__name__ in (
                "FSTimeoutError", "ServerTimeoutError", "ReadTimeoutError", "ConnectTimeoutError",
                "ConnectTimeout", "ReadTimeout", "SocketTimeoutError", "ConnectionTimeoutError"):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def check_http(url: str) -> int | None:
    """The size of an http(s) object from a one-byte ranged GET, raising the typed error for any
    status >= 400 (fsspec's HTTP filesystem reports every failure as "not found")."""
    import aiohttp

    connect, read = timeouts()

    async def probe() -> int | None:
        timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, headers={"Range": "bytes=0-0"}, allow_redirects=True) as r:
                if r.status >= 400:
                    raise aiohttp.ClientResponseError(
                        r.request_info, r.history, status=r.status, message=r.reason or ""
                    )
                crange = r.headers.get("Content-Range", "")
                if "/" in crange and crange.rsplit("/", 1)[1].isdigit():
                    return int(crange.rsplit("/", 1)[1])
                length = r.headers.get("Content-Length")
                return int(length) if length and length.isdigit() and r.status == 200 else None

    try:
        return asyncio.run(probe()) if not _running_loop() else _in_thread(probe)
    except Exception as exc:
        raise remote_error(url, exc, doing="open") from None


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _in_thread(coro_fn: Any) -> Any:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coro_fn())).result()
