"""Strict JSON: never NaN or Infinity tokens (an unmeasurable value is null)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def clean(value: Any) -> Any:
    """Convert numpy scalars/arrays to Python and non-finite floats to ``None``, recursively."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [clean(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """Serialise to strict JSON (``allow_nan=False`` after cleaning)."""
    return json.dumps(clean(value), indent=indent, allow_nan=False, ensure_ascii=False)
