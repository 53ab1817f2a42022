"""The sweep: redo what a lost broker message or a dead process left undone.

The backend runs it every NER_SWEEP_INTERVAL_S and each worker runs it when it starts. Each step is safe to run
twice, and from several processes at once: a duplicate job finds its work done (events are counted, runs are
unique per watermark and claimed atomically).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import AnnotationEvent, Project, TrainingRun, utcnow
from backend.db.session import session_scope
from backend.ports import JobQueue, TaskName
from backend.services.annotations import unqueued_events
from backend.services.review_liveness import expire_stale_passes
from backend.services.run_liveness import aware, expire_stale_runs
from backend.services.training import retrain_if_due

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    """What one sweep did."""

    expired_runs: list[int] = field(default_factory=list)
    expired_reviews: list[int] = field(default_factory=list)
    resent_events: int = 0
    started_runs: list[int] = field(default_factory=list)
    resent_runs: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.expired_runs or self.expired_reviews or self.resent_events or self.started_runs or self.resent_runs
        )


def sweep(
    sessions: sessionmaker[Session], jobs: JobQueue, *, heartbeat_timeout_s: float, max_resend_interval_s: float
) -> SweepReport:
    """Sweep once: fail dead runs and passes, re-send lost jobs and messages, start due retrains that have no run.

    Fail the runs and review passes whose process died, re-send the jobs of events stored while the broker was
    unreachable, start the retrains that are due but have no run (their job was lost with the broker's queue), and
    re-send queued runs whose message may be lost.

    Args:
        sessions: Database sessions.
        jobs: The broker; an unreachable one raises, after the expiry is committed.
        heartbeat_timeout_s: Seconds without a heartbeat after which a running run counts as dead; also how long
            a queued run waits before its message is first re-sent.
        max_resend_interval_s: The longest wait between two re-sends of one queued run's message.

    Returns:
        What was done.
    """
    report = SweepReport()
    with session_scope(sessions) as db:
        report.expired_runs = expire_stale_runs(db, timeout_s=heartbeat_timeout_s)
    with session_scope(sessions) as db:  # review passes whose worker died: failed, their fold models removed
        report.expired_reviews = expire_stale_passes(db, timeout_s=heartbeat_timeout_s)
    report.resent_events = resend_unqueued_events(sessions, jobs)
    report.started_runs = start_due_retrains(sessions, jobs)
    report.resent_runs = resend_queued_runs(
        sessions, jobs, first_after_s=heartbeat_timeout_s, max_interval_s=max_resend_interval_s
    )
    return report


def resend_unqueued_events(sessions: sessionmaker[Session], jobs: JobQueue) -> int:
    """Enqueue one job per project and kind for the events whose job never reached the broker, and mark them queued.

    In the same transaction: if the broker fails half-way, the rest stay unqueued for the next sweep.

    Returns:
        How many events were re-sent.
    """
    with session_scope(sessions) as db:  # read, then let the connection go: the broker is called without one
        events = [(event.id, event.project_id, event.action) for event in unqueued_events(db)]
    sent: dict[tuple[int, str], int] = {}
    for event_id, project_id, action in events:
        name = TaskName.START_TRAINING if action == "START_TRAINING" else TaskName.RETRAIN_IF_DUE
        if (project_id, name) not in sent:  # retrain_if_due counts every stored event: one job is enough
            jobs.enqueue(name, project_id, event_id)  # raises on a broker away: nothing is marked
            sent[(project_id, name)] = event_id
    with session_scope(sessions) as db:
        for start in range(0, len(events), 500):
            ids = [event_id for event_id, _, _ in events[start : start + 500]]
            db.execute(update(AnnotationEvent).where(AnnotationEvent.id.in_(ids)).values(enqueued=True))
    return len(events)


def start_due_retrains(sessions: sessionmaker[Session], jobs: JobQueue) -> list[int]:
    """Create and send the runs that are due and have none.

    Their label event's job was lost (a broker restart without persistence). A failed run is not retried here (a label
    event or a request retries it), or a run that always dies would be retried forever.

    Returns:
        The ids of the runs started.
    """
    started: list[int] = []
    with session_scope(sessions) as db:
        project_ids = list(db.scalars(select(Project.id).order_by(Project.id)))
    for project_id in project_ids:
        with session_scope(sessions) as db:
            project = db.get(Project, project_id)
            run = retrain_if_due(db, project, retry_failed=False) if project is not None else None
            run_id = run.id if run is not None else None
        if run_id is not None:
            jobs.enqueue(TaskName.TRAIN_RUN, run_id)
            started.append(run_id)
    return started


def resend_queued_runs(
    sessions: sessionmaker[Session], jobs: JobQueue, *, first_after_s: float, max_interval_s: float
) -> list[int]:
    """Re-send the message of each run queued for long.

    The broker may have lost it (restarted without persistence, or a worker died holding it). A run may also just wait
    behind a long training, so the re-sends back off (``first_after_s``, then twice as long each time, up to
    ``max_interval_s``); a duplicate message is harmless, as the worker that gets it finds the run claimed.

    Returns:
        The ids of the runs re-sent.
    """
    now = utcnow()
    with session_scope(sessions) as db:  # read, then let the connection go: the broker is called without one
        due = [
            run.id
            for run in db.scalars(select(TrainingRun).where(TrainingRun.status == "queued"))
            if now - aware(run.sent_at or run.created_at)
            >= timedelta(seconds=min(first_after_s * 2 ** min(run.resends, 20), max_interval_s))
        ]
    resent: list[int] = []
    for run_id in due:
        jobs.enqueue(TaskName.TRAIN_RUN, run_id)
        resent.append(run_id)
        with session_scope(sessions) as db:  # still queued (not claimed meanwhile): count the re-send
            db.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.status == "queued")
                .values(sent_at=now, resends=TrainingRun.resends + 1)
            )
    return resent
