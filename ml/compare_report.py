"""The report of ``nerloop compare``.

Break-even and overtake figures, then ``report.json``, ``report.md``, a self-contained ``report.html`` (plotly's offline
bundle inlined: no network) and each row's predictions.

Every figure of the report is recomputable from ``predictions/<row>.jsonl`` and the test file: the test
``tests/training/test_compare_cli.py`` does it (each line's ``doc`` is the document's index in the test file). Under
``--limit-llm`` the rows share a seeded random sample of the test set (``test_sample``: its seed and indices), and
the fine-tuned rows' predictions on the whole test set are in ``predictions/<row>.full.jsonl``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader

from ml.compare_rows import CompareResult, Row
from ml.costs import break_even_volume, overtake_labels
from ml.evaluation import EvaluationReport


@dataclass(frozen=True)
class BreakEven:
    """One fine-tuned (or router) row against the reference LLM row.

    Attributes:
        row: The fine-tuned row's name.
        llm_row: The LLM row it is compared with (the LLM row of best micro F1).
        volume: Documents above which the fine-tuned row costs less (None: its F1 is lower, or never cheaper).
        f1_gap: Its micro F1 minus the LLM's.
    """

    row: str
    llm_row: str
    volume: float | None
    f1_gap: float


def best_llm(result: CompareResult) -> Row | None:
    """The LLM row of best exact micro F1 (the prompt a team would pick), or None without LLM rows."""
    rows = [r for r in result.rows if r.kind == "llm"]
    return max(rows, key=lambda r: r.report.micro.f1) if rows else None


def break_evens(result: CompareResult) -> list[BreakEven]:
    """Every fine-tuned and router row against the best LLM row (:func:`ml.costs.break_even_volume`)."""
    llm = best_llm(result)
    if llm is None:
        return []
    out = []
    for row in result.rows:
        if row.kind == "llm":
            continue
        volume = break_even_volume(
            llm_per_doc=llm.cost_per_1k_docs / 1000,
            fine_tuned_fixed=row.fixed_cost,
            fine_tuned_per_doc=row.cost_per_1k_docs / 1000,
            llm_f1=llm.report.micro.f1,
            fine_tuned_f1=row.report.micro.f1,
        )
        out.append(BreakEven(row.name, llm.name, volume, row.report.micro.f1 - llm.report.micro.f1))
    return out


def overtakes(result: CompareResult) -> dict[str, dict[str, float | None]]:
    """Per architecture and type, the labels of that type at which the curve reaches the best LLM row's F1.

    The F1 is the best LLM row's for the type (:func:`ml.costs.overtake_labels`); None for a type with no gold span in
    the test docs.
    """
    llm = best_llm(result)
    if llm is None:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for architecture in result.options.architectures:
        rows = [r for r in result.rows if r.kind == "fine-tuned" and r.architecture == architecture]
        out[architecture] = {
            label: overtake_labels(
                [(r.labels_per_type[label], r.report.per_type[label].f1) for r in rows],
                llm.report.per_type[label].f1,
            )
            if llm.report.per_type[label].support
            else None
            for label in llm.report.per_type
        }
    return out


def slug(name: str) -> str:
    """A row's file name: ``LLM similar 5-shot`` -> ``llm-similar-5-shot``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def to_dict(result: CompareResult, *, inputs: dict[str, str]) -> dict[str, Any]:
    """The whole result as JSON-ready data (``report.json``)."""
    return {
        "inputs": inputs,
        "test_docs": len(result.test_docs),
        # the whole test set; more than test_docs when --limit-llm sampled it (fine-tuned rows: "full_test")
        "all_test_docs": len(result.all_test_docs),
        # under --limit-llm: the seeded random sample the rows share (indices into the test file's docs)
        "test_sample": {"seed": result.options.seed, "indices": result.sample_index} if result.sampled else None,
        "train_pool_docs": result.pool_docs,
        "dev_docs": result.dev_docs,
        "dev_given": result.dev_given,  # the caller's dev docs (a project's dev tasks), not the training file's end
        "costs": asdict(result.options.costs),
        "options": {
            "shots": list(result.options.shots),
            "strategies": list(result.options.strategies),
            "sizes": ["all" if s is None else s for s in result.options.sizes],
            "architectures": list(result.options.architectures),
            "limit_llm": result.options.limit_llm,
            "concurrency": result.options.concurrency,
            "train_settings": result.options.train_settings.model_dump(mode="json"),
            "llm": result.options.llm_name,
        },
        "rows": [_row_dict(r) for r in result.rows],
        "break_even": [asdict(b) for b in break_evens(result)],
        "overtake_labels": overtakes(result),
        "wall_s": result.wall_s,
        "llm_requests": result.llm_requests,
        "llm_cached": result.llm_cached,
        "models_trained": result.models_trained,
        "models_reused": result.models_reused,
    }


