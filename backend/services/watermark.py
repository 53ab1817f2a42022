"""The label watermark: which state of a project's labels a run trains on, and when a retrain is due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, func, literal, select, update
from sqlalchemy.orm import Session

from backend.db.models import AnnotationEvent, Project, TrainingRun, utcnow
from backend.services.run_liveness import silent_since

BUSY = ("queued", "running")  # a run in these states holds the project's next retrain back
# the Core tables of the per-webhook statement (mark_label_change)
PROJECT = cast(Table, Project.__table__)
EVENT = cast(Table, AnnotationEvent.__table__)
RUN = cast(Table, TrainingRun.__table__)


def labels_count(db: Session, project: Project) -> int:
    """The project's label watermark.

    How many events changed its labels (a live annotation created, changed or deleted; skips are not labels, see
    ``backend.services.label_state``). It only grows, so each value names one state of the labels. Read from the
    database (``project.label_watermark``, kept by :func:`mark_label_change`), never from the session's copy of the
    row.
    """
    return int(db.scalar(select(Project.label_watermark).where(Project.id == project.id)) or 0)


def mark_label_change(
    db: Session, project: Project, *, event_id: int, job_needed: bool, heartbeat_timeout_s: float
) -> bool:
    """Count one label-change event and mark its stored event, in the event's transaction.

    Return whether the event is done (it needs no job).

    The count locks the project row until the commit (concurrent events of one project are counted one after
    the other), so it is the transaction's last work: on PostgreSQL the increment and the event's mark are one
    statement (a data-modifying ``WITH``), leaving only the commit's round trip under the lock; SQLite, which
    has no ``UPDATE`` in ``WITH`` (and locks the whole file anyway), takes two.

    Args:
        db: The session (the caller commits).
        project: The event's project.
        event_id: The stored event (``annotation_event.id``).
        job_needed: True: the event needs a job whatever the watermark (a training request, or a reconcile
            importing thousands of annotations, which skips the check); False: it needs one only when the new
            watermark makes a retrain due (:func:`retrain_due`), decided inside the same statement.
        heartbeat_timeout_s: Seconds without a heartbeat after which a running run counts as dead
            (``NER_RUN_HEARTBEAT_TIMEOUT_S``): a dead run holds no retrain back.

    Returns:
        The event's ``enqueued`` flag as stored: True when it needs no job.
    """
    # Core tables, not ORM entities (whose update machinery costs CPU on every webhook); the session's copy of the
    # project row is not updated, as before (labels_count reads the database)
    count = (
        update(PROJECT)
        .where(PROJECT.c.id == project.id)
        .values(label_watermark=PROJECT.c.label_watermark + 1)
        .returning(PROJECT.c.label_watermark)
    )
    mark = update(EVENT).where(EVENT.c.id == event_id)
    if db.get_bind().dialect.name == "postgresql":
        counted = count.cte("counted")
        mark = mark.add_cte(counted)  # rendered (and run) even when the due check does not read it
        labels: ColumnElement[int] = select(counted.c.label_watermark).scalar_subquery()
    else:
        labels = literal(db.execute(count).scalar_one())
    due = retrain_due(project, labels=labels, heartbeat_timeout_s=heartbeat_timeout_s, runs=RUN.c)
    done: ColumnElement[bool] = literal(False) if job_needed else ~due
    return bool(db.execute(mark.values(label_change=True, enqueued=done).returning(EVENT.c.enqueued)).scalar_one())


def _last_run(project: Project, runs: Any = TrainingRun) -> Select[Any]:
    """The highest watermark of a run that did not fail (None: no such run; watermarks are never negative).

    ``runs``: the ORM entity, or the Core table's columns.
    """
    return select(func.max(runs.annotation_watermark)).where(runs.project_id == project.id, runs.status != "failed")


def due_watermark(db: Session, project: Project) -> int | None:
    """The watermark a retrain is due at.

    The labels' last multiple of the threshold, when it is above every run that did not fail; else None. One statement.
    """
    labels, last = db.execute(
        select(Project.label_watermark, _last_run(project).scalar_subquery()).where(Project.id == project.id)
    ).one()
    watermark = int(labels or 0) // project.retrain_threshold * project.retrain_threshold
    return watermark if watermark > 0 and watermark > (last or 0) else None


def retrain_due(
    project: Project, *, labels: ColumnElement[int], heartbeat_timeout_s: float, runs: Any = TrainingRun
) -> ColumnElement[bool]:
    """Whether a label event at the watermark ``labels`` needs a retrain check, as one SQL expression.

    ``labels`` is an SQL expression (the new count of :func:`mark_label_change`), so the webhook decides in the
    update that marks its event (one job per threshold crossed, not one per event), without a round trip of its
    own. Due when ``labels`` rounded down to a multiple of the threshold is above every run that did not fail, and
    no run of the project is queued, or running with a heartbeat younger than ``heartbeat_timeout_s``: a check then
    would start nothing (``backend.services.training.retrain_if_due``), and the first label event after that run
    ends asks again (as does the periodic sweep), so the events a burst sends during a training are done once
    stored. ``watermark > 0`` follows from ``watermark > last`` with ``last`` never negative. ``runs``: the runs'
    ORM entity, or their Core table's columns (inside a Core statement).
    """
    watermark = labels - labels % project.retrain_threshold
    # a running run that stopped beating holds nothing back: the check expires it
    # (backend.services.run_liveness.expire_stale_runs) and starts the next run
    cutoff = utcnow() - timedelta(seconds=heartbeat_timeout_s)
    live = (runs.status == "queued") | ((runs.status == "running") & ~silent_since(cutoff, runs))
    busy = select(runs.id).where(runs.project_id == project.id, live).exists()
    return (watermark > func.coalesce(_last_run(project, runs).scalar_subquery(), 0)) & ~busy
