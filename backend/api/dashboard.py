"""The leads' dashboard: one server-rendered HTML page per project, from the same data as ``/progress``."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from backend.api.deps import DbSession, require_auth
from backend.db.ids import DbId
from backend.db.models import Project
from backend.services.progress import project_progress
from backend.services.projects import project_by_id

router = APIRouter(prefix="/dashboard", dependencies=[Depends(require_auth)], include_in_schema=False)

STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}
.bar{background:#eee;width:160px;height:10px;display:inline-block}.bar i{background:#4a7;height:10px;display:block}
.met{color:#185}.below{color:#b33}svg{background:#fafafa;border:1px solid #ddd}small{color:#666}
"""


@router.get("", response_class=HTMLResponse)
def index(db: DbSession) -> str:
    """Links to every project's dashboard."""
    items = "".join(
        f'<li><a href="/dashboard/{p.id}">{escape(p.name)}</a> <small>Label Studio project {p.ls_project_id}</small>'
        for p in db.scalars(select(Project).order_by(Project.id))
    )
    return _page("nerloop projects", f"<h1>Projects</h1><ul>{items or '<li>none yet</li>'}</ul>")


@router.get("/{project_id}", response_class=HTMLResponse)
def project_page(project_id: DbId, db: DbSession) -> str:
    """One project's progress towards its per-type target."""
    data = project_progress(db, project_by_id(db, project_id))
    return _page(f"nerloop: {data['name']}", render(data))


def render(data: dict[str, Any]) -> str:
    """The dashboard body for ``project_progress`` data."""
    t = data["targets"]
    head = (
        f"<h1>{escape(data['name'])}</h1><p>Target F1 {t['f1']:.2f} per type; {t['usable_labels']} labels is usable, "
        f"{t['good_labels']} good. Serving: <code>{escape(data['serving'] or 'no model yet (LLM only)')}</code>. "
        f'<a href="/api/projects/{data["project_id"]}/progress">JSON</a></p>'
    )
    return head + _types(data) + _versions(data) + _runs(data) + _throughput(data) + _costs(data)


def _f1(f1: float | None, interval: list[float] | None, support: int | None, measurable: bool = True) -> str:
    """An F1 as a lead should read it: with its 95% interval and support, or "not yet measurable"."""
    if f1 is None:
        return "-"
    if not measurable:
        return f"not yet measurable <small>(n={support})</small>"
    band = "" if interval is None else f" <small>[{interval[0]:.2f}, {interval[1]:.2f}]</small>"
    return f"{f1:.3f}{band}" + ("" if support is None else f" <small>n={support}</small>")


def _forecast(fc: dict[str, Any]) -> str:
    if fc["more_labels"] is None:
        return escape(fc["reason"])
    text = f"{fc['more_labels']:,}"
    if fc["band"] is not None:
        low, high = fc["band"]
        text += f" <small>({low:,} to {'more' if high is None else f'{high:,}'})</small>"
    if fc["hours"] is not None and fc["more_labels"]:
        text += f"<br><small>about {fc['hours']:.1f} annotator hours</small>"
    return text


def _types(data: dict[str, Any]) -> str:
    good = data["targets"]["good_labels"]
    serving = next((v for v in data["versions"] if v["version"] == data["serving"]), None)
    rows = ""
    for item in data["types"]:
        fc = item["forecast"]
        label = item["label"]
        status = "met" if fc["more_labels"] == 0 else "below"
        latest = "-"
        if serving is not None and label in serving["f1"]:
            latest = _f1(
                serving["f1"][label],
                serving["f1_interval"][label],
                serving["support"][label],
                serving["measurable"][label],
            )
        width = min(100, round(100 * item["labels"] / good))
        rows += (
            f"<tr><td>{escape(label)}</td><td>{item['labels']:,}</td>"
            f'<td><span class="bar"><i style="width:{width}%"></i></span> {item["mark"]}</td>'
            f'<td class="{status}">{latest}</td><td>{_forecast(fc)}</td>'
            f"<td>{_curve(item['curve'], data['targets']['f1'])}</td></tr>"
        )
    return (
        "<h2>Entity types</h2><table><tr><th>type</th><th>labels</th><th>towards good</th>"
        "<th>serving F1 <small>[95% interval]</small></th><th>more labels needed (forecast, 10-90% band)</th>"
        f"<th>learning curve</th></tr>{rows}</table>"
    )


def _curve(points: list[dict[str, float]], target: float, w: int = 160, h: int = 48) -> str:
    """F1 against log(labels), with the target as a dashed line."""
    if not points:
        return "<small>no version yet</small>"
    xs = [math.log(max(1.0, p["labels"])) for p in points]
    lo, hi = min(xs), max(xs)

    def x(v: float) -> float:
        return 4 + (w - 8) * ((v - lo) / (hi - lo) if hi > lo else 0.5)

    def y(f1: float) -> float:
        return h - 4 - (h - 8) * f1

    line = " ".join(f"{x(v):.1f},{y(p['f1']):.1f}" for v, p in zip(xs, points, strict=True))
    dots = "".join(f'<circle cx="{x(v):.1f}" cy="{y(p["f1"]):.1f}" r="2"/>' for v, p in zip(xs, points, strict=True))
    return (
        f'<svg width="{w}" height="{h}"><line x1="0" x2="{w}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
        f'stroke="#b33" stroke-dasharray="3"/><polyline points="{line}" fill="none" stroke="#27a"/>{dots}</svg>'
    )


