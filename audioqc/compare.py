"""A/B comparison of two audits, and non-inferiority gates for CI.

:func:`compare` takes a baseline and a candidate, each a report URL (``URL#run_id``; default:
its latest run) or a collection URL (audited on the fly, with the same policy, into a temporary
report). Files are paired by their path relative to each side's root (``pair_by="stem"``: the
path without its extension, for a change of codec). For each metric: the paired deltas
(candidate - baseline), their median with a 95 % percentile bootstrap interval
(:func:`audioqc.stats.bootstrap_median_ci`), the Wilcoxon signed-rank p-value and the files that
regressed most; files on one side only, and files that became errors, are listed.

Gates
-----
``METRIC:MARGIN`` is a non-inferiority margin on the median paired delta:

- ``quality_score_average:-0.3``: the candidate may be lower by at most 0.3: the gate holds when
  the lower end of the two-sided 95 % interval is >= -0.3 (the usual non-inferiority rule: a
  one-sided test at 2.5 %);
- ``loudness_true_peak_dbtp:+0.5``: the candidate may be higher by at most 0.5 (upper end <= 0.5);
- ``loudness_integrated_lufs:0.5`` (no sign): two-sided, the whole interval within [-0.5, 0.5].

A gate on a metric that no pair of files has on both sides fails (nothing shows non-inferiority).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from audiolib.errors import InvalidParameter, SourceNotFound

from . import history, report
from .jsonout import clean
from .stats import bootstrap_median_ci, wilcoxon_p
from .watch import WATCHED, Watched, check_metric, parse_metric_value, parse_number, watched

LEVEL = 0.95
PAIR_BY = ("path", "stem")


@dataclass(frozen=True)
class Gate:
    """A non-inferiority margin: ``side`` ``lower`` (``METRIC:-M``), ``upper`` (``METRIC:+M``)
    or ``both`` (``METRIC:M``); ``margin`` >= 0."""

    metric: str
    margin: float
    side: str

    @classmethod
    def parse(cls, text: str) -> Gate:
        """``METRIC:MARGIN``; :class:`InvalidParameter` for an unknown metric (close names
        suggested) or a malformed margin."""
        metric, value = parse_metric_value(text, "--gate")
        number = parse_number(value, f"--gate {text!r}: margin")
        side = "lower" if value.startswith("-") else "upper" if value.startswith("+") else "both"
        return cls(metric, abs(number), side)

    @property
    def text(self) -> str:
        sign = {"lower": "-", "upper": "+", "both": ""}[self.side]
        return f"{self.metric}:{sign}{self.margin:g}"

    def describe(self) -> str:
        if self.side == "lower":
            return f"the candidate may be lower by at most {self.margin:g}"
        if self.side == "upper":
            return f"the candidate may be higher by at most {self.margin:g}"
        return f"the candidate may differ by at most {self.margin:g} either way"

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.text, "metric": self.metric, "margin": self.margin, "side": self.side,
                "rule": self.describe()}


@dataclass(frozen=True)
class FileDelta:
    """One paired file: its path relative to the roots, both values and the delta."""

    file: str
    baseline: float
    candidate: float
    delta: float

    def to_dict(self) -> dict[str, Any]:
        return clean({"file": self.file, "baseline": self.baseline, "candidate": self.candidate, "delta": self.delta})


@dataclass(frozen=True)
class MetricDelta:
    """Paired deltas of one metric (candidate - baseline)."""

    metric: str
    label: str
    unit: str
    better: str
    n: int
    baseline_median: float | None
    candidate_median: float | None
    median_delta: float | None
    ci_low: float | None
    ci_high: float | None
    mean_delta: float | None
    wilcoxon_p: float | None
    regressed: int
    worst: tuple[FileDelta, ...]

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "worst"}
        out["level"] = LEVEL
        out["worst"] = [w.to_dict() for w in self.worst]
        return clean(out)


@dataclass(frozen=True)
class GateResult:
    """A gate and whether it holds, with the interval it was judged on and the worst files."""

    gate: Gate
    holds: bool
    n: int
    median_delta: float | None
    ci_low: float | None
    ci_high: float | None
    reason: str
    worst: tuple[FileDelta, ...]

    def to_dict(self) -> dict[str, Any]:
        return clean({**self.gate.to_dict(), "holds": self.holds, "n": self.n, "median_delta": self.median_delta,
                      "ci_low": self.ci_low, "ci_high": self.ci_high, "level": LEVEL, "reason": self.reason,
                      "worst": [w.to_dict() for w in self.worst]})


@dataclass(frozen=True)
class Side:
    """One side of a comparison: what was given, the report and run it was read from, its root."""

    given: str
    kind: str
    report_url: str
    run_id: str
    run_date: str
    root: str
    files: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare` found. ``passed``: every gate holds.

    ``pairs_frame`` (not serialised) holds the paired values for the plots.
    """

    baseline: Side
    candidate: Side
    pair_by: str
    pairs: int
    only_baseline: tuple[str, ...]
    only_candidate: tuple[str, ...]
    new_errors: tuple[str, ...]
    metrics: tuple[MetricDelta, ...]
    gates: tuple[GateResult, ...]
    pairs_frame: pd.DataFrame | None = field(default=None, compare=False, repr=False)

    @property
    def passed(self) -> bool:
        return all(g.holds for g in self.gates)

    @property
    def failed_gates(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.holds)

    def to_dict(self) -> dict[str, Any]:
        return {"baseline": self.baseline.to_dict(), "candidate": self.candidate.to_dict(), "pair_by": self.pair_by,
                "pairs": self.pairs, "passed": self.passed, "gates": [g.to_dict() for g in self.gates],
                "metrics": [m.to_dict() for m in self.metrics], "only_baseline": list(self.only_baseline),
                "only_candidate": list(self.only_candidate), "new_errors": list(self.new_errors)}


