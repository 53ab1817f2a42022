"""Prompting vs fine-tuning for a project, from its own labels (issue #13).

``ml.compare`` on the project's labelled training tasks against its held-out *test* tasks (the split of
``backend.services.training.split_snapshot``, by ``ml.promotion.held_out_role``), its dev tasks choosing the checkpoints
and the router's types. Labelling is priced with the annotators' time Label Studio recorded (``lead_time``) when the
project has it.

One comparison per (project, label watermark): asking again at the same labels returns the one there is, unless it
failed, its process stopped beating (a thread beats while it runs), its message was lost (queued longer than the
train queue's longest task), or it succeeded with other options; other options while one is queued or running are
a conflict (409). The options are bounded (``MAX_SHOTS``, ``MAX_POINTS``, ``MAX_STEPS``) and the job has a time
limit (NER_COMPARE_TIME_LIMIT_S): the ``train`` queue runs it (it trains models) beside the retrains. Its stage and
progress are on the row while it runs, and the report's data once it ends. The answer cache
and the trained sizes live under ``<model_root>/project-<id>/comparisons/``, so a comparison at more labels asks the
LLM only about documents it has no answer for.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.db.models import Comparison, Project, utcnow
from backend.db.session import session_scope
from backend.db.upsert import upsert
from backend.errors import ComparisonConflictError, InvalidInputError, NotFoundError, UpstreamError
from backend.ports import JobQueue, TaskName, TaskSource
from backend.services.label_state import label_counts
from backend.services.lead_time import lead_time, seconds_per_label
from backend.services.projects import guide_of, project_by_id
from backend.services.run_liveness import Heartbeat, aware, heartbeat_interval
from backend.services.training import Snapshot, split_snapshot
from backend.services.watermark import labels_count
from backend.settings import Settings
from ml.compare import CompareOptions, CompareProgress, LLMEndpoint, compare
from ml.compare_report import write_report
from ml.costs import CostSettings
from ml.training import TrainSettings
from ml.training.settings import Architecture

FINAL = ("succeeded", "failed")
PROGRESS_EVERY_S = 1.0
# Bounds of a comparison's options: it runs on the train queue (one process), so a request may not ask for work
# that holds every retrain back for hours (workers.compare_project's time limit is the last resort).
MAX_SHOTS = 20  # demonstrations per prompt: more outgrow a small model's context and the prompt's bill
MAX_POINTS = 8  # entries of `shots` and of `sizes` (each is a row: LLM requests or a training)
MAX_STEPS = 20_000  # CNN steps per size (NER_RETRAIN_MAX_STEPS is 2,000)
log = logging.getLogger(__name__)
_DEFAULT_COSTS = CostSettings()


class ComparisonOptions(BaseModel):
    """What a project's comparison runs (the API's and the CLI's options; stored with the comparison).

    Prices left unset come from the settings (``NER_LLM__PRICE_*_PER_MILLION`` when they are set) or from
    ``ml.costs.CostSettings``'s documented defaults; ``seconds_per_label`` from Label Studio's ``lead_time``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    shots: tuple[Annotated[int, Field(ge=0, le=MAX_SHOTS)], ...] = Field(
        default=(0, 5),
        max_length=MAX_POINTS,
        description=f"demonstrations per LLM prompt, each 0 to {MAX_SHOTS}; empty: no LLM rows",
    )
    strategies: tuple[Literal["random", "similar"], ...] = Field(
        default=("random", "similar"), min_length=1, description="demonstrations of the k-shot rows"
    )
    sizes: tuple[Annotated[int, Field(gt=0)] | None, ...] = Field(
        default=(50, 100, 200, 500, None),
        min_length=1,
        max_length=MAX_POINTS,
        description="training tasks per fine-tuned point, each 1 or more; null: all of them",
    )
    architectures: tuple[Architecture, ...] | None = Field(
        default=None, min_length=1, description="null: NER_RETRAIN_ARCHITECTURE"
    )
    limit_llm: int = Field(default=200, ge=0, description="LLM rows on a seeded random sample of N test tasks (0: all)")
    max_steps: int | None = Field(
        default=None, gt=0, le=MAX_STEPS, description="CNN steps per size; null: NER_RETRAIN_MAX_STEPS"
    )
    llm_input_per_1k: float | None = Field(default=None, ge=0)
    llm_output_per_1k: float | None = Field(default=None, ge=0)
    llm_compute_per_hour: float = Field(default=_DEFAULT_COSTS.llm_compute_per_hour, ge=0)
    compute_per_hour: float = Field(default=_DEFAULT_COSTS.compute_per_hour, ge=0)
    seconds_per_label: float | None = Field(default=None, ge=0, description="null: Label Studio's lead_time")
    annotator_per_hour: float = Field(default=_DEFAULT_COSTS.annotator_per_hour, ge=0)


