"""The Label Studio ML backend protocol, as Label Studio 1.23 speaks it (shared/docs/label-studio.md)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Body, Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from backend.api.deps import DbSession, JobsDep, PredictorDep, get_app_settings, require_auth
from backend.api.schemas import (
    Health,
    PredictReply,
    PredictRequest,
    SetupReply,
    SetupRequest,
    Versions,
    WebhookReply,
    ls_project_id,
)
from backend.db.models import ModelVersion, Project
from backend.errors import InvalidInputError
from backend.ports import JobQueue
from backend.services import ingestion, preannotation
from backend.services.predictions import ModelPart, Plan, Predictor, TaskInput, version_tag
from backend.services.projects import guide_of, project_by_id, project_by_ls_id
from backend.services.routing import routing_table
from backend.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter()
protected = APIRouter(dependencies=[Depends(require_auth)])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness (Label Studio gives it 1 s): answered on the event loop, never queued behind busy threads."""
    return Health(status="UP", model_class="nerloop")


@protected.post("/setup", response_model=SetupReply)
def setup(
    body: SetupRequest,
    db: DbSession,
    jobs: JobsDep,
    predictor: PredictorDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
) -> SetupReply:
    """Answer with the model version; reads a few rows, never loads a model (3 s limit).

    Label Studio calls it when the backend is connected (a project created or attached) and at each refresh:
    when the pre-annotated window ahead of the annotators is not full, the LLM pass is enqueued (coalesced).
    """
    project = project_by_ls_id(db, _project_id(body.project))
    tag = version_tag(project, routing_table(db, project))
    _follow_queue(db, project, jobs, predictor, settings)
    return SetupReply(model_version=tag)


def _preannotates(predictor: Predictor, settings: Settings) -> bool:
    """Whether the ``llm`` queue can pre-annotate: an LLM, a window, and a Label Studio token to push with."""
    return predictor.llm is not None and settings.llm_preannotate_max > 0 and settings.label_studio.api_key is not None


def _follow_queue(db: Session, project: Project, jobs: JobQueue, predictor: Predictor, settings: Settings) -> None:
    """Enqueue the project's LLM pass when it is due; never fails the request (the next trigger tries again)."""
    if _preannotates(predictor, settings):
        preannotation.nudge_queue(db, project, jobs, window=settings.llm_preannotate_max)


