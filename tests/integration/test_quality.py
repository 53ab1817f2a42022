"""Agreement per type and the review pass on the real database (SQLite and PostgreSQL).

Annotations arrive as webhooks, the figures come back from the API and the CLI; a review pass trains its fold models for
real, stores its ranked suspects once per version and skips a version that no longer serves. The push to a real Label
Studio is tests/e2e/test_review_e2e.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

import ml.review
from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.db.models import ReviewPass, ReviewSuspect, utcnow
from backend.services.projects import project_by_id, record_model_version
from backend.services.review import review_summary, run_review
from backend.services.sweep import sweep
from ml.promotion import held_out_role
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


def _serving(backend: Backend, tmp_path: Path, version: str = "v1") -> int:
    with open_db(backend.settings.database_url) as db:
        project = project_by_id(db, backend.project_id)
        return record_model_version(
            db, project, version=version, path=str(tmp_path / version), architecture="cnn", metrics=None, promote=True
        ).id


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
    assert body["tasks"] == 2
    assert body["annotators"] == ["1", "2"]
    # person: annotator 1 drew 3 (Anna twice, Bob), annotator 2 drew 2, 2 agree -> 2 * 2 / 5
    assert body["per_type"]["person"]["f1"] == pytest.approx(0.8)
    assert body["per_type"]["location"]["f1"] == pytest.approx(2 / 3)  # Paris agreed; Bob only by annotator 2
    assert body["per_type"]["misc"]["f1"] is None
    assert body["micro"]["f1"] == pytest.approx(0.75)
    assert body["pairs"][0]["tasks"] == 2
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
    backend: Backend, conll_guide: Guide, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = conll_events(shared_data, conll_guide, 40)
    key, fraction = str(backend_ls_project(backend)), backend.settings.dev_fraction
    role = {int(body["task"]["id"]): held_out_role(key, int(body["task"]["id"]), fraction=fraction) for body in events}
    train_ids = {task for task, r in role.items() if r == "train"}
    held_out = set(role) - train_ids
    # both kinds are there to tell apart
    assert held_out
    assert len(train_ids) >= 20
    corrupted = set()
    for body in events:  # a few training labels made wrong: every span's type swapped
        if int(body["task"]["id"]) in train_ids and len(corrupted) < 4 and body["annotation"]["result"]:
            corrupted.add(int(body["task"]["id"]))
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
    trained: list[int] = []  # the fold models trained, counted around the real training
    real_fold_model = ml.review._fold_model
    monkeypatch.setattr(
        ml.review, "_fold_model", lambda docs, *a, **k: trained.append(len(docs)) or real_fold_model(docs, *a, **k)
    )
    first = _serving(backend, tmp_path)
    with sessions_for(settings.database_url) as sessions:
        outcome = run_review(sessions, settings, project_id=backend.project_id, model_version_id=first, sink=None)
        assert outcome.status == "scored"
        assert outcome.pass_id is not None
        assert len(trained) == 2
        with open_db(settings.database_url) as db:
            rows = db.scalars(select(ReviewSuspect).order_by(ReviewSuspect.rank)).all()
            stored = db.get(ReviewPass, outcome.pass_id)
            # only the training half is reviewed: no held-out (dev or test) task is read or suspected
            assert stored is not None
            assert stored.docs == len(train_ids)
            assert stored.suspects == len(rows)
            assert rows
            assert {r.ls_task_id for r in rows} <= train_ids
            assert not {r.ls_task_id for r in rows} & held_out
            assert corrupted & {r.ls_task_id for r in rows}  # the swapped labels are found
            assert [r.rank for r in rows] == list(range(1, len(rows) + 1))
            assert [r.confidence for r in rows] == sorted((r.confidence for r in rows), reverse=True)
            assert all(r.kind in KINDS and r.confidence >= 0.2 for r in rows)
            first_rows = [(r.id, r.rank) for r in rows]
            scored_at = stored.finished_at
            summary = review_summary(db, project_by_id(db, backend.project_id), limit=5)
        assert summary["pass"]["suspects"] == len(rows)
        assert sum(summary["by_kind"].values()) == len(rows)
        assert [s["rank"] for s in summary["top"]] == list(range(1, min(5, len(rows)) + 1))
        # again: the stored pass is kept; no fold model is trained and no suspect stored twice
        again = run_review(sessions, settings, project_id=backend.project_id, model_version_id=first, sink=None)
        assert again.pass_id == outcome.pass_id
        assert len(trained) == 2
        with open_db(settings.database_url) as db:
            kept = db.scalars(select(ReviewSuspect).order_by(ReviewSuspect.rank)).all()
            assert [(r.id, r.rank) for r in kept] == first_rows
            assert db.get(ReviewPass, outcome.pass_id).finished_at == scored_at  # type: ignore[union-attr]
            assert db.scalar(select(func.count()).select_from(ReviewPass)) == 1
        _serving(backend, tmp_path, "v2")
        late = run_review(sessions, settings, project_id=backend.project_id, model_version_id=first, sink=None)
        assert late.status == "superseded"
        assert len(trained) == 2
    reply = backend.client.get(f"/api/projects/{backend.project_id}/review", params={"limit": 3})
    assert reply.status_code == 200
    assert reply.json()["pass"]["id"] == outcome.pass_id
    assert len(reply.json()["top"]) == min(3, len(rows))


def backend_ls_project(backend: Backend) -> int:
    with open_db(backend.settings.database_url) as db:
        return project_by_id(db, backend.project_id).ls_project_id


def test_post_review_sends_no_job_while_a_pass_is_live(backend: Backend, tmp_path: Path) -> None:
    version_id = _serving(backend, tmp_path)
    url = f"/api/projects/{backend.project_id}/review"
    first = backend.client.post(url)
    assert first.status_code == 202
    assert first.json() == {
        "project_id": backend.project_id,
        "model_version": "v1",
        "queued": True,
    }
    with open_db(backend.settings.database_url) as db:
        row = db.scalars(select(ReviewPass).where(ReviewPass.model_version_id == version_id)).one()
        assert row.status == "queued"
        assert row.attempt == 0
    assert backend.client.post(url).json()["queued"] is False  # queued a moment ago: one job is enough
    with open_db(backend.settings.database_url) as db:  # a worker claimed it and beats
        db.execute(update(ReviewPass).values(status="running", attempt=1, heartbeat_at=utcnow()))
    assert backend.client.post(url).json()["queued"] is False
    with open_db(backend.settings.database_url) as db:  # its worker died: silent past the heartbeat timeout
        silent = utcnow() - timedelta(seconds=backend.settings.run_heartbeat_timeout_s + 60)
        db.execute(update(ReviewPass).values(heartbeat_at=silent))
    assert backend.client.post(url).json()["queued"] is True
    with open_db(backend.settings.database_url) as db:  # done: nothing to ask for
        db.execute(update(ReviewPass).values(status="pushed"))
    assert backend.client.post(url).json()["queued"] is False


def test_a_live_pass_is_not_run_twice_and_a_silent_one_is_failed_by_the_sweep(backend: Backend, tmp_path: Path) -> None:
    version_id = _serving(backend, tmp_path)
    settings = backend.settings.model_copy(update={"model_root": tmp_path})
    leftover = tmp_path / f"project-{backend.project_id}" / ".review-1-1"
    (leftover / "fold-0").mkdir(parents=True)
    (leftover / "fold-0" / "train.spacy").write_bytes(b"x")
    with open_db(settings.database_url) as db:
        row = ReviewPass(
            project_id=backend.project_id,
            model_version_id=version_id,
            model_version="v1",
            status="running",
            attempt=1,
            heartbeat_at=utcnow(),
            details={"work_dir": str(leftover)},
        )
        db.add(row)
        db.flush()
        pass_id = row.id
    with sessions_for(settings.database_url) as sessions:
        # another worker runs it (a duplicate message, a second request): this one does nothing
        busy = run_review(sessions, settings, project_id=backend.project_id, model_version_id=version_id, sink=None)
        assert (busy.status, busy.pass_id) == ("running", pass_id)
        with open_db(settings.database_url) as db:
            assert db.get(ReviewPass, pass_id).attempt == 1  # type: ignore[union-attr]
        report = sweep(sessions, CeleryJobQueue(settings.redis_url), heartbeat_timeout_s=60, max_resend_interval_s=600)
        assert report.expired_reviews == []  # it beats
        with open_db(settings.database_url) as db:  # the worker was SIGKILLed: its heartbeat stops
            db.execute(update(ReviewPass).values(heartbeat_at=utcnow() - timedelta(seconds=120)))
        report = sweep(sessions, CeleryJobQueue(settings.redis_url), heartbeat_timeout_s=60, max_resend_interval_s=600)
        assert report.expired_reviews == [pass_id]
        with open_db(settings.database_url) as db:
            failed = db.get(ReviewPass, pass_id)
            assert failed is not None
            assert failed.status == "failed"
            assert "no heartbeat" in (failed.error or "")
        assert not leftover.exists()  # its fold models are removed
        # asked again: a new attempt claims it (no labels yet: skipped, with the reason)
        again = run_review(sessions, settings, project_id=backend.project_id, model_version_id=version_id, sink=None)
        assert (again.status, again.pass_id) == ("skipped", pass_id)
        with open_db(settings.database_url) as db:
            done = db.get(ReviewPass, pass_id)
            assert done is not None
            assert done.attempt == 2
            assert "0 labelled training tasks" in (done.error or "")


def test_a_pass_ranks_each_suspect_once(backend: Backend, tmp_path: Path) -> None:
    version_id = _serving(backend, tmp_path)
    with open_db(backend.settings.database_url) as db:
        row = ReviewPass(project_id=backend.project_id, model_version_id=version_id, model_version="v1")
        db.add(row)
        db.flush()
        pass_id = row.id

    def suspect(rank: int) -> ReviewSuspect:
        return ReviewSuspect(
            pass_id=pass_id, project_id=backend.project_id, ls_task_id=1, rank=rank, kind="missed", confidence=0.9,
            start=0, end=4, label="person", text="Anna",
        )  # fmt: skip

    with open_db(backend.settings.database_url) as db:
        db.add_all([suspect(1), suspect(1)])
        with pytest.raises(IntegrityError):
            db.flush()
        db.rollback()  # the failed flush left nothing to commit
