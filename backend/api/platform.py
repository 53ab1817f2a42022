"""The platform API: projects, routing tables and their overrides, LLM costs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select

from backend.api.deps import DbSession, JobsDep, get_app_settings, require_auth
from backend.api.schemas import (
    LLMCosts,
    ProjectOut,
    ProjectOverview,
    ProjectProgress,
    RetrainReply,
    Rollback,
    RollbackReply,
    RouteOverride,
    RoutingTable,
    RunSummary,
)
from backend.db.models import Project, TrainingRun
from backend.ids import DbId
from backend.services import operations, progress, training
from backend.services.projects import guide_of, project_by_id
from backend.services.routing import change_route, routing_table
from backend.settings import Settings

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])


@router.get("/projects")
def list_projects(db: DbSession) -> list[ProjectOut]:
    """Every registered project."""
    return [
        ProjectOut(
            id=p.id,
            ls_project_id=p.ls_project_id,
            name=p.name,
            labels=guide_of(p).labels,
            current_version=p.current_version,
            retrain_threshold=p.retrain_threshold,
        )
        for p in db.scalars(select(Project).order_by(Project.id))
    ]


@router.get("/overview")
def get_overview(db: DbSession) -> list[ProjectOverview]:
    """Every project in one line.

    Labels, serving version, types at the target F1, newest run (the dashboard's overview).
    """
    return [ProjectOverview.model_validate(item) for item in progress.projects_overview(db)]


@router.get("/projects/{project_id}/routing")
def get_routing(project_id: DbId, db: DbSession) -> RoutingTable:
    """The routing table: per type its route, why, and the F1 it is based on."""
    project = project_by_id(db, project_id)
    return RoutingTable.model_validate(
        {
            "project_id": project_id,
            "model_version": project.current_version,
            "routes": [asdict(entry) for entry in routing_table(db, project).values()],
        }
    )


@router.put("/projects/{project_id}/routing/{label}")
def put_routing(project_id: DbId, label: str, body: RouteOverride, db: DbSession) -> RoutingTable:
    """Route one type by hand (``model`` / ``llm``) or back to the computed route (``auto``)."""
    project = project_by_id(db, project_id)
    change_route(db, project, label=label, route=body.route)
    return get_routing(project_id, db)


@router.get("/projects/{project_id}/llm-costs")
def get_llm_costs(project_id: DbId, db: DbSession) -> LLMCosts:
    """What LLM pre-annotation has cost: calls, tokens, dollars, dropped entities, per 1,000 documents."""
    return LLMCosts.model_validate(progress.llm_costs(db, project_by_id(db, project_id)))


@router.get("/projects/{project_id}/progress")
def get_progress(project_id: DbId, db: DbSession) -> ProjectProgress:
    """The dashboard's data: labels per type, F1 per version, forecasts, throughput, costs, runs, routing."""
    return ProjectProgress.model_validate(progress.project_progress(db, project_by_id(db, project_id)))


@router.post("/projects/{project_id}/retrain", status_code=202)
def post_retrain(project_id: DbId, db: DbSession, jobs: JobsDep) -> RetrainReply:
    """Start a training run at the current label watermark (a no-op if it exists); poll ``/api/runs/{id}``."""
    run, created = operations.retrain_now(db, project_by_id(db, project_id), jobs=jobs, trigger="api")
    return RetrainReply.model_validate({"created": created, "run": training.run_summary(run)})


@router.get("/projects/{project_id}/runs")
def get_runs(project_id: DbId, db: DbSession) -> list[RunSummary]:
    """A project's training runs, newest first."""
    project_by_id(db, project_id)
    rows = db.scalars(select(TrainingRun).where(TrainingRun.project_id == project_id).order_by(TrainingRun.id.desc()))
    return [RunSummary.model_validate(training.run_summary(run)) for run in rows]


@router.get("/runs/{run_id}")
def get_run(run_id: DbId, db: DbSession) -> RunSummary:
    """One run: status, stage, progress, ETA, error, the promotion decision."""
    return RunSummary.model_validate(training.run_summary(training.run_by_id(db, run_id)))


@router.post("/projects/{project_id}/rollback")
def post_rollback(
    project_id: DbId,
    body: Rollback,
    db: DbSession,
    jobs: JobsDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
) -> RollbackReply:
    """Serve an earlier version again."""
    project = project_by_id(db, project_id)
    rescore = settings.label_studio.api_key is not None  # rescoring pushes to Label Studio
    operations.roll_back(db, project, version=body.version, jobs=jobs, rescore=rescore)
    return RollbackReply(project_id=project_id, current_version=project.current_version)
