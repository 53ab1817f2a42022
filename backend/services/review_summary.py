"""What the latest review pass found, for the dashboard, the API and ``nerloop review``.

``backend.services.review`` runs the passes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.models import Project, ReviewPass, ReviewSuspect, TaskLabel
from backend.services.review_push import REVIEW_TAG, VIEW_TITLE


def latest_pass(db: Session, project: Project) -> ReviewPass | None:
    """The project's newest review pass whose suspects are stored (scored or pushed)."""
    return db.scalar(
        select(ReviewPass)
        .where(ReviewPass.project_id == project.id, ReviewPass.status.in_(("scored", "pushed")))
        .order_by(ReviewPass.id.desc())
        .limit(1)
    )


def _resolved(row: ReviewSuspect, spans: set[tuple[int, int, str]] | None) -> bool:
    """Whether the labels changed at the suspect since the pass: it no longer needs a look.

    The model's reading was adopted, or the span re-labelled.
    """
    if spans is None:
        return True  # the task's labels are gone
    if row.start is not None and row.end is not None and row.label is not None:
        return (row.start, row.end, row.label) not in spans
    return (row.predicted_start, row.predicted_end, row.predicted_label) in spans


def review_summary(db: Session, project: Project, *, limit: int = 20) -> dict[str, Any]:
    """The latest review pass.

    Suspects per type and per kind, and the ``limit`` most confident, for the dashboard, the API and ``nerloop review``.

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
