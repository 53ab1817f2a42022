"""The label watermark: which state of a project's labels a run trains on, and when a retrain is due."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from backend.db.models import AnnotationEvent, Project, TrainingRun


def _labels_query(project: Project) -> Select[Any]:
    return (
        select(func.count())
        .select_from(AnnotationEvent)
        .where(AnnotationEvent.project_id == project.id, AnnotationEvent.label_change.is_(True))
    )


def labels_count(db: Session, project: Project) -> int:
    """The project's label watermark: how many events changed its labels (a live annotation created, changed
    or deleted; skips are not labels, see ``backend.services.label_state``). It only grows, so each value names
    one state of the labels."""
    return int(db.scalar(_labels_query(project)) or 0)


def _last_run(project: Project) -> Select[Any]:
    """The highest watermark of a run that did not fail (None: no such run; watermarks are never negative)."""
    return select(func.max(TrainingRun.annotation_watermark)).where(
        TrainingRun.project_id == project.id, TrainingRun.status != "failed"
    )


def due_watermark(db: Session, project: Project, *, uncounted: int = 0) -> int | None:
    """The watermark a retrain is due at: the labels' last multiple of the threshold, when it is above every run
    that did not fail; else None. One statement.

    ``uncounted``: label changes not yet marked on their event (the one being stored)."""
    counted, last = db.execute(
        select(_labels_query(project).scalar_subquery(), _last_run(project).scalar_subquery())
    ).one()
    labels = int(counted or 0) + uncounted
    watermark = labels // project.retrain_threshold * project.retrain_threshold
    return watermark if watermark > 0 and watermark > (last or 0) else None


def retrain_due(project: Project, *, uncounted: int = 0) -> ColumnElement[bool]:
    """Whether :func:`due_watermark` is not None, as one SQL expression that a statement can carry: the webhook
    decides in the update that marks its event whether a retrain check is needed (one job per threshold crossed,
    not one per event), without a round trip of its own. The labels are counted once (the count is what costs:
    every label event of the project), and ``watermark > 0`` follows from ``watermark > last`` with ``last``
    never negative."""
    threshold = project.retrain_threshold
    watermark = (_labels_query(project).scalar_subquery() + uncounted) // threshold * threshold
    return watermark > func.coalesce(_last_run(project).scalar_subquery(), 0)
