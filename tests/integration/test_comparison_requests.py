"""Asking for a project's comparison (issue #13 review).

Bounded options refused with a 422 naming the field, other options while one is live refused with a 409 naming them, a
running comparison kept alive by its heartbeat thread through a long silent step, a queued one left alone while it may
wait behind a training, an unreachable broker answered in one line (API and CLI) and retried by asking again, and the
answers described in OpenAPI. Real database (SQLite and PostgreSQL), real Redis, the real Celery client; no worker (the
jobs only wait in Redis).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.db.models import Comparison, utcnow
from backend.db.session import make_engine, session_factory
from backend.errors import UpstreamError
from backend.services import comparison
from backend.services.annotations import ingest
from backend.services.projects import project_by_id
from backend.settings import get_settings
from tests.conftest import open_db
from tests.integration.conftest import LS_PROJECT, Backend, conll_events, wait_until
from workers.cli import app

OPTIONS: dict[str, Any] = {"shots": [0], "strategies": ["similar"], "sizes": [10], "limit_llm": 2, "max_steps": 30}
UNREACHABLE = "redis://127.0.0.1:1/0"


def _label(backend: Backend, shared_data: Path, guide: Guide, n: int = 6) -> None:
    with open_db(backend.settings.database_url) as db:
        for event in conll_events(shared_data, guide, n, ls_project=LS_PROJECT):
            ingest(db, event)


def _set(backend: Backend, comparison_id: int, **values: Any) -> None:
    with open_db(backend.settings.database_url) as db:
        db.execute(update(Comparison).where(Comparison.id == comparison_id).values(**values))


OUT_OF_BOUNDS: list[tuple[dict[str, Any], str]] = [
    ({"shots": [0, -1]}, "shots"),
    ({"shots": [1000]}, "shots"),
    ({"sizes": [0]}, "sizes"),
    ({"sizes": [-5, None]}, "sizes"),
    ({"sizes": []}, "sizes"),
    ({"sizes": list(range(1, 100))}, "sizes"),
    ({"max_steps": 10**9}, "max_steps"),
    ({"strategies": []}, "strategies"),
    ({"architectures": []}, "architectures"),
]


def test_options_out_of_bounds_are_a_422_naming_the_field(
    backend: Backend, shared_data: Path, conll_guide: Guide
) -> None:
    """Each case on the same project (one app and database per database kind: the cases store nothing)."""
    _label(backend, shared_data, conll_guide, 2)
    url = f"/api/projects/{backend.project_id}/comparison"
    for change, field in OUT_OF_BOUNDS:
        answer = backend.client.post(url, json={**OPTIONS, **change})
        assert answer.status_code == 422, (change, answer.text)
        assert answer.json()["error"].startswith(field), (change, answer.json())
        assert backend.client.get(url).json() is None, change  # nothing stored


def test_other_options_while_one_is_live_are_a_409_and_a_dead_or_lost_one_is_asked_again(
    backend: Backend, shared_data: Path, conll_guide: Guide
) -> None:
    _label(backend, shared_data, conll_guide)
    url = f"/api/projects/{backend.project_id}/comparison"
    first = backend.client.post(url, json=OPTIONS)
    assert first.status_code == 202, first.text
    assert first.json()["created"], first.text
    cid = first.json()["comparison"]["id"]
    assert not backend.client.post(url, json=OPTIONS).json()["created"]  # the same: a no-op
    other = backend.client.post(url, json={**OPTIONS, "shots": [0, 1]})
    assert other.status_code == 409, other.text
    assert "shots [0], asked [0, 1]" in other.json()["error"], other.text

    # queued 10 minutes (past the heartbeat timeout): it may wait behind a training, so it is not sent again
    _set(backend, cid, created_at=utcnow() - timedelta(minutes=10))
    assert not backend.client.post(url, json=OPTIONS).json()["created"]
    # queued longer than the train queue's longest task: its message was lost, it is sent again
    bound = comparison.queued_timeout_s(backend.settings)
    _set(backend, cid, created_at=utcnow() - timedelta(seconds=bound + 60))
    assert backend.client.post(url, json=OPTIONS).json()["created"]

    # running and beating: a no-op (the same options) or a conflict (others); silent: its process died, asked again
    _set(backend, cid, status="running", attempt=1, started_at=utcnow(), heartbeat_at=utcnow())
    assert not backend.client.post(url, json=OPTIONS).json()["created"]
    assert backend.client.post(url, json={**OPTIONS, "limit_llm": 3}).status_code == 409
    silent = backend.settings.run_heartbeat_timeout_s + 30
    _set(backend, cid, heartbeat_at=utcnow() - timedelta(seconds=silent))
    again = backend.client.post(url, json={**OPTIONS, "limit_llm": 3})
    assert again.status_code == 202
    assert again.json()["created"]
    assert again.json()["comparison"]["options"]["limit_llm"] == 3
    assert again.json()["comparison"]["status"] == "queued"


class _SlowSource:
    """A task source that blocks like one long LLM request (no progress report) until released, then fails."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        self.entered.set()
        assert self.release.wait(120), "never released"
        raise RuntimeError("the slow step gave up")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_running_comparison_beats_through_a_long_silent_step_and_is_not_asked_again(
    backend: Backend, shared_data: Path, conll_guide: Guide
) -> None:
    _label(backend, shared_data, conll_guide)
    settings = backend.settings.model_copy(update={"run_heartbeat_timeout_s": 2.0})  # a beat every 0.5 s
    with open_db(settings.database_url) as db:
        row, _ = comparison.start_comparison(
            db,
            project_by_id(db, backend.project_id),
            options=comparison.ComparisonOptions.model_validate(OPTIONS),
            heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
            queued_timeout_s=comparison.queued_timeout_s(settings),
        )
        cid = row.id
    engine = make_engine(settings.database_url)
    source, outcome = _SlowSource(), []
    worker = threading.Thread(
        target=lambda: outcome.append(
            comparison.run_comparison(
                session_factory(engine), settings, cid, source=lambda db, project: source, llm=None
            )
        )
    )
    worker.start()
    try:
        assert source.entered.wait(60)
        with open_db(settings.database_url) as db:
            first = db.get(Comparison, cid).heartbeat_at  # type: ignore[union-attr]
        beats = []

        def beat_moved_for_longer_than_the_timeout() -> bool:
            with open_db(settings.database_url) as db:
                beats.append(db.get(Comparison, cid).heartbeat_at)  # type: ignore[union-attr]
            return len(set(beats)) >= 3 and beats[-1] - first > timedelta(seconds=3)

        wait_until(beat_moved_for_longer_than_the_timeout, 60, lambda: f"no heartbeat: {beats[-3:]}")
        with open_db(settings.database_url) as db:  # 3 s into a silent step, past the 2 s timeout: still live
            row, created = comparison.start_comparison(
                db,
                project_by_id(db, backend.project_id),
                options=comparison.ComparisonOptions.model_validate(OPTIONS),
                heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
                queued_timeout_s=comparison.queued_timeout_s(settings),
            )
            assert (created, row.status, row.attempt) == (False, "running", 1)
    finally:
        source.release.set()
        worker.join(60)
        engine.dispose()
    assert outcome == ["failed"]
    with open_db(settings.database_url) as db:
        ended = db.get(Comparison, cid)
        assert ended is not None
        assert ended.status == "failed"
        assert "the slow step gave up" in (ended.error or "")


