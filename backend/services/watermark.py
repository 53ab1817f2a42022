"""The label watermark: which state of a project's labels a run trains on, and when a retrain is due."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import AnnotationEvent, Project, TrainingRun


def labels_count(db: Session, project: Project) -> int:
    """The project's label watermark: how many events changed its labels (a live annotation created, changed
    or deleted; skips are not labels, see ``backend.services.label_state``). It only grows, so each value names
    one state of the labels."""
    query = (
        select(func.count())
        .select_from(AnnotationEvent)
        .where(AnnotationEvent.project_id == project.id, AnnotationEvent.label_change.is_(True))
    )
    return int(db.scalar(query) or 0)


def due_watermark(db: Session, project: Project, *, uncounted: int = 0) -> int | None:
    """The watermark a retrain is due at: the labels' last multiple of the threshold, when it is above every run
    that did not fail; else None. Two queries, so the webhook asks it for each label event and enqueues a retrain
    check only when one can start a run (one job per threshold crossed, not one per event).

    ``uncounted``: label changes not yet marked on their event (the one being stored)."""
    labels = labels_count(db, project) + uncounted
    watermark = labels // project.retrain_threshold * project.retrain_threshold
    last = db.scalar(
        select(func.max(TrainingRun.annotation_watermark)).where(
            TrainingRun.project_id == project.id, TrainingRun.status != "failed"
        )
    )
    return watermark if watermark > 0 and watermark > (last or 0) else None
