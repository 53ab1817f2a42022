"""Bad input never gets a 5xx (issue #10).

Each kind schemathesis found, as named regression cases, over HTTP on SQLite and PostgreSQL. Every refusal is a 4xx
whose JSON ``error`` names the field.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.adapters.llm import OpenAIChatClient
from backend.api.app import create_app
from backend.db.models import Annotation, AnnotationEvent, Project
from backend.errors import InvalidInputError, UpstreamError
from backend.services.annotations import ingest, reconcile
from backend.services.label_state import annotated_tasks, convert_labels, labeled_examples
from backend.settings import LLMSettings, Settings
from ml.converters.spans import CharSpan, task_id_of
from tests.conftest import open_db, serve_in_thread
from tests.integration.conftest import LS_PROJECT, Backend, annotation_event, backend_settings, register_ls_project
from tests.integration.scripted_llm import Script, scripted_llm

pytestmark = pytest.mark.integration
TOO_BIG = 2**31  # one past the largest INTEGER
TEXT = "Peter Blackburn visited Brussels ."


def _raw(body: object, *replacements: tuple[str, str]) -> bytes:
    r"""JSON as a hostile client writes it.

    ``json.dumps`` escapes a lone surrogate as ``\ud800``, and each replacement puts in what Python's encoder refuses
    to write (``NaN``, ``Infinity``).
    """
    text = json.dumps(body)
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    return text.encode()


def _post_raw(client: TestClient, path: str, content: bytes) -> Any:
    return client.post(path, content=content, headers={"content-type": "application/json"})


def _event_count(backend: Backend) -> int:
    with open_db(backend.settings.database_url) as db:
        return int(db.scalar(select(func.count()).select_from(AnnotationEvent)) or 0)


def _assert_refused(response: Any, status: int, *names: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert all(name in error for name in names), error
    assert "Traceback" not in response.text


def _region(start: int, end: int, labels: list[Any]) -> dict[str, Any]:
    value = {"start": start, "end": end, "text": TEXT[start:end], "labels": labels}
    return {"from_name": "label", "to_name": "text", "type": "labels", "value": value}


# --- ids larger than an INTEGER column (PostgreSQL: "integer out of range") -------------------------------------


def _webhook_with(**changes: object) -> dict[str, Any]:
    event = annotation_event(task_id=1, annotation_id=1, text=TEXT, spans=[(0, 15, "person")])
    for path, value in changes.items():
        part, key = path.split("__")
        event[part][key] = value
    return event


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        pytest.param("GET", f"/api/projects/{TOO_BIG}/routing", None, "project_id", id="routing"),
        pytest.param("PUT", f"/api/projects/{TOO_BIG}/routing/person", {"route": "llm"}, "project_id", id="override"),
        pytest.param("GET", f"/api/projects/{TOO_BIG}/llm-costs", None, "project_id", id="llm-costs"),
        pytest.param("GET", f"/api/projects/{10**30}/progress", None, "project_id", id="progress-huge"),
        pytest.param("POST", f"/api/projects/{TOO_BIG}/retrain", None, "project_id", id="retrain"),
        pytest.param("GET", f"/api/projects/{TOO_BIG}/runs", None, "project_id", id="runs"),
        pytest.param("POST", f"/api/projects/{TOO_BIG}/rollback", {"version": "v1"}, "project_id", id="rollback"),
        pytest.param("GET", f"/api/runs/{TOO_BIG}", None, "run_id", id="run"),
        pytest.param("GET", "/api/runs/0", None, "run_id", id="run-zero"),
        pytest.param("GET", "/api/runs/-1", None, "run_id", id="run-negative"),
        pytest.param("GET", f"/dashboard/{TOO_BIG}", None, "project_id", id="dashboard"),
        pytest.param("POST", "/setup", {"project": f"{TOO_BIG}.1700000000"}, "'project'", id="setup-string"),
        pytest.param("POST", "/setup", {"project": TOO_BIG}, "'project'", id="setup-int"),
        pytest.param("POST", "/setup", {"project": -7}, "'project'", id="setup-negative"),
        pytest.param("GET", f"/versions?project={TOO_BIG}", None, "'project'", id="versions"),
        pytest.param("POST", "/predict", {"tasks": [], "project": f"{TOO_BIG}.1"}, "'project'", id="predict"),
        pytest.param("POST", "/webhook", _webhook_with(task__id=TOO_BIG), "task.id", id="webhook-task"),
        pytest.param(
            "POST", "/webhook", _webhook_with(annotation__id=TOO_BIG), "annotation.id", id="webhook-annotation"
        ),
        pytest.param("POST", "/webhook", _webhook_with(project__id=TOO_BIG), "project.id", id="webhook-project"),
        pytest.param(
            "POST",
            "/webhook",
            {"action": "ANNOTATIONS_DELETED", "project": {"id": LS_PROJECT}, "annotations": [{"id": TOO_BIG}]},
            "annotations.0.id",
            id="webhook-deleted-annotations",
        ),
        pytest.param(
            "POST",
            "/webhook",
            {"action": "TASKS_DELETED", "tasks": [{"id": TOO_BIG}]},
            "tasks.0.id",
            id="webhook-tasks",
        ),
    ],
)
def test_ids_beyond_an_integer_column_are_422(
    backend: Backend, method: str, path: str, body: object, field: str
) -> None:
    response = backend.client.request(method, path, json=body)
    _assert_refused(response, 422, field)
    assert _event_count(backend) == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", "/api/runs/2147483647", None, id="run"),
        pytest.param("GET", "/dashboard/2147483647", None, id="dashboard"),
        pytest.param("POST", "/setup", {"project": "2147483647.1"}, id="setup"),
    ],
)
def test_the_largest_id_is_read(backend: Backend, method: str, path: str, body: object) -> None:
    """The bound is exact: 2**31 - 1 is an id like any other (unknown here: 404)."""
    assert backend.client.request(method, path, json=body).status_code == 404


def test_the_largest_completed_by_is_kept_and_a_larger_one_stored_as_unknown(backend: Backend) -> None:
    """``completed_by`` is metadata (Label Studio sends an id or a user object): one that does not fit is unknown."""
    for annotation_id, by in [(1, 2**31 - 1), (2, TOO_BIG), (3, {"id": TOO_BIG})]:
        event = annotation_event(task_id=annotation_id, annotation_id=annotation_id, text=TEXT, spans=[])
        event["annotation"]["completed_by"] = by
        assert backend.client.post("/webhook", json=event).status_code == 200
    with open_db(backend.settings.database_url) as db:
        stored = {row[0]: row[1] for row in db.execute(select(Annotation.ls_annotation_id, Annotation.completed_by))}
    assert stored == {1: 2**31 - 1, 2: None, 3: None}


# --- digits that str.isdigit takes and int() does not -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        pytest.param("POST", "/setup", {"project": "\u00b2.123"}, "'project'", id="setup-superscript"),
        pytest.param("POST", "/setup", {"project": "\u0663.1"}, "'project'", id="setup-arabic-indic"),
        pytest.param("POST", "/setup", {"project": "\uff17.1"}, "'project'", id="setup-fullwidth"),
        pytest.param("GET", "/versions?project=%C2%B2", None, "'project'", id="versions-superscript"),
        pytest.param("POST", "/predict", {"tasks": [], "project": "\u00b2"}, "'project'", id="predict-superscript"),
        pytest.param("GET", "/api/runs/%C2%B2", None, "run_id", id="path-superscript"),
        pytest.param("GET", "/versions?project=", None, "'project'", id="versions-empty"),
    ],
)
def test_unicode_digits_are_not_ids(backend: Backend, method: str, path: str, body: object, field: str) -> None:
    _assert_refused(backend.client.request(method, path, json=body), 422, field)


def test_versions_of_a_project_still_read(backend: Backend) -> None:
    assert backend.client.get(f"/versions?project={LS_PROJECT}.1700000000").json() == {"versions": []}


# --- JSON that Python reads and the database cannot keep ---------------------------------------------------------

SURROGATE = "Bob \ud800 Smith"


def _webhook(text: str = TEXT) -> dict[str, Any]:
    return annotation_event(task_id=1, annotation_id=1, text=text, spans=[])


def _predict_body(text: str = TEXT, **extra: object) -> dict[str, Any]:
    return {"tasks": [{"id": 1, "data": {"text": text}}], "project": f"{LS_PROJECT}.1", **extra}


@pytest.mark.parametrize(
    ("path", "content", "names"),
    [
        pytest.param(
            "/webhook", _raw(_webhook(SURROGATE)), ("body.task.data.text", "surrogate"), id="webhook-surrogate"
        ),
        pytest.param(
            "/predict", _raw(_predict_body(SURROGATE)), ("body.tasks.0.data.text", "surrogate"), id="predict-surrogate"
        ),
        pytest.param(
            "/webhook",
            _raw({**_webhook(), "x": {"\udfff": 1}}),
            ("body.x (a key)", "surrogate"),
            id="surrogate-in-a-key",
        ),
        pytest.param(
            "/webhook",
            _raw(_webhook(), ('"lead_time": 3.5', '"lead_time": NaN')),
            ("body.annotation.lead_time", "NaN"),
            id="webhook-nan",
        ),
        pytest.param(
            "/predict",
            _raw(_predict_body(params={"context": {"x": 1.5}}), ("1.5", "Infinity")),
            ("body.params.context.x", "Infinity"),
            id="predict-infinity",
        ),
        pytest.param(
            "/predict", _raw({**_predict_body(), "n": 1.5}, ("1.5", "-Infinity")), ("body.n",), id="minus-infinity"
        ),
        pytest.param(
            "/predict", _raw({**_predict_body(), "n": 1.5}, ("1.5", "1e999")), ("body.n", "1e999"), id="1e999"
        ),
        pytest.param("/webhook", _raw(_webhook("Bob\x00Smith")), ("body.task.data.text", "NUL"), id="webhook-nul"),
        pytest.param("/setup", _raw({"project": "7.1", "schema": "\x00"}), ("body.schema", "NUL"), id="setup-nul"),
    ],
)
def test_json_the_database_cannot_keep_is_422_naming_where(
    backend: Backend, path: str, content: bytes, names: tuple[str, ...]
) -> None:
    _assert_refused(_post_raw(backend.client, path, content), 422, *names)
    assert _event_count(backend) == 0
    assert backend.script.requests == []


def test_json_nested_past_the_limit_is_422(backend: Backend) -> None:
    shallow = _webhook()
    shallow["task"]["data"]["meta"] = json.loads("[" * 40 + "]" * 40)
    assert backend.client.post("/webhook", json=shallow).status_code == 200  # depth is refused, not nesting
    content = b'{"action": "x", "deep": ' + b"[" * 200 + b"]" * 200 + b"}"
    _assert_refused(_post_raw(backend.client, "/webhook", content), 422, "nested more than 64 levels")
    deeper = b"[" * 100_000 + b"]" * 100_000  # past the parser's own recursion limit
    _assert_refused(_post_raw(backend.client, "/webhook", deeper), 422, "nested more than 64 levels")


def test_a_put_body_is_checked_too(backend: Backend) -> None:
    response = backend.client.put(
        f"/api/projects/{backend.project_id}/routing/person",
        content=b'{"route": "llm", "note": NaN}',
        headers={"content-type": "application/json"},
    )
    _assert_refused(response, 422, "body.note", "NaN")


# --- params.context.result in interactive pre-annotation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "field"),
    [
        pytest.param([1, "x"], "params.context.result.0", id="not-objects"),
        pytest.param("x", "params.context.result", id="not-a-list"),
        pytest.param([{"value": "x"}], "params.context.result.0.value", id="value-not-object"),
        pytest.param([{"value": {"labels": {"a": 1}}}], "params.context.result.0.value.labels", id="labels-not-list"),
        pytest.param([{"value": {"start": "a", "end": 3}}], "params.context.result.0.value.start", id="start-not-int"),
    ],
)
def test_context_result_must_be_regions(backend: Backend, result: object, field: str) -> None:
    response = backend.client.post("/predict", json=_predict_body(params={"context": {"result": result}}))
    _assert_refused(response, 422, field)


def test_context_regions_of_other_kinds_pass(backend: Backend) -> None:
    regions = [{"type": "relation", "from_id": "a", "to_id": "b"}, {"type": "choices", "value": {"choices": ["x"]}}]
    response = backend.client.post("/predict", json=_predict_body(params={"context": {"result": regions}}))
    assert response.status_code == 200, response.text


# --- credentials that are not ASCII -------------------------------------------------------------------------------


@pytest.fixture
def guarded(database_url: str, redis_url: str, conll_guide: Guide) -> Iterator[TestClient]:
    """The backend with basic auth (a non-ASCII password) and a bearer token."""
    settings = backend_settings(
        database_url,
        redis_url,
        "http://127.0.0.1:1/v1",
        auth_username="josé",
        auth_password=SecretStr("pässword"),
        auth_token=SecretStr("tok"),
    )
    register_ls_project(settings, conll_guide)
    with TestClient(create_app(settings)) as client:
        yield client


def _basic(raw: bytes) -> bytes:
    return b"Basic " + base64.b64encode(raw)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(_basic("josé:x".encode()), id="basic-non-ascii-user-wrong-password"),
        pytest.param(_basic(b"\xff\xfe:\xff"), id="basic-not-utf8"),
        pytest.param(_basic("jos\u00e9:p\u00e4ssword".encode("latin-1")), id="basic-latin1"),
        pytest.param(b"Bearer caf\xe9", id="bearer-latin1"),
        pytest.param("Bearer café".encode(), id="bearer-utf8"),
        pytest.param(b"Basic caf\xe9==", id="basic-not-base64"),
    ],
)
def test_non_ascii_credentials_are_401(guarded: TestClient, authorization: bytes) -> None:
    response = guarded.post("/setup", json={"project": "7.1"}, headers={"Authorization": authorization})
    _assert_refused(response, 401, "authentication required")


def test_non_ascii_credentials_that_match_are_accepted(guarded: TestClient) -> None:
    """UTF-8 on the wire, as browsers and Label Studio send them, against the configured (UTF-8) secret."""
    response = guarded.post(
        "/setup", json={"project": "7.1"}, headers={"Authorization": _basic("josé:pässword".encode())}
    )
    assert response.status_code == 200, response.text


# --- LLM answers that cannot be used ---------------------------------------------------------------------------------

GARBAGE = {
    "nul": "a NUL character",
    "not-json": "a body that is not JSON (it begins '<html>502 Bad Gateway</html>')",
    "broken-json": "a body that is not JSON",
    "json-list": "not a chat completion",
    "content-not-text": "not text",
    "huge-usage": "impossible token counts",
    "surrogate": "lone UTF-16 surrogate",
}


@pytest.mark.parametrize("mode", list(GARBAGE))
def test_llm_garbage_is_a_502_naming_it(backend: Backend, mode: str) -> None:
    backend.script.mode = mode
    response = backend.client.post("/predict", json=_predict_body())
    _assert_refused(response, 502, GARBAGE[mode], backend.settings.llm.base_url)


@pytest.mark.parametrize("mode", list(GARBAGE))
def test_llm_client_reads_garbage_as_an_upstream_error(mode: str) -> None:
    script = Script(mode=mode)
    with scripted_llm(script) as url:
        client = OpenAIChatClient(LLMSettings(base_url=url, max_retries=0, timeout_s=5))
        with pytest.raises(UpstreamError, match=re.escape(GARBAGE[mode])):
            client.complete([{"role": "user", "content": "Peter"}], schema={})
    assert len(script.requests) == 1


# --- annotations that must not poison prompts and trainings -----------------------------------------------------

LONG = "x" * (5 * 1024 * 1024)


@pytest.mark.parametrize(
    ("text", "result", "names"),
    [
        pytest.param(
            TEXT,
            [_region(0, 5, ["person"]), _region(24, 32, ["weapon"])],
            ("annotation.result.1.value.labels", "'weapon'", "person"),
            id="unknown-label",
        ),
        pytest.param(TEXT, [_region(0, 5, ["person", "Weapon"])], ("'Weapon'",), id="second-label-unknown"),
        pytest.param(TEXT, [_region(0, 5, [{"x": 1}])], ("result.0.value.labels",), id="label-not-text"),
        pytest.param(LONG, [], ("task.data.text", "5242880 characters", "NER_MAX_TEXT_CHARS"), id="5-MB-text"),
    ],
)
def test_annotations_that_would_poison_are_refused_and_never_stored(
    backend: Backend, text: str, result: list[dict[str, Any]], names: tuple[str, ...]
) -> None:
    event = annotation_event(task_id=1, annotation_id=1, text=text, spans=[], result=result)
    _assert_refused(backend.client.post("/webhook", json=event), 422, *names)
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        assert annotated_tasks(db, project) == []
        assert labeled_examples(db, project) == []
    assert _event_count(backend) == 0


def test_the_configured_text_limit_is_the_one_applied(backend: Backend) -> None:
    """``ingest`` takes the limit from its caller (the route passes ``NER_MAX_TEXT_CHARS``)."""
    event = annotation_event(task_id=1, annotation_id=1, text="x" * 11, spans=[])
    with open_db(backend.settings.database_url) as db:
        with pytest.raises(InvalidInputError, match=r"11 characters, more than the 10 allowed \(NER_MAX_TEXT_CHARS\)"):
            ingest(db, event, max_text_chars=10)
        assert ingest(db, event, max_text_chars=11).created


def test_regions_of_other_controls_are_not_checked(backend: Backend) -> None:
    other = {**_region(0, 5, ["anything"]), "from_name": "sentiment"}
    event = annotation_event(
        task_id=1, annotation_id=1, text=TEXT, spans=[], result=[_region(0, 15, ["person"]), other]
    )
    assert backend.client.post("/webhook", json=event).status_code == 200


def _task(task_id: int, spans: list[tuple[int, int, str]]) -> dict[str, Any]:
    """A task of Label Studio's export holding one annotation with these spans."""
    event = annotation_event(task_id=task_id, annotation_id=task_id, text=TEXT, spans=spans)
    return {"id": task_id, "data": event["task"]["data"], "annotations": [event["annotation"]]}


