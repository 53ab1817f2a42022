"""nerloop's label state equals Label Studio's whatever events arrive.

Several annotations per task, deletions singly and by task, skips, relations and other non-label results, repeated
training requests, events out of order, malformed bodies. On SQLite and PostgreSQL; the same sequences against a real
Label Studio are in tests/e2e/test_label_state_e2e.py.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import func, select

from annotation_guide import Guide
from backend.db.models import Annotation, AnnotationEvent, Project, TrainingRun, utcnow
from backend.services.label_state import (
    StoredLabelsSource,
    annotated_tasks,
    convert_labels,
    index_labels,
    label_counts,
    labeled_examples,
)
from backend.services.projects import register_project
from backend.services.training import Trainer, manual_run, retrain_if_due, split_snapshot
from backend.services.watermark import labels_count
from backend.settings import Settings
from tests.conftest import open_db, sessions_for
from tests.integration.conftest import LS_PROJECT, Backend, annotation_event

pytestmark = pytest.mark.integration

TEXT = "Anna Smith met Bob Jones in Paris ."
ANNA, BOB, PARIS = (0, 10, "person"), (15, 24, "person"), (28, 33, "location")


def region(start: int, end: int, label: str, text: str = TEXT, from_name: str = "label") -> dict[str, Any]:
    return {
        "id": f"r{start}",
        "from_name": from_name,
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
    }


RELATION = {"from_id": "r0", "to_id": "r15", "type": "relation", "direction": "right", "labels": []}
TEXTAREA = {"id": "t1", "from_name": "notes", "to_name": "text", "type": "textarea", "value": {"text": ["unsure"]}}
CHOICES = {"id": "c1", "from_name": "quality", "to_name": "text", "type": "choices", "value": {"choices": ["ok"]}}


def event(
    annotation_id: int,
    result: Any,
    *,
    task_id: int = 1,
    text: str = TEXT,
    action: str = "ANNOTATION_CREATED",
    updated_at: str = "2026-11-29T10:00:00.000000Z",
    was_cancelled: bool = False,
) -> dict[str, Any]:
    return annotation_event(
        task_id=task_id,
        annotation_id=annotation_id,
        text=text,
        spans=[],
        action=action,
        result=result,
        updated_at=updated_at,
        was_cancelled=was_cancelled,
    )


def deleted(*ids: int) -> dict[str, Any]:
    return {"action": "ANNOTATIONS_DELETED", "project": {"id": LS_PROJECT}, "annotations": [{"id": i} for i in ids]}


def post(backend: Backend, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    reply = backend.client.post("/webhook", json=body)
    assert reply.status_code == status, reply.text
    return reply.json()  # type: ignore[no-any-return]


def counts(backend: Backend) -> dict[str, int]:
    types = backend.client.get(f"/api/projects/{backend.project_id}/progress").json()["types"]
    return {t["label"]: t["labels"] for t in types if t["labels"]}


def examples(backend: Backend) -> list[tuple[str, list[tuple[int, int, str]]]]:
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        return [(text, [(s.start, s.end, s.label) for s in spans]) for text, spans in labeled_examples(db, project)]


def watermark(backend: Backend) -> int:
    """The project's label watermark, checked against its definition: the events marked as label changes."""
    with open_db(backend.settings.database_url) as db:
        counted = db.scalar(select(func.count()).where(AnnotationEvent.label_change.is_(True)))
        kept = labels_count(db, db.scalars(select(Project)).one())
    assert kept == counted
    return kept


def test_relations_text_areas_and_choices_are_counted_never_fatal(backend: Backend) -> None:
    other_control = region(28, 33, "city", from_name="places")  # a second <Labels> control, not the guide's
    reply = post(backend, event(1, [region(*ANNA), region(*BOB), RELATION, TEXTAREA, CHOICES, other_control]))
    assert reply["status"] == "stored"
    assert reply["label_change"] is True
    assert examples(backend) == [(TEXT, [ANNA, BOB])]
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        split = split_snapshot(annotated_tasks(db, project), project, dev_fraction=0.5)
    assert len(split.train) + len(split.dev) + len(split.test) == 1
    assert split.issues == {"unsupported_result (ignored)": 4}


