"""The leads' dashboard in real headless Chromium (Debian's ``chromium``, driven by Playwright).

The backend serves it under uvicorn on 127.0.0.1 from a real PostgreSQL database holding real label events, versions of
a really trained model and training runs, with basic auth on, as a lead's browser sees it.

Checked: the overview and the project page load without a console error or a failed request, every chart is drawn
by plotly.js (an SVG with traces), tables sort, the routing override and the rollback change the database, a live
run's progress follows the database, and a screenshot of each page is kept under ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotation_guide import Guide
from backend.api.app import create_app
from backend.db.models import (
    Comparison,
    ModelVersion,
    Project,
    ReviewPass,
    ReviewSuspect,
    RoutingOverride,
    TrainingRun,
    utcnow,
)
from backend.db.session import upgrade
from backend.services.projects import record_model_version
from ml.promotion import TypeComparison
from ml.training import TrainedModel
from tests.conftest import ROOT, open_db, serve_in_thread
from tests.e2e.conftest import E2E_REDIS_URL
from tests.integration import conftest as services
from tests.integration.conftest import backend_settings, conll_events, register_ls_project
from tests.integration.scripted_llm import Script, scripted_llm

pytestmark = pytest.mark.e2e

USER, PASSWORD = "lead", "s3cret-dashboard"
ARTIFACTS = Path(os.environ.get("NERLOOP_TEST_ARTIFACTS", ROOT / "test-artifacts"))
WAIT_MS = 30_000  # generous: the machine may be loaded


def chromium_executable() -> str:
    """Debian's Chromium (``NERLOOP_CHROMIUM`` overrides): Playwright never downloads a browser here."""
    given = os.environ.get("NERLOOP_CHROMIUM")
    found = given or next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
    if not found:
        pytest.fail(
            "Chromium is missing: `apt-get install -y chromium` (scripts/install.sh does it) or set NERLOOP_CHROMIUM"
        )
    return found


@dataclass
class Dashboard:
    """The served app: its base URL, database, project and the versions recorded in it (oldest first)."""

    url: str
    database_url: str
    project_id: int
    versions: list[str]


def _record_history(database_url: str, project_id: int, model: TrainedModel) -> list[str]:
    """Three versions of the real model (served, served and serving, rejected) and a finished run.

    The versions carry their learning-curve labels; the run carries its gate comparison.
    """
    names = []
    with open_db(database_url) as db:
        project = db.get(Project, project_id)
        assert project is not None
        for index, (person, f1) in enumerate([(40, 0.55), (120, 0.7), (160, 0.66)]):
            assert model.meta.metrics is not None
            per_type = model.meta.metrics.per_type
            metrics = model.meta.metrics.replace(
                per_type={**per_type, "person": replace(per_type["person"], f1=f1)},
                train_labels={"person": person, "location": 30 * (index + 1), "organisation": 20, "misc": 9},
            )
            name = f"{model.version}-v{index}"
            row = record_model_version(
                db, project, version=name, path=str(model.path), architecture="cnn", metrics=metrics, promote=index < 2
            )
            if index == 2:
                row.status = "rejected"
            names.append(name)
        gate = {
            label: asdict(TypeComparison(label, 0.7, 0.66, -0.04, (-0.09, 0.01), 25, False, "within the noise"))
            for label in ("person", "location")
        }
        db.add(
            TrainingRun(
                project_id=project_id,
                annotation_watermark=3,
                trigger="threshold",
                status="rejected",
                stage="done",
                progress=1.0,
                model_version=names[2],
                details={"decision": "kept the serving version", "gate_on": "test", "gate": gate},
                started_at=utcnow() - timedelta(minutes=5),
                finished_at=utcnow(),
            )
        )
        _record_quality(db, project_id, serving=names[1])
    return names


