"""The Celery application: Redis broker, explicit queues, JSON payloads of ids only."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from backend.settings import Settings

QUEUES = ("train", "score", "llm")
# The longest task acknowledged only when it ends (llm_preannotate's soft limit); training is acknowledged when it
# starts (see workers.tasks.train_run), so the visibility timeout no longer has to outlast a training.
LONGEST_ACKS_LATE_TASK_S = 60 * 60


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings`` (the worker command and the tests build it; nothing at import)."""
    app = Celery("nerloop", broker=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_create_missing_queues=False,
        task_queues=[Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_default_queue="score",
        task_ignore_result=True,
        # A message whose worker died is redelivered after this. It must outlast the longest task acknowledged late
        # (a redelivery of a running task would run it twice at once), but not a training: train_run is
        # acknowledged when it starts, and a run whose message is lost is re-sent by the sweep.
        broker_transport_options={"visibility_timeout": LONGEST_ACKS_LATE_TASK_S + 600},
        task_annotations={
            "workers.train_run": {
                "time_limit": settings.train_time_limit_s,
                "soft_time_limit": settings.train_time_limit_s - 60,
            }
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.conf.nerloop_settings = settings
    return app