@protected.post("/predict", response_model=PredictReply)
async def predict(
    body: PredictRequest,
    db: DbSession,
    predictor: PredictorDep,
    jobs: JobsDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
) -> PredictReply:
    """All tasks in one batch; exactly one prediction per task, in order.

    A task without text (``data`` lacks the guide's ``label_studio.text_field``) gets an empty prediction, so one odd
    task does not cost the others theirs; when no task has it, the project is set up wrong: 422 naming the field.

    The database is read first and the session released; the model runs in a worker thread while the LLM part
    runs in the LLM's own threads, waited for at most ``NER_LLM__PREDICT_WAIT_S`` without holding a thread. A
    slow LLM costs only its types, a model that cannot be loaded only the model's (``~model-missing``); neither
    ever holds a database connection. The LLM part of an answer without it comes later: the tasks are queued
    for the ``llm`` queue, which updates their Label Studio prediction in place (tag ``~llm-pending``;
    ``~llm-missing`` when it cannot, e.g. no Label Studio token or no broker).
    """
    plan = await run_in_threadpool(_plan, db, body, predictor)
    deadline = time.monotonic() + settings.llm.predict_wait_s
    job = predictor.start_llm(plan, deadline=deadline)
    model = await run_in_threadpool(predictor.model_part, plan)
    llm = None
    if job is not None:
        try:
            llm = await asyncio.wait_for(asyncio.wrap_future(job), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            log.warning(
                "predict: the LLM did not answer within %.1f s; answered without it", settings.llm.predict_wait_s
            )
            if _defers(plan, model, predictor, settings):
                _, results = predictor.assemble(plan, model, None, llm_pending=True)
                if await run_in_threadpool(_defer_llm_part, db, plan, results, jobs):
                    return PredictReply.model_validate({"results": results})
    _, results = predictor.assemble(plan, model, llm)
    return PredictReply.model_validate({"results": results})


def _defers(plan: Plan, model: ModelPart, predictor: Predictor, settings: Settings) -> bool:
    """Whether the LLM part of an answer without it can come later.

    The ``llm`` queue pre-annotates, and the model part is the serving version's (the pass completes that version's
    predictions).
    """
    return (
        _preannotates(predictor, settings)
        and model.missing is None
        and model.version == plan.project.current_version
        and any(task.task_id is not None and task.text for task in plan.tasks)
    )


def _defer_llm_part(db: Session, plan: Plan, results: list[dict[str, Any]], jobs: JobQueue) -> bool:
    """Record the tasks answered ``~llm-pending`` and enqueue the LLM pass (coalesced).

    False when either failed (the answer then says ``~llm-missing``).
    """
    try:
        project = project_by_id(db, plan.project.id)
        tag = version_tag(project, plan.routes, serving=plan.project.current_version)
        tasks = [
            (task.task_id, result)
            for task, result in zip(plan.tasks, results, strict=True)
            if task.task_id is not None and task.text
        ]
        preannotation.defer_llm_part(db, project, tag=tag, tasks=tasks, jobs=jobs)
        return True
    except Exception as exc:  # the broker or the database is away: answered without the LLM part, as before
        log.warning("predict: the LLM part of %s tasks cannot be queued: %s", len(plan.tasks), exc)
        return False
    finally:
        db.close()


def _plan(db: Session, body: PredictRequest, predictor: Predictor) -> Plan:
    """The prediction's database reads, in one short transaction; the session is closed after them."""
    try:
        project = project_by_ls_id(db, _project_id(body.project))
        field = guide_of(project).label_studio.text_field
        texts = [task.data.get(field) for task in body.tasks]
        if texts and not any(isinstance(text, str) for text in texts):
            raise InvalidInputError(
                f"tasks.0.data.{field} must be a string: no task holds data.{field} "
                "(the guide's label_studio.text_field)"
            )
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                log.warning("predict: task %s has no data.%s; it gets an empty prediction", body.tasks[index].id, field)
        tasks = [
            TaskInput(task.id, text if isinstance(text, str) else "")
            for task, text in zip(body.tasks, texts, strict=True)
        ]
        regions = body.params.context.get("result") if body.params.context else None
        return predictor.plan(db, project, tasks, context=[dict(region) for region in regions] if regions else None)
    finally:
        db.close()  # the connection goes back to the pool before any model or LLM work


@protected.post("/webhook", response_model=WebhookReply, response_model_exclude_unset=True)
async def webhook(
    request: Request,
    jobs: JobsDep,
    predictor: PredictorDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
    body: Any = Body(...),  # noqa: B008
) -> WebhookReply:
    """Persist the event once and enqueue its job by id; reply at once (Label Studio waits 1 s).

    Retrain checks are coalesced: while one is pending for the project, the event is covered by it
    (``"coalesced": true``). A label change also moves the LLM pre-annotation window along the queue.

    At most ``NER_WEBHOOK_CONCURRENCY`` webhooks are applied at once, each in a worker thread; the others wait
    on the event loop, holding no thread, so a burst leaves the threads of ``/predict`` and the platform API
    alone, and the few threads at work do not convoy on the interpreter lock and the project's row lock. The
    session is opened and closed in that one thread (no other thread hop per webhook).
    """
    limiter: anyio.CapacityLimiter = request.app.state.webhook_limiter
    call = functools.partial(
        _webhook, request.app.state.sessions, body, jobs=jobs, predictor=predictor, settings=settings
    )
    return await anyio.to_thread.run_sync(call, limiter=limiter)


def _webhook(
    sessions: Callable[[], Session], body: Any, *, jobs: JobQueue, predictor: Predictor, settings: Settings
) -> WebhookReply:
    window = settings.llm_preannotate_max if _preannotates(predictor, settings) else None
    with sessions() as db:
        receipt = ingestion.receive_event(
            db,
            body,
            jobs=jobs,
            max_text_chars=settings.max_text_chars,
            preannotate_window=window,
            heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
        )
    applies: dict[str, Any] = {}  # the optional keys appear only when they apply (unset fields are left out)
    if receipt.queued is not None:
        applies["queued"] = receipt.queued
    if receipt.coalesced:
        applies["coalesced"] = True
    if receipt.job is not None:  # a START_TRAINING event's job
        applies["job"] = receipt.job
    return WebhookReply(
        action=receipt.action,
        event_id=receipt.event_id,
        status=receipt.status,
        label_change=receipt.label_change,
        **applies,
    )


@protected.get("/versions", response_model=Versions)
def versions(db: DbSession, project: str | None = None) -> Versions:
    """Model versions (of one project when ``project`` is given), oldest first."""
    query = select(ModelVersion.version).order_by(ModelVersion.id)
    pid = ls_project_id(project)
    if pid is not None:
        query = query.join(Project, Project.id == ModelVersion.project_id).where(Project.ls_project_id == pid)
    return Versions(versions=list(db.scalars(query)))


def _project_id(value: str | int | None) -> int:
    pid = ls_project_id(value)
    if pid is None:
        raise InvalidInputError("'project' must be Label Studio's '<id>.<timestamp>' or an id")
    return pid
