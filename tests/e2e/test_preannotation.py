"""Pre-annotation ahead of the annotators, on a real Label Studio with a real Celery worker.

A scripted LLM server is the only way to make the LLM slow for one chosen task. From the project's creation the first
tasks in queue order are pre-annotated, the window follows the annotators and skips what they labelled meanwhile, and a
``/predict`` that could not wait for the LLM gets its LLM part later, in place.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from label_studio_sdk import LabelStudio
from sqlalchemy import select

from annotation_guide import Guide
from backend.adapters.label_studio import LabelStudioGateway
from backend.api.app import create_app
from backend.db.models import Prediction, Project
from backend.db.session import upgrade
from backend.services.bootstrap import create_project
from backend.services.predictions import version_tag
from backend.services.routing import routing_table, set_override
from backend.settings import LabelStudioSettings, LLMSettings, Settings
from ml.training import TrainedModel
from tests.conftest import free_port, open_db, promote, serve_in_thread, stop_process
from tests.e2e.conftest import E2E_REDIS_URL, LabelStudioServer
from tests.e2e.test_label_studio import NERLOOP
from tests.integration.scripted_llm import Script, scripted_llm

pytestmark = pytest.mark.e2e
WINDOW = 3
SLOW_S = 12.0  # the scripted LLM's answer time for a text containing SLOW; /predict waits 0.5 s
TEXTS = [
    "Peter Blackburn visited Brussels on Monday .",
    "Anna Smith joined Reuters in London .",
    "The European Commission met in Germany .",
    "Robert Lewandowski scored twice for Bayern .",
    "Maria Sharapova won in Paris .",
    "SLOW Roger Federer lost to Rafael Nadal in Madrid .",
    "Angela Merkel spoke in Berlin .",
    "Boris Becker coached Novak Djokovic .",
    "SLOW Lionel Messi signed for Barcelona again .",
    "Serena Williams played in Melbourne .",
]


@dataclass
class Loop:
    client: LabelStudio
    url: str
    settings: Settings
    script: Script
    log: Path


def _llm(url: str) -> dict[str, str]:
    return {"base_url": url, "response_format": "none", "max_retries": "0", "timeout_s": "60", "demonstrations": "0"}


@pytest.fixture
def loop(label_studio: LabelStudioServer, tmp_path: Path) -> Iterator[Loop]:
    """The backend and one worker (queues score and llm) with a scripted LLM, on a fresh database."""
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()
    script = Script(delay_s=SLOW_S)
    port = free_port()
    with scripted_llm(script) as llm_url:
        llm = _llm(llm_url)
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'nerloop.db'}",
            redis_url=E2E_REDIS_URL,
            backend_url=f"http://127.0.0.1:{port}",
            model_root=tmp_path / "models",
            llm_preannotate_max=WINDOW,
            label_studio=LabelStudioSettings(url=label_studio.url, api_key=label_studio.token),  # type: ignore[arg-type]
            llm=LLMSettings.model_validate({**llm, "predict_wait_s": 0.5, "concurrency": 1}),
        )
        upgrade(settings.database_url)
        env = {
            **os.environ,
            "NER_DATABASE_URL": settings.database_url,
            "NER_REDIS_URL": settings.redis_url,
            "NER_MODEL_ROOT": str(settings.model_root),
            "NER_LABEL_STUDIO__URL": label_studio.url,
            "NER_LABEL_STUDIO__API_KEY": label_studio.token,
            "NER_LLM_PREANNOTATE_MAX": str(WINDOW),
            "NER_LLM__CONCURRENCY": "1",  # one text per LLM call: the labelled-meanwhile check is per task
            **{f"NER_LLM__{key.upper()}": value for key, value in llm.items()},
        }
        log = tmp_path / "worker.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [NERLOOP, "worker", "--queues", "score,llm", "--concurrency", "1"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _until(lambda: "ready" in log.read_text(), 120, f"the worker did not start; see {log}")
            with (
                serve_in_thread(create_app(settings), port=port),
                httpx.Client(timeout=120) as http,
            ):
                client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
                yield Loop(client, settings.backend_url, settings, script, log)
        finally:
            stop_process(worker)


def _until(condition: Callable[[], object], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.5)


Span = tuple[int, int, str, float]  # start, end, label, score


def _scored(client: LabelStudio, task_id: int) -> list[tuple[str, list[Span]]]:
    """A task's predictions in Label Studio: (model version, spans)."""
    return [
        (
            str(p.model_version),
            [(r["value"]["start"], r["value"]["end"], r["value"]["labels"][0], r["score"]) for r in p.result or []],
        )
        for p in client.predictions.list(task=task_id)
    ]


def _predictions(client: LabelStudio, task_id: int) -> list[tuple[str, list[str]]]:
    """A task's predictions in Label Studio: (model version, labels)."""
    return [(version, [span[2] for span in spans]) for version, spans in _scored(client, task_id)]


def _llm_only(predictions: list[tuple[str, list[str]]], tag: str) -> bool:
    """One prediction, of ``tag``, with the scripted LLM's persons (it calls every capitalised word one)."""
    return len(predictions) == 1 and predictions[0][0] == tag and set(predictions[0][1]) == {"person"}


