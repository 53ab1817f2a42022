"""The ML backend over HTTP, with real databases (SQLite and PostgreSQL), Redis and a real spaCy model."""

from __future__ import annotations

import base64
import json
import time

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.api.app import create_app
from backend.db.models import AnnotationEvent, LLMCall, Project, TrainingRun
from backend.ports import TaskName
from backend.services.training import retrain_if_due
from ml.training import TrainedModel
from tests.conftest import open_db, sessions_for
from tests.integration.conftest import (
    LS_PROJECT,
    REDIS_URL,
    Backend,
    annotation_event,
    backend_settings,
    register_ls_project,
)
from tests.integration.scripted_llm import Script, scripted_llm
from workers.sweep import sweep_unqueued

pytestmark = pytest.mark.integration
TEXTS = ["Peter Blackburn visited Brussels .", "The European Commission said on Thursday it disagreed .", ""]


def _predict(client: TestClient, texts: list[str], **extra: object) -> dict[str, object]:
    body = {
        "tasks": [{"id": i + 1, "data": {"text": t}} for i, t in enumerate(texts)],
        "project": f"{LS_PROJECT}.1700000000",
        "label_config": "<View/>",
        **extra,
    }
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _check_results(texts: list[str], results: list[dict[str, object]]) -> None:
    assert len(results) == len(texts)
    for text, item in zip(texts, results, strict=True):
        assert 0.0 <= float(item["score"]) <= 1.0  # type: ignore[arg-type]
        for region in item["result"]:  # type: ignore[attr-defined]
            value = region["value"]
            assert text[value["start"] : value["end"]] == value["text"]
            assert 0.0 <= region["score"] <= 1.0
            assert region["from_name"] == "label"
            assert region["to_name"] == "text"
            assert region["type"] == "labels"


def test_health_setup_versions(backend: Backend) -> None:
    client = backend.client
    assert client.get("/health").json()["status"] == "UP"
    started = time.monotonic()
    setup = client.post("/setup", json={"project": f"{LS_PROJECT}.1700000000", "schema": "<View/>"})
    assert setup.status_code == 200
    assert time.monotonic() - started < 3
    assert setup.json()["model_version"].startswith("llm-only+")
    unknown = client.post("/setup", json={"project": "999.1"})
    assert unknown.status_code == 404
    assert "nerloop project create" in unknown.json()["error"]
    assert client.get("/versions").json() == {"versions": []}


def test_llm_only_predictions_are_found_in_the_text_cached_and_costed(backend: Backend) -> None:
    results = _predict(backend.client, TEXTS)["results"]
    _check_results(TEXTS, results)  # type: ignore[arg-type]
    first = results[0]  # type: ignore[index]
    # the scripted LLM upper-cases what it returns; the platform finds the real casing and drops what is absent
    assert [r["value"]["text"] for r in first["result"]] == ["Peter", "Blackburn", "Brussels"]
    assert results[2]["result"] == []  # type: ignore[index]
    assert results[2]["score"] == 1.0  # type: ignore[index]
    assert len({r["model_version"] for r in results}) == 1  # type: ignore[union-attr]
    asked = len(backend.script.requests)
    assert asked == 2  # the empty text is never sent
    assert _predict(backend.client, TEXTS)["results"] == results
    assert len(backend.script.requests) == asked  # served from the cache
    costs = backend.client.get(f"/api/projects/{backend.project_id}/llm-costs").json()
    assert costs == {
        "calls": 2,
        "prompt_tokens": 200,
        "completion_tokens": 40,
        "cost_usd": pytest.approx(2 * (100 * 2 + 20 * 10) / 1e6),
        "dropped_entities": 2,
        # 2 documents so far: 120 tokens each, and (100 * 2 + 20 * 10) / 1e6 dollars each
        "per_1000_docs": {"tokens": 120_000, "cost_usd": pytest.approx(1000 * (100 * 2 + 20 * 10) / 1e6)},
    }


def test_prompt_carries_the_guide_and_labeled_demonstrations(backend: Backend) -> None:
    event = annotation_event(
        task_id=11, annotation_id=5, text="Anna Smith flew to Paris .", spans=[(0, 10, "person"), (19, 24, "location")]
    )
    assert backend.client.post("/webhook", json=event).status_code == 200
    _predict(backend.client, ["Mary flew to Rome ."])
    messages = backend.script.requests[-1]["messages"]
    system = messages[0]["content"]
    assert all(label in system for label in ("person", "location", "organisation", "misc"))
    assert any("Anna Smith flew to Paris" in m["content"] for m in messages[1:-1])  # the labeled example as a demo
    assert messages[-1]["content"].endswith("Mary flew to Rome .") or "Mary flew to Rome ." in messages[-1]["content"]


def _threshold(backend: Backend, n: int) -> None:
    with open_db(backend.settings.database_url) as db:
        db.scalars(select(Project)).one().retrain_threshold = n