# ----------------------------------------------------------------------------------------------
# reading the sides


def _columns(metrics: Sequence[str]) -> list[str]:
    return ["run_id", "run_time", report.PARTITION, "source_url", "status", "error", "verdict",
            "quality_score_worst_segment_score", *metrics]


@contextmanager
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API for the on-the-fly audits of a comparison (none if
    ``PREFECT_API_URL`` is set). Events and logs are sent before it stops: a server stopped
    under them left Prefect retrying at interpreter exit for ~1.5 min."""
    import os

    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    analytics = os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # the temporary server's telemetry: off
    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")))
    os.environ[PREFECT_API_URL.name] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                try:
                    from prefect.events.worker import EventsWorker
                    from prefect.logging.handlers import APILogWorker

                    APILogWorker.drain_all(timeout=10)
                    EventsWorker.drain_all(timeout=10)
                except Exception:  # sending the audits' logs must never fail the comparison
                    pass
    finally:
        os.environ.pop(PREFECT_API_URL.name, None)
        if analytics is None:
            os.environ.pop("PREFECT_SERVER_ANALYTICS_ENABLED", None)
        else:
            os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = analytics
        server.stop()


def _audit(collection: str, directory: str, policy: str | None, workers: int) -> str:
    """Audit a collection into a temporary report; returns the run id."""
    from flows.audit import run_audit

    summary = run_audit(collection, directory, workers=workers, policy=policy, reuse=False)
    return summary["run_id"]


def load_side(spec: str, metrics: Sequence[str], *, stage: str = "original", policy: str | None = None,
              workers: int = 2, scratch: str | None = None) -> tuple[Side, pd.DataFrame]:
    """A side's rows (one run) as a DataFrame with ``key`` (relative path), and its :class:`Side`.

    ``spec``: ``REPORT#RUN_ID``, ``REPORT`` (latest run of ``stage``) or a collection (audited
    into ``scratch``, a directory).
    """
    if "#" in spec:
        url, run_id = spec.rsplit("#", 1)
        kind = "report"
        if not run_id:
            raise InvalidParameter(f"{spec}: give a run id after '#' (or leave '#' out for the latest run)")
    elif history.is_report(spec):
        url, run_id, kind = spec, None, "report"
    else:
        if scratch is None:
            raise InvalidParameter(f"{spec}: not a report, and no scratch directory to audit it into")
        from tasks.storage import list_objects

        if not list_objects(spec):  # raises SourceNotFound for a path that does not exist
            raise SourceNotFound(spec, "neither a report (no run_date=YYYY-MM-DD folders) nor a collection "
                                       "(no media files under it)")
        url, kind = scratch, "collection"
        run_id = _audit(spec, scratch, policy, workers)
    data = history.open_report(url)
    if run_id is None:
        runs = history.runs(url, stage=stage, dataset=data)
        run_id = runs[-1]["run_id"]
    table = history.read(url, _columns(metrics), stage=stage, run_ids=[run_id], dataset=data)
    if table.num_rows == 0:  # only now list the runs (reading every run's times)
        ids = [r["run_id"] for r in history.runs(url, stage=stage, dataset=data)]
        raise SourceNotFound(url, f"no run {run_id!r} (of stage {stage!r}); its latest runs: {', '.join(ids[-5:])}")
    run = {"run_date": pc.min(table[report.PARTITION]).as_py()}
    frame = table.drop_columns(["run_id", "run_time", report.PARTITION]).to_pandas()
    if kind == "collection":
        root = history.collection_root(spec)
    else:
        manifest = history.read_manifests(url).get(run_id) or {}
        root = manifest.get("root") or history.common_root(frame["source_url"])
    frame["file"] = [history.relative(u, root) for u in frame["source_url"]]
    side = Side(given=spec, kind=kind, report_url=url if kind == "report" else "(temporary)", run_id=run_id,
                run_date=str(run["run_date"]), root=root, files=len(frame))
    return side, frame


# ----------------------------------------------------------------------------------------------
# the comparison


def compare(baseline: str, candidate: str, *, gates: Sequence[str | Gate] = (), metrics: Sequence[str] | None = None,
            policy: str | None = None, stage: str = "original", pair_by: str = "path", workers: int = 2,
            top_files: int = 5, seed: int = 0) -> CompareResult:
    """Compare two audits file by file (see the module docstring).

    Parameters
    ----------
    baseline, candidate : str
        ``REPORT``, ``REPORT#RUN_ID`` or a collection URL (audited with ``policy``).
    gates : list of str or Gate
        Non-inferiority margins, ``METRIC:MARGIN`` (``quality_score_average:-0.3``).
    metrics : list of str, optional
        Metrics to compare (default: the watched metrics; gated metrics are always included).
    pair_by : str
        ``path`` (relative path) or ``stem`` (relative path without the extension).

    Raises
    ------
    InvalidParameter
        A malformed gate, an unknown metric, or two sides with no file in common.
    SourceNotFound
        A side that is neither a report nor a collection, a report without runs, an unknown run id.
    """
    if pair_by not in PAIR_BY:
        raise InvalidParameter(f"pair_by={pair_by!r}: one of {', '.join(PAIR_BY)}")
    parsed = tuple(g if isinstance(g, Gate) else Gate.parse(g) for g in gates)
    chosen = [check_metric(m, "metrics") for m in metrics] if metrics else [w.column for w in WATCHED]
    chosen = list(dict.fromkeys(chosen + [g.metric for g in parsed]))
    audits = any("#" not in side and not history.is_report(side) for side in (baseline, candidate))
    with tempfile.TemporaryDirectory(prefix="audioqc-compare-") as tmp, (prefect_api() if audits else nullcontext()):
        base_side, base = load_side(baseline, chosen, stage=stage, policy=policy, workers=workers,
                                    scratch=f"{tmp}/baseline")
        cand_side, cand = load_side(candidate, chosen, stage=stage, policy=policy, workers=workers,
                                    scratch=f"{tmp}/candidate")
    return compare_frames(base_side, base, cand_side, cand, parsed, chosen, pair_by=pair_by, top_files=top_files,
                          seed=seed)


def _key(frame: pd.DataFrame, pair_by: str) -> pd.Series:
    if pair_by == "path":
        return frame["file"]
    return frame["file"].str.replace(r"\.[^./]*$", "", regex=True)


def compare_frames(
    base_side: Side,
    base: pd.DataFrame,
    cand_side: Side,
    cand: pd.DataFrame,
    gates: Sequence[Gate],
    metrics: Sequence[str],
    *,
    pair_by: str = "path",
    top_files: int = 5,
    seed: int = 0,
) -> CompareResult:
    """The comparison of two sides already read (see :func:`load_side`)."""
    base = base.assign(key=_key(base, pair_by)).drop_duplicates("key")
    cand = cand.assign(key=_key(cand, pair_by)).drop_duplicates("key")
    merged = base.merge(cand, on="key", suffixes=("_b", "_c"), how="inner")
    only_b = tuple(sorted(set(base["file"][~base["key"].isin(cand["key"])])))
    only_c = tuple(sorted(set(cand["file"][~cand["key"].isin(base["key"])])))
    if merged.empty:
        raise InvalidParameter(
            f"{base_side.given} vs {cand_side.given}: no file in common (paired by {pair_by} relative to the roots "
            f"{base_side.root or '/'} and {cand_side.root or '/'}; {len(base)} and {len(cand)} files)"
            + ("; try --pair-by stem if the extensions differ" if pair_by == "path" else ""))
    new_errors = tuple(sorted(merged.loc[(merged["status_b"] == "ok") & (merged["status_c"] == "error"), "file_c"]))
    results = []
    for name in metrics:
        w = watched(name)
        results.append(_metric_delta(merged, w, top_files, seed))
    by_name = {m.metric: m for m in results}
    gate_results = tuple(_judge(g, merged, by_name[g.metric], top_files, seed) for g in gates)
    extra = [
        f"quality_score_worst_segment_score_{s}"
        for s in ("b", "c")
        if "quality_score_worst_segment_score" not in metrics and f"quality_score_worst_segment_score_{s}" in merged
    ]
    frame = merged[["key", "file_b", "file_c"] + [f"{m}_{s}" for m in metrics for s in ("b", "c")] + extra]
    return CompareResult(baseline=base_side, candidate=cand_side, pair_by=pair_by, pairs=len(merged),
                         only_baseline=only_b, only_candidate=only_c, new_errors=new_errors, metrics=tuple(results),
                         gates=gate_results, pairs_frame=frame.reset_index(drop=True))


def _pairs(merged: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = pd.to_numeric(merged[f"{metric}_b"], errors="coerce").to_numpy(dtype=float)
    c = pd.to_numeric(merged[f"{metric}_c"], errors="coerce").to_numpy(dtype=float)
    ok = ~(np.isnan(b) | np.isnan(c))
    return b[ok], c[ok], merged["file_c"].to_numpy()[ok]


def _worst(files: np.ndarray, b: np.ndarray, c: np.ndarray, badness: np.ndarray, top: int) -> tuple[FileDelta, ...]:
    order = np.argsort(-badness, kind="stable")[:top]
    return tuple(
        FileDelta(str(files[i]), float(b[i]), float(c[i]), float(c[i] - b[i])) for i in order if badness[i] > 0
    )


def _badness(w: Watched, d: np.ndarray) -> np.ndarray:
    return -d if w.better == "higher" else d if w.better == "lower" else np.abs(d)


def _metric_delta(merged: pd.DataFrame, w: Watched, top: int, seed: int) -> MetricDelta:
    b, c, files = _pairs(merged, w.column)
    if b.size == 0:
        return MetricDelta(w.column, w.label, w.unit, w.better, 0, None, None, None, None, None, None, None, 0, ())
    d = c - b
    lo, hi = bootstrap_median_ci(d, LEVEL, seed=seed)
    bad = _badness(w, d)
    return MetricDelta(w.column, w.label, w.unit, w.better, int(d.size), float(np.median(b)), float(np.median(c)),
                       float(np.median(d)), lo, hi, float(d.mean()), wilcoxon_p(d), int((bad > 0).sum()),
                       _worst(files, b, c, bad, top))


def _judge(gate: Gate, merged: pd.DataFrame, m: MetricDelta, top: int, seed: int) -> GateResult:
    b, c, files = _pairs(merged, gate.metric)
    d = c - b
    side = {"lower": "higher", "upper": "lower", "both": "either"}[gate.side]
    worst = _worst(files, b, c, _badness(watched(gate.metric, better=side), d), top) if d.size else ()
    if m.n == 0:
        return GateResult(gate, False, 0, None, None, None,
                          f"{gate.metric} was measured on no file of both sides: nothing shows non-inferiority", ())
    lo, hi = m.ci_low, m.ci_high
    assert lo is not None and hi is not None  # measured on m.n > 0 files: the interval is there
    ok_low = lo >= -gate.margin
    ok_high = hi <= gate.margin
    holds = ok_low if gate.side == "lower" else ok_high if gate.side == "upper" else (ok_low and ok_high)
    interval = f"median delta {m.median_delta:+.3g}, {int(LEVEL * 100)} % CI [{lo:+.3g}, {hi:+.3g}] over {m.n} files"
    if holds:
        reason = f"holds: {interval}; {gate.describe()}"
    else:
        reason = f"fails: {interval}; {gate.describe()}"
    return GateResult(gate, bool(holds), m.n, m.median_delta, lo, hi, reason, worst)


# ----------------------------------------------------------------------------------------------
# summaries


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        size = abs(value)
        return f"{value:.3f}" if size < 10 else f"{value:.2f}" if size < 1000 else f"{value:.0f}"
    return str(value)


def format_text(result: CompareResult, *, max_listed: int = 10) -> str:
    """The readable summary: gates first, then the metrics, then unpaired files."""
    b, c = result.baseline, result.candidate
    lines = [f"baseline  {b.given} (run {b.run_id}, {b.run_date}, {b.files} files)",
             f"candidate {c.given} (run {c.run_id}, {c.run_date}, {c.files} files)",
             f"{result.pairs} files paired by {result.pair_by}; {len(result.only_baseline)} only in the baseline, "
             f"{len(result.only_candidate)} only in the candidate", ""]
    if result.gates:
        lines.append("GATES: " + ("all hold" if result.passed else f"{len(result.failed_gates)} of "
                                  f"{len(result.gates)} FAIL"))
        for g in result.gates:
            lines.append(f"  {'ok  ' if g.holds else 'FAIL'} {g.gate.text}: {g.reason}")
            if not g.holds:
                for w in g.worst:
                    lines.append(f"         {w.file}: {_num(w.baseline)} -> {_num(w.candidate)} ({w.delta:+.3g})")
        lines.append("")
    if result.new_errors:
        lines.append(
            f"files that became errors ({len(result.new_errors)}): " + ", ".join(result.new_errors[:max_listed])
        )
        lines.append("")
    header = ["metric", "n", "baseline", "candidate", "median delta", f"{int(LEVEL * 100)}% CI", "wilcoxon p",
              "worse files"]
    rows = []
    for m in result.metrics:
        ci = "-" if m.ci_low is None else f"[{_num(m.ci_low)}, {_num(m.ci_high)}]"
        p = "-" if m.wilcoxon_p is None else f"{m.wilcoxon_p:.2g}"
        rows.append([m.metric, str(m.n), _num(m.baseline_median), _num(m.candidate_median),
                     "-" if m.median_delta is None else f"{m.median_delta:+.3g}", ci, p, str(m.regressed)])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in [header] + rows:
        lines.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for label, files in (
        ("only in the baseline", result.only_baseline),
        ("only in the candidate", result.only_candidate),
    ):
        if files:
            more = f" (+{len(files) - max_listed} more)" if len(files) > max_listed else ""
            lines.append(f"{label}: " + ", ".join(files[:max_listed]) + more)
    return "\n".join(lines).rstrip() + "\n"


def format_markdown(result: CompareResult, *, max_listed: int = 20) -> str:
    """The summary a CI job posts on a pull request."""
    b, c = result.baseline, result.candidate
    icon = "✅" if result.passed else "❌"
    lines = [f"## {icon} audioqc compare: " + ("all gates hold" if result.passed else
                                               f"{len(result.failed_gates)} gate(s) fail"), "",
             f"Baseline `{b.given}` (run `{b.run_id}`, {b.files} files) vs candidate `{c.given}` "
             f"(run `{c.run_id}`, {c.files} files): {result.pairs} files paired by {result.pair_by}.", ""]
    if result.gates:
        lines += ["| gate | rule | median delta | 95 % CI | result |", "|---|---|---|---|---|"]
        for g in result.gates:
            ci = "-" if g.ci_low is None else f"[{_num(g.ci_low)}, {_num(g.ci_high)}]"
            med = "-" if g.median_delta is None else f"{g.median_delta:+.3g}"
            lines.append(f"| `{g.gate.text}` | {g.gate.describe()} | {med} | {ci} | "
                         f"{'✅ holds' if g.holds else '❌ fails'} |")
        lines.append("")
        for g in result.failed_gates:
            if g.worst:
                lines += [f"**{g.gate.metric}**: the files that regressed most", "",
                          "| file | baseline | candidate | delta |", "|---|---|---|---|"]
                lines += [
                    f"| `{w.file}` | {_num(w.baseline)} | {_num(w.candidate)} | {w.delta:+.3g} |" for w in g.worst
                ]
                lines.append("")
    lines += ["<details><summary>All metrics</summary>", "", "| metric | files | baseline | candidate | "
              "median delta | 95 % CI | Wilcoxon p |", "|---|---|---|---|---|---|---|"]
    for m in result.metrics:
        ci = "-" if m.ci_low is None else f"[{_num(m.ci_low)}, {_num(m.ci_high)}]"
        p = "-" if m.wilcoxon_p is None else f"{m.wilcoxon_p:.2g}"
        med = "-" if m.median_delta is None else f"{m.median_delta:+.3g}"
        lines.append(
            f"| {m.metric} | {m.n} | {_num(m.baseline_median)} | {_num(m.candidate_median)} | {med} | {ci} | {p} |"
        )
    lines += ["", "</details>", ""]
    if result.new_errors:
        lines += ["Files that became errors: " + ", ".join(f"`{f}`" for f in result.new_errors[:max_listed]), ""]
    for label, files in (
        ("Only in the baseline", result.only_baseline),
        ("Only in the candidate", result.only_candidate),
    ):
        if files:
            more = f" (+{len(files) - max_listed} more)" if len(files) > max_listed else ""
            lines += [f"{label}: " + ", ".join(f"`{f}`" for f in files[:max_listed]) + more, ""]
    return "\n".join(lines)
