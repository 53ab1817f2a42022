"""Label Studio webhook events: validated, stored once, and applied to the project's label state."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotation_guide import Guide
from backend.db.models import Annotation, AnnotationEvent, Project
from backend.db.upsert import upsert
from backend.errors import InvalidInputError
from backend.ids import StrictDbId, is_db_id
from backend.services import label_state
from backend.services.projects import guide_of, project_by_ls_id
from backend.services.watermark import mark_label_change
from backend.settings import Settings
from ml.converters.label_studio_tasks import parse_timestamp

# the events that can change a project's labels (Label Studio 1.23 never sends ANNOTATION_DELETED);
# ANNOTATION_IMPORTED is nerloop's own: an annotation that `project attach` read from Label Studio's export
SAVED_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATION_IMPORTED")
ANNOTATION_ACTIONS = (*SAVED_ACTIONS, "ANNOTATIONS_DELETED", "TASKS_DELETED")
STORED_ACTIONS = (*ANNOTATION_ACTIONS, "START_TRAINING")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class WebhookProject(_Loose):
    """The project part of an event."""

    id: StrictDbId


class WebhookId(_Loose):
    """An item of ``annotations`` / ``tasks`` in a deletion event."""

    id: StrictDbId


class WebhookTask(_Loose):
    """The task part of an annotation event."""

    id: StrictDbId
    data: dict[str, Any] = Field(default_factory=dict)


class WebhookAnnotation(_Loose):
    """The annotation part of an annotation event.

    What the label state needs, checked strictly, because one malformed annotation stored would be read by every later
    training run.
    """

    id: StrictDbId
    result: list[dict[str, Any]]
    was_cancelled: bool = False
    updated_at: str | None = None
    lead_time: float | None = Field(default=None, allow_inf_nan=False)
    completed_by: Any = None


class WebhookEvent(_Loose):
    """A webhook body as Label Studio 1.23 sends it (only the fields nerloop relies on are checked)."""

    action: str = Field(min_length=1)
    project: WebhookProject | None = None
    annotation: WebhookAnnotation | None = None
    annotations: list[WebhookId] | None = None
    task: WebhookTask | None = None
    tasks: list[WebhookId] | None = None


@dataclass(frozen=True)
class Ingested:
    """What happened to an event."""

    event_id: int | None
    project_id: int | None
    action: str
    created: bool
    enqueued: bool = False
    label_change: bool = False


def parse_event(body: Any) -> WebhookEvent:
    """Validate a webhook body.

    Raises:
        InvalidInputError: (422) naming every field that is wrong, e.g. ``annotation.result: must be a list``.
    """
    try:
        event = WebhookEvent.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}" for error in exc.errors(include_url=False)
        )
        raise InvalidInputError(f"webhook body: {problems}") from None
    needs: tuple[str, ...] = ()
    if event.action in SAVED_ACTIONS:
        needs = ("project", "annotation", "task")
    elif event.action in ("ANNOTATIONS_DELETED", "START_TRAINING"):
        needs = ("project", "annotations") if event.action == "ANNOTATIONS_DELETED" else ("project",)
    elif event.action == "TASKS_DELETED":
        needs = ("tasks",)
    missing = [name for name in needs if getattr(event, name) is None]
    if missing:
        raise InvalidInputError(f"webhook body: a {event.action} event needs {' and '.join(map(repr, missing))}")
    return event


def check_annotation(guide: Guide, event: WebhookEvent, *, max_text_chars: int) -> None:
    """Refuse an annotation event that must never be stored, where the converter could not tell.

    A text over the limit, or a label region of the guide's control with a label outside the guide (the ``expand``
    conversion would drop that region and keep the task, teaching ``O`` where the annotator marked an entity). What the
    converter reads and reports itself (offsets outside the text, malformed or overlapping regions) is stored: it leaves
    such a task out, or keeps one of two overlapping regions, and counts the issue.

    Args:
        guide: The project's guide (its labels and Label Studio names).
        event: A validated annotation event.
        max_text_chars: The longest task text accepted (``NER_MAX_TEXT_CHARS``).

    Raises:
        InvalidInputError: (422) naming the field, e.g. ``annotation.result.0.value.labels``.
    """
    if event.task is None or event.annotation is None:
        return
    names = guide.label_studio
    text = event.task.data.get(names.text_field)
    if isinstance(text, str) and len(text) > max_text_chars:
        raise InvalidInputError(
            f"task.data.{names.text_field}: text has {len(text)} characters, more than the {max_text_chars} "
            "allowed (NER_MAX_TEXT_CHARS); split the document or raise the limit"
        )
    known = {*guide.labels, *guide.label_names}
    for index, region in enumerate(event.annotation.result):
        value = region.get("value")
        if region.get("type") != "labels" or region.get("from_name", names.from_name) != names.from_name:
            continue
        labels = value.get("labels") if isinstance(value, dict) else None
        unknown = [x for x in labels if not isinstance(x, str) or x not in known] if isinstance(labels, list) else []
        if unknown:
            raise InvalidInputError(
                f"annotation.result.{index}.value.labels: {str(unknown[0])[:60]!r} is not a label of the project's "
                f"guide ({', '.join(sorted(known))}); update the guide, or the labeling config to match it"
            )


def event_key(body: dict[str, Any]) -> str:
    """The natural key of an event: a hash of its canonical JSON (a redelivery hashes the same).

    ``START_TRAINING`` is the exception: its body is the project as serialised, identical for two clicks with
    nothing changed in between, so each delivery is its own event; the run, unique per label watermark, is what
    keeps a second click from training twice (and lets a click after a failed run train again).
    """
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
    if body.get("action") == "START_TRAINING":
        canonical += uuid.uuid4().hex
    return hashlib.sha256(canonical.encode()).hexdigest()


def ingest(
    db: Session,
    body: dict[str, Any],
    *,
    max_text_chars: int | None = None,
    job_only_when_due: bool = True,
    heartbeat_timeout_s: float | None = None,
) -> Ingested:
    """Store an annotation or training event once and apply it to the project's label state.

    The insert does nothing on conflict; the label state (``backend.services.label_state``) changes in the same
    transaction.

    Args:
        db: The session (the caller commits).
        body: The raw webhook JSON.
        max_text_chars: The longest task text accepted (``NER_MAX_TEXT_CHARS``; None: its default).
        job_only_when_due: A label change needs a job only when a retrain is due (decided in the statement that
            marks the event); False: every label change needs one (a reconcile importing thousands of annotations
            checks once at its end).
        heartbeat_timeout_s: ``NER_RUN_HEARTBEAT_TIMEOUT_S`` (None: its default): a running run silent for longer
            holds no retrain back.

    Returns:
        The stored event's id, whether this delivery created it, and whether it changed the labels; other
        actions, and deletions of tasks nerloop holds no annotation of, are not stored.

    Raises:
        InvalidInputError: the body is malformed, or its annotation cannot be this project's (nothing is stored;
            see :func:`check_annotation`).
        NotFoundError: the project is not registered with nerloop.
    """
    event = parse_event(body)
    project = _project_of(db, event) if event.action in STORED_ACTIONS else None
    if project is None:
        return Ingested(None, None, event.action, created=False)
    if event.annotation is not None:
        limit = max_text_chars if max_text_chars is not None else Settings.model_fields["max_text_chars"].default
        check_annotation(guide_of(project), event, max_text_chars=limit)
    key = event_key(body)
    annotation, task = event.annotation, event.task
    events = AnnotationEvent.__table__  # Core: the ORM's bulk-insert machinery costs CPU per webhook
    new_id = db.execute(
        upsert(db, events)
        .values(
            project_id=project.id,
            event_key=key,
            action=event.action,
            payload=body,
            ls_task_id=task.id if task is not None else None,
            ls_annotation_id=annotation.id if annotation is not None else None,
        )
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(events.c.id)
    ).scalar_one_or_none()
    if new_id is None:  # a redelivery: applied when it first came
        existing = db.scalars(select(AnnotationEvent).where(AnnotationEvent.event_key == key)).one()
        return Ingested(existing.id, project.id, event.action, False, existing.enqueued, existing.label_change)
    changed = _apply(db, project, event, event_id=new_id)
    # only a training request, or a label change that makes a retrain due, has a job to enqueue (one job per
    # threshold crossed, not one per event); the other events are done once applied. The due check rides in the
    # update that marks the event; the watermark is counted last (it locks the project row until the commit).
    if changed:
        job_needed = not job_only_when_due or event.action == "START_TRAINING"
        timeout = heartbeat_timeout_s or Settings.model_fields["run_heartbeat_timeout_s"].default
        marked = mark_label_change(db, project, event_id=new_id, job_needed=job_needed, heartbeat_timeout_s=timeout)
    else:
        marked = db.execute(
            update(AnnotationEvent)
            .where(AnnotationEvent.id == new_id)
            .values(label_change=False, enqueued=event.action != "START_TRAINING")
            .returning(AnnotationEvent.enqueued)
        ).scalar_one()
    return Ingested(new_id, project.id, event.action, True, bool(marked), changed)


def _project_of(db: Session, event: WebhookEvent) -> Project | None:
    if event.project is not None:
        return project_by_ls_id(db, event.project.id)
    # TASKS_DELETED carries only task ids; Label Studio's task ids are unique per instance, so one project
    owners = label_state.projects_of_tasks(db, [t.id for t in event.tasks or []])
    return db.get(Project, owners[0]) if owners else None


def _apply(db: Session, project: Project, event: WebhookEvent, *, event_id: int) -> bool:
    """Apply an event to the label state; return whether the labels changed."""
    if event.action in SAVED_ACTIONS and event.annotation and event.task:
        return label_state.save_annotation(db, project, _state(event.annotation, event.task), event_id=event_id)
    if event.action == "ANNOTATIONS_DELETED":
        ids = [item.id for item in event.annotations or []]
        return label_state.delete_annotations(db, project, ids, event_id=event_id)
    if event.action == "TASKS_DELETED":
        return label_state.delete_tasks(db, project, [item.id for item in event.tasks or []], event_id=event_id)
    return False


def _state(annotation: WebhookAnnotation, task: WebhookTask) -> label_state.AnnotationState:
    by = annotation.completed_by
    return label_state.AnnotationState(
        ls_annotation_id=annotation.id,
        ls_task_id=task.id,
        task_data=task.data,
        result=annotation.result,
        was_cancelled=annotation.was_cancelled,
        ls_updated_at=parse_timestamp(annotation.updated_at),
        lead_time_s=annotation.lead_time,
        completed_by=_int(by.get("id") if isinstance(by, dict) else by),
    )


def _int(value: Any) -> int | None:
    """A user id as stored; one that is not an id (or does not fit the column) is stored as unknown."""
    return value if type(value) is int and is_db_id(value) else None


@dataclass(frozen=True)
class Reconciled:
    """What a reconciliation with Label Studio's export found."""

    annotations: int
    events: int
    label_changes: int
    # exported annotations nerloop cannot hold (what the webhook would refuse with a 422): left out, counted
    malformed: int = 0