def _read_back(
    backend: Backend, export: list[dict[str, Any]] | None = None
) -> tuple[int, list[tuple[str, list[CharSpan]]], Any]:
    """Reconcile with ``export`` when given (as attach and training runs do).

    Return how many annotations it refused, the LLM's demonstrations and the training conversion (docs and issues).
    """
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        malformed = reconcile(db, project, export).malformed if export is not None else 0
        db.commit()
        return malformed, labeled_examples(db, project), convert_labels(project, annotated_tasks(db, project))


def test_unknown_labels_and_overlaps_never_reach_prompts_or_training(backend: Backend) -> None:
    """Through the export (``project attach``, every training run) as over the webhook.

    An unknown label is refused (counted as malformed); of overlapping regions the converter keeps the longer first one
    and reports the other.
    """
    tasks = [
        _task(1, [(0, 15, "person"), (24, 32, "weapon")]),
        _task(3, [(0, 15, "person"), (6, 32, "location")]),  # overlapping
        _task(4, [(0, 15, "person"), (24, 32, "location")]),
    ]
    malformed, examples, converted = _read_back(backend, tasks)
    assert malformed == 1
    assert [spans for _, spans in examples] == [
        [CharSpan(0, 15, "person")],
        [CharSpan(0, 15, "person"), CharSpan(24, 32, "location")],
    ]
    assert [task_id_of(doc) for doc in converted.docs] == ["3", "4"]
    assert [(i.task_id, i.kind, i.action) for i in converted.issues] == [("3", "overlap", "dropped")]


