"""A rescoring with diversity, run by a real Celery worker on PostgreSQL with a real spaCy model.

The pool holds near-duplicates on purpose: the texts the model is least sure of, each imported several times. By
uncertainty alone the batch is copies of them; with diversity on (modAL's ranked batch over the model's tok2vec doc
vectors) the worker pushes a batch whose members are all different, and records the strategy it ran with. Label
Studio is a small HTTP server in the test that answers the calls the worker's SDK makes and records them (fast,
and it counts every call); the same test against a real Label Studio is
tests/e2e/test_rescoring_strategy_e2e.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI, Request
from spacy.language import Language
from sqlalchemy import select

from annotation_guide import Guide
from backend.adapters.jobs import CeleryJobQueue
from backend.db.models import Prediction, Rescoring
from backend.ports import TaskName
from backend.services.projects import register_project
from backend.services.sampling import set_strategy
from ml.converters import load_docs
from ml.model_store import load_model
from ml.promotion import in_dev_split
from ml.sampling_signals import read_pool
from ml.sampling_strategy import SamplingStrategy, choose_batch
from ml.training import TrainedModel
from tests.conftest import open_db, promote, serve_in_thread, stop_process
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NERLOOP = str(Path(sys.executable).parent / "nerloop")
LS_PROJECT = 44
BATCH = 6
COPIES = 4


@dataclass
class FakeLabelStudio:
    """The Label Studio calls of a rescoring: list tasks, create and update predictions, set the model version."""

    tasks: dict[int, dict[str, Any]]
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/tasks/")
        def tasks(page: int = 1, page_size: int = 100) -> dict[str, Any]:
            rows = list(self.tasks.values())[(page - 1) * page_size : page * page_size]
            return {"tasks": rows, "total": len(self.tasks), "total_annotations": 0, "total_predictions": 0}

        @app.post("/api/predictions/")
        async def create(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.calls["create"] += 1
            new_id = 5000 + len(self.predictions)
            self.predictions[new_id] = body
            return {"id": new_id, **body}

        @app.patch("/api/predictions/{prediction_id}/")
        async def update(prediction_id: int, request: Request) -> dict[str, Any]:
            self.calls["update"] += 1
            self.predictions[prediction_id].update(await request.json())
            return {"id": prediction_id, **self.predictions[prediction_id]}

        @app.patch("/api/projects/{project_id}/")
        async def project(project_id: int, request: Request) -> dict[str, Any]:
            self.calls["version"] += 1
            return {"id": project_id, **(await request.json())}

        return app


def _task(task_id: int, text: str, *, labelled: bool = False) -> dict[str, Any]:
    annotations = [{"id": task_id, "result": [], "was_cancelled": False}] if labelled else []
    return {"id": task_id, "data": {"text": text}, "annotations": annotations}


def _pool(model: TrainedModel, texts: list[str]) -> tuple[dict[int, dict[str, Any]], set[str]]:
    """Tasks: the 3 texts the model is least sure of, COPIES times each, 30 others, 8 labelled; none held out."""
    loaded = load_model(model.path)
    signals = read_pool(loaded, [loaded.make_doc(t) for t in texts[:60]])
    scores = [1.0 - min(d.span_scores, default=1.0) for d in signals.uncertainty]
    order = sorted(range(60), key=lambda i: -scores[i])
    duplicated = [texts[i] for i in order[:3]]
    rows = [*duplicated * COPIES, *(texts[i] for i in order[3:33])]
    ids = (i for i in range(1, 10_000) if not in_dev_split(str(LS_PROJECT), i, fraction=0.2))
    tasks = {task_id: _task(task_id, text) for task_id, text in zip(ids, rows, strict=False)}
    for text in texts[60:68]:
        task_id = next(ids)
        tasks[task_id] = _task(task_id, text, labelled=True)
    return tasks, set(duplicated)


@pytest.fixture
def texts(shared_data: Path, conll_guide: Guide, blank_nlp: Language) -> list[str]:
    docs = load_docs(shared_data / "conll2003" / "test.txt", blank_nlp, labels=conll_guide.labels).docs
    return list(dict.fromkeys(d.text for d in docs if len(d) >= 8))[:80]


@pytest.fixture
def worker(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[tuple[FakeLabelStudio, Path]]:
    studio = FakeLabelStudio({})
    log = tmp_path / "worker.log"
    with serve_in_thread(studio.app(), log_level="error") as port, log.open("w") as out:
        env = {
            **os.environ,
            "NER_DATABASE_URL": database_url,
            "NER_REDIS_URL": redis_url,
            "NER_MODEL_ROOT": str(tmp_path / "models"),
            "NER_LABEL_STUDIO__URL": f"http://127.0.0.1:{port}",
            "NER_LABEL_STUDIO__API_KEY": "test-token",
            "NER_BATCH_SIZE": str(BATCH),
            "NER_LLM_PREANNOTATE_MAX": "0",
        }
        process = subprocess.Popen(
            [NERLOOP, "worker", "--queues", "score", "--concurrency", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: "ready" in log.read_text(), 120, f"the worker did not start; see {log}")
            yield studio, log
        finally:
            stop_process(process)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_rescoring_with_diversity_pushes_a_batch_without_near_duplicates(
    database_url: str,
    redis_url: str,
    worker: tuple[FakeLabelStudio, Path],
    small_model: TrainedModel,
    conll_guide: Guide,
    texts: list[str],
) -> None:
    studio, log = worker
    studio.tasks, duplicated = _pool(small_model, texts)
    strategy = {"measure": "least_confidence", "diversity": True, "type_weights": False}
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=20)
        promote(db, project, small_model)
        set_strategy(db, project, strategy)
        project_id = project.id
        db.commit()

    CeleryJobQueue(redis_url).enqueue(TaskName.SCORE_POOL, project_id)
    unlabelled = [t for t in studio.tasks.values() if not t["annotations"]]
    wait_until(
        lambda: studio.calls["version"] >= 1 and studio.calls["create"] == len(unlabelled),
        240,
        lambda: f"no complete rescoring ({dict(studio.calls)}); see {log}",
    )

    with open_db(database_url) as db:
        done = db.scalars(select(Rescoring).where(Rescoring.project_id == project_id)).one()
        stored = db.scalars(select(Prediction).where(Prediction.project_id == project_id)).all()
    assert done.strategy == SamplingStrategy.model_validate(strategy).model_dump()
    assert (done.representation, done.pool, len(done.batch)) == ("tok2vec-mean", len(unlabelled), BATCH)
    text_of = {task_id: task["data"]["text"] for task_id, task in studio.tasks.items()}
    batch_texts = [text_of[task_id] for task_id in done.batch]
    assert len(set(batch_texts)) == BATCH, "the diverse batch holds near-duplicates"
    # the batch takes the first places of Label Studio's queue (ascending score), as pushed
    queue = [p["task"] for p in sorted(studio.predictions.values(), key=lambda p: p["score"])]
    assert queue[:BATCH] == done.batch
    assert {p.ls_task_id for p in stored} == {t["id"] for t in unlabelled}

    # the same pool by uncertainty alone: the copies crowd the batch (the pool is a meaningful test)
    loaded = load_model(small_model.path)
    pool_ids = [t["id"] for t in unlabelled]
    signals = read_pool(loaded, [loaded.make_doc(text_of[i]) for i in pool_ids])
    plain = choose_batch(
        SamplingStrategy(type_weights=False),
        signals.uncertainty,
        n=BATCH,
        rng=np.random.default_rng(0),
        per_type_f1={},
        target=0.85,
    )
    plain_texts = [text_of[pool_ids[i]] for i in plain.batch]
    assert len(set(plain_texts)) < BATCH
    assert set(plain_texts) & duplicated
