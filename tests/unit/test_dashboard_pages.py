"""The dashboard's pages and charts from constructed progress data.

Every figure is a valid plotly figure, the pages escape what the guide and the runs hold, and the forecast's band lies
where the numbers say.
"""

from __future__ import annotations

import json
import re
from typing import Any

import plotly.graph_objects as go
import pytest

from backend.api.charts import curve_chart, project_charts
from backend.api.dashboard import _assets, render, render_overview
from backend.api.schemas import ProjectOverview, ProjectProgress

EVIL = "<script>alert(1)</script>"


def _forecast(labels: int, **extra: Any) -> dict[str, Any]:
    return {"labels": labels, "f1": 0.6, "target": 0.85, "more_labels": None, "reason": "not enough data", **extra}


def _progress(*, label: str = "person", run_error: str | None = None) -> dict[str, Any]:
    version = {
        "status": "promoted",
        "architecture": "cnn",
        "created_at": "2026-11-30T05:00:00+00:00",
        "micro_f1": 0.6,
        "micro_f1_interval": [0.5, 0.7],
        "support": {label: 40, "misc": 3},
        "measurable": {label: True, "misc": False},
        "meets_target": {label: False, "misc": False},
        "evaluated_on": "test",
    }
    return {
        "project_id": 1,
        "name": f"demo {EVIL}",
        "targets": {"f1": 0.85, "usable_labels": 200, "good_labels": 500},
        "serving": "v2",
        "types": [
            {
                "label": label,
                "labels": 300,
                "mark": "usable",
                "curve": [
                    {"labels": 100, "f1": 0.5, "interval": [0.4, 0.6], "measurable": True},
                    {"labels": 200, "f1": 0.6, "interval": [0.5, 0.7], "measurable": True},
                ],
                "forecast": _forecast(
                    300,
                    more_labels=1500,
                    reason="learning-curve fit",
                    intercept=-0.26,
                    slope=0.144,
                    band=[900, None],
                    hours=2.5,
                    hours_band=[1.5, None],
                ),
                "seconds_per_label": 6.0,
            },
            {
                "label": "misc",
                "labels": 3,
                "mark": "collecting",
                "curve": [],
                "forecast": _forecast(3),
                "seconds_per_label": None,
            },
        ],
        "versions": [
            {**version, "version": "v1", "status": "retired", "f1": {label: 0.5}, "f1_interval": {label: [0.4, 0.6]}},
            {
                **version,
                "version": "v2",
                "f1": {label: 0.6, "misc": 0.0},
                "f1_interval": {label: [0.5, 0.7], "misc": None},
            },
        ],
        "throughput": {
            "last_24h": 5,
            "per_day": [{"date": "2026-11-29", "annotations": 2}, {"date": "2026-11-30", "annotations": 5}],
        },
        "llm_costs": {
            "calls": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
            "dropped_entities": 0,
            "per_1000_docs": None,
        },
        "runs": [
            {
                "id": 3,
                "project_id": 1,
                "watermark": 20,
                "trigger": "threshold",
                "status": "failed" if run_error else "running",
                "stage": "train",
                "progress": 0.4,
                "eta_s": 60.0,
                "error": run_error,
                "model_version": None,
                "details": {"initialisation": {"mode": "warm"}},
                "created_at": "2026-11-30T05:00:00+00:00",
                "started_at": None,
                "heartbeat_at": None,
                "worker": None,
                "attempt": 1,
                "finished_at": None,
            }
        ],
        "routing": [
            {"label": label, "route": "llm", "source": "auto", "f1": 0.6, "target_f1": 0.85},
            {"label": "misc", "route": "model", "source": "override", "f1": 0.0, "target_f1": 0.85},
        ],
    }


def test_every_chart_is_a_valid_plotly_figure() -> None:
    data = ProjectProgress.model_validate(_progress())
    charts = project_charts(data)
    assert set(charts) == {"labels", "throughput", "versions", "curve-0"}  # misc has no served version: no curve
    for figure in charts.values():
        go.Figure(figure)  # plotly's own schema: raises on any unknown property or bad value
        assert figure["data"]
        assert all(trace.get("x") is not None for trace in figure["data"])


