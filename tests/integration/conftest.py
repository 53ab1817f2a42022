"""Real services for integration tests: fresh databases (SQLite and the machine's PostgreSQL) and Redis."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import spacy
from fastapi.testclient import TestClient

from annotation_guide import Guide
from backend.api.app import create_app
from backend.db.session import upgrade
from backend.services.projects import register_project
from backend.settings import LLMSettings, Settings
from ml.converters import load_docs
from ml.training import TrainedModel
from tests.conftest import open_db, promote
from tests.integration.scripted_llm import Script, scripted_llm

PG_ADMIN = os.environ.get("NERLOOP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("NERLOOP_TEST_REDIS", "redis://127.0.0.1:6379/15")


def _postgres_database() -> Iterator[str]:
    name = f"nerloop_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN} is not reachable ({exc}); start it (see README)")
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, migrated database per test, on both engines."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nerloop.db'}"
        upgrade(url)
        yield url
        return
    generator = _postgres_database()
    url = next(generator)
    upgrade(url)
    yield url
    next(generator, None)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The machine's Redis (database 15), emptied before and after."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({exc}); start it (see README)")
    yield REDIS_URL
    client.flushdb()


LS_PROJECT = 7


@dataclass
class Backend:
    """The backend app in a test client, its scripted LLM, its settings and its registered project."""

    client: TestClient
    script: Script
    settings: Settings
    project_id: int


def backend_settings(database_url: str, redis_url: str, llm_url: str, **extra: object) -> Settings:
    llm = LLMSettings(
        base_url=llm_url,
        response_format="none",
        max_retries=0,
        timeout_s=5,
        demonstrations=2,
        price_input_per_million=2.0,
        price_output_per_million=10.0,
    )
    return Settings(database_url=database_url, redis_url=redis_url, llm=llm, max_text_chars=2000, **extra)  # type: ignore[arg-type]


def register_ls_project(settings: Settings, guide: Guide, model: TrainedModel | None = None) -> int:
    with open_db(settings.database_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=guide, retrain_threshold=3)
        if model is not None:
            promote(db, project, model)
        return project.id


@pytest.fixture
def backend(database_url: str, redis_url: str, conll_guide: Guide) -> Iterator[Backend]:
    """The backend (real database and Redis, scripted LLM) with the CoNLL project registered as LS_PROJECT."""
    script = Script()
    with scripted_llm(script) as url:
        settings = backend_settings(database_url, redis_url, url)
        project_id = register_ls_project(settings, conll_guide)
        with TestClient(create_app(settings)) as client:
            yield Backend(client, script, settings, project_id)


def annotation_event(
    *,
    task_id: int,
    annotation_id: int,
    text: str,
    spans: list[tuple[int, int, str]],
    action: str = "ANNOTATION_CREATED",
    result: object = None,
    updated_at: str | None = None,
    was_cancelled: bool = False,
    ls_project: int = LS_PROJECT,
) -> dict[str, Any]:
    """A webhook body as Label Studio sends it; ``result`` (any value, malformed ones too) replaces ``spans``."""
    regions = [
        {
            "id": f"r{i}",
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]},
        }
        for i, (s, e, label) in enumerate(spans)
    ]
    return {
        "action": action,
        "project": {"id": ls_project, "label_config": "<View/>"},
        "task": {"id": task_id, "data": {"text": text}},
        "annotation": {
            "id": annotation_id,
            "task": task_id,
            "project": ls_project,
            "result": regions if result is None else result,
            "completed_by": 1,
            "was_cancelled": was_cancelled,
            "updated_at": updated_at,
            "lead_time": 3.5,
        },
    }


def conll_events(
    shared_data: Path, guide: Guide, n: int, *, first: int = 0, ls_project: int = LS_PROJECT
) -> list[dict[str, Any]]:
    """``n`` webhook bodies labelling CoNLL training sentences with their gold entities.

    The sentences are those with entities, from the ``first``; tasks are ``1000 + i``, annotations ``5000 + i``.
    """
    docs = [
        d
        for d in load_docs(shared_data / "conll2003" / "train.txt", spacy.blank("en"), labels=guide.labels).docs
        if d.ents
    ][first : first + n]
    return [
        annotation_event(
            task_id=1000 + first + i,
            annotation_id=5000 + first + i,
            text=d.text,
            spans=[(e.start_char, e.end_char, e.label_) for e in d.ents],
            ls_project=ls_project,
        )
        for i, d in enumerate(docs)
    ]


def wait_until(condition: Callable[[], object], timeout: float, message: Callable[[], str] | str) -> None:
    """Poll ``condition`` (every 0.2 s) until it is true; fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(message() if callable(message) else message)
