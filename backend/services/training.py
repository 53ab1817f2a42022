"""Retraining: when it is due, one run per label watermark, snapshot, train, evaluate, promote or refuse."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spacy.tokens import Doc
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import AnnotationEvent, ModelVersion, Project, TrainingRun, utcnow
from backend.db.session import session_scope
from backend.db.upsert import upsert
from backend.errors import InvalidInputError, NotFoundError, RunLostError
from backend.ports import TaskSource
from backend.services.annotations import Reconciled, reconcile
from backend.services.label_state import convert_labels
from backend.services.projects import current_model, demote_serving, guide_of, project_by_id, record_model_version
from backend.services.run_liveness import heartbeat_interval, owned, remove_leftovers, run_heartbeat, worker_identity
from backend.services.watermark import BUSY, due_watermark, labels_count
from backend.settings import Settings
from ml.converters import to_jsonl
from ml.evaluation import evaluate
from ml.model_store import load_model
from ml.promotion import PromotionDecision, decide_promotion, held_out_role
from ml.training import Progress, TrainSettings, train

FINAL = ("succeeded", "rejected", "failed")
log = logging.getLogger(__name__)


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
        run.created_at, run.started_at, run.finished_at, run.heartbeat_at = utcnow(), None, None, None
        run.host, run.pid, run.output_dir, run.model_version, run.sent_at, run.resends = None, None, None, None, None, 0
        db.flush()
        return run, True
    return run, created is not None


AUTOMATIC_ATTEMPTS = 3


def retrain_if_due(db: Session, project: Project, *, retry_failed: bool = True) -> TrainingRun | None:
    """Start a run when the label-change events cross the next multiple of the project's threshold.

    Runs are keyed by that multiple, so concurrent or duplicated triggers compute the same watermark and
    the unique constraint lets exactly one of them create the run. A failed run does not count as done: a label
    event asks for it again (``retry_failed``), up to ``AUTOMATIC_ATTEMPTS`` attempts in all; the periodic sweep
    does not. So a run that always dies (out of memory, too few dev tasks) is not retried forever; a person's
    request (``manual_run``) always tries again.
    """
    watermark = due_watermark(db, project)
    if watermark is None:
        return None
    failed = db.scalar(
        select(TrainingRun).where(TrainingRun.project_id == project.id, TrainingRun.annotation_watermark == watermark)
    )
    if failed is not None and (not retry_failed or failed.attempt >= AUTOMATIC_ATTEMPTS):
        return None  # a run that keeps failing waits for a person (retrain) or the next threshold
    busy = db.scalar(
        select(func.count())
        .select_from(TrainingRun)
        .where(TrainingRun.project_id == project.id, TrainingRun.status.in_(BUSY))
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


@dataclass(frozen=True)
class Snapshot:
    """A run's labelled tasks by role (``ml.promotion.held_out_role``), and the conversion issues per kind."""

    train: list[Doc]
    dev: list[Doc]
    test: list[Doc]
    issues: dict[str, int]


def split_snapshot(tasks: list[dict[str, Any]], project: Project, *, dev_fraction: float) -> Snapshot:
    """Annotated tasks -> training, dev (checkpoint selection, calibration) and test (every figure shown) docs.

    A task's role depends only on the project and task ids: ``dev_fraction`` of the tasks are held out, half of
    them dev and half test.
    """
    result = convert_labels(project, tasks)
    project_key = str(project.ls_project_id)
    roles: dict[str, list[Doc]] = {"train": [], "dev": [], "test": []}
    for doc in result.docs:
        roles[held_out_role(project_key, int(doc.user_data["task_id"]), fraction=dev_fraction)].append(doc)
    issues = dict(Counter(f"{i.kind} ({i.action})" for i in result.issues))
    return Snapshot(roles["train"], roles["dev"], roles["test"], issues)


@dataclass(frozen=True)
class _Claim:
    """One attempt at a run, owned by this process."""

    run_id: int
    attempt: int
    project: Project
    # <model_root>/project-<id>/.run-<run>-<attempt>: the version is written here, then moved beside the others
    output_dir: Path