def test_deleting_one_of_two_annotations_keeps_the_other(backend: Backend) -> None:
    post(backend, event(1001, [region(*ANNA)], updated_at="2026-11-29T10:00:00Z"))
    post(backend, event(1002, [region(*ANNA), region(*PARIS)], updated_at="2026-11-29T10:05:00Z"))
    assert counts(backend) == {"person": 1, "location": 1}  # the latest live annotation is the task's
    assert post(backend, deleted(1002))["label_change"] is True
    assert counts(backend) == {"person": 1}  # 1001 is still live in Label Studio
    assert examples(backend) == [(TEXT, [ANNA])]
    assert post(backend, deleted(1001))["label_change"] is True
    assert counts(backend) == {}
    assert examples(backend) == []
    assert post(backend, deleted(1001))["status"] == "duplicate"
    assert post(backend, deleted(7777))["label_change"] is False  # never seen: nothing changes
    assert watermark(backend) == 4


def test_skips_are_not_label_changes(backend: Backend) -> None:
    with open_db(backend.settings.database_url) as db:
        db.scalars(select(Project)).one().retrain_threshold = 2
    for annotation_id in (1, 2):
        reply = post(backend, event(annotation_id, [], task_id=annotation_id, was_cancelled=True))
        assert reply["status"] == "stored"
        assert reply["label_change"] is False
        assert "queued" not in reply
    assert post(backend, deleted(2))["label_change"] is False  # deleting a skip changes no label either
    assert watermark(backend) == 0
    assert counts(backend) == {}
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        assert retrain_if_due(db, project) is None
    refused = backend.client.post(f"/api/projects/{backend.project_id}/retrain")
    assert refused.status_code == 422
    assert "no labels yet" in refused.json()["error"]
    # a skipped task labelled later by someone else counts once; a skip turned into labels counts too
    assert post(backend, event(3, [region(*ANNA)], task_id=1))["label_change"] is True
    unskipped = event(1, [region(*BOB)], action="ANNOTATION_UPDATED", updated_at="2026-11-29T11:00:00Z")
    assert post(backend, unskipped)["label_change"] is True
    assert watermark(backend) == 2
    assert examples(backend) == [(TEXT, [BOB])]


def test_start_training_is_a_new_request_each_click(backend: Backend) -> None:
    post(backend, event(1, [region(*ANNA)]))
    body = {"action": "START_TRAINING", "project": {"id": LS_PROJECT, "title": "p", "label_config": "<View/>"}}
    first, second = post(backend, body), post(backend, body)  # Label Studio sends the same body for both clicks
    assert first["status"] == second["status"] == "stored"
    assert first["event_id"] != second["event_id"]
    assert first["queued"] is second["queued"] is True
    queued = redis.Redis.from_url(backend.settings.redis_url).lrange("score", 0, -1)
    assert sum(b"workers.start_training" in message for message in queued) == 2
    # what the second click's job does: a failed run at this watermark is queued again, a live one is kept
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        run, created = manual_run(db, project, trigger="button")
        run.status, run.error = "failed", "boom"
        db.flush()
        again, created_again = manual_run(db, project, trigger="button")
        assert created
        assert created_again
        assert again.id == run.id
        assert again.status == "queued"
        assert manual_run(db, project, trigger="button") == (again, False)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (event(1, "zzz"), "annotation.result"),
        (event(1, [1, 2]), "annotation.result.0"),
        ({**event(1, []), "annotation": {**event(1, [])["annotation"], "result": None}}, "annotation.result"),
        ({**event(1, []), "annotation": {**event(1, [])["annotation"], "id": "x1"}}, "annotation.id"),
        ({**event(1, []), "task": {"data": {"text": TEXT}}}, "task.id"),
        ({**event(1, []), "task": {"id": 1, "data": "text"}}, "task.data"),
        ({**deleted(), "annotations": [{"id": "a"}]}, "annotations.0.id"),
        ({**deleted(), "annotations": "all"}, "annotations"),
        ({"action": "TASKS_DELETED", "project": {"id": LS_PROJECT}, "tasks": [{}]}, "tasks.0.id"),
    ],
)
def test_malformed_annotation_events_are_refused_and_nothing_is_stored(
    backend: Backend, body: dict[str, Any], where: str
) -> None:
    reply = post(backend, body, status=422)
    assert reply["error"].startswith("webhook body: ")
    assert where in reply["error"]
    with open_db(backend.settings.database_url) as db:
        assert db.scalar(select(func.count()).select_from(AnnotationEvent)) == 0
        assert db.scalar(select(func.count()).select_from(Annotation)) == 0
    post(backend, event(1, [region(*ANNA)]))  # the project goes on
    assert counts(backend) == {"person": 1}