def start_comparison(
    db: Session, project: Project, *, options: ComparisonOptions, heartbeat_timeout_s: float, queued_timeout_s: float
) -> tuple[Comparison, bool]:
    """The comparison of the project's current labels, created (or asked again) when needed.

    The caller commits, then enqueues ``workers.compare_project`` when the second value is True
    (:func:`request_comparison` does both).

    Asked again: one that failed, succeeded with other options, runs without a heartbeat for
    ``heartbeat_timeout_s`` (its process died: the worker beats from a thread while it runs), or has been queued
    for ``queued_timeout_s`` (its message was lost; a comparison may legitimately wait behind a long training, so
    this is the longest task of the train queue). A queued or running one with the same options is returned as it
    is (False).

    Raises:
        InvalidInputError: the project has no labels yet.
        ComparisonConflictError: a live comparison of these labels runs (or waits) with other options.
    """
    watermark = labels_count(db, project)
    if watermark == 0:
        raise InvalidInputError(f"project {project.id} has no labels yet; annotate some tasks first")
    wanted = options.model_dump(mode="json")
    created = db.execute(
        upsert(db, Comparison)
        .values(
            project_id=project.id,
            label_watermark=watermark,
            status="queued",
            stage="queued",
            progress=0.0,
            options=wanted,
            created_at=utcnow(),
            attempt=0,
        )
        .on_conflict_do_nothing(index_elements=["project_id", "label_watermark"])
        .returning(Comparison.id)
    ).scalar_one_or_none()
    row = db.scalars(
        select(Comparison).where(Comparison.project_id == project.id, Comparison.label_watermark == watermark)
    ).one()
    if created is not None:
        return row, True
    now = utcnow()
    last_beat = row.heartbeat_at or row.started_at or row.created_at
    silent = row.status == "running" and now - aware(last_beat) > timedelta(seconds=heartbeat_timeout_s)
    lost = row.status == "queued" and now - aware(row.created_at) > timedelta(seconds=queued_timeout_s)
    if row.status in ("queued", "running") and not (silent or lost):
        if row.options != wanted:
            raise ComparisonConflictError(
                f"comparison {row.id} of these {watermark} labels is {row.status} with other options "
                f"({_differences(row.options, wanted)}); wait until it ends (GET /api/projects/{project.id}"
                "/comparison), then ask again"
            )
        return row, False
    if row.status == "succeeded" and row.options == wanted:
        return row, False
    row.status, row.stage, row.progress, row.error, row.options = "queued", "queued", 0.0, None, wanted
    row.created_at, row.started_at, row.finished_at, row.heartbeat_at = now, None, None, None
    db.flush()
    return row, True


