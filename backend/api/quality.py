"""The quality API: agreement between annotators per type, and the likely-mislabelled spans of the review pass."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from backend.adapters.jobs import TaskName
from backend.api.deps import DbSession, JobsDep, require_auth
from backend.db.ids import DbId
from backend.services import agreement, review
from backend.services.errors import InvalidInputError, UpstreamError
from backend.services.projects import current_model, project_by_id

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)], tags=["quality"])


class TypeAgreementOut(BaseModel):
    """Agreement on one type (or ``micro``): exact and partial span F1, 95% bootstrap interval, support."""

    label: str
    f1: float | None
    partial_f1: float | None
    f1_interval: tuple[float, float] | None
    spans: int
    measurable: bool
    model_f1: float | None = Field(default=None, description="the serving version's test F1 (per type only)")
    ceiling_below_target: bool = Field(default=False, description="measurable agreement below the target")


class PairAgreementOut(BaseModel):
    """Two annotators on the tasks both labelled."""

    a: str
    b: str
    tasks: int
    per_type: dict[str, TypeAgreementOut]
    micro: TypeAgreementOut


class AgreementOut(BaseModel):
    """``backend.services.agreement.agreement_summary``."""

    project_id: int
    target_f1: float
    model_version: str | None
    left_out: int
    labels: list[str]
    tasks: int
    annotators: list[str]
    per_type: dict[str, TypeAgreementOut]
    micro: TypeAgreementOut
    pairs: list[PairAgreementOut]
    bootstrap_samples: int
    min_support: int


class SpanOut(BaseModel):
    """A span: character offsets (end exclusive) and type."""

    start: int | None
    end: int | None
    label: str | None


class SuspectOut(BaseModel):
    """One likely-mislabelled span."""

    rank: int
    ls_task_id: int
    kind: str
    confidence: float
    labelled: SpanOut | None
    model: SpanOut | None
    text: str
    resolved: bool


class ReviewPassOut(BaseModel):
    """A stored review pass."""

    id: int
    model_version: str
    status: str
    docs: int
    suspects: int
    folds: int | None
    seconds: float | None
    finished_at: str | None


class ReviewAttemptOut(BaseModel):
    """The newest pass of any status."""

    id: int
    model_version: str
    status: str
    error: str | None


class ReviewViewOut(BaseModel):
    """Where a reviewer finds the suspects in Label Studio."""

    title: str
    prediction_model_version: str


class ReviewOut(BaseModel):
    """``backend.services.review.review_summary``."""

    model_config = ConfigDict(populate_by_name=True)

    project_id: int
    pass_: ReviewPassOut | None = Field(alias="pass")
    by_type: dict[str, int]
    by_kind: dict[str, int]
    top: list[SuspectOut]
    review_view: ReviewViewOut
    last_attempt: ReviewAttemptOut | None


class ReviewQueued(BaseModel):
    """A review pass asked for."""

    project_id: int
    model_version: str
    queued: bool


@router.get("/projects/{project_id}/agreement", response_model=AgreementOut)
def get_agreement(project_id: DbId, db: DbSession) -> AgreementOut:
    """Pairwise agreement between annotators per type (exact and partial span F1, intervals), per pair and over
    all pairs, beside the serving version's F1 and the target."""
    return AgreementOut.model_validate(agreement.agreement_summary(db, project_by_id(db, project_id)))


@router.get("/projects/{project_id}/review", response_model=ReviewOut)
def get_review(project_id: DbId, db: DbSession, limit: Annotated[int, Query(ge=0, le=1000)] = 20) -> ReviewOut:
    """The latest review pass: likely-mislabelled spans per type and kind, and the most confident ones."""
    return ReviewOut.model_validate(review.review_summary(db, project_by_id(db, project_id), limit=limit))


@router.post("/projects/{project_id}/review", status_code=202, response_model=ReviewQueued)
def post_review(project_id: DbId, db: DbSession, jobs: JobsDep) -> ReviewQueued:
    """Ask for the review pass of the serving version (a no-op once it is done; passes also follow promotions)."""
    project = project_by_id(db, project_id)
    serving = current_model(db, project)
    if serving is None:
        raise InvalidInputError(f"project {project_id} serves no model yet; a review pass follows the first promotion")
    done = review.pass_done(db, serving)
    if not done:
        try:
            jobs.enqueue(TaskName.REVIEW_LABELS, project_id, serving.id)
        except Exception as exc:
            raise UpstreamError(f"the broker is unreachable ({exc}); ask again once it is back") from None
    return ReviewQueued(project_id=project_id, model_version=serving.version, queued=not done)
