"""The quality API: agreement between annotators per type, and the likely-mislabelled spans of the review pass."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import DbSession, JobsDep, get_app_settings, require_auth
from backend.ids import DbId
from backend.services import agreement, review
from backend.services.projects import project_by_id
from backend.settings import Settings

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)], tags=["quality"])


class TypeAgreementOut(BaseModel):
    """Agreement on one type (or ``micro``).

    Exact and partial span F1, each with its 95% bootstrap interval over tasks, and their support.
    """

    label: str
    f1: float | None = Field(description="exact span F1 between annotators (null: no span of the type)")
    partial_f1: float | None = Field(description="SemEval-2013 partial span F1 (an overlap counts half)")
    f1_interval: tuple[float, float] | None = Field(description="95% bootstrap interval of f1 (null: < 2 tasks)")
    partial_f1_interval: tuple[float, float] | None = Field(default=None, description="95% interval of partial_f1")
    spans: int = Field(description="the support: spans of the type both annotators of each pair drew")
    measurable: bool = Field(description="spans reach the minimum support")
    model_f1: float | None = Field(default=None, description="the serving version's test F1 (per type only)")
    ceiling: Literal["below", "allows", "uncertain", "not measurable"] | None = Field(
        default=None,
        description="the target against the agreement's 95% interval: below (all of it under the target: out of "
        "reach), allows (all of it at or above), uncertain (the target inside it); per type only",
    )
    ceiling_below_target: bool = Field(
        default=False, description="the whole 95% interval of the agreement lies below the target"
    )


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
    kind: Literal["missed", "spurious", "wrong_type", "wrong_boundary"] = Field(
        description="nervaluate's terms, the annotator's labels as the reference and the held-out model as the "
        "response: missed (a labelled span the model does not find: perhaps not an entity), spurious (an entity the "
        "model finds where nothing is labelled: perhaps left out), wrong_type, wrong_boundary"
    )
    confidence: float = Field(description="the held-out model's probability for its reading, in [0, 1]")
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


class ErrorOut(BaseModel):
    """An error answer (``backend.api.errors``): what went wrong and what to do."""

    error: str


_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no project with that id"}}


class ReviewQueued(BaseModel):
    """A review pass asked for."""

    project_id: int
    model_version: str
    queued: bool


@router.get("/projects/{project_id}/agreement", response_model=AgreementOut, responses=_NOT_FOUND)
def get_agreement(project_id: DbId, db: DbSession) -> AgreementOut:
    """Pairwise agreement between annotators per type, per pair and over all pairs.

    Exact and partial span F1 with intervals, beside the serving version's F1 and the target.
    """
    return AgreementOut.model_validate(agreement.agreement_summary(db, project_by_id(db, project_id)))


@router.get("/projects/{project_id}/review", response_model=ReviewOut, responses=_NOT_FOUND)
def get_review(project_id: DbId, db: DbSession, limit: Annotated[int, Query(ge=0, le=1000)] = 20) -> ReviewOut:
    """The latest review pass: likely-mislabelled spans per type and kind, and the most confident ones."""
    return ReviewOut.model_validate(review.review_summary(db, project_by_id(db, project_id), limit=limit))


@router.post(
    "/projects/{project_id}/review",
    status_code=202,
    response_model=ReviewQueued,
    responses={
        **_NOT_FOUND,
        422: {"model": ErrorOut, "description": "the project serves no model yet"},
        502: {"model": ErrorOut, "description": "the broker cannot be reached; ask again once it is back"},
    },
)
def post_review(
    project_id: DbId, db: DbSession, jobs: JobsDep, settings: Annotated[Settings, Depends(get_app_settings)]
) -> ReviewQueued:
    """Ask for the review pass of the serving version.

    Queued unless it is done or a live pass exists (queued recently, or running with a heartbeat); passes also follow
    promotions. ``queued`` says whether a job was sent.
    """
    version, wanted = review.request_review(
        db, project_by_id(db, project_id), jobs=jobs, heartbeat_timeout_s=settings.run_heartbeat_timeout_s
    )
    return ReviewQueued(project_id=project_id, model_version=version, queued=wanted)
