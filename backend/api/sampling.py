"""The platform API for a project's sampling strategy and the record of its rescorings."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import DbSession, require_auth
from backend.ids import DbId
from backend.services import sampling
from backend.services.projects import project_by_id
from ml.sampling_strategy import MEASURES, Measure, Representation, SamplingStrategy

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


class RescoringOut(BaseModel):
    """One rescoring (``backend.services.sampling.rescorings``).

    The serving version, the strategy it ran with (and that strategy in one line), the doc vectors of its diversity term
    (``tok2vec-mean``, ``encoder-mean``, ``minilm`` or ``none``), the unlabelled pool's size, the chosen batch (Label
    Studio task ids, best first) and when (ISO 8601, UTC).
    """

    id: int
    model_version: str
    strategy: SamplingStrategy
    described: str
    representation: str
    pool: int
    batch: list[int]
    created_at: str


class SamplingOut(BaseModel):
    """A project's sampling strategy, that strategy in one line, the measures it may use, its last rescoring."""

    project_id: int
    strategy: SamplingStrategy
    described: str
    measures: list[Measure]
    last_rescoring: RescoringOut | None


def _answer(project_id: int, db: DbSession) -> SamplingOut:
    project = project_by_id(db, project_id)
    strategy = sampling.strategy_of(project)
    last = next(iter(sampling.rescorings(db, project, limit=1)), None)
    return SamplingOut(
        project_id=project_id,
        strategy=strategy,
        described=strategy.describe(),
        measures=list(MEASURES),
        last_rescoring=None if last is None else RescoringOut.model_validate(last),
    )


@router.get("/projects/{project_id}/sampling", response_model=SamplingOut)
def get_sampling(project_id: DbId, db: DbSession) -> SamplingOut:
    """The project's sampling strategy, and the last rescoring with the strategy it ran with."""
    return _answer(project_id, db)


@router.put(
    "/projects/{project_id}/sampling",
    response_model=SamplingOut,
    responses={422: {"description": "an unknown field, a bad value or a weight for a type the guide lacks (named)"}},
)
def put_sampling(project_id: DbId, body: StrategyChange, db: DbSession) -> SamplingOut:
    """Change the strategy; the next rescoring (after the next promotion) uses it."""
    sampling.change_strategy(db, project_by_id(db, project_id), body.model_dump(exclude_unset=True))
    return _answer(project_id, db)


@router.get("/projects/{project_id}/rescorings", response_model=list[RescoringOut])
def get_rescorings(project_id: DbId, db: DbSession) -> list[RescoringOut]:
    """The latest rescorings, newest first: version, strategy, doc vectors, pool size, batch (task ids)."""
    return [RescoringOut.model_validate(r) for r in sampling.rescorings(db, project_by_id(db, project_id))]
