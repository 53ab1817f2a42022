"""The LLM pass's window, on real databases with a scripted LLM server.

Before any model it takes the next unlabelled tasks by id, tops the window up as tasks get labelled, and completes what
``/predict`` left ``~llm-pending`` in place. Label Studio is an in-memory store here (what is pushed is what this test
counts); the same path on a real Label Studio and worker, with a task labelled while the LLM works:
tests/e2e/test_preannotation.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from sqlalchemy import select

from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.adapters.llm import OpenAIChatClient
from backend.db.models import Prediction
from backend.db.session import session_scope
from backend.ports import TaskName
from backend.services import preannotation
from backend.services.annotations import ingest
from backend.services.llm_annotation import LLMAnnotator
from backend.services.predictions import version_tag
from backend.services.projects import register_project
from backend.services.routing import routing_table
from backend.services.scoring import llm_pass
from backend.settings import LLMSettings
from tests.conftest import sessions_for
from tests.integration.conftest import LS_PROJECT, annotation_event
from tests.integration.scripted_llm import Script, scripted_llm

pytestmark = pytest.mark.integration
TEXTS = {
    11: "Peter Blackburn visited Brussels .",
    12: "Anna Smith joined Reuters .",
    13: "Robert Lewandowski scored twice .",
    14: "Maria Sharapova won in Paris .",
    15: "Angela Merkel spoke in Berlin .",
    16: "Boris Becker coached Novak Djokovic .",
    17: "Serena Williams played in Melbourne .",
}


@dataclass
class Store:
    """Label Studio's tasks and predictions in memory."""

    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    version: str | None = None

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [{"id": i, "data": {"text": t}, "annotations": []} for i, t in TEXTS.items()]

    def task_text(self, task_id: int, *, field: str = "text") -> str | None:
        return TEXTS.get(task_id)

    def push_prediction(self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str) -> int:
        new_id = 1000 + len(self.predictions)
        self.predictions[new_id] = {"task": task_id, "result": result, "score": score, "model_version": model_version}
        return new_id

    def update_prediction(
        self, prediction_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        self.predictions[prediction_id].update(result=result, score=score, model_version=model_version)

    def set_model_version(self, project_id: int, model_version: str) -> None:
        self.version = model_version

    def task_predictions(self, task_id: int) -> dict[int, str]:
        return {i: p["model_version"] for i, p in self.predictions.items() if p["task"] == task_id}

    def delete_prediction(self, prediction_id: int) -> None:
        del self.predictions[prediction_id]

    def on(self, task_id: int) -> list[dict[str, Any]]:
        return [p for p in self.predictions.values() if p["task"] == task_id]


def _label(db: Any, task_id: int) -> None:
    ingest(db, annotation_event(task_id=task_id, annotation_id=task_id, text=TEXTS[task_id], spans=[(0, 5, "person")]))
    db.commit()


def test_the_window_follows_the_queue_and_completes_pending_answers_in_place(
    database_url: str, redis_url: str, conll_guide: Guide
) -> None:
    store = Store()
    jobs = CeleryJobQueue(redis_url)
    with scripted_llm(Script()) as url, sessions_for(database_url) as sessions, session_scope(sessions) as db:
        settings = LLMSettings(base_url=url, response_format="none", max_retries=0, timeout_s=5, demonstrations=0)
        annotator = LLMAnnotator(OpenAIChatClient(settings), settings, sessions)
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=1000)
        tag = version_tag(project, routing_table(db, project))  # no model: every type goes to the LLM
        assert preannotation.window_due(db, project, window=3)

        assert llm_pass(db, project, store, annotator, limit=3) == 3  # the first three by id, in that order
        assert [p["task"] for p in sorted(store.predictions.values(), key=lambda p: p["score"])] == [11, 12, 13]
        assert all(p["model_version"] == tag and p["result"] for p in store.predictions.values())
        assert store.version == tag  # Label Studio orders by this version's scores
        assert not preannotation.window_due(db, project, window=3)
        assert preannotation.follow_queue(db, project, jobs, window=3) is None
        assert llm_pass(db, project, store, annotator, limit=3) == 0  # redelivered: the window is full

        _label(db, 11)
        _label(db, 12)  # the annotators move on: two tasks to top up, never a labelled one
        job = preannotation.follow_queue(db, project, jobs, window=3)
        # coalesced
        assert job is not None
        assert preannotation.follow_queue(db, project, jobs, window=3) is None
        assert redis.Redis.from_url(redis_url).llen("llm") == 1
        jobs.started(TaskName.LLM_PREANNOTATE, project.id)
        assert llm_pass(db, project, store, annotator, limit=3) == 2
        assert sorted(p["task"] for p in store.predictions.values()) == [11, 12, 13, 14, 15]

        # /predict answered task 17 without the LLM part; Label Studio stored that answer
        answered = {"result": [], "score": 1.0}
        pending_id = store.push_prediction(17, result=[], score=1.0, model_version=f"{tag}~llm-pending")
        assert preannotation.defer_llm_part(db, project, tag=tag, tasks=[(17, answered)]) == 1
        assert preannotation.window_due(db, project, window=3)  # the window is full, but the part was promised
        assert llm_pass(db, project, store, annotator, limit=3) == 1
        (completed,) = store.on(17)
        assert completed is store.predictions[pending_id]  # updated in place: one prediction
        assert completed["model_version"] == tag
        assert {r["value"]["labels"][0] for r in completed["result"]} == {"person"}
        rows = {r.ls_task_id: r for r in db.scalars(select(Prediction))}
        assert rows[17].complete
        assert rows[17].ls_prediction_id == pending_id
        assert store.on(16) == []  # not needed: three complete tasks are still ahead (13, 14, 15)

        # a task deleted in Label Studio after /predict answered it: its row goes, nothing is pushed, no error
        assert preannotation.defer_llm_part(db, project, tag=tag, tasks=[(16, answered)]) == 1
        del TEXTS[16]
        try:
            assert llm_pass(db, project, store, annotator, limit=3) == 0
        finally:
            TEXTS[16] = "Boris Becker coached Novak Djokovic ."
        assert 16 not in {r.ls_task_id for r in db.scalars(select(Prediction))}
        assert store.on(16) == []
        annotator.close()
