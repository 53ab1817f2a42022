"""Re-send the jobs of events stored while the broker was unreachable (run when a worker starts)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.adapters.jobs import JobQueue, TaskName
from backend.db.models import TrainingRun
from backend.db.session import session_scope
from backend.services.annotations import unqueued_events


def sweep_unqueued(sessions: sessionmaker[Session], jobs: JobQueue) -> int:
    """Enqueue one job per project that has unqueued events, mark those events queued, and re-send every run
    still queued (a worker claims a run atomically, so a second message for it does nothing).

    Returns:
        How many events were re-sent.
    """
    with session_scope(sessions) as db:
        for run_id in db.scalars(select(TrainingRun.id).where(TrainingRun.status == "queued")):
            jobs.enqueue(TaskName.TRAIN_RUN, run_id)
        events = unqueued_events(db)
        sent: set[tuple[int, str]] = set()
        for event in events:
            name = TaskName.START_TRAINING if event.action == "START_TRAINING" else TaskName.RETRAIN_IF_DUE
            if (event.project_id, name) not in sent:  # retrain_if_due counts every stored event: one job is enough
                jobs.enqueue(name, event.project_id, event.id)
                sent.add((event.project_id, name))
            event.enqueued = True
        return len(events)
