"""What a person asks of a project's models through the platform API.

A training run now, an earlier version served again. Each owns its transaction: it commits before the broker is called,
so no transaction stays open across the call, and what it stored stays stored when the broker is away.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from backend.db.models import Project, TrainingRun
from backend.errors import UpstreamError
from backend.ports import JobQueue, TaskName
from backend.services import training


def retrain_now(db: Session, project: Project, *, jobs: JobQueue, trigger: str) -> tuple[TrainingRun, bool]:
    """Start a training run at the current label watermark, commit, and send it to the ``train`` queue when new.

    ``training.manual_run`` makes it; a no-op if it exists.

    Returns:
        The run, and whether it was created (and sent).

    Raises:
        InvalidInputError: the project has no labels yet.
        UpstreamError: the broker cannot be reached (the run is stored; the sweep sends it once it is back).
    """
    run, created = training.manual_run(db, project, trigger=trigger)
    db.commit()
    if created:
        try:
            jobs.enqueue(TaskName.TRAIN_RUN, run.id)
        except Exception as exc:  # stored; the sweep re-sends queued runs (backend.services.sweep)
            raise UpstreamError(
                f"run {run.id} is stored but the broker is unreachable ({exc}); it is sent once the broker is back"
            ) from None
    return run, created


def roll_back(db: Session, project: Project, *, version: str, jobs: JobQueue, rescore: bool) -> None:
    """Serve an earlier version again (``training.rollback``), commit, then ask for the pool's rescoring with it.

    Args:
        db: The session; committed here.
        project: The project.
        version: The version to serve.
        jobs: The job queue.
        rescore: Whether to enqueue the rescoring (it pushes to Label Studio: only with a Label Studio token).

    Raises:
        NotFoundError: the project has no such version.
        UpstreamError: the broker cannot be reached (the rollback is done; only the rescoring was not asked for).
    """
    training.rollback(db, project, version=version)
    db.commit()
    if not rescore:
        return
    try:
        jobs.enqueue(TaskName.SCORE_POOL, project.id)
    except Exception as exc:  # the rollback is done; only the rescoring of the pool could not be asked for
        raise UpstreamError(
            f"project {project.id} now serves {project.current_version}, but the broker is unreachable ({exc}): "
            "the pool is not rescored; roll back again once the broker is back"
        ) from None