def _agree(label: str, f1: float | None, *, model_f1: float | None = None, below: bool = False) -> dict[str, Any]:
    measured = f1 is not None
    return {
        "label": label,
        "f1": f1,
        "partial_f1": None if f1 is None else f1 + 0.1,
        "f1_interval": None if f1 is None else [f1 - 0.1, f1 + 0.1],
        "spans": 30 if measured else 0,
        "measurable": measured,
        "model_f1": model_f1,
        "ceiling_below_target": below,
    }


def _panels(label: str) -> dict[str, Any]:
    """The comparison, agreement and review panels as their services return them (other keys pass through)."""
    row = {"kind": "fine-tuned", "micro_f1_interval": [0.5, 0.7], "cost_per_1k_docs": 0.001, "per_type": {}}
    return {
        "comparison": {
            "id": 2,
            "project_id": 1,
            "status": "running",
            "stage": "train",
            "progress": 0.5,
            "error": None,
            "result": {
                "comparison_id": 1,
                "label_watermark": 40,
                "finished_at": "2026-11-30T04:00:00+00:00",
                "rows": [
                    {**row, "name": "LLM similar 5-shot", "kind": "llm", "labels": None, "micro_f1": 0.4},
                    {**row, "name": f"cnn {EVIL}", "labels": 200, "micro_f1": 0.6},
                ],
                "break_even": [{"row": "cnn 200", "llm_row": "LLM similar 5-shot", "volume": 1234.5, "f1_gap": 0.2}],
                "overtake_labels": {"cnn": {label: 120.0}},
                "wall_s": 10.0,
            },
        },
        "agreement": {
            "project_id": 1,
            "target_f1": 0.85,
            "model_version": "v2",
            "left_out": 0,
            "labels": [label, "misc"],
            "tasks": 12,
            "annotators": ["1", "2"],
            "per_type": {label: _agree(label, 0.8, model_f1=0.6, below=True), "misc": _agree("misc", None)},
            "micro": _agree("micro", 0.8),
            "pairs": [],
            "bootstrap_samples": 1000,
            "min_support": 10,
        },
        "review": {
            "project_id": 1,
            "pass": {
                "id": 5,
                "model_version": "v2",
                "status": "succeeded",
                "docs": 40,
                "suspects": 2,
                "folds": 3,
                "seconds": 12.5,
                "finished_at": None,
            },
            "by_type": {label: 2},
            "by_kind": {"wrong_type": 1, "spurious": 1},
            "top": [
                {
                    "rank": 1,
                    "ls_task_id": 9,
                    "kind": "wrong_type",
                    "confidence": 0.97,
                    "text": EVIL,
                    "labelled": {"start": 0, "end": 4, "label": "misc"},
                    "model": {"start": 0, "end": 4, "label": label},
                    "resolved": False,
                },
                {
                    "rank": 2,
                    "ls_task_id": 11,
                    "kind": "spurious",
                    "confidence": 0.9,
                    "text": "Rome",
                    "labelled": None,
                    "model": {"start": 3, "end": 7, "label": label},
                    "resolved": True,
                },
            ],
            "review_view": {"title": "nerloop review", "prediction_model_version": "nerloop-review"},
            "last_attempt": {"id": 5, "model_version": "v2", "status": "succeeded", "error": None},
        },
    }


