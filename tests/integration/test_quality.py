"""Agreement per type and the review pass on the real database (SQLite and PostgreSQL): annotations arrive as
webhooks, the figures come back from the API and the CLI; a review pass trains its fold models for real, stores
its ranked suspects once per version and skips a version that no longer serves. The push to a real Label Studio
is tests/e2e/test_review_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.db.models import ReviewPass, ReviewSuspect
from backend.services.projects import project_by_id, record_model_version
from backend.services.review import review_summary, run_review
from ml.review import KINDS, ReviewSettings
from tests.conftest import open_db, sessions_for
from tests.integration.conftest import Backend, annotation_event, conll_events

pytestmark = pytest.mark.integration
NERLOOP = str(Path(sys.executable).parent / "nerloop")
TEXT = "Anna Smith met Bob Jones in Paris ."
ANNA, BOB, PARIS = (0, 10, "person"), (15, 24, "person"), (28, 33, "location")


def _label(backend: Backend, *, task: int, annotation: int, user: int, spans: list[tuple[int, int, str]]) -> None:
    body = annotation_event(task_id=task, annotation_id=annotation, text=TEXT, spans=spans)
    body["annotation"]["completed_by"] = user
    assert backend.client.post("/webhook", json=body).status_code < 300


def test_agreement_per_type_from_webhooks_to_the_api_and_the_cli(backend: Backend) -> None:
    _label(backend, task=1, annotation=1, user=1, spans=[ANNA, PARIS])
    _label(backend, task=1, annotation=2, user=2, spans=[ANNA, PARIS])
    _label(backend, task=2, annotation=3, user=1, spans=[ANNA, BOB])
    _label(backend, task=2, annotation=4, user=2, spans=[ANNA, (15, 24, "location")])  # Bob's type differs
    _label(backend, task=3, annotation=5, user=1, spans=[ANNA])  # one annotator: not compared
    skip = annotation_event(task_id=1, annotation_id=6, text=TEXT, spans=[], was_cancelled=True)
    skip["annotation"]["completed_by"] = 3  # a skip is no annotation to agree with
    assert backend.client.post("/webhook", json=skip).status_code < 300
    reply = backend.client.get(f"/api/projects/{backend.project_id}/agreement")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    assert body["tasks"] == 2 and body["annotators"] == ["1", "2"]
    # person: annotator 1 drew 3 (Anna twice, Bob), annotator 2 drew 2, 2 agree -> 2 * 2 / 5
    assert body["per_type"]["person"]["f1"] == pytest.approx(0.8)
    assert body["per_type"]["location"]["f1"] == pytest.approx(2 / 3)  # Paris agreed; Bob only by annotator 2
    assert body["per_type"]["misc"]["f1"] is None
    assert body["micro"]["f1"] == pytest.approx(0.75) and body["pairs"][0]["tasks"] == 2
    assert body["per_type"]["person"]["model_f1"] is None  # no version serves yet
    s = backend.settings
    env = {**os.environ, "NER_DATABASE_URL": s.database_url, "NER_REDIS_URL": s.redis_url}
    printed = subprocess.run(
        [NERLOOP, "agreement", "--project", str(backend.project_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "2 tasks with several annotators (1, 2)" in printed
    assert any(line.startswith("person") and "0.800" in line for line in printed.splitlines())


@pytest.mark.slow
def test_a_review_pass_stores_ranked_suspects_once_per_serving_version(
    backend: Backend, conll_guide: Guide, shared_data: Path, tmp_path: Path
) -> None:
    events = conll_events(shared_data, conll_guide, 40)
    for body in events[:4]:  # a few labels made wrong: every span's type swapped
        for region in body["annotation"]["result"]:
            region["value"]["labels"] = ["misc" if region["value"]["labels"][0] != "misc" else "person"]
    for body in events:
        assert backend.client.post("/webhook", json=body).status_code < 300
    settings = backend.settings.model_copy(
        update={
            "model_root": tmp_path,
            "review": ReviewSettings(folds=2, max_steps=60, min_docs=10, min_confidence=0.2),
        }
    )
    with open_db(settings.database_url) as db:
        project = project_by_id(db, backend.project_id)
        first = record_model_version(
            db, project, version="v1", path=str(tmp_path / "v1"), architecture="cnn", metrics={}, promote=True
        ).id
    with sessions_for(settings.database_url) as sessions:
        outcome = run_review(sessions, settings, project_id=backend.project_id, model_version_id=first, sink=None)
        assert outcome.status == "scored" and outcome.pass_id is not None
        with open_db(settings.database_url) as db:
            rows = db.scalars(select(ReviewSuspect).order_by(ReviewSuspect.rank)).all()
            stored = db.get(ReviewPass, outcome.pass_id)
            assert stored is not None and stored.docs == 40 and stored.suspects == len(rows) == outcome.suspects
            assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
            assert [r.confidence for r in rows] == sorted((r.confidence for r in rows), reverse=True)
            assert all(r.kind in KINDS and r.confidence >= 0.2 for r in rows)
            summary = review_summary(db, project_by_id(db, backend.project_id), limit=5)
        assert summary["pass"]["suspects"] == len(rows) and sum(summary["by_kind"].values()) == len(rows)
        assert [s["rank"] for s in summary["top"]] == list(range(1, min(5, len(rows)) + 1))
        # again: the stored pass is kept, nothing is trained or stored twice
        again = run_review(sessions, settings, project_id=backend.project_id, model_version_id=first, sink=None)
        assert again.pass_id == outcome.pass_id
        with open_db(settings.database_url) as db:
            assert db.scalar(select(func.count()).select_from(ReviewSuspect)) == len(rows)
            project = project_by_id(db, backend.project_id)
            record_model_version(
                db, project, version="v2", path=str(tmp_path / "v2"), architecture="cnn", metrics={}, promote=True
            )
        late = run_review(sessions, settings, project_id=backend.project_id, model_version_id=first, sink=None)
        assert late.status == "superseded"
    reply = backend.client.get(f"/api/projects/{backend.project_id}/review", params={"limit": 3})
    assert reply.status_code == 200 and reply.json()["pass"]["id"] == outcome.pass_id
    assert len(reply.json()["top"]) == min(3, len(rows))
