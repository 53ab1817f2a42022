"""The review pass in Label Studio: one prediction tagged ``REVIEW_TAG`` per suspect task, and a tab filtered on it.

Each suspect task gets one prediction that shows its labels with the suspects' model readings applied, each region a
suspect is about carrying the suspect's kind and confidence as its note (a ``missed`` label keeps its region, so its
note is shown on the span the model finds nothing at). The prediction is updated in place by later passes and
removed once its task is no longer suspect. The ``REVIEW_TAG`` version is never the project's model version, so these
predictions never order the labelling queue.

No transaction stays open across a Label Studio call: each task is read and committed, then pushed, then its
prediction id is written in a short transaction of its own. A row without a prediction id is *pending* (a push may be
under way); a retry after a crash there first looks for the task's ``REVIEW_TAG`` prediction in Label Studio and
adopts it instead of pushing a second one. A prediction deleted in Label Studio is pushed anew; a task deleted
there loses its row (the pass goes on without it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Project, ReviewPrediction, ReviewSuspect, TaskLabel, utcnow
from backend.db.session import session_scope
from backend.errors import UpstreamRefusedError
from backend.ports import ReviewSink
from backend.services.projects import guide_of, project_by_id
from ml.converters import CharSpan
from ml.converters.label_studio import spans_to_results
from ml.prediction import ScoredSpan
from ml.review import Suspect, corrected

REVIEW_TAG = "nerloop-review"
VIEW_TITLE = "nerloop review"


def as_suspect(row: ReviewSuspect) -> Suspect:
    """A stored suspect as ``ml.review`` has it."""
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


def _note(s: Suspect) -> str:
    what = f"{s.kind.replace('_', ' ')} ({s.confidence:.2f})"
    if s.kind == "missed":
        return f"{what}: the model finds no entity at {s.text!r}, labelled {s.label!r}; remove it if it is none"
    if s.label is not None:
        return f"{what}: labelled {s.label!r} at {s.text!r}"
    return f"{what}: not labelled"


def review_result(
    project: Project, text: str, gold: list[CharSpan], suspects: list[Suspect]
) -> tuple[list[dict[str, Any]], float]:
    """A task's review prediction and its score (the top suspect's confidence).

    Returns:
        Label Studio results (the guide's tag names and label values): the labels with the suspects' model readings
        applied (``ml.review.corrected``), each region a suspect is about with ``meta.text`` saying the suspect's
        kind, confidence and the annotator's label (for a ``missed`` label: its own region, kept); and the score.
    """
    names = guide_of(project).label_studio
    notes: dict[tuple[int, int], tuple[str, float]] = {}
    for s in suspects:
        if s.kind == "missed" or s.predicted_start is None:
            place = (int(s.start or 0), int(s.end or 0))
        else:
            place = (int(s.predicted_start), int(s.predicted_end or 0))
        notes[place] = (_note(s), s.confidence)
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


def push_pass(
    sessions: sessionmaker[Session], sink: ReviewSink, project_id: int, pass_id: int, *, owned: Callable[[], None]
) -> int:
    """Push one review prediction per suspect task of the pass and remove those of tasks no longer suspect.

    Also make sure the review tab exists. Each task is committed when pushed: a retry continues.

    Args:
        sessions: Makes the sessions; each pushed task is committed in its own.
        sink: Label Studio, where the review predictions and the review tab go.
        project_id: The nerloop project.
        pass_id: The review pass whose suspects are pushed.
        owned: Raises when the pass is no longer this process's (called between tasks).

    Returns:
        The tasks whose review prediction is in Label Studio.

    Raises:
        UpstreamError: Label Studio cannot be reached (a retry continues); ``UpstreamRefusedError`` when it refused
            a call for another reason than a deleted task or prediction.
    """
    with session_scope(sessions) as db:
        project = project_by_id(db, project_id)
        ls_project, text_field = project.ls_project_id, guide_of(project).label_studio.text_field
        by_task: dict[int, list[Suspect]] = defaultdict(list)
        for row in db.scalars(select(ReviewSuspect).where(ReviewSuspect.pass_id == pass_id)):
            by_task[row.ls_task_id].append(as_suspect(row))
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
        owned()
        if prediction_id is not None:
            sink.delete_prediction(prediction_id)  # one already gone (404) is done
        else:  # pending: a push may have reached Label Studio before a crash
            for found in _review_predictions(sink, task_id):
                sink.delete_prediction(found)
        with session_scope(sessions) as db:
            db.execute(_row_of(project_id, task_id, delete(ReviewPrediction)))
    pushed = 0
    for task_id, (result, score) in sorted(bodies.items()):
        owned()
        pushed += _push_one(
            sessions, sink, project_id, pass_id, task_id, result=result, score=score, text_field=text_field
        )
    sink.ensure_prediction_view(ls_project, title=VIEW_TITLE, model_version=REVIEW_TAG)
    return pushed


def _row_of(project_id: int, task_id: int, statement: Any) -> Any:
    return statement.where(ReviewPrediction.project_id == project_id, ReviewPrediction.ls_task_id == task_id)


def _review_predictions(sink: ReviewSink, task_id: int) -> list[int]:
    """The task's ``REVIEW_TAG`` predictions in Label Studio (none when the task is gone)."""
    try:
        found = sink.task_predictions(task_id)
    except UpstreamRefusedError as exc:
        if exc.upstream_status == 404:
            return []
        raise
    return sorted(pid for pid, version in found.items() if version == REVIEW_TAG)


def _push_one(
    sessions: sessionmaker[Session],
    sink: ReviewSink,
    project_id: int,
    pass_id: int,
    task_id: int,
    *,
    result: list[dict[str, Any]],
    score: float,
    text_field: str,
) -> int:
    """Push (or update) one task's review prediction; 1 when it is in Label Studio, 0 when the task is gone."""
    with session_scope(sessions) as db:  # read, record a pending row, commit: no transaction across the calls
        row = db.scalar(_row_of(project_id, task_id, select(ReviewPrediction)))
        if row is None:
            db.add(ReviewPrediction(project_id=project_id, ls_task_id=task_id, ls_prediction_id=None, pass_id=None))
            known, pending = None, False
        elif row.pass_id == pass_id and row.ls_prediction_id is not None:
            return 1  # pushed by this pass before a retry
        else:
            known, pending = row.ls_prediction_id, row.ls_prediction_id is None
    if pending:  # an earlier try may have created it and died before recording its id
        existing = _review_predictions(sink, task_id)
        known = existing[0] if existing else None
        for extra in existing[1:]:
            sink.delete_prediction(extra)
    try:
        if known is not None:
            try:
                sink.update_prediction(known, result=result, score=score, model_version=REVIEW_TAG)
            except UpstreamRefusedError as exc:
                if exc.upstream_status != 404:
                    raise
                known = None  # deleted in Label Studio (by a reviewer, or with its task): push it anew
        if known is None:
            known = sink.push_prediction(task_id, result=result, score=score, model_version=REVIEW_TAG)
    except UpstreamRefusedError:
        if sink.task_text(task_id, field=text_field) is not None:
            raise  # the task is there: a refusal for another reason
        with session_scope(sessions) as db:  # the task was deleted in Label Studio: nothing to review there
            db.execute(_row_of(project_id, task_id, delete(ReviewPrediction)))
        return 0
    with session_scope(sessions) as db:
        db.execute(
            _row_of(project_id, task_id, update(ReviewPrediction)).values(
                ls_prediction_id=known, pass_id=pass_id, updated_at=utcnow()
            )
        )
    return 1