def test_events_out_of_order_never_roll_labels_back(backend: Backend) -> None:
    newer = event(5, [region(*PARIS)], action="ANNOTATION_UPDATED", updated_at="2026-11-29T10:10:00Z")
    older = event(5, [region(*ANNA)], updated_at="2026-11-29T10:00:00Z")
    assert post(backend, newer)["label_change"] is True
    assert post(backend, older)["label_change"] is False  # the create was delivered late
    assert examples(backend) == [(TEXT, [PARIS])]
    post(backend, deleted(5))
    late = event(5, [region(*BOB)], action="ANNOTATION_UPDATED", updated_at="2026-11-29T10:20:00Z")
    assert post(backend, late)["label_change"] is False  # a deleted annotation stays deleted
    post(backend, deleted(6))
    assert post(backend, event(6, [region(*BOB)], task_id=2))["label_change"] is False  # deleted before it came
    assert examples(backend) == []
    unchanged = event(7, [region(*ANNA)], task_id=3)
    assert post(backend, unchanged)["label_change"] is True
    resaved = {**unchanged, "action": "ANNOTATION_UPDATED"}
    resaved["annotation"] = {**unchanged["annotation"], "updated_at": "2026-11-29T12:00:00Z"}
    assert post(backend, resaved)["label_change"] is False  # saved again without a change


@pytest.mark.parametrize("with_project", [True, False])
def test_deleting_tasks_removes_all_their_annotations(backend: Backend, with_project: bool) -> None:
    post(backend, event(1, [region(*ANNA)], task_id=1))
    post(backend, event(2, [region(*BOB)], task_id=1, updated_at="2026-11-29T10:01:00Z"))
    post(backend, event(3, [region(*PARIS)], task_id=2))
    body: dict[str, Any] = {"action": "TASKS_DELETED", "tasks": [{"id": 1}, {"id": 99}]}
    if with_project:
        body["project"] = {"id": LS_PROJECT}
    assert post(backend, body)["label_change"] is True
    assert examples(backend) == [(TEXT, [PARIS])]
    assert watermark(backend) == 4
    # a save of task 1 (or of task 99, which nerloop never saw) that arrives after the deletion changes nothing
    assert (
        post(backend, event(5, [region(*BOB)], task_id=1, updated_at="2026-11-29T10:05:00Z"))["label_change"] is False
    )
    assert post(backend, event(6, [region(*ANNA)], task_id=99))["label_change"] is False
    assert examples(backend) == [(TEXT, [PARIS])]
    assert watermark(backend) == 4
    # without a project, a deletion of tasks nerloop holds nothing of cannot be placed: ignored
    assert post(backend, {"action": "TASKS_DELETED", "tasks": [{"id": 4242}]})["status"] == "ignored"


def test_malformed_regions_inside_a_valid_result_are_skipped_with_a_count(backend: Backend) -> None:
    broken = [
        {"type": "labels", "from_name": "label", "value": {"end": 10, "labels": ["person"]}},  # no start
        {"type": "labels", "from_name": "label", "value": {"start": 0, "end": 10, "labels": []}},  # no label
        {"type": "labels", "from_name": "label", "value": {"start": 28, "end": 99, "labels": ["location"]}},
        "not an object",
    ]
    assert post(backend, event(1, [region(*BOB), *broken[:3]]))["label_change"] is True
    post(backend, event(3, [region(*ANNA)], task_id=3))
    # the task with a broken region is left out whole (its other spans would teach O where an entity is)
    assert examples(backend) == [(TEXT, [ANNA])]
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        issues = split_snapshot(annotated_tasks(db, project), project, dev_fraction=0.5).issues
    assert issues == {"malformed (dropped)": 2}  # one per broken region: no start, no label
    assert post(backend, event(2, broken, task_id=2), status=422)["error"].startswith("webhook body: annotation")


