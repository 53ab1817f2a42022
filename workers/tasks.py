"""Celery tasks: thin, idempotent, ids as payload. They call ``backend.services``, never the web layer."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from celery import Task, shared_task
from sqlalchemy.orm import Session, sessionmaker

from backend.adapters.compare_llm import endpoint_from_settings
from backend.adapters.jobs import CeleryJobQueue
from backend.adapters.label_studio import LabelStudioGateway
from backend.adapters.llm import OpenAIChatClient
from backend.adapters.models import ModelRegistry
from backend.db.models import Project
from backend.db.session import make_engine, session_factory, session_scope
from backend.errors import UpstreamError, UpstreamRefusedError
from backend.ports import TaskName
from backend.services import comparison, review, scoring, training
from backend.services.label_state import StoredLabelsSource
from backend.services.llm_annotation import LLMAnnotator
from backend.services.predictions import Predictor
from backend.services.projects import project_by_id
from backend.services.run_liveness import expire_stale_runs
from backend.settings import Settings
from workers.celery_app import LONGEST_ACKS_LATE_TASK_S

log = logging.getLogger(__name__)


# Label Studio pushes: redelivered if the worker dies, retried with backoff while Label Studio is unreachable
# (both tasks are resumable: what was pushed is recorded and updated, never pushed twice)
_RESUMABLE: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (UpstreamError,),
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 5,
}


def _settings(task: Task) -> Settings:
    settings: Settings = task.app.conf.nerloop_settings
    return settings


@lru_cache(maxsize=4)
def _sessions(url: str) -> sessionmaker[Session]:
    return session_factory(make_engine(url))


def _source(settings: Settings) -> Any:
    """Label Studio when it is configured, else the stored webhook events."""
    if settings.label_studio.api_key is not None:
        gateway = LabelStudioGateway(settings.label_studio)
        return lambda db, project: gateway
    return lambda db, project: StoredLabelsSource(db, project)


@shared_task(
    bind=True,
    name=TaskName.RETRAIN_IF_DUE,
    acks_late=True,
    autoretry_for=(UpstreamError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def retrain_if_due(self: Task, project_id: int, event_id: int | None = None) -> int | None:
    """Start a training run when the label changes reach the threshold. Safe to redeliver: one run per watermark.

    Coalesced per project (``JobQueue.enqueue_once``): the pending marker goes before the labels are read.
    """
    settings = _settings(self)
    CeleryJobQueue(settings.redis_url).started(TaskName.RETRAIN_IF_DUE, project_id)
    with session_scope(_sessions(settings.database_url)) as db:
        project = project_by_id(db, project_id)
        expire_stale_runs(db, timeout_s=settings.run_heartbeat_timeout_s, project=project)
        run = training.retrain_if_due(db, project)
        run_id = run.id if run is not None else None
    if run_id is not None:
        CeleryJobQueue(settings.redis_url).enqueue(TaskName.TRAIN_RUN, run_id)
    return run_id


@shared_task(
    bind=True,
    name=TaskName.START_TRAINING,
    acks_late=True,
    autoretry_for=(UpstreamError,),
    retry_backoff=True,
    max_retries=5,
)
def start_training(self: Task, project_id: int, event_id: int | None = None) -> int:
    """Label Studio's "Start Training" button (or the CLI/API): a run at the current watermark."""
    settings = _settings(self)
    with session_scope(_sessions(settings.database_url)) as db:
        project = project_by_id(db, project_id)
        expire_stale_runs(db, timeout_s=settings.run_heartbeat_timeout_s, project=project)
        run, created = training.manual_run(db, project, trigger="button")
        run_id = run.id
    if created:
        CeleryJobQueue(settings.redis_url).enqueue(TaskName.TRAIN_RUN, run_id)
    return run_id


@shared_task(
    bind=True,
    name=TaskName.TRAIN_RUN,
    # Acknowledged when it starts, not when it ends. The run row, not the message, is what must survive: the claim
    # (queued -> running, atomic) makes a second message for a run a no-op, a run whose process dies stops beating
    # and is failed within NER_RUN_HEARTBEAT_TIMEOUT_S (and retried by the next label event or request), and a
    # queued run whose message is lost is re-sent by the sweep within minutes. A message held unacknowledged for
    # the whole training would instead sit in Redis's unacked set for the visibility timeout (hours) when the
    # worker's main process dies, and the visibility timeout would have to exceed the longest training.
    # Never re-queued when the worker dies either (an out-of-memory kill would loop forever).
    # Time limits come from NER_TRAIN_TIME_LIMIT_S (celery_app.task_annotations).
    acks_late=False,
    reject_on_worker_lost=False,
    max_retries=0,
)
def train_run(self: Task, run_id: int) -> str:
    """Train, evaluate and promote (or refuse). A finished run is not trained again on redelivery."""
    settings = _settings(self)
    outcome = training.Trainer(_sessions(settings.database_url), settings, _source(settings)).run(run_id)
    log.info("run %s: %s (%s)", run_id, outcome.status, outcome.decision.reason if outcome.decision else "")
    if outcome.status == "succeeded":
        with session_scope(_sessions(settings.database_url)) as db:
            project_id = training.run_by_id(db, run_id).project_id
        if settings.label_studio.api_key is not None:
            CeleryJobQueue(settings.redis_url).enqueue(TaskName.SCORE_POOL, project_id)
        with session_scope(_sessions(settings.database_url)) as db:
            due = review.review_due(db, run_id, enabled=settings.review.enabled)
        if due is not None:  # likely-mislabelled spans of the promoted version (issue #15)
            CeleryJobQueue(settings.redis_url).enqueue(TaskName.REVIEW_LABELS, *due)
    return outcome.status


