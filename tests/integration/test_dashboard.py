"""The leads' dashboard and its JSON, over HTTP, on real databases, from real webhook events and model versions."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from spacy.language import Language

from annotation_guide import Guide
from backend.db.models import Project
from backend.services.projects import record_model_version
from ml.converters import load_docs
from ml.training import TrainedModel
from tests.conftest import open_db
from tests.integration.conftest import Backend, annotation_event

pytestmark = pytest.mark.integration


def _versions(backend: Backend, model: TrainedModel, person_curve: list[tuple[int, float]]) -> list[str]:
    """Two real versions of the small model, each told the person labels it was trained on and its person F1."""
    names = []
    with open_db(backend.settings.database_url) as db:
        project = db.get(Project, backend.project_id)
        assert project is not None
        for index, (n, f1) in enumerate(person_curve):
            assert model.meta.metrics is not None
            per_type = model.meta.metrics.per_type
            metrics = model.meta.metrics.replace(
                per_type={**per_type, "person": replace(per_type["person"], f1=f1)},
                train_labels={"person": n, "location": 10 * (index + 1), "organisation": 5, "misc": 5},
            )
            name = f"{model.version}-{index}"
            record_model_version(
                db, project, version=name, path=str(model.path), architecture="cnn", metrics=metrics, promote=True
            )
            names.append(name)
    return names


def test_progress_and_dashboard_from_events_and_versions(
    backend: Backend, small_model: TrainedModel, conll_guide: Guide, shared_data: Path, blank_nlp: Language
) -> None:
    docs = load_docs(shared_data / "conll2003" / "dev.txt", blank_nlp, labels=conll_guide.labels).docs[:12]
    for task_id, doc in enumerate(docs, start=1):
        spans = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        event = annotation_event(task_id=task_id, annotation_id=task_id, text=doc.text, spans=spans)
        assert backend.client.post("/webhook", json=event).status_code == 200
    relabel = annotation_event(task_id=1, annotation_id=1, text=docs[0].text, spans=[], action="ANNOTATION_UPDATED")
    assert backend.client.post("/webhook", json=relabel).status_code == 200  # task 1's labels are gone now
    skip = annotation_event(task_id=99, annotation_id=99, text=docs[0].text, spans=[], was_cancelled=True)
    assert backend.client.post("/webhook", json=skip).status_code == 200  # a skip: no label, no throughput
    expected = Counter(e.label_ for doc in docs[1:] for e in doc.ents)
    names = _versions(backend, small_model, [(50, 0.5), (100, 0.6)])

    reply = backend.client.get(f"/api/projects/{backend.project_id}/progress")
    assert reply.status_code == 200
    data = reply.json()
    by_type = {t["label"]: t for t in data["types"]}
    assert {label: t["labels"] for label, t in by_type.items()} == {
        label: expected.get(label, 0) for label in conll_guide.labels
    }
    assert all(t["mark"] == "collecting" for t in data["types"])  # 12 sentences are far from 200 labels
    person = by_type["person"]
    assert [(p["labels"], p["f1"]) for p in person["curve"]] == [(50, 0.5), (100, 0.6)]
    assert all(p["interval"] is not None and p["measurable"] for p in person["curve"])  # the model's real intervals
    # on the line through both points F1 gains 0.1 per doubling: 0.85 is 3.5 doublings above 50 labels
    assert person["forecast"]["more_labels"] == math.ceil(50 * 2**3.5) - expected["person"]
    # every annotation took 3.5 s (lead_time): about 12 tasks' time over the person labels, in hours
    assert 3.5 * 11 / expected["person"] <= person["seconds_per_label"] <= 3.5 * 12 / expected["person"]
    hours = person["forecast"]["more_labels"] * person["seconds_per_label"] / 3600
    assert person["forecast"]["hours"] == pytest.approx(hours)
    assert person["forecast"]["band"] is not None
    misc = by_type["misc"]["forecast"]  # both versions saw 5 misc labels: no slope to extrapolate
    assert misc["more_labels"] is None
    assert misc["reason"].startswith("not enough data: needs versions trained on two")
    assert [v["version"] for v in data["versions"]] == names
    assert data["serving"] == names[-1]
    assert data["versions"][-1]["f1"]["person"] == 0.6
    assert data["versions"][-1]["meets_target"]["person"] is False
    assert data["throughput"]["last_24h"] == len(docs)  # created labels only: not the update, not the skip
    assert data["throughput"]["per_day"][-1]["annotations"] == len(docs)
    assert data["llm_costs"]["calls"] == 0
    assert data["llm_costs"]["per_1000_docs"] is None

    page = backend.client.get(f"/dashboard/{backend.project_id}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for label in conll_guide.labels:  # the types table: each type's labels
        n = expected.get(label, 0)
        assert f'<td>{label}</td>\n<td data-sort="{n}">{n:,}</td>' in html
    charts = json.loads(re.search(r'<script type="application/json" id="charts">(.*?)</script>', html, re.S)[1])
    assert {f"curve-{i}" for i in range(len(conll_guide.labels))} <= set(charts)  # a learning curve per type
    assert charts["labels"]["data"][0]["x"] == [expected.get(label, 0) for label in conll_guide.labels]
    assert f'<code id="serving">{names[-1]}</code>' in html
    assert f"{person['forecast']['more_labels']:,}" in html
    low, high = data["versions"][-1]["f1_interval"]["location"]  # each serving F1 with its interval and support
    assert f"[{low:.2f}, {high:.2f}]" in html
    assert "annotator hours" in html
    # the counts are remembered per label watermark: a new label shows at the next read, never a stale count
    more = annotation_event(task_id=500, annotation_id=500, text="Anna Smith visited Rome .", spans=[(0, 10, "person")])
    assert backend.client.post("/webhook", json=more).status_code == 200
    again = {
        t["label"]: t["labels"]
        for t in backend.client.get(f"/api/projects/{backend.project_id}/progress").json()["types"]
    }
    assert again == {
        **{label: expected.get(label, 0) for label in conll_guide.labels},
        "person": expected["person"] + 1,
    }
    index = backend.client.get("/dashboard")
    assert index.status_code == 200
    assert f'href="/dashboard/{backend.project_id}"' in index.text
    overview = backend.client.get("/api/overview").json()
    assert [(p["project_id"], p["labels"], p["serving"]) for p in overview] == [
        (backend.project_id, sum(again.values()), names[-1])
    ]
    serving = data["versions"][-1]
    met = [label for label, ok in serving["meets_target"].items() if ok and serving["measurable"][label]]
    assert overview[0]["types_at_target"] == len(met)
    assert overview[0]["latest_run"] is None
    assert [r["label"] for r in data["routing"]] == conll_guide.labels  # the routing table, with the figures
    script = backend.client.get("/dashboard/static/plotly.min.js")  # served from the plotly package: no network
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert backend.client.get("/dashboard/static/..%2Fapi%2Fdashboard.py").status_code == 404
    assert backend.client.get("/dashboard/4242").status_code == 404
    assert backend.client.get("/api/projects/4242/progress").status_code == 404