def test_webhook_enqueues_one_retrain_check_per_threshold_crossed(backend: Backend) -> None:
    """A label event sends a job only when a retrain can start: 10,000 events make a handful of jobs.

    A retrain can start when the labels crossed a multiple of the threshold above the last run and no run is queued
    or running, so 10,000 events do not make 10,000 jobs.
    """
    _threshold(backend, 5)
    score = redis.Redis.from_url(backend.settings.redis_url)

    def label(i: int) -> dict[str, object]:
        body = annotation_event(task_id=i, annotation_id=i, text="Peter Blackburn", spans=[(0, 15, "person")])
        reply = backend.client.post("/webhook", json=body).json()
        assert reply["status"] == "stored"
        assert reply["label_change"] is True
        return reply  # type: ignore[no-any-return]

    replies = [label(i) for i in range(1, 5)]
    assert score.llen("score") == 0
    assert all("queued" not in r for r in replies)
    assert label(5)["queued"] is True
    assert score.llen("score") == 1
    # due until a worker creates the run, and covered by the check already pending (coalesced per project)
    assert label(6)["coalesced"] is True
    assert score.llen("score") == 1
    CeleryJobQueue(backend.settings.redis_url).started(TaskName.RETRAIN_IF_DUE, backend.project_id)
    with open_db(backend.settings.database_url) as db:
        run = retrain_if_due(db, db.scalars(select(Project)).one())  # what the worker's check does
        assert run is not None
        assert run.annotation_watermark == 5
    assert all("queued" not in label(i) for i in range(7, 11))  # 10 crosses the next threshold while 5's run waits
    assert score.llen("score") == 1
    with open_db(backend.settings.database_url) as db:
        db.get_one(TrainingRun, run.id).status = "succeeded"
    assert label(11)["queued"] is True  # the first label after the run ends asks for the next one
    assert score.llen("score") == 2
    with open_db(backend.settings.database_url) as db:
        assert not db.scalars(select(AnnotationEvent).where(AnnotationEvent.enqueued.is_(False))).all()


def test_webhook_persists_once_and_enqueues_by_id(backend: Backend) -> None:
    _threshold(backend, 1)
    event = annotation_event(task_id=3, annotation_id=9, text="Peter Blackburn", spans=[(0, 15, "person")])
    first = backend.client.post("/webhook", json=event)
    assert first.status_code == 200
    assert first.json()["status"] == "stored"
    assert first.json()["queued"] is True
    again = backend.client.post("/webhook", json=event).json()
    assert again["status"] == "duplicate"
    assert again["event_id"] == first.json()["event_id"]
    with open_db(backend.settings.database_url) as db:
        assert db.scalar(select(func.count()).select_from(AnnotationEvent)) == 1
        assert db.scalars(select(AnnotationEvent)).one().enqueued
    queued = redis.Redis.from_url(backend.settings.redis_url).lrange("score", 0, -1)
    assert len(queued) == 1  # the redelivery did not enqueue twice
    message = json.loads(queued[0])
    assert message["headers"]["task"] == "workers.retrain_if_due"
    assert json.loads(base64.b64decode(message["body"]))[0] == [backend.project_id, first.json()["event_id"]]


def test_webhook_other_events(backend: Backend) -> None:
    client = backend.client
    deleted = client.post(
        "/webhook", json={"action": "ANNOTATIONS_DELETED", "project": {"id": LS_PROJECT}, "annotations": [{"id": 9}]}
    )
    assert deleted.json()["status"] == "stored"
    training = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": LS_PROJECT}})
    assert training.status_code == 200
    assert training.json()["job"]
    assert (
        client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}}).json()["status"] == "ignored"
    )
    bad = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": LS_PROJECT}})
    assert bad.status_code == 422
    assert "needs 'annotation' and 'task'" in bad.json()["error"]
    assert (
        client.post("/webhook", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    )
    unknown = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 4242}})
    assert unknown.status_code == 404


