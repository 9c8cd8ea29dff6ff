"""Self-contained HTML reports of trends and comparisons.

One file: the plots embedded as ``data:`` PNGs, the tables, the alerts (or failed gates) first.
No script, no style sheet, font or image fetched from anywhere, so it opens the same from a
``file://`` URL, an object store or an e-mail attachment (tests/test_html_browser.py loads it in
headless Chromium and records every request the page makes).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from audiolib import __version__, storage

from . import plots
from .trends import format_number, format_percent

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#1a1a1a;padding:0 16px;line-height:1.4}
h1{font-size:1.5em;margin-bottom:4px}h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd}
.meta{color:#555;font-size:.9em}
.alert{border-left:6px solid #d62728;background:#fdecea;padding:8px 12px;margin:10px 0}
.ok{border-left:6px solid #2ca02c;background:#eaf6ea;padding:8px 12px;margin:10px 0}
.note{border-left:6px solid #888;background:#f3f3f3;padding:8px 12px;margin:10px 0}
table{border-collapse:collapse;font-size:.85em;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f5f5f5}
td.l,th.l{text-align:left}tr.bad td{background:#fdecea}
.scroll{overflow-x:auto}figure{margin:14px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.85em}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


_n, _pct = format_number, format_percent  # the table cells of the readable summary


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
           bad: Sequence[bool] | None = None) -> str:
    out = ['<div class="scroll"><table><thead><tr>']
    out += [f'<th{" class=l" if i < left else ""}>{_e(h)}</th>' for i, h in enumerate(header)]
    out.append("</tr></thead><tbody>")
    for k, row in enumerate(rows):
        cls = ' class="bad"' if bad is not None and bad[k] else ""
        out.append(f"<tr{cls}>" + "".join(f'<td{" class=l" if i < left else ""}>{_e(c)}</td>'
                                          for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _figures(figures: Mapping[str, bytes], captions: Mapping[str, str]) -> str:
    out = []
    for name, data in figures.items():
        b64 = base64.b64encode(data).decode("ascii")
        caption = captions.get(name, name.replace("_", " "))
        out.append(f'<figure id="{_e(name)}"><img src="data:image/png;base64,{b64}" alt="{_e(caption)}">'
                   f"<figcaption>{_e(caption)}</figcaption></figure>")
    return "\n".join(out)


def _page(title: str, meta: str, body: list[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            f"<h1>{_e(title)}</h1><p class=\"meta\">{meta}</p>\n" + "\n".join(body) +
            f"\n<p class=\"meta\">audioqc {_e(__version__)}, {stamp}</p>\n</body></html>\n")


# ----------------------------------------------------------------------------------------------
# trends


def trends_figures(result: Any, policy: Any = None) -> dict[str, bytes]:
    """Every plot of a trends report: the collection plot and distributions of the latest run,
    then one trend plot per metric."""
    figs: dict[str, bytes] = {}
    files = result.latest_files
    if files is not None and len(files):
        frame = files.rename(columns={"rel": "file"})
        threshold = plots.policy_limits(policy).get("quality_score_average", (None, None))[0] if policy else None
        latest = result.runs[-1]
        coll = plots.collection_plot(frame, f"Quality score per file, run {latest.run_id} ({latest.run_date})",
                                     threshold)
        if coll:
            figs["collection_quality"] = coll
        figs.update(plots.distribution_plots(frame, policy))
    figs.update(plots.trend_plots(result))
    return figs


def trends_html(result: Any, figures: Mapping[str, bytes] | None = None, *, policy: Any = None) -> str:
    """The trends report as one HTML page (figures default to :func:`trends_figures`)."""
    figures = trends_figures(result, policy) if figures is None else figures
    runs = result.runs
    meta = (f"{_e(result.source)}: {len(runs)} run(s), {_e(runs[0].run_date)} .. {_e(runs[-1].run_date)}; "
            f"by {_e(result.by)}; " + (f"grouped by {_e(result.group_by)}; " if result.group_by else "") +
            f"stage {_e(result.stage)}; latest run against each group's previous {result.baseline_runs} run(s), "
            f"alpha {result.alpha:g} per group (Holm across metrics)")
    body = ["<h2>Alerts</h2>"]
    if result.alerts:
        for a in result.alerts:
            rows = [[f.file, _n(f.value), _n(f.reference), f"{f.change:+.3g}",
                     "the file's last value" if f.reference_kind == "file" else "the baseline"] for f in a.files]
            body.append(f'<div class="alert"><p><b>ALERT</b> {_e(a.message)}</p>'
                        + (_table(["file", "now", "before", "change", "compared with"], rows) if rows else "")
                        + "</div>")
    elif result.comparable:
        body.append('<div class="ok">No alerts: no watched metric moved beyond its margin with statistical '
                    "support in the latest run.</div>")
    else:
        body.append('<div class="note">One run only: nothing to compare yet, so no alerts are possible.</div>')
    body.append("<h2>Groups (each group's latest run)</h2>")
    cols = list(result.watched)
    header = ["group", "status", "files", "errors", "pass %", "fail %"] + [w.label for w in cols]
    rows, bad = [], []
    for g in result.groups:
        last = g.runs[-1] if g.runs else None
        if last is None:
            continue
        rows.append([g.value, g.status, last.files, last.errors, _pct(last.rate("pass")), _pct(last.rate("fail"))]
                    + [_n(_stat(last, w)) for w in cols])
        bad.append(g.status == "alert")
    body.append(_table(header, rows, left=2, bad=bad))
    body.append("<h2>Plots</h2>")
    body.append(_figures(figures, _captions(result)))
    body.append("<h2>Runs</h2>")
    header = ["run_id", "run_date", "files", "errors", "pass %", "warn %", "fail %"] + [w.label for w in cols]
    rows = [[r.run_id, r.run_date, r.files, r.errors, _pct(r.rate("pass")), _pct(r.rate("warn")), _pct(r.rate("fail"))]
            + [_n(_stat(r, w)) for w in cols] for r in reversed(runs[-50:])]
    body.append(_table(header, rows, left=2))
    body.append("<p class=meta>Medians of the files' values; 'files with clipping' is the share of files with "
                "at least one clipping event, in percent.</p>")
    if runs[-1].fail_counts:
        body.append(f"<h2>Fail counts per rule, latest run {_e(runs[-1].run_id)}</h2>")
        body.append(_table(["rule", "files"], [[k, v] for k, v in list(runs[-1].fail_counts.items())[:30]]))
    checks = [(g.value, c) for g in result.groups for c in g.checks]
    if checks:
        body.append("<h2>Every check of the latest run</h2>")
        rows = [
            [
                grp,
                c.metric,
                c.n_current,
                c.n_baseline,
                _n(c.baseline),
                _n(c.current),
                "-" if c.shift is None else f"{c.shift:+.3g}",
                _n(c.margin),
                "-" if c.p_value is None else f"{c.p_value:.2g}",
                "-" if c.p_adjusted is None else f"{c.p_adjusted:.2g}",
                "ALERT" if c.alert else (c.note or "ok"),
            ]
            for grp, c in checks
        ]
        body.append(_table(["group", "metric", "files now", "files before", "before", "now", "shift", "margin", "p",
                            "p (Holm)", "result"], rows, left=2, bad=[c.alert for _, c in checks]))
    title = "audioqc trends" + (": " + f"{len(result.alerts)} alert(s)" if result.alerts else "")
    return _page(title, meta, body)


def _stat(run: Any, w: Any) -> float | None:
    s = run.metrics.get(w.column)
    if s is None:
        return None
    return s.share if w.statistic == "share" else s.median


def _captions(result: Any) -> dict[str, str]:
    caps = {"collection_quality": "Quality score of each file of the latest run (dot) and its worst segment "
                                  "(triangle), worst files first",
            "distribution_loudness": "Integrated loudness of the latest run's files against the policy's window",
            "distribution_scores": "Quality and noise scores of the latest run's files",
            "distribution_true_peak": "True peak of the latest run's files against the policy's limit"}
    for w in result.watched:
        caps[f"trend_{w.column}"] = f"{w.label} per run ({w.column}); a red ring marks an alert"
    return caps


# ----------------------------------------------------------------------------------------------
# compare


def compare_figures(result: Any) -> dict[str, bytes]:
    """The compare plots, then the candidate's collection plot."""
    figs = plots.compare_plots(result)
    frame = result.pairs_frame
    if frame is not None and "quality_score_average_c" in frame:
        files = frame.rename(columns={"file_c": "file", "quality_score_average_c": "quality_score_average",
                                      "quality_score_worst_segment_score_c": "quality_score_worst_segment_score"})
        if "quality_score_worst_segment_score" not in files:
            files = files.assign(quality_score_worst_segment_score=float("nan"))
        coll = plots.collection_plot(files, "Candidate: quality score per file")
        if coll:
            figs["collection_quality_candidate"] = coll
    return figs


