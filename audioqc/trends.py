"""Trends over a report's runs, and alerts on systemic drops.

:func:`trends` reads only the columns it needs from a report and returns a :class:`TrendsResult`:

- per run (``run_id``, ``run_time``, ``run_date``): files, errors, pass/warn/fail rates, fail
  counts per rule, and for each watched metric (:data:`audioqc.watch.WATCHED`) the count, mean,
  median, 10th and 90th percentiles; the same per group with ``group_by`` (``prefix``: the first
  folder under the audited root; ``codec``, ``sample_rate``, ``policy``, ``verdict``);
- ``by="ingest"`` keeps each file only in the run in which its identity (URL + ETag, or URL +
  size + mtime: the audit's cache key) first appeared, so that a nightly re-audit of a whole
  catalogue does not dilute a drop in what arrived that night;
- alerts: in each group, the latest run of the report against the group's previous
  ``baseline_runs`` runs that have files (default 5).

When is there an alert
----------------------
For each watched metric with at least :data:`MIN_FILES` values on both sides:

1. the statistic (the median; for ``clipping_events`` the share of files that clip) moved in the
   bad direction by more than the metric's practical margin (:mod:`audioqc.watch`), and
2. the shift is statistically supported: a Mann-Whitney U test of the latest run's files against
   the pooled files of the baseline runs (one-sided towards the bad direction; two-sided for
   metrics where either direction is bad), with Holm's correction across the metrics tested in
   the group, at ``alpha`` (default 0.01).

False-alarm rate: when the latest run's files and the baseline's files come from the same
distribution, the chance of *any* alert in a group is at most ``alpha`` (Holm controls the
family-wise error over the group's metrics), before the margin, which only lowers it; over G
groups at most ``G x alpha``. ``tests/test_trends.py`` checks it on 200 seeded null histories
with the margins at zero (so that only the test decides), against a binomial bound. The test
treats files as exchangeable between runs: a report whose content mix swings from night to night
(one night of music, one of speech) breaks that, and the margins are the guard against it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from audiolib.errors import InvalidParameter, SourceNotFound

from . import history, report
from .jsonout import clean
from .stats import holm, shift_test
from .watch import WATCHED, Watched, check_metric, parse_margins, watched

GROUP_KEYS = ("prefix", "codec", "sample_rate", "policy", "verdict")
BY = ("run", "ingest")
MIN_FILES = 5  # values needed on each side of a comparison
ALL = "(all)"
#: Extra per-file columns kept for the latest run's plots.
PLOT_COLUMNS = ("quality_score_worst_segment_score", "quality_score_worst_segment_start_s",
                "quality_score_worst_segment_end_s")
_KEY_COLUMNS = {"codec": "media_info_audio_codec", "sample_rate": "media_info_audio_sample_rate_hz",
                "verdict": "verdict"}


@dataclass(frozen=True)
class MetricStats:
    """Count, mean, median, 10th and 90th percentile of one metric over some files (the
    ``share`` statistic's metrics also give the share of files above zero, in percent)."""

    n: int
    mean: float | None
    median: float | None
    p10: float | None
    p90: float | None
    share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"n": self.n, "mean": self.mean, "median": self.median, "p10": self.p10, "p90": self.p90}
        if self.share is not None:
            out["share"] = self.share
        return clean(out)


@dataclass(frozen=True)
class RunSummary:
    """One run (of one group, or of the whole report when ``group`` is None)."""

    run_id: str
    run_time: str
    run_date: str
    group: str | None
    files: int
    errors: int
    verdicts: Mapping[str, int]
    fail_counts: Mapping[str, int]
    metrics: Mapping[str, MetricStats]

    def rate(self, verdict: str) -> float | None:
        """Share of files with a verdict that got ``verdict`` (None without a policy)."""
        total = sum(self.verdicts.values())
        return self.verdicts.get(verdict, 0) / total if total else None

    def to_dict(self) -> dict[str, Any]:
        return clean({
            "run_id": self.run_id, "run_time": self.run_time, "run_date": self.run_date,
            **({"group": self.group} if self.group is not None else {}),
            "files": self.files, "errors": self.errors, "verdicts": dict(self.verdicts),
            "pass_rate": self.rate("pass"), "warn_rate": self.rate("warn"), "fail_rate": self.rate("fail"),
            "fail_counts": dict(self.fail_counts),
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
        })


