"""The review push against a real Label Studio when a reviewer deletes things between two pushes (issue #15 review).

A deleted review prediction is created anew, a deleted task loses its row, a prediction created by a worker that died
before recording its id is adopted rather than pushed twice, a 'missed' label keeps its region with the note, and the
pass ends pushed instead of failing at the stale rows. The suspects are stored directly (the cross-validation that finds
them is tests/integration/test_quality.py's and tests/e2e/test_review_e2e.py's business).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from label_studio_sdk import LabelStudio
from sqlalchemy import select, update

from annotation_guide import Guide, label_studio_config
from backend.adapters.label_studio import LabelStudioGateway
from backend.db.models import ReviewPass, ReviewPrediction, ReviewSuspect, TaskLabel
from backend.db.session import upgrade
from backend.errors import UpstreamRefusedError
from backend.services.projects import project_by_id, record_model_version, register_project
from backend.services.review import REVIEW_TAG, run_review
from backend.settings import LabelStudioSettings, Settings
from tests.conftest import open_db, sessions_for
from tests.e2e.conftest import E2E_REDIS_URL, LabelStudioServer

pytestmark = pytest.mark.e2e
TEXTS = [
    "Anna Smith works for Acme in Paris .",
    "Bob Jones visited Berlin .",
    "Carla met Dan in Rome .",
    "Eve joined Initech .",
]
# per task: its labels, and one suspect (kind, labelled span or None, the model's span or None)
LABELS = [
    [(0, 10, "person"), (21, 25, "organisation"), (29, 34, "location")],
    [(0, 9, "person"), (18, 24, "location")],
    [(0, 5, "person"), (10, 13, "person"), (17, 21, "location")],
    [(0, 3, "person"), (11, 18, "organisation")],
]
SUSPECTS = [
    ("wrong_type", (21, 25, "organisation"), (21, 25, "location")),
    ("missed", (18, 24, "location"), None),  # the model finds nothing at "Berlin"
    ("wrong_boundary", (0, 5, "person"), (0, 13, "person")),
    ("spurious", None, (4, 10, "misc")),
]


def _predictions(client: LabelStudio, ls_id: int) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for p in client.predictions.list(project=ls_id):
        if p.model_version == REVIEW_TAG:
            found.setdefault(int(p.task), []).append(int(p.id))  # type: ignore[arg-type]
    return found


def test_a_push_survives_deletions_in_label_studio(
    label_studio: LabelStudioServer, conll_guide: Guide, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nerloop.db'}"
    upgrade(url)
    ls_settings = LabelStudioSettings(url=label_studio.url, api_key=label_studio.token)  # type: ignore[arg-type]
    settings = Settings(
        database_url=url, redis_url=E2E_REDIS_URL, model_root=tmp_path / "models", label_studio=ls_settings
    )
    with LabelStudioGateway(ls_settings) as gateway:
        ls_id = gateway.create_project(title="review push e2e", label_config=label_studio_config(conll_guide))
        tasks = gateway.import_tasks(ls_id, TEXTS)
    with open_db(url) as db:
        project = register_project(db, ls_project_id=ls_id, guide=conll_guide, retrain_threshold=1000)
        project_id = project.id
        version = record_model_version(
            db, project, version="v1", path=str(tmp_path / "v1"), architecture="cnn", metrics=None, promote=True
        )
        review = ReviewPass(
            project_id=project_id,
            model_version_id=version.id,
            model_version="v1",
            status="scored",  # suspects stored, push pending (Label Studio was away)
            suspects=len(SUSPECTS),
            details={"folds": 2},
        )
        db.add(review)
        db.flush()
        pass_id, version_id = review.id, version.id
        for rank, (task, text, spans, (kind, labelled, model)) in enumerate(
            zip(tasks, TEXTS, LABELS, SUSPECTS, strict=True), start=1
        ):
            db.add(TaskLabel(project_id=project_id, ls_task_id=task, text=text, spans=[list(s) for s in spans]))
            start, end, label = labelled or (None, None, None)
            p_start, p_end, p_label = model or (None, None, None)
            db.add(
                ReviewSuspect(
                    pass_id=pass_id, project_id=project_id, ls_task_id=task, rank=rank, kind=kind,
                    confidence=1.0 - rank / 10, start=start, end=end, label=label, predicted_start=p_start,
                    predicted_end=p_end, predicted_label=p_label,
                    text=text[(start if start is not None else p_start) : (end if end is not None else p_end)],
                )
            )  # fmt: skip

    def push() -> str:
        with sessions_for(url) as sessions, LabelStudioGateway(ls_settings) as gateway:
            outcome = run_review(sessions, settings, project_id=project_id, model_version_id=version_id, sink=gateway)
        return outcome.status

    with httpx.Client(timeout=120) as http:
        client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token, httpx_client=http)
        assert push() == "pushed"
        first = _predictions(client, ls_id)
        assert sorted(first) == sorted(tasks)
        assert all(len(ids) == 1 for ids in first.values())
        # the missed label keeps its region, with the note that says why it is there
        berlin = client.predictions.get(id=first[tasks[1]][0])
        noted = [r for r in berlin.result if "meta" in r]
        assert [(r["value"]["start"], r["value"]["end"]) for r in noted] == [(18, 24)]
        assert "missed" in noted[0]["meta"]["text"][0]
        assert "Berlin" in noted[0]["meta"]["text"][0]

        reviewed, gone, pending, _ = tasks
        client.predictions.delete(id=first[reviewed][0])  # a reviewer deletes a review prediction
        client.tasks.delete(id=str(gone))  # and a suspect task
        with LabelStudioGateway(ls_settings) as gateway:  # the gateway: a refusal says so; a gone one is deleted
            with pytest.raises(UpstreamRefusedError) as refused:
                gateway.update_prediction(first[reviewed][0], result=[], score=0.5, model_version=REVIEW_TAG)
            assert refused.value.upstream_status == 404
            gateway.delete_prediction(first[reviewed][0])  # already gone: done, no error
        with open_db(url) as db:  # a later push (a retry of the pass) after a worker died between create and record
            db.execute(update(ReviewPrediction).values(pass_id=None))
            db.execute(
                update(ReviewPrediction).where(ReviewPrediction.ls_task_id == pending).values(ls_prediction_id=None)
            )
            db.execute(update(ReviewPass).values(status="scored"))
        assert push() == "pushed"  # not a failure at the stale rows, and no retry loop
        second = _predictions(client, ls_id)
        with open_db(url) as db:
            rows = {r.ls_task_id: r.ls_prediction_id for r in db.scalars(select(ReviewPrediction))}
            assert db.get(ReviewPass, pass_id).status == "pushed"  # type: ignore[union-attr]
            assert project_by_id(db, project_id).ls_project_id == ls_id
        # the deleted task's row is dropped
        assert gone not in rows
        assert gone not in second
        assert second[pending] == first[pending] == [rows[pending]]  # adopted: not pushed twice
        # created anew
        assert len(second[reviewed]) == 1
        assert second[reviewed][0] != first[reviewed][0]
        assert {task: ids[0] for task, ids in second.items()} == rows
