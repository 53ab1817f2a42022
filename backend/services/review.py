"""Likely-mislabelled spans after each promoted version: the cross-validated pass, its storage, the review view.

A pass runs once per promoted version (``review_pass`` is unique per version; a redelivered job finds it done), on
the ``train`` queue after the promotion: the project's labels as they are now (the label state, converted as for
training), the newest ``NER_REVIEW__MAX_DOCS`` tasks, are checked fold by fold by CNNs trained without the fold
(``ml.review.cross_validate``). The ranked suspects are stored, then pushed to Label Studio: each suspect task gets
one prediction tagged ``REVIEW_TAG`` that shows its labels with the model's readings applied (each changed region
with the suspect's kind and confidence as its note), and the project gets a Data Manager tab, ``VIEW_TITLE``,
filtered on that tag, so a reviewer finds every suspect task in one view. The prediction is updated in place by
later passes and removed once its task is no longer suspect. The ``REVIEW_TAG`` version is never the project's
model version, so these predictions never order the labelling queue.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import (
    ModelVersion,
    Project,
    ReviewPass,
    ReviewPrediction,
    ReviewSuspect,
    TaskLabel,
    TrainingRun,
    utcnow,
)
from backend.db.session import session_scope
from backend.db.upsert import upsert
from backend.services.errors import NotFoundError
from backend.services.label_state import annotated_tasks, convert_labels
from backend.services.projects import guide_of, project_by_id
from backend.settings import Settings
from ml.converters import CharSpan
from ml.converters.label_studio import spans_to_results
from ml.errors import MLError
from ml.prediction import ScoredSpan
from ml.review import Suspect, corrected, cross_validate

log = logging.getLogger(__name__)
REVIEW_TAG = "nerloop-review"
VIEW_TITLE = "nerloop review"
DONE = ("pushed", "skipped")


class ReviewSink(Protocol):
    """Where review predictions go (Label Studio)."""

    def push_prediction(self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str) -> int:
        """Store one prediction on a task; return its id."""
        ...

    def update_prediction(
        self, prediction_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        """Replace a stored prediction."""
        ...

    def delete_prediction(self, prediction_id: int) -> None:
        """Remove a prediction."""
        ...

    def ensure_prediction_view(self, project_id: int, *, title: str, model_version: str) -> int:
        """A Data Manager tab of the project showing the tasks with a prediction of ``model_version``; its id."""
        ...


@dataclass(frozen=True)
class ReviewOutcome:
    """How a pass ended: ``status`` of its row (or ``superseded``: a newer version serves), its suspects, and the
    tasks whose review prediction was pushed."""

    status: str
    pass_id: int | None
    suspects: int
    pushed: int


def review_due(db: Session, run_id: int, *, enabled: bool = True) -> tuple[int, int] | None:
    """After a training run: ``(project id, model version id)`` of the version it promoted when that version still
    serves and has no finished pass yet (the review job's payload); None otherwise, or when reviews are off."""
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


def pass_done(db: Session, version: ModelVersion) -> bool:
    """Whether the version's review pass finished (pushed, or skipped for too few labels)."""
    done = db.scalar(
        select(ReviewPass.id).where(ReviewPass.model_version_id == version.id, ReviewPass.status.in_(DONE))
    )
    return done is not None


def run_review(
    sessions: sessionmaker[Session],
    settings: Settings,
    *,
    project_id: int,
    model_version_id: int,
    sink: ReviewSink | None,
) -> ReviewOutcome:
    """Run (or finish) the review pass of a promoted version and push it; safe to call again.

    A version that no longer serves is skipped (the newer one has its own pass). A pass whose suspects are stored
    only pushes them (a retry after Label Studio was away); a pushed or skipped one does nothing.

    Raises:
        NotFoundError: the project or version does not exist.
        UpstreamError: Label Studio cannot be reached (the suspects stay stored; a retry pushes them).
    """
    claim = _claim(sessions, project_id, model_version_id)
    if isinstance(claim, ReviewOutcome):
        return claim
    pass_id, status = claim
    if status != "scored":
        outcome = _score(sessions, settings, project_id, pass_id)
        if outcome is not None:
            return outcome
    if sink is None:
        with session_scope(sessions) as db:
            stored = db.get(ReviewPass, pass_id)
            return ReviewOutcome("scored", pass_id, stored.suspects if stored else 0, 0)
    return _push(sessions, sink, project_id, pass_id)


def _claim(sessions: sessionmaker[Session], project_id: int, model_version_id: int) -> tuple[int, str] | ReviewOutcome:
    with session_scope(sessions) as db:
        project = project_by_id(db, project_id)
        version = db.get(ModelVersion, model_version_id)
        if version is None or version.project_id != project_id:
            raise NotFoundError(f"project {project_id} has no model version with id {model_version_id}")
        if version.version != project.current_version:
            return ReviewOutcome("superseded", None, 0, 0)
        db.execute(
            upsert(db, ReviewPass)
            .values(
                project_id=project_id,
                model_version_id=model_version_id,
                model_version=version.version,
                status="running",
                docs=0,
                suspects=0,
                details={},
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["project_id", "model_version_id"])
        )
        row = db.scalars(
            select(ReviewPass).where(
                ReviewPass.project_id == project_id, ReviewPass.model_version_id == model_version_id
            )
        ).one()
        if row.status in DONE:
            return ReviewOutcome(row.status, row.id, row.suspects, 0)
        return row.id, row.status


def _labelled(db: Session, project: Project, *, newest: int) -> tuple[list[Any], list[int]]:
    """The newest labelled tasks' docs (the label state converted as for training) and their task ids."""
    docs = sorted(convert_labels(project, annotated_tasks(db, project)).docs, key=lambda d: int(d.user_data["task_id"]))
    docs = docs[-newest:]
    return docs, [int(d.user_data["task_id"]) for d in docs]


def _score(sessions: sessionmaker[Session], settings: Settings, project_id: int, pass_id: int) -> ReviewOutcome | None:
    """Cross-validate and store the suspects; an outcome when the pass ends here (skipped or failed)."""
    review = settings.review
    with session_scope(sessions) as db:
        project = project_by_id(db, project_id)
        key = str(project.ls_project_id)
        docs, task_ids = _labelled(db, project, newest=review.max_docs)
    if len(docs) < review.min_docs:
        return _finish(sessions, pass_id, "skipped", f"{len(docs)} labelled tasks, fewer than {review.min_docs}")
    work = Path(settings.model_root).resolve() / f"project-{project_id}" / f".review-{pass_id}"
    try:
        result = cross_validate(docs, task_ids, settings=review, work_dir=work, key=key)
    except MLError as exc:  # too little to learn from: said on the pass
        return _finish(sessions, pass_id, "failed", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug: recorded on the pass, and the traceback goes to the worker log
        _finish(sessions, pass_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with session_scope(sessions) as db:
        db.execute(delete(ReviewSuspect).where(ReviewSuspect.pass_id == pass_id))
        db.add_all(_rows(project_id, pass_id, result.suspects))
        row = db.get(ReviewPass, pass_id)
        if row is not None:
            row.status, row.docs, row.suspects, row.finished_at = "scored", result.docs, len(result.suspects), utcnow()
            row.details = {
                "folds": result.folds,
                "max_steps": review.max_steps,
                "min_confidence": review.min_confidence,
                "seconds": result.seconds,
                "by_kind": result.counts_by_kind,
                "by_type": result.counts_by_type,
            }
    log.info("project %s review pass %s: %s suspects in %s docs", project_id, pass_id, len(result.suspects), len(docs))
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


def _finish(sessions: sessionmaker[Session], pass_id: int, status: str, why: str) -> ReviewOutcome:
    with session_scope(sessions) as db:
        row = db.get(ReviewPass, pass_id)
        if row is not None:
            row.status, row.error, row.finished_at = status, why, utcnow()
    log.info("review pass %s %s: %s", pass_id, status, why)
    return ReviewOutcome(status, pass_id, 0, 0)


def _as_suspect(row: ReviewSuspect) -> Suspect:
    return Suspect(
        row.ls_task_id,
        row.kind,  # type: ignore[arg-type]
        row.confidence,
        row.start,
        row.end,
        row.label,
        row.predicted_start,
        row.predicted_end,
        row.predicted_label,
        row.text,
        row.fold,
    )


def review_result(
    project: Project, text: str, gold: list[CharSpan], suspects: list[Suspect]
) -> tuple[list[dict[str, Any]], float]:
    """A task's review prediction: its labels with the suspects' model readings applied, in Label Studio's shape
    (the guide's tag names and label values), each changed region noted with its kind and confidence; and its score
    (the top suspect's confidence)."""
    names = guide_of(project).label_studio
    notes: dict[tuple[int, int], tuple[str, float]] = {}
    for s in suspects:
        place = (s.predicted_start, s.predicted_end) if s.predicted_start is not None else (s.start, s.end)
        what = f"{s.kind.replace('_', ' ')} ({s.confidence:.2f})"
        if s.label is not None:
            what += f": labelled {s.label!r} at {s.text!r}"
        notes[(int(place[0] or 0), int(place[1] or 0))] = (what, s.confidence)
    spans = corrected(gold, suspects)
    scored = [
        ScoredSpan(c.start, c.end, c.label, text[c.start : c.end], notes.get((c.start, c.end), ("", 1.0))[1])
        for c in spans
    ]
    results = spans_to_results(scored, from_name=names.from_name, to_name=names.to_name, label_values=names.labels)
    for span, item in zip(spans, results, strict=True):
        if (span.start, span.end) in notes:
            item["meta"] = {"text": [f"nerloop review: {notes[(span.start, span.end)][0]}"]}
    return results, max(s.confidence for s in suspects)


def _push(sessions: sessionmaker[Session], sink: ReviewSink, project_id: int, pass_id: int) -> ReviewOutcome:
    """Push one review prediction per suspect task (updated in place), remove those of tasks no longer suspect,
    and make sure the review tab exists. Each task is committed when pushed: a retry continues."""
    with session_scope(sessions) as db:
        project = project_by_id(db, project_id)
        ls_project = project.ls_project_id
        by_task: dict[int, list[Suspect]] = defaultdict(list)
        for row in db.scalars(select(ReviewSuspect).where(ReviewSuspect.pass_id == pass_id)):
            by_task[row.ls_task_id].append(_as_suspect(row))
        labels = {
            row.ls_task_id: (row.text, [CharSpan(int(a), int(b), str(c)) for a, b, c in row.spans])
            for row in db.scalars(
                select(TaskLabel).where(TaskLabel.project_id == project_id, TaskLabel.ls_task_id.in_(list(by_task)))
            )
        }
        bodies = {
            task: review_result(project, labels[task][0], labels[task][1], found)
            for task, found in by_task.items()
            if task in labels  # a task whose labels went since the pass is no longer under review
        }
        stale = [
            (row.ls_task_id, row.ls_prediction_id)
            for row in db.scalars(select(ReviewPrediction).where(ReviewPrediction.project_id == project_id))
            if row.ls_task_id not in bodies
        ]
    for task_id, prediction_id in stale:
        if prediction_id is not None:
            sink.delete_prediction(prediction_id)
        with session_scope(sessions) as db:
            db.execute(
                delete(ReviewPrediction).where(
                    ReviewPrediction.project_id == project_id, ReviewPrediction.ls_task_id == task_id
                )
            )
    for task_id, (result, score) in sorted(bodies.items()):
        _push_one(sessions, sink, project_id, pass_id, task_id, result=result, score=score)
    sink.ensure_prediction_view(ls_project, title=VIEW_TITLE, model_version=REVIEW_TAG)
    with session_scope(sessions) as db:
        stored = db.get(ReviewPass, pass_id)
        suspects = stored.suspects if stored is not None else 0
        if stored is not None:
            stored.status, stored.pushed_at = "pushed", utcnow()
    return ReviewOutcome("pushed", pass_id, suspects, len(bodies))


def _push_one(
    sessions: sessionmaker[Session],
    sink: ReviewSink,
    project_id: int,
    pass_id: int,
    task_id: int,
    *,
    result: list[dict[str, Any]],
    score: float,
) -> None:
    with session_scope(sessions) as db:
        row = db.scalar(
            select(ReviewPrediction).where(
                ReviewPrediction.project_id == project_id, ReviewPrediction.ls_task_id == task_id
            )
        )
        if row is None:
            row = ReviewPrediction(project_id=project_id, ls_task_id=task_id, ls_prediction_id=None)
            db.add(row)
        if row.pass_id == pass_id and row.ls_prediction_id is not None:
            return  # pushed by this pass before a retry
        if row.ls_prediction_id is None:
            row.ls_prediction_id = sink.push_prediction(task_id, result=result, score=score, model_version=REVIEW_TAG)
        else:
            sink.update_prediction(row.ls_prediction_id, result=result, score=score, model_version=REVIEW_TAG)
        row.pass_id, row.updated_at = pass_id, utcnow()


def latest_pass(db: Session, project: Project) -> ReviewPass | None:
    """The project's newest review pass whose suspects are stored (scored or pushed)."""
    return db.scalar(
        select(ReviewPass)
        .where(ReviewPass.project_id == project.id, ReviewPass.status.in_(("scored", "pushed")))
        .order_by(ReviewPass.id.desc())
        .limit(1)
    )


def _resolved(row: ReviewSuspect, spans: set[tuple[int, int, str]] | None) -> bool:
    """Whether the labels changed at the suspect since the pass (the model's reading adopted, or the span
    re-labelled): it no longer needs a look."""
    if spans is None:
        return True  # the task's labels are gone
    if row.start is not None and row.end is not None and row.label is not None:
        return (row.start, row.end, row.label) not in spans
    return (row.predicted_start, row.predicted_end, row.predicted_label) in spans


def review_summary(db: Session, project: Project, *, limit: int = 20) -> dict[str, Any]:
    """The latest review pass: suspects per type and per kind, and the ``limit`` most confident, for the dashboard,
    the API and ``nerloop review``.

    Returns:
        A JSON-able dict: ``project_id``, ``pass`` (None before the first pass; else id, model version, status,
        docs checked, suspects, seconds, folds, when), ``by_type`` and ``by_kind`` (counts), ``top`` (ranked
        suspects: task, kind, confidence, the labelled and the model's span, ``resolved`` when the task's labels
        changed there since), ``review_view`` (the Label Studio tab and prediction tag to filter on) and
        ``last_attempt`` (the newest pass of any status, with its error: a skipped or failed one shows here).
    """
    attempt = db.scalar(
        select(ReviewPass).where(ReviewPass.project_id == project.id).order_by(ReviewPass.id.desc()).limit(1)
    )
    found = latest_pass(db, project)
    out: dict[str, Any] = {
        "project_id": project.id,
        "pass": None,
        "by_type": {},
        "by_kind": {},
        "top": [],
        "review_view": {"title": VIEW_TITLE, "prediction_model_version": REVIEW_TAG},
        "last_attempt": None
        if attempt is None
        else {
            "id": attempt.id,
            "model_version": attempt.model_version,
            "status": attempt.status,
            "error": attempt.error,
        },
    }
    if found is None:
        return out
    rows = list(db.scalars(select(ReviewSuspect).where(ReviewSuspect.pass_id == found.id).order_by(ReviewSuspect.rank)))
    current = {
        task: {(int(a), int(b), str(c)) for a, b, c in spans}
        for task, spans in db.execute(
            select(TaskLabel.ls_task_id, TaskLabel.spans).where(
                TaskLabel.project_id == project.id, TaskLabel.ls_task_id.in_({r.ls_task_id for r in rows})
            )
        )
    }
    out["pass"] = {
        "id": found.id,
        "model_version": found.model_version,
        "status": found.status,
        "docs": found.docs,
        "suspects": found.suspects,
        "folds": found.details.get("folds"),
        "seconds": found.details.get("seconds"),
        "finished_at": found.finished_at.isoformat() if found.finished_at else None,
    }
    out["by_type"] = dict(Counter(r.label or r.predicted_label or "" for r in rows).most_common())
    out["by_kind"] = dict(Counter(r.kind for r in rows).most_common())
    out["top"] = [
        {
            "rank": r.rank,
            "ls_task_id": r.ls_task_id,
            "kind": r.kind,
            "confidence": r.confidence,
            "labelled": None if r.start is None else {"start": r.start, "end": r.end, "label": r.label},
            "model": None
            if r.predicted_start is None
            else {"start": r.predicted_start, "end": r.predicted_end, "label": r.predicted_label},
            "text": r.text,
            "resolved": _resolved(r, current.get(r.ls_task_id)),
        }
        for r in rows[:limit]
    ]
    return out


def format_review(summary: dict[str, Any]) -> str:
    """``review_summary`` as ``nerloop review`` prints it."""
    found = summary["pass"]
    if found is None:
        attempt = summary["last_attempt"]
        if attempt is not None:
            return (
                f"project {summary['project_id']}: review pass {attempt['id']} {attempt['status']}: {attempt['error']}"
            )
        return f"project {summary['project_id']}: no review pass yet (one runs after each promoted version)"
    lines = [
        f"project {summary['project_id']}: review pass {found['id']} of {found['model_version']} ({found['status']}): "
        f"{found['suspects']} suspects in {found['docs']} labelled tasks, {found['folds']} folds, {found['seconds']} s",
        "by type: " + (", ".join(f"{k} {v}" for k, v in summary["by_type"].items()) or "none"),
        "by kind: " + (", ".join(f"{k} {v}" for k, v in summary["by_kind"].items()) or "none"),
        f"in Label Studio: the {summary['review_view']['title']!r} tab (predictions of model version "
        f"{summary['review_view']['prediction_model_version']!r})",
        f"{'rank':>4} {'task':>7} {'kind':<15}{'conf':>6}  labelled -> model",
    ]
    for s in summary["top"]:
        labelled = (
            "-"
            if s["labelled"] is None
            else f"{s['labelled']['label']} {s['labelled']['start']}-{s['labelled']['end']}"
        )
        model = "-" if s["model"] is None else f"{s['model']['label']} {s['model']['start']}-{s['model']['end']}"
        done = "  (relabelled since)" if s["resolved"] else ""
        lines.append(
            f"{s['rank']:>4} {s['ls_task_id']:>7} {s['kind']:<15}{s['confidence']:>6.3f}  {s['text']!r}: "
            f"{labelled} -> {model}{done}"
        )
    return "\n".join(lines)
