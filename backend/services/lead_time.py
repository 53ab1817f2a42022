"""Annotator time per label, from the seconds Label Studio records per annotation (``lead_time``).

The dashboard's forecast (``backend.services.progress``) and a comparison's labelling cost
(``backend.services.comparison``) price a label with the same figure.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import Annotation, Project, TaskLabel


def lead_time(db: Session, project: Project) -> dict[str, float]:
    """Annotator time recorded by Label Studio.

    Returns:
        ``seconds``: the summed ``lead_time`` (seconds) of the live, not cancelled annotations that have one;
        ``tasks``: how many annotations that sum is over; ``labelled_tasks``: the project's labelled tasks.
    """
    seconds, tasks = db.execute(
        select(func.coalesce(func.sum(Annotation.lead_time_s), 0.0), func.count()).where(
            Annotation.project_id == project.id,
            Annotation.deleted.is_(False),
            Annotation.was_cancelled.is_(False),
            Annotation.lead_time_s.is_not(None),
            Annotation.lead_time_s > 0,
        )
    ).one()
    labelled = db.scalar(select(func.count()).select_from(TaskLabel).where(TaskLabel.project_id == project.id))
    return {"seconds": float(seconds or 0), "tasks": float(tasks), "labelled_tasks": float(labelled or 0)}


def seconds_per_label(pace: Mapping[str, float], labels: int) -> float | None:
    """Seconds of annotator time per label.

    The mean time per annotated task times the labelled tasks, over the labels (a task's time is shared by every label
    in it). ``labels``: a type's labels for a type's figure, all labels for the project's.

    Returns:
        Seconds per label, or None when no ``lead_time`` is recorded or there is no label.
    """
    if not pace["tasks"] or labels <= 0:
        return None
    return pace["seconds"] / pace["tasks"] * pace["labelled_tasks"] / labels
