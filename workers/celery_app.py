"""The Celery application: Redis broker, explicit queues, JSON payloads of ids only.

Celery itself is imported inside :func:`make_celery`, so that the ``nerloop`` commands that only read ``QUEUES``
or ``POOLS`` start without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

QUEUES = ("train", "score", "llm")
# One worker process per queue group, each with its own concurrency (`nerloop up`, docker-compose.yml): a long
# LLM pass or a training never holds up the retrain check, the rescoring or one another. `score` has two
# processes, so a retrain check (seconds) never waits behind a rescoring of a large pool.
POOLS: tuple[tuple[str, int], ...] = (("train", 1), ("score", 2), ("llm", 1))
# The longest task acknowledged only when it ends (llm_preannotate's soft limit); training is acknowledged when it
# starts (see workers.tasks.train_run), so the visibility timeout no longer has to outlast a training.
LONGEST_ACKS_LATE_TASK_S = 60 * 60
# Hard limits a minute past each acks-late task's soft limit: no task acknowledged late outlives the visibility
# timeout, even one stuck where the soft limit's exception cannot reach it.
_HARD_LIMIT_S = {
    "workers.retrain_if_due": 10 * 60,
    "workers.start_training": 10 * 60,
    "workers.score_pool": 31 * 60,
    "workers.llm_preannotate": LONGEST_ACKS_LATE_TASK_S + 60,
}
VISIBILITY_TIMEOUT_S = LONGEST_ACKS_LATE_TASK_S + 600


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings`` (the worker command and the tests build it; nothing at import)."""
    from celery import Celery
    from kombu.entity import Exchange, Queue

    app = Celery("nerloop", broker=settings.redis_url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        # A worker fetches a message only when one of its processes is free. Prefetching (even one message) lets
        # a worker whose process trains (train_run is acknowledged when it starts, which frees the prefetch slot)
        # or runs a long LLM pass reserve the next message and hold it until that ends, while another worker
        # could run it now (Redis only; Celery >= 5.6).
        worker_disable_prefetch=True,
        task_create_missing_queues=False,
        # Each queue on its own exchange and routing key: a queue given only its name is bound to the default
        # queue's (score, score), so a message published there through this app would reach every queue.
        task_queues=[Queue(name, Exchange(name), routing_key=name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_default_queue="score",
        task_ignore_result=True,
        # A message whose worker died is redelivered after this, by whichever worker scans first (the timeout is
        # the broker's, the same for every pool). It must outlast the longest task acknowledged late (a
        # redelivery of a running task would run it twice at once; _HARD_LIMIT_S bounds them), but not a
        # training: train_run is acknowledged when it starts, and a run whose message is lost is re-sent by the
        # sweep. A worker that stops cleanly (warm or cold shutdown) puts its unacknowledged messages back at once.
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_annotations={
            "workers.train_run": {
                "time_limit": settings.train_time_limit_s,
                "soft_time_limit": settings.train_time_limit_s - 60,
            },
            # a comparison trains a model per size and asks the LLM hundreds of times, on the train queue (one
            # process): bounded, so that a hung LLM or a huge request cannot hold every retrain back for ever
            "workers.compare_project": {
                "time_limit": settings.compare_time_limit_s,
                "soft_time_limit": settings.compare_time_limit_s - 60,
            },
            **{name: {"time_limit": limit} for name, limit in _HARD_LIMIT_S.items()},
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.conf.nerloop_settings = settings
    return app
