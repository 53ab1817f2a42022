"""A slow LLM or a model that cannot be loaded costs only its own types.

It never costs a database connection and never another route: a real backend (uvicorn on 127.0.0.1) with a scripted LLM
that hangs, on SQLite and PostgreSQL, with a database pool of one connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.adapters.llm import OpenAIChatClient
from backend.api.app import create_app
from backend.db.models import LLMCall, Prediction
from backend.ports import Completion
from backend.services.projects import record_model_version, register_project
from backend.services.routing import set_override
from backend.settings import LabelStudioSettings, LLMSettings, Settings
from ml.evaluation import PRF, TypeScore
from ml.model_meta import ModelMetrics
from ml.training import TrainedModel
from tests.conftest import open_db, promote, serve_in_thread
from tests.integration.conftest import annotation_event
from tests.integration.scripted_llm import Script, scripted_llm

pytestmark = pytest.mark.integration

LLM_PROJECT, MODEL_PROJECT = 7, 8
TEXTS = [
    "Peter Blackburn visited Brussels on Monday .",
    "Anna Smith joined Reuters in London .",
    "The European Commission met in Germany .",
    "Robert Lewandowski scored twice for Bayern .",
]


def _settings(database_url: str, redis_url: str, llm_url: str, **llm: Any) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        # one connection for the whole backend: a request that held it across the LLM call would starve the rest
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_s=5,
        llm=LLMSettings.model_validate(
            {
                "response_format": "none",
                "max_retries": 0,
                "timeout_s": 60,
                "demonstrations": 2,
                **llm,
                "base_url": llm_url,
            }
        ),
    )


def _register(
    settings: Settings, guide: Guide, model: TrainedModel, *, ls_project_id: int, llm_types: Sequence[str]
) -> int:
    with open_db(settings.database_url) as db:
        project = register_project(db, ls_project_id=ls_project_id, guide=guide, retrain_threshold=1000)
        promote(db, project, model)
        for label in guide.labels:
            set_override(db, project, label=label, route="llm" if label in llm_types else "model")
        return project.id


@contextmanager
def live_backend(settings: Settings) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port; stopped on exit."""
    with serve_in_thread(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}"


def _predict(url: str, project: int, texts: Sequence[str], timeout: float = 120, first_id: int = 100) -> httpx.Response:
    tasks = [{"id": first_id + i, "data": {"text": text}} for i, text in enumerate(texts)]
    return httpx.post(f"{url}/predict", json={"project": f"{project}.1", "tasks": tasks}, timeout=timeout)


def _labels(response: httpx.Response) -> set[str]:
    return {label for r in response.json()["results"] for item in r["result"] for label in item["value"]["labels"]}


def test_a_hanging_llm_costs_only_its_types_and_never_another_route(
    database_url: str, redis_url: str, conll_guide: Guide, small_model: TrainedModel
) -> None:
    hang_s = 15.0
    script = Script(mode="slow", delay_s=hang_s)
    with scripted_llm(script) as llm_url:
        settings = _settings(database_url, redis_url, llm_url, predict_wait_s=2.0, concurrency=2)
        _register(settings, conll_guide, small_model, ls_project_id=LLM_PROJECT, llm_types=["person"])
        _register(settings, conll_guide, small_model, ls_project_id=MODEL_PROJECT, llm_types=[])
        with live_backend(settings) as url, ThreadPoolExecutor(8) as pool:
            hanging = [pool.submit(_predict, url, LLM_PROJECT, [f"{text} ({i})"]) for i, text in enumerate(TEXTS * 2)]
            deadline = time.monotonic() + 60
            while not script.requests:  # the LLM has been asked and hangs
                assert time.monotonic() < deadline, "the LLM was never asked"
                time.sleep(0.05)
            others = [
                httpx.get(f"{url}/health", timeout=30),
                httpx.get(f"{url}/api/projects", timeout=30),
                httpx.post(
                    f"{url}/webhook",
                    json={
                        **annotation_event(task_id=5, annotation_id=5, text=TEXTS[0], spans=[(0, 15, "person")]),
                        "project": {"id": MODEL_PROJECT},
                    },
                    timeout=30,
                ),
                _predict(url, MODEL_PROJECT, TEXTS, timeout=30),
            ]
            hung_throughout = script.slept == 0  # no LLM answer had come back yet
            degraded = [future.result(timeout=120) for future in hanging]
        assert [r.status_code for r in others] == [200] * 4, [r.text for r in others]
        # every other route answered while the LLM still hung (the old code held the pool's one connection)
        assert hung_throughout
        assert others[2].json()["status"] == "stored"
        assert _labels(others[3])  # the model-only project answered with its model
        assert "~" not in others[3].json()["results"][0]["model_version"]
        for response in degraded:  # the model's types, tagged: the LLM part is missing
            assert response.status_code == 200, response.text
            (result,) = response.json()["results"]
            assert result["model_version"].endswith("~llm-missing")
            assert "person" not in _labels(response)