def _row_dict(row: Row) -> dict[str, Any]:
    return {
        "name": row.name,
        "slug": slug(row.name),
        "kind": row.kind,
        "architecture": row.architecture,
        "shots": row.shots,
        "strategy": row.strategy,
        "train_docs": row.train_docs,
        "labels": row.labels,
        "labels_per_type": row.labels_per_type,
        **_scores(row.report),
        # a fine-tuned row on the whole test set, when the rows share a --limit-llm sample of it (else None)
        "full_test": None if row.full_report is None else _scores(row.full_report),
        "latency_p50_s": _finite(row.latency_p50_s),
        "latency_p95_s": _finite(row.latency_p95_s),
        "docs_per_second": row.docs_per_second,
        "prompt_tokens_per_doc": row.prompt_tokens_per_doc,
        "completion_tokens_per_doc": row.completion_tokens_per_doc,
        "cost_per_1k_docs": row.cost_per_1k_docs,
        "train_seconds": row.train_seconds,
        "train_cost": row.train_cost,
        "labelling_cost": row.labelling_cost,
        "errors": row.errors,
        "dev_f1": row.dev_f1,
        "routes": row.routes,
        "wall_s": row.wall_s,
    }


def _scores(report: EvaluationReport) -> dict[str, Any]:
    return {
        "micro_f1": report.micro.f1,
        "micro_f1_interval": report.micro_f1_interval,
        "partial_micro_f1": report.partial_micro_f1,
        "per_type": {
            label: {"f1": s.f1, "f1_interval": s.f1_interval, "partial_f1": s.partial_f1, "support": s.support}
            for label, s in report.per_type.items()
        },
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def write_report(result: CompareResult, out: Path, *, inputs: dict[str, str]) -> dict[str, Any]:
    """Write ``report.json``, ``report.md``, ``report.html`` and ``predictions/<row>.jsonl`` under ``out``.

    Returns:
        The report's data (what ``report.json`` holds).
    """
    out.mkdir(parents=True, exist_ok=True)
    data = to_dict(result, inputs=inputs)
    folder = out / "predictions"
    folder.mkdir(exist_ok=True)
    everything = list(range(len(result.all_test_docs)))
    saved = [(name, "", result.sample_index, spans) for name, spans in result.predictions.items()]
    saved += [(name, ".full", everything, spans) for name, spans in result.full_predictions.items()]
    for name, suffix, index, spans in saved:  # "doc": the document's index in the test file
        lines = [
            json.dumps(
                {"doc": i, "text": result.all_test_docs[i].text, "spans": [[s.start, s.end, s.label] for s in ss]}
            )
            for i, ss in zip(index, spans, strict=True)
        ]
        (folder / f"{slug(name)}{suffix}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    markdown, page = render_pages(data)
    (out / "report.md").write_text(markdown, encoding="utf-8")
    (out / "report.html").write_text(page, encoding="utf-8")
    return data


def render_pages(data: dict[str, Any]) -> tuple[str, str]:
    """The Markdown report and the self-contained HTML page (plotly inlined, several MB) of a report's data.

    ``data`` is what ``report.json`` holds (``to_dict``), so a stored report renders again without the run, e.g. the
    study's pages from their committed ``report.json`` (``docs/compare/render.py``).

    Returns:
        ``(markdown, html)``.
    """
    rows = data["rows"]
    labels = list(rows[0]["per_type"]) if rows else []
    markdown = _environment(html=False).get_template("compare.md.j2").render(r=data, labels=labels)
    page = _environment(html=True).get_template("compare.html.j2")
    return markdown, page.render(r=data, labels=labels, charts=_charts(data, labels))


def _environment(*, html: bool) -> Environment:
    """The templates' environment.

    The HTML page escapes every value (labels, row and project names come from the user's guide and project; only the
    plotly charts are inserted ``|safe``); Markdown is written as it is.
    """
    env = Environment(loader=PackageLoader("ml", "templates"), autoescape=html)
    env.filters["num"] = _num
    return env


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _charts(data: dict[str, Any], labels: list[str]) -> list[str]:
    """The plots as HTML fragments; plotly.js is inlined once, in the first."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = data["rows"]
    llm = [r for r in rows if r["kind"] == "llm"]
    tuned = [r for r in rows if r["kind"] == "fine-tuned"]
    curves = make_subplots(rows=1, cols=max(1, len(labels)), subplot_titles=labels, shared_yaxes=True)
    for i, label in enumerate(labels, start=1):
        for arch in data["options"]["architectures"]:
            points = [r for r in tuned if r["architecture"] == arch]
            curves.add_trace(
                go.Scatter(
                    x=[r["labels_per_type"][label] for r in points],
                    y=[r["per_type"][label]["f1"] for r in points],
                    mode="lines+markers",
                    name=arch,
                    legendgroup=arch,
                    showlegend=i == 1,
                ),
                row=1,
                col=i,
            )
        for r in llm:
            curves.add_hline(y=r["per_type"][label]["f1"], line_dash="dot", row=1, col=i, annotation_text=r["name"])
        curves.update_xaxes(title_text=f"{label} labels", row=1, col=i)
    curves.update_yaxes(title_text="exact F1 (test)", range=[0, 1], row=1, col=1)
    curves.update_layout(height=420, title="F1 against labels per type; dotted: the LLM rows")
    figures = [curves]
    cost = _cost_figure(data)
    if cost is not None:
        figures.append(cost)
    return [
        fig.to_html(full_html=False, include_plotlyjs=i == 0, div_id=f"chart-{i}", config={"displaylogo": False})
        for i, fig in enumerate(figures)
    ]


def _cost_figure(data: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    rows = {r["name"]: r for r in data["rows"]}
    evens = [b for b in data["break_even"] if b["volume"] is not None]
    llm_name = data["break_even"][0]["llm_row"] if data["break_even"] else None
    if llm_name is None:
        return None
    chosen = min(evens, key=lambda b: b["volume"]) if evens else None
    top = max(10_000.0, 2 * chosen["volume"]) if chosen else 10_000.0
    xs = [top * i / 50 for i in range(51)]
    llm = rows[llm_name]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs, y=[x * llm["cost_per_1k_docs"] / 1000 for x in xs], name=llm_name))
    for name in [b["row"] for b in data["break_even"]] if chosen is None else [chosen["row"]]:
        r = rows[name]
        fixed = r["labelling_cost"] + r["train_cost"]
        fig.add_trace(go.Scatter(x=xs, y=[fixed + x * r["cost_per_1k_docs"] / 1000 for x in xs], name=name))
    if chosen is not None:
        fig.add_vline(x=chosen["volume"], line_dash="dash", annotation_text=f"break-even {chosen['volume']:,.0f} docs")
    fig.update_layout(height=420, title="Cost against volume", xaxis_title="documents", yaxis_title="US dollars")
    return fig