def _tag(settings: Settings) -> str:
    with open_db(settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        return version_tag(project, routing_table(db, project))


def _label(client: LabelStudio, task_id: int, text: str) -> None:
    """Label the first word as a person (a label change: the webhook moves the window)."""
    end = text.index(" ")
    value = {"start": 0, "end": end, "text": text[:end], "labels": ["person"]}
    client.annotations.create(
        id=task_id, result=[{"from_name": "label", "to_name": "text", "type": "labels", "value": value}]
    )


def _rows(settings: Settings, tag: str) -> dict[int, bool]:
    """The stored predictions of ``tag``: task -> complete."""
    with open_db(settings.database_url) as db:
        return {r.ls_task_id: r.complete for r in db.scalars(select(Prediction).where(Prediction.model_version == tag))}


def test_the_llm_pass_runs_ahead_of_the_annotators_and_completes_what_predict_could_not_wait_for(
    loop: Loop, conll_guide: Guide, small_model: TrainedModel
) -> None:
    client, settings = loop.client, loop.settings
    with LabelStudioGateway(settings.label_studio) as gateway, open_db(settings.database_url) as db:
        created = create_project(db, gateway, conll_guide, TEXTS, backend_url=loop.url, retrain_threshold=1000)
    ids = created.task_ids
    tag = _tag(settings)
    assert tag.startswith("llm-only+")  # no model yet: every type goes to the LLM

    # connecting the backend (Label Studio's /setup) starts the pass: the first tasks in queue order
    def first_window() -> bool:
        pushed = all(_llm_only(_predictions(client, task), tag) for task in ids[:WINDOW])
        return pushed and _rows(settings, tag) == dict.fromkeys(ids[:WINDOW], True)  # each row committed after its push

    _until(first_window, 180, f"the first tasks were not pre-annotated; see {loop.log}")
    assert all(_predictions(client, task) == [] for task in ids[WINDOW:])
    assert client.projects.get(id=created.ls_project_id).model_version == tag
    nxt = httpx.get(
        f"{settings.label_studio.url}/api/projects/{created.ls_project_id}/next",
        headers={"Authorization": f"Token {settings.label_studio.api_key.get_secret_value()}"},  # type: ignore[union-attr]
        timeout=60,
    )
    # Label Studio serves them first, in order
    assert nxt.status_code == 200
    assert nxt.json()["id"] == ids[0]

    # the annotators label two of them: the window moves on to the next two, and only those
    for i in (0, 1):
        _label(client, ids[i], TEXTS[i])
    _until(
        lambda: _rows(settings, tag) == dict.fromkeys(ids[:5], True), 180, f"the window did not move; see {loop.log}"
    )
    assert all(_llm_only(_predictions(client, task), tag) for task in ids[3:5])
    assert all(_predictions(client, task) == [] for task in ids[5:])

    # a task labelled while the LLM works on it gets no pre-annotation (checked again before the push)
    _label(client, ids[2], TEXTS[2])
    _until(lambda: any("SLOW" in r["messages"][-1]["content"] for r in loop.script.requests), 120, "no LLM call")
    _label(client, ids[5], TEXTS[5])
    _until(lambda: _rows(settings, tag).get(ids[6]), 180, f"the window did not move past task 5; see {loop.log}")
    assert loop.script.slept >= 1  # the slow answer came back, and was not pushed
    # Label Studio may have asked /predict for it meanwhile (answered ~llm-pending): never completed
    assert all(version != tag and "person" not in labels for version, labels in _predictions(client, ids[5]))
    assert _rows(settings, tag)[ids[5]] is False

    # a model serves every type but person: /predict answers at once without the slow LLM, and the `llm` queue
    # completes that very prediction in Label Studio later
    with open_db(settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        promote(db, project, small_model)
        for label in conll_guide.labels:
            set_override(db, project, label=label, route="llm" if label == "person" else "model")
    served = _tag(settings)
    started = time.monotonic()
    client.actions.create(
        id="retrieve_tasks_predictions",
        project=created.ls_project_id,
        selected_items={"all": False, "included": [ids[8]]},  # type: ignore[arg-type]
    )
    took = time.monotonic() - started
    (first,) = [p for p in _scored(client, ids[8]) if p[0].startswith(served)]
    assert first[0] == f"{served}~llm-pending", (first, took)
    assert took < SLOW_S, (first, took)
    assert first[1], first  # the small model finds something in it
    assert all(label != "person" for _, _, label, _ in first[1])  # the model's types only, at once

    _until(lambda: _rows(settings, served).get(ids[8]), 180, f"the LLM part never came; see {loop.log}")
    after = [p for p in _scored(client, ids[8]) if p[0].startswith(served)]
    # updated in place: one complete prediction
    assert len(after) == 1, after
    assert after[0][0] == served, after
    persons = [span for span in after[0][1] if span[2] == "person"]
    assert persons, after
    assert all(span[3] == settings.llm.span_score for span in persons), after
    # the model's spans, as /predict answered them, except where an LLM person overlaps one with a score at least
    # its own (ml.routing.merge_routed keeps the higher-scored span; the scripted LLM calls every capitalised word a
    # person, so which one wins depends on the small model's calibrated confidence)
    assert [span for span in after[0][1] if span[2] != "person"] == [span for span in first[1] if span in after[0][1]]
    for start, end, label, score in first[1]:
        kept = (start, end, label, score) in after[0][1]
        beaten = any(s < end and start < e and p_score >= score for s, e, _, p_score in persons)
        assert kept or beaten, (start, end, label, score, after)