def test_a_project_with_every_kind_of_bad_annotation_still_trains(
    database_url: str, conll_guide: Guide, tmp_path: Path
) -> None:
    from backend.services.annotations import ingest

    settings = Settings(database_url=database_url, model_root=tmp_path, retrain_max_steps=10, dev_fraction=0.5)
    texts = [f"{name} met Bob Jones in Paris ." for name in ("Anna Smith", "Carl Evans", "Dora Leigh", "Emma Stone")]
    with open_db(database_url) as db:
        project = register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide, retrain_threshold=2)
        for i, text in enumerate(texts):
            result = [region(0, 10, "person", text), region(15, 24, "person", text), RELATION, TEXTAREA]
            result.append(region(27, 33, "location", text))  # " Paris": whitespace at its edge
            ingest(db, event(10 + i, result, task_id=100 + i, text=text))
        broken = {"type": "labels", "from_name": "label", "value": {"start": 1, "labels": ["misc"]}}
        ingest(db, event(30, [region(0, 10, "person", texts[0]), broken], task_id=300, text=texts[0]))
        ingest(db, event(20, [], task_id=200, was_cancelled=True))
        run_id = manual_run(db, project, trigger="cli")[0].id

    class Export:
        """Label Studio's export.

        The stored labels, one annotation whose webhook never came, and one that Label Studio holds but the webhook
        would refuse (its result is not a list).
        """

        def __init__(self, db: Any, p: Project) -> None:
            self.tasks = StoredLabelsSource(db, p).export_tasks(LS_PROJECT)

        def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
            missed = event(40, [region(0, 10, "person", texts[1])], task_id=400, text=texts[1])
            odd = event(41, "zzz", task_id=401, text=texts[1])
            return [*self.tasks, *({**e["task"], "annotations": [e["annotation"]]} for e in (missed, odd))]

    with sessions_for(database_url) as sessions:
        outcome = Trainer(sessions, settings, Export).run(run_id)
    with open_db(database_url) as db:
        run = db.get(TrainingRun, run_id)
        assert run is not None
        assert outcome.status in ("succeeded", "rejected"), run.error
        by_kind = run.details["conversion_issues_by_kind"]
        held = {t["id"] for t in annotated_tasks(db, db.scalars(select(Project)).one())}
    assert by_kind["unsupported_result (ignored)"] == 8
    assert by_kind["malformed (dropped)"] == 2
    assert by_kind["whitespace (trimmed)"] == 4, by_kind
    # neither the skipped task nor the malformed ones are trained on; the missed one is, and is now held
    assert run.details["train_docs"] + run.details["dev_docs"] + run.details["test_docs"] == 5
    assert run.details["reconciled_label_changes"] == 1
    assert run.details["reconciled_malformed"] == 1
    assert 400 in held
    assert 401 not in held


def test_a_project_with_its_own_tag_names_is_read_and_answered_in_them(backend: Backend, conll_guide: Guide) -> None:
    """An attached project whose config says <Labels name="ner" toName="sentence"> over $body."""
    from annotation_guide.schema import LabelStudioNames

    names = LabelStudioNames(from_name="ner", to_name="sentence", text_field="body")
    with open_db(backend.settings.database_url) as db:
        register_project(db, ls_project_id=8, guide=conll_guide.model_copy(update={"label_studio": names}))
    labelled = event(1, [region(*ANNA, from_name="ner"), region(*PARIS, from_name="label")])
    labelled["project"]["id"] = 8
    labelled["task"]["data"] = {"body": TEXT}
    assert post(backend, labelled)["label_change"] is True
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project).where(Project.ls_project_id == 8)).one()
        assert [(t, [(s.start, s.end, s.label) for s in spans]) for t, spans in labeled_examples(db, project)] == [
            (TEXT, [ANNA])  # the "label" region belongs to another control of that project
        ]
    reply = backend.client.post("/predict", json={"project": "8.1", "tasks": [{"id": 3, "data": {"body": TEXT}}]})
    assert reply.status_code == 200, reply.text
    regions = reply.json()["results"][0]["result"]
    assert regions
    assert {(r["from_name"], r["to_name"]) for r in regions} == {("ner", "sentence")}
    missing = backend.client.post("/predict", json={"project": "8.1", "tasks": [{"id": 3, "data": {"text": TEXT}}]})
    assert missing.status_code == 422
    assert "tasks.0.data.body" in missing.json()["error"]
    # one odd task among others gets an empty prediction; the others are not held back
    mixed = [{"id": 3, "data": {"body": TEXT}}, {"id": 4, "data": {"text": TEXT}}]
    reply = backend.client.post("/predict", json={"project": "8.1", "tasks": mixed})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert len(results) == 2
    assert results[0]["result"]
    assert results[1]["result"] == []