def _versions(data: dict[str, Any]) -> str:
    labels = [item["label"] for item in data["types"]]
    rows = ""
    for v in reversed(data["versions"]):
        cells = "".join(
            f'<td class="{"met" if v["meets_target"].get(lab) else "below"}">'
            f"{_f1(v['f1'][lab], v['f1_interval'][lab], v['support'][lab], v['measurable'][lab])}</td>"
            if lab in v["f1"]
            else "<td>-</td>"
            for lab in labels
        )
        micro = _f1(v["micro_f1"], v["micro_f1_interval"], None)
        name = f"<td><code>{escape(v['version'])}</code></td><td>{escape(v['status'])}</td>"
        rows += f"<tr>{name}{cells}<td>{micro}</td></tr>"
    head = "".join(f"<th>{escape(lab)}</th>" for lab in labels)
    return (
        "<h2>Model versions (F1 on the held-out test documents; rejected candidates beside)</h2>"
        f"<table><tr><th>version</th><th>status</th>{head}<th>micro</th></tr>"
        f"{rows or '<tr><td>none yet</td></tr>'}</table>"
    )


def _runs(data: dict[str, Any]) -> str:
    """The latest training runs with their progress and decision; the gate of the newest run that compared."""
    rows = ""
    for run in data["runs"]:
        progress = f"{run['stage'] or ''} {100 * (run['progress'] or 0):.0f}%"
        eta = "" if not run["eta_s"] or run["status"] != "running" else f" <small>ETA {run['eta_s']:.0f} s</small>"
        why = run["error"] or run["details"].get("decision") or ""
        rows += (
            f"<tr><td>{run['id']}</td><td>{escape(run['trigger'])}</td><td>{escape(run['status'])}</td>"
            f"<td>{escape(progress)}{eta}</td><td>{escape(why)}</td></tr>"
        )
    table = (
        "<h2>Training runs</h2><table><tr><th>run</th><th>trigger</th><th>status</th><th>progress</th>"
        f"<th>decision</th></tr>{rows or '<tr><td>none yet</td></tr>'}</table>"
    )
    compared = next((r for r in data["runs"] if r["details"].get("gate")), None)
    if compared is None:
        return table
    gate = ""
    for label, c in compared["details"]["gate"].items():
        interval = "-" if c["interval"] is None else f"[{c['interval'][0]:+.3f}, {c['interval'][1]:+.3f}]"
        gate += (
            f"<tr><td>{escape(label)}</td><td>{c['serving_f1']:.3f}</td><td>{c['candidate_f1']:.3f}</td>"
            f"<td>{c['difference']:+.3f} <small>{interval}</small></td><td>{c['support']}</td>"
            f'<td class="{"below" if c["blocks"] else "met"}">{"blocks" if c["blocks"] else "passes"}</td>'
            f"<td>{escape(c['reason'])}</td></tr>"
        )
    return table + (
        f"<h3>Promotion gate of run {compared['id']} (paired bootstrap on the test documents)</h3><table><tr>"
        "<th>type</th><th>serving F1</th><th>candidate F1</th><th>difference [95%]</th><th>support</th>"
        f"<th>gate</th><th>why</th></tr>{gate}</table>"
    )


def _throughput(data: dict[str, Any]) -> str:
    days = data["throughput"]["per_day"]
    cells = "".join(f"<td>{d['annotations']}</td>" for d in days)
    head = "".join(f"<th>{escape(d['date'][5:])}</th>" for d in days)
    return (
        f"<h2>Annotation throughput</h2><p>{data['throughput']['last_24h']} annotations in the last 24 hours.</p>"
        f"<table><tr><th>day</th>{head}</tr><tr><td>created</td>{cells}</tr></table>"
    )


def _costs(data: dict[str, Any]) -> str:
    c = data["llm_costs"]
    per = c["per_1000_docs"]
    llm = (
        "no LLM call yet"
        if per is None
        else f"{per['tokens']:,} tokens, ${per['cost_usd']:.2f} per 1,000 documents ({c['calls']:,} calls so far)"
    )
    return (
        f"<h2>Pre-annotation cost</h2><table><tr><th>source</th><th>per 1,000 documents</th></tr>"
        f"<tr><td>LLM</td><td>{escape(llm)}</td></tr><tr><td>fine-tuned model</td><td>no per-call price "
        "(runs on the backend's CPU; see bench/RESULTS.md for its throughput)</td></tr></table>"
    )


def _page(title: str, body: str) -> str:
    head = f"<meta charset='utf-8'><title>{escape(title)}</title><style>{STYLE}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"
