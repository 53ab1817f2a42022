"""The platform API for a project's sampling strategy and the record of its rescorings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import DbSession, require_auth
from backend.db.ids import DbId
from backend.services import sampling
from backend.services.errors import InvalidInputError
from backend.services.projects import project_by_id
from ml.sampling_strategy import MEASURES, Measure, Representation

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])


class StrategyChange(BaseModel):
    """The fields to change (the others keep their values); ``diversity_weight: null`` is modAL's trade-off."""

    model_config = ConfigDict(extra="forbid")

    measure: Measure | None = None
    diversity: bool | None = None
    diversity_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    representation: Representation | None = None
    type_weights: bool | None = None
    weights: dict[str, float] | None = None


def _answer(project_id: int, db: DbSession) -> dict[str, Any]:
    project = project_by_id(db, project_id)
    strategy = sampling.strategy_of(project)
    return {
        "project_id": project_id,
        "strategy": strategy.model_dump(),
        "described": strategy.describe(),
        "measures": list(MEASURES),
        "last_rescoring": next(iter(sampling.rescorings(db, project, limit=1)), None),
    }


@router.get("/projects/{project_id}/sampling")
def get_sampling(project_id: DbId, db: DbSession) -> dict[str, Any]:
    """The project's sampling strategy, and the last rescoring with the strategy it ran with."""
    return _answer(project_id, db)


@router.put("/projects/{project_id}/sampling")
def put_sampling(project_id: DbId, body: StrategyChange, db: DbSession) -> dict[str, Any]:
    """Change the strategy; the next rescoring (after the next promotion) uses it."""
    project = project_by_id(db, project_id)
    changes = body.model_dump(exclude_unset=True)
    null = sorted(k for k, v in changes.items() if v is None and k != "diversity_weight")
    if null:
        raise InvalidInputError(f"sampling strategy: {', '.join(null)} cannot be null; leave it out to keep it")
    sampling.set_strategy(db, project, changes)
    db.commit()
    return _answer(project_id, db)


@router.get("/projects/{project_id}/rescorings")
def get_rescorings(project_id: DbId, db: DbSession) -> list[dict[str, Any]]:
    """The latest rescorings, newest first: version, strategy, doc vectors, pool size, batch (task ids)."""
    return sampling.rescorings(db, project_by_id(db, project_id))