def test_events_that_never_arrived_are_caught_up_from_the_export(backend: Backend) -> None:
    from backend.services.annotations import reconcile

    post(backend, event(1, [region(*ANNA)], task_id=1))
    post(backend, event(2, [region(*BOB)], task_id=2))
    with open_db(backend.settings.database_url) as db:
        as_of = db.scalar(select(func.max(AnnotationEvent.id)))
    post(backend, event(4, [region(*PARIS)], task_id=4))  # arrives after the export was asked for
    before = watermark(backend)

    def exported(annotation_id: int, result: list[dict[str, Any]], updated_at: str) -> dict[str, Any]:
        return {"id": annotation_id, "result": result, "was_cancelled": False, "updated_at": updated_at}

    export = [  # while the backend was down: 1 changed, 2 deleted, 3 created, 5 skipped
        {"id": 1, "data": {"text": TEXT}, "annotations": [exported(1, [region(*PARIS)], "2026-11-29T11:00:00Z")]},
        {"id": 2, "data": {"text": TEXT}, "annotations": []},
        {"id": 3, "data": {"text": TEXT}, "annotations": [exported(3, [region(*BOB)], "2026-11-29T11:00:00Z")]},
        {"id": 5, "data": {"text": TEXT}, "annotations": [{**exported(5, [], "x"), "was_cancelled": True}]},
    ]
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        synced = reconcile(db, project, export, as_of=as_of)
        again = reconcile(db, project, export, as_of=as_of)
        tasks = {t["id"]: [a["id"] for a in t["annotations"]] for t in annotated_tasks(db, project)}
    assert (synced.annotations, synced.events, synced.label_changes) == (3, 4, 3)
    assert (again.events, again.label_changes) == (0, 0)
    assert tasks == {1: [1], 3: [3], 4: [4], 5: [5]}  # 4 is newer than the export: kept
    assert examples(backend) == [(TEXT, [PARIS]), (TEXT, [BOB]), (TEXT, [PARIS])]
    assert watermark(backend) == before + 3


def test_edits_that_touch_no_label_region_are_not_label_changes(backend: Backend) -> None:
    assert post(backend, event(1, [region(*ANNA), region(*BOB)]))["label_change"] is True
    edits = [
        [region(*ANNA), region(*BOB), TEXTAREA],  # a note added
        [region(*ANNA), region(*BOB), TEXTAREA, CHOICES, RELATION],  # a choice and a relation
        [region(*BOB), region(*ANNA), CHOICES],  # regions reordered, the note removed
        [{**region(*BOB), "id": "redrawn"}, region(*ANNA)],  # a region redrawn with a new id
    ]
    for minute, result in enumerate(edits, start=1):
        edited = event(1, result, action="ANNOTATION_UPDATED", updated_at=f"2026-11-29T10:0{minute}:00Z")
        assert post(backend, edited)["label_change"] is False, result
    relabelled = event(
        1, [region(15, 24, "misc"), region(*ANNA)], action="ANNOTATION_UPDATED", updated_at="2026-11-29T10:09:00Z"
    )
    assert post(backend, relabelled)["label_change"] is True
    assert watermark(backend) == 2


def test_a_session_that_read_the_rows_before_sees_them_as_they_are_when_it_writes(
    database_url: str, conll_guide: Guide
) -> None:
    """A reconcile loads every row first.

    A webhook that deletes an annotation meanwhile must not be undone by the reconcile's stale copy of that row.
    """
    from backend.services.annotations import ingest, reconcile

    with open_db(database_url) as db:
        register_project(db, ls_project_id=LS_PROJECT, guide=conll_guide)
        ingest(db, event(1, [region(*ANNA)]))
    with sessions_for(database_url) as sessions:
        reader = sessions()
        try:
            project = reader.scalars(select(Project)).one()
            held = list(reader.scalars(select(Annotation)))  # the reconcile's first read: its rows, kept in memory
            reader.commit()
            with open_db(database_url) as other:  # meanwhile, the annotator deletes it in Label Studio
                ingest(other, deleted(1))
            stale_export = [
                {
                    "id": 1,
                    "data": {"text": TEXT},
                    "annotations": [
                        {
                            "id": 1,
                            "result": [region(*PARIS)],
                            "was_cancelled": False,
                            "updated_at": "2026-11-29T11:00:00Z",
                        }
                    ],
                }
            ]
            synced = reconcile(reader, project, stale_export)
            reader.commit()
            del held
        finally:
            reader.close()
    assert synced.label_changes == 0
    with open_db(database_url) as db:
        row = db.scalars(select(Annotation)).one()
        assert row.deleted
        assert annotated_tasks(db, db.scalars(select(Project)).one()) == []


