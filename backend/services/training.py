"""Retraining: when it is due, one run per label watermark, snapshot, train, evaluate, promote or refuse."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from spacy.tokens import Doc
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import AnnotationEvent, ModelVersion, Project, TrainingRun, utcnow
from backend.db.session import session_scope
from backend.db.upsert import upsert
from backend.services.annotations import Reconciled, reconcile
from backend.services.errors import InvalidInputError, NotFoundError
from backend.services.label_state import convert_labels
from backend.services.projects import current_model, demote_serving, guide_of, project_by_id, record_model_version
from backend.settings import Settings
from ml.converters import to_jsonl
from ml.evaluation import evaluate
from ml.model_store import load_model
from ml.promotion import PromotionDecision, decide_promotion, in_dev_split
from ml.training import Progress, TrainSettings, train

FINAL = ("succeeded", "rejected", "failed")


class TaskSource(Protocol):
    """Where a run's annotations come from (Label Studio, or the stored webhook events)."""

    def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task with its annotations, in Label Studio's export shape."""
        ...


def labels_count(db: Session, project: Project) -> int:
    """The project's label watermark: how many events changed its labels (a live annotation created, changed
    or deleted; skips are not labels, see ``backend.services.label_state``). It only grows, so each value names
    one state of the labels."""
    query = (
        select(func.count())
        .select_from(AnnotationEvent)
        .where(AnnotationEvent.project_id == project.id, AnnotationEvent.label_change.is_(True))
    )
    return int(db.scalar(query) or 0)


def request_run(db: Session, project: Project, *, trigger: str, watermark: int) -> tuple[TrainingRun, bool]:
    """The run of ``(project, watermark)``, created if new; a second request for it is a no-op."""
    created = db.execute(
        upsert(db, TrainingRun)
        .values(
            project_id=project.id,
            annotation_watermark=watermark,
            trigger=trigger,
            status="queued",
            stage="queued",
            progress=0.0,
            details={},
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["project_id", "annotation_watermark"])
        .returning(TrainingRun.id)
    ).scalar_one_or_none()
    run = db.scalars(
        select(TrainingRun).where(TrainingRun.project_id == project.id, TrainingRun.annotation_watermark == watermark)
    ).one()
    if created is None and run.status == "failed":  # a failed run may be asked for again
        run.status, run.stage, run.progress, run.error, run.trigger = "queued", "queued", 0.0, None, trigger
        run.created_at, run.started_at, run.finished_at = utcnow(), None, None
        db.flush()
        return run, True
    return run, created is not None


def expire_stale_runs(db: Session, project: Project, *, limit_s: int) -> int:
    """Mark failed the runs still "running" or "queued" long after any training could have ended
    (their worker died); return how many."""
    cutoff = utcnow() - timedelta(seconds=limit_s + 600)
    stale = list(
        db.scalars(
            select(TrainingRun).where(
                TrainingRun.project_id == project.id,
                ((TrainingRun.status == "running") & (TrainingRun.started_at < cutoff))
                | ((TrainingRun.status == "queued") & (TrainingRun.created_at < cutoff)),
            )
        )
    )
    for run in stale:
        run.status, run.finished_at = "failed", utcnow()
        run.error = f"no result after {limit_s + 600} s: the worker was lost or the run timed out; retrain again"
    return len(stale)


def retrain_if_due(db: Session, project: Project) -> TrainingRun | None:
    """Start a run when the labels cross the next multiple of the project's threshold.

    Runs are keyed by that multiple, so concurrent or duplicated triggers compute the same watermark and
    the unique constraint lets exactly one of them create the run.
    """
    watermark = labels_count(db, project) // project.retrain_threshold * project.retrain_threshold
    last = db.scalar(select(func.max(TrainingRun.annotation_watermark)).where(TrainingRun.project_id == project.id))
    if watermark == 0 or watermark <= (last or 0):
        return None
    busy = db.scalar(
        select(func.count())
        .select_from(TrainingRun)
        .where(TrainingRun.project_id == project.id, TrainingRun.status.in_(("queued", "running")))
    )
    if busy:  # the next label event after that run ends starts the next one, on newer data
        return None
    run, created = request_run(db, project, trigger="threshold", watermark=watermark)
    return run if created else None


def manual_run(db: Session, project: Project, *, trigger: str) -> tuple[TrainingRun, bool]:
    """A run asked for by a person (button, CLI, API) at the current watermark."""
    watermark = labels_count(db, project)
    if watermark == 0:
        raise InvalidInputError(f"project {project.id} has no labels yet; annotate some tasks first")
    return request_run(db, project, trigger=trigger, watermark=watermark)


