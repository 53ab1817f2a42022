"""A Label Studio webhook, received.

The event stored once (one transaction), the pre-annotated window moved along the queue, and the event's job enqueued by
id. This service owns the request's transactions: no transaction stays open across a broker call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy.orm import Session

from backend.errors import InvalidInputError
from backend.ports import JobQueue, TaskName
from backend.services import annotations as events
from backend.services import preannotation
from backend.services.projects import project_by_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Receipt:
    """What became of a webhook.

    Attributes:
        action: The event's ``action``.
        event_id: The stored event's id (None: not stored, e.g. an action nerloop does not keep).
        status: ``stored`` (this delivery created it), ``duplicate`` (a redelivery) or ``ignored``.
        label_change: Whether the event changed the project's labels.
        queued: Whether its job reached the broker; None when it needs no job (not ours, no label changed, or a
            redelivery whose job is already queued).
        coalesced: The retrain check pending for the project covers the event (no new job was sent).
        job: The job id of a ``START_TRAINING`` event's run (None for other actions).
    """

    action: str
    event_id: int | None
    status: Literal["stored", "duplicate", "ignored"]
    label_change: bool
    queued: bool | None = None
    coalesced: bool = False
    job: str | None = None


def receive_event(
    db: Session,
    body: Any,
    *,
    jobs: JobQueue,
    max_text_chars: int,
    preannotate_window: int | None,
    heartbeat_timeout_s: float | None = None,
) -> Receipt:
    """Store a webhook's event once and apply it to the label state (committed), then enqueue its job.

    A retrain check, coalesced per project, or a ``START_TRAINING`` run. A label, or a skip, also moves the LLM
    pre-annotation window along the queue (``preannotation.nudge_queue``).

    Args:
        db: The session; committed here, before every broker call.
        body: The webhook's JSON body.
        jobs: The job queue.
        max_text_chars: The longest task text accepted (``NER_MAX_TEXT_CHARS``).
        heartbeat_timeout_s: ``NER_RUN_HEARTBEAT_TIMEOUT_S`` (None: its default): a running run silent for longer
            holds no retrain back.
        preannotate_window: The pre-annotated window (``NER_LLM_PREANNOTATE_MAX``); None when the ``llm`` queue
            does not pre-annotate.

    Returns:
        The receipt. A broker that cannot be reached is not an error: the event is stored, ``queued`` is False,
        and the sweep re-sends it (``backend.services.sweep``).

    Raises:
        InvalidInputError: the body is not a JSON object, or not a valid event (nothing is stored).
        NotFoundError: the project is not registered with nerloop.
    """
    if not isinstance(body, dict):
        raise InvalidInputError("webhook body must be a JSON object")
    ingested = events.ingest(db, body, max_text_chars=max_text_chars, heartbeat_timeout_s=heartbeat_timeout_s)
    db.commit()
    receipt = Receipt(
        action=ingested.action,
        event_id=ingested.event_id,
        status="stored" if ingested.created else ("duplicate" if ingested.event_id else "ignored"),
        label_change=ingested.label_change,
    )
    # a label, or a skip, moves the annotators along the queue: the pre-annotated window follows
    moved = ingested.label_change or (ingested.created and ingested.action in events.SAVED_ACTIONS)
    if moved and ingested.project_id is not None and preannotate_window is not None:
        preannotation.nudge_queue(db, project_by_id(db, ingested.project_id), jobs, window=preannotate_window)
        db.commit()  # no transaction stays open across the broker calls below
    if ingested.event_id is None or ingested.project_id is None or ingested.enqueued:
        return receipt  # not ours, no job (no label changed), or a redelivery whose job is already queued
    return _enqueue(db, receipt, jobs=jobs, project_id=ingested.project_id, event_id=ingested.event_id)


def _enqueue(db: Session, receipt: Receipt, *, jobs: JobQueue, project_id: int, event_id: int) -> Receipt:
    """Send the stored event's job and remember that it reached the broker (committed)."""
    job: str | None
    try:
        if receipt.action == "START_TRAINING":
            job = jobs.enqueue(TaskName.START_TRAINING, project_id, event_id)
        else:  # one pending check per project covers every event stored before it starts
            job = jobs.enqueue_once(TaskName.RETRAIN_IF_DUE, project_id, event_id)
    except Exception as exc:  # the event is stored; the sweep re-sends it (backend.services.sweep)
        log.warning("event %s stored but not enqueued: %s", event_id, exc)
        return replace(receipt, queued=False)
    events.mark_enqueued(db, event_id)
    db.commit()
    return replace(receipt, queued=True, coalesced=job is None, job=job if receipt.action == "START_TRAINING" else None)