def _record_quality(db: Session, project_id: int, *, serving: str) -> None:
    """A finished prompting-vs-fine-tuning comparison and a review pass with two suspects.

    Stored as their jobs store them (the figures are constructed: the jobs themselves are tested by their own suites).
    """
    row = {"micro_f1_interval": [0.3, 0.5], "partial_micro_f1": 0.5, "per_type": {}, "cost_per_1k_docs": 0.01}
    result = {
        "rows": [
            {**row, "name": "LLM similar 5-shot", "kind": "llm", "labels": None, "micro_f1": 0.42},
            {**row, "name": "cnn 100", "kind": "fine-tuned", "labels": 100, "micro_f1": 0.38},
            {**row, "name": "cnn all", "kind": "fine-tuned", "labels": 400, "micro_f1": 0.61},
        ],
        "break_even": [{"row": "cnn all", "llm_row": "LLM similar 5-shot", "volume": 5400.0, "f1_gap": 0.19}],
        "overtake_labels": {"cnn": {"person": 180.0}},
    }
    db.add(
        Comparison(
            project_id=project_id,
            label_watermark=2,
            status="succeeded",
            stage="done",
            progress=1.0,
            result=result,
            finished_at=utcnow(),
        )
    )
    version_id = db.scalar(
        select(ModelVersion.id).where(ModelVersion.project_id == project_id, ModelVersion.version == serving)
    )
    assert version_id is not None
    review = ReviewPass(
        project_id=project_id,
        model_version_id=version_id,
        model_version=serving,
        status="pushed",
        docs=30,
        suspects=2,
        details={"folds": 3, "seconds": 4.2},
        finished_at=utcnow(),
    )
    db.add(review)
    db.flush()
    for rank, (kind, label, predicted) in enumerate([("wrong_type", "misc", "person"), ("spurious", None, "location")]):
        db.add(
            ReviewSuspect(
                pass_id=review.id,
                project_id=project_id,
                ls_task_id=1000 + rank,
                rank=rank + 1,
                kind=kind,
                confidence=0.95 - 0.1 * rank,
                start=None if label is None else 0,
                end=None if label is None else 4,
                label=label,
                predicted_start=0,
                predicted_end=4,
                predicted_label=predicted,
                text="EU's",
            )
        )