def test_panels_of_other_services_render_and_chart() -> None:
    data = ProjectProgress.model_validate({**_progress(), **_panels("person")})
    charts = project_charts(data)
    assert {"comparison", "agreement", "review"} <= set(charts)
    for name in ("comparison", "agreement", "review"):
        go.Figure(charts[name])
    html = render(data)
    for section in ("comparison-section", "agreement-section", "review-section", "chart-comparison"):
        assert f'id="{section}"' in html
    assert EVIL not in html
    assert "1,234" in html
    assert "below the target" in html
    assert "wrong type" in html
    # the API answers the panels whole: the fields the page does not read pass through, "pass" keeps its name
    dumped = data.model_dump(mode="json", by_alias=True)
    assert dumped["review"]["pass"]["folds"] == 3
    assert dumped["comparison"]["result"]["wall_s"] == 10.0
    assert dumped["agreement"]["annotators"] == ["1", "2"]
    # before any pass or comparison finished
    review = {**_panels("person")["review"], "pass": None, "by_type": {}, "by_kind": {}, "top": []}
    empty = {"comparison": {"id": 1, "status": "queued", "result": None}, "review": review}
    html = render(ProjectProgress.model_validate({**_progress(), **empty}))
    assert "No comparison has finished yet" in html
    assert "No review pass has finished yet" in html


def test_learning_curve_shows_the_fit_and_the_band_up_to_the_forecast() -> None:
    item = ProjectProgress.model_validate(_progress()).types[0]
    figure = curve_chart(item, target=0.85)
    assert figure is not None
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["versions", "fit", "forecast", "hours"]
    hours = figure["layout"]["xaxis2"]  # the top axis: annotator hours at the type's 6 s per label
    assert hours["matches"] == "x"
    assert hours["ticktext"] == ["0.25 h", "0.5 h", "1 h", "2 h", "5 h", "10 h"]
    assert hours["tickvals"][hours["ticktext"].index("1 h")] == 600
    fit = figure["data"][1]
    # the fitted line reaches the target where the forecast says: 300 + 1,500 labels
    assert fit["y"][0] == pytest.approx(-0.26 + 0.144 * 4.60517, abs=1e-3)
    assert figure["data"][2]["x"] == [1800]
    assert figure["data"][2]["y"] == [0.85]
    band = next(s for s in figure["layout"]["shapes"] if s["type"] == "rect")
    # 300 + 900 to "more": open to the right
    assert band["x0"] == 1200
    assert band["x1"] > 1800
    assert "1,500 more labels (900 to more), about 2.5 annotator hours" in figure["layout"]["title"]["text"]


def test_project_page_escapes_and_embeds_the_figures() -> None:
    data = ProjectProgress.model_validate(_progress(label=EVIL, run_error=EVIL))
    html = render(data)
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    embedded = re.search(r'<script type="application/json" id="charts">(.*?)</script>', html, re.S)
    assert embedded is not None
    charts = json.loads(embedded.group(1))
    assert charts == json.loads(json.dumps(project_charts(data)))  # the page carries exactly the figures
    assert charts["labels"]["data"][0]["y"] == [EVIL, "misc"]  # in the JSON, where the browser reads it as text
    for chart_id in charts:
        assert f'id="chart-{chart_id}"' in html
    # a rollback control for the version that served before, none for the serving one
    assert 'data-version="v1">serve again' in html.replace('class="rollback" data-project="1" ', "")
    assert html.count('class="rollback"') == 1
    assert html.count('class="route-apply"') == 2
    assert 'src="/dashboard/static/plotly.min.js"' in html
    assert "https://" not in html


def test_overview_page_lists_projects() -> None:
    item = ProjectOverview(
        project_id=4,
        ls_project_id=9,
        name=EVIL,
        serving=None,
        labelled_tasks=1200,
        labels=3456,
        types=4,
        types_at_target=1,
        latest_run=None,
    )
    html = render_overview([item])
    assert EVIL not in html
    assert 'href="/dashboard/4"' in html
    assert "3,456" in html
    assert "1 / 4" in html
    assert "no project yet" in render_overview([])


def test_assets_ship_inside_the_packages() -> None:
    assets = _assets()
    assert set(assets) == {"dashboard.js", "dashboard.css", "plotly.min.js"}
    assert all(path.is_file() for path in assets.values())
    assert assets["plotly.min.js"].stat().st_size > 1_000_000  # the whole bundle, no network needed
