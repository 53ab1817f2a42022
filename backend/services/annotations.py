"""Label Studio webhook events: validated, stored once, and the labeled examples they carry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import AnnotationEvent, Project
from backend.db.upsert import upsert
from backend.services.errors import InvalidInputError
from backend.services.projects import project_by_ls_id
from ml.converters.label_studio import LSValue
from ml.converters.spans import CharSpan

ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
STORED_ACTIONS = (*ANNOTATION_ACTIONS, "START_TRAINING")


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class WebhookProject(_Loose):
    """The project part of an event."""

    id: int


class WebhookEvent(_Loose):
    """A webhook body as Label Studio 1.23 sends it (only the fields nerloop relies on are checked)."""

    action: str = Field(min_length=1)
    project: WebhookProject | None = None
    annotation: dict[str, Any] | None = None
    annotations: list[dict[str, Any]] | None = None
    task: dict[str, Any] | None = None


@dataclass(frozen=True)
class Ingested:
    """What happened to an event."""

    event_id: int | None
    project_id: int | None
    action: str
    created: bool
    enqueued: bool = False


def parse_event(body: Any) -> WebhookEvent:
    """Validate a webhook body; one-line 422 on a bad one."""
    try:
        event = WebhookEvent.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInputError(f"webhook body: {'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}") from None
    if event.action in STORED_ACTIONS and event.project is None:
        raise InvalidInputError(f"webhook body: a {event.action} event needs project.id")
    if event.action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED") and (
        event.annotation is None or event.task is None
    ):
        raise InvalidInputError(f"webhook body: a {event.action} event needs 'annotation' and 'task'")
    return event


def event_key(body: dict[str, Any]) -> str:
    """The natural key of an event: a hash of its canonical JSON (a redelivery hashes the same)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def ingest(db: Session, body: dict[str, Any]) -> Ingested:
    """Store an annotation or training event once (insert ... on conflict do nothing).

    Args:
        db: The session (the caller commits).
        body: The raw webhook JSON.

    Returns:
        The stored event's id and whether this delivery created it; other actions are not stored.
    """
    event = parse_event(body)
    if event.action not in STORED_ACTIONS or event.project is None:
        return Ingested(None, None, event.action, created=False)
    project = project_by_ls_id(db, event.project.id)
    key = event_key(body)
    values = {
        "project_id": project.id,
        "event_key": key,
        "action": event.action,
        "payload": body,
        "ls_task_id": _int((event.task or {}).get("id")),
        "ls_annotation_id": _int((event.annotation or {}).get("id")),
    }
    result = db.execute(
        upsert(db, AnnotationEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["event_key"])
        .returning(AnnotationEvent.id)
    )
    new_id = result.scalar_one_or_none()
    if new_id is not None:
        return Ingested(new_id, project.id, event.action, created=True)
    existing = db.scalars(select(AnnotationEvent).where(AnnotationEvent.event_key == key)).one()
    return Ingested(existing.id, project.id, event.action, created=False, enqueued=existing.enqueued)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def mark_enqueued(db: Session, event_id: int) -> None:
    """Remember that the event's job reached the broker."""
    event = db.get(AnnotationEvent, event_id)
    if event is not None:
        event.enqueued = True


def latest_annotated_tasks(db: Session, project: Project) -> list[dict[str, Any]]:
    """Each task's latest annotation from the stored events (deleted ones excluded), in Label Studio's export
    shape (``id``, ``data``, ``annotations``), oldest task first."""
    latest: dict[int, dict[str, Any]] = {}
    task_of: dict[int, int] = {}
    rows = db.scalars(
        select(AnnotationEvent).where(AnnotationEvent.project_id == project.id).order_by(AnnotationEvent.id)
    )
    for row in rows:
        body = row.payload
        if row.action == "ANNOTATIONS_DELETED":
            for item in body.get("annotations") or []:
                task_id = task_of.pop(_int(item.get("id")) or -1, None)
                if task_id is not None:
                    latest.pop(task_id, None)
        elif row.action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED") and row.ls_task_id is not None:
            latest[row.ls_task_id] = {
                "id": row.ls_task_id,
                "data": (body.get("task") or {}).get("data", {}),
                "annotations": [body["annotation"]],
            }
            if row.ls_annotation_id is not None:
                task_of[row.ls_annotation_id] = row.ls_task_id
    return list(latest.values())


class EventLogSource:
    """Annotations as the webhook delivered them: a snapshot source that needs no Label Studio call."""

    def __init__(self, db: Session, project: Project) -> None:
        self._db = db
        self._project = project

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """The latest annotated tasks (``project_id`` is Label Studio's id of this source's project)."""
        del project_id
        return latest_annotated_tasks(self._db, self._project)


def labeled_examples(db: Session, project: Project) -> list[tuple[str, list[CharSpan]]]:
    """The latest labels per task as (text, spans), oldest task first."""
    out = []
    for task in latest_annotated_tasks(db, project):
        annotation = task["annotations"][0]
        text = task["data"].get("text")
        if not isinstance(text, str) or annotation.get("was_cancelled"):
            continue
        spans = [span for r in annotation.get("result") or [] if (span := _valid_span(r, text)) is not None]
        out.append((text, spans))
    return out


def _valid_span(result: Any, text: str) -> CharSpan | None:
    """A stored region as a span, or None when it is malformed (one bad event must not break prompting)."""
    try:
        value = LSValue.model_validate(result.get("value")) if result.get("type") == "labels" else None
    except (ValidationError, AttributeError):
        return None
    if value is None or not 0 <= value.start < value.end <= len(text) or not text[value.start : value.end].strip():
        return None
    return CharSpan(value.start, value.end, value.labels[0])


def unqueued_events(db: Session) -> list[AnnotationEvent]:
    """Stored events whose job never reached the broker (it was down when they arrived)."""
    return list(
        db.scalars(select(AnnotationEvent).where(AnnotationEvent.enqueued.is_(False)).order_by(AnnotationEvent.id))
    )
