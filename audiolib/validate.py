"""Checks of the parameters every analyzer shares: one place, one message per mistake.

Each raises :class:`~audiolib.errors.InvalidParameter` quoting the bad value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InvalidParameter

__all__ = ["block", "count", "json_fields", "number", "stream_args"]


def stream_args(sample_rate: Any, channel_names: Any, start_s: Any) -> tuple[int, tuple[str, ...], float]:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1:
        raise InvalidParameter(f"sample_rate={sample_rate!r} must be a positive integer (Hz)")
    if isinstance(channel_names, str):
        raise InvalidParameter(f"channel_names={channel_names!r} must be a sequence of names, not a string")
    names = tuple(str(n) for n in channel_names)
    if not names:
        raise InvalidParameter(f"channel_names={channel_names!r} must name at least one channel")
    start = number("start_s", start_s)
    return int(sample_rate), names, start

def number(name: str, value: Any, lo: float = -math.inf, hi: float = math.inf, *,
            lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``), else InvalidParameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidParameter(f"{name}={value!r} must be a number")
    v = float(value)
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        bracket = "(" if lo_open else "["
        raise InvalidParameter(f"{name}={value!r} must be a finite number in {bracket}{lo:g}, {hi:g}]")
    return v

def count(name: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise InvalidParameter(f"{name}={value!r} must be an integer >= {lo}")
    return int(value)

def block(block: np.ndarray, channels: int) -> np.ndarray:
    """Check a pushed block and return it as float32 ``(channels, frames)``."""
    x = np.asarray(block)
    if x.ndim == 1 and channels == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2 or x.shape[0] != channels:
        raise InvalidParameter(f"block shape {x.shape} does not match {channels} channels (channels-first)")
    if x.dtype != np.float32:
        x = x.astype(np.float32)
    return x


def json_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A frozen result's fields, JSON-ready: floats rounded to 4 decimals (``None`` where not
    finite, never NaN), tuples as lists."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, float):
            value = round(value, 4) if math.isfinite(value) else None
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out