def _recomputed(db: Any, project: Project) -> tuple[list[tuple[str, list[tuple[int, int, str]]]], dict[str, int]]:
    """The labels converted from the label state now, as every path read them before they were materialised."""
    docs = convert_labels(project, annotated_tasks(db, project)).docs
    found = [(doc.text, sorted((e.start_char, e.end_char, e.label_) for e in doc.ents)) for doc in docs]
    return found, dict(Counter(label for _, spans in found for _, _, label in spans))


def _materialised(db: Any, project: Project) -> tuple[list[tuple[str, list[tuple[int, int, str]]]], dict[str, int]]:
    found = [(text, sorted((s.start, s.end, s.label) for s in spans)) for text, spans in labeled_examples(db, project)]
    return found, label_counts(db, project)


def test_materialised_labels_equal_the_label_state_after_every_kind_of_event(backend: Backend) -> None:
    """Each event re-converts only the task it touches.

    After each step the rows equal a full conversion of the label state, and a rebuild from scratch (``index_labels``,
    for projects that predate them) gives the same.
    """
    other = "Bob Jones lives in Rome ."
    steps: list[dict[str, Any]] = [
        event(1, [region(*ANNA)]),
        event(2, [region(*ANNA), region(*PARIS)], updated_at="2026-11-29T10:05:00Z"),  # a second annotator
        event(3, [region(0, 9, "person", other)], task_id=2, text=other),
        event(4, [], task_id=3, text=other, was_cancelled=True),  # a skip: no labels
        event(5, [region(0, 4, "person", other)], task_id=4, text=other),  # "Bob ": trimmed as training trims it
        event(2, [region(*BOB)], action="ANNOTATION_UPDATED", updated_at="2026-11-29T10:09:00Z"),
        deleted(2),  # annotation 1 is the task's again
        {"action": "TASKS_DELETED", "tasks": [{"id": 2}]},
        event(6, [region(*PARIS)], task_id=5),
    ]
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        for body in steps:
            post(backend, body)
            db.rollback()  # a new snapshot
            assert _materialised(db, project) == _recomputed(db, project), body["action"]
        found, totals = _materialised(db, project)
        assert totals == {"person": 2, "location": 1}
        assert len(found) == 3
        project.labels_indexed = False  # as migration 0006 leaves an existing project
        db.commit()
        assert _materialised(db, project) == (found, totals)  # rebuilt on first read
        db.commit()
        assert db.scalars(select(Project)).one().labels_indexed is True
        assert index_labels(db, project) == 3


def test_two_annotators_saving_one_task_at_once_leave_its_latest_annotation(backend: Backend) -> None:
    """Concurrent events about one task serialise on the task: none is lost, no duplicate row, no 500."""
    import threading

    bodies = [
        event(100 + i, [region(*(ANNA if i % 2 else PARIS))], updated_at=f"2026-11-29T10:00:{i:02d}Z") for i in range(8)
    ]
    replies: list[int] = []
    barrier = threading.Barrier(len(bodies))

    def send(body: dict[str, Any]) -> None:
        barrier.wait()
        replies.append(backend.client.post("/webhook", json=body).status_code)

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert replies == [200] * len(bodies)
    with open_db(backend.settings.database_url) as db:
        project = db.scalars(select(Project)).one()
        assert _materialised(db, project) == _recomputed(db, project)
        assert _materialised(db, project)[1] == {"person": 1}  # 107 (Anna) is the latest by updated_at


