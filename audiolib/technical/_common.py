"""Helpers shared by the technical analyzers."""

from __future__ import annotations

import math

import numpy as np

_SUM_CHUNK = 4096  # pairwise float32 sums of this many samples, then float64 (relative error ~1e-7)
MAX_EVENTS = 1000  # stored events/sections per result; more are counted (flat memory)

# ------------------------------------------------------------------------------------------------
# shared helpers






def _chunk_sums(x: np.ndarray) -> np.ndarray:
    """Row sums of float32 ``x`` (rows, n) as float64: numpy's pairwise float32 sums of
    4096-sample chunks (relative error ~1e-7), accumulated in float64. Casting every sample to
    float64 costs 60% more and gains nothing a dBFS figure can show."""
    rows, n = x.shape
    whole = n - n % _SUM_CHUNK
    total = np.zeros(rows, np.float64)
    if whole:
        total += x[:, :whole].reshape(rows, -1, _SUM_CHUNK).sum(axis=2).sum(axis=1, dtype=np.float64)
    if whole < n:
        total += x[:, whole:].sum(axis=1, dtype=np.float64)
    return total


def _db20(value: float) -> float | None:
    return 20.0 * math.log10(abs(value)) if value != 0 and math.isfinite(value) else None


def _round(value: float | None, ndigits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), ndigits)


def _interval(start_s: float, end_s: float) -> dict[str, float]:
    return {"start": round(start_s, 6), "end": round(end_s, 6)}
