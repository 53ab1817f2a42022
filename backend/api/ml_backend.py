"""The Label Studio ML backend protocol, as Label Studio 1.23 speaks it (shared/docs/label-studio.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from backend.adapters.jobs import TaskName
from backend.api.deps import DbSession, JobsDep, PredictorDep, get_app_settings, require_auth
from backend.api.schemas import PredictRequest, SetupRequest, ls_project_id
from backend.db.models import ModelVersion, Project
from backend.services import annotations as events
from backend.services.errors import InvalidInputError
from backend.services.predictions import Plan, Predictor, TaskInput, version_tag
from backend.services.projects import guide_of, project_by_ls_id
from backend.services.routing import routing_table
from backend.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter()
protected = APIRouter(dependencies=[Depends(require_auth)])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness (Label Studio gives it 1 s): answered on the event loop, never queued behind busy threads."""
    return {"status": "UP", "model_class": "nerloop"}


@protected.post("/setup")
def setup(body: SetupRequest, db: DbSession) -> dict[str, str]:
    """Answer with the model version; reads two rows, never loads a model (3 s limit)."""
    project = project_by_ls_id(db, _project_id(body.project))
    return {"model_version": version_tag(project, routing_table(db, project))}


@protected.post("/predict")
async def predict(
    body: PredictRequest,
    db: DbSession,
    predictor: PredictorDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
) -> dict[str, list[dict[str, Any]]]:
    """All tasks in one batch; exactly one prediction per task, in order. A task without text (``data`` lacks
    the guide's ``label_studio.text_field``) gets an empty prediction, so one odd task does not cost the others
    theirs; when no task has it, the project is set up wrong: 422 naming the field.

    The database is read first and the session released; the model runs in a worker thread while the LLM part
    runs in the LLM's own threads, waited for at most ``NER_LLM__PREDICT_WAIT_S`` without holding a thread. A
    slow LLM costs only its types (tag ``~llm-missing``), a model that cannot be loaded only the model's
    (``~model-missing``); neither ever holds a database connection.
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
                "predict: the LLM did not answer within %.0f s; answered without it", settings.llm.predict_wait_s
            )
    _, results = predictor.assemble(plan, model, llm)
    return {"results": results}


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


@protected.post("/webhook")
def webhook(
    db: DbSession,
    jobs: JobsDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
    body: Any = Body(...),  # noqa: B008
) -> dict[str, Any]:
    """Persist the event once and enqueue its job by id; reply at once (Label Studio waits 1 s)."""
    if not isinstance(body, dict):
        raise InvalidInputError("webhook body must be a JSON object")
    ingested = events.ingest(db, body, max_text_chars=settings.max_text_chars)
    db.commit()
    reply: dict[str, Any] = {
        "action": ingested.action,
        "event_id": ingested.event_id,
        "status": "stored" if ingested.created else ("duplicate" if ingested.event_id else "ignored"),
        "label_change": ingested.label_change,
    }
    if ingested.event_id is None or ingested.project_id is None or ingested.enqueued:
        return reply  # not ours, no job (no label changed), or a redelivery whose job is already queued
    name = TaskName.START_TRAINING if ingested.action == "START_TRAINING" else TaskName.RETRAIN_IF_DUE
    try:
        job = jobs.enqueue(name, ingested.project_id, ingested.event_id)
    except Exception as exc:  # the event is stored; the sweep re-sends it (backend.services.sweep)
        log.warning("event %s stored but not enqueued: %s", ingested.event_id, exc)
        reply["queued"] = False
        return reply
    events.mark_enqueued(db, ingested.event_id)
    db.commit()
    reply["queued"] = True
    if ingested.action == "START_TRAINING":
        reply["job"] = job
    return reply


@protected.get("/versions")
def versions(db: DbSession, project: str | None = None) -> dict[str, list[str]]:
    """Model versions (of one project when ``project`` is given), oldest first."""
    query = select(ModelVersion.version).order_by(ModelVersion.id)
    pid = ls_project_id(project)
    if pid is not None:
        query = query.join(Project, Project.id == ModelVersion.project_id).where(Project.ls_project_id == pid)
    return {"versions": list(db.scalars(query))}


def _project_id(value: str | int | None) -> int:
    pid = ls_project_id(value)
    if pid is None:
        raise InvalidInputError("'project' must be Label Studio's '<id>.<timestamp>' or an id")
    return pid
