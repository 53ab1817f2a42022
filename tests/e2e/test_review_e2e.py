"""From a promoted version to the review view in a real Label Studio.

Labels made through the SDK (some of them wrong), a real Celery worker on the ``train`` queue trains and promotes a
version from Label Studio's export on PostgreSQL, runs the cross-validated review pass it triggers, and pushes the
suspects; the reviewer's tab lists exactly the suspect tasks, read back through Label Studio's API with its filter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import spacy
from label_studio_sdk import LabelStudio
from sqlalchemy import select

from annotation_guide import Guide, label_studio_config
from backend.adapters.label_studio import LabelStudioGateway
from backend.db.models import ReviewPass, ReviewPrediction, ReviewSuspect, TrainingRun
from backend.db.session import upgrade
from backend.services.annotations import reconcile
from backend.services.projects import project_by_id, register_project
from backend.services.review import REVIEW_TAG, VIEW_TITLE
from backend.settings import LabelStudioSettings
from ml.converters import load_docs
from ml.promotion import held_out_role
from tests.conftest import open_db, stop_process
from tests.e2e.conftest import E2E_REDIS_URL, LabelStudioServer
from tests.integration.conftest import _postgres_database

pytestmark = pytest.mark.e2e
NERLOOP = str(Path(sys.executable).parent / "nerloop")
N_TASKS = 40


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


def _label(client: LabelStudio, ls_id: int, docs: list[spacy.tokens.Doc]) -> None:
    """Annotate every task with its gold entities, except that the first five have every type swapped."""
    gold = {d.text: d for d in docs}
    swap = {"person": "organisation", "organisation": "location", "location": "person", "misc": "person"}
    for n, task in enumerate(client.tasks.list(project=ls_id)):
        doc = gold[task.data["text"]]
        result = [
            {
                "from_name": "label",
                "to_name": "text",
                "type": "labels",
                "value": {
                    "start": e.start_char,
                    "end": e.end_char,
                    "text": e.text,
                    "labels": [swap[e.label_] if n < 5 else e.label_],
                },
            }
            for e in doc.ents
        ]
        client.annotations.create(id=task.id, result=result)


def test_a_promotion_leads_to_the_review_view_in_label_studio(
    label_studio: LabelStudioServer, postgres_url: str, conll_guide: Guide, shared_data: Path, tmp_path: Path
) -> None:
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()
    docs = [
        d
        for d in load_docs(shared_data / "conll2003" / "train.txt", spacy.blank("en"), labels=conll_guide.labels).docs
        if len(d.ents) >= 2
    ][:N_TASKS]
    settings = LabelStudioSettings(url=label_studio.url, api_key=label_studio.token)  # type: ignore[arg-type]
    with LabelStudioGateway(settings) as gateway:
        ls_id = gateway.create_project(title="review e2e", label_config=label_studio_config(conll_guide))
        gateway.import_tasks(ls_id, [d.text for d in docs])
    with open_db(postgres_url) as db:
        project_id = register_project(db, ls_project_id=ls_id, guide=conll_guide, retrain_threshold=1000).id
    env = {
        **os.environ,
        "NER_DATABASE_URL": postgres_url,
        "NER_REDIS_URL": E2E_REDIS_URL,
        "NER_MODEL_ROOT": str(tmp_path / "models"),
        "NER_LABEL_STUDIO__URL": label_studio.url,
        "NER_LABEL_STUDIO__API_KEY": label_studio.token,
        "NER_RETRAIN_MAX_STEPS": "60",
        "NER_DEV_FRACTION": "0.3",
        "NER_REVIEW__FOLDS": "2",
        "NER_REVIEW__MAX_STEPS": "40",
        "NER_REVIEW__MIN_DOCS": "10",
        "NER_REVIEW__MIN_CONFIDENCE": "0.0",
    }
    log = tmp_path / "worker.log"
    with httpx.Client(timeout=120) as http:
        client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
        _label(client, ls_id, docs)
        with LabelStudioGateway(settings) as gateway, open_db(postgres_url) as db:  # as `project attach` imports
            reconcile(db, project_by_id(db, project_id), gateway.export_tasks(ls_id))
        with log.open("w") as out:  # the train queue only: rescoring and the LLM are other tests' business
            worker = subprocess.Popen(
                [NERLOOP, "worker", "--queues", "train"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            retrain = [NERLOOP, "retrain", "--project", str(project_id), "--no-wait"]
            subprocess.run(retrain, env=env, check=True, capture_output=True, timeout=120)
            _until(lambda: _pass_status(postgres_url) in ("pushed", "failed", "skipped"), 400, lambda: _why(log))
        finally:
            stop_process(worker)  # type: ignore[arg-type]
        with open_db(postgres_url) as db:
            run = db.scalars(select(TrainingRun)).one()
            assert run.status == "succeeded", run.error
            review = db.scalars(select(ReviewPass)).one()
            assert review.status == "pushed", review.error
            # the training tasks only: held-out dev and test tasks are never reviewed
            assert review.model_version == run.model_version
            assert review.suspects > 0
            assert review.docs == run.details["train_docs"] < N_TASKS
            pushed = {row.ls_task_id: row.ls_prediction_id for row in db.scalars(select(ReviewPrediction))}
            suspected = {row.ls_task_id for row in db.scalars(select(ReviewSuspect))}
        roles = {task: held_out_role(str(ls_id), task, fraction=0.3) for task in suspected | set(pushed)}
        # no held-out task is suspected or pushed for review
        assert roles
        assert set(roles.values()) == {"train"}
        printed = subprocess.run(
            [NERLOOP, "review", "--project", str(project_id)], env=env, capture_output=True, text=True, timeout=120
        ).stdout
        assert f"{review.suspects} suspects in {review.docs} labelled tasks" in printed
        assert "'nerloop review' tab" in printed
        # the reviewer's tab lists the suspect tasks, and only them
        views = [v for v in client.views.list(project=ls_id) if (v.data or {}).get("title") == VIEW_TITLE]
        assert len(views) == 1
        in_view = {t.id for t in client.tasks.list(project=ls_id, view=views[0].id)}
        assert in_view == set(pushed)
        assert 0 < len(in_view) < N_TASKS + 1
        # the same filter as a query of the task list
        query = {
            "filters": {
                "conjunction": "and",
                "items": [
                    {
                        "filter": "filter:tasks:predictions_model_versions",
                        "operator": "contains",
                        "type": "List",
                        "value": [REVIEW_TAG],
                    }
                ],
            }
        }
        assert {t.id for t in client.tasks.list(project=ls_id, query=json.dumps(query))} == in_view
        predictions = [p for p in client.predictions.list(project=ls_id) if p.model_version == REVIEW_TAG]
        assert {p.task: p.id for p in predictions} == pushed  # one review prediction per suspect task
        noted = [r for p in predictions for r in p.result if "meta" in r]
        assert noted
        assert all(r["meta"]["text"][0].startswith("nerloop review: ") for r in noted)
        # the review tag never becomes the project's model version (it would reorder the labelling queue)
        assert client.projects.get(id=ls_id).model_version != REVIEW_TAG
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()


def _pass_status(url: str) -> str | None:
    with open_db(url) as db:
        row = db.scalars(select(ReviewPass)).first()
        if row is None:
            failed = db.scalars(select(TrainingRun).where(TrainingRun.status.in_(("failed", "rejected")))).first()
            return "failed" if failed is not None else None
        return row.status


def _why(log: Path) -> str:
    return f"no pushed review pass; worker log:\n{log.read_text()[-3000:]}"
