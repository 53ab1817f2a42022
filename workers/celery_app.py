"""The Celery application: Redis broker, explicit queues, JSON payloads of ids only."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from backend.settings import Settings

QUEUES = ("train", "score", "llm")


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
        # a message whose worker died is redelivered after this; it must outlast the longest training
        broker_transport_options={"visibility_timeout": settings.train_time_limit_s + 600},
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