def test_offsets_past_the_text_never_reach_prompts_or_training(backend: Backend) -> None:
    region = _region(24, 99, ["location"])  # value.text is what Python's slice gives: "Brussels ."
    event = annotation_event(
        task_id=2, annotation_id=2, text=TEXT, spans=[], result=[_region(0, 15, ["person"]), region]
    )
    assert backend.client.post("/webhook", json=event).status_code == 200
    _, examples, converted = _read_back(backend)
    assert [(i.task_id, i.kind) for i in converted.issues] == [("2", "out_of_range")]
    assert examples == []
    assert converted.docs == []


# --- body size -------------------------------------------------------------------------------------------------------


@contextmanager
def _served(settings: Settings) -> Iterator[int]:
    """The real app under uvicorn on a free loopback port (stops on exit)."""
    with serve_in_thread(create_app(settings)) as port:
        yield port


def _answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.fixture
def small_limit(database_url: str, redis_url: str, conll_guide: Guide) -> Iterator[int]:
    """The app over real HTTP with a 1,000-byte body limit and a bearer token."""
    settings = backend_settings(
        database_url, redis_url, "http://127.0.0.1:1/v1", max_body_bytes=1000, auth_token=SecretStr("tok")
    )
    register_ls_project(settings, conll_guide)
    with _served(settings) as port:
        yield port


