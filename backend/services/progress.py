"""The leads' view of a project.

Labels per type against the guide's marks, F1 of every version against the target, the learning-curve forecast,
annotation throughput, and what pre-annotation costs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import AnnotationEvent, LLMCall, ModelVersion, Project, TaskLabel, TrainingRun
from backend.services.agreement import agreement_summary
from backend.services.comparison import latest_comparison
from backend.services.label_state import label_counts
from backend.services.lead_time import lead_time, seconds_per_label
from backend.services.projects import current_model, guide_of, metrics_of
from backend.services.review import review_summary
from backend.services.routing import routing_table
from backend.services.training import run_summary
from backend.services.watermark import labels_count
from ml.model_meta import ModelMetrics
from ml.progress import CurvePoint, forecast, label_mark

THROUGHPUT_DAYS = 7
T = TypeVar("T")


class _ByWatermark:
    """What the dashboard counts over every label of a project, remembered per (database, project, label watermark).

    Counting takes 0.6 s at 310,000 spans, 100,000 events and 100,000 labelled tasks. The labels change only with the
    watermark, so a dashboard refreshed between two label events costs one indexed read. ``ttl_s`` also bounds the age
    of a figure that depends on the clock (throughput). Bounded (``size`` entries, oldest dropped); thread-safe.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: Session, project: Project, what: str, compute: Callable[[], T], *, ttl_s: float = 0) -> T:
        # the project's creation time tells apart two projects with one id in databases created one after another
        key = (str(db.get_bind().engine.url), project.id, project.created_at, labels_count(db, project), what)
        now = datetime.now(UTC).timestamp()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and (not ttl_s or now - hit[0] < ttl_s):
                self._items.move_to_end(key)
                return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


_cached = _ByWatermark()


def llm_costs(db: Session, project: Project) -> dict[str, Any]:
    """What LLM pre-annotation has cost: calls, tokens, dollars, dropped entities, and per 1,000 documents."""
    calls, prompt, completion, cost, dropped = db.execute(
        select(
            func.count(),
            func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
            func.coalesce(func.sum(LLMCall.completion_tokens), 0),
            func.coalesce(func.sum(LLMCall.cost_usd), 0.0),
            func.coalesce(func.sum(LLMCall.dropped), 0),
        ).where(LLMCall.project_id == project.id)
    ).one()
    per_1000 = 1000.0 / calls if calls else None
    return {
        "calls": calls,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": float(cost),
        "dropped_entities": dropped,
        "per_1000_docs": None
        if per_1000 is None
        else {"tokens": round((prompt + completion) * per_1000), "cost_usd": float(cost) * per_1000},
    }


RUNS_SHOWN = 10
SERVED = ("promoted", "retired")  # versions that served; candidates and rejected ones are shown, never "latest"


