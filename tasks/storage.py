"""Storage steps of the audit: list a collection, read and write report parts (retried)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

# the listing itself has no Prefect in it (the audit's start-up lists before Prefect is imported)
from .listing import MEDIA_EXTENSIONS, MediaObject, list_objects, matches, object_of  # noqa: F401

STORAGE_RETRIES = 3
STORAGE_RETRY_DELAYS_S = [1, 4, 10]


def is_transient(exc: BaseException | None) -> bool:
    """Whether trying a storage step again could help: a timeout, a dropped connection, a 5xx,
    throttling; not a missing object or bucket, denied credentials or an invalid request."""
    from audiolib.errors import AudioQCError, RemoteError
    from audiolib.storage import remote_error

    if exc is None:
        return False
    if isinstance(exc, RemoteError):
        return exc.transient
    if isinstance(exc, AudioQCError) or isinstance(exc, (FileNotFoundError, PermissionError, ValueError,
                                                         TypeError, KeyError)):
        return False
    mapped = remote_error("storage", exc)
    return isinstance(mapped, RemoteError) and mapped.transient


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn`` of the storage tasks: retry transient errors only."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # the result could not be read: decide on what was raised
        exc = err
    return is_transient(exc if isinstance(exc, BaseException) else None)


#: Options of every storage task: no Prefect caching or result persistence (the report is the
#: cache), retries with delays for transient errors only.
STORAGE_TASK: dict[str, Any] = dict(cache_policy=NO_CACHE, persist_result=False, retries=STORAGE_RETRIES,
                                    retry_delay_seconds=STORAGE_RETRY_DELAYS_S, retry_condition_fn=retry_transient)



def _list_media(source: str, include: list[str] | None = None, exclude: list[str] | None = None) -> list[MediaObject]:
    """Every media object under ``source`` (:func:`tasks.listing.list_objects`); the listing the
    audit's start-up made while the Prefect server started, when it made one for these arguments
    (:mod:`tasks.handoff`)."""
    from .handoff import take

    listed = take("listing", (source, tuple(include or ()), tuple(exclude or ())))
    return listed if listed is not None else list_objects(source, include, exclude)


list_media = task(_list_media, name="list media", **STORAGE_TASK)
