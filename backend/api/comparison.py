"""The platform API of a project's prompting-vs-fine-tuning comparison (issue #13): start one, read the latest."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, Field

from backend.api.deps import DbSession, JobsDep, get_app_settings, require_auth
from backend.ids import DbId
from backend.services import comparison
from backend.services.projects import project_by_id
from backend.settings import Settings

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])


class ComparisonState(BaseModel):
    """A comparison's state (``backend.services.comparison.summary``); times are ISO 8601 in UTC."""

    id: int
    project_id: int
    label_watermark: int = Field(description="the project's labels it compares on")
    status: Literal["queued", "running", "succeeded", "failed"]
    stage: str = Field(description="the part under way (e.g. 'train cnn on 100 docs'), 'done' at the end")
    progress: float = Field(ge=0.0, le=1.0, description="share of the parts done")
    error: str | None = Field(description="why it failed")
    options: dict[str, Any] = Field(description="what it runs (ComparisonOptions)")
    created_at: str
    started_at: str | None
    finished_at: str | None


class ComparisonStarted(BaseModel):
    """The answer to a request for a comparison."""

    created: bool = Field(description="a job was sent (new, or asked again); false: the existing one is shown")
    comparison: ComparisonState


class LatestComparison(ComparisonState):
    """The newest comparison's state, and the figures of the newest that succeeded."""

    result: dict[str, Any] | None = Field(
        description="null until one succeeded; else the report's data (ml.compare_report.to_dict: rows with exact "
        "and partial F1 and 95% intervals, per type, latency, throughput, tokens, cost per 1,000 docs, training "
        "and labelling costs, break-even volumes, overtake labels, prices and rates) with comparison_id, "
        "label_watermark, finished_at, seconds_per_label_source and report_dir"
    )


@router.post(
    "/projects/{project_id}/comparison",
    status_code=202,
    response_model=ComparisonStarted,
    responses={
        409: {"description": "a comparison of these labels is queued or running with other options"},
        422: {"description": "an option out of bounds (the message names it), or a project without labels"},
        502: {"description": "the broker cannot be reached (the comparison is recorded failed; ask again)"},
    },
)
def post_comparison(
    project_id: DbId,
    db: DbSession,
    jobs: JobsDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
    options: Annotated[comparison.ComparisonOptions | None, Body()] = None,
) -> dict[str, Any]:
    """Compare prompting with fine-tuning on the project's labels (the ``train`` queue runs it).

    A no-op when the comparison of the current labels with these options exists. Poll ``GET`` for its progress and
    result.
    """
    row, created = comparison.request_comparison(
        db,
        project_by_id(db, project_id),
        options=options or comparison.ComparisonOptions(),
        settings=settings,
        jobs=jobs,
    )
    return {"created": created, "comparison": comparison.summary(row)}


@router.get("/projects/{project_id}/comparison", response_model=LatestComparison | None)
def get_comparison(project_id: DbId, db: DbSession) -> dict[str, Any] | None:
    """The newest comparison's state, and the figures of the newest that succeeded (null before the first)."""
    return comparison.latest_comparison(db, project_by_id(db, project_id))
