"""The label watermark: which state of a project's labels a run trains on, and when a retrain is due."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal, select, update
from sqlalchemy.orm import Session

from backend.db.models import Project, TrainingRun


def labels_count(db: Session, project: Project) -> int:
    """The project's label watermark: how many events changed its labels (a live annotation created, changed
    or deleted; skips are not labels, see ``backend.services.label_state``). It only grows, so each value names
    one state of the labels. Read from the database (``project.label_watermark``, kept by :func:`count_label_change`),
    never from the session's copy of the row."""
    return int(db.scalar(select(Project.label_watermark).where(Project.id == project.id)) or 0)


def count_label_change(db: Session, project: Project) -> int:
    """Count one label-change event (in the transaction that marks it); return the new watermark. Locks the project
    row until the commit, so take it last: concurrent events of one project are counted one after the other."""
    return int(
        db.execute(
            update(Project)
            .where(Project.id == project.id)
            .values(label_watermark=Project.label_watermark + 1)
            .returning(Project.label_watermark)
            .execution_options(synchronize_session=False)
        ).scalar_one()
    )


def _last_run(project: Project) -> Select[Any]:
    """The highest watermark of a run that did not fail (None: no such run; watermarks are never negative)."""
    return select(func.max(TrainingRun.annotation_watermark)).where(
        TrainingRun.project_id == project.id, TrainingRun.status != "failed"
    )


def due_watermark(db: Session, project: Project) -> int | None:
    """The watermark a retrain is due at: the labels' last multiple of the threshold, when it is above every run
    that did not fail; else None. One statement."""
    labels, last = db.execute(
        select(Project.label_watermark, _last_run(project).scalar_subquery()).where(Project.id == project.id)
    ).one()
    watermark = int(labels or 0) // project.retrain_threshold * project.retrain_threshold
    return watermark if watermark > 0 and watermark > (last or 0) else None


def retrain_due(project: Project, *, labels: int) -> ColumnElement[bool]:
    """Whether a retrain is due at ``labels`` (the watermark :func:`count_label_change` returned), as one SQL
    expression that a statement can carry: the webhook decides in the update that marks its event whether a
    retrain check is needed (one job per threshold crossed, not one per event), without a round trip of its own.
    ``watermark > 0`` follows from ``watermark > last`` with ``last`` never negative."""
    watermark = labels // project.retrain_threshold * project.retrain_threshold
    return literal(watermark) > func.coalesce(_last_run(project).scalar_subquery(), 0)
