"""What an audit's start-up already read, handed to the flow's first tasks in the same process.

The start-up (:mod:`flows.startup`) lists the collection and reads the report's state before
Prefect is imported, while the Prefect server starts; the flow's ``list media`` and ``read report
state`` tasks then take that (:func:`take`, once) instead of reading it again, and are still run
and recorded as task runs. A flow run started any other way (a deployment, a test) finds nothing
here and reads for itself.
"""

from __future__ import annotations

from typing import Any

_HANDOFF: dict[tuple[str, Any], Any] = {}


def offer(kind: str, key: Any, value: Any) -> None:
    _HANDOFF[(kind, key)] = value


def take(kind: str, key: Any) -> Any:
    """What the start-up read for ``(kind, key)`` (once), or None."""
    return _HANDOFF.pop((kind, key), None)


def clear() -> None:
    _HANDOFF.clear()
