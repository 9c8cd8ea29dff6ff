"""Progress reporting hook of the audit flow (a module, so that pickling the flow for worker
processes refers to it by name instead of copying whatever the hook holds)."""

from __future__ import annotations

from collections.abc import Callable

#: Called as files finish: ``hook(done, total)``; set by the CLI for its progress bar.
hook: Callable[[int, int], None] | None = None


def report(done: int, total: int) -> None:
    if hook is not None:
        hook(done, total)
