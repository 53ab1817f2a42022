"""The label watermark: which state of a project's labels a run trains on, and when a retrain is due."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ScalarSelect, Select, and_, case, func, select
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


def due_watermark(db: Session, project: Project, *, uncounted: int = 0) -> int | None:
    """The watermark a retrain is due at: the labels' last multiple of the threshold, when it is above every run
    that did not fail; else None.

    ``uncounted``: label changes not yet marked on their event (the one being stored)."""
    due = db.scalar(select(due_expression(project, uncounted=uncounted)))
    return None if due is None else int(due)


def due_expression(project: Project, *, uncounted: int = 0) -> ScalarSelect[int | None]:
    """:func:`due_watermark` as one SQL expression, so that a statement can carry it: the webhook decides in the
    update that marks its event whether a retrain check is needed (one job per threshold crossed, not one per
    event), without a round trip of its own. Counts the labels once."""
    threshold = project.retrain_threshold
    last_run = select(func.max(TrainingRun.annotation_watermark)).where(
        TrainingRun.project_id == project.id, TrainingRun.status != "failed"
    )
    state = select(
        ((_labels_query(project).scalar_subquery() + uncounted) // threshold * threshold).label("watermark"),
        func.coalesce(last_run.scalar_subquery(), 0).label("last"),
    ).subquery()
    due = case((and_(state.c.watermark > 0, state.c.watermark > state.c.last), state.c.watermark), else_=None)
    return select(due).scalar_subquery()