def request_comparison(
    db: Session, project: Project, *, options: ComparisonOptions, settings: Settings, jobs: JobQueue
) -> tuple[Comparison, bool]:
    """Start (:func:`start_comparison`), commit and, when new or asked again, enqueue the project's comparison.

    The API's and the CLI's one way in.

    Returns:
        The comparison, and whether a job was sent for it.

    Raises:
        InvalidInputError: the project has no labels yet.
        ComparisonConflictError: one of these labels is queued or running with other options.
        UpstreamError: the broker cannot be reached (the comparison is recorded failed: asking again re-sends it).
    """
    row, created = start_comparison(
        db,
        project,
        options=options,
        heartbeat_timeout_s=settings.run_heartbeat_timeout_s,
        queued_timeout_s=queued_timeout_s(settings),
    )
    db.commit()
    if created:
        try:
            jobs.enqueue(TaskName.COMPARE_PROJECT, row.id)
        except Exception as exc:
            error = f"the broker is unreachable ({type(exc).__name__}: {exc})"
            db.execute(
                update(Comparison)
                .where(Comparison.id == row.id, Comparison.status == "queued")
                .values(status="failed", finished_at=utcnow(), error=error)
            )
            db.commit()
            raise UpstreamError(f"comparison {row.id} was not sent: {error}; ask again once it is back") from None
    return row, created


def queued_timeout_s(settings: Settings) -> float:
    """How long a comparison may wait in the train queue before its message counts as lost.

    The longest task that queue runs (a training or a comparison).
    """
    return float(max(settings.train_time_limit_s, settings.compare_time_limit_s))


def _differences(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    keys = [k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k)]
    return "; ".join(f"{k} {stored.get(k)!r}, asked {wanted.get(k)!r}" for k in keys)


def comparison_by_id(db: Session, comparison_id: int) -> Comparison:
    """A comparison.

    Raises:
        NotFoundError: there is none with that id.
    """
    row = db.get(Comparison, comparison_id)
    if row is None:
        raise NotFoundError(f"comparison {comparison_id} does not exist")
    return row


def summary(row: Comparison) -> dict[str, Any]:
    """A comparison's state as the API shows it (without the report's data)."""
    return {
        "id": row.id,
        "project_id": row.project_id,
        "label_watermark": row.label_watermark,
        "status": row.status,
        "stage": row.stage,
        "progress": row.progress,
        "error": row.error,
        "options": row.options,
        "created_at": row.created_at.isoformat(),
        "started_at": row.started_at.isoformat() if row.started_at else None,
        "finished_at": row.finished_at.isoformat() if row.finished_at else None,
    }


def latest_comparison(db: Session, project: Project) -> dict[str, Any] | None:
    """The project's newest comparison (its state) and the figures of the newest one that succeeded.

    Returns:
        None before the first request; else ``summary`` of the newest request plus ``result``: None until one
        succeeded, else the report's data (``ml.compare_report.to_dict``: rows with exact and partial F1 and their
        95% intervals, per type, latency, throughput, tokens, cost per 1,000 docs, training and labelling costs,
        break-even volumes, per-type overtake labels, prices and rates) with ``comparison_id``,
        ``label_watermark`` (the labels it was made from) and ``finished_at``.
    """
    newest = db.scalars(
        select(Comparison).where(Comparison.project_id == project.id).order_by(Comparison.id.desc()).limit(1)
    ).first()
    if newest is None:
        return None
    done = db.scalars(
        select(Comparison)
        .where(Comparison.project_id == project.id, Comparison.status == "succeeded")
        .order_by(Comparison.finished_at.desc(), Comparison.id.desc())
        .limit(1)
    ).first()
    result = None
    if done is not None and done.result is not None:
        finished = done.finished_at.isoformat() if done.finished_at else None
        result = {
            "comparison_id": done.id,
            "label_watermark": done.label_watermark,
            "finished_at": finished,
            **done.result,
        }
    return {**summary(newest), "result": result}