RECONCILE_DELETE_CHUNK = 500


def reconcile(db: Session, project: Project, tasks: list[dict[str, Any]], *, as_of: int | None = None) -> Reconciled:
    """Bring the label state to what Label Studio's export holds.

    For events that never arrived (the backend was down, a reply took over Label Studio's 1 s) and for a project
    attached with its annotations.

    Each exported annotation that the state does not hold as it is becomes an ``ANNOTATION_IMPORTED`` event (its
    key is a hash of its content, so the same annotation is imported once); the live annotations the export no
    longer holds go in one ``ANNOTATIONS_DELETED`` event. Both go through :func:`ingest`, so the watermark counts
    what changed, and an export older than the state (by ``updated_at``) changes nothing.

    Args:
        db: The session; each imported annotation is committed on its own, and the deletions in chunks of
            ``RECONCILE_DELETE_CHUNK``, so that no transaction holds the locks of thousands of annotations (and
            the row locks and task locks of a webhook meanwhile are never taken in the other order).
        project: The project.
        tasks: Label Studio's export of the project (``id``, ``data``, ``annotations``).
        as_of: The last event id stored before the export was asked for: annotations changed by a later event
            are newer than the export and left alone (None: the export is the newest).

    Returns:
        The annotations read, the events stored, and how many of them changed the labels.
    """
    rows = {
        row.ls_annotation_id: row for row in db.scalars(select(Annotation).where(Annotation.project_id == project.id))
    }
    settled = {i: row for i, row in rows.items() if as_of is None or (row.event_id or 0) <= as_of}
    exported = [
        (task, annotation)
        for task in tasks
        if isinstance(task, dict)
        for annotation in task.get("annotations") or []
        if isinstance(annotation, dict)
    ]
    exported.sort(key=lambda pair: str(pair[1].get("id")).zfill(20))  # the lock order of every writer
    ingested: list[Ingested] = []
    malformed = 0
    for task, annotation in exported:
        row = rows.get(annotation.get("id"))  # type: ignore[arg-type]
        if row is not None and (row.ls_annotation_id not in settled or _same(row, annotation)):
            continue
        body = {
            "action": "ANNOTATION_IMPORTED",
            "project": {"id": project.ls_project_id},
            "task": {"id": task.get("id"), "data": task.get("data") or {}},
            "annotation": json.loads(json.dumps(annotation, default=str)),
        }
        try:
            ingested.append(ingest(db, body, job_only_when_due=False))
        except InvalidInputError:  # one malformed annotation must never stop a project: training drops it too
            malformed += 1
        db.commit()  # one short transaction per annotation: no lock is held across the whole export
    ids = {annotation.get("id") for _, annotation in exported}
    gone = sorted(i for i, row in settled.items() if i not in ids and not row.deleted and not row.was_cancelled)
    for start in range(0, len(gone), RECONCILE_DELETE_CHUNK):
        body = {"action": "ANNOTATIONS_DELETED", "project": {"id": project.ls_project_id}, "reconciled": True}
        chunk = gone[start : start + RECONCILE_DELETE_CHUNK]
        ingested.append(ingest(db, {**body, "annotations": [{"id": i} for i in chunk]}, job_only_when_due=False))
        db.commit()
    new = [i for i in ingested if i.created]
    return Reconciled(len(exported), len(new), sum(i.label_change for i in new), malformed)


def _same(row: Annotation, exported: dict[str, Any]) -> bool:
    return not row.deleted and (row.result, row.was_cancelled) == (
        exported.get("result"),
        bool(exported.get("was_cancelled")),
    )


def mark_enqueued(db: Session, event_id: int) -> None:
    """Remember that the event's job reached the broker (one UPDATE, no read)."""
    db.execute(update(AnnotationEvent).where(AnnotationEvent.id == event_id).values(enqueued=True))


def unqueued_events(db: Session) -> list[AnnotationEvent]:
    """Stored events whose job never reached the broker (it was down when they arrived)."""
    return list(
        db.scalars(select(AnnotationEvent).where(AnnotationEvent.enqueued.is_(False)).order_by(AnnotationEvent.id))
    )
