"""Liveness of training runs: the heartbeat a training process beats, and what happens to a run that stops beating.

A process killed by ``kill -9`` or the out-of-memory killer runs no ``except`` or ``finally``: its run would stay
``running`` and block retraining. So the process beats (``Heartbeat``), and whoever sweeps (the backend, a worker
start, the next label event) fails the runs that stopped beating and removes what they left on disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import ColumnElement, Executable, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import ModelVersion, Project, TrainingRun, utcnow
from backend.db.session import session_scope

log = logging.getLogger(__name__)


def owned(run_id: int, attempt: int) -> ColumnElement[bool]:
    """The condition of every write a training process makes: the run is still running its attempt."""
    return (TrainingRun.id == run_id) & (TrainingRun.status == "running") & (TrainingRun.attempt == attempt)


def heartbeat_interval(timeout_s: float) -> float:
    """How often a process beats: several beats per timeout, so that one slow database write does not kill it."""
    return max(0.5, min(30.0, timeout_s / 6))


class Heartbeat:
    """A daemon thread that runs ``stamp()`` every ``interval_s`` while the work runs.

    ``stamp()`` is an UPDATE setting ``heartbeat_at`` of the row one attempt owns; training runs
    (:func:`run_heartbeat`), review passes and comparisons beat so. A thread, not the progress callback: one training
    step, one evaluation or one LLM request can keep the callback silent for long. It stops at exit, or by itself once
    ``stamp()`` updates no row (the attempt is no longer this process's).
    """

    def __init__(
        self, sessions: sessionmaker[Session], stamp: Callable[[], Executable], *, name: str, interval_s: float
    ) -> None:
        self._sessions, self._stamp, self._name, self._interval_s = sessions, stamp, name, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {name}", daemon=True)

    @property
    def beating(self) -> bool:
        """Whether the thread still beats."""
        return self._thread.is_alive()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                with session_scope(self._sessions) as db:
                    stamped = db.execute(self._stamp())
                if stamped.rowcount != 1:  # type: ignore[attr-defined]
                    log.warning("%s is no longer this process's; heartbeat stops", self._name)
                    return
            except Exception as exc:  # the next beat tries again; a long outage expires the work, as it should
                log.warning("%s: heartbeat not recorded (%s)", self._name, exc)


def run_heartbeat(sessions: sessionmaker[Session], run_id: int, *, attempt: int, interval_s: float) -> Heartbeat:
    """The heartbeat of a training run's attempt (``training_run.heartbeat_at``)."""
    return Heartbeat(
        sessions,
        lambda: update(TrainingRun).where(owned(run_id, attempt)).values(heartbeat_at=utcnow()),
        name=f"run {run_id} attempt {attempt}",
        interval_s=interval_s,
    )


def aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def silent_since(cutoff: datetime, runs: Any = TrainingRun) -> ColumnElement[bool]:
    """Whether a run's process has not beaten since ``cutoff``, as an SQL condition.

    Its last heartbeat, else its start, else its creation, is older than ``cutoff``: never NULL, so it negates
    safely. ``runs``: the ORM entity, or the Core table's columns (``TrainingRun.__table__.c``).
    """
    return func.coalesce(runs.heartbeat_at, runs.started_at, runs.created_at) < cutoff


def expire_stale_runs(db: Session, *, timeout_s: float, project: Project | None = None) -> list[int]:
    """Fail the running runs whose process stopped beating, and remove what they left on disk.

    The runs of ``project``, else of every project. The caller commits.

    Args:
        db: The session.
        timeout_s: Seconds without a heartbeat after which a run's process counts as dead.
        project: Only this project's runs.

    Returns:
        The ids of the runs marked failed.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=timeout_s)
    query = select(TrainingRun).where(TrainingRun.status == "running", silent_since(cutoff))
    if project is not None:
        query = query.where(TrainingRun.project_id == project.id)
    expired: list[int] = []
    for run in db.scalars(query.with_for_update(skip_locked=True)):
        last = run.heartbeat_at or run.started_at or run.created_at
        silent_s = (now - aware(last)).total_seconds()
        run.status, run.finished_at = "failed", now
        run.error = (
            f"no heartbeat for {silent_s:.0f} s: the worker was lost (its training process was killed, ran out of "
            f"memory or passed NER_TRAIN_TIME_LIMIT_S) during '{run.stage}'; retrain to try again"
        )
        removed = remove_leftovers(db, run)
        log.warning("run %s expired: %s; removed %s", run.id, run.error, removed or "nothing")
        expired.append(run.id)
    db.flush()
    return expired


def remove_leftovers(db: Session, run: TrainingRun) -> list[str]:
    """Delete what a dead or failed run wrote before its version was recorded.

    Its output directory and a version directory it moved into place but never recorded. A recorded version's directory
    is never touched.

    Returns:
        The directories deleted.
    """
    if not run.output_dir:
        return []
    candidates = [Path(run.output_dir)]
    if run.model_version:
        candidates.append(Path(run.output_dir).parent / run.model_version)
    recorded = [Path(p) for p in db.scalars(select(ModelVersion.path).where(ModelVersion.project_id == run.project_id))]
    removed = []
    for path in candidates:
        if any(path == kept or path in kept.parents or kept in path.parents for kept in recorded):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def worker_identity() -> tuple[str, int]:
    """This process's host and pid, as a run records them."""
    return os.uname().nodename, os.getpid()
