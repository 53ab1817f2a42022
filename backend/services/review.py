"""Likely-mislabelled spans after each promoted version: the cross-validated pass and its lifecycle.

A pass runs once per promoted version (``review_pass`` is unique per version; a redelivered job finds it done), on
the ``train`` queue after the promotion: the project's *training* labels as they are now (the label state, converted
and split as for training, ``training.split_snapshot``; held-out dev and test tasks are never reviewed, so nothing
pushes annotators to relabel test data toward the model), the newest ``NER_REVIEW__MAX_DOCS`` of them, are checked
fold by fold by CNNs trained without the fold (``ml.review.cross_validate``). The ranked suspects are stored, then
pushed to Label Studio (``backend.services.review_push``); ``backend.services.review_summary`` reads them.

A pass is claimed atomically (a conditional UPDATE from ``queued``, ``scored``, ``failed`` or a ``running`` pass
without a heartbeat), each claim a new ``attempt`` whose every write is guarded by it, with its own work directory
for the fold models; while it runs, a thread beats ``heartbeat_at``, and the sweep fails a pass silent for
``NER_RUN_HEARTBEAT_TIMEOUT_S`` (a killed worker) and removes its work directory. Status: ``queued`` -> ``running``
-> ``scored`` (suspects stored, not pushed: Label Studio was away, or there is none) -> ``pushed``; or ``failed``,
``skipped`` (too few labels; why in ``error``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import ModelVersion, Project, ReviewPass, ReviewSuspect, TrainingRun, utcnow
from backend.db.session import session_scope
from backend.db.upsert import upsert
from backend.errors import InvalidInputError, NotFoundError, UpstreamError, UpstreamRefusedError
from backend.ports import JobQueue, ReviewSink, TaskName
from backend.services.label_state import annotated_tasks
from backend.services.projects import current_model, project_by_id
from backend.services.review_liveness import Claim, expire_stale_passes, heartbeat, owned
from backend.services.review_push import REVIEW_TAG, VIEW_TITLE, push_pass, review_result
from backend.services.review_summary import format_review, latest_pass, review_summary
from backend.services.run_liveness import aware, heartbeat_interval
from backend.services.training import split_snapshot
from backend.settings import Settings
from ml.errors import MLError
from ml.review import Suspect, cross_validate

__all__ = [
    "REVIEW_TAG",
    "VIEW_TITLE",
    "ReviewOutcome",
    "expire_stale_passes",
    "format_review",
    "latest_pass",
    "mark_queued",
    "pass_done",
    "request_review",
    "review_due",
    "review_result",
    "review_summary",
    "review_wanted",
    "run_review",
]

log = logging.getLogger(__name__)
DONE = ("pushed", "skipped")
CLAIMABLE = ("queued", "scored", "failed")


@dataclass(frozen=True)
class ReviewOutcome:
    """How a pass ended.

    ``status`` of its row (``superseded``: a newer version serves; ``running``: another process owns it; ``lost``: it
    was taken over while this process ran), its suspects, and the tasks pushed.
    """

    status: str
    pass_id: int | None
    suspects: int
    pushed: int


class _LostError(Exception):
    """The pass is no longer this attempt's (expired by the sweep and claimed again)."""


def review_due(db: Session, run_id: int, *, enabled: bool = True) -> tuple[int, int] | None:
    """The review job's payload after a training run, or None when no review is due.

    ``(project id, model version id)`` of the version the run promoted when that version still serves and has no
    finished pass yet; None otherwise, or when reviews are off.
    """
    run = db.get(TrainingRun, run_id)
    if not enabled or run is None or run.status != "succeeded" or run.model_version is None:
        return None
    version = db.scalar(
        select(ModelVersion).where(ModelVersion.project_id == run.project_id, ModelVersion.version == run.model_version)
    )
    project = db.get(Project, run.project_id)
    if version is None or project is None or project.current_version != version.version:
        return None
    return None if pass_done(db, version) else (run.project_id, version.id)


def _pass_of(db: Session, version: ModelVersion) -> ReviewPass | None:
    return db.scalar(select(ReviewPass).where(ReviewPass.model_version_id == version.id))


