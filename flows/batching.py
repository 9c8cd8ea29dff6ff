"""How the audit cuts a collection into analysis tasks: batches by bytes that shrink towards the
end of the run (guided self-scheduling), so that the workers finish together."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tasks.listing import MediaObject


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in consecutive lists of ``size``."""
    for i in range(0, len(items), size):
        yield items[i:i + size]


# A batch holds at most this many bytes of media (and at most ``batch_size`` files): 64 MiB is
# ~6 min of 48 kHz stereo 24-bit WAV, ~3.5 s of work, against ~40 ms of Prefect's cost per task in
# the warm pool (worker and API server; benchmarks/bench_task_overhead.py).
BATCH_BYTES = 64 * 2**20
# The smallest batch towards the end of a run (guided self-scheduling): 8 MiB, ~0.8 s of work on
# 10 s WAVs, so workers finish within ~1 s of each other.
MIN_BATCH_BYTES = BATCH_BYTES // 8
UNKNOWN_SIZE_BYTES = 2 * 2**20  # what an object of unknown size counts for


def guided_batches(items: list[MediaObject], batch_size: int, workers: int | None) -> Iterator[list[MediaObject]]:
    """Batches sized by bytes that shrink towards the end, so that workers finish together.

    Guided self-scheduling (Polychronopoulos and Kuck, IEEE Trans. Computers 36(12), 1987) on the
    objects' sizes: each batch takes 1/(2 x workers) of the bytes still to schedule, at most
    :data:`BATCH_BYTES` (and ``batch_size`` files), at least :data:`MIN_BATCH_BYTES`; a file larger than
    the target is a batch alone, so hour-long files spread over the workers one by one.  With
    fixed batches of 32, 200 files of 10 s on 2 workers made 7 batches and one worker sat idle
    while the other ran the last (measured: ~1/7 of the run); this makes 13, the last of 3 files.
    With one worker there is nothing to balance, and without a known worker count (a Dask
    cluster) nothing to balance against: the target stays at :data:`BATCH_BYTES` (200 files of
    10 s on 1 worker: 7 batches rather than 9).
    """
    def size(o: MediaObject) -> int:
        return o.size_bytes if o.size_bytes is not None else UNKNOWN_SIZE_BYTES

    left = sum(size(o) for o in items)
    if workers and workers > 1:
        # a small collection: at most 1/(2 x workers) of its files per batch, so that every worker
        # has some (the 8 demo files, 14 MB, were one batch of 7 and one of 1 under the byte floor)
        batch_size = min(batch_size, max(1, -(-len(items) // (2 * workers))))
    batch: list[MediaObject] = []
    filled = target = 0
    for obj in items:
        if not batch:
            target = BATCH_BYTES if not workers or workers == 1 else \
                min(BATCH_BYTES, max(MIN_BATCH_BYTES, left // (2 * workers)))
        batch.append(obj)
        filled += size(obj)
        left -= size(obj)
        if filled >= target or len(batch) >= batch_size:
            yield batch
            batch, filled = [], 0
    if batch:
        yield batch


@contextmanager
def flow_pool() -> Iterator[None]:
    """The compute pool of a flow run that no ``run_audit`` set up (a deployment's run, the flow
    called directly): one worker per CPU for the run, if its task runner is Prefect's thread pool
    (on Dask the tasks run the work where they run)."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    from tasks import compute

    ctx = FlowRunContext.get()
    if compute.configured() is not None or ctx is None or not isinstance(ctx.task_runner, ThreadPoolTaskRunner):
        yield
        return
    with compute.session(os.cpu_count() or 1, start_now=False):
        yield