def _second_annotator(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same tasks labelled by a second annotator who leaves out every task's last entity: agreement below 1."""
    out = []
    for i, event in enumerate(events):
        again = json.loads(json.dumps(event))
        again["annotation"]["id"] = 90_000 + i
        again["annotation"]["completed_by"] = 2
        again["annotation"]["result"] = again["annotation"]["result"][:-1]
        out.append(again)
    return out


@pytest.fixture(scope="module")
def dashboard(conll_guide: Guide, small_model: TrainedModel, shared_data: Path) -> Iterator[Dashboard]:
    """The backend under uvicorn on 127.0.0.1, on a fresh PostgreSQL database, with basic auth.

    30 CoNLL sentences labelled through the webhook (12 of them by a second annotator too), a history of versions and
    runs, a finished comparison and a review pass. The server stops and the database is dropped after the module.
    """
    urls = services._postgres_database()
    database_url = next(urls)
    try:
        upgrade(database_url)
        with scripted_llm(Script()) as llm_url:
            config = backend_settings(
                database_url,
                E2E_REDIS_URL,
                llm_url,
                auth_username=USER,
                auth_password=SecretStr(PASSWORD),
                sweep_interval_s=0,
            )
            project_id = register_ls_project(config, conll_guide)
            versions = _record_history(database_url, project_id, small_model)
            with serve_in_thread(create_app(config), log_level="error") as port:
                url = f"http://127.0.0.1:{port}"
                with httpx.Client(base_url=url, auth=(USER, PASSWORD), timeout=30) as client:
                    events = conll_events(shared_data, conll_guide, 30)
                    for event in events + _second_annotator(events[:12]):
                        assert client.post("/webhook", json=event).status_code == 200
                yield Dashboard(url, database_url, project_id, versions)
    finally:
        redis.Redis.from_url(E2E_REDIS_URL).flushdb()  # the retrain checks the label events enqueued
        next(urls, None)  # drops the database


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium from the system (closed with Playwright after the module)."""
    with sync_playwright() as playwright:
        yield playwright.chromium.launch(executable_path=chromium_executable(), headless=True)


@dataclass
class Opened:
    page: Page
    problems: list[str]


@pytest.fixture
def opened(browser: Browser) -> Iterator[Opened]:
    """A page logged in with basic auth, recording console errors, page errors and failed requests."""
    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD, "send": "always"})
    page = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        yield Opened(page, problems)
    finally:
        context.close()


def _progress(dashboard: Dashboard) -> dict[str, Any]:
    reply = httpx.get(f"{dashboard.url}/api/projects/{dashboard.project_id}/progress", auth=(USER, PASSWORD))
    assert reply.status_code == 200
    data: dict[str, Any] = reply.json()
    return data


def _drawn_charts(page: Page) -> dict[str, int]:
    """Per chart element: how many plotly traces its SVG holds (0: not drawn)."""
    return dict(
        page.evaluate(
            """() => Array.from(document.querySelectorAll('div.chart')).map((el) => {
                const svg = el.querySelector('svg.main-svg');
                const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                const traces = el.querySelectorAll('g.trace').length;
                return [el.id, svg && box.width > 0 && box.height > 0 ? traces : 0];
            })"""
        )
    )


def _screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a real picture of the page, not an empty one
    return path


def test_browser_without_the_credentials_is_refused(browser: Browser, dashboard: Dashboard) -> None:
    """Without credentials, or with wrong ones, the browser is refused.

    With no credentials, headless Chromium has no prompt to show for the basic-auth challenge and gives up on the page;
    with wrong ones, the page is the 401.
    """
    page_url = f"{dashboard.url}/dashboard/{dashboard.project_id}"
    context = browser.new_context()
    try:
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            context.new_page().goto(page_url)
    finally:
        context.close()
    context = browser.new_context(http_credentials={"username": USER, "password": "wrong"})
    try:
        reply = context.new_page().goto(page_url)
        assert reply is not None
        assert reply.status == 401
    finally:
        context.close()


def test_overview_lists_projects_without_errors(opened: Opened, dashboard: Dashboard) -> None:
    page = opened.page
    reply = page.goto(f"{dashboard.url}/dashboard")
    assert reply is not None
    assert reply.status == 200
    row = page.locator("#projects tbody tr").filter(has=page.locator(f'a[href="/dashboard/{dashboard.project_id}"]'))
    expect(row).to_have_count(1)
    data = _progress(dashboard)
    serving = next(v for v in data["versions"] if v["version"] == data["serving"])
    at_target = sum(1 for label, met in serving["meets_target"].items() if met and serving["measurable"][label])
    expect(row.locator("td").nth(5)).to_have_text(f"{at_target} / {len(data['types'])}")
    labels = sum(t["labels"] for t in data["types"])
    expect(row.locator("td").nth(3)).to_have_text(f"{labels:,}")
    _screenshot(page, "dashboard-overview.png")
    assert opened.problems == []


def test_project_page_draws_every_chart_and_sorts(opened: Opened, dashboard: Dashboard) -> None:
    page = opened.page
    data = _progress(dashboard)
    reply = page.goto(f"{dashboard.url}/dashboard/{dashboard.project_id}")
    assert reply is not None
    assert reply.status == 200
    assert data["agreement"]["tasks"] == 12
    assert data["review"]["pass"]["suspects"] == 2
    assert len(data["comparison"]["result"]["rows"]) == 3
    panels = {"chart-comparison", "chart-agreement", "chart-review"}
    expected = {"chart-labels", "chart-throughput", "chart-versions", *panels} | {
        f"chart-curve-{i}" for i, t in enumerate(data["types"]) if t["curve"]
    }
    assert len(expected) > 3  # the served versions give learning curves
    page.wait_for_function(
        "n => document.querySelectorAll('div.chart svg.main-svg').length >= n", arg=len(expected), timeout=WAIT_MS
    )
    drawn = _drawn_charts(page)
    assert set(drawn) == expected, drawn
    assert all(traces > 0 for traces in drawn.values()), drawn
    # the bars of the labels chart are the counts of the API
    bars = page.locator("#chart-labels g.trace.bars g.point")
    expect(bars).to_have_count(len(data["types"]))
    # the types table sorts by labels, both ways
    header = page.locator("#types thead th").nth(1)
    header.click()
    counts = [t["labels"] for t in data["types"]]
    cells = page.locator("#types tbody tr td:nth-child(2)")
    expect(cells).to_have_text([f"{n:,}" for n in sorted(counts)])
    header.click()
    expect(cells).to_have_text([f"{n:,}" for n in sorted(counts, reverse=True)])
    expect(page.locator("#suspects tbody tr")).to_have_count(2)
    expect(page.locator("#comparison tbody tr")).to_have_count(3)
    # the gate of the finished run, with its interval
    expect(page.locator("#gate tbody tr")).to_have_count(2)
    expect(page.locator("#gate")).to_contain_text("[-0.090, +0.010]")
    _screenshot(page, "dashboard-project.png")
    assert opened.problems == []


def test_routing_override_from_the_page(opened: Opened, dashboard: Dashboard) -> None:
    page = opened.page
    page.goto(f"{dashboard.url}/dashboard/{dashboard.project_id}")
    row = page.locator('#routing tbody tr[data-label="misc"]')
    expect(row.locator(".source")).to_have_text("auto")
    row.locator("select.route-choice").select_option("model")
    row.locator("button.route-apply").click()
    expect(row.locator(".source")).to_have_text("override", timeout=WAIT_MS)
    expect(row.locator(".route")).to_have_text("model")
    with open_db(dashboard.database_url) as db:
        stored = db.scalars(select(RoutingOverride).where(RoutingOverride.project_id == dashboard.project_id)).all()
        assert [(r.label, r.route) for r in stored] == [("misc", "model")]
    row.locator("select.route-choice").select_option("auto")
    row.locator("button.route-apply").click()
    expect(row.locator(".source")).to_have_text("auto", timeout=WAIT_MS)
    with open_db(dashboard.database_url) as db:
        assert db.scalars(select(RoutingOverride).where(RoutingOverride.project_id == dashboard.project_id)).all() == []
    assert opened.problems == []


def test_rollback_from_the_page(opened: Opened, dashboard: Dashboard) -> None:
    page = opened.page
    page.goto(f"{dashboard.url}/dashboard/{dashboard.project_id}")
    with open_db(dashboard.database_url) as db:
        project = db.get(Project, dashboard.project_id)
        assert project is not None
        before = project.current_version
    earlier = next(v for v in dashboard.versions[:2] if v != before)  # served before; the rejected one never
    expect(page.locator(f'tr[data-version="{dashboard.versions[2]}"] button.rollback')).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation(timeout=WAIT_MS):  # the page reloads with the new serving version
        page.locator(f'tr[data-version="{earlier}"] button.rollback').click()
    expect(page.locator("#serving")).to_have_text(earlier)
    expect(page.locator(f'tr[data-version="{earlier}"] .status')).to_have_text("serving")
    with open_db(dashboard.database_url) as db:
        project = db.get(Project, dashboard.project_id)
        assert project is not None
        assert project.current_version == earlier
    assert opened.problems == []


def test_live_run_progress_follows_the_database(opened: Opened, dashboard: Dashboard) -> None:
    with open_db(dashboard.database_url) as db:
        run = TrainingRun(
            project_id=dashboard.project_id,
            annotation_watermark=1000,
            trigger="api",
            status="running",
            stage="train",
            progress=0.25,
            eta_s=240.0,
            started_at=utcnow(),
            heartbeat_at=utcnow(),
        )
        db.add(run)
        db.flush()
        run_id = run.id
    page = opened.page
    page.goto(f"{dashboard.url}/dashboard/{dashboard.project_id}")
    row = page.locator(f'#runs tr[data-run="{run_id}"]')
    expect(row.locator(".progress span")).to_have_text("25%")
    expect(row.locator(".eta")).to_have_text("240 s")
    with open_db(dashboard.database_url) as db:
        stored = db.get(TrainingRun, run_id)
        assert stored is not None
        stored.stage, stored.progress, stored.eta_s = "evaluate", 0.75, 30.0
    expect(row.locator(".progress span")).to_have_text("75%", timeout=WAIT_MS)
    expect(row.locator(".stage")).to_have_text("evaluate")
    expect(row.locator(".eta")).to_have_text("30 s")
    with open_db(dashboard.database_url) as db:
        stored = db.get(TrainingRun, run_id)
        assert stored is not None
        stored.status, stored.stage, stored.progress, stored.finished_at = "failed", "train", 0.75, utcnow()
        stored.error = "stopped by the test"
    # the run ended: the page reloads and shows its end
    expect(page.locator(f'#runs tr[data-run="{run_id}"][data-status="failed"]')).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator(f'#runs tr[data-run="{run_id}"]')).to_contain_text("stopped by the test")
    assert opened.problems == []
