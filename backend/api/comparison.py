"""The platform API of a project's prompting-vs-fine-tuning comparison (issue #13): start one, read the latest."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from backend.adapters.jobs import TaskName
from backend.api.deps import DbSession, JobsDep, get_app_settings, require_auth
from backend.db.ids import DbId
from backend.services import comparison
from backend.services.errors import UpstreamError
from backend.services.projects import project_by_id
from backend.settings import Settings

router = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])


@router.post("/projects/{project_id}/comparison", status_code=202)
def post_comparison(
    project_id: DbId,
    db: DbSession,
    jobs: JobsDep,
    settings: Annotated[Settings, Depends(get_app_settings)],
    options: Annotated[comparison.ComparisonOptions | None, Body()] = None,
) -> dict[str, Any]:
    """Compare prompting with fine-tuning on the project's labels (the ``train`` queue runs it); a no-op when the
    comparison of the current labels with these options exists. Poll ``GET`` for its progress and result."""
    row, created = comparison.start_comparison(
        db,
        project_by_id(db, project_id),
        options=options or comparison.ComparisonOptions(),
        heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
    )
    db.commit()
    if created:
        try:
            jobs.enqueue(TaskName.COMPARE_PROJECT, row.id)
        except Exception as exc:  # the row is stored; asking again re-sends it once it is seen as stalled
            raise UpstreamError(
                f"comparison {row.id} is stored but the broker is unreachable ({exc}); ask again once it is back"
            ) from None
    return {"created": created, "comparison": comparison.summary(row)}


@router.get("/projects/{project_id}/comparison")
def get_comparison(project_id: DbId, db: DbSession) -> dict[str, Any] | None:
    """The newest comparison's state, and the figures of the newest that succeeded (null before the first)."""
    return comparison.latest_comparison(db, project_by_id(db, project_id))
