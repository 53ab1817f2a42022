"""The loop with a real Celery worker process on the machine's Redis, PostgreSQL or SQLite, and real training."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.api.app import create_app
from backend.db.models import ModelVersion, Project, TrainingRun
from backend.ports import TaskName
from backend.services.label_state import StoredLabelsSource
from backend.services.projects import register_project
from backend.services.training import Trainer, manual_run
from backend.settings import LLMSettings, Settings
from ml.promotion import in_dev_split
from ml.training import TrainedModel
from tests.conftest import open_db, promote, sessions_for, stop_process
from tests.integration.conftest import conll_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NERLOOP = str(Path(sys.executable).parent / "nerloop")
THRESHOLD = 20


@dataclass
class Loop:
    settings: Settings
    client: TestClient
    project_id: int
    log: Path


def _env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "NER_DATABASE_URL": settings.database_url,
        "NER_REDIS_URL": settings.redis_url,
        "NER_MODEL_ROOT": str(settings.model_root),
        "NER_RETRAIN_MAX_STEPS": "120",
        "NER_DEV_FRACTION": "0.3",
    }


@pytest.fixture
def loop(database_url: str, redis_url: str, conll_guide: Guide, tmp_path: Path) -> Iterator[Loop]:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        model_root=tmp_path / "models",
        retrain_max_steps=120,
        dev_fraction=0.3,
        llm=LLMSettings(base_url="http://127.0.0.1:1/v1"),
    )
    with open_db(database_url) as db:
        project_id = register_project(db, ls_project_id=31, guide=conll_guide, retrain_threshold=THRESHOLD).id
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [NERLOOP, "worker", "--queues", "train,score,llm", "--concurrency", "1"],
            env=_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "ready" in log.read_text(), 90, f"the worker did not start; see {log}")
        with TestClient(create_app(settings)) as client:
            yield Loop(settings, client, project_id, log)
    finally:
        stop_process(worker)


def _runs(url: str) -> list[TrainingRun]:
    with open_db(url) as db:
        return list(db.scalars(select(TrainingRun).order_by(TrainingRun.id)))


def _finished(url: str, count: int) -> bool:
    runs = _runs(url)
    return len(runs) >= count and all(r.status in ("succeeded", "failed", "rejected") for r in runs)


def test_duplicate_burst_trains_once_then_crash_is_recorded(loop: Loop, shared_data: Path, conll_guide: Guide) -> None:
    events = conll_events(shared_data, conll_guide, THRESHOLD, ls_project=31)
    with ThreadPoolExecutor(max_workers=8) as pool:  # every event delivered three times, all at once
        replies = list(pool.map(lambda e: loop.client.post("/webhook", json=e).status_code, events * 3))
    assert set(replies) == {200}
    wait_until(lambda: _finished(loop.settings.database_url, 1), 240, f"no finished run; see {loop.log}")
    time.sleep(3)  # let any duplicate decision land before counting
    runs = _runs(loop.settings.database_url)
    assert len(runs) == 1, runs
    assert runs[0].status == "succeeded", (runs[0].status, runs[0].error)
    assert runs[0].annotation_watermark == THRESHOLD
    assert runs[0].progress == 1.0
    with open_db(loop.settings.database_url) as db:
        serving = db.get(Project, loop.project_id).current_version  # type: ignore[union-attr]
    assert serving == runs[0].model_version
    progress = loop.client.get(f"/api/runs/{runs[0].id}").json()
    assert progress["status"] == "succeeded"
    assert "decision" in progress["details"]
    # the dashboard's learning curve: the version's dev F1 against the labels per type it was trained on
    trained_on = Counter(
        r["value"]["labels"][0]
        for e in events
        if not in_dev_split("31", e["task"]["id"], fraction=loop.settings.dev_fraction)  # type: ignore[index]
        for r in e["annotation"]["result"]  # type: ignore[index]
    )
    board = loop.client.get(f"/api/projects/{loop.project_id}/progress").json()
    assert [v["version"] for v in board["versions"]] == [serving]
    # issue #12: the figures come from the held-out test half, with intervals, and the run keeps the gate's record
    version, run_shown = board["versions"][0], board["runs"][0]
    assert version["evaluated_on"] == "test"
    assert set(version["f1_interval"]) == set(conll_guide.labels)
    # nothing served before
    assert run_shown["details"]["test_docs"] >= 1
    assert run_shown["details"]["gate"] == {}
    assert {t["label"]: [p["labels"] for p in t["curve"]] for t in board["types"]} == {
        label: [trained_on.get(label, 0)] for label in conll_guide.labels
    }

    # a redelivered training message finds the run finished and does nothing
    CeleryJobQueue(loop.settings.redis_url).enqueue(TaskName.TRAIN_RUN, runs[0].id)
    wait_until(lambda: loop.log.read_text().count(f"run {runs[0].id}: succeeded") >= 2, 60, "redelivery not processed")
    assert [(r.status, r.model_version, r.finished_at) for r in _runs(loop.settings.database_url)] == [
        (runs[0].status, runs[0].model_version, runs[0].finished_at)
    ]
    with open_db(loop.settings.database_url) as db:
        assert db.scalar(select(func.count()).select_from(ModelVersion)) == 1

    # deleting every annotation crosses the next watermark: that run fails for a readable reason,
    # and the previous model keeps serving
    for i in range(THRESHOLD):
        loop.client.post(
            "/webhook", json={"action": "ANNOTATIONS_DELETED", "project": {"id": 31}, "annotations": [{"id": 5000 + i}]}
        )
    wait_until(lambda: _finished(loop.settings.database_url, 2), 120, f"second run did not end; see {loop.log}")
    failed = _runs(loop.settings.database_url)[1]
    assert failed.status == "failed"
    assert "label more tasks" in (failed.error or "")
    with open_db(loop.settings.database_url) as db:
        assert db.get(Project, loop.project_id).current_version == serving  # type: ignore[union-attr]
    for label in conll_guide.labels:
        loop.client.put(f"/api/projects/{loop.project_id}/routing/{label}", json={"route": "model"})
    predicted = loop.client.post(
        "/predict",
        json={"project": "31.1", "tasks": [{"id": 1, "data": {"text": "Peter Blackburn flew to Brussels ."}}]},
    )
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["results"][0]["model_version"].startswith(serving)  # type: ignore[arg-type]


def test_promotion_refuses_a_version_that_regresses(
    database_url: str, conll_guide: Guide, shared_data: Path, small_model: TrainedModel, tmp_path: Path
) -> None:
    settings = Settings(  # a cold candidate: a warm one would start from the serving weights (test_warm_retrain.py)
        database_url=database_url, model_root=tmp_path, retrain_max_steps=20, dev_fraction=0.3, retrain_warm_start=False
    )
    events = conll_events(shared_data, conll_guide, 40, ls_project=31)
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=31, guide=conll_guide, retrain_threshold=THRESHOLD)
        promote(db, project, small_model)
        from backend.services.annotations import ingest

        for event in events:
            ingest(db, event)
        run, _ = manual_run(db, project, trigger="cli")
        run_id = run.id
    with sessions_for(database_url) as sessions:
        trainer = Trainer(sessions, settings, lambda db, p: StoredLabelsSource(db, p))
        outcome = trainer.run(run_id)  # 40 sentences, 20 steps: worse than the serving model on every type
        again = trainer.run(run_id)
    assert outcome.status == "rejected"
    assert outcome.decision is not None
    assert outcome.decision.regressed
    with open_db(database_url) as db:
        assert db.scalars(select(Project)).one().current_version == small_model.version
        versions = {v.version: v.status for v in db.scalars(select(ModelVersion))}
    assert versions[outcome.model_version] == "rejected"  # type: ignore[index]
    # not trained again
    assert again.status == "rejected"
    assert again.model_version == outcome.model_version


def test_runs_whose_worker_died_are_expired(database_url: str, conll_guide: Guide) -> None:
    from datetime import timedelta

    from backend.db.models import utcnow
    from backend.services.run_liveness import expire_stale_runs
    from backend.services.training import request_run

    with open_db(database_url) as db:  # more rules in test_faults.py
        project = register_project(db, ls_project_id=31, guide=conll_guide)
        old, _ = request_run(db, project, trigger="cli", watermark=5)
        fresh, _ = request_run(db, project, trigger="cli", watermark=6)
        old.status, old.started_at = "running", utcnow() - timedelta(hours=5)
        db.flush()
        assert expire_stale_runs(db, timeout_s=180, project=project) == [old.id]
        assert old.status == "failed"
        assert "worker was lost" in (old.error or "")
        assert fresh.status == "queued"


def test_snapshot_failure_is_recorded_and_the_run_can_be_retried(
    database_url: str, conll_guide: Guide, shared_data: Path, tmp_path: Path
) -> None:
    from backend.errors import UpstreamError
    from backend.services.annotations import ingest

    class Unreachable:
        def export_tasks(self, project_id: int) -> list[dict[str, object]]:
            raise UpstreamError("cannot reach Label Studio at http://127.0.0.1:1 to list the project's tasks")

    settings = Settings(database_url=database_url, model_root=tmp_path)
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=31, guide=conll_guide)
        for event in conll_events(shared_data, conll_guide, 3, ls_project=31):
            ingest(db, event)
        run_id = manual_run(db, project, trigger="cli")[0].id
    with sessions_for(database_url) as sessions:
        outcome = Trainer(sessions, settings, lambda db, p: Unreachable()).run(run_id)
    assert outcome.status == "failed"
    with open_db(database_url) as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None
        assert run.status == "failed"
        assert "cannot reach Label Studio" in (run.error or "")
        retried, created = manual_run(db, db.scalars(select(Project)).one(), trigger="cli")
        assert created
        assert retried.id == run_id
        assert retried.status == "queued"
        assert retried.error is None