def pass_done(db: Session, version: ModelVersion) -> bool:
    """Whether the version's review pass finished (pushed, or skipped for too few labels)."""
    found = _pass_of(db, version)
    return found is not None and found.status in DONE


def _silent(row: ReviewPass, timeout_s: float) -> bool:
    """Whether a queued or running pass has been quiet for ``timeout_s`` (its message or its process is lost)."""
    last = row.heartbeat_at or row.created_at
    return utcnow() - aware(last) > timedelta(seconds=timeout_s)


def review_wanted(db: Session, version: ModelVersion, *, heartbeat_timeout_s: float) -> bool:
    """Whether a review job for the version should be sent.

    No pass yet, a failed or unpushed one, or one whose message or process was lost (queued or running, silent for
    ``heartbeat_timeout_s``). False while a live pass exists (queued recently, or running with a heartbeat) and once it
    is done.
    """
    found = _pass_of(db, version)
    if found is None or found.status in ("failed", "scored"):
        return True
    return found.status in ("queued", "running") and _silent(found, heartbeat_timeout_s)


def mark_queued(db: Session, version: ModelVersion) -> None:
    """Record that a review job for the version was sent (after the broker took it).

    The pass is ``queued``, so a second request does not send another while it waits. A pass that is running (a silent
    one is taken over by the job's claim), scored or done is left alone.
    """
    db.execute(
        upsert(db, ReviewPass)
        .values(
            project_id=version.project_id,
            model_version_id=version.id,
            model_version=version.version,
            status="queued",
            docs=0,
            suspects=0,
            details={},
            created_at=utcnow(),
            attempt=0,
        )
        .on_conflict_do_nothing(index_elements=["project_id", "model_version_id"])
    )
    db.execute(
        update(ReviewPass)
        .where(ReviewPass.model_version_id == version.id, ReviewPass.status.in_(("failed", "queued")))
        .values(status="queued", created_at=utcnow(), heartbeat_at=None)
    )


def request_review(db: Session, project: Project, *, jobs: JobQueue, heartbeat_timeout_s: float) -> tuple[str, bool]:
    """Ask for the review pass of the serving version.

    Sent unless it is done or a live pass exists (:func:`review_wanted`), then recorded queued (:func:`mark_queued`).
    Commits before the broker call.

    Returns:
        The serving version, and whether a job was sent.

    Raises:
        InvalidInputError: the project serves no model yet.
        UpstreamError: the broker cannot be reached; asking again once it is back sends the job.
    """
    serving = current_model(db, project)
    if serving is None:
        raise InvalidInputError(f"project {project.id} serves no model yet; a review pass follows the first promotion")
    version = serving.version
    wanted = review_wanted(db, serving, heartbeat_timeout_s=heartbeat_timeout_s)
    db.commit()  # no transaction stays open across the broker call
    if wanted:
        try:
            jobs.enqueue(TaskName.REVIEW_LABELS, project.id, serving.id)
        except Exception as exc:
            raise UpstreamError(f"the broker is unreachable ({exc}); ask again once it is back") from None
        mark_queued(db, serving)
        db.commit()
    return version, wanted


def run_review(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    project_id: int,
    model_version_id: int,
    sink: ReviewSink | None,
) -> ReviewOutcome:
    """Run (or finish) the review pass of a promoted version and push it.

    Safe to call again, and from several processes at once (one claims it; the others return ``running``).

    A version that no longer serves is skipped (the newer one has its own pass). A pass whose suspects are stored
    only pushes them (a retry after Label Studio was away); a pushed or skipped one does nothing.

    Raises:
        NotFoundError: the project or version does not exist.
        UpstreamError: Label Studio cannot be reached (the suspects stay stored, the pass ``scored``; a retry pushes
            them). ``UpstreamRefusedError``: it refused a call (the pass is failed; a retry would be refused too).
    """
    timeout_s = settings.run_heartbeat_timeout_s
    root = Path(settings.model_root).resolve() / f"project-{project_id}"
    claim = _claim(sessions, project_id, model_version_id, timeout_s=timeout_s, work_root=root)
    if isinstance(claim, ReviewOutcome):
        return claim
    with heartbeat(sessions, claim, interval_s=heartbeat_interval(timeout_s)):
        try:
            return _attempt(sessions, settings, project_id, claim, sink)
        except _LostError:
            log.warning("review pass %s attempt %s was taken over; this attempt stops", claim.pass_id, claim.attempt)
            return ReviewOutcome("lost", claim.pass_id, 0, 0)