class Trainer:
    """Runs one training run end to end; safe to call again for the same run (a finished run is a no-op)."""

    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, source: Callable[[Session, Project], TaskSource]
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.source = source

    def run(self, run_id: int) -> RunOutcome:
        """Snapshot, train, evaluate against the serving model on the frozen dev split, promote or refuse.

        A heartbeat shows the run is alive while it works (``backend.services.run_liveness``).
        """
        claim = self._claim(run_id)
        if isinstance(claim, RunOutcome):
            return claim
        interval_s = heartbeat_interval(self.settings.run_heartbeat_timeout_s)
        with run_heartbeat(self.sessions, run_id, attempt=claim.attempt, interval_s=interval_s):
            try:
                with session_scope(self.sessions) as db:
                    as_of = db.scalar(select(func.max(AnnotationEvent.id)))
                    db.commit()  # no connection held while Label Studio exports (the stored source takes one)
                    tasks = self.source(db, claim.project).export_tasks(claim.project.ls_project_id)
                with session_scope(self.sessions) as db:  # events that never arrived: the state catches up
                    synced = reconcile(db, project_by_id(db, claim.project.id), tasks, as_of=as_of)
                return self._train_and_decide(claim, tasks, synced)
            except RunLostError:
                log.warning(
                    "run %s attempt %s was expired while it trained; its result is dropped", run_id, claim.attempt
                )
                return RunOutcome("failed", None, None)
            except Exception as exc:  # recorded on the run; the serving model is untouched
                log.exception("run %s failed", run_id)  # the traceback, for the worker log
                self._fail(claim, f"{type(exc).__name__}: {exc}")
                return RunOutcome("failed", None, None)
            finally:
                shutil.rmtree(claim.output_dir, ignore_errors=True)

    def _claim(self, run_id: int) -> _Claim | RunOutcome:
        host, pid = worker_identity()
        with session_scope(self.sessions) as db:
            run = run_by_id(db, run_id)
            attempt = run.attempt + 1
            root = Path(self.settings.model_root).resolve() / f"project-{run.project_id}"
            output_dir = root / f".run-{run_id}-{attempt}"
            # claim the run atomically: a redelivery while it trains, or after it ended, does nothing. Where it
            # writes is recorded before it writes, so that the leftovers of a process that dies can be found.
            now = utcnow()
            claimed = db.execute(
                update(TrainingRun)
                .where(TrainingRun.id == run_id, TrainingRun.status == "queued", TrainingRun.attempt == run.attempt)
                .values(
                    status="running",
                    stage="snapshot",
                    started_at=now,
                    heartbeat_at=now,
                    error=None,
                    host=host,
                    pid=pid,
                    attempt=attempt,
                    output_dir=str(output_dir),
                )
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                db.refresh(run)
                return RunOutcome(run.status, run.model_version, None)
            project = project_by_id(db, run.project_id)
        return _Claim(run_id, attempt, project, output_dir)

    def _fail(self, claim: _Claim, error: str) -> None:
        with session_scope(self.sessions) as db:
            run = db.scalars(select(TrainingRun).where(owned(claim.run_id, claim.attempt))).one_or_none()
            if run is None:  # expired meanwhile: the expiry recorded why
                return
            run.status, run.finished_at, run.error = "failed", utcnow(), error
            remove_leftovers(db, run)

    def _train_and_decide(self, claim: _Claim, tasks: list[dict[str, Any]], synced: Reconciled) -> RunOutcome:
        guide = guide_of(claim.project)
        split = split_snapshot(tasks, claim.project, dev_fraction=self.settings.dev_fraction)
        train_docs, dev_docs, test_docs = split.train, split.dev, split.test
        if not train_docs:
            raise InvalidInputError(
                f"no training task is labelled yet ({len(dev_docs) + len(test_docs)} held-out ones are); "
                "label more tasks"
            )
        # with no dev task yet the checkpoint is chosen on the training docs and the calibration stays the prior;
        # with too few test tasks the figures say "not yet measurable": the run trains and serves all the same
        selection = dev_docs or train_docs
        root = claim.output_dir.parent
        snapshot = root / "snapshots" / f"run-{claim.run_id}.jsonl"
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(to_jsonl(train_docs + dev_docs + test_docs), encoding="utf-8")
        refresh = {  # None: TrainSettings' default
            "warm_shrink": self.settings.retrain_warm_shrink,
            "warm_noise": self.settings.retrain_warm_noise,
            "warm_max_new_share": self.settings.retrain_warm_max_new_share,
        }
        settings = TrainSettings(
            architecture=self.settings.retrain_architecture,
            max_steps=self.settings.retrain_max_steps,
            min_steps=min(self.settings.retrain_min_steps, self.settings.retrain_max_steps),
            learn_rate=self.settings.retrain_learn_rate,
            batch_size=self.settings.retrain_batch_size,
            eval_frequency=self.settings.retrain_eval_frequency,
            warm_start=self.settings.retrain_warm_start,
            **{k: v for k, v in refresh.items() if v is not None},
            cold_every=self.settings.retrain_cold_every,
        )
        with session_scope(self.sessions) as db:  # the version it may warm-start from; the gate re-reads it
            serving_now = current_model(db, project_by_id(db, claim.project.id))
            warm_from = serving_now.path if serving_now is not None else None
        self._stage(claim, "train", 0.0)
        trained = train(
            train_docs,
            selection,
            guide,
            settings=settings,
            output_root=claim.output_dir,
            on_progress=self._reporter(claim),
            warm_from=warm_from,
            test_docs=test_docs,
            calibrate=bool(dev_docs),
        )
        # the gate and the figures use the test half; while it holds no gold span yet (a young project) they fall
        # back to the dev half, flagged: optimistic (it chose the checkpoint), but better than promoting unchecked
        on_test = trained.test_report is not None and any(s.support for s in trained.test_report.per_type.values())
        gate_docs = test_docs if on_test or not dev_docs else dev_docs
        candidate = trained.report if on_test or not dev_docs else trained.dev_report
        log.info("run %s: %s start, %s", claim.run_id, trained.initialisation.mode, trained.initialisation.reason)
        # the version's name is recorded before it moves beside the others: if this process dies before the version
        # is recorded, the expiry finds and removes it
        self._stage(claim, "compare", 1.0, model_version=trained.version)
        with session_scope(self.sessions) as db:
            mine = select(TrainingRun.id).where(owned(claim.run_id, claim.attempt)).with_for_update()
            if db.scalars(mine).first() is None:  # expired while it trained: another attempt may own the run now
                raise RunLostError(f"run {claim.run_id} attempt {claim.attempt} was expired")
            project = project_by_id(db, claim.project.id)
            serving_row = current_model(db, project)
            serving = (  # on the same documents: the gate compares the two, paired
                evaluate(load_model(serving_row.path), gate_docs, labels=guide.labels, target_f1=guide.targets.f1)
                if serving_row is not None
                else None
            )
            decision = decide_promotion(candidate, serving, tolerance=self.settings.promotion_tolerance)
            path = trained.path.rename(root / trained.version)
            row = record_model_version(
                db,
                project,
                version=trained.version,
                path=str(path),
                architecture=trained.meta.architecture,
                # with the labels per type it was trained on: the x of the leads' learning curves
                metrics=trained.metrics,
                promote=decision.promote,
            )
            if not decision.promote:
                row.status = "rejected"
            run = run_by_id(db, claim.run_id)
            run.status = "succeeded" if decision.promote else "rejected"
            run.stage, run.progress, run.finished_at, run.model_version = "done", 1.0, utcnow(), trained.version
            run.details = {
                "decision": decision.reason if on_test else f"{decision.reason} (on the dev half: no test span yet)",
                "gate_on": "test" if gate_docs is test_docs else "dev",
                # per type: serving and candidate test F1, the difference with its paired-bootstrap interval, why
                "gate": {label: asdict(c) for label, c in decision.per_type.items()},
                "train_docs": len(train_docs),
                "dev_docs": len(dev_docs),
                "test_docs": len(test_docs),
                "conversion_issues": sum(split.issues.values()),
                "conversion_issues_by_kind": split.issues,
                # label changes the snapshot held that no webhook event had brought
                "reconciled_label_changes": synced.label_changes,
                "reconciled_malformed": synced.malformed,
                "snapshot": str(snapshot),
                "dev_micro_f1": trained.dev_report.micro.f1,
                "test_micro_f1": candidate.micro.f1,
                "test_micro_f1_interval": candidate.micro_f1_interval,
                # warm or cold, why, the step budget and the new training docs (ml.training.warm_start)
                "initialisation": trained.initialisation.to_dict(),
                # what looks wrong with the model (ml.training.train.training_warnings): a model that predicts
                # almost nothing on dev
                "warnings": list(trained.warnings),
            }
        return RunOutcome(run.status, trained.version, decision)

    def _stage(self, claim: _Claim, stage: str, progress: float, eta_s: float | None = None, **extra: Any) -> None:
        """Report progress (which also beats the heartbeat); raise ``RunLostError`` if the run is no longer ours."""
        with session_scope(self.sessions) as db:
            done = db.execute(
                update(TrainingRun)
                .where(owned(claim.run_id, claim.attempt))
                .values(stage=stage, progress=progress, eta_s=eta_s, heartbeat_at=utcnow(), **extra)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise RunLostError(f"run {claim.run_id} attempt {claim.attempt} was expired")

    def _reporter(self, claim: _Claim) -> Callable[[Progress], None]:
        last = [0.0]

        def report(progress: Progress) -> None:
            if time.monotonic() - last[0] >= 1.0 or progress.fraction >= 1.0:
                last[0] = time.monotonic()
                self._stage(claim, progress.stage, round(progress.fraction, 4), progress.eta_s)

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
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        # the process that trains (or trained) it: host and pid
        "worker": f"{run.host}:{run.pid}" if run.host else None,
        "attempt": run.attempt,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def rollback(db: Session, project: Project, *, version: str) -> ModelVersion:
    """Serve an earlier version again (every version is kept); no commit (``operations.roll_back`` commits)."""
    row = db.scalar(select(ModelVersion).where(ModelVersion.project_id == project.id, ModelVersion.version == version))
    if row is None:
        known = ", ".join(db.scalars(select(ModelVersion.version).where(ModelVersion.project_id == project.id)))
        raise NotFoundError(f"project {project.id} has no model version {version!r} (it has: {known or 'none'})")
    demote_serving(db, project)
    project.current_version = version
    row.status = "promoted"
    return row
