"""The whole loop with a real Label Studio.

Labels made through the SDK cross the threshold, a real Celery worker retrains from Label Studio's export, promotes, and
the new version's scored predictions order the tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis
import spacy
from label_studio_sdk import LabelStudio
from sqlalchemy import select

from annotation_guide import Guide
from backend.db.models import Prediction, Project, TrainingRun
from ml.converters import load_docs
from tests.conftest import open_db, stop_process
from tests.e2e.conftest import BackendServer, LabelStudioServer
from tests.e2e.test_label_studio import NERLOOP, _create_project

pytestmark = pytest.mark.e2e
THRESHOLD = 15
LLM_MAX = 4  # tasks the LLM pre-annotates per version (misc), lowest score first


def _worker_env(backend: BackendServer) -> dict[str, str]:
    s = backend.settings
    return {
        **os.environ,
        "NER_DATABASE_URL": s.database_url,
        "NER_REDIS_URL": s.redis_url,
        "NER_MODEL_ROOT": str(s.model_root),
        "NER_RETRAIN_MAX_STEPS": "150",
        "NER_DEV_FRACTION": "0.4",
        "NER_LLM__BASE_URL": s.llm.base_url,
        # the backend's LLM settings: the tiny model answers one request at a time, so four at once with 512-token
        # answers and five demonstrations each timed out (60 s, 3 retries) on a loaded machine
        "NER_LLM__MAX_TOKENS": str(s.llm.max_tokens),
        "NER_LLM__DEMONSTRATIONS": str(s.llm.demonstrations),
        "NER_LLM__CONCURRENCY": "1",
        "NER_LLM__TIMEOUT_S": "300",
        "NER_LABEL_STUDIO__URL": s.label_studio.url,
        "NER_LABEL_STUDIO__API_KEY": s.label_studio.api_key.get_secret_value(),  # type: ignore[union-attr]
        "NER_RETRAIN_EVERY_N_LABEL_CHANGES": str(THRESHOLD),
        "NER_LLM_PREANNOTATE_MAX": str(LLM_MAX),
    }


def _until(condition: object, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(1)
    pytest.fail(message)


def test_labels_retrain_promote_and_reorder(
    label_studio: LabelStudioServer,
    backend_server: BackendServer,
    conll_guide: Guide,
    shared_data: Path,
    tmp_path: Path,
) -> None:
    redis.Redis.from_url(backend_server.settings.redis_url).flushdb()
    docs = [
        d
        for d in load_docs(shared_data / "conll2003" / "train.txt", spacy.blank("en"), labels=conll_guide.labels).docs
        if len(d.ents) >= 2
    ][:40]
    gold = {d.text: d for d in docs}
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs))
    env = _worker_env(backend_server)
    subprocess.run([NERLOOP, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    assert "40 tasks" in _create_project(backend_server, tasks_file)
    with open_db(backend_server.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        project.retrain_threshold = THRESHOLD
        project_id, ls_id = project.id, project.ls_project_id
    with httpx.Client(base_url=backend_server.url) as api:
        for label in conll_guide.labels:  # the model serves every type but misc once it exists; the LLM misc
            route = "llm" if label == "misc" else "model"
            assert api.put(f"/api/projects/{project_id}/routing/{label}", json={"route": route}).status_code == 200
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [NERLOOP, "worker", "--queues", "train,score,llm"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        with httpx.Client(timeout=120) as http:
            client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
            _annotate(client, ls_id, gold, THRESHOLD)
            _until(
                lambda: _run_status(backend_server) in ("succeeded", "failed", "rejected"),
                300,
                f"no finished training run; see {log}",
            )
            run = _last_run(backend_server)
            assert run.status == "succeeded", run.error
            _until(
                lambda: _ls_model_version(client, ls_id).startswith(run.model_version or "?"),
                180,
                f"Label Studio was not pointed at the new version; see {log}",
            )
            tag = _ls_model_version(client, ls_id)
            _check_reordered(client, ls_id, tag)
            _until(lambda: _completed(backend_server, tag) == LLM_MAX, 300, f"no LLM pass; see {log}")
            _check_llm_pass(client, ls_id, backend_server, tag)
        with httpx.Client(base_url=backend_server.url, timeout=180) as api:  # the live LLM on a busy machine
            reply = api.post(
                "/predict", json={"project": f"{ls_id}.1", "tasks": [{"id": 1, "data": {"text": docs[-1].text}}]}
            )
        # the LLM's part answered, or promised to the `llm` queue when the busy machine made it miss the wait
        assert reply.status_code == 200
        assert reply.json()["results"][0]["model_version"] in (tag, f"{tag}~llm-pending")
    finally:
        stop_process(worker)


def _annotate(client: LabelStudio, ls_id: int, gold: dict[str, object], n: int) -> None:
    tasks = list(client.tasks.list(project=ls_id))[:n]
    for task in tasks:
        doc = gold[task.data["text"]]
        result = [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {"start": e.start_char, "end": e.end_char, "text": e.text, "labels": [e.label_]},
            }
            for e in doc.ents
        ]  # type: ignore[attr-defined]
        client.annotations.create(id=task.id, result=result)


def _last_run(backend: BackendServer) -> TrainingRun:
    with open_db(backend.settings.database_url) as db:
        return db.scalars(select(TrainingRun).order_by(TrainingRun.id.desc())).first()  # type: ignore[return-value]


def _run_status(backend: BackendServer) -> str | None:
    run = _last_run(backend)
    return run.status if run is not None else None


def _ls_model_version(client: LabelStudio, ls_id: int) -> str:
    return str(client.projects.get(id=ls_id).model_version or "")


def _check_reordered(client: LabelStudio, ls_id: int, tag: str) -> None:
    predictions = [p for p in client.predictions.list(project=ls_id) if p.model_version == tag]
    assert len(predictions) >= 20  # every unlabelled task (40 - 15 labelled) got a prediction of the new version
    score_of = {p.task: p.score for p in predictions}
    ordered = [
        t.id
        for t in client.tasks.list(project=ls_id, query=json.dumps({"ordering": ["tasks:predictions_score"]}))
        if t.id in score_of
    ]
    scores = [score_of[i] for i in ordered]
    # the selected batch comes first
    assert scores == sorted(scores)
    assert min(scores) < 0.01 <= max(scores)


def _completed(backend: BackendServer, tag: str) -> int:
    with open_db(backend.settings.database_url) as db:
        rows = db.scalars(select(Prediction).where(Prediction.model_version == tag)).all()
        return sum(r.complete for r in rows)


def _check_llm_pass(client: LabelStudio, ls_id: int, backend: BackendServer, tag: str) -> None:
    """The worker's `llm` queue completed the next tasks in place: still one prediction per task and version."""
    pushed = [p for p in client.predictions.list(project=ls_id) if p.model_version == tag]
    assert len(pushed) == len({p.task for p in pushed})
    with open_db(backend.settings.database_url) as db:
        rows = db.scalars(
            select(Prediction).where(Prediction.model_version == tag).order_by(Prediction.score, Prediction.id)
        ).all()
    assert [r.complete for r in rows] == [True] * LLM_MAX + [False] * (len(rows) - LLM_MAX)
    by_id = {p.id: p for p in pushed}
    for row in rows:
        assert by_id[row.ls_prediction_id].result == row.spans  # type: ignore[index]
        assert by_id[row.ls_prediction_id].score == pytest.approx(row.score)  # type: ignore[index]