def project_progress(db: Session, project: Project, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as JSON-ready data.

    Labels are counted from the materialised label state (each task's latest live annotation, one query, done
    again only when the label watermark moved). A type's "latest" figures are the serving version's, with their
    95% interval and support; its learning curve plots each version that served (F1 against the labels of that
    type it was trained on), the serving one last; the forecast adds a band and annotator hours (the project's
    seconds per label, from Label Studio's ``lead_time``). Rejected candidates appear in ``versions`` only.
    """
    guide = guide_of(project)
    targets = guide.targets
    counts = _cached.get(db, project, "label_counts", lambda: label_counts(db, project))
    versions = list(
        db.scalars(
            select(ModelVersion)
            .where(ModelVersion.project_id == project.id)
            .order_by(ModelVersion.created_at, ModelVersion.id)
        )
    )
    served = [v for v in versions if v.status in SERVED and v.version != project.current_version]
    served += [v for v in versions if v.version == project.current_version]
    pace = _cached.get(db, project, "lead_time", lambda: lead_time(db, project))
    measured = [m for m in map(metrics_of, served) if m is not None and m.train_labels is not None]
    types = []
    for label in guide.labels:
        curve = [_point(m, label) for m in measured if label in m.per_type]
        labels = counts.get(label, 0)
        seconds = seconds_per_label(pace, labels)
        types.append(
            {
                "label": label,
                "labels": labels,
                "mark": label_mark(labels, usable=targets.usable_labels, good=targets.good_labels),
                "curve": [asdict(p) for p in curve],
                "forecast": asdict(forecast(curve, labels=labels, target=targets.f1, seconds_per_label=seconds)),
                "seconds_per_label": seconds,
            }
        )
    return {
        "project_id": project.id,
        "name": project.name,
        "targets": {"f1": targets.f1, "usable_labels": targets.usable_labels, "good_labels": targets.good_labels},
        "serving": project.current_version,
        "types": types,
        "versions": [_version(v, guide.labels, targets.f1) for v in versions],
        "throughput": _cached.get(
            db, project, "throughput", lambda: _throughput(db, project, now or datetime.now(UTC)), ttl_s=60
        )
        if now is None
        else _throughput(db, project, now),
        "llm_costs": llm_costs(db, project),
        "comparison": latest_comparison(db, project),  # prompting vs fine-tuning (issue #13)
        "runs": [
            run_summary(run)
            for run in db.scalars(
                select(TrainingRun)
                .where(TrainingRun.project_id == project.id)
                .order_by(TrainingRun.id.desc())
                .limit(RUNS_SHOWN)
            )
        ],
        "routing": [asdict(entry) for entry in routing_table(db, project).values()],
        # agreement converts every task with two or more annotations: done again only when the labels or the
        # serving version (its F1 stands beside the agreement) changed
        "agreement": _cached.get(
            db, project, f"agreement@{project.current_version}", partial(agreement_summary, db, project)
        ),
        "review": review_summary(db, project),  # the latest pass over likely-mislabelled spans (issue #15)
    }


def projects_overview(db: Session) -> list[dict[str, Any]]:
    """Every project in one line each.

    Labelled tasks and labels (spans; counted per label watermark, as on the project's page), the serving version, how
    many of the guide's types meet the target F1 with it (measurable on the test half and at or above the target), and
    the newest training run.
    """
    out = []
    for project in db.scalars(select(Project).order_by(Project.id)):
        guide = guide_of(project)
        counts = _cached.get(db, project, "label_counts", partial(label_counts, db, project))
        tasks = db.scalar(select(func.count()).select_from(TaskLabel).where(TaskLabel.project_id == project.id))
        serving = current_model(db, project)
        metrics = metrics_of(serving) if serving is not None else None
        at_target = [
            label
            for label in guide.labels
            if metrics is not None and _measurable(metrics, label) and metrics.per_type[label].f1 >= guide.targets.f1
        ]
        run = db.scalar(
            select(TrainingRun).where(TrainingRun.project_id == project.id).order_by(TrainingRun.id.desc()).limit(1)
        )
        out.append(
            {
                "project_id": project.id,
                "ls_project_id": project.ls_project_id,
                "name": project.name,
                "serving": project.current_version,
                "labelled_tasks": int(tasks or 0),
                "labels": sum(counts.values()),
                "types": len(guide.labels),
                "types_at_target": len(at_target),
                "latest_run": None if run is None else run_summary(run),
            }
        )
    return out


def _measurable(metrics: ModelMetrics, label: str) -> bool:
    """Whether the type's F1 is shown (a type without support is not measured, never an F1 of 0)."""
    return metrics.measurable_f1(label) is not None


def _point(metrics: ModelMetrics, label: str) -> CurvePoint:
    score = metrics.per_type[label]
    labels = (metrics.train_labels or {}).get(label, 0)
    return CurvePoint(labels, score.f1, score.f1_interval, _measurable(metrics, label))


def _version(row: ModelVersion, labels: list[str], target: float) -> dict[str, Any]:
    metrics = metrics_of(row)
    per_type = {label: metrics.per_type[label] for label in labels if label in metrics.per_type} if metrics else {}
    return {
        "version": row.version,
        "status": row.status,
        "architecture": row.architecture,
        "created_at": row.created_at.isoformat(),
        "micro_f1": metrics.micro.f1 if metrics is not None else None,
        "micro_f1_interval": _listed(metrics.micro_f1_interval) if metrics is not None else None,
        "f1": {label: score.f1 for label, score in per_type.items()},
        "f1_interval": {label: _listed(score.f1_interval) for label, score in per_type.items()},
        "support": {label: score.support for label, score in per_type.items()},
        "measurable": {label: metrics is not None and _measurable(metrics, label) for label in per_type},
        "meets_target": {label: score.f1 >= target for label, score in per_type.items()},
        "evaluated_on": metrics.evaluated_on if metrics is not None else "dev",
    }


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    """An interval as the stored JSON has it (a list), as this dict always gave it."""
    return None if interval is None else list(interval)


def _throughput(db: Session, project: Project, now: datetime) -> dict[str, Any]:
    """Annotations created per day over the last week, and in the last 24 hours (skips are not annotations)."""
    since = now - timedelta(days=THROUGHPUT_DAYS)
    created = (
        AnnotationEvent.project_id == project.id,
        AnnotationEvent.action == "ANNOTATION_CREATED",
        AnnotationEvent.label_change.is_(True),
    )
    # counted by the database, one row per UTC day: a busy week is 100,000 events
    received = AnnotationEvent.received_at
    day = (
        func.date(func.timezone("UTC", received)) if db.get_bind().dialect.name == "postgresql" else func.date(received)
    )
    per_day = {
        str(date): int(count)
        for date, count in db.execute(
            select(day, func.count())
            .where(*created, received >= since.replace(hour=0, minute=0, second=0, microsecond=0))
            .group_by(day)
        )
    }
    last_24h = db.scalar(select(func.count()).where(*created, received >= now - timedelta(hours=24)))
    days = [(now - timedelta(days=d)).date() for d in range(THROUGHPUT_DAYS - 1, -1, -1)]
    return {
        "last_24h": int(last_24h or 0),
        "per_day": [{"date": day.isoformat(), "annotations": per_day.get(day.isoformat(), 0)} for day in days],
    }