def test_an_unreachable_broker_is_one_line_and_asking_again_sends_it(
    backend: Backend, shared_data: Path, conll_guide: Guide, monkeypatch: pytest.MonkeyPatch
) -> None:
    _label(backend, shared_data, conll_guide)
    options = comparison.ComparisonOptions.model_validate(OPTIONS)
    with open_db(backend.settings.database_url) as db:
        project = project_by_id(db, backend.project_id)
        with pytest.raises(UpstreamError, match="was not sent: the broker is unreachable"):
            comparison.request_comparison(
                db, project, options=options, settings=backend.settings, jobs=CeleryJobQueue(UNREACHABLE)
            )
    latest = backend.client.get(f"/api/projects/{backend.project_id}/comparison").json()
    assert latest["status"] == "failed"
    assert "broker" in latest["error"]

    # the CLI: one line on stderr and exit 2, no traceback
    monkeypatch.setenv("NER_DATABASE_URL", backend.settings.database_url)
    monkeypatch.setenv("NER_REDIS_URL", UNREACHABLE)
    get_settings.cache_clear()
    try:
        shown = CliRunner().invoke(
            app, ["project", "compare", "--project", str(backend.project_id), "--shots", "0", "--no-wait"]
        )
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 2, shown.output
    assert "error: comparison" in shown.output
    assert "Traceback" not in shown.output

    # the broker is back: asking again sends it
    answer = backend.client.post(f"/api/projects/{backend.project_id}/comparison", json=OPTIONS)
    assert answer.status_code == 202, answer.text
    assert answer.json()["created"], answer.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_openapi_describes_the_answers(backend: Backend) -> None:
    paths = backend.client.get("/openapi.json").json()["paths"]["/api/projects/{project_id}/comparison"]
    posted = paths["post"]["responses"]
    assert posted["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/ComparisonStarted")
    assert {"409", "422", "502"} <= set(posted)
    got = paths["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert any(s.get("$ref", "").endswith("/LatestComparison") for s in got["anyOf"])
