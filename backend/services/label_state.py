"""The project's labels as Label Studio holds them now, kept up to date by the webhook events.

Every annotation of a task is kept (several annotators may label one task), with its Label Studio
``updated_at``; an event older than what is stored for its annotation is ignored, so events that arrive out of
order cannot roll the labels back. Deleted annotations stay as tombstones, so a late ``ANNOTATION_UPDATED`` cannot
bring a deleted annotation back. A task's labels are its latest live annotation (the rule of
``ml.converters.from_label_studio``), on every path that reads them: training, the dashboard's counts and the LLM's
demonstrations. Rows are locked in ``ls_annotation_id`` order by every writer.

What counts as a label change (the label watermark counts these): a live annotation appears, disappears or
changes its label regions of the guide's control. A skip (``was_cancelled``) is not a label; skipping a task or
deleting a skip changes nothing.

The converted labels are materialised too: each event re-converts the one task it touches into ``task_label``
(text and spans) and ``labeled_span`` (one row per span), so the dashboard's counts and the LLM's
demonstrations read rows instead of converting every task of the project per request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import spacy
from spacy.language import Language
from sqlalchemy import ARRAY, ColumnElement, Select, Table, delete, func, insert, literal, select
from sqlalchemy.orm import Session

from backend.db.models import Annotation, DeletedTask, LabeledSpan, Project, TaskLabel
from backend.db.upsert import upsert
from backend.services.projects import guide_of
from ml.converters import ConversionResult, from_label_studio
from ml.converters.spans import CharSpan, char_spans

# The Core tables the per-webhook statements use: the ORM's entity machinery costs CPU on every call
# (bench/RESULTS.md, webhook burst).
ANNOTATION = cast(Table, Annotation.__table__)
TASK_LABEL = cast(Table, TaskLabel.__table__)
LABELED_SPAN = cast(Table, LabeledSpan.__table__)
DELETED_TASK = cast(Table, DeletedTask.__table__)


@dataclass(frozen=True)
class AnnotationState:
    """One annotation as an event carries it (validated by ``backend.services.annotations``)."""

    ls_annotation_id: int
    ls_task_id: int
    task_data: dict[str, Any]
    result: list[dict[str, Any]]
    was_cancelled: bool
    ls_updated_at: datetime | None
    lead_time_s: float | None
    completed_by: int | None


def _live(row: Annotation | None) -> bool:
    return row is not None and not row.deleted and not row.was_cancelled


def _labels_of(row: Annotation | None, from_name: str) -> object:
    """What a label change compares.

    Nothing for a dead or skipped annotation, else its label regions of the guide's control as (start, end, labels), in
    order. Relations, text areas, choices, region ids and the regions' order are not labels: editing only those changes
    nothing.
    """
    if row is None or not _live(row):
        return None
    regions = []
    for item in row.result:
        value = item.get("value")
        if item.get("type") == "labels" and item.get("from_name", from_name) == from_name and isinstance(value, dict):
            regions.append(repr((value.get("start"), value.get("end"), value.get("labels"))))
    return sorted(regions)


def save_annotation(db: Session, project: Project, state: AnnotationState, *, event_id: int) -> bool:
    """Apply an ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED``; return whether the labels changed.

    Ignored (returns False) when the annotation or its task was deleted, or when the stored version is newer
    than the event's (Label Studio's ``updated_at``).

    A new annotation of a live task, the common case, costs three round trips on PostgreSQL before the watermark:
    the insert (which also checks the task is not deleted and takes the task's lock), the re-conversion's read and
    its write. Under a burst every round trip makes the webhook's thread wait for the interpreter lock again
    (bench/RESULTS.md, webhook burst).
    """
    gone = select(DELETED_TASK.c.id).where(
        DELETED_TASK.c.project_id == project.id, DELETED_TASK.c.ls_task_id == state.ls_task_id
    )
    values = {
        "project_id": project.id,
        "ls_annotation_id": state.ls_annotation_id,
        "ls_task_id": state.ls_task_id,
        "task_data": state.task_data,
        "result": state.result,
        "was_cancelled": state.was_cancelled,
        "deleted": False,
        "ls_updated_at": state.ls_updated_at,
        "lead_time_s": state.lead_time_s,
        "completed_by": state.completed_by,
        "event_id": event_id,
    }
    postgres = db.get_bind().dialect.name == "postgresql"
    locks = _task_locks(project, [state.ls_task_id]) if postgres else []
    if _inserted(db, values, unless=gone, locks=locks):
        index_tasks(db, project, [state.ls_task_id], event_id=event_id, locked=postgres)
        return not state.was_cancelled
    if db.scalar(gone) is not None:  # nothing inserted: the task is deleted, or the annotation is held already
        return False
    row = _locked(db, project, state.ls_annotation_id)
    if row.deleted or _older(state.ls_updated_at, row.ls_updated_at):
        return False
    from_name = guide_of(project).label_studio.from_name
    before = _labels_of(row, from_name)
    for name, value in values.items():
        setattr(row, name, value)
    db.flush()
    index_tasks(db, project, [state.ls_task_id], event_id=event_id)
    return before != _labels_of(row, from_name)


def _inserted(
    db: Session, values: dict[str, Any], *, unless: Select[Any] | None = None, locks: Sequence[ColumnElement[Any]] = ()
) -> bool:
    """Insert the annotation unless the project holds it already, or ``unless`` finds a row (e.g. its task deleted).

    A concurrent insert of the same annotation waits, then loses. ``locks`` (:func:`_task_locks`) are taken by the
    same statement when it inserts the row, after the row's own lock, as ``index_tasks`` would take them.
    """
    table = ANNOTATION
    inserted = upsert(db, table)
    if unless is None:
        inserted = inserted.values(**values)
    else:
        row = select(*(literal(value, table.c[name].type).label(name) for name, value in values.items()))
        inserted = inserted.from_select(list(values), row.where(~unless.exists()))
    inserted = inserted.on_conflict_do_nothing(index_elements=["project_id", "ls_annotation_id"])
    return db.execute(inserted.returning(table.c.id, *locks)).first() is not None


def _older(incoming: datetime | None, stored: datetime | None) -> bool:
    if incoming is None or stored is None:
        return False  # nothing to compare: the last delivery wins
    return _aware(incoming) < _aware(stored)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; Label Studio's are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _locked(db: Session, project: Project, ls_annotation_id: int) -> Annotation:
    """The row, locked, as the database holds it now (not as this session may have loaded it before)."""
    return db.scalars(
        select(Annotation)
        .where(Annotation.project_id == project.id, Annotation.ls_annotation_id == ls_annotation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def delete_annotations(db: Session, project: Project, ls_annotation_ids: list[int], *, event_id: int) -> bool:
    """Apply ``ANNOTATIONS_DELETED``: tombstone each annotation (unknown ids too, against late events).

    Returns:
        Whether a live annotation went away.
    """
    changed = False
    touched: list[int] = []
    for ls_id in sorted(set(ls_annotation_ids)):  # one lock order for every writer: no deadlock between them
        tombstone: dict[str, Any] = {
            "project_id": project.id,
            "ls_annotation_id": ls_id,
            "ls_task_id": None,
            "task_data": {},
            "result": [],
            "deleted": True,
            "event_id": event_id,
        }
        if not _inserted(db, tombstone):
            row = _locked(db, project, ls_id)
            changed |= _live(row)
            row.deleted, row.event_id = True, event_id
            if row.ls_task_id is not None:
                touched.append(row.ls_task_id)
    db.flush()
    index_tasks(db, project, touched, event_id=event_id)
    return changed


def delete_tasks(db: Session, project: Project, ls_task_ids: list[int], *, event_id: int) -> bool:
    """Apply ``TASKS_DELETED``.

    Every annotation of those tasks goes, and the tasks are remembered as deleted (an annotation event about one that
    arrives later changes nothing). Returns whether a live annotation went away.
    """
    for ls_task_id in sorted(set(ls_task_ids)):
        db.execute(
            upsert(db, DeletedTask)
            .values(project_id=project.id, ls_task_id=ls_task_id, event_id=event_id)
            .on_conflict_do_nothing(index_elements=["project_id", "ls_task_id"])
        )
    rows = db.scalars(
        select(Annotation)
        .where(Annotation.project_id == project.id, Annotation.ls_task_id.in_(ls_task_ids))
        .order_by(Annotation.ls_annotation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    changed = False
    held: set[int] = set()
    for row in rows:
        changed |= _live(row)
        row.deleted, row.event_id = True, event_id
        held.add(row.ls_task_id or 0)
    db.flush()
    index_tasks(db, project, held, event_id=event_id)  # only the tasks nerloop held annotations of
    return changed


def projects_of_tasks(db: Session, ls_task_ids: list[int]) -> list[int]:
    """The nerloop projects holding annotations of these Label Studio tasks (for events without a project)."""
    return sorted(set(db.scalars(select(Annotation.project_id).where(Annotation.ls_task_id.in_(ls_task_ids)))))


def annotated_tasks(db: Session, project: Project) -> list[dict[str, Any]]:
    """Every task with a stored annotation, in Label Studio's export shape, by task id.

    The shape is ``id``, ``data``, ``annotations``: all of the task's annotations that were not deleted, skips included.
    """
    rows = db.scalars(
        select(Annotation)
        .where(Annotation.project_id == project.id, Annotation.deleted.is_(False), Annotation.ls_task_id.is_not(None))
        .order_by(Annotation.ls_task_id, Annotation.ls_annotation_id)
    )
    return _export_shape(rows)


# the annotation columns :func:`_export_shape` reads
EXPORTED = (
    "ls_task_id",
    "task_data",
    "ls_annotation_id",
    "result",
    "was_cancelled",
    "ls_updated_at",
    "lead_time_s",
    "completed_by",
)


def _export_shape(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """Annotation rows (live ones, by task id) -> tasks in Label Studio's export shape.

    The rows are ORM objects or Core rows with the ``EXPORTED`` columns.
    """
    tasks: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row.ls_task_id is None:  # filtered above; narrows the type
            continue
        task = tasks.setdefault(row.ls_task_id, {"id": row.ls_task_id, "data": row.task_data, "annotations": []})
        task["data"] = row.task_data or task["data"]
        task["annotations"].append(
            {
                "id": row.ls_annotation_id,
                "result": row.result,
                "was_cancelled": row.was_cancelled,
                "updated_at": row.ls_updated_at.isoformat() if row.ls_updated_at is not None else None,
                "lead_time": row.lead_time_s,
                "completed_by": row.completed_by,
            }
        )
    return list(tasks.values())


def convert_labels(project: Project, tasks: list[dict[str, Any]]) -> ConversionResult:
    """Tasks in Label Studio's export shape -> the docs nerloop trains on, with every issue met.

    The one conversion of a project's labels: training, the counts and the demonstrations all go through it,
    with the guide's labels and the ``expand`` policy (nothing in the tasks is fatal; every problem is counted).
    """
    guide = guide_of(project)
    names = guide.label_studio
    return from_label_studio(
        tasks,
        _blank(guide.language),
        labels=guide.labels,
        policy="expand",
        from_name=names.from_name,
        text_field=names.text_field,
        label_map=guide.label_names,
    )


class StoredLabelsSource:
    """The labels as the webhook events left them: a training snapshot source that needs no Label Studio call."""

    def __init__(self, db: Session, project: Project) -> None:
        self._db = db
        self._project = project

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """The annotated tasks (``project_id`` is Label Studio's id of this source's project)."""
        del project_id
        return annotated_tasks(self._db, self._project)


_blanks: dict[str, Language] = {}
_blanks_lock = threading.Lock()


def _blank(language: str) -> Language:
    """A blank pipeline per language, made once per process and shared by the threads.

    ``spacy.blank`` costs far more than converting a task, and spaCy's tokenizer runs holding the GIL.
    """
    with _blanks_lock:
        if language not in _blanks:
            _blanks[language] = spacy.blank(language)
        return _blanks[language]


LOCK_BUCKETS = 256


def _task_locks(project: Project, ls_task_ids: Iterable[int]) -> list[ColumnElement[Any]]:
    """The transaction-scoped advisory locks that keep two transactions from indexing one task at once.

    Two events about one task (two annotators) must not index it at once: each would miss the other's annotation,
    or both insert its row. After the lock, each statement sees what the other committed. (SQLite runs one writer
    at a time: PostgreSQL only.) One lock per bucket of tasks, in bucket order, after the annotation row locks: a
    deletion of 13,000 tasks takes at most ``LOCK_BUCKETS`` locks (PostgreSQL's lock table holds about 12,000 per
    transaction here).
    """
    buckets = sorted({task_id % LOCK_BUCKETS for task_id in ls_task_ids})
    return [func.pg_advisory_xact_lock(project.id, bucket).label("task_lock") for bucket in buckets]


def index_tasks(
    db: Session, project: Project, ls_task_ids: Iterable[int], *, event_id: int | None, locked: bool = False
) -> None:
    """Re-convert these tasks' live annotations into ``task_label`` / ``labeled_span`` (the caller commits).

    A task without a live annotation, or whose latest one cannot be converted, loses its rows. ``locked``: this
    transaction holds the tasks' locks already (:func:`_task_locks`, taken by the statement that inserted their
    annotation).
    """
    ids = sorted(set(ls_task_ids))
    if not ids:
        return
    if db.get_bind().dialect.name == "postgresql" and not locked:
        for lock in _task_locks(project, ids):
            db.execute(select(lock))
    spans, labels, annotations = LABELED_SPAN.c, TASK_LABEL.c, ANNOTATION.c
    spans_gone = delete(LABELED_SPAN).where(spans.project_id == project.id, spans.ls_task_id.in_(ids))
    labels_gone = delete(TASK_LABEL).where(labels.project_id == project.id, labels.ls_task_id.in_(ids))
    live = (
        select(*(annotations[name] for name in EXPORTED))
        .where(annotations.project_id == project.id, annotations.deleted.is_(False), annotations.ls_task_id.in_(ids))
        .order_by(annotations.ls_task_id, annotations.ls_annotation_id)
    )
    if db.get_bind().dialect.name == "postgresql":
        # the deletes ride along with the read: one round trip instead of three (a webhook's cost is mostly
        # round trips); the statement starts after the task locks, so it sees what their holders committed
        live = live.add_cte(spans_gone.cte("spans_gone"), labels_gone.cte("labels_gone"))
    else:
        db.execute(spans_gone)
        db.execute(labels_gone)
    _store(db, project, convert_labels(project, _export_shape(db.execute(live))), event_id=event_id)


def _store(db: Session, project: Project, converted: ConversionResult, *, event_id: int | None) -> None:
    labels, spans = [], []
    for doc in converted.docs:
        task_id = int(doc.user_data["task_id"])
        found = sorted(char_spans(doc), key=lambda s: (s.start, s.end))
        labels.append(
            {
                "project_id": project.id,
                "ls_task_id": task_id,
                "text": doc.text,
                "spans": [[s.start, s.end, s.label] for s in found],
                "event_id": event_id,
            }
        )
        spans += [{"project_id": project.id, "ls_task_id": task_id, "label": s.label} for s in found]
    if len(labels) == 1 and db.get_bind().dialect.name == "postgresql":
        # a webhook's one task in one round trip: the task's row rides along as a CTE of the spans' insert, whose
        # rows come from an array (an empty one inserts none). Both are one-row forms, which SQLAlchemy compiles
        # once: multi-row VALUES are compiled on every call.
        (label,) = labels
        names = literal([span["label"] for span in spans], ARRAY(LABELED_SPAN.c.label.type))
        rows = select(literal(project.id).label("project_id"), literal(label["ls_task_id"]).label("ls_task_id"))
        rows = rows.add_columns(func.unnest(names).label("label"))
        task_row = insert(TASK_LABEL).values(**label).cte("task_row")
        db.execute(insert(LABELED_SPAN).from_select(["project_id", "ls_task_id", "label"], rows).add_cte(task_row))
        return
    if labels:  # executemany (SQLAlchemy's "insertmanyvalues": batched, compiled once)
        db.execute(insert(TASK_LABEL), labels)
    if spans:
        db.execute(insert(LABELED_SPAN), spans)


def index_labels(db: Session, project: Project, *, chunk: int = 2000) -> int:
    """Rebuild a project's materialised labels from its label state (projects that predate them).

    The caller commits. Returns how many labelled tasks were indexed.
    """
    locked = db.scalars(select(Project).where(Project.id == project.id).with_for_update()).one()
    db.execute(delete(LabeledSpan).where(LabeledSpan.project_id == project.id))
    db.execute(delete(TaskLabel).where(TaskLabel.project_id == project.id))
    tasks = annotated_tasks(db, project)
    for start in range(0, len(tasks), chunk):
        _store(db, project, convert_labels(project, tasks[start : start + chunk]), event_id=None)
    locked.labels_indexed = project.labels_indexed = True
    db.flush()
    return int(db.scalar(select(func.count()).select_from(TaskLabel).where(TaskLabel.project_id == project.id)) or 0)


def _indexed(db: Session, project: Project) -> None:
    """Index a project that predates the materialised labels on its first read, and keep it.

    It commits: a read that rebuilt them must not throw the rebuild away (the app's warm-up usually did it at start).
    """
    if not project.labels_indexed:
        index_labels(db, project)
        db.commit()


def labeled_examples(db: Session, project: Project, *, newest: int | None = None) -> list[tuple[str, list[CharSpan]]]:
    """Each labelled task's text and spans, by task id; only the ``newest`` labelled last when given.

    The spans are its latest live annotation's, converted as for training; the newest have the greatest ids of their
    latest event.
    """
    _indexed(db, project)
    query = select(TaskLabel.ls_task_id, TaskLabel.text, TaskLabel.spans).where(TaskLabel.project_id == project.id)
    if newest is not None:
        query = query.order_by(TaskLabel.id.desc()).limit(newest)
    rows = sorted(db.execute(query), key=lambda row: row[0])
    return [(text, [CharSpan(int(a), int(b), str(label)) for a, b, label in spans]) for _, text, spans in rows]


def label_counts(db: Session, project: Project) -> dict[str, int]:
    """How many spans of each entity type the labelled tasks hold (each task's latest live annotation)."""
    _indexed(db, project)
    rows = db.execute(
        select(LabeledSpan.label, func.count()).where(LabeledSpan.project_id == project.id).group_by(LabeledSpan.label)
    )
    return {str(label): int(count) for label, count in rows}
