"""The platform API: projects, routing tables and their overrides, LLM costs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import func, select

from backend.api.deps import DbSession, require_auth
from backend.api.schemas import RouteOverride
from backend.db.models import LLMCall, Project
from backend.services.projects import guide_of, project_by_id
from backend.services.routing import routing_table, set_override

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])


@router.get("/projects")
def list_projects(db: DbSession) -> list[dict[str, Any]]:
    """Every registered project."""
    return [
        {
            "id": p.id,
            "ls_project_id": p.ls_project_id,
            "name": p.name,
            "labels": guide_of(p).labels,
            "current_version": p.current_version,
            "retrain_threshold": p.retrain_threshold,
        }
        for p in db.scalars(select(Project).order_by(Project.id))
    ]


@router.get("/projects/{project_id}/routing")
def get_routing(project_id: int, db: DbSession) -> dict[str, Any]:
    """The routing table: per type its route, why, and the F1 it is based on."""
    project = project_by_id(db, project_id)
    return {
        "project_id": project_id,
        "model_version": project.current_version,
        "routes": [asdict(entry) for entry in routing_table(db, project).values()],
    }


@router.put("/projects/{project_id}/routing/{label}")
def put_routing(project_id: int, label: str, body: RouteOverride, db: DbSession) -> dict[str, Any]:
    """Route one type by hand (``model`` / ``llm``) or back to the computed route (``auto``)."""
    project = project_by_id(db, project_id)
    set_override(db, project, label=label, route=body.route)
    db.commit()
    return get_routing(project_id, db)


@router.get("/projects/{project_id}/llm-costs")
def llm_costs(project_id: int, db: DbSession) -> dict[str, Any]:
    """What LLM pre-annotation has cost: calls, tokens, dollars, dropped entities."""
    project_by_id(db, project_id)
    calls, prompt, completion, cost, dropped = db.execute(
        select(
            func.count(),
            func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
            func.coalesce(func.sum(LLMCall.completion_tokens), 0),
            func.coalesce(func.sum(LLMCall.cost_usd), 0.0),
            func.coalesce(func.sum(LLMCall.dropped), 0),
        ).where(LLMCall.project_id == project_id)
    ).one()
    return {
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": float(cost),
        "dropped_entities": dropped,
    }
