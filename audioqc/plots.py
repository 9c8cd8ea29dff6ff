"""Plots of trends and comparisons as PNG bytes (matplotlib's Agg canvas: no display, no pyplot
state, fonts from matplotlib's own package).

- :func:`collection_plot`: each file's quality score with its worst segment marked (Dolby's
  "comparison of audio quality for a collection");
- :func:`distribution_plots`: integrated loudness against the policy's window, quality and noise
  scores, true peak against the policy's limit;
- :func:`trend_plots`: one plot per watched metric over the runs (median per group; the 10th-90th
  percentile band without groups), alerts marked;
- :func:`compare_plots`: baseline against candidate per file (the identity line drawn) and the
  histogram of the paired deltas with the median, its interval and the gate's margin.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SIZE = (8.0, 4.2)
DPI = 100
MAX_GROUPS = 10
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#aec7e8")
BAD = "#d62728"


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = SIZE) -> tuple[Figure, Any]:
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols)
    return fig, axes


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _finite(values: Any) -> np.ndarray:
    a = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return a[np.isfinite(a)]


def policy_limits(policy: Any) -> dict[str, tuple[float | None, float | None]]:
    """``{metric: (low, high)}`` of a policy's numeric range rules (``between``, ``min``, ``max``)."""
    out: dict[str, tuple[float | None, float | None]] = {}
    for rule in getattr(policy, "rules", ()):
        lo, hi = out.get(rule.metric, (None, None))
        if rule.op == "between":
            lo, hi = rule.operand
        elif rule.op == "min":
            lo = rule.operand
        elif rule.op == "max":
            hi = rule.operand
        else:
            continue
        out[rule.metric] = (lo, hi)
    return out


# ----------------------------------------------------------------------------------------------
# one collection


