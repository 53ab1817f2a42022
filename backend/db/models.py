"""The ORM: SQLAlchemy 2 typed models. Schema changes go through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Timezone-aware now."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with portable JSON."""

    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[dict[str, Any]]: JSON,
        datetime: DateTime(timezone=True),
    }


class Project(Base):
    """A Label Studio project driven by one annotation guide."""

    __tablename__ = "project"
    __table_args__ = (UniqueConstraint("ls_project_id", name="uq_project_ls_project_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    ls_project_id: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    guide_yaml: Mapped[str] = mapped_column(Text)
    guide_sha256: Mapped[str] = mapped_column(String(64))
    # label-change events between retrains: the project's own (backend.services.projects.register_project)
    retrain_threshold: Mapped[int]
    current_version: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # False until task_label / labeled_span hold every labelled task (projects that predate migration 0006)
    labels_indexed: Mapped[bool] = mapped_column(default=True)
    # the label watermark: how many of its events changed its labels (``backend.services.watermark``)
    label_watermark: Mapped[int] = mapped_column(default=0, server_default="0")
    # the sampling strategy (``ml.sampling_strategy.SamplingStrategy`` as JSON); None: its defaults
    sampling: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class ModelVersion(Base):
    """A trained model version of a project, with its per-type dev metrics."""

    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("project_id", "version", name="uq_model_version_project_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(String(40))
    metrics: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default="candidate")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnnotationEvent(Base):
    """A Label Studio webhook event, stored once however often it is delivered."""

    __tablename__ = "annotation_event"
    __table_args__ = (
        UniqueConstraint("event_key", name="uq_annotation_event_key"),
        Index("ix_annotation_event_project_label_change", "project_id", "label_change"),  # throughput
        Index(  # the sweep's events whose job never reached the broker
            "ix_annotation_event_unqueued",
            "id",
            postgresql_where=text("NOT enqueued"),
            sqlite_where=text("NOT enqueued"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    event_key: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    ls_task_id: Mapped[int | None]
    ls_annotation_id: Mapped[int | None]
    payload: Mapped[dict[str, Any]]
    enqueued: Mapped[bool] = mapped_column(default=False)
    # True when applying the event changed the project's labels (the label watermark counts these)
    label_change: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotation(Base):
    """One Label Studio annotation as it stands now, kept equal to Label Studio's by the webhook events.

    A deleted annotation stays as a tombstone (``deleted``), so that an event delivered late cannot revive it.
    """

    __tablename__ = "annotation"
    __table_args__ = (UniqueConstraint("project_id", "ls_annotation_id", name="uq_annotation_project_ls_annotation"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    ls_annotation_id: Mapped[int]
    ls_task_id: Mapped[int | None] = mapped_column(index=True)
    task_data: Mapped[dict[str, Any]]
    result: Mapped[list[dict[str, Any]]]
    was_cancelled: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    ls_updated_at: Mapped[datetime | None] = mapped_column(default=None)
    lead_time_s: Mapped[float | None] = mapped_column(default=None)
    completed_by: Mapped[int | None] = mapped_column(default=None)
    event_id: Mapped[int | None] = mapped_column(default=None)


class DeletedTask(Base):
    """A Label Studio task that was deleted: an annotation event about it that arrives later is ignored."""

    __tablename__ = "deleted_task"
    __table_args__ = (UniqueConstraint("project_id", "ls_task_id", name="uq_deleted_task_project_ls_task"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    ls_task_id: Mapped[int]
    event_id: Mapped[int | None] = mapped_column(default=None)


class TaskLabel(Base):
    """A labelled task as training reads it.

    Its text and the spans of its latest live annotation, converted once when the event arrives
    (``backend.services.label_state``). A task whose annotation cannot be converted has no row.
    """

    __tablename__ = "task_label"
    __table_args__ = (UniqueConstraint("project_id", "ls_task_id", name="uq_task_label_project_ls_task"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    ls_task_id: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    # [[start, end, entity type], ...] in characters, sorted
    spans: Mapped[list[Any]] = mapped_column(JSON)
    event_id: Mapped[int | None] = mapped_column(default=None)


class LabeledSpan(Base):
    """One span of a ``TaskLabel`` (its entity type only): what the per-type label counts sum."""

    __tablename__ = "labeled_span"
    __table_args__ = (
        Index("ix_labeled_span_project_label", "project_id", "label"),
        Index("ix_labeled_span_project_task", "project_id", "ls_task_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    ls_task_id: Mapped[int]
    label: Mapped[str] = mapped_column(String(100))


class RoutingOverride(Base):
    """A manual route for one entity type of a project (beats the computed one)."""

    __tablename__ = "routing_override"
    __table_args__ = (UniqueConstraint("project_id", "label", name="uq_routing_override_project_label"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(40))
    route: Mapped[str] = mapped_column(String(10))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LLMCall(Base):
    """One LLM completion: the cache entry (prompt version, model, text) and its token cost."""

    __tablename__ = "llm_call"
    __table_args__ = (UniqueConstraint("cache_key", name="uq_llm_call_cache_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    cache_key: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    prompt_version: Mapped[str] = mapped_column(String(80))
    content: Mapped[str] = mapped_column(Text)
    prompt_tokens: Mapped[int]
    completion_tokens: Mapped[int]
    cost_usd: Mapped[float]
    latency_ms: Mapped[int]
    dropped: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainingRun(Base):
    """One training of a project, unique per label watermark: duplicate triggers are no-ops."""

    __tablename__ = "training_run"
    __table_args__ = (UniqueConstraint("project_id", "annotation_watermark", name="uq_training_run_watermark"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    # the label watermark the run trains on (a count of label-change events, ``project.label_watermark``); the
    # column keeps its older name, a rename needing a migration of every deployed database
    annotation_watermark: Mapped[int]
    trigger: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    stage: Mapped[str] = mapped_column(String(40), default="queued")
    progress: Mapped[float] = mapped_column(default=0.0)
    eta_s: Mapped[float | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    model_version: Mapped[str | None] = mapped_column(String(100), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # liveness: the training process beats while it works; a run silent for NER_RUN_HEARTBEAT_TIMEOUT_S is failed
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    # which process trains it (for operators, and for the tests that kill it); `attempt` grows with each claim,
    # so a process whose run was expired and asked for again cannot write over the new attempt
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    pid: Mapped[int | None] = mapped_column(default=None)
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    # where the run writes before its version is recorded: removed when the run dies
    output_dir: Mapped[str | None] = mapped_column(Text, default=None)
    # the sweep's last re-send of a queued run's message, and how many it sent (re-sends back off)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    resends: Mapped[int] = mapped_column(default=0, server_default="0")


class Prediction(Base):
    """A model version's scored prediction for one Label Studio task."""

    __tablename__ = "prediction"
    __table_args__ = (UniqueConstraint("project_id", "ls_task_id", "model_version", name="uq_prediction_task_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    ls_task_id: Mapped[int]
    model_version: Mapped[str] = mapped_column(String(120))
    spans: Mapped[list[dict[str, Any]]]
    # Label Studio's queue key (its prediction ``score``, served lowest first; ``ml.queue_order``), not a confidence
    score: Mapped[float]
    # the model's uncertainty the key was derived from (1.0 for an LLM-only prediction: nothing measured it)
    uncertainty: Mapped[float]
    # False while the types routed to the LLM still await the `llm` queue's pass
    complete: Mapped[bool] = mapped_column(default=True)
    # Label Studio's id of the pushed prediction: a retry updates it instead of adding a second one
    ls_prediction_id: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Rescoring(Base):
    """One rescoring of a project's pool: the version and strategy that chose the batch, and the batch."""

    __tablename__ = "rescoring"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    model_version: Mapped[str] = mapped_column(String(120))
    strategy: Mapped[dict[str, Any]]
    # what the diversity term's doc vectors were (``tok2vec-mean``, ``encoder-mean``, ``minilm``, ``none``)
    representation: Mapped[str] = mapped_column(String(40))
    pool: Mapped[int]
    batch: Mapped[list[Any]] = mapped_column(JSON)  # Label Studio task ids, best first
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewPass(Base):
    """One cross-validated review pass of a project, unique per promoted model version (``ml.review``)."""

    __tablename__ = "review_pass"
    __table_args__ = (UniqueConstraint("project_id", "model_version_id", name="uq_review_pass_project_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id", ondelete="CASCADE"))
    model_version: Mapped[str] = mapped_column(String(100))
    # running -> scored (suspects stored) -> pushed (in Label Studio); failed, or skipped (why in ``error``)
    status: Mapped[str] = mapped_column(String(20), default="running")
    docs: Mapped[int] = mapped_column(default=0)
    suspects: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    pushed_at: Mapped[datetime | None] = mapped_column(default=None)
    # each claim (queued, failed, scored or silent -> running) is a new attempt; writes are guarded by it, and a
    # running pass without a heartbeat for NER_RUN_HEARTBEAT_TIMEOUT_S is failed by the sweep
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)


class ReviewSuspect(Base):
    """A likely-mislabelled span found by a review pass (``ml.review.Suspect``), ranked by confidence."""

    __tablename__ = "review_suspect"
    __table_args__ = (
        Index("ix_review_suspect_project_task", "project_id", "ls_task_id"),
        UniqueConstraint("pass_id", "rank", name="uq_review_suspect_pass_rank"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    pass_id: Mapped[int] = mapped_column(ForeignKey("review_pass.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    ls_task_id: Mapped[int]
    rank: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))
    confidence: Mapped[float]
    start: Mapped[int | None]
    end: Mapped[int | None]
    label: Mapped[str | None] = mapped_column(String(100))
    predicted_start: Mapped[int | None]
    predicted_end: Mapped[int | None]
    predicted_label: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    fold: Mapped[int] = mapped_column(default=0)


class ReviewPrediction(Base):
    """The review prediction nerloop keeps on a task in Label Studio.

    Updated in place, removed when the task is no longer suspect.
    """

    __tablename__ = "review_prediction"
    __table_args__ = (UniqueConstraint("project_id", "ls_task_id", name="uq_review_prediction_project_task"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    ls_task_id: Mapped[int]
    ls_prediction_id: Mapped[int | None]
    pass_id: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Comparison(Base):
    """A project's prompting-vs-fine-tuning comparison (issue #13), unique per label watermark.

    A second request at the same labels is a no-op. ``result`` holds the report's data (``ml.compare_report.to_dict``)
    once it ends.
    """

    __tablename__ = "comparison"
    __table_args__ = (UniqueConstraint("project_id", "label_watermark", name="uq_comparison_watermark"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"), index=True)
    label_watermark: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default="queued")
    stage: Mapped[str] = mapped_column(String(120), default="queued")
    progress: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # beats with each progress report: a running comparison silent for NER_RUN_HEARTBEAT_TIMEOUT_S may be asked again
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")
