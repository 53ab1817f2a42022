"""The dashboard's charts as plotly figures, built from the same schema the progress API answers.

A figure is ``{"data": [...], "layout": {...}}``, the JSON that ``Plotly.newPlot`` takes, so every figure is also in the
JSON API.

plotly.js draws them in the browser (it ships inside the ``plotly`` package and is served by the dashboard's own
route: no network); ``plotly.graph_objects.Figure`` validates each of them in the tests.
"""

from __future__ import annotations

import math
from typing import Any

from backend.api.quality import AgreementOut, ReviewOut
from backend.api.schemas import ComparisonResult, ProjectProgress, TypeProgress

Figure = dict[str, Any]
MARK_COLOURS = {"collecting": "#c55", "usable": "#e93", "good": "#4a7"}
TARGET_COLOUR = "#b33"
CONFIG = {"displaylogo": False, "responsive": True}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 300,
        "hovermode": "closest",
        **extra,
    }


def _hline(y: float, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A dashed horizontal line across the plot at ``y``, with its label at the right."""
    line = {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "y0": y,
        "y1": y,
        "line": {"color": TARGET_COLOUR, "dash": "dash", "width": 1},
    }
    note = {"xref": "paper", "x": 1, "y": y, "text": text, "showarrow": False, "xanchor": "right", "yanchor": "bottom"}
    return line, note


def labels_chart(data: ProjectProgress) -> Figure:
    """Labels per type (horizontal bars coloured by mark) against the guide's usable and good marks."""
    t = data.targets
    shapes, notes = [], []
    for value, name in ((t.usable_labels, "usable"), (t.good_labels, "good")):
        shapes.append(
            {
                "type": "line",
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "x0": value,
                "x1": value,
                "line": {"color": "#666", "dash": "dot", "width": 1},
            }
        )
        notes.append({"yref": "paper", "y": 1, "x": value, "text": f"{name} ({value:,})", "showarrow": False})
    bars = {
        "type": "bar",
        "orientation": "h",
        "y": [item.label for item in data.types],
        "x": [item.labels for item in data.types],
        "marker": {"color": [MARK_COLOURS[item.mark] for item in data.types]},
        "text": [item.mark for item in data.types],
        "hovertemplate": "%{y}: %{x:,} labels (%{text})<extra></extra>",
        "name": "labels",
    }
    top = max([t.good_labels, *(item.labels for item in data.types)]) * 1.1
    layout = _layout(
        "Labels per type", shapes=shapes, annotations=notes, xaxis={"range": [0, top], "title": {"text": "labels"}}
    )
    layout["yaxis"] = {"autorange": "reversed"}
    layout["height"] = max(220, 90 + 40 * len(data.types))  # a bar per type, however many the guide has
    return {"data": [bars], "layout": layout}


def _error(values: list[float | None], intervals: list[tuple[float, float] | None]) -> dict[str, Any]:
    """Asymmetric error bars from 95% intervals (0 where there is none)."""
    plus = [0.0 if v is None or i is None else i[1] - v for v, i in zip(values, intervals, strict=True)]
    minus = [0.0 if v is None or i is None else v - i[0] for v, i in zip(values, intervals, strict=True)]
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "thickness": 1}


def versions_chart(data: ProjectProgress) -> Figure:
    """Test F1 per type of every version, with its 95% interval, against the target.

    x: the versions, oldest first; a version's type that is not yet measurable is a hollow marker.
    """
    names = [v.version for v in data.versions]
    traces = []
    for item in data.types:
        label = item.label
        ys = [v.f1.get(label) for v in data.versions]
        intervals = [v.f1_interval.get(label) for v in data.versions]
        hollow = [not v.measurable.get(label, True) for v in data.versions]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "x": names,
                "y": ys,
                "error_y": _error(ys, intervals),
                "marker": {"symbol": ["circle-open" if h else "circle" for h in hollow], "size": 8},
                "text": [
                    f"{v.status}; n={v.support.get(label)}" + ("; not yet measurable" if h else "")
                    for v, h in zip(data.versions, hollow, strict=True)
                ],
                "hovertemplate": f"{label} %{{x}}: F1 %{{y:.3f}} (%{{text}})<extra></extra>",
            }
        )
    line, note = _hline(data.targets.f1, f"target {data.targets.f1:.2f}")
    layout = _layout(
        "Test F1 per version (95% interval)",
        shapes=[line],
        annotations=[note],
        yaxis={"range": [0, 1.05], "title": {"text": "F1"}},
        xaxis={"type": "category", "showticklabels": False, "title": {"text": "versions, oldest first"}},
    )
    return {"data": traces, "layout": layout}


