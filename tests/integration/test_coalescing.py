"""Coalesced jobs on the machine's Redis.

A burst of label events leaves one pending retrain check per project, a check that has started lets the next event send
a new one (the last check is never lost), and a job that could not be sent leaves nothing pending.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from kombu.exceptions import OperationalError
from sqlalchemy import func, select

from backend.adapters.jobs import CeleryJobQueue, pending_key
from backend.db.models import AnnotationEvent, Project
from backend.ports import TaskName
from tests.conftest import open_db
from tests.integration.conftest import Backend, annotation_event

pytestmark = pytest.mark.integration
BURST = 200


def _event(i: int) -> dict[str, object]:
    return annotation_event(task_id=i, annotation_id=i, text="Peter Blackburn", spans=[(0, 15, "person")])


def test_a_burst_of_label_events_leaves_one_pending_retrain_check(backend: Backend) -> None:
    with open_db(backend.settings.database_url) as db:
        db.scalars(select(Project)).one().retrain_threshold = 5  # 40 threshold crossings in the burst
    broker = redis.Redis.from_url(backend.settings.redis_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda i: backend.client.post("/webhook", json=_event(i)), range(1, BURST + 1)))
    assert [r.status_code for r in replies] == [200] * BURST
    queued = [r.json() for r in replies if r.json().get("queued")]
    assert len(queued) >= 40  # every event that made a retrain due was covered ...
    assert sum(not r.get("coalesced") for r in queued) == 1  # ... by one job
    assert broker.llen("score") == 1
    assert broker.exists(pending_key(TaskName.RETRAIN_IF_DUE, backend.project_id))
    with open_db(backend.settings.database_url) as db:  # nothing left for the sweep to re-send
        assert not db.scalar(select(func.count()).where(AnnotationEvent.enqueued.is_(False)))

    # the worker starts the check (it removes the marker before it reads the labels): the next event sends anew
    CeleryJobQueue(backend.settings.redis_url).started(TaskName.RETRAIN_IF_DUE, backend.project_id)
    after = backend.client.post("/webhook", json=_event(BURST + 1)).json()
    assert after["queued"] is True
    assert "coalesced" not in after
    assert broker.llen("score") == 2


def test_a_job_that_cannot_be_sent_leaves_nothing_pending(backend: Backend) -> None:
    marker = redis.Redis.from_url(backend.settings.redis_url)
    jobs = CeleryJobQueue(backend.settings.redis_url)
    jobs._app.conf.broker_url = "redis://127.0.0.1:1/0"  # the messages cannot go out; the marker can be set
    with pytest.raises(OperationalError):
        jobs.enqueue_once(TaskName.LLM_PREANNOTATE, backend.project_id)
    assert not marker.exists(pending_key(TaskName.LLM_PREANNOTATE, backend.project_id))
    sent = CeleryJobQueue(backend.settings.redis_url)
    first = sent.enqueue_once(TaskName.LLM_PREANNOTATE, backend.project_id)
    assert first is not None
    assert sent.enqueue_once(TaskName.LLM_PREANNOTATE, backend.project_id) is None
    assert marker.get(pending_key(TaskName.LLM_PREANNOTATE, backend.project_id)) == first.encode()
    assert marker.llen("llm") == 1
