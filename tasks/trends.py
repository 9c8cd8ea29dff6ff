"""The audit's trends step: the run's manifest, its trends, the HTML report, artifacts, the alert mark.

Called at the end of the audit flow when its ``trends`` parameter is set (``audioqc audit
--trends``; the ``nightly-audit-with-trends`` deployment):

1. writes the run's manifest ``{report}.audioqc/runs/{run_id}.json`` (the audited root and the policy,
   which the report's rows do not hold; :mod:`audioqc.history`);
2. computes :func:`audioqc.trends.trends` over the report (options from the parameter);
3. writes the self-contained HTML report ``{report}.audioqc/trends/{run_date}-{run_id}.html`` and
   ``{report}.audioqc/trends/latest.html`` (beside the report folder, so readers of the report see parts only);
4. publishes the alerts (markdown, key ``trends-alerts``) and the groups' summary table (key
   ``trends-summary``) as Prefect artifacts, and a link artifact to the HTML report;
5. on an alert, marks the flow run: the tag ``trends-alert`` and the event
   ``audioqc.trends.alert`` (resource: the flow run), which a Prefect automation can notify on.

A failure here never fails the audit (its rows are written): it is logged and returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from audiolib.errors import AudioQCError, InvalidParameter

OPTIONS = ("group_by", "by", "baseline_runs", "margins", "alpha", "stage", "metrics")
ALERT_TAG = "trends-alert"
ALERT_EVENT = "audioqc.trends.alert"


def check_options(trends: bool | Mapping[str, Any] | None) -> dict[str, Any]:
    """The flow's ``trends`` parameter as :func:`audioqc.trends.trends` options (validated)."""
    if not trends:
        return {}
    if trends is True:
        return {}
    if not isinstance(trends, Mapping):
        raise InvalidParameter(f"trends={trends!r}: true, or a mapping of options ({', '.join(OPTIONS)})")
    unknown = [k for k in trends if k not in OPTIONS]
    if unknown:
        raise InvalidParameter(
            f"trends: unknown option(s) {', '.join(map(repr, unknown))}; options: {', '.join(OPTIONS)}"
        )
    options = dict(trends)
    from audioqc import trends as tr

    tr._check_options(options.get("group_by"), options.get("by", "run"), options.get("baseline_runs", 5),
                      options.get("alpha", 0.01))
    tr.watch_list(options.get("metrics"), options.get("margins"))
    return options


def _markdown(result: Any, html_url: str) -> str:
    lines = [f"# Trends after run {result.runs[-1].run_id}", "", f"Report: `{result.source}`  ",
             f"HTML report: `{html_url}`", ""]
    if result.alerts:
        lines += [f"## {len(result.alerts)} alert(s)", ""]
        for a in result.alerts:
            lines.append(f"- **{a.where} / {a.metric}**: {a.message}")
            for f in a.files:
                lines.append(f"    - `{f.file}`: {f.value:.3g} (was {f.reference:.3g}, {f.change:+.3g})")
    elif result.comparable:
        lines.append("No alerts.")
    else:
        lines.append("One run only: nothing to compare yet.")
    return "\n".join(lines)


def _summary_rows(result: Any) -> list[dict[str, Any]]:
    from audioqc.jsonout import clean

    rows = []
    for g in result.groups:
        last = g.runs[-1] if g.runs else None
        if last is None:
            continue
        row = {"group": g.value, "status": g.status, "files": last.files, "errors": last.errors,
               "fail_rate": last.rate("fail")}
        for w in result.watched:
            s = last.metrics.get(w.column)
            row[w.column] = None if s is None else (s.share if w.statistic == "share" else s.median)
        rows.append(clean(row))
    return rows


def _mark_run(result: Any) -> None:
    """Tag the flow run and emit the alert event (what an automation triggers on)."""
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    run_id = flow_run.id
    if not run_id:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        tags = list(flow_run.tags or [])
        if ALERT_TAG not in tags:
            client.update_flow_run(run_id, tags=tags + [ALERT_TAG])
    emit_event(event=ALERT_EVENT,
               resource={"prefect.resource.id": f"prefect.flow-run.{run_id}",
                         "prefect.resource.name": str(flow_run.name or run_id)},
               payload={"report": result.source, "alerts": [a.to_dict() for a in result.alerts][:20],
                        "messages": [a.message for a in result.alerts]})


@task(name="trends", cache_policy=NO_CACHE, persist_result=False)
def audit_trends(report_url: str, run_id: str, run_date: str, source: str, policy: str | None,
                 options: Mapping[str, Any]) -> dict[str, Any]:
    """Manifest, trends, HTML report, artifacts and the alert mark (see the module docstring)."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
    from prefect.logging import get_run_logger

    from audioqc import history, html_report
    from audioqc import trends as tr

    logger = get_run_logger()
    try:
        history.write_manifest(report_url, run_id, source=source, root=history.collection_root(source),
                               policy=policy, written=datetime.now(timezone.utc).isoformat())
        result = tr.trends(report_url, **dict(options))
        policy_obj = None
        if policy:
            from audioqc.policy import load_policy

            policy_obj = load_policy(policy)
        page = html_report.trends_html(result, policy=policy_obj)
        from audioqc.report import sidecar

        html_url = html_report.write_text(page, sidecar(report_url, "trends", f"{run_date}-{run_id}.html"))
        html_report.write_text(page, sidecar(report_url, "trends", "latest.html"))
    except (AudioQCError, OSError) as exc:
        logger.warning("trends after run %s failed: %s", run_id, exc)
        return {"error": str(exc), "alerts": []}
    create_markdown_artifact(key="trends-alerts", markdown=_markdown(result, html_url),
                             description=f"trends alerts after run {run_id}")
    create_table_artifact(key="trends-summary", table=_summary_rows(result),
                          description=f"each group's latest run ({run_id})")
    import os

    link = html_url if "://" in html_url else f"file://{os.path.abspath(html_url)}"
    create_link_artifact(key="trends-report", link=link, link_text="trends HTML report")
    if result.alerts:
        logger.warning("%d trends alert(s): %s", len(result.alerts), "; ".join(a.message for a in result.alerts))
        _mark_run(result)
    return {"alerts": [a.to_dict() for a in result.alerts], "html": html_url, "text": tr.format_text(result),
            "comparable": result.comparable}