def collection_plot(files: pd.DataFrame, title: str = "Quality score per file",
                    threshold: float | None = None) -> bytes | None:
    """Per-file quality score (dot) and worst segment (triangle), worst files first; ``files``
    has ``file``, ``quality_score_average`` and ``quality_score_worst_segment_score``."""
    if "quality_score_average" not in files:
        return None
    data = files[["file", "quality_score_average", "quality_score_worst_segment_score"]].copy()
    data["quality_score_average"] = pd.to_numeric(data["quality_score_average"], errors="coerce")
    data = data.dropna(subset=["quality_score_average"]).sort_values(["quality_score_average", "file"])
    if data.empty:
        return None
    n = len(data)
    x = np.arange(n)
    avg = data["quality_score_average"].to_numpy(dtype=float)
    worst = pd.to_numeric(data["quality_score_worst_segment_score"], errors="coerce").to_numpy(dtype=float)
    fig, ax = _figure()
    has_worst = np.isfinite(worst)
    ax.vlines(x[has_worst], worst[has_worst], avg[has_worst], color="#bbbbbb", lw=1 if n < 200 else 0.5, zorder=1)
    size = 30 if n < 60 else 10 if n < 500 else 3
    ax.scatter(x, avg, s=size, color=_COLORS[0], label="file's quality score (average)", zorder=3)
    if has_worst.any():
        ax.scatter(x[has_worst], worst[has_worst], s=size, marker="v", color=BAD, label="worst segment", zorder=2)
    if threshold is not None:
        ax.axhline(threshold, color="#555555", ls="--", lw=1, label=f"policy minimum {threshold:g}")
    ax.set_ylim(0, 10)
    ax.set_ylabel("quality score (0-10)")
    ax.set_title(f"{title} ({n} files, worst first)")
    if n <= 40:
        ax.set_xticks(x, [_short_name(f) for f in data["file"]], rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel("files, sorted by quality score")
        ax.set_xticks([])
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def _short_name(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def distribution_plots(files: pd.DataFrame, policy: Any = None) -> dict[str, bytes]:
    """Histograms of one run's files: loudness (with the policy's window), quality and noise
    scores, true peak (with the policy's limit)."""
    limits = policy_limits(policy) if policy is not None else {}
    out: dict[str, bytes] = {}
    lufs = _finite(files.get("loudness_integrated_lufs", []))
    if lufs.size:
        fig, ax = _figure()
        ax.hist(lufs, bins=min(60, max(10, int(math.sqrt(lufs.size)))), color=_COLORS[0], alpha=0.85)
        lo, hi = limits.get("loudness_integrated_lufs", (None, None))
        _window(ax, lo, hi, "policy window")
        inside = np.mean((lufs >= (lo if lo is not None else -np.inf)) & (lufs <= (hi if hi is not None else np.inf)))
        extra = f"; {100 * inside:.0f} % inside the policy's window" if lo is not None or hi is not None else ""
        ax.set_title(f"Integrated loudness of {lufs.size} files{extra}")
        ax.set_xlabel("LUFS")
        ax.set_ylabel("files")
        out["distribution_loudness"] = png(fig)
    quality = _finite(files.get("quality_score_average", []))
    noise = _finite(files.get("noise_score_average", []))
    if quality.size or noise.size:
        fig, axes = _figure(1, 2)
        for ax, values, name in ((axes[0], quality, "quality score"), (axes[1], noise, "noise score")):
            if values.size:
                ax.hist(values, bins=np.linspace(0, 10, 41), color=_COLORS[0], alpha=0.85)
            ax.set_xlim(0, 10)
            ax.set_title(f"{name} ({values.size} files)")
            ax.set_xlabel("0-10, higher is better")
            ax.set_ylabel("files")
        out["distribution_scores"] = png(fig)
    peak = _finite(files.get("loudness_true_peak_dbtp", []))
    if peak.size:
        fig, ax = _figure()
        ax.hist(peak, bins=min(60, max(10, int(math.sqrt(peak.size)))), color=_COLORS[0], alpha=0.85)
        _, hi = limits.get("loudness_true_peak_dbtp", (None, None))
        if hi is not None:
            ax.axvline(hi, color=BAD, lw=1.5, label=f"policy maximum {hi:g} dBTP")
            ax.legend(fontsize=8)
        ax.set_title(f"True peak of {peak.size} files")
        ax.set_xlabel("dBTP")
        ax.set_ylabel("files")
        out["distribution_true_peak"] = png(fig)
    return out


def _window(ax: Any, lo: float | None, hi: float | None, label: str) -> None:
    if lo is None and hi is None:
        return
    left, right = ax.get_xlim()
    ax.axvspan(lo if lo is not None else left, hi if hi is not None else right, color="#2ca02c", alpha=0.15,
               label=label)
    for v in (lo, hi):
        if v is not None:
            ax.axvline(v, color="#2ca02c", lw=1)
    ax.set_xlim(left, right)
    ax.legend(fontsize=8)


# ----------------------------------------------------------------------------------------------
# trends


def trend_plots(result: Any) -> dict[str, bytes]:
    """One plot per watched metric over the runs, alerts marked (a :class:`~audioqc.trends.TrendsResult`)."""
    out: dict[str, bytes] = {}
    run_ids = [r.run_id for r in result.runs]
    dates = {r.run_id: r.run_date for r in result.runs}
    position = {r: i for i, r in enumerate(run_ids)}
    groups = sorted(result.groups, key=lambda g: -sum(r.files for r in g.runs))[:MAX_GROUPS]
    alerted = {(a.group, a.metric) for a in result.alerts}
    for w in result.watched:
        share = w.statistic == "share"
        series = []
        for g in groups:
            xs, med, p10, p90 = [], [], [], []
            for r in g.runs:
                s = r.metrics.get(w.column)
                if s is None or s.n == 0:
                    continue
                xs.append(position[r.run_id])
                med.append(s.share if share else s.median)
                p10.append(np.nan if share else s.p10)
                p90.append(np.nan if share else s.p90)
            if xs:
                series.append((g, xs, med, p10, p90))
        if not series:
            continue
        fig, ax = _figure()
        single = len(series) == 1
        for i, (g, xs, med, p10, p90) in enumerate(series):
            color = _COLORS[i % len(_COLORS)]
            label = g.value if result.group_by else ("share of files" if share else "median")
            ax.plot(xs, med, marker="o", ms=3, lw=1.5, color=color, label=label)
            if single and not share:
                ax.fill_between(xs, p10, p90, color=color, alpha=0.15, label="10th-90th percentile")
            if (g.value, w.column) in alerted:
                ax.scatter([xs[-1]], [med[-1]], s=160, facecolors="none", edgecolors=BAD, linewidths=2.5, zorder=5)
                ax.annotate("ALERT", (xs[-1], med[-1]), textcoords="offset points", xytext=(-10, 12), color=BAD,
                            fontsize=9, fontweight="bold", ha="right")
        ticks = _ticks(len(run_ids))
        ax.set_xticks(ticks, [dates[run_ids[t]] for t in ticks], rotation=30, ha="right", fontsize=8)
        unit = "% of files with clipping" if share else w.unit
        ax.set_ylabel(f"{w.label} ({unit})" if unit else w.label)
        ax.set_title(f"{w.label} over {len(run_ids)} runs" + (f", by {result.group_by}" if result.group_by else "")
                     + f" ({w.column})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", ncol=2 if len(series) > 5 else 1)
        out[f"trend_{w.column}"] = png(fig)
    return out


def _ticks(n: int, most: int = 12) -> list[int]:
    if n <= most:
        return list(range(n))
    step = math.ceil(n / most)
    ticks = list(range(0, n, step))
    if ticks[-1] != n - 1:
        ticks.append(n - 1)
    return ticks


# ----------------------------------------------------------------------------------------------
# compare


def compare_plots(result: Any, metrics: list[str] | None = None) -> dict[str, bytes]:
    """Baseline against candidate per file and the delta histogram, for the gated metrics (or
    ``metrics``; default: quality score and integrated loudness)."""
    frame = result.pairs_frame
    out: dict[str, bytes] = {}
    if frame is None:
        return out
    gates = {g.gate.metric: g for g in result.gates}
    chosen = metrics or list(dict.fromkeys(list(gates) + ["quality_score_average", "loudness_integrated_lufs"]))
    by_name = {m.metric: m for m in result.metrics}
    for name in chosen:
        m = by_name.get(name)
        if m is None or m.n == 0:
            continue
        b = pd.to_numeric(frame[f"{name}_b"], errors="coerce").to_numpy(dtype=float)
        c = pd.to_numeric(frame[f"{name}_c"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(b) & np.isfinite(c)
        b, c, files = b[ok], c[ok], frame["file_c"].to_numpy()[ok]
        fig, axes = _figure(1, 2, size=(10.0, 4.4))
        ax = axes[0]
        lo, hi = float(min(b.min(), c.min())), float(max(b.max(), c.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot(
            [lo - pad, hi + pad], [lo - pad, hi + pad], color="#555555", lw=1, ls="--", label="identity (no change)"
        )
        worst = {w.file for w in (gates[name].worst if name in gates else m.worst)}
        is_worst = np.array([f in worst for f in files])
        ax.scatter(b[~is_worst], c[~is_worst], s=14 if b.size < 500 else 4, color=_COLORS[0], label="file")
        if is_worst.any():
            ax.scatter(b[is_worst], c[is_worst], s=30, color=BAD, label="regressed most")
            if b.size <= 60:
                for x, y, f in zip(b[is_worst], c[is_worst], files[is_worst], strict=True):
                    ax.annotate(_short_name(str(f), 20), (x, y), fontsize=7, xytext=(3, -9), textcoords="offset points")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"baseline ({m.unit})" if m.unit else "baseline")
        ax.set_ylabel(f"candidate ({m.unit})" if m.unit else "candidate")
        ax.set_title(f"{m.label} per file ({m.n} pairs)")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
        ax = axes[1]
        d = c - b
        ax.hist(d, bins=min(50, max(10, int(math.sqrt(d.size)) * 2)), color=_COLORS[0], alpha=0.85)
        ax.axvline(0, color="#555555", lw=1, ls="--")
        ax.axvline(m.median_delta, color="black", lw=1.5, label=f"median delta {m.median_delta:+.3g}")
        if m.ci_low is not None:
            ax.axvspan(m.ci_low, m.ci_high, color="black", alpha=0.12, label="95 % CI of the median")
        if name in gates:
            g = gates[name]
            for v in ((-g.gate.margin,) if g.gate.side == "lower" else (g.gate.margin,) if g.gate.side == "upper"
                      else (-g.gate.margin, g.gate.margin)):
                ax.axvline(v, color=BAD if not g.holds else "#2ca02c", lw=1.5, label=f"gate margin {v:+g}")
        ax.set_title(f"{m.label}: candidate - baseline")
        ax.set_xlabel(f"delta ({m.unit})" if m.unit else "delta")
        ax.set_ylabel("files")
        ax.legend(fontsize=8)
        out[f"compare_{name}"] = png(fig)
    return out


def write_pngs(figures: Mapping[str, bytes], directory: str) -> list[str]:
    """Write ``{name}.png`` files into ``directory`` (created); returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name, data in figures.items():
        path = os.path.join(directory, f"{name}.png")
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
    return paths