def run_comparison(
    sessions: sessionmaker[Session],
    settings: Settings,
    comparison_id: int,
    *,
    source: Callable[[Session, Project], TaskSource],
    llm: LLMEndpoint | None,
) -> str:
    """Run one comparison end to end (the ``train`` queue's job); a finished or claimed one is left alone.

    Args:
        sessions: Database sessions.
        settings: Model root, dev fraction, retrain architecture and steps, LLM prices.
        comparison_id: The comparison.
        source: Where the project's annotations come from (Label Studio, or the stored events).
        llm: The project's LLM (None: only the fine-tuned rows).

    Returns:
        The comparison's status when it ends (``succeeded``, ``failed``), or its status when another process owns it.
    """
    claimed = _claim(sessions, comparison_id)
    if isinstance(claimed, str):
        return claimed
    project_id, attempt = claimed
    # one LLM request or one training step can keep the progress reports silent for minutes
    beat = Heartbeat(
        sessions,
        lambda: (
            update(Comparison)
            .where(Comparison.id == comparison_id, Comparison.attempt == attempt, Comparison.status == "running")
            .values(heartbeat_at=utcnow())
        ),
        name=f"comparison {comparison_id} attempt {attempt}",
        interval_s=heartbeat_interval(settings.run_heartbeat_timeout_s),
    )
    with beat:
        return _run(sessions, settings, comparison_id, attempt, project_id, source=source, llm=llm)


def _run(
    sessions: sessionmaker[Session],
    settings: Settings,
    comparison_id: int,
    attempt: int,
    project_id: int,
    *,
    source: Callable[[Session, Project], TaskSource],
    llm: LLMEndpoint | None,
) -> str:
    try:
        with session_scope(sessions) as db:
            project = project_by_id(db, project_id)
            options = ComparisonOptions.model_validate(comparison_by_id(db, comparison_id).options)
            db.commit()  # no connection held while Label Studio exports (the stored source takes one)
            tasks = source(db, project).export_tasks(project.ls_project_id)
            costs, pace_source = _costs(db, project, options, settings)
        split = split_snapshot(tasks, project, dev_fraction=settings.dev_fraction)
        out = _work_dir(settings, project_id) / "reports" / f"comparison-{comparison_id}"
        reporter = _reporter(sessions, comparison_id, attempt)
        data = _compare(settings, project, split, options, costs=costs, llm=llm, out=out, on_progress=reporter)
        data |= {"seconds_per_label_source": pace_source, "report_dir": str(out)}
        _finish(sessions, comparison_id, attempt, status="succeeded", result=_json_safe(data))
        return "succeeded"
    except _Lost:
        log.warning(
            "comparison %s attempt %s was asked again while it ran; its result is dropped", comparison_id, attempt
        )
        return "failed"
    except Exception as exc:  # recorded on the row, readable on the dashboard
        log.exception("comparison %s failed", comparison_id)
        limit = " (it ran past NER_COMPARE_TIME_LIMIT_S)" if type(exc).__name__ == "SoftTimeLimitExceeded" else ""
        _finish(sessions, comparison_id, attempt, status="failed", error=f"{type(exc).__name__}: {exc}{limit}")
        return "failed"


class _Lost(Exception):
    """The comparison was asked again (a new attempt) while this one ran."""


def _claim(sessions: sessionmaker[Session], comparison_id: int) -> tuple[int, int] | str:
    with session_scope(sessions) as db:
        row = comparison_by_id(db, comparison_id)
        attempt, now = row.attempt + 1, utcnow()
        done = db.execute(
            update(Comparison)
            .where(Comparison.id == comparison_id, Comparison.status == "queued", Comparison.attempt == row.attempt)
            .values(status="running", stage="snapshot", started_at=now, heartbeat_at=now, attempt=attempt)
        )
        if done.rowcount != 1:  # type: ignore[attr-defined]
            db.refresh(row)
            return row.status
        return row.project_id, attempt