def curve_chart(item: TypeProgress, *, target: float) -> Figure | None:
    """One type's learning curve.

    Each version that served (test F1 with its interval against the type's labels it was trained on, log scale), the
    fitted line F1 = a + b ln(labels) up to the target, and the forecast's 10-90% band of the labels that reach it
    (shaded). None when no version has served.
    """
    if not item.curve:
        return None
    xs = [p.labels for p in item.curve]
    ys: list[float | None] = [p.f1 for p in item.curve]
    points = {
        "type": "scatter",
        "mode": "markers",
        "name": "versions",
        "x": xs,
        "y": ys,
        "error_y": _error(ys, [p.interval for p in item.curve]),
        "marker": {"size": 8, "symbol": ["circle" if p.measurable else "circle-open" for p in item.curve]},
        "hovertemplate": "%{x:,} labels: F1 %{y:.3f}<extra></extra>",
    }
    traces: list[dict[str, Any]] = [points]
    fc = item.forecast
    shapes: list[dict[str, Any]] = []
    line, note = _hline(target, f"target {target:.2f}")
    shapes.append(line)
    reach = item.labels + fc.more_labels if fc.more_labels is not None else None
    high = max([*xs, item.labels, reach or 0])
    if fc.band is not None:
        low = item.labels + fc.band[0]
        top = item.labels + fc.band[1] if fc.band[1] is not None else high * 4
        high = max(high, top)
        shapes.append(
            {
                "type": "rect",
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "x0": max(1, low),
                "x1": max(1, top),
                "fillcolor": "rgba(39,119,170,0.15)",
                "line": {"width": 0},
                "layer": "below",
            }
        )
    if fc.intercept is not None and fc.slope is not None and fc.slope > 0:
        start = max(1, min(xs))
        grid = [start * (high / start) ** (i / 40) for i in range(41)] if high > start else [start]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "fit",
                "x": grid,
                "y": [min(1.0, fc.intercept + fc.slope * math.log(x)) for x in grid],
                "line": {"dash": "dot", "color": "#27a"},
                "hovertemplate": "fit: %{x:,.0f} labels, F1 %{y:.3f}<extra></extra>",
            }
        )
    if reach is not None and fc.more_labels:
        traces.append(
            {
                "type": "scatter",
                "mode": "markers",
                "name": "forecast",
                "x": [reach],
                "y": [target],
                "marker": {"symbol": "star", "size": 12, "color": TARGET_COLOUR},
                "hovertemplate": "target reached at about %{x:,} labels<extra></extra>",
            }
        )
    span = (max(1.0, min(xs) / 1.5), high * 1.5)
    layout = _layout(
        f"{item.label}: {_forecast_text(item)}",
        shapes=shapes,
        annotations=[note],
        showlegend=False,
        xaxis={"type": "log", "range": [math.log10(span[0]), math.log10(span[1])], "title": {"text": "labels"}},
        yaxis={"range": [0, 1.05], "title": {"text": "test F1"}},
    )
    if item.seconds_per_label:
        _hours_axis(traces, layout, span=span, seconds_per_label=item.seconds_per_label)
    return {"data": traces, "layout": layout}


HOUR_TICKS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000)


def _hours_axis(
    traces: list[dict[str, Any]], layout: dict[str, Any], *, span: tuple[float, float], seconds_per_label: float
) -> None:
    """A second x axis on top, in annotator hours (labels times the type's seconds per label).

    The same scale as the labels axis, ticks at round hours. An invisible copy of the first trace puts the axis on the
    chart.
    """
    ticks = [h for h in HOUR_TICKS if span[0] <= h * 3600 / seconds_per_label <= span[1]]
    if not ticks:  # the whole range is under 0.1 h or beyond 10,000 h: the title says the hours
        return
    layout["xaxis2"] = {
        "type": "log",
        "overlaying": "x",
        "matches": "x",
        "side": "top",
        "tickvals": [h * 3600 / seconds_per_label for h in ticks],
        "ticktext": [f"{h:g} h" for h in ticks],
        "showgrid": False,
        "title": {"text": "annotator hours", "standoff": 0},
    }
    layout["margin"] = {**layout["margin"], "t": 80}
    layout["title"]["y"] = 0.97
    first = traces[0]
    traces.append(
        {
            "type": "scatter",
            "mode": "markers",
            "x": first["x"],
            "y": first["y"],
            "xaxis": "x2",
            "opacity": 0,
            "hoverinfo": "skip",
            "showlegend": False,
            "name": "hours",
        }
    )


def _forecast_text(item: TypeProgress) -> str:
    """The forecast in words: labels still needed with the band, and annotator hours."""
    fc = item.forecast
    if fc.more_labels is None:
        return fc.reason
    if fc.more_labels == 0:
        return "target met"
    text = f"{fc.more_labels:,} more labels"
    if fc.band is not None:
        text += f" ({fc.band[0]:,} to {'more' if fc.band[1] is None else f'{fc.band[1]:,}'})"
    if fc.hours is not None:
        text += f", about {fc.hours:.1f} annotator hours"
    return text


