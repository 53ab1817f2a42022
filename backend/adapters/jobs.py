"""The job queue port: the backend enqueues Celery tasks by name, never importing ``workers``."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from celery import Celery


class TaskName(StrEnum):
    """Names of the Celery tasks (defined in ``workers``)."""

    RETRAIN_IF_DUE = "workers.retrain_if_due"
    START_TRAINING = "workers.start_training"
    TRAIN_RUN = "workers.train_run"
    SCORE_POOL = "workers.score_pool"
    LLM_PREANNOTATE = "workers.llm_preannotate"


# Deciding is cheap and must not wait behind a training: only the training itself goes to `train`.
QUEUE_OF = {
    TaskName.RETRAIN_IF_DUE: "score",
    TaskName.START_TRAINING: "score",
    TaskName.TRAIN_RUN: "train",
    TaskName.SCORE_POOL: "score",
    TaskName.LLM_PREANNOTATE: "llm",
}


class JobQueue(Protocol):
    """Enqueue a task with ids as its only payload; return the job id."""

    def enqueue(self, name: TaskName, *ids: int) -> str:
        """Send one job."""
        ...


class CeleryJobQueue:
    """Sends jobs to the Redis broker without importing the worker code."""

    def __init__(self, broker_url: str) -> None:
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
