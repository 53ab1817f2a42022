"""End to end with a real Label Studio 1.23.2, the real backend, a real spaCy model and a real llama.cpp server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import spacy
from fastapi import FastAPI
from label_studio_sdk import LabelStudio
from sqlalchemy import select

from annotation_guide import Guide, label_studio_config
from backend.adapters.label_studio import LabelStudioGateway
from backend.db.models import AnnotationEvent, Project
from backend.services.predictions import version_tag
from backend.services.routing import routing_table, set_override
from backend.settings import LabelStudioSettings
from ml.converters import load_docs
from ml.training import TrainedModel
from tests.conftest import GUIDES, free_port, open_db, promote, serve_in_thread
from tests.e2e.conftest import BackendServer, LabelStudioServer

pytestmark = pytest.mark.e2e
NERLOOP = str(Path(sys.executable).parent / "nerloop")


def _create_project(backend: BackendServer, tasks: Path, *, backend_url: str | None = None, rc: int = 0) -> str:
    """Run ``nerloop project create``; return its stdout (its stderr when ``rc`` is not 0)."""
    s = backend.settings
    env = {
        **os.environ,
        "NER_DATABASE_URL": s.database_url,
        "NER_BACKEND_URL": backend_url or s.backend_url,
        "NER_LABEL_STUDIO__URL": s.label_studio.url,
        "NER_LABEL_STUDIO__API_KEY": s.label_studio.api_key.get_secret_value(),
    }  # type: ignore[union-attr]
    run = subprocess.run(
        [
            NERLOOP,
            "project",
            "create",
            "--guide",
            str(GUIDES / "conll2003.yaml"),
            "--tasks",
            str(tasks),
            "--title",
            "e2e",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == rc, run.stderr
    return run.stdout if rc == 0 else run.stderr


def _promote(backend: BackendServer, model: TrainedModel) -> tuple[int, str]:
    """Serve the trained model for person and location; the other types stay with the LLM."""
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        promote(db, project, model)
        for label in ("person", "location"):
            set_override(db, project, label=label, route="model")
        return project.ls_project_id, version_tag(project, routing_table(db, project))


def _wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_label_studio_round_trip(
    label_studio: LabelStudioServer,
    backend_server: BackendServer,
    small_model: TrainedModel,
    conll_guide: Guide,
    shared_data: Path,
    tmp_path: Path,
) -> None:
    docs = load_docs(shared_data / "conll2003" / "test.txt", spacy.blank("en"), labels=conll_guide.labels).docs
    texts = [d.text for d in docs if len(d) > 6][:8]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    assert "8 tasks" in _create_project(backend_server, tasks)
    ls_id, tag = _promote(backend_server, small_model)
    with httpx.Client(timeout=120) as http:
        _round_trip(
            LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http),
            ls_id,
            tag,
            texts,
            backend_server,
        )


def test_a_failed_project_creation_leaves_nothing_behind(
    label_studio: LabelStudioServer, backend_server: BackendServer, tmp_path: Path
) -> None:
    """Label Studio refuses a backend it cannot reach: the half-made project is removed on both sides."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({"text": "Peter Blackburn visited Brussels ."}) + "\n")
    with httpx.Client(timeout=60) as http:
        client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
        before = {p.id for p in client.projects.list()}
        stderr = _create_project(backend_server, tasks, backend_url=f"http://127.0.0.1:{free_port()}", rc=2)
        assert stderr.startswith("error: Label Studio at")
        assert "connect the ML backend" in stderr
        assert stderr.count("\n") == 1
        assert "Traceback" not in stderr
        assert {p.id for p in client.projects.list()} == before
    with open_db(backend_server.settings.database_url) as db:
        assert db.scalars(select(Project)).all() == []
    assert "1 tasks" in _create_project(backend_server, tasks)  # and running it again works