def _costs(db: Session, project: Project, options: ComparisonOptions, settings: Settings) -> tuple[CostSettings, str]:
    """The prices: the options', else the LLM settings' token prices when set, else the defaults.

    Seconds per label from Label Studio's ``lead_time`` (the dashboard's figure) when the option is unset and the
    project has it.
    """
    per_1k = (settings.llm.price_input_per_million / 1000, settings.llm.price_output_per_million / 1000)
    seconds, where = options.seconds_per_label, "option"
    if seconds is None:
        pace = lead_time(db, project)
        seconds = seconds_per_label(pace, sum(label_counts(db, project).values()))
        where = f"Label Studio lead_time ({pace['tasks']:.0f} annotations)"
        if seconds is None:
            seconds, where = _DEFAULT_COSTS.seconds_per_label, "default (no lead_time recorded)"
    costs = CostSettings(
        llm_input_per_1k=_first(options.llm_input_per_1k, per_1k[0], _DEFAULT_COSTS.llm_input_per_1k),
        llm_output_per_1k=_first(options.llm_output_per_1k, per_1k[1], _DEFAULT_COSTS.llm_output_per_1k),
        llm_compute_per_hour=options.llm_compute_per_hour,
        compute_per_hour=options.compute_per_hour,
        seconds_per_label=seconds,
        annotator_per_hour=options.annotator_per_hour,
    )
    return costs, where


def _first(option: float | None, setting: float, default: float) -> float:
    return option if option is not None else setting if setting > 0 else default


def _work_dir(settings: Settings, project_id: int) -> Path:
    return Path(settings.model_root).resolve() / f"project-{project_id}" / "comparisons"


def _compare(
    settings: Settings,
    project: Project,
    split: Snapshot,
    options: ComparisonOptions,
    *,
    costs: CostSettings,
    llm: LLMEndpoint | None,
    out: Path,
    on_progress: Callable[[CompareProgress], None],
) -> dict[str, Any]:
    if not split.train or not split.test:
        raise InvalidInputError(
            f"the comparison needs labelled training and test tasks: {len(split.train)} training, {len(split.dev)} "
            f"dev and {len(split.test)} test tasks are labelled; label more tasks"
        )
    use_llm = llm is not None and bool(options.shots)
    compare_options = CompareOptions(
        shots=options.shots,
        strategies=options.strategies,
        sizes=options.sizes,
        architectures=options.architectures or (settings.retrain_architecture,),
        train_settings=TrainSettings(max_steps=options.max_steps or settings.retrain_max_steps),
        limit_llm=options.limit_llm,
        concurrency=llm.slots if llm is not None else 1,
        llm_name=llm.name if llm is not None else "llm",
        span_score=settings.llm.span_score,
        costs=costs,
        progress=False,
    )
    work = _work_dir(settings, project.id)
    result = compare(
        split.train,
        split.test,
        guide_of(project),
        annotate=llm.annotate if use_llm and llm is not None else None,
        options=compare_options,
        work_dir=work,
        dev_docs=split.dev,
        on_progress=on_progress,
    )
    on_progress(CompareProgress("report", 1.0))
    inputs = {
        "guide": f"project {project.id} ({project.name})",
        "train": f"{len(split.train)} labelled training tasks ({len(split.dev)} dev tasks choose checkpoints)",
        "test": f"{len(split.test)} labelled held-out test tasks",
    }
    return write_report(result, out, inputs=inputs)


def _json_safe(value: Any) -> Any:
    """The report's data with every NaN or infinity as None (PostgreSQL's JSON refuses them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _reporter(sessions: sessionmaker[Session], comparison_id: int, attempt: int) -> Callable[[CompareProgress], None]:
    last = [0.0]

    def report(progress: CompareProgress) -> None:
        if time.monotonic() - last[0] < PROGRESS_EVERY_S and progress.fraction < 1.0:
            return
        last[0] = time.monotonic()
        with session_scope(sessions) as db:
            done = db.execute(
                update(Comparison)
                .where(Comparison.id == comparison_id, Comparison.attempt == attempt, Comparison.status == "running")
                .values(stage=progress.stage[:120], progress=progress.fraction, heartbeat_at=utcnow())
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                raise _Lost(comparison_id)

    return report


def _finish(
    sessions: sessionmaker[Session],
    comparison_id: int,
    attempt: int,
    *,
    status: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    with session_scope(sessions) as db:
        values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
        if status == "succeeded":
            values |= {"stage": "done", "progress": 1.0, "result": result}
        db.execute(
            update(Comparison)
            .where(Comparison.id == comparison_id, Comparison.attempt == attempt, Comparison.status == "running")
            .values(**values)
        )