@pytest.mark.parametrize("job_only_when_due", [True, False])
def test_the_label_count_is_the_transactions_last_statement(backend: Backend, job_only_when_due: bool) -> None:
    """Nothing but the commit runs under the project-row lock the label watermark's increment takes.

    The increment locks the project row until the commit, so webhooks of one project wait for each other there (issue
    #10, part 6): on PostgreSQL the increment and the event's mark are one statement; on SQLite (no UPDATE in WITH) the
    mark follows it. Both ways the count and the mark agree with the events (``watermark``).
    """
    from sqlalchemy import event as sa_event

    from backend.services.annotations import ingest

    with open_db(backend.settings.database_url) as db:
        before = labels_count(db, db.scalars(select(Project)).one())
        statements: list[str] = []
        sa_event.listen(db.get_bind(), "before_cursor_execute", lambda *args: statements.append(args[2]))
        body = annotation_event(task_id=7, annotation_id=70, text=TEXT, spans=[ANNA])
        ingested = ingest(db, body, job_only_when_due=job_only_when_due)
    counts = [i for i, sql in enumerate(statements) if "UPDATE project SET label_watermark" in sql]
    assert ingested.label_change
    assert ingested.enqueued is job_only_when_due  # a fresh project's first label makes no retrain due
    assert len(counts) == 1
    last = statements[counts[0] :]
    if backend.settings.database_url.startswith("postgresql"):
        assert len(last) == 1
        assert "UPDATE annotation_event" in last[0]
    else:
        assert len(last) == 2
        assert last[1].startswith("UPDATE annotation_event")
    assert watermark(backend) == before + 1


def test_label_events_during_a_run_need_no_retrain_check_and_the_first_after_it_does(backend: Backend) -> None:
    """While a run is queued or running, label events need no retrain check; the first after it ends or dies does.

    A check then would start nothing, so the webhook sends none (a burst during a training costs no broker call per
    event).
    """
    from backend.services.annotations import ingest

    def label(annotation_id: int) -> bool:
        """Ingest one label event; return whether it needs a job (a retrain check)."""
        with open_db(backend.settings.database_url) as db:
            body = event(annotation_id, [region(*ANNA)], task_id=annotation_id)
            ingested = ingest(db, body)
        assert ingested.label_change
        return not ingested.enqueued

    with open_db(backend.settings.database_url) as db:
        db.scalars(select(Project)).one().retrain_threshold = 2
    assert [label(1), label(2)] == [False, True]  # the first threshold: due
    with open_db(backend.settings.database_url) as db:
        run = retrain_if_due(db, db.scalars(select(Project)).one())
        assert run is not None
        run_id = run.id
    for first, status in ((3, "queued"), (5, "running")):
        with open_db(backend.settings.database_url) as db:
            db.get_one(TrainingRun, run_id).status = status
        assert [label(first), label(first + 1)] == [False, False]  # past the next threshold, yet no job
    with open_db(backend.settings.database_url) as db:  # its process died: silent past the heartbeat timeout
        dead = db.get_one(TrainingRun, run_id)
        dead.started_at = dead.heartbeat_at = utcnow() - timedelta(hours=1)
    assert label(7)  # the check expires the dead run and starts the next (backend.services.run_liveness)
    with open_db(backend.settings.database_url) as db:
        db.get_one(TrainingRun, run_id).status = "succeeded"
    assert label(8)  # the run ended: the labels past its watermark make the next retrain due
    assert watermark(backend) == 8


def test_a_new_annotation_of_a_live_task_costs_six_statements_on_postgresql(backend: Backend) -> None:
    """A webhook's time is mostly its round trips (issue #10, part 6): the common event takes six, plus the commit.

    The project, the event, the annotation (the same statement checks that its task is not deleted and takes the
    task's lock), the re-conversion's read (with its deletes) and its write (the task's row with its spans), the
    watermark's count with the event's mark. SQLite takes more statements for the same state.
    """
    from sqlalchemy import event as sa_event

    from backend.services.annotations import ingest

    with open_db(backend.settings.database_url) as db:
        statements: list[str] = []
        sa_event.listen(db.get_bind(), "before_cursor_execute", lambda *args: statements.append(args[2]))
        ingested = ingest(db, annotation_event(task_id=8, annotation_id=80, text=TEXT, spans=[ANNA, PARIS]))
        during = list(statements)
        db.commit()
        project = db.scalars(select(Project)).one()
        assert _materialised(db, project) == _recomputed(db, project)
        assert _materialised(db, project)[1] == {"person": 1, "location": 1}
    assert ingested.label_change
    if not backend.settings.database_url.startswith("postgresql"):
        return
    kinds = [sql.split("\n")[0][:40] for sql in during]
    assert len(during) == 6, kinds
    assert "deleted_task" in during[2], kinds
    assert "pg_advisory_xact_lock" in during[2], kinds
    assert "labeled_span" in during[4], kinds
    assert "task_label" in during[4], kinds
    assert "UPDATE project SET label_watermark" in during[5], kinds