@dataclass(frozen=True)
class Check:
    """One metric of one group: latest run against the baseline, and the decision."""

    metric: str
    n_current: int
    n_baseline: int
    baseline: float | None
    current: float | None
    shift: float | None
    margin: float
    p_value: float | None
    p_adjusted: float | None
    effect: float | None
    alert: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return clean({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class MovedFile:
    """A file of the latest run and how far it moved: against its own latest value in the
    baseline runs where it has one (``reference_kind == "file"``), else against the baseline's
    statistic (``"baseline"``)."""

    file: str
    value: float
    reference: float
    change: float
    reference_kind: str

    def to_dict(self) -> dict[str, Any]:
        return clean({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass(frozen=True)
class Alert:
    """A systemic drop: one metric of one group in the latest run."""

    group_by: str | None
    group: str
    metric: str
    label: str
    unit: str
    better: str
    statistic: str
    run_id: str
    run_date: str
    baseline_runs: tuple[str, ...]
    baseline: float
    current: float
    shift: float
    margin: float
    effect: float
    p_value: float
    p_adjusted: float
    alpha: float
    n_current: int
    n_baseline: int
    files: tuple[MovedFile, ...]

    @property
    def where(self) -> str:
        return self.group if self.group_by is None else f"{self.group_by}={self.group}"

    @property
    def message(self) -> str:
        """One line: the group, the metric, baseline vs current, effect size and p-value."""
        verb = {"higher": "fell", "lower": "rose"}.get(self.better, "moved")
        stat = "share of files" if self.statistic == "share" else "median"
        unit = f" {self.unit}" if self.unit and self.unit not in ("%", "0-10") else ""
        unit = " points" if self.statistic == "share" or self.unit == "%" else unit
        return (f"{self.where}: {self.label} ({self.metric}) {verb}: {stat} {format_number(self.baseline)} -> "
                f"{format_number(self.current)} (shift {self.shift:+.3g}{unit}, "
                f"margin {format_number(self.margin)}) in run "
                f"{self.run_id} ({self.run_date}) against {len(self.baseline_runs)} earlier run(s); "
                f"Cliff's delta {self.effect:+.2f}, p = {self.p_value:.2g} (Holm {self.p_adjusted:.2g}, "
                f"alpha {self.alpha:g}), {self.n_current} vs {self.n_baseline} files")

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "files"}
        out["baseline_runs"] = list(self.baseline_runs)
        out["files"] = [f.to_dict() for f in self.files]
        out["message"] = self.message
        return clean(out)


@dataclass(frozen=True)
class GroupSummary:
    """One group's runs and its latest run's checks. ``status``: ``alert``, ``ok``,
    ``no-history`` (no earlier run to compare with) or ``no-files`` (none in the latest run)."""

    key: str | None
    value: str
    status: str
    message: str
    runs: tuple[RunSummary, ...]
    checks: tuple[Check, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "group": self.value, "status": self.status, "message": self.message,
                "runs": [r.to_dict() for r in self.runs], "checks": [c.to_dict() for c in self.checks]}


@dataclass(frozen=True)
class TrendsResult:
    """What :func:`trends` found. ``to_dict()`` is ``{"runs", "groups", "alerts"}``.

    ``latest_files`` (not serialised) holds the latest run's per-file rows for the plots.
    """

    source: str
    by: str
    group_by: str | None
    baseline_runs: int
    alpha: float
    stage: str
    runs: tuple[RunSummary, ...]
    groups: tuple[GroupSummary, ...]
    alerts: tuple[Alert, ...]
    watched: tuple[Watched, ...]
    policy: str | None = None
    latest_files: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @property
    def comparable(self) -> bool:
        """Whether any group had an earlier run to compare its latest run with."""
        return any(g.checks for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [r.to_dict() for r in self.runs], "groups": [g.to_dict() for g in self.groups],
                "alerts": [a.to_dict() for a in self.alerts]}


# ----------------------------------------------------------------------------------------------
# entry points


def trends(report_url: str, *, group_by: str | None = None, by: str = "run", baseline_runs: int = 5,
           margins: Mapping[str, float] | Sequence[str] | None = None, alpha: float = 0.01,
           stage: str = "original", root: str | None = None, metrics: Sequence[str] | None = None,
           top_files: int = 5) -> TrendsResult:
    """Trends and alerts of the report at ``report_url`` (see the module docstring).

    Parameters
    ----------
    report_url : str
        The report dataset (local directory or fsspec URL).
    group_by : str, optional
        ``prefix``, ``codec``, ``sample_rate``, ``policy`` or ``verdict``.
    by : str
        ``run`` (every file of each run) or ``ingest`` (each file only in the run where its
        identity first appeared).
    baseline_runs : int
        How many earlier runs of each group the latest run is compared with (>= 1).
    margins : mapping or list of ``METRIC:VALUE``, optional
        Practical margins overriding :mod:`audioqc.watch`'s defaults.
    alpha : float
        Family-wise false-alarm rate per group (Holm across the metrics), in (0, 1).
    stage : str
        ``original`` (default; includes rows of reports without stages), ``remedied`` or ``all``.
    root : str, optional
        The audited root for ``prefix`` (default: the run's manifest, else the longest common
        folder of the report's files).
    metrics : list of str, optional
        Metrics to watch (default: all of :data:`audioqc.watch.WATCHED`).

    Raises
    ------
    SourceNotFound
        Not a report, or no rows of ``stage``.
    InvalidParameter
        A bad option value (unknown metric or key, malformed margin...).
    """
    _check_options(group_by, by, baseline_runs, alpha)
    watch = watch_list(metrics, margins)
    columns = ["run_id", "run_time", report.PARTITION, "source_url", "status", "verdict", "verdict_reasons"]
    if by == "ingest":
        columns += ["etag", "size_bytes", "mtime"]
    if group_by in _KEY_COLUMNS and _KEY_COLUMNS[group_by] not in columns:
        columns.append(_KEY_COLUMNS[group_by])
    columns += [w.column for w in watch] + list(PLOT_COLUMNS)
    manifests = history.read_manifests(report_url)
    # the table is not bound here: analyse() drops its columns as it is done with them
    return analyse(history.read(report_url, columns, stage=stage), source=report_url, group_by=group_by, by=by,
                   baseline_runs=baseline_runs,
                   watch=watch, alpha=alpha, stage=stage, root=root, manifests=manifests, top_files=top_files)


def _check_options(group_by: str | None, by: str, baseline_runs: int, alpha: float) -> None:
    if group_by is not None and group_by not in GROUP_KEYS:
        raise InvalidParameter(f"group_by={group_by!r}: one of {', '.join(GROUP_KEYS)}")
    if by not in BY:
        raise InvalidParameter(f"by={by!r}: one of {', '.join(BY)}")
    if not isinstance(baseline_runs, int) or baseline_runs < 1:
        raise InvalidParameter(f"baseline_runs={baseline_runs!r}: an integer >= 1")
    if not 0 < alpha < 1:
        raise InvalidParameter(f"alpha={alpha!r}: between 0 and 1")


def watch_list(
    metrics: Sequence[str] | None, margins: Mapping[str, float] | Sequence[str] | None
) -> tuple[Watched, ...]:
    chosen = [check_metric(m, "metrics") for m in metrics] if metrics else [w.column for w in WATCHED]
    over = parse_margins(dict(margins) if isinstance(margins, Mapping) else list(margins or []))
    unknown = [m for m in over if m not in chosen]
    chosen += unknown  # a margin on an unwatched metric watches it too
    return tuple(watched(m, over.get(m)) for m in dict.fromkeys(chosen))


# ----------------------------------------------------------------------------------------------
# the analysis


def analyse(table: pa.Table, *, source: str = "<table>", group_by: str | None = None, by: str = "run",
            baseline_runs: int = 5, watch: Sequence[Watched] | None = None, alpha: float = 0.01,
            stage: str = "original", root: str | None = None,
            manifests: Mapping[str, Mapping[str, Any]] | None = None, top_files: int = 5) -> TrendsResult:
    """The analysis of :func:`trends` on report rows already read (a table of report columns).

    Strings stay in Arrow (URLs, groups and rules are computed with ``pyarrow.compute``); the
    per-file frame holds numbers and categories only, so memory stays near the size of the
    numeric columns read.
    """
    _check_options(group_by, by, baseline_runs, alpha)
    watch = tuple(watch) if watch is not None else watch_list(None, None)
    manifests = manifests or {}
    if table.num_rows == 0:
        raise SourceNotFound(source, "the report has no runs" + ("" if stage == "all" else f" of stage {stage!r}"))
    pool = pa.default_memory_pool()
    pool.release_unused()  # the read's decompression buffers
    run_info = _run_order(table)
    run = pc.index_in(table["run_id"], value_set=pa.array(run_info.index.tolist(), pa.string()))
    run = run.to_numpy() if isinstance(run, pa.Array) else _ints(run)
    rel = _relative(table["source_url"], run, run_info, _roots(table, run, run_info, root, manifests))
    names, codes = _group_codes(table, group_by, rel, run, run_info, manifests)
    if by == "ingest":
        keep = _first_appearances(table, run)
        if not keep.all():
            table, run, codes, rel = table.filter(pa.array(keep)), run[keep], codes[keep], rel.filter(pa.array(keep))
            pool.release_unused()
    fails = _fail_counts(table, run, codes, names)
    frame = _frame(table, watch, run, codes, names)
    plot = table.select([c for c in PLOT_COLUMNS if c in table.column_names])
    table = table.select(["source_url"])  # the numbers are in the frame now: free the rest
    pool.release_unused()
    overall = _run_summaries(frame, run_info, fails, watch, grouped=False)
    per_group = _run_summaries(frame, run_info, fails, watch, grouped=True) if group_by else {ALL: overall}
    latest = len(run_info) - 1
    urls = table["source_url"]
    groups, alerts = [], []
    for value in sorted(per_group):
        summary, found = _judge(frame, urls, rel, value, per_group[value], run_info, latest, group_by,
                                baseline_runs, watch, alpha, top_files)
        groups.append(summary)
        alerts += found
    alerts.sort(key=lambda a: (a.p_adjusted, a.group, a.metric))
    last_id = run_info.index[latest]
    policy = (manifests.get(last_id) or {}).get("policy")
    return TrendsResult(source=source, by=by, group_by=group_by, baseline_runs=baseline_runs, alpha=alpha,
                        stage=stage, runs=tuple(overall), groups=tuple(groups), alerts=tuple(alerts),
                        watched=tuple(watch), policy=policy,
                        latest_files=_latest_files(frame, table, plot, rel, latest, watch))


def _ints(chunked: pa.ChunkedArray) -> np.ndarray:
    if chunked.num_chunks == 0:
        return np.zeros(0, np.int32)
    return np.concatenate([c.to_numpy(zero_copy_only=False) for c in chunked.chunks])


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _run_order(table: pa.Table) -> pd.DataFrame:
    """Runs oldest first (by the time of each run's first row), with their run_date."""
    aggs = [("run_time", "min")]
    has_date = report.PARTITION in table.column_names
    if has_date:
        aggs.append((report.PARTITION, "min"))
    g = (
        table.select(["run_id", "run_time"] + ([report.PARTITION] if has_date else []))
        .group_by("run_id")
        .aggregate(aggs)
    )
    info = pd.DataFrame({"run_time": pd.to_datetime(g["run_time_min"].to_pandas(), utc=True).to_numpy()},
                        index=pd.Index(g["run_id"].to_pylist(), dtype=object))
    info["run_time"] = pd.to_datetime(info["run_time"], utc=True)
    info["run_date"] = (g[f"{report.PARTITION}_min"].to_pylist() if has_date
                        else info["run_time"].dt.strftime("%Y-%m-%d").tolist())
    return info.sort_values(["run_time"], kind="stable")


def _roots(table: pa.Table, run: np.ndarray, run_info: pd.DataFrame, root: str | None,
           manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The audited root of each run (by run code): ``root``, else the run's manifest, else the
    longest common folder of the files of the runs without a manifest (taken together, so that
    every such run splits its files the same way)."""
    ids = list(run_info.index)
    if root is not None:
        fixed = history.collection_root(root) if "://" not in root else root.rstrip("/")
        return [fixed] * len(ids)
    out = [str((manifests.get(r) or {}).get("root") or "") for r in ids]
    rest = [i for i, r in enumerate(out) if not r]
    if rest:
        mask = np.isin(run, rest)
        urls = table["source_url"].filter(pa.array(mask)) if len(rest) < len(ids) else table["source_url"]
        lo, hi = pc.min_max(urls).values()
        common = history.common_root([lo.as_py() or "", hi.as_py() or ""]) if lo.is_valid else ""
        for i in rest:
            out[i] = common
    return out


def _relative(urls: pa.ChunkedArray, run: np.ndarray, run_info: pd.DataFrame, roots: list[str]) -> pa.ChunkedArray:
    """Each URL relative to its run's root (unchanged where it is not under it)."""
    out = urls
    for root in dict.fromkeys(roots):
        if not root:
            continue
        prefix = root.rstrip("/") + "/"
        under = pc.starts_with(urls, prefix)
        if len(set(roots)) > 1:
            mine = pa.array(np.isin(run, [i for i, r in enumerate(roots) if r == root]))
            under = pc.and_(under, mine)
        out = pc.if_else(under, pc.utf8_slice_codeunits(urls, len(prefix)), out)
    return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out])


def _group_codes(table: pa.Table, group_by: str | None, rel: pa.ChunkedArray, run: np.ndarray,
                 run_info: pd.DataFrame, manifests: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], np.ndarray]:
    """Group names and each row's group code."""
    n = table.num_rows
    if group_by is None:
        return [ALL], np.zeros(n, np.int32)
    if group_by == "policy":
        per_run = [str((manifests.get(r) or {}).get("policy") or ("(none)" if r in manifests else "(unknown)"))
                   for r in run_info.index]
        names = sorted(set(per_run))
        lookup = np.array([names.index(p) for p in per_run], np.int32)
        return names, lookup[run]
    if group_by == "prefix":
        parts = pc.split_pattern(rel, "/", max_splits=1)
        values = pc.if_else(pc.equal(pc.list_value_length(parts), 2), pc.list_element(parts, 0), "(root)")
    else:
        column = _KEY_COLUMNS[group_by]
        values = table[column] if column in table.column_names else pa.chunked_array([pa.nulls(n, pa.string())])
        values = pc.cast(values, pa.string())
        missing = "(none)" if group_by == "verdict" else "(unknown)"
        values = pc.fill_null(values, missing)
        if group_by == "verdict":
            values = pc.if_else(pc.equal(table["status"], "error"), "(error)", values)
    names = sorted(v for v in pc.unique(values).to_pylist())
    codes = pc.index_in(values, value_set=pa.array(names, pa.string()))
    return names, _ints(codes) if isinstance(codes, pa.ChunkedArray) else codes.to_numpy()


def _first_appearances(table: pa.Table, run: np.ndarray) -> np.ndarray:
    """Rows of runs in which the file's identity appeared first (URL + ETag, else URL + size + mtime)."""
    n = table.num_rows
    cols = table.column_names
    etag = table["etag"] if "etag" in cols else pa.chunked_array([pa.nulls(n, pa.string())])
    has_etag = pc.is_valid(etag)
    size = pc.cast(table["size_bytes"], pa.string()) if "size_bytes" in cols else pa.nulls(n, pa.string())
    mtime = pc.cast(pc.cast(table["mtime"], pa.int64()), pa.string()) if "mtime" in cols else pa.nulls(n, pa.string())
    blank = pa.scalar("", pa.string())
    ident = pc.binary_join_element_wise(
        table["source_url"], pc.fill_null(etag, blank),
        pc.if_else(has_etag, blank, pc.fill_null(size, blank)),
        pc.if_else(has_etag, blank, pc.fill_null(mtime, blank)), "\x1f")
    index = pc.index_in(ident, value_set=pc.unique(ident))
    index = _ints(index) if isinstance(index, pa.ChunkedArray) else index.to_numpy()
    first = np.full(int(index.max()) + 1 if n else 0, np.iinfo(np.int64).max)
    np.minimum.at(first, index, run.astype(np.int64))
    return run == first[index]


def _fail_counts(table: pa.Table, run: np.ndarray, codes: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Fail reasons counted per ``run``, ``group`` and ``rule`` (metric and condition)."""
    empty = pd.DataFrame({"run": [], "group": [], "rule": [], "n": []})
    if "verdict_reasons" not in table.column_names or table.num_rows == 0:
        return empty
    parts, offset = [], 0
    for chunk in table["verdict_reasons"].chunks:
        flat = pc.list_flatten(chunk)
        if len(flat):
            parent = pc.list_parent_indices(chunk).to_numpy() + offset
            fail = pc.equal(flat.field("severity"), "fail")
            rule = pc.binary_join_element_wise(flat.field("metric"), flat.field("rule"), " ")
            parts.append(pa.table({"run": run[parent], "group": codes[parent], "rule": rule}).filter(fail))
        offset += len(chunk)
    if not parts:
        return empty
    counts = pa.concat_tables(parts).group_by(["run", "group", "rule"]).aggregate([("rule", "count")]).to_pandas()
    counts = counts.rename(columns={"rule_count": "n"})
    counts["group"] = pd.Categorical.from_codes(counts["group"].to_numpy(), categories=names)
    return counts


def _frame(table: pa.Table, watch: Sequence[Watched], run: np.ndarray, codes: np.ndarray,
           names: list[str]) -> pd.DataFrame:
    """Numbers and categories per row: ``run``, ``group``, ``is_error``, ``verdict``, the metrics
    as float64 (a ``share`` metric as 100 x (value > 0), its raw value as ``raw:<column>``),
    the plot columns, and ``row`` (the row in ``table``)."""
    n = table.num_rows
    cols = table.column_names
    data: dict[str, Any] = {
        "run": run.astype(np.int32, copy=False),
        "group": pd.Categorical.from_codes(codes, categories=names),
        "is_error": pc.equal(table["status"], "error").to_numpy() if "status" in cols else np.zeros(n, bool),
        "verdict": table["verdict"].dictionary_encode().to_pandas()
        if "verdict" in cols
        else pd.Categorical([None] * n),
        "row": np.arange(n),
    }
    data["is_error"] = np.asarray(data["is_error"], dtype=bool)
    for w in watch:
        values = _floats(table[w.column]) if w.column in cols else np.full(n, np.nan)
        if w.statistic == "share":
            data[f"raw:{w.column}"] = values
            values = np.where(np.isnan(values), np.nan, 100.0 * (values > 0))
        data[w.column] = values
    return pd.DataFrame(data)


def _stats_table(frame: pd.DataFrame, keys: list[str], watch: Sequence[Watched]) -> dict[tuple, dict[str, MetricStats]]:
    """Count, mean and percentiles of every watched metric per ``keys`` (one groupby pass)."""
    cols = [w.column for w in watch]
    shares = [w for w in watch if w.statistic == "share"]
    used = cols + [f"raw:{w.column}" for w in shares]
    g = frame.groupby(keys, sort=True, observed=True)[used]
    count = g.count()
    index = count.index
    mean = g.mean().reindex(index)
    q = g.quantile([0.1, 0.5, 0.9])
    level = q.index.nlevels - 1
    parts = {p: q.xs(p, level=level).reindex(index) for p in (0.1, 0.5, 0.9)}
    pos = {c: i for i, c in enumerate(used)}
    n_arr, mean_arr = count.to_numpy(), mean.to_numpy()
    p_arr = {p: parts[p].to_numpy() for p in parts}
    out: dict[tuple, dict[str, MetricStats]] = {}
    for row, key in enumerate(index):
        k = key if isinstance(key, tuple) else (key,)
        per = {}
        for w in watch:
            j = pos[w.column]
            n = int(n_arr[row, j])
            if n == 0:
                per[w.column] = MetricStats(0, None, None, None, None)
            elif w.statistic == "share":
                r = pos[f"raw:{w.column}"]
                per[w.column] = MetricStats(n, float(mean_arr[row, r]), float(p_arr[0.5][row, r]),
                                            float(p_arr[0.1][row, r]), float(p_arr[0.9][row, r]),
                                            share=float(mean_arr[row, j]))
            else:
                per[w.column] = MetricStats(n, float(mean_arr[row, j]), float(p_arr[0.5][row, j]),
                                            float(p_arr[0.1][row, j]), float(p_arr[0.9][row, j]))
        out[k] = per
    return out


def _run_summaries(frame: pd.DataFrame, run_info: pd.DataFrame, fails: pd.DataFrame, watch: Sequence[Watched],
                   *, grouped: bool) -> Any:
    keys = ["run", "group"] if grouped else ["run"]
    stats = _stats_table(frame, keys, watch)
    files = frame.groupby(keys, sort=True, observed=True).size()
    errors = frame[frame["is_error"]].groupby(keys, sort=False, observed=True).size()
    verdicts = frame[frame["verdict"].notna()].groupby(keys + ["verdict"], sort=False, observed=True).size()
    rules = (
        fails.groupby(keys + ["rule"], sort=False, observed=True)["n"].sum()
        if len(fails)
        else pd.Series(dtype=np.int64)
    )
    verdict_map: dict[tuple, dict[str, int]] = {}
    for key, n in verdicts.items():
        if n:
            verdict_map.setdefault(tuple(key[:-1]), {})[str(key[-1])] = int(n)
    rule_map: dict[tuple, dict[str, int]] = {}
    for key, n in rules.items():
        if n:
            rule_map.setdefault(tuple(key[:-1]), {})[str(key[-1])] = int(n)
    error_map = {(k if isinstance(k, tuple) else (k,)): int(v) for k, v in errors.items()}
    summaries: dict[str, list[RunSummary]] = {}
    for key, n in files.items():
        if not n:
            continue
        k = key if isinstance(key, tuple) else (key,)
        run = int(k[0])
        run_id = run_info.index[run]
        group = str(k[1]) if grouped else None
        rules_here = dict(sorted(rule_map.get(k, {}).items(), key=lambda kv: (-kv[1], kv[0])))
        summaries.setdefault(group or ALL, []).append(
            RunSummary(
                run_id=run_id,
                run_time=_iso(run_info.at[run_id, "run_time"]),
                run_date=str(run_info.at[run_id, "run_date"]),
                group=group,
                files=int(n),
                errors=error_map.get(k, 0),
                verdicts=verdict_map.get(k, {}),
                fail_counts=rules_here,
                metrics=stats[k],
            )
        )
    return summaries if grouped else summaries.get(ALL, [])


def _iso(value: Any) -> str:
    return pd.Timestamp(value).isoformat() if value is not None and not pd.isna(value) else ""


def _judge(frame: pd.DataFrame, urls: pa.ChunkedArray, rel: pa.ChunkedArray, value: str, runs: list[RunSummary],
           run_info: pd.DataFrame, latest: int, group_by: str | None, baseline_runs: int, watch: Sequence[Watched],
           alpha: float, top_files: int) -> tuple[GroupSummary, list[Alert]]:
    """A group's latest run against its previous runs: checks, alerts, status."""
    latest_id = run_info.index[latest]
    run_index = {r: i for i, r in enumerate(run_info.index)}
    have = [run_index[r.run_id] for r in runs]
    if latest not in have:
        return GroupSummary(group_by, value, "no-files", f"no files in the latest run {latest_id}", tuple(runs), ()), []
    earlier = [i for i in have if i < latest][-baseline_runs:]
    if not earlier:
        message = ("one run: nothing to compare" if len(run_info) == 1
                   else f"no earlier run with files of this group before {latest_id}")
        return GroupSummary(group_by, value, "no-history", message, tuple(runs), ()), []
    in_group = (frame["group"] == value).to_numpy() if group_by else np.ones(len(frame), dtype=bool)
    run = frame["run"].to_numpy()
    cur = frame[in_group & (run == latest)]
    base = frame[in_group & np.isin(run, earlier)]
    # (watched, n current, n baseline, baseline, current, p, effect, note); None: too few values
    pending: list[tuple[Watched, int, int, float | None, float | None, float | None, float | None, str]] = []
    b: float | None  # baseline and current statistic
    c: float | None
    for w in watch:
        x = cur[w.column].to_numpy()
        y = base[w.column].to_numpy()
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
        if x.size < MIN_FILES or y.size < MIN_FILES:
            pending.append((w, x.size, y.size, None, None, None, None, f"fewer than {MIN_FILES} values on a side"))
            continue
        if w.statistic == "share":
            b, c = float(y.mean()), float(x.mean())
        else:
            b, c = float(np.median(y)), float(np.median(x))
        alternative = {"higher": "less", "lower": "greater"}.get(w.better, "two-sided")
        test = shift_test(x, y, alternative)
        pending.append((w, x.size, y.size, b, c, test.p_value, test.effect, ""))
    tested = {i: p[5] for i, p in enumerate(pending) if p[5] is not None}
    adjusted = dict(zip(tested, holm(list(tested.values())), strict=True))
    checks: list[Check] = []
    alerts: list[Alert] = []
    for i, (w, nx, ny, b, c, p, effect, note) in enumerate(pending):
        shift = None if b is None or c is None else c - b  # both None or neither
        p_adj = adjusted.get(i)
        is_alert = p_adj is not None and shift is not None and p_adj <= alpha and w.badness(shift) > w.margin
        checks.append(Check(w.column, nx, ny, b, c, shift, w.margin, p, p_adj, effect, bool(is_alert), note))
        if is_alert:
            # a tested metric: every figure is there
            assert b is not None and c is not None and shift is not None and p is not None and effect is not None
            assert p_adj is not None
            alerts.append(Alert(
                group_by=group_by, group=value, metric=w.column, label=w.label, unit=w.unit, better=w.better,
                statistic=w.statistic, run_id=latest_id, run_date=str(run_info.at[latest_id, "run_date"]),
                baseline_runs=tuple(run_info.index[j] for j in earlier), baseline=b, current=c, shift=shift,
                margin=w.margin, effect=float(effect), p_value=float(p), p_adjusted=float(p_adj), alpha=alpha,
                n_current=nx, n_baseline=ny, files=_moved(cur, base, urls, rel, w, top_files)))
    status = "alert" if alerts else "ok"
    message = (f"{len(alerts)} alert(s)" if alerts else "no alert") + \
        f": run {latest_id} against {len(earlier)} earlier run(s)"
    return GroupSummary(group_by, value, status, message, tuple(runs), tuple(checks)), alerts


def _moved(cur: pd.DataFrame, base: pd.DataFrame, urls: pa.ChunkedArray, rel: pa.ChunkedArray, w: Watched,
           top: int) -> tuple[MovedFile, ...]:
    """The latest run's files that moved furthest in the bad direction."""
    raw = f"raw:{w.column}" if f"raw:{w.column}" in cur.columns else w.column
    now = cur[["row", raw]].dropna(subset=[raw])
    before = base[["row", "run", raw]].dropna(subset=[raw]).sort_values("run", kind="stable")
    now_urls = urls.take(pa.array(now["row"].to_numpy())).to_pylist()
    before_urls = urls.take(pa.array(before["row"].to_numpy())).to_pylist()
    last = dict(zip(before_urls, before[raw].to_numpy(dtype=float), strict=True))  # the latest baseline value wins
    fallback = float(before[raw].median()) if len(before) else 0.0
    values = now[raw].to_numpy(dtype=float)
    ref = np.array([last.get(u, np.nan) for u in now_urls], dtype=float)
    kind = np.where(np.isnan(ref), "baseline", "file")
    ref = np.where(np.isnan(ref), fallback, ref)
    change = values - ref
    bad = np.array([w.badness(c) for c in change]) if len(change) else np.array([])
    order = [i for i in np.argsort(-bad, kind="stable")[:top] if bad[i] > 0]
    names = rel.take(pa.array(now["row"].to_numpy()[order] if order else np.zeros(0, np.int64))).to_pylist()
    return tuple(MovedFile(str(name), float(values[i]), float(ref[i]), float(change[i]), str(kind[i]))
                 for name, i in zip(names, order, strict=True))


def _latest_files(frame: pd.DataFrame, table: pa.Table, plot: pa.Table, rel: pa.ChunkedArray, latest: int,
                  watch: Sequence[Watched]) -> pd.DataFrame:
    """The latest run's files for the plots: relative path, status, verdict, raw metric values."""
    rows = frame.index[frame["run"].to_numpy() == latest]
    part = frame.loc[rows]
    take = pa.array(part["row"].to_numpy())
    out = pd.DataFrame({"rel": rel.take(take).to_pylist(), "source_url": table["source_url"].take(take).to_pylist(),
                        "status": np.where(part["is_error"].to_numpy(), "error", "ok"),
                        "verdict": part["verdict"].astype(object).to_numpy()})
    for col in plot.column_names:
        out[col] = _floats(plot[col].take(take))
    for w in watch:
        raw = f"raw:{w.column}" if f"raw:{w.column}" in part.columns else w.column
        out[w.column] = part[raw].to_numpy()
    return out


# ----------------------------------------------------------------------------------------------
# the readable summary


def format_number(value: Any, digits: int = 3) -> str:
    """A figure for a table cell: ``-`` when unmeasured, else 2, 1 or 0 decimals by its size."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        size = abs(value)
        return f"{value:.2f}" if size < 10 else f"{value:.1f}" if size < 1000 else f"{value:.0f}"
    return str(value)


def format_percent(value: float | None) -> str:
    """A share (0-1) as a percentage with one decimal, ``-`` when unknown."""
    return "-" if value is None else f"{100 * value:.1f}"


def format_text(result: TrendsResult, *, max_runs: int = 20) -> str:
    """The readable summary: alerts first, then the groups' latest runs, then the runs."""
    lines: list[str] = []
    runs = result.runs
    span = f"{runs[0].run_date} .. {runs[-1].run_date}" if runs else "-"
    grouping = f"grouped by {result.group_by} ({len(result.groups)} groups)" if result.group_by else "not grouped"
    lines.append(f"trends of {result.source}: {len(runs)} run(s), {span}; by {result.by}; {grouping}; "
                 f"stage {result.stage}")
    if not result.comparable:
        lines.append("only one run with files: nothing to compare yet (no alerts possible)"
                     if len(runs) <= 1 else "no group has an earlier run to compare its latest run with")
    else:
        lines.append(f"latest run {runs[-1].run_id} against each group's previous {result.baseline_runs} run(s); "
                     f"alpha {result.alpha:g} per group (Holm across metrics), margins per metric")
    lines.append("")
    if result.alerts:
        lines.append(f"ALERTS ({len(result.alerts)})")
        for a in result.alerts:
            lines.append(f"  {a.message}")
            for f in a.files:
                lines.append(f"      {f.file}: {format_number(f.value)} (was {format_number(f.reference)}"
                             f"{'' if f.reference_kind == 'file' else ', the baseline'}; {f.change:+.3g})")
    elif result.comparable:
        lines.append("no alerts")
    lines.append("")
    cols = [w for w in result.watched][:8]
    header = ["group", "status", "files", "errors", "pass%", "fail%"] + [_short(w.column) for w in cols]
    rows = []
    for g in result.groups:
        last = g.runs[-1] if g.runs else None
        if last is None:
            continue
        rows.append([g.value, g.status, str(last.files), str(last.errors), format_percent(last.rate("pass")),
                     format_percent(last.rate("fail"))] + [format_number(_stat(last, w)) for w in cols])
    lines.append("groups (each group's latest run; metric medians, clipping as % of files)")
    lines += _table(header, rows)
    lines.append("")
    header = ["run_id", "run_date", "files", "errors", "pass%", "warn%", "fail%"] + [_short(w.column) for w in cols]
    rows = [[r.run_id, r.run_date, str(r.files), str(r.errors)]
            + [format_percent(r.rate(v)) for v in ("pass", "warn", "fail")]
            + [format_number(_stat(r, w)) for w in cols] for r in runs[-max_runs:]]
    lines.append(f"runs (the last {min(max_runs, len(runs))} of {len(runs)})")
    lines += _table(header, rows)
    if runs and runs[-1].fail_counts:
        lines.append("")
        lines.append(f"fail counts per rule in the latest run {runs[-1].run_id}")
        for rule, n in list(runs[-1].fail_counts.items())[:10]:
            lines.append(f"  {n:6d}  {rule}")
    return "\n".join(lines).rstrip() + "\n"


def _stat(run: RunSummary, w: Watched) -> float | None:
    s = run.metrics.get(w.column)
    if s is None:
        return None
    return s.share if w.statistic == "share" else s.median


_SHORT = {"quality_score_average": "quality", "noise_score_average": "noise", "noise_score_snr_db": "snr_db",
          "loudness_integrated_lufs": "I_lufs", "loudness_true_peak_dbtp": "tp_dbtp", "loudness_range_lu": "lra",
          "speech_percentage": "speech%", "music_percentage": "music%", "clipping_events": "clip%files",
          "silence_percentage": "silence%", "bandwidth_hz": "bw_hz"}


def _short(column: str) -> str:
    return _SHORT.get(column, column)


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    rows = list(rows)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    out = ["  " + "  ".join(h.ljust(widths[i]) for i, h in enumerate(header)).rstrip()]
    out += ["  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    return out
