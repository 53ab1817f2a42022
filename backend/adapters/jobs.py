"""The job queue (``backend.ports.JobQueue``) on Celery.

The backend enqueues tasks by name, never importing ``workers``.

Per-project jobs that only re-read the state (the retrain check, the LLM pass) are coalesced: at most one of each
is pending per project. The marker is a Redis key next to the queue (``SET NX EX``), set when a job is sent and
deleted by the worker when the job *starts*, before it reads the database. So a trigger that finds the marker set
is covered by the pending job (it reads the state after the trigger committed), a trigger after the start sends
a new job, and the last check is never lost. The marker lives in Redis with the messages, so it survives a worker
restart with them; its expiry bounds how long a message lost with a broker that lost its data can block new ones.
"""

from __future__ import annotations

import redis
from celery import Celery

from backend.ports import TaskName

# Deciding is cheap and must not wait behind a training: only the training itself goes to `train`.
QUEUE_OF = {
    TaskName.RETRAIN_IF_DUE: "score",
    TaskName.START_TRAINING: "score",
    TaskName.TRAIN_RUN: "train",
    TaskName.SCORE_POOL: "score",
    TaskName.LLM_PREANNOTATE: "llm",
    TaskName.COMPARE_PROJECT: "train",  # a comparison trains a model per size: beside the trainings
    TaskName.REVIEW_LABELS: "train",  # trains k fold models: beside the trainings, never beside the checks
}


# How long a coalesced job's "pending" marker lasts at most (seconds). A job that waits longer in its queue gets a
# duplicate at the next trigger (harmless: both only re-read the state). The LLM pass may queue behind other
# projects' passes (each up to an hour); the retrain check shares the `score` queue with rescoring (31 min at most,
# workers.celery_app) and, while a marker is lost with its message, the sweep still starts due retrains.
PENDING_TTL_S = {
    TaskName.RETRAIN_IF_DUE: 35 * 60,
    TaskName.LLM_PREANNOTATE: 2 * 60 * 60,
}


def pending_key(name: TaskName, project_id: int) -> str:
    """The Redis key that says a coalesced job of ``name`` is pending for a project."""
    return f"nerloop:pending:{name}:{project_id}"


class CeleryJobQueue:
    """Sends jobs to the Redis broker without importing the worker code."""

    def __init__(self, broker_url: str) -> None:
        self._redis = redis.Redis.from_url(broker_url, socket_timeout=2.0, socket_connect_timeout=0.5)
        self._app = Celery("nerloop-backend", broker=broker_url)
        self._app.conf.update(
            broker_connection_timeout=0.5,
            broker_connection_retry=False,
            task_serializer="json",
            accept_content=["json"],
        )

    def enqueue(self, name: TaskName, *ids: int) -> str:
        """Send ``name(*ids)`` to its queue; raises on a broker that cannot be reached."""
        result = self._app.send_task(
            str(name),
            args=list(ids),
            queue=QUEUE_OF[name],
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0.1},
        )
        return str(result.id)

    def enqueue_once(self, name: TaskName, project_id: int, *ids: int) -> str | None:
        """Send ``name(project_id, *ids)`` unless a job of ``name`` is pending for the project (see the module).

        Only for tasks that re-read the state when they start and call ``started`` first (``PENDING_TTL_S``).

        Returns:
            The job id, or None when the pending job covers this trigger.

        Raises:
            redis.RedisError, kombu.exceptions.OperationalError: the broker cannot be reached (nothing is pending
                then: the marker of a job that could not be sent is removed).
        """
        key = pending_key(name, project_id)
        if not self._redis.set(key, "sending", nx=True, ex=PENDING_TTL_S[name]):
            return None
        try:
            job = self.enqueue(name, project_id, *ids)
        except BaseException:
            self._redis.delete(key)
            raise
        self._redis.set(key, job, xx=True, keepttl=True)  # which job is pending, for whoever looks
        return job

    def started(self, name: TaskName, project_id: int) -> None:
        """Remove the pending marker of a coalesced job that is starting (before it reads the database)."""
        self._redis.delete(pending_key(name, project_id))

    def pending(self, name: TaskName, project_id: int) -> bool:
        """Whether a coalesced job of ``name`` is pending for the project."""
        return bool(self._redis.exists(pending_key(name, project_id)))
