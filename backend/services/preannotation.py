"""Pre-annotation ahead of the annotators: which tasks the LLM pass completes next, and when it is due.

The ``llm`` queue keeps a window of ``NER_LLM_PREANNOTATE_MAX`` tasks ahead of the annotators complete (every
type answered, the LLM's included) in Label Studio's queue order. Candidates, first to last:

1. tasks ``/predict`` answered without the LLM part (tag ``~llm-pending``): the LLM part was promised, so they
   are completed whatever the window;
2. the serving version's rescored predictions, lowest score (next served) first;
3. before any model exists, the next unlabelled tasks by Label Studio id (import order), which get scores rising
   with that order, so that uncertainty sampling serves them first and in that order.

A task with a live annotation (labelled or skipped) is done: never selected, and not pushed when it was labelled
while the LLM worked on it. A label event that leaves fewer than the window complete ahead, and Label Studio's
``/setup`` (a project created or attached), trigger the next pass (``follow_queue``); passes are coalesced per
project (``JobQueue.enqueue_once``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import Annotation, Prediction, Project
from backend.db.upsert import upsert
from backend.ports import JobQueue, TaskName
from backend.services.predictions import version_tag
from backend.services.projects import current_model
from backend.services.routing import routing_table
from ml.queue_order import import_order_key

log = logging.getLogger(__name__)

# an LLM-only prediction has no model to measure its uncertainty: it counts as the most uncertain
UNKNOWN_UNCERTAINTY = 1.0


def _unlabelled(project: Project) -> Any:
    """The Prediction row's task holds no live annotation (labelled or skipped).

    ``NOT IN`` a subquery: PostgreSQL hashes the project's annotated tasks once, whatever its statistics say (``NOT
    EXISTS`` planned as a nested loop on a table not analysed yet took 0.85 s at 5,000 predictions and 1,000
    annotations).
    """
    return Prediction.ls_task_id.not_in(
        select(Annotation.ls_task_id).where(
            Annotation.project_id == project.id,
            Annotation.ls_task_id.is_not(None),  # a NULL would make NOT IN match nothing
            Annotation.deleted.is_(False),
        )
    )


def done_tasks(db: Session, project: Project, ls_task_ids: Iterable[int]) -> set[int]:
    """The tasks among ``ls_task_ids`` that hold a live annotation (labelled or skipped).

    No pre-annotation is pushed to them. Read from the webhook-fed label state.
    """
    ids = list(ls_task_ids)
    if not ids:
        return set()
    return set(
        db.scalars(
            select(Annotation.ls_task_id).where(
                Annotation.project_id == project.id,
                Annotation.ls_task_id.in_(ids),
                Annotation.deleted.is_(False),
            )
        )
    )


def complete_ahead(db: Session, project: Project, tag: str, *, upto: int) -> int:
    """How many tasks without a live annotation hold a complete, pushed prediction of ``tag``.

    Counted up to ``upto``: the pre-annotated window still ahead of the annotators.
    """
    head = (
        select(Prediction.id)
        .where(Prediction.project_id == project.id, Prediction.model_version == tag)
        .where(Prediction.complete.is_(True), Prediction.ls_prediction_id.is_not(None))
        .where(_unlabelled(project))
        .limit(upto)
        .subquery()
    )
    return int(db.scalar(select(func.count()).select_from(head)) or 0)


def candidates(db: Session, project: Project, tag: str, *, n: int, promised: bool) -> list[Prediction]:
    """The next ``n`` predictions of ``tag`` that await the LLM part, on tasks without a live annotation.

    By score (Label Studio's order). ``promised``: those nerloop never pushed (``/predict`` answered them
    ``~llm-pending``, or a pass stopped before pushing them); else the pushed ones (rescored).
    """
    if n <= 0:
        return []
    pushed = Prediction.ls_prediction_id.is_(None) if promised else Prediction.ls_prediction_id.is_not(None)
    return list(
        db.scalars(
            select(Prediction)
            .where(Prediction.project_id == project.id, Prediction.model_version == tag)
            .where(Prediction.complete.is_(False), pushed, _unlabelled(project))
            .order_by(Prediction.score, Prediction.id)
            .limit(n)
        )
    )


def open_window(
    db: Session, project: Project, tag: str, tasks: Sequence[dict[str, Any]], *, n: int, text_field: str = "text"
) -> list[Prediction]:
    """Open the pre-annotation window before any model exists: rows for the next ``n`` tasks by id.

    The tasks are those with no live annotation (in ``tasks``, Label Studio's export, nor in the label state) and no
    prediction of ``tag`` yet.

    Each gets the queue key ``ml.queue_order.import_order_key`` of its id among all the tasks, so that the pushed
    predictions are served in import order, before every task without one. Committed here.

    Returns:
        The new rows, incomplete, with empty spans.
    """
    ordered = sorted(tasks, key=lambda t: int(t["id"]))
    held = set(
        db.scalars(
            select(Prediction.ls_task_id).where(Prediction.project_id == project.id, Prediction.model_version == tag)
        )
    )
    fresh = [
        (index, int(task["id"]))
        for index, task in enumerate(ordered)
        if int(task["id"]) not in held
        and isinstance((task.get("data") or {}).get(text_field), str)
        and not task.get("annotations")  # a skip counts: the annotators passed it
    ]
    chosen: list[tuple[int, int]] = []
    for start in range(0, len(fresh), 500):  # labelled since the export: the webhook-fed label state knows
        part = fresh[start : start + 500]
        labelled = done_tasks(db, project, [task_id for _, task_id in part])
        chosen += [(index, task_id) for index, task_id in part if task_id not in labelled]
        if len(chosen) >= n:
            break
    chosen = chosen[:n]
    for index, task_id in chosen:
        db.execute(
            upsert(db, Prediction)
            .values(
                project_id=project.id,
                ls_task_id=task_id,
                model_version=tag,
                spans=[],
                score=import_order_key(index, total=len(ordered)),
                uncertainty=UNKNOWN_UNCERTAINTY,
                complete=False,
            )
            .on_conflict_do_nothing(index_elements=["project_id", "ls_task_id", "model_version"])
        )
    db.commit()
    return list(
        db.scalars(
            select(Prediction)
            .where(Prediction.project_id == project.id, Prediction.model_version == tag)
            .where(Prediction.ls_task_id.in_([task_id for _, task_id in chosen]), Prediction.complete.is_(False))
            .order_by(Prediction.score, Prediction.id)
        )
    )


def defer_llm_part(
    db: Session,
    project: Project,
    *,
    tag: str,
    tasks: Sequence[tuple[int, dict[str, Any]]],
    jobs: JobQueue | None = None,
) -> int:
    """Record the tasks ``/predict`` answered without the LLM part, then ask the ``llm`` queue for them.

    One incomplete row per task with the model's types (``tasks``: Label Studio task id and the answered prediction,
    ``result`` and ``score``). A task that already has a row of ``tag`` keeps it. Committed here, before the LLM
    pass is enqueued (coalesced per project) on ``jobs`` (None: not enqueued).

    Returns:
        How many rows were added.

    Raises:
        Exception: the broker's error when ``jobs`` cannot be reached (the rows are stored: the next ``/setup`` or
            label event asks again).
    """
    added = 0
    for task_id, prediction in tasks:
        inserted = db.execute(
            upsert(db, Prediction)
            .values(
                project_id=project.id,
                ls_task_id=task_id,
                model_version=tag,
                spans=prediction["result"],
                score=float(prediction["score"]),  # its queue key: ml.queue_order.predicted_queue_key
                uncertainty=1.0 - float(prediction["score"]),  # which is 1 - the least-confidence uncertainty
                complete=False,
            )
            .on_conflict_do_nothing(index_elements=["project_id", "ls_task_id", "model_version"])
            .returning(Prediction.id)
        )
        added += inserted.first() is not None
    db.commit()  # no transaction open across the broker call
    if jobs is not None:
        jobs.enqueue_once(TaskName.LLM_PREANNOTATE, project.id)
    return added


def window_due(db: Session, project: Project, *, window: int) -> bool:
    """Whether an LLM pass has work.

    Some type is routed to the LLM, and a task ``/predict`` answered without the LLM part awaits it, or fewer than
    ``window`` complete tasks are ahead of the annotators and a task awaits the LLM part (before any model: Label
    Studio's tasks do).
    """
    routes = routing_table(db, project)
    if window <= 0 or not any(entry.route == "llm" for entry in routes.values()):
        return False
    tag = version_tag(project, routes)
    if candidates(db, project, tag, n=1, promised=True):
        return True
    if complete_ahead(db, project, tag, upto=window) >= window:
        return False
    return current_model(db, project) is None or bool(candidates(db, project, tag, n=1, promised=False))


def follow_queue(db: Session, project: Project, jobs: JobQueue, *, window: int) -> str | None:
    """Enqueue the project's LLM pass when it is due (``window_due``), unless one is pending.

    Returns:
        The job id, or None (not due, or a pass is pending already).

    Raises:
        redis.RedisError, kombu.exceptions.OperationalError: the broker cannot be reached.
    """
    project_id = project.id
    db.commit()  # no transaction open across the broker call
    if jobs.pending(TaskName.LLM_PREANNOTATE, project_id):
        return None  # the pending pass reads the state when it starts: no database work per event of a burst
    due = window_due(db, project, window=window)
    db.commit()  # no connection held while the broker is called
    if not due:
        return None
    job = jobs.enqueue_once(TaskName.LLM_PREANNOTATE, project_id)
    if job is not None:
        log.info("project %s: LLM pass %s enqueued (fewer than %s pre-annotated tasks ahead)", project_id, job, window)
    return job


def nudge_queue(db: Session, project: Project, jobs: JobQueue, *, window: int) -> None:
    """:func:`follow_queue` that never fails its caller (a webhook, ``/setup``).

    A broker that is away is logged, and the next label event or ``/setup`` tries again. Commits, as ``follow_queue``
    does.
    """
    try:
        follow_queue(db, project, jobs, window=window)
    except Exception as exc:  # the broker is away: the next label event or /setup tries again
        log.warning("project %s: the LLM pass could not be enqueued: %s", project.id, exc)
