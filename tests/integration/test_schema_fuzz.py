"""No generated request, valid or not, gets a 5xx (issue #10).

Schemathesis over the backend's OpenAPI schema, and Label-Studio-shaped bodies (the registered project, webhook events,
regions) that reach past the schema into the routes, which a schema whose webhook body is "any JSON" never does.

The real app runs under uvicorn on a loopback port, with its database (SQLite and PostgreSQL), Redis, a scripted
LLM and a bearer token that every generated request carries, so authenticated cases reach the routes. The number
of examples is bounded to keep both engines within about a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from annotation_guide import Guide
from backend.api.app import create_app
from backend.db.session import upgrade
from backend.settings import Settings
from tests.conftest import serve_in_thread
from tests.integration import conftest as services
from tests.integration.conftest import backend_settings, register_ls_project
from tests.integration.scripted_llm import Script, scripted_llm

pytestmark = pytest.mark.integration
TOKEN = "fuzz-token"
EXAMPLES = 25
SHAPED_EXAMPLES = 150

schema = schemathesis.openapi.from_dict(create_app(Settings(database_url="sqlite://")).openapi())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, conll_guide: Guide
) -> Iterator[str]:
    """The app over real HTTP on a fresh, migrated database of each engine, with the CoNLL project registered."""
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'nerloop.db'}"])
    else:
        urls = services._postgres_database()
    database_url = next(urls)
    upgrade(database_url)
    with scripted_llm(Script()) as llm_url:
        config = backend_settings(database_url, services.REDIS_URL, llm_url, auth_token=SecretStr(TOKEN))
        register_ls_project(config, conll_guide)
        try:
            with serve_in_thread(create_app(config), log_level="error") as port:
                yield f"http://127.0.0.1:{port}"
        finally:
            redis.Redis.from_url(services.REDIS_URL).flushdb()  # the jobs the webhooks enqueued
    next(urls, None)  # drops the PostgreSQL database


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)


@schema.parametrize()
@FUZZ
def test_no_request_gets_a_server_error(case: schemathesis.Case, served: str) -> None:
    case.call_and_validate(
        base_url=served, headers={"Authorization": f"Bearer {TOKEN}"}, checks=[not_a_server_error], timeout=30
    )


# Label-Studio-shaped bodies: mostly right in shape (so that they reach the services), odd in their values
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
odd = st.integers(0, 9).map(lambda n: n == 0)  # one value in ten is replaced


def mostly(strategy: st.SearchStrategy[Any], instead: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    """``strategy``, or one time in ten ``instead`` (any JSON value)."""
    return st.tuples(odd, strategy, instead).map(lambda t: t[2] if t[0] else t[1])


ids = mostly(st.sampled_from([1, 2, 3, 7, 2**31 - 1]), st.integers(-(2**40), 2**40))


region_value = st.fixed_dictionaries(
    {"start": mostly(st.integers(-3, 60)), "end": mostly(st.integers(-3, 60))},
    optional={
        "text": mostly(st.text(max_size=20)),
        "labels": mostly(st.lists(st.sampled_from(["person", "location", "weapon", "PER", ""]), max_size=2)),
    },
)
regions = mostly(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["labels", "choices", "relation"]), "value": mostly(region_value)},
        optional={"from_name": st.sampled_from(["label", "other"]), "to_name": st.just("text")},
    )
)
texts = mostly(st.text(max_size=60) | st.sampled_from(["Peter Blackburn visited Brussels .", "x" * 2001]))
task = st.fixed_dictionaries({"id": mostly(ids), "data": mostly(st.fixed_dictionaries({"text": texts}))})
annotation = st.fixed_dictionaries(
    {"id": mostly(ids), "result": mostly(st.lists(regions, max_size=3))},
    optional={
        "was_cancelled": mostly(st.booleans()),
        "updated_at": mostly(st.datetimes().map(lambda d: d.isoformat())),
        "lead_time": mostly(st.floats(allow_nan=False, allow_infinity=False)),
        "completed_by": mostly(ids | st.fixed_dictionaries({"id": ids})),
    },
)
actions = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED", "START_TRAINING"]
events = st.fixed_dictionaries(
    {
        "action": mostly(st.sampled_from(actions)),
        "project": mostly(st.fixed_dictionaries({"id": mostly(st.just(7), ids)})),
        "task": task,
        "annotation": annotation,
        "annotations": mostly(st.lists(st.fixed_dictionaries({"id": ids}), max_size=2)),
        "tasks": mostly(st.lists(st.fixed_dictionaries({"id": ids}), max_size=2)),
    }
)
project = mostly(st.sampled_from(["7.1700000000", 7, "7"]), ids | st.text(max_size=12) | json_values)
predictions = st.fixed_dictionaries(
    {"project": project, "tasks": st.lists(task, max_size=3)},
    optional={"params": st.fixed_dictionaries({"context": st.fixed_dictionaries({"result": st.lists(regions)})})},
)
requests = (
    st.tuples(st.just("POST"), st.just("/webhook"), events)
    | st.tuples(st.just("POST"), st.just("/predict"), predictions)
    | st.tuples(st.just("POST"), st.just("/setup"), st.fixed_dictionaries({"project": project}))
    | st.tuples(st.just("GET"), ids.map(lambda i: f"/dashboard/{i}"), st.none())
    # percent-encoded as a client sends it (a raw control character never leaves httpx)
    | st.tuples(st.just("GET"), project.map(lambda p: f"/versions?project={quote(str(p), safe='')}"), st.none())
)


@settings(FUZZ, max_examples=SHAPED_EXAMPLES)
@given(request=requests)
def test_label_studio_shaped_requests_get_no_server_error(served: str, request: tuple[str, str, Any]) -> None:
    method, path, body = request
    with httpx.Client(base_url=served, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        response = client.request(method, path, json=body)
    assert response.status_code < 500, (method, path, body, response.text)