def test_a_declared_large_body_is_413_before_it_is_sent_or_authenticated(small_limit: int) -> None:
    with socket.create_connection(("127.0.0.1", small_limit), timeout=10) as sock:
        sock.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 52428800\r\n\r\n"  # 50 MB announced, none of it sent
        )
        status, body = _answer(sock)
    assert status == 413
    assert "1000 bytes" in body["error"]
    assert "NER_MAX_BODY_BYTES" in body["error"]


def test_a_streamed_body_is_413_once_past_the_limit(small_limit: int) -> None:
    """Chunked, without Content-Length: refused after the limit, while the client has not finished sending."""
    with socket.create_connection(("127.0.0.1", small_limit), timeout=10) as sock:
        sock.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nAuthorization: Bearer tok\r\n\r\n"
        )
        for _ in range(3):
            sock.sendall(b"258\r\n" + b" " * 600 + b"\r\n")  # 1,800 bytes; the terminating chunk never comes
        status, body = _answer(sock)
    assert status == 413
    assert "NER_MAX_BODY_BYTES" in body["error"]


def test_a_body_within_the_limit_is_served(small_limit: int) -> None:
    payload = json.dumps({"project": "7.1"}).encode()
    with socket.create_connection(("127.0.0.1", small_limit), timeout=10) as sock:
        sock.sendall(
            b"POST /setup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer tok\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        status, body = _answer(sock)
    assert status == 200
    assert body["model_version"]


def test_the_default_limit_refuses_50_mb(backend: Backend) -> None:
    assert backend.settings.max_body_bytes == 20 * 1024 * 1024
    response = backend.client.post(
        "/webhook", content=b" " * (50 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    _assert_refused(response, 413, "20971520 bytes")
