"""No starvation (issue #11).

With the worker pools ``nerloop up`` runs (one Celery worker per queue group), a long LLM pass on the ``llm`` pool does
not delay a threshold crossing's retrain check (``score`` pool) or its training (``train`` pool). Then ``nerloop up``'s
stop cancels the pass mid-way and its message goes back to the ``llm`` queue, where a restart resumes it. Real Label
Studio, real workers, and a scripted LLM server that answers slowly (the only way to make the LLM slow on demand).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
import spacy
from label_studio_sdk import LabelStudio
from sqlalchemy import select

from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.api.app import create_app
from backend.db.models import Project, TrainingRun
from backend.db.session import upgrade
from backend.ports import TaskName
from backend.settings import LabelStudioSettings, LLMSettings, Settings
from ml.converters import load_docs
from tests.conftest import GUIDES, free_port, open_db, serve_in_thread
from tests.e2e.conftest import E2E_REDIS_URL, LabelStudioServer
from tests.e2e.test_label_studio import NERLOOP
from tests.integration.scripted_llm import Script, scripted_llm
from workers import up

pytestmark = pytest.mark.e2e
THRESHOLD = 5
WINDOW = 8  # tasks the LLM pass pre-annotates, one call each
SLOW_S = 30.0  # each LLM call: the pass takes WINDOW * SLOW_S = 4 min


def _until(condition: Callable[[], object], timeout: float, message: Callable[[], str]) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(message())
        time.sleep(0.5)
    return time.monotonic() - started


def _runs(url: str) -> list[TrainingRun]:
    with open_db(url) as db:
        return list(db.scalars(select(TrainingRun).order_by(TrainingRun.id)))


def test_long_llm_pass_does_not_delay_the_retrain_and_goes_back_to_its_queue_on_stop(
    label_studio: LabelStudioServer, conll_guide: Guide, shared_data: Path, tmp_path: Path
) -> None:
    broker = redis.Redis.from_url(E2E_REDIS_URL)
    broker.flushdb()
    docs = [
        d
        for d in load_docs(shared_data / "conll2003" / "train.txt", spacy.blank("en"), labels=conll_guide.labels).docs
        if len(d.ents) >= 2
    ][:30]
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs))
    script = Script(mode="slow", delay_s=SLOW_S)
    port = free_port()
    with scripted_llm(script) as llm_url:
        llm = {"base_url": llm_url, "response_format": "none", "max_retries": "0", "timeout_s": "120"}
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'nerloop.db'}",
            redis_url=E2E_REDIS_URL,
            backend_url=f"http://127.0.0.1:{port}",
            model_root=tmp_path / "models",
            label_studio=LabelStudioSettings(url=label_studio.url, api_key=label_studio.token),  # type: ignore[arg-type]
            llm=LLMSettings.model_validate({**llm, "concurrency": 1, "demonstrations": 0, "predict_wait_s": 0.5}),
        )
        upgrade(settings.database_url)
        env = {
            **os.environ,
            "NER_DATABASE_URL": settings.database_url,
            "NER_REDIS_URL": settings.redis_url,
            "NER_MODEL_ROOT": str(settings.model_root),
            "NER_BACKEND_URL": settings.backend_url,
            "NER_LABEL_STUDIO__URL": label_studio.url,
            "NER_LABEL_STUDIO__API_KEY": label_studio.token,
            "NER_LLM_PREANNOTATE_MAX": str(WINDOW),
            "NER_RETRAIN_MAX_STEPS": "60",
            "NER_DEV_FRACTION": "0.2",
            "NER_LLM__CONCURRENCY": "1",
            "NER_LLM__DEMONSTRATIONS": "0",
            **{f"NER_LLM__{key.upper()}": value for key, value in llm.items()},
        }
        cfg = up.UpConfig(home=tmp_path, guide=GUIDES / "conll2003.yaml", tasks=tasks, stop_timeout_s=5)
        try:
            up.start_workers(cfg, env)  # the pools of `nerloop up`
            with serve_in_thread(create_app(settings), port=port), httpx.Client(timeout=120) as http:
                up.wait_workers(cfg, 300, lambda message: None)
                created = subprocess.run(
                    [NERLOOP, "project", "create", "--guide", str(cfg.guide), "--tasks", str(tasks)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                assert "30 tasks" in created.stdout, created.stdout + created.stderr
                with open_db(settings.database_url) as db:
                    project = db.scalars(select(Project)).one()
                    project.retrain_threshold = THRESHOLD
                    project_id, ls_id = project.id, project.ls_project_id
                # the LLM pass of the new project (sent here too: a duplicate is harmless) holds the llm pool
                CeleryJobQueue(settings.redis_url).enqueue(TaskName.LLM_PREANNOTATE, project_id)
                _until(lambda: script.requests, 180, lambda: f"no LLM call; see {cfg.home / 'logs'}")

                client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
                gold = {d.text: d for d in docs}
                for task in list(client.tasks.list(project=ls_id))[:THRESHOLD]:
                    doc = gold[task.data["text"]]
                    client.annotations.create(
                        id=task.id,
                        result=[
                            {
                                "from_name": "label",
                                "to_name": "text",
                                "type": "labels",
                                "value": {
                                    "start": e.start_char,
                                    "end": e.end_char,
                                    "text": e.text,
                                    "labels": [e.label_],
                                },
                            }
                            for e in doc.ents
                        ],
                    )
                # the threshold's run is claimed by the train pool while the LLM pass is still on its first calls
                _until(
                    lambda: any(r.status != "queued" for r in _runs(settings.database_url)),
                    120,
                    lambda: f"no run started: {_runs(settings.database_url)}; see {cfg.home / 'logs'}",
                )
                assert script.slept < WINDOW, "the LLM pass ended before the run started: it proves nothing"
                assert all(service.process.poll() is None for service in cfg.services)
        finally:
            up.stop_all(cfg, lambda message: None)
    logs = {s.name: s.log.read_text() for s in cfg.services}
    for name in ("worker-llm", "worker-score"):
        assert "Warm shutdown" in logs[name], logs[name][-3000:]
        assert "WorkerLostError" not in logs[name], logs[name][-3000:]
    # the cancelled LLM pass is back in its queue, nothing stranded as unacknowledged: a restart resumes it
    assert "Restoring 1 unacknowledged message" in logs["worker-llm"], logs["worker-llm"][-3000:]
    assert broker.llen("llm") >= 1
    assert broker.hlen("unacked") == 0
    assert all(s.process.poll() is not None for s in cfg.services)
    broker.flushdb()