def run_by_id(db: Session, run_id: int) -> TrainingRun:
    """A training run."""
    run = db.get(TrainingRun, run_id)
    if run is None:
        raise NotFoundError(f"training run {run_id} does not exist")
    return run


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended."""

    status: str
    model_version: str | None
    decision: PromotionDecision | None


def split_snapshot(
    tasks: list[dict[str, Any]], project: Project, *, dev_fraction: float
) -> tuple[list[Doc], list[Doc], dict[str, int]]:
    """Annotated tasks -> (train docs, frozen dev docs, conversion issues counted per kind and action)."""
    result = convert_labels(project, tasks)
    project_key = str(project.ls_project_id)
    train_docs: list[Doc] = []
    dev_docs: list[Doc] = []
    for doc in result.docs:
        task_id = int(doc.user_data["task_id"])
        (dev_docs if in_dev_split(project_key, task_id, fraction=dev_fraction) else train_docs).append(doc)
    return train_docs, dev_docs, dict(Counter(f"{i.kind} ({i.action})" for i in result.issues))


class Trainer:
    """Runs one training run end to end; safe to call again for the same run (a finished run is a no-op)."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, source: Callable[[Session, Project], TaskSource]
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.source = source

    def run(self, run_id: int) -> RunOutcome:
        """Snapshot, train, evaluate against the serving model on the frozen dev split, promote or refuse."""
        with session_scope(self.sessions) as db:
            run = run_by_id(db, run_id)
            # claim the run atomically: a redelivery while it trains, or after it ended, does nothing
            claimed = db.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.status == "queued")
                .values(status="running", stage="snapshot", started_at=utcnow(), error=None)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return RunOutcome(run.status, run.model_version, None)
            project = project_by_id(db, run.project_id)
        try:
            with session_scope(self.sessions) as db:
                as_of = db.scalar(select(func.max(AnnotationEvent.id)))
                tasks = self.source(db, project).export_tasks(project.ls_project_id)
            with session_scope(self.sessions) as db:  # events that never arrived: the state catches up
                synced = reconcile(db, project_by_id(db, project.id), tasks, as_of=as_of)
            return self._train_and_decide(run_id, project, tasks, synced)
        except Exception as exc:  # recorded on the run; the serving model is untouched
            with session_scope(self.sessions) as db:
                run = run_by_id(db, run_id)
                run.status, run.finished_at = "failed", utcnow()
                run.error = f"{type(exc).__name__}: {exc}"
            return RunOutcome("failed", None, None)

    def _train_and_decide(
        self, run_id: int, project: Project, tasks: list[dict[str, Any]], synced: Reconciled
    ) -> RunOutcome:
        guide = guide_of(project)
        train_docs, dev_docs, issues = split_snapshot(tasks, project, dev_fraction=self.settings.dev_fraction)
        if not dev_docs or not train_docs:
            raise InvalidInputError(
                f"{len(train_docs)} training and {len(dev_docs)} dev tasks are labelled; "
                "both need at least one (label more tasks)"
            )
        root = Path(self.settings.model_root) / f"project-{project.id}"
        snapshot = root / "snapshots" / f"run-{run_id}.jsonl"
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(to_jsonl(train_docs + dev_docs), encoding="utf-8")
        settings = TrainSettings(
            architecture=self.settings.retrain_architecture,
            max_steps=self.settings.retrain_max_steps,
            eval_frequency=100,
        )
        trained = train(
            train_docs, dev_docs, guide, settings=settings, output_root=root, on_progress=self._reporter(run_id)
        )
        self._stage(run_id, "compare", 1.0)
        with session_scope(self.sessions) as db:
            project = project_by_id(db, project.id)
            serving_row = current_model(db, project)
            serving = (
                evaluate(load_model(serving_row.path), dev_docs, labels=guide.labels, target_f1=guide.targets.f1)
                if serving_row is not None
                else None
            )
            decision = decide_promotion(trained.dev_report, serving, tolerance=self.settings.promotion_tolerance)
            row = record_model_version(
                db,
                project,
                version=trained.version,
                path=str(trained.path),
                architecture=settings.architecture,
                # the labels per type it was trained on: the x of the leads' learning curves
                metrics={**trained.meta["metrics"], "train_labels": trained.meta["data"]["train_entities_per_type"]},
                promote=decision.promote,
            )
            if not decision.promote:
                row.status = "rejected"
            run = run_by_id(db, run_id)
            run.status = "succeeded" if decision.promote else "rejected"
            run.stage, run.progress, run.finished_at, run.model_version = "done", 1.0, utcnow(), trained.version
            run.details = {
                "decision": decision.reason,
                "train_docs": len(train_docs),
                "dev_docs": len(dev_docs),
                "conversion_issues": sum(issues.values()),
                "conversion_issues_by_kind": issues,
                # label changes the snapshot held that no webhook event had brought
                "reconciled_label_changes": synced.label_changes,
                "reconciled_malformed": synced.malformed,
                "snapshot": str(snapshot),
                "dev_micro_f1": trained.dev_report.micro.f1,
            }
        return RunOutcome(run.status, trained.version, decision)

    def _stage(self, run_id: int, stage: str, progress: float, eta_s: float | None = None) -> None:
        with session_scope(self.sessions) as db:
            run = run_by_id(db, run_id)
            run.stage, run.progress, run.eta_s = stage, progress, eta_s

    def _reporter(self, run_id: int) -> Callable[[Progress], None]:
        last = [0.0]

        def report(progress: Progress) -> None:
            if time.monotonic() - last[0] >= 1.0 or progress.fraction >= 1.0:
                last[0] = time.monotonic()
                self._stage(run_id, progress.stage, round(progress.fraction, 4), progress.eta_s)

        return report


def run_summary(run: TrainingRun) -> dict[str, Any]:
    """A run as the API and CLI show it."""
    return {
        "id": run.id,
        "project_id": run.project_id,
        "watermark": run.annotation_watermark,
        "trigger": run.trigger,
        "status": run.status,
        "stage": run.stage,
        "progress": run.progress,
        "eta_s": run.eta_s,
        "error": run.error,
        "model_version": run.model_version,
        "details": json.loads(json.dumps(run.details)),
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def rollback(db: Session, project: Project, *, version: str) -> ModelVersion:
    """Serve an earlier version again (every version is kept); the caller commits."""
    row = db.scalar(select(ModelVersion).where(ModelVersion.project_id == project.id, ModelVersion.version == version))
    if row is None:
        known = ", ".join(db.scalars(select(ModelVersion.version).where(ModelVersion.project_id == project.id)))
        raise NotFoundError(f"project {project.id} has no model version {version!r} (it has: {known or 'none'})")
    demote_serving(db, project)
    project.current_version = version
    row.status = "promoted"
    return row
