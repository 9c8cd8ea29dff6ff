"""Exception hierarchy for audioqc.

Every error raised on purpose by audioqc derives from :class:`AudioQCError`; the message names the
input and the problem, so the CLI can print it as one line and an audit can store it as an error row.
"""

from __future__ import annotations


class AudioQCError(Exception):
    """Root of every error audioqc raises on purpose."""


class InvalidParameter(AudioQCError, ValueError):
    """A parameter value is out of range or malformed; the message quotes the value."""


class MediaError(AudioQCError):
    """A problem with one media object; ``url`` names it."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"{url}: {problem}")

    def __reduce__(self):  # picklable: errors cross process boundaries (audit workers, the service)
        return (type(self), (self.url, self.problem))


class SourceNotFound(MediaError):
    """The URL or path does not exist or cannot be opened."""


class EmptyMedia(MediaError):
    """The object has zero bytes."""


class DecodeError(MediaError):
    """The container or codec data cannot be read (corrupt, not media, unreadable headers)."""


class UnsupportedMedia(MediaError):
    """The object is readable media but has nothing audioqc can analyse (e.g. no audio stream), or
    holds what the requested output cannot (video to be written into an audio-only format)."""


class OutputError(MediaError):
    """The output URL cannot be written: missing or read-only directory, missing bucket, access
    denied, an upload the server refused (the message gives the HTTP status)."""


class RemoteError(MediaError):
    """Remote storage failed: a timeout, an HTTP error status, an S3 error code, a dropped
    connection. ``transient`` says whether trying again could help (timeouts, 5xx, throttling)."""

    def __init__(self, url: str, problem: str, *, status: int | None = None, code: str | None = None,
                 transient: bool = False) -> None:
        super().__init__(url, problem)
        self.status = status
        self.code = code
        self.transient = transient

    def __reduce__(self):  # picklable with its keywords (errors cross process boundaries)
        return (_remote_error, (self.url, self.problem, self.status, self.code, self.transient))


def _remote_error(url: str, problem: str, status: int | None, code: str | None, transient: bool) -> RemoteError:
    return RemoteError(url, problem, status=status, code=code, transient=transient)