def test_an_answer_that_comes_after_the_wait_serves_the_next_request(
    database_url: str, redis_url: str, conll_guide: Guide, small_model: TrainedModel
) -> None:
    script = Script(mode="slow", delay_s=3.0)
    with scripted_llm(script) as llm_url:
        settings = _settings(database_url, redis_url, llm_url, predict_wait_s=0.5, demonstrations=0)
        _register(settings, conll_guide, small_model, ls_project_id=LLM_PROJECT, llm_types=["person"])
        with live_backend(settings) as url:
            first = _predict(url, LLM_PROJECT, [TEXTS[1]])
            deadline = time.monotonic() + 60
            with open_db(settings.database_url) as db:
                while not db.scalar(select(func.count()).select_from(LLMCall)):
                    assert time.monotonic() < deadline, "the late answer was never stored"
                    time.sleep(0.1)
                    db.rollback()  # a new snapshot
            second = _predict(url, LLM_PROJECT, [TEXTS[1]])
    assert first.json()["results"][0]["model_version"].endswith("~llm-missing")
    assert "~" not in second.json()["results"][0]["model_version"]
    # served from the cache
    assert "person" in _labels(second)
    assert len(script.requests) == 1


def test_an_answer_without_the_llm_part_is_queued_for_the_llm_pass(
    database_url: str, redis_url: str, conll_guide: Guide, small_model: TrainedModel
) -> None:
    """The model's types at once, tagged ``~llm-pending``.

    The tasks are stored for the ``llm`` queue with what was answered, and one LLM pass is pending however many answers
    missed the LLM (the pass itself, on a real worker and Label Studio: tests/e2e/test_preannotation.py).
    """
    script = Script(mode="slow", delay_s=5.0)
    with scripted_llm(script) as llm_url:
        settings = _settings(database_url, redis_url, llm_url, predict_wait_s=0.5, demonstrations=0).model_copy(
            update={"label_studio": LabelStudioSettings(url="http://127.0.0.1:1", api_key="t")}  # type: ignore[arg-type]
        )
        project_id = _register(settings, conll_guide, small_model, ls_project_id=LLM_PROJECT, llm_types=["person"])
        with live_backend(settings) as url:
            started = time.monotonic()
            first = _predict(url, LLM_PROJECT, TEXTS[:2])
            took, answered_then = time.monotonic() - started, script.slept
            second = _predict(url, LLM_PROJECT, TEXTS[2:3], first_id=200)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    # never waited for the LLM
    assert took < script.delay_s
    assert answered_then == 0
    answered = first.json()["results"] + second.json()["results"]
    assert {r["model_version"].rsplit("~", 1)[1] for r in answered} == {"llm-pending"}
    # the model's types
    assert "person" not in _labels(first)
    assert _labels(first)
    tag = answered[0]["model_version"].rsplit("~", 1)[0]
    with open_db(settings.database_url) as db:
        rows = db.scalars(select(Prediction).where(Prediction.project_id == project_id)).all()
    assert {(r.ls_task_id, r.model_version, r.complete, r.ls_prediction_id) for r in rows} == {
        (task, tag, False, None) for task in (100, 101, 200)
    }
    assert [r.spans for r in sorted(rows, key=lambda r: r.ls_task_id)] == [a["result"] for a in answered]
    assert redis.Redis.from_url(redis_url).llen("llm") == 1  # one pass covers every miss