@shared_task(
    bind=True,
    name=TaskName.REVIEW_LABELS,
    # acknowledged when it ends (a pass is resumable: stored suspects are only pushed again), never re-queued when
    # the worker dies (an out-of-memory kill would loop); limits under the visibility timeout
    acks_late=True,
    reject_on_worker_lost=False,
    # Label Studio away: retried with backoff (the suspects stay stored); a refusal (4xx, UpstreamRefusedError) would
    # be refused again: the pass is failed instead, with the reason
    autoretry_for=(UpstreamError,),
    dont_autoretry_for=(UpstreamRefusedError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
    soft_time_limit=40 * 60,
    time_limit=41 * 60,
)
def review_labels(self: Task, project_id: int, model_version_id: int) -> str:
    """The cross-validated review pass of a promoted version.

    Store its likely-mislabelled spans and push them to Label Studio's review tab. Once per version; a redelivery finds
    it done.
    """
    settings = _settings(self)
    sink = LabelStudioGateway(settings.label_studio) if settings.label_studio.api_key is not None else None
    try:
        outcome = review.run_review(
            _sessions(settings.database_url),
            settings,
            project_id=project_id,
            model_version_id=model_version_id,
            sink=sink,
        )
    finally:
        if sink is not None:
            sink.close()
    log.info(
        "project %s review: %s, %s suspects, %s tasks pushed",
        project_id,
        outcome.status,
        outcome.suspects,
        outcome.pushed,
    )
    return outcome.status


@shared_task(
    bind=True,
    name=TaskName.SCORE_POOL,
    **_RESUMABLE,
    soft_time_limit=30 * 60,
)
def score_pool(self: Task, project_id: int) -> int:
    """Rescore the unlabelled pool with the serving version and push the predictions.

    Safe to re-run: each task keeps one prediction per version. Hands the LLM-routed types to the ``llm`` queue.
    """
    settings = _settings(self)
    with LabelStudioGateway(settings.label_studio) as gateway, session_scope(_sessions(settings.database_url)) as db:
        project: Project = project_by_id(db, project_id)
        predictor = Predictor(ModelRegistry(), _annotator(settings), max_text_chars=settings.max_text_chars)
        done = scoring.rescore(
            db,
            project,
            gateway,
            predictor,
            batch_size=settings.batch_size,
            dev_fraction=settings.dev_fraction,
            held_out_share=settings.held_out_share,
            sampling_seed=settings.sampling_seed,
        )
    log.info("project %s: %s predictions of %s, %s await the LLM", project_id, done.tasks, done.tag, done.awaiting_llm)
    if done.awaiting_llm and settings.llm_preannotate_max:
        CeleryJobQueue(settings.redis_url).enqueue_once(TaskName.LLM_PREANNOTATE, project_id)
    return done.tasks


@shared_task(
    bind=True,
    name=TaskName.LLM_PREANNOTATE,
    **_RESUMABLE,
    soft_time_limit=LONGEST_ACKS_LATE_TASK_S,
)
def llm_preannotate(self: Task, project_id: int) -> int:
    """Keep NER_LLM_PREANNOTATE_MAX tasks ahead of the annotators complete, LLM-routed types included.

    Also complete the tasks ``/predict`` answered ``~llm-pending`` (``scoring.llm_pass``). Each task is committed when
    done: a retry or a redelivery continues where the last attempt stopped. Coalesced per project.
    """
    settings = _settings(self)
    CeleryJobQueue(settings.redis_url).started(TaskName.LLM_PREANNOTATE, project_id)
    with LabelStudioGateway(settings.label_studio) as gateway, session_scope(_sessions(settings.database_url)) as db:
        done = scoring.llm_pass(
            db, project_by_id(db, project_id), gateway, _annotator(settings), limit=settings.llm_preannotate_max
        )
    log.info("project %s: the LLM pre-annotated %s tasks", project_id, done)
    return done


@shared_task(
    bind=True,
    name=TaskName.COMPARE_PROJECT,
    # like train_run: acknowledged when it starts and never re-queued when the worker dies (an out-of-memory kill
    # would loop); the comparison row is the durable record, and asking again runs one whose process went silent
    acks_late=False,
    reject_on_worker_lost=False,
    max_retries=0,
)
def compare_project(self: Task, comparison_id: int) -> str:
    """Prompting vs fine-tuning on a project's own labels with its LLM (``backend.services.comparison``).

    A comparison that ended or that another process runs is left alone on redelivery.
    """
    settings = _settings(self)
    status = comparison.run_comparison(
        _sessions(settings.database_url),
        settings,
        comparison_id,
        source=_source(settings),
        llm=endpoint_from_settings(settings.llm),
    )
    log.info("comparison %s: %s", comparison_id, status)
    return status


_annotators: dict[str, LLMAnnotator] = {}


def _annotator(settings: Settings) -> LLMAnnotator:
    """One annotator per worker process (made after the fork).

    Its threads and demonstration indexes are kept from one task to the next.
    """
    key = settings.database_url + settings.llm.model_dump_json()
    if key not in _annotators:
        _annotators[key] = LLMAnnotator(OpenAIChatClient(settings.llm), settings.llm, _sessions(settings.database_url))
    return _annotators[key]