def _round_trip(client: LabelStudio, ls_id: int, tag: str, texts: list[str], backend_server: BackendServer) -> None:

    # "Retrieve Predictions": Label Studio calls /predict and stores one scored prediction per task
    client.actions.create(id="retrieve_tasks_predictions", project=ls_id, selected_items={"all": True, "excluded": []})
    predictions = list(client.predictions.list(project=ls_id))
    assert len(predictions) == len(texts)
    assert {p.model_version for p in predictions} == {tag}
    assert all(p.score is not None and 0.0 <= p.score <= 1.0 for p in predictions)
    assert any(r.get("score") is not None for p in predictions for r in p.result)

    # ordering: the project's model version is the predictions' one, so the least confident task comes first
    with LabelStudioGateway(backend_server.settings.label_studio) as gateway:
        gateway.use_uncertainty_sampling(ls_id, model_version=tag)
    ordered = list(client.tasks.list(project=ls_id, query=json.dumps({"ordering": ["tasks:predictions_score"]})))
    score_of = {p.task: p.score for p in predictions}
    scores = [score_of[t.id] for t in ordered]
    assert scores == sorted(scores)

    # an annotation made through the SDK reaches /webhook and is persisted
    task = ordered[0]
    text = task.data["text"]
    first_word = text.split(" ")[0]
    client.annotations.create(
        id=task.id,
        result=[
            {
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {"start": 0, "end": len(first_word), "text": first_word, "labels": ["misc"]},
            }
        ],
    )

    def stored() -> bool:
        with open_db(backend_server.settings.database_url) as db:
            return db.scalar(select(AnnotationEvent).where(AnnotationEvent.ls_task_id == task.id)) is not None

    _wait_for(stored)

    # interactive pre-annotation (Auto-Annotation): the drawn region comes back as a suggestion
    ml_backend = next(iter(client.ml.list(project=ls_id)))
    region = {
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": 0, "end": len(first_word), "text": first_word, "labels": ["misc"]},
    }
    reply = client.ml.with_raw_response.predict_interactive(
        id=ml_backend.id, task=task.id, context={"result": [region]}
    )
    payload = reply._response.json()  # the SDK types this call as returning nothing; Label Studio relays our reply
    suggestions = [r for item in _results(payload) for r in item.get("result", [])]
    spans = {(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0]) for r in suggestions}
    assert (0, len(first_word), "misc") in spans, payload


def _results(payload: object) -> list[dict[str, object]]:
    """The prediction items in Label Studio's interactive reply (``{"data": {...}}`` or a list)."""
    if isinstance(payload, dict):
        data = payload.get("data", payload)
        if isinstance(data, dict):
            return data.get("results") or ([data] if "result" in data else [])  # type: ignore[return-value]
        if isinstance(data, list):
            return data
    return payload if isinstance(payload, list) else []


def test_a_backend_slow_to_answer_labelstudios_check_is_connected_on_a_later_try(
    label_studio: LabelStudioServer, conll_guide: Guide
) -> None:
    """Label Studio gives the backend's ``/setup`` 3 s when it connects it.

    A backend that misses that once (a loaded machine) is connected on the next try, not refused. A real Label Studio
    calls a real HTTP server whose first ``/setup`` takes 5 s.
    """
    setups: list[float] = []

    slow = FastAPI()

    @slow.get("/health")
    def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "slow"}

    @slow.post("/setup")
    def setup() -> dict[str, str]:
        setups.append(time.monotonic())
        if len(setups) == 1:
            time.sleep(5)
        return {"model_version": "slow-1"}

    settings = LabelStudioSettings(url=label_studio.url, api_key=label_studio.token)  # type: ignore[arg-type]
    with serve_in_thread(slow) as port, LabelStudioGateway(settings) as gateway:
        ls_id = gateway.create_project(title="slow backend", label_config=label_studio_config(conll_guide))
        try:
            ml_id = gateway.connect_backend(ls_id, url=f"http://127.0.0.1:{port}", title="slow-1", basic_auth=None)
            assert gateway.backend_urls(ls_id) == {f"http://127.0.0.1:{port}": ml_id}
            assert len(setups) >= 2  # the first check timed out, a later one passed
        finally:
            gateway.delete_project(ls_id)