def compare_html(result: Any, figures: Mapping[str, bytes] | None = None) -> str:
    """The comparison as one HTML page (failed gates first)."""
    figures = compare_figures(result) if figures is None else figures
    b, c = result.baseline, result.candidate
    meta = (f"baseline {_e(b.given)} (run {_e(b.run_id)}, {b.files} files) vs candidate {_e(c.given)} "
            f"(run {_e(c.run_id)}, {c.files} files); {result.pairs} files paired by {_e(result.pair_by)}")
    body = ["<h2>Gates</h2>"]
    if not result.gates:
        body.append('<div class="note">No gate given.</div>')
    for g in sorted(result.gates, key=lambda g: g.holds):
        cls = "ok" if g.holds else "alert"
        rows = [[w.file, _n(w.baseline), _n(w.candidate), f"{w.delta:+.3g}"] for w in g.worst]
        body.append(f'<div class="{cls}"><p><b>{"holds" if g.holds else "FAILS"}</b> <code>{_e(g.gate.text)}</code>: '
                    f"{_e(g.reason)}</p>" + (_table(["file", "baseline", "candidate", "delta"], rows)
                                            if rows and not g.holds else "") + "</div>")
    if result.new_errors:
        body.append(f'<div class="alert">Files that became errors: {_e(", ".join(result.new_errors[:50]))}</div>')
    body.append("<h2>Metrics (candidate - baseline, paired)</h2>")
    rows = [[m.metric, m.n, _n(m.baseline_median), _n(m.candidate_median),
             "-" if m.median_delta is None else f"{m.median_delta:+.3g}",
             "-" if m.ci_low is None else f"[{_n(m.ci_low)}, {_n(m.ci_high)}]",
             "-" if m.wilcoxon_p is None else f"{m.wilcoxon_p:.2g}", m.regressed] for m in result.metrics]
    body.append(_table(["metric", "pairs", "baseline median", "candidate median", "median delta", "95 % CI",
                        "Wilcoxon p", "files worse"], rows))
    body.append("<h2>Plots</h2>")
    caps = {f"compare_{m.metric}": f"{m.label}: each file's baseline against its candidate value (left; on the "
                                   "dashed line nothing changed) and the paired deltas (right)" for m in result.metrics}
    caps["collection_quality_candidate"] = "Candidate: quality score per file and its worst segment"
    body.append(_figures(figures, caps))
    for label, files in (
        ("Only in the baseline", result.only_baseline),
        ("Only in the candidate", result.only_candidate),
    ):
        if files:
            body.append(f"<h2>{label} ({len(files)})</h2><p>{_e(', '.join(files[:200]))}"
                        + (" ..." if len(files) > 200 else "") + "</p>")
    title = "audioqc compare: " + ("all gates hold" if result.passed else f"{len(result.failed_gates)} gate(s) fail")
    return _page(title, meta, body)


def write_text(text: str, url: str) -> str:
    """Write a text file to a path or fsspec URL (one PUT on object storage); returns the URL."""
    fs, path = storage.filesystem(url)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, text.encode("utf-8"))
    return url