def throughput_chart(data: ProjectProgress) -> Figure:
    """Annotations created per UTC day over the last week."""
    days = data.throughput.per_day
    bars = {
        "type": "bar",
        "x": [d.date for d in days],
        "y": [d.annotations for d in days],
        "marker": {"color": "#27a"},
        "hovertemplate": "%{x}: %{y:,} annotations<extra></extra>",
        "name": "annotations",
    }
    layout = _layout(
        f"Annotations per day ({data.throughput.last_24h:,} in the last 24 hours)",
        xaxis={"type": "category"},
        yaxis={"title": {"text": "annotations"}, "rangemode": "tozero"},
    )
    return {"data": [bars], "layout": layout}


def comparison_chart(result: ComparisonResult, *, target: float) -> Figure:
    """Exact micro F1 of every row of the newest comparison, with its 95% interval.

    The rows are the LLM prompts and models trained on growing label counts.
    """
    rows = result.rows
    ys: list[float | None] = [r.micro_f1 for r in rows]
    bars = {
        "type": "bar",
        "x": [r.name for r in rows],
        "y": ys,
        "error_y": _error(ys, [r.micro_f1_interval for r in rows]),
        "marker": {"color": ["#e93" if r.kind == "llm" else "#27a" for r in rows]},
        "text": [r.kind for r in rows],
        "hovertemplate": "%{x} (%{text}): micro F1 %{y:.3f}<extra></extra>",
        "name": "micro F1",
    }
    line, note = _hline(target, f"target {target:.2f}")
    layout = _layout(
        "Prompting vs fine-tuning: micro F1 on the test documents (95% interval)",
        shapes=[line],
        annotations=[note],
        yaxis={"range": [0, 1.05], "title": {"text": "micro F1"}},
        xaxis={"type": "category"},
    )
    return {"data": [bars], "layout": layout}


def agreement_chart(panel: AgreementOut, *, target: float) -> Figure:
    """Per type, the annotators' agreement beside the serving model's F1, against the target.

    The agreement is exact span F1 with its 95% interval: the ceiling.
    """
    labels = list(panel.per_type)
    agree: list[float | None] = [panel.per_type[label].f1 for label in labels]
    traces = [
        {
            "type": "bar",
            "name": "annotator agreement",
            "x": labels,
            "y": agree,
            "error_y": _error(agree, [panel.per_type[label].f1_interval for label in labels]),
            "marker": {"color": "#8a5"},
            "hovertemplate": "%{x}: agreement F1 %{y:.3f}<extra></extra>",
        },
        {
            "type": "bar",
            "name": "serving model",
            "x": labels,
            "y": [panel.per_type[label].model_f1 for label in labels],
            "marker": {"color": "#27a"},
            "hovertemplate": "%{x}: model F1 %{y:.3f}<extra></extra>",
        },
    ]
    line, note = _hline(target, f"target {target:.2f}")
    layout = _layout(
        "Annotator agreement (the ceiling) and model F1 per type",
        barmode="group",
        shapes=[line],
        annotations=[note],
        yaxis={"range": [0, 1.05], "title": {"text": "F1"}},
        xaxis={"type": "category"},
    )
    return {"data": traces, "layout": layout}


def review_chart(panel: ReviewOut) -> Figure:
    """Likely-mislabelled spans of the latest review pass, per type."""
    bars = {
        "type": "bar",
        "x": list(panel.by_type),
        "y": list(panel.by_type.values()),
        "marker": {"color": "#c55"},
        "hovertemplate": "%{x}: %{y:,} suspects<extra></extra>",
        "name": "suspects",
    }
    layout = _layout("Likely-mislabelled spans per type", xaxis={"type": "category"}, yaxis={"rangemode": "tozero"})
    return {"data": [bars], "layout": layout}


def project_charts(data: ProjectProgress) -> dict[str, Figure]:
    """Every chart of a project's page, by element id (``curve-<n>``: the n-th type of the guide that has one)."""
    charts: dict[str, Figure] = {"labels": labels_chart(data), "throughput": throughput_chart(data)}
    if data.versions:
        charts["versions"] = versions_chart(data)
    for index, item in enumerate(data.types):
        curve = curve_chart(item, target=data.targets.f1)
        if curve is not None:
            charts[f"curve-{index}"] = curve
    result = data.comparison.result if data.comparison is not None else None
    if result is not None and result.rows:
        charts["comparison"] = comparison_chart(result, target=data.targets.f1)
    if data.agreement is not None and data.agreement.tasks and data.agreement.per_type:
        charts["agreement"] = agreement_chart(data.agreement, target=data.targets.f1)
    if data.review is not None and data.review.by_type:
        charts["review"] = review_chart(data.review)
    return charts
