"""Alarm timing: how long a violation lasts before the alarm raises (secsInAlarmDuration).
See docs/channel-format.md."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# ----------------------------------------------------------------------------------------------
# Alarm timing
# ----------------------------------------------------------------------------------------------

def _merge(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def alarm_intervals(violations: Sequence[tuple[float, float]], t0: float, t1: float, *,
                    duration_s: float, sensitivity: float) -> list[tuple[float, float]]:
    """Where the alarm is active: ``severity(t) >= sensitivity`` and ``> 0`` on ``[t0, t1]``.

    ``severity(t)`` = (time in ``violations`` within ``[t - duration_s, t]``) / ``duration_s``,
    which is piecewise linear in t with breakpoints at the violations' ends and those plus the
    duration, so the crossings are found exactly.
    """
    viol = _merge([(max(s, t0), min(e, t1)) for s, e in violations])
    if not viol or t1 <= t0:
        return []
    if duration_s <= 0:
        return viol
    vs = np.array([v[0] for v in viol])
    ve = np.array([v[1] for v in viol])
    points = np.unique(np.clip(np.concatenate([[t0, t1], vs, ve, vs + duration_s, ve + duration_s]), t0, t1))
    lo = points[:, None] - duration_s
    overlap = np.clip(np.minimum(ve[None, :], points[:, None]) - np.maximum(vs[None, :], lo), 0.0, None)
    sev = overlap.sum(axis=1) / duration_s
    # Float slack: a full window can give 1 - 1 ulp. Sensitivity 0 still needs some violation.
    thr = sensitivity - 1e-9 if sensitivity > 1e-9 else 1e-12
    active: list[tuple[float, float]] = []
    for i in range(len(points) - 1):
        p, q, fp, fq = points[i], points[i + 1], sev[i], sev[i + 1]
        if fp >= thr and fq >= thr:
            active.append((p, q))
        elif fp >= thr or fq >= thr:
            cross = min(max(p + (sensitivity - fp) / (fq - fp) * (q - p), p), q)
            active.append((p, cross) if fp >= thr else (cross, q))
    # Touching a threshold at one instant (within float slack) is not an alarm.
    return [(float(a), float(b)) for a, b in _merge(active) if b - a > 1e-6]
