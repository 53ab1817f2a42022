"""Request and response bodies of the HTTP API (separate from the ORM and from ml's dataclasses)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from backend.api.quality import AgreementOut, ReviewOut
from backend.errors import InvalidInputError
from backend.ids import MAX_ID, is_db_id
from ml.progress import Forecast


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class PredictTask(_Loose):
    """A task in a ``/predict`` call (its text is ``data[<the guide's text field>]``, checked by the route)."""

    id: int | None = None
    data: dict[str, Any]


@with_config(ConfigDict(extra="allow"))
class RegionValue(TypedDict, total=False):
    """A region's ``value``: what interactive pre-annotation reads of a drawn span (other keys pass through)."""

    start: int
    end: int
    text: str
    labels: list[str]


@with_config(ConfigDict(extra="allow"))
class ContextRegion(TypedDict, total=False):
    """One region of ``params.context.result`` (a ``labels`` region, or any other kind, which is ignored)."""

    value: RegionValue


@with_config(ConfigDict(extra="allow"))
class PredictContext(TypedDict, total=False):
    """``params.context``: a plain dict for the route, with ``result`` checked to be a list of regions."""

    result: list[ContextRegion]


class PredictParams(_Loose):
    """``params``: ``context`` holds the annotator's regions in interactive pre-annotation."""

    context: PredictContext | None = None


class PredictRequest(_Loose):
    """What Label Studio sends to ``/predict``."""

    tasks: list[PredictTask] = Field(max_length=10_000)
    project: str | int | None = None
    label_config: str | None = None
    params: PredictParams = PredictParams()


class SetupRequest(_Loose):
    """What Label Studio sends to ``/setup``."""

    project: str | int
    schema_: str | None = Field(default=None, alias="schema")


# ---- responses of the Label Studio ML backend protocol: Label Studio reads these names and shapes ----


class Health(BaseModel):
    """``/health``: the backend is up."""

    status: Literal["UP"]
    model_class: str


class SetupReply(BaseModel):
    """``/setup``: the project's model version (the serving version and its routes, ``version_tag``)."""

    model_version: str


class SpanValue(BaseModel):
    """A predicted span: character offsets (end exclusive), its text and its Label Studio label value."""

    start: int
    end: int
    text: str
    labels: list[str]


class Region(BaseModel):
    """One predicted ``labels`` region, with the span's confidence (0..1)."""

    from_name: str
    to_name: str
    type: Literal["labels"]
    value: SpanValue
    score: float


class TaskPrediction(BaseModel):
    """One task's prediction.

    Its regions, its ``score`` (Label Studio's queue key: ``ml.queue_order.predicted_queue_key``) and the version tag
    that made it (``~llm-pending`` and the like when a part is missing).
    """

    result: list[Region]
    score: float
    model_version: str


class PredictReply(BaseModel):
    """``/predict``: exactly one prediction per task, in the request's order."""

    results: list[TaskPrediction]


class WebhookReply(BaseModel):
    """``/webhook``: what became of the event (``backend.services.ingestion.Receipt``).

    ``queued`` appears when the event needs a job (False: the broker is away; the sweep re-sends it), ``coalesced`` when
    a pending retrain check covers it, ``job`` for a ``START_TRAINING`` event whose job was sent.
    """

    action: str
    event_id: int | None
    status: Literal["stored", "duplicate", "ignored"]
    label_change: bool
    queued: bool | None = None
    coalesced: bool | None = None
    job: str | None = None


class Versions(BaseModel):
    """``/versions``: model versions, oldest first."""

    versions: list[str]


class RouteOverride(BaseModel):
    """A manual route for one entity type."""

    route: Literal["model", "llm", "auto"]


class Rollback(BaseModel):
    """Which version to serve again."""

    version: str = Field(min_length=1)


def ls_project_id(value: str | int | None) -> int | None:
    """Label Studio sends the project as ``"<id>.<timestamp>"``; return the id (None when no project is given).

    Raises:
        InvalidInputError: (422) the value is not such a string, nor an id (ASCII digits only: ``str.isdigit``
            also takes ``"²"``), or the id does not fit an id column.
    """
    if value is None:
        return None
    head = str(value).split(".", 1)[0] if isinstance(value, str) else str(value)
    pid = int(head) if head.isascii() and head.isdigit() and len(head) <= 10 else None
    if pid is None or not is_db_id(pid):
        raise InvalidInputError(
            f"'project' must be Label Studio's '<id>.<timestamp>' or an id from 1 to {MAX_ID}, not {str(value)[:40]!r}"
        )
    return pid


# ---- responses: every JSON answer of the platform API and the dashboard's data (OpenAPI describes each) ----


class Targets(BaseModel):
    """The guide's targets: F1 per type, and the label counts called usable and good."""

    f1: float
    usable_labels: int
    good_labels: int


class CurvePointOut(BaseModel):
    """A version on a type's learning curve.

    The type's labels it was trained on, its test F1 with the 95% interval (None: not measured), and whether the test
    half held enough gold spans to measure it.
    """

    labels: int
    f1: float
    interval: tuple[float, float] | None = None
    measurable: bool = True


class TypeProgress(BaseModel):
    """One entity type: its labels against the guide's marks, its learning curve and forecast."""

    label: str
    labels: int
    mark: Literal["collecting", "usable", "good"]
    curve: list[CurvePointOut]
    forecast: Forecast  # ml.progress's own dataclass: one definition of a forecast (pydantic validates it)
    seconds_per_label: float | None


class VersionOut(BaseModel):
    """A model version with its F1 per type on the held-out test documents (interval, support, measurable)."""

    version: str
    status: str
    architecture: str
    created_at: str
    micro_f1: float | None
    micro_f1_interval: tuple[float, float] | None
    f1: dict[str, float]
    f1_interval: dict[str, tuple[float, float] | None]
    support: dict[str, int | None]
    measurable: dict[str, bool]
    meets_target: dict[str, bool]
    evaluated_on: str


class DayCount(BaseModel):
    """Annotations created on one UTC day (``date``: ISO ``YYYY-MM-DD``)."""

    date: str
    annotations: int


class Throughput(BaseModel):
    """Annotations created per day over the last week, and in the last 24 hours."""

    last_24h: int
    per_day: list[DayCount]


class PerThousandDocs(BaseModel):
    """LLM tokens and US dollars per 1,000 documents pre-annotated."""

    tokens: int
    cost_usd: float


class LLMCosts(BaseModel):
    """What LLM pre-annotation has cost a project."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    dropped_entities: int
    per_1000_docs: PerThousandDocs | None


class GateComparison(BaseModel):
    """The promotion gate on one type (``ml.promotion.TypeComparison``).

    Candidate minus serving F1 with its 95% paired-bootstrap interval, support, and whether it blocks.
    """

    label: str
    serving_f1: float
    candidate_f1: float
    difference: float
    interval: tuple[float, float] | None
    support: int
    blocks: bool
    reason: str


class RunDetails(_Loose):
    """What a run recorded: the gate's decision and comparison per type, and other counts (kept as stored)."""

    decision: str | None = None
    gate_on: str | None = None
    gate: dict[str, GateComparison] | None = None


class RunSummary(BaseModel):
    """A training run: status, live progress (``stage``, ``progress`` 0-1, ``eta_s`` seconds), its decision."""

    id: int
    project_id: int
    watermark: int
    trigger: str
    status: str
    stage: str
    progress: float
    eta_s: float | None
    error: str | None
    model_version: str | None
    details: RunDetails
    created_at: str
    started_at: str | None
    heartbeat_at: str | None
    worker: str | None
    attempt: int
    finished_at: str | None


class RouteOut(BaseModel):
    """Where one entity type's pre-annotations come from, and why (``ml.routing.RouteEntry``)."""

    label: str
    route: Literal["model", "llm"]
    source: Literal["auto", "override"]
    f1: float | None
    target_f1: float


class RoutingTable(BaseModel):
    """A project's routing table, in guide order."""

    project_id: int
    model_version: str | None
    routes: list[RouteOut]


class ProjectOut(BaseModel):
    """A registered project."""

    id: int
    ls_project_id: int
    name: str
    labels: list[str]
    current_version: str | None
    retrain_threshold: int = Field(
        description="label-change events (annotations created, updated or deleted) between retrains: the project's "
        "own, kept when it is registered again"
    )


class ProjectOverview(BaseModel):
    """One project on the overview: its labels, serving version, types at target, latest run."""

    project_id: int
    ls_project_id: int
    name: str
    serving: str | None
    labelled_tasks: int
    labels: int
    types: int
    types_at_target: int
    latest_run: RunSummary | None


class ComparisonRow(_Loose):
    """One row of a prompting-vs-fine-tuning comparison.

    An LLM prompt or a model trained on ``labels`` labels, its exact micro F1 on the test documents with the 95%
    interval, and its price per 1,000 documents (US dollars).
    """

    name: str
    kind: str
    labels: int | None = None
    micro_f1: float
    micro_f1_interval: tuple[float, float] | None = None
    cost_per_1k_docs: float | None = None


class BreakEvenOut(_Loose):
    """A fine-tuned row against the best LLM row.

    The documents above which it costs less (None: never, or its F1 is lower) and its micro F1 minus the LLM's.
    """

    row: str
    llm_row: str
    volume: float | None
    f1_gap: float


class ComparisonResult(_Loose):
    """The figures of the newest comparison that succeeded (``ml.compare_report.to_dict``; other keys as stored)."""

    comparison_id: int
    label_watermark: int | None = None
    finished_at: str | None = None
    rows: list[ComparisonRow] = []
    break_even: list[BreakEvenOut] = []
    overtake_labels: dict[str, dict[str, float | None]] = {}


class ComparisonState(_Loose):
    """The newest comparison's state (``backend.services.comparison.latest_comparison``) and the newest result."""

    id: int
    status: str
    stage: str | None = None
    progress: float | None = None
    error: str | None = None
    result: ComparisonResult | None = None


class ProjectProgress(BaseModel):
    """Everything the leads' dashboard shows of a project (``backend.services.progress.project_progress``)."""

    project_id: int
    name: str
    targets: Targets
    serving: str | None
    types: list[TypeProgress]
    versions: list[VersionOut]
    throughput: Throughput
    llm_costs: LLMCosts
    runs: list[RunSummary]
    routing: list[RouteOut]
    comparison: ComparisonState | None = None
    agreement: AgreementOut | None = None
    review: ReviewOut | None = None


class RetrainReply(BaseModel):
    """``created``: False when a run at this watermark existed already (then ``run`` is that one)."""

    created: bool
    run: RunSummary


class RollbackReply(BaseModel):
    """The version the project serves now."""

    project_id: int
    current_version: str | None
