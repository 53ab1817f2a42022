"""Inter-annotator agreement per entity type, from every live annotation nerloop holds (``ml.agreement``).

The label state keeps every annotation of a task (several annotators: Label Studio's overlap setting). Each one is
converted on its own, as training converts a task's latest one (``label_state.convert_labels``), and the annotators
of each task are compared pairwise. The agreement on a type is the ceiling a model trained on those labels can be
expected to reach on it, so it is shown beside the serving version's F1 and the target.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import Annotation, Project
from backend.services.label_state import convert_labels
from backend.services.projects import current_model, guide_of, metrics_of
from ml.agreement import AnnotatedDoc, agreement


def _overlapping(db: Session, project: Project) -> list[Annotation]:
    """The live, non-skipped annotations of the tasks that hold two or more of them, by task and annotation id."""
    live = (
        Annotation.project_id == project.id,
        Annotation.deleted.is_(False),
        Annotation.was_cancelled.is_(False),
        Annotation.ls_task_id.is_not(None),
    )
    shared = select(Annotation.ls_task_id).where(*live).group_by(Annotation.ls_task_id).having(func.count() > 1)
    return list(
        db.scalars(
            select(Annotation)
            .where(*live, Annotation.ls_task_id.in_(shared))
            .order_by(Annotation.ls_task_id, Annotation.ls_annotation_id)
        )
    )


def annotated_docs(db: Session, project: Project) -> tuple[list[AnnotatedDoc], int]:
    """Per (task, annotator) of the tasks with several annotations, the annotator's latest annotation as a doc.

    Also how many annotations could not be converted (left out). An annotation without ``completed_by`` is its own
    annotator (``annotation <id>``).
    """
    latest: dict[tuple[int, str], Annotation] = {}
    for row in _overlapping(db, project):
        who = str(row.completed_by) if row.completed_by is not None else f"annotation {row.ls_annotation_id}"
        latest[(row.ls_task_id or 0, who)] = row  # ordered by annotation id: the later one wins
    docs: list[AnnotatedDoc] = []
    left_out = 0
    for (task_id, who), row in sorted(latest.items()):
        task = {
            "id": task_id,
            "data": row.task_data,
            "annotations": [{"id": row.ls_annotation_id, "result": row.result, "was_cancelled": False}],
        }
        converted = convert_labels(project, [task]).docs
        if converted:
            docs.append(AnnotatedDoc(task_id, who, converted[0]))
        else:
            left_out += 1
    return docs, left_out


def agreement_summary(db: Session, project: Project) -> dict[str, Any]:
    """Agreement per type beside the serving version's F1 and the target.

    The dashboard's panel, the API's and ``nerloop agreement``'s data.

    Returns:
        A JSON-able dict: ``tasks`` (with two or more annotators), ``annotators``, ``target_f1``, ``model_version``,
        ``per_type`` (per guide type: agreement ``f1`` exact and ``partial_f1`` with their 95% bootstrap
        ``f1_interval`` and ``partial_f1_interval``, ``spans`` (the support), ``measurable``, the serving version's
        ``model_f1`` (None: no version or not measured), ``ceiling`` (:func:`ceiling_verdict`) and
        ``ceiling_below_target``: whether the whole interval lies below the target, so the target is out of reach
        for the type), ``micro``, ``pairs`` (per annotator pair, the same per type and micro) and ``left_out``
        (annotations that could not be converted).
    """
    guide = guide_of(project)
    docs, left_out = annotated_docs(db, project)
    report = agreement(docs, labels=guide.labels).to_dict()
    serving = current_model(db, project)
    metrics = metrics_of(serving) if serving is not None else None
    target = guide.targets.f1
    for label, row in report["per_type"].items():
        row["model_f1"] = metrics.measurable_f1(label) if metrics is not None else None
        row["ceiling"] = ceiling_verdict(row, target)
        row["ceiling_below_target"] = row["ceiling"] == "below"
    return {
        "project_id": project.id,
        "target_f1": target,
        "model_version": project.current_version,
        "left_out": left_out,
        **report,
    }


def ceiling_verdict(row: dict[str, Any], target: float) -> str:
    """What a type's agreement says about the target, from its 95% interval, never from the point estimate alone.

    ``below`` (the whole interval under the target: out of reach), ``allows`` (the whole interval at or above it),
    ``uncertain`` (the interval contains the target, or there is none: fewer than two tasks) or ``not measurable``
    (fewer spans than the minimum support).
    """
    if not row["measurable"] or row["f1"] is None:
        return "not measurable"
    interval = row["f1_interval"]
    if interval is None:
        return "uncertain"
    low, high = interval
    return "below" if high < target else "allows" if low >= target else "uncertain"


_VERDICT = {
    "below": "below the target: out of reach",
    "allows": "allows the target",
    "uncertain": "the target is inside the interval: not yet decided",
    "not measurable": "not yet measurable",
}


def format_agreement(summary: dict[str, Any]) -> str:
    """``agreement_summary`` as the table ``nerloop agreement`` prints."""
    if not summary["tasks"]:
        return (
            f"project {summary['project_id']}: no task has two or more annotations yet (Label Studio's overlap "
            "setting makes several annotators label the same tasks)"
        )

    def interval(low_high: list[float] | tuple[float, float] | None) -> str:
        return "" if low_high is None else f"[{low_high[0]:.3f}, {low_high[1]:.3f}]"

    def cells(row: dict[str, Any]) -> str:
        if row["f1"] is None:
            return f"{'-':>7} {'':<16}{'-':>8} {'':<16}{row['spans']:>6}"
        exact, partial = interval(row["f1_interval"]), interval(row.get("partial_f1_interval"))
        return f"{row['f1']:>7.3f} {exact:<16}{row['partial_f1']:>8.3f} {partial:<16}{row['spans']:>6}"

    lines = [
        f"project {summary['project_id']}: {summary['tasks']} tasks with several annotators "
        f"({', '.join(summary['annotators'])}); target F1 {summary['target_f1']:.2f}; the verdict compares the "
        "target with the 95% interval",
        f"{'type':<16}{'agreeF1':>7} {'95% interval':<16}{'partial':>8} {'95% interval':<16}{'spans':>6}"
        f"{'modelF1':>9}  ceiling",
    ]
    for label, row in summary["per_type"].items():
        model = "-" if row["model_f1"] is None else f"{row['model_f1']:.3f}"
        lines.append(f"{label:<16}{cells(row)}{model:>9}  {_VERDICT[row['ceiling']]}")
    lines.append(f"{'micro':<16}{cells(summary['micro'])}")
    for pair in summary["pairs"]:
        lines.append(f"pair {pair['a']} / {pair['b']} ({pair['tasks']} tasks): {cells(pair['micro']).strip()}")
    if summary["left_out"]:
        lines.append(f"{summary['left_out']} annotation(s) could not be converted and were left out")
    return "\n".join(lines)
