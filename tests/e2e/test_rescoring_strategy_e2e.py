"""Issue #14's integration test against the real parts.

A rescoring with diversity, run by a real Celery worker on PostgreSQL, pushes its predictions into a real Label Studio
(1.23, tests/e2e/conftest.py), and the batch it stores with its strategy holds no near-duplicates although the pool was
built with copies of the texts the model is least sure of. tests/integration/test_rescoring_strategy.py is the same path
against a recording Label Studio (fast).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from label_studio_sdk import LabelStudio
from sqlalchemy import func, select

from annotation_guide import Guide, label_studio_config
from backend.adapters.jobs import CeleryJobQueue
from backend.adapters.label_studio import LabelStudioGateway
from backend.db.models import Prediction, Rescoring
from backend.db.session import upgrade
from backend.ports import TaskName
from backend.services.projects import register_project
from backend.services.sampling import set_strategy
from backend.settings import LabelStudioSettings
from ml.model_store import load_model
from ml.promotion import in_dev_split
from ml.sampling_signals import read_pool
from ml.sampling_strategy import SamplingStrategy, choose_batch
from ml.training import TrainedModel
from tests.conftest import open_db, promote, stop_process
from tests.e2e.conftest import E2E_REDIS_URL, LabelStudioServer
from tests.integration.conftest import _postgres_database
from tests.integration.test_rescoring_strategy import COPIES, texts  # noqa: F401 (texts is a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NERLOOP = str(Path(sys.executable).parent / "nerloop")
BATCH = 6
DEV_FRACTION = 0.2


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, migrated PostgreSQL database (the machine's server), dropped afterwards."""
    databases = _postgres_database()
    url = next(databases)
    upgrade(url)
    yield url
    next(databases, None)


def _until(condition: object, timeout: float, message: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(1)
    pytest.fail(message() if callable(message) else str(message))


def test_a_diverse_rescoring_pushes_distinct_texts_first_to_label_studio(
    label_studio: LabelStudioServer,
    postgres_url: str,
    small_model: TrainedModel,
    conll_guide: Guide,
    texts: list[str],  # noqa: F811
    tmp_path: Path,
) -> None:
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()
    loaded = load_model(small_model.path)
    signals = read_pool(loaded, [loaded.make_doc(t) for t in texts[:60]])
    scores = [1.0 - min(d.span_scores, default=1.0) for d in signals.uncertainty]
    order = sorted(range(60), key=lambda i: -scores[i])
    duplicated = [texts[i] for i in order[:3]]
    unlabelled_texts = [*duplicated * COPIES, *(texts[i] for i in order[3:33])]
    labelled_texts = texts[60:68]
    settings = LabelStudioSettings(url=label_studio.url, api_key=label_studio.token)  # type: ignore[arg-type]
    with LabelStudioGateway(settings) as gateway:
        ls_id = gateway.create_project(title="diverse rescoring e2e", label_config=label_studio_config(conll_guide))
        unlabelled_ids = gateway.import_tasks(ls_id, unlabelled_texts)
        labelled_ids = gateway.import_tasks(ls_id, labelled_texts)
    text_of = dict(zip(unlabelled_ids + labelled_ids, unlabelled_texts + labelled_texts, strict=True))
    with httpx.Client(timeout=120) as http:
        client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
        for task_id in labelled_ids:
            client.annotations.create(id=task_id, result=[])
    pool_ids = [i for i in unlabelled_ids if not in_dev_split(str(ls_id), i, fraction=DEV_FRACTION)]
    pool_texts = [text_of[i] for i in pool_ids]
    # the pool the worker ranks holds copies: by uncertainty alone the batch repeats texts
    plain = choose_batch(
        SamplingStrategy(type_weights=False),
        read_pool(loaded, [loaded.make_doc(t) for t in pool_texts]).uncertainty,
        n=BATCH,
        rng=np.random.default_rng(0),
        per_type_f1={},
        target=0.85,
    )
    assert len({pool_texts[i] for i in plain.batch}) < BATCH, "the pool has too few copies to test anything"

    strategy = {"measure": "least_confidence", "diversity": True, "type_weights": False}
    with open_db(postgres_url) as db:
        project = register_project(db, ls_project_id=ls_id, guide=conll_guide, retrain_threshold=1000)
        promote(db, project, small_model)
        set_strategy(db, project, strategy)
        project_id = project.id
        db.commit()
    env = {
        **os.environ,
        "NER_DATABASE_URL": postgres_url,
        "NER_REDIS_URL": E2E_REDIS_URL,
        "NER_MODEL_ROOT": str(tmp_path / "models"),
        "NER_LABEL_STUDIO__URL": label_studio.url,
        "NER_LABEL_STUDIO__API_KEY": label_studio.token,
        "NER_BATCH_SIZE": str(BATCH),
        "NER_DEV_FRACTION": str(DEV_FRACTION),
        "NER_LLM_PREANNOTATE_MAX": "0",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [NERLOOP, "worker", "--queues", "score", "--concurrency", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _until(lambda: "ready" in log.read_text(), 180, lambda: f"the worker did not start: {log.read_text()[-3000:]}")
        CeleryJobQueue(E2E_REDIS_URL).enqueue(TaskName.SCORE_POOL, project_id)

        def pushed() -> int:
            with open_db(postgres_url) as db:
                count = db.scalar(
                    select(func.count()).select_from(Prediction).where(Prediction.ls_prediction_id.is_not(None))
                )
            return int(count or 0)

        _until(  # every prediction pushed, then the project's version set: the job reports success
            lambda: "succeeded" in log.read_text() and pushed() == len(unlabelled_ids),
            400,
            lambda: f"no complete rescoring ({pushed()} pushed): {log.read_text()[-3000:]}",
        )
    finally:
        stop_process(worker)

    with open_db(postgres_url) as db:
        done = db.scalars(select(Rescoring).where(Rescoring.project_id == project_id)).one()
    assert done.strategy == SamplingStrategy.model_validate(strategy).model_dump()
    assert (done.representation, done.pool, len(done.batch)) == ("tok2vec-mean", len(pool_ids), BATCH)
    batch_texts = [text_of[i] for i in done.batch]
    assert len(set(batch_texts)) == BATCH, f"the diverse batch holds near-duplicates: {batch_texts}"
    assert set(batch_texts) & set(duplicated)  # the copies are uncertain: one of each may be chosen, not more

    # read back from Label Studio: one prediction per unlabelled task, the batch first among the pool's tasks
    with httpx.Client(timeout=120) as http:
        client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
        predictions = client.predictions.list(project=ls_id)
        model_version = client.projects.get(id=ls_id).model_version
    assert sorted(p.task for p in predictions if p.task is not None) == sorted(unlabelled_ids)
    assert {p.model_version for p in predictions} == {model_version}
    score = {p.task: p.score for p in predictions}
    queue = sorted(pool_ids, key=lambda i: score[i] or 0.0)
    assert queue[:BATCH] == done.batch