def test_webhook_keeps_the_event_when_the_broker_is_down(database_url: str, conll_guide: Guide) -> None:
    settings = backend_settings(database_url, "redis://127.0.0.1:1/0", "http://127.0.0.1:1/v1")
    register_ls_project(settings, conll_guide)
    with open_db(database_url) as db:
        db.scalars(select(Project)).one().retrain_threshold = 1  # this label event makes a retrain due
    with TestClient(create_app(settings, jobs=CeleryJobQueue("redis://127.0.0.1:1/0"))) as client:
        reply = client.post("/webhook", json=annotation_event(task_id=1, annotation_id=1, text="Bob", spans=[]))
    assert reply.status_code == 200
    assert reply.json()["status"] == "stored"
    assert reply.json()["queued"] is False
    with open_db(database_url) as db:
        assert db.scalars(select(AnnotationEvent)).one().enqueued is False
    # when a worker starts, the sweep sends it
    redis_url = REDIS_URL
    redis.Redis.from_url(redis_url).delete("score")
    with sessions_for(database_url) as sessions:
        assert sweep_unqueued(sessions, CeleryJobQueue(redis_url)) == 1
        with open_db(database_url) as db:
            assert db.scalars(select(AnnotationEvent)).one().enqueued is True
        assert redis.Redis.from_url(redis_url).llen("score") == 1
        assert sweep_unqueued(sessions, CeleryJobQueue(redis_url)) == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"tasks": [{"id": 1, "data": {}}], "project": "7.1"}, 422, "tasks.0.data"),
        ({"tasks": [{"id": 1, "data": {"text": "x" * 2001}}], "project": "7.1"}, 422, "2001 characters"),
        ({"tasks": [], "project": "abc"}, 422, "project"),
        ({"tasks": [], "project": "999.1"}, 404, "not registered"),
        ({"project": "7.1"}, 422, "tasks"),
    ],
)
def test_bad_predict_requests(backend: Backend, body: dict[str, object], status: int, message: str) -> None:
    response = backend.client.post("/predict", json=body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert "Traceback" not in response.text


def test_empty_batch(backend: Backend) -> None:
    assert _predict(backend.client, [])["results"] == []


def test_llm_garbage_gives_empty_predictions_and_counts_drops(backend: Backend) -> None:
    backend.script.mode = "garbage"
    results = _predict(backend.client, TEXTS[:2])["results"]
    assert [r["result"] for r in results] == [[], []]  # type: ignore[index]


def test_llm_timeout_is_a_clear_502_and_keeps_what_succeeded(backend: Backend) -> None:
    backend.script.delay_s = 8.0
    response = backend.client.post(
        "/predict",
        json={
            "project": "7.1",
            "tasks": [
                {"id": 1, "data": {"text": "Peter went home ."}},
                {"id": 2, "data": {"text": "SLOW Anna stayed ."}},
            ],
        },
    )
    assert response.status_code == 502
    assert "timed out" in response.json()["error"]
    assert "1 of 2" in response.json()["error"]
    with open_db(backend.settings.database_url) as db:
        assert db.scalar(select(func.count()).select_from(LLMCall)) == 1  # the answer that came back is kept


def test_llm_retries_429_with_backoff(database_url: str, redis_url: str, conll_guide: Guide) -> None:
    script = Script(fail_first=2, fail_status=429)
    with scripted_llm(script) as url:
        settings = backend_settings(database_url, redis_url, url)
        settings.llm.max_retries = 3
        register_ls_project(settings, conll_guide)
        with TestClient(create_app(settings)) as client:
            results = _predict(client, ["Peter went home ."])["results"]
    assert len(script.requests) == 3
    assert results[0]["result"]  # type: ignore[index]


def test_model_route_serves_the_fine_tuned_model(
    database_url: str, redis_url: str, conll_guide: Guide, small_model: TrainedModel
) -> None:
    script = Script()
    with scripted_llm(script) as url:
        settings = backend_settings(database_url, redis_url, url)
        project_id = register_ls_project(settings, conll_guide, small_model)
        with TestClient(create_app(settings)) as client:
            for label in conll_guide.labels:
                put = client.put(f"/api/projects/{project_id}/routing/{label}", json={"route": "model"})
                assert put.status_code == 200
            routes = client.get(f"/api/projects/{project_id}/routing").json()["routes"]
            assert {(r["route"], r["source"]) for r in routes} == {("model", "override")}
            texts = ["EU rejects German call to boycott British lamb .", "Peter Blackburn lives in London ."]
            results = _predict(client, texts)["results"]
            assert client.get("/versions").json()["versions"] == [small_model.version]
            bad = client.put(f"/api/projects/{project_id}/routing/company", json={"route": "model"})
    _check_results(texts, results)  # type: ignore[arg-type]
    assert script.requests == []  # every type on the model: the LLM is never asked
    assert results[0]["model_version"].startswith(small_model.version)  # type: ignore[index]
    assert any(r["result"] for r in results)  # type: ignore[index]
    assert bad.status_code == 422
    assert "not in the guide" in bad.json()["error"]


def test_interactive_context_propagates_the_drawn_region(backend: Backend) -> None:
    text = "Blackburn said Blackburn would return ."
    region = {
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": 0, "end": 9, "text": "Blackburn", "labels": ["person"]},
    }
    result = _predict(backend.client, [text], params={"context": {"result": [region]}})["results"][0]  # type: ignore[index]
    spans = {(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in result["result"]}
    assert {(0, 9, "person"), (15, 24, "person")} <= spans


def test_basic_auth_and_bearer(database_url: str, redis_url: str, conll_guide: Guide) -> None:
    settings = backend_settings(
        database_url,
        redis_url,
        "http://127.0.0.1:1/v1",
        auth_username="ls",
        auth_password=SecretStr("pw"),
        auth_token=SecretStr("tok"),
    )
    register_ls_project(settings, conll_guide)
    with TestClient(create_app(settings)) as client:
        body = {"project": "7.1", "schema": "<View/>"}
        assert client.get("/health").status_code == 200
        denied = client.post("/setup", json=body)
        assert denied.status_code == 401
        assert "authentication" in denied.json()["error"]
        assert client.post("/setup", json=body, auth=("ls", "wrong")).status_code == 401
        assert client.post("/setup", json=body, auth=("ls", "pw")).status_code == 200
        assert client.post("/setup", json=body, headers={"Authorization": "Bearer tok"}).status_code == 200