def _attempt(
    sessions: sessionmaker[Session], settings: Settings, project_id: int, claim: Claim, sink: ReviewSink | None
) -> ReviewOutcome:
    if not claim.scored:
        outcome = _score(sessions, settings, project_id, claim)
        if outcome is not None:
            return outcome
    suspects = _stored_suspects(sessions, claim.pass_id)
    if sink is None:
        _set(sessions, claim, status="scored")
        return ReviewOutcome("scored", claim.pass_id, suspects, 0)
    try:
        pushed = push_pass(sessions, sink, project_id, claim.pass_id, owned=lambda: _checkowned(sessions, claim))
    except _LostError:
        raise
    except UpstreamRefusedError as exc:  # the same call would be refused again: said on the pass, not retried
        _set(sessions, claim, status="failed", error=str(exc), finished_at=utcnow())
        raise
    except UpstreamError:  # Label Studio away: the suspects stay stored, a retry (or a request) pushes them
        _set(sessions, claim, status="scored")
        raise
    except Exception as exc:
        _set(sessions, claim, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=utcnow())
        raise
    _set(sessions, claim, status="pushed", pushed_at=utcnow())
    return ReviewOutcome("pushed", claim.pass_id, suspects, pushed)


def _claim(
    sessions: sessionmaker[Session], project_id: int, model_version_id: int, *, timeout_s: float, work_root: Path
) -> Claim | ReviewOutcome:
    with session_scope(sessions) as db:
        project = project_by_id(db, project_id)
        version = db.get(ModelVersion, model_version_id)
        if version is None or version.project_id != project_id:
            raise NotFoundError(f"project {project_id} has no model version with id {model_version_id}")
        if version.version != project.current_version:
            return ReviewOutcome("superseded", None, 0, 0)
        mark = upsert(db, ReviewPass).values(
            project_id=project_id,
            model_version_id=model_version_id,
            model_version=version.version,
            status="queued",
            docs=0,
            suspects=0,
            details={},
            created_at=utcnow(),
            attempt=0,
        )
        db.execute(mark.on_conflict_do_nothing(index_elements=["project_id", "model_version_id"]))
        row = db.scalars(select(ReviewPass).where(ReviewPass.model_version_id == model_version_id)).one()
        if row.status in DONE:
            return ReviewOutcome(row.status, row.id, row.suspects, 0)
        if row.status not in CLAIMABLE and not (row.status == "running" and _silent(row, timeout_s)):
            return ReviewOutcome(row.status, row.id, row.suspects, 0)  # another process runs it
        attempt, scored = row.attempt + 1, "folds" in (row.details or {})
        work = work_root / f".review-{row.id}-{attempt}"
        claimed = db.execute(
            update(ReviewPass)
            .where(ReviewPass.id == row.id, ReviewPass.attempt == row.attempt, ReviewPass.status == row.status)
            .values(
                status="running",
                attempt=attempt,
                heartbeat_at=utcnow(),
                error=None,
                details={**(row.details or {}), "work_dir": str(work)},
            )
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return ReviewOutcome("running", row.id, row.suspects, 0)  # claimed by another process meanwhile
        return Claim(row.id, attempt, scored, work)


def _checkowned(sessions: sessionmaker[Session], claim: Claim) -> None:
    with session_scope(sessions) as db:
        if db.scalar(select(ReviewPass.id).where(owned(claim))) is None:
            raise _LostError(claim.pass_id)


def _set(sessions: sessionmaker[Session], claim: Claim, **values: Any) -> None:
    """Write the attempt's row (nothing when the pass is no longer this attempt's)."""
    with session_scope(sessions) as db:
        db.execute(update(ReviewPass).where(owned(claim)).values(**values))
    if "status" in values and values["status"] != "running":
        log.info("review pass %s: %s %s", claim.pass_id, values["status"], values.get("error") or "")


def _stored_suspects(sessions: sessionmaker[Session], pass_id: int) -> int:
    with session_scope(sessions) as db:
        row = db.get(ReviewPass, pass_id)
        return row.suspects if row is not None else 0


def _labelled(db: Session, project: Project, *, newest: int, dev_fraction: float) -> tuple[list[Any], list[int]]:
    """The newest labelled *training* tasks' docs and their task ids.

    The label state is converted and split as for training: held-out dev and test tasks are never reviewed.
    """
    train = split_snapshot(annotated_tasks(db, project), project, dev_fraction=dev_fraction).train
    docs = sorted(train, key=lambda d: int(d.user_data["task_id"]))[-newest:]
    return docs, [int(d.user_data["task_id"]) for d in docs]


def _score(sessions: sessionmaker[Session], settings: Settings, project_id: int, claim: Claim) -> ReviewOutcome | None:
    """Cross-validate and store the suspects; an outcome when the pass ends here (skipped or failed)."""
    review = settings.review
    with session_scope(sessions) as db:
        project = project_by_id(db, project_id)
        key = str(project.ls_project_id)
        docs, task_ids = _labelled(db, project, newest=review.max_docs, dev_fraction=settings.dev_fraction)
    if len(docs) < review.min_docs:
        why = f"{len(docs)} labelled training tasks, fewer than {review.min_docs}"
        _set(sessions, claim, status="skipped", error=why, finished_at=utcnow())
        return ReviewOutcome("skipped", claim.pass_id, 0, 0)

    def on_fold(done: int, total: int) -> None:
        _checkowned(sessions, claim)

    try:
        result = cross_validate(docs, task_ids, settings=review, work_dir=claim.work, key=key, on_fold=on_fold)
    except MLError as exc:  # too little to learn from: said on the pass
        _set(sessions, claim, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=utcnow())
        return ReviewOutcome("failed", claim.pass_id, 0, 0)
    except _LostError:
        raise
    except Exception as exc:  # a bug: recorded on the pass, and the traceback goes to the worker log
        _set(sessions, claim, status="failed", error=f"{type(exc).__name__}: {exc}", finished_at=utcnow())
        raise
    finally:
        shutil.rmtree(claim.work, ignore_errors=True)  # this attempt's own directory: no other process uses it
    with session_scope(sessions) as db:
        details = {
            "folds": result.folds,
            "max_steps": review.max_steps,
            "min_confidence": review.min_confidence,
            "seconds": result.seconds,
            "by_kind": result.counts_by_kind,
            "by_type": result.counts_by_type,
        }
        stored = db.execute(
            update(ReviewPass)
            .where(owned(claim))
            .values(docs=result.docs, suspects=len(result.suspects), finished_at=utcnow(), details=details)
        )
        if stored.rowcount != 1:  # type: ignore[attr-defined]
            raise _LostError(claim.pass_id)  # rolled back: the suspects of the attempt that owns it stay
        db.execute(delete(ReviewSuspect).where(ReviewSuspect.pass_id == claim.pass_id))
        db.add_all(_rows(project_id, claim.pass_id, result.suspects))
    log.info(
        "project %s review pass %s: %s suspects in %s docs", project_id, claim.pass_id, len(result.suspects), len(docs)
    )
    return None


def _rows(project_id: int, pass_id: int, suspects: list[Suspect]) -> list[ReviewSuspect]:
    return [
        ReviewSuspect(
            pass_id=pass_id,
            project_id=project_id,
            ls_task_id=s.task_id,
            rank=rank,
            kind=s.kind,
            confidence=s.confidence,
            start=s.start,
            end=s.end,
            label=s.label,
            predicted_start=s.predicted_start,
            predicted_end=s.predicted_end,
            predicted_label=s.predicted_label,
            text=s.text,
            fold=s.fold,
        )
        for rank, s in enumerate(suspects, start=1)
    ]