class _PoolWatchingClient:
    """The real OpenAI client, noting how many database connections are checked out at each call."""

    def __init__(self, settings: LLMSettings) -> None:
        self._client = OpenAIChatClient(settings)
        self.pool: Any = None
        self.checked_out: list[int] = []

    @property
    def model(self) -> str:
        return self._client.model

    def complete(self, messages: Sequence[dict[str, str]], *, schema: dict[str, Any]) -> Completion:
        self.checked_out.append(self.pool.checkedout())
        return self._client.complete(messages, schema=schema)


def test_no_database_connection_is_checked_out_while_the_llm_works(
    database_url: str, redis_url: str, conll_guide: Guide, small_model: TrainedModel
) -> None:
    with scripted_llm(Script()) as llm_url:
        # one completion at a time: each store (a short session of its own) ends before the next call starts
        settings = _settings(database_url, redis_url, llm_url, concurrency=1)
        _register(settings, conll_guide, small_model, ls_project_id=LLM_PROJECT, llm_types=["person"])
        client = _PoolWatchingClient(settings.llm)
        app = create_app(settings, llm_client=client)
        with TestClient(app) as http:
            client.pool = app.state.sessions.kw["bind"].pool
            reply = http.post(
                "/predict",
                json={"project": "7.1", "tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(TEXTS)]},
            )
    assert reply.status_code == 200, reply.text
    assert client.checked_out == [0] * len(TEXTS)


def _broken_version(settings: Settings, project_id: int, tmp_path: Path) -> None:
    broken = tmp_path / "broken-version"
    broken.mkdir(parents=True)
    (broken / "meta.json").write_text("{not json", encoding="utf-8")
    with open_db(settings.database_url) as db:
        from backend.services.projects import project_by_id

        project = project_by_id(db, project_id)
        record_model_version(
            db,
            project,
            version="v-broken",
            path=str(broken),
            architecture="cnn",
            metrics=ModelMetrics(
                per_type={
                    label: TypeScore(label, 0.9, 0.9, 0.9, 0.9, 10, 10, True)
                    for label in ("location", "organisation", "misc", "person")
                },
                micro=PRF(0.9, 0.9, 0.9),
                macro=PRF(0.9, 0.9, 0.9),
                partial_micro_f1=0.9,
                ece=None,
                n_docs=10,
                target_f1=0.85,
            ),
            promote=True,
        )


def test_a_model_that_cannot_be_loaded_is_said_never_answered_empty(
    database_url: str, redis_url: str, conll_guide: Guide, small_model: TrainedModel, tmp_path: Path
) -> None:
    with scripted_llm(Script()) as llm_url:
        settings = _settings(database_url, redis_url, llm_url)
        mixed = _register(settings, conll_guide, small_model, ls_project_id=LLM_PROJECT, llm_types=["person"])
        model_only = _register(settings, conll_guide, small_model, ls_project_id=MODEL_PROJECT, llm_types=[])
        _broken_version(settings, mixed, tmp_path)
        _broken_version(settings, model_only, tmp_path / "other")
        with TestClient(create_app(settings)) as http:
            answered = http.post("/predict", json={"project": "7.1", "tasks": [{"id": 1, "data": {"text": TEXTS[1]}}]})
            refused = http.post("/predict", json={"project": "8.1", "tasks": [{"id": 1, "data": {"text": TEXTS[1]}}]})
    assert answered.status_code == 200, answered.text
    (result,) = answered.json()["results"]
    assert result["model_version"].endswith("~model-missing")
    assert {item["value"]["labels"][0] for item in result["result"]} == {"person"}  # the LLM's type still answered
    assert refused.status_code == 503
    assert "v-broken" in refused.json()["error"]
    assert "cannot be loaded" in refused.json()["error"]


def test_no_free_database_connection_is_a_503_not_a_500(database_url: str, redis_url: str) -> None:
    settings = Settings(
        database_url=database_url, redis_url=redis_url, db_pool_size=1, db_max_overflow=0, sweep_interval_s=0
    )
    settings.db_pool_timeout_s = 0.5
    app = create_app(settings)
    with TestClient(app) as http:
        engine = app.state.sessions.kw["bind"]
        with engine.connect():  # someone holds the only connection
            busy = http.get("/api/projects")
        deadline = time.monotonic() + 30  # the warm-up thread may hold it a moment too
        while (free := http.get("/api/projects")).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert busy.status_code == 503
    assert "database is busy" in busy.json()["error"]
    assert busy.headers["retry-after"] == "5"
    assert free.status_code == 200
