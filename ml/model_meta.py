"""A model version's meta (``meta.json``) and metrics: frozen, validated types, written and read through them.

spaCy validates a pipeline's ``meta.json`` against a schema; nerloop does the same. ``ml.training.train`` builds a
``ModelMeta`` and writes ``ModelMeta.to_dict()``; ``ml.model_store.read_meta`` returns ``ModelMeta.from_dict`` of the
file, so a reader gets attributes (``meta.metrics.per_type``), never string keys, and a malformed file fails once,
where it is read, with the file and the field in the message.

Old files load: every field but ``version`` and ``architecture`` is optional, because versions written by earlier
releases lack some (the per-type training counts before the dashboard, the initialisation before warm starts, the
dev metrics and ``evaluated_on`` before the held-out test half). Keys this release does not know are ignored, and
``to_dict`` writes back only the fields a file had (or a writer set).

The no-support rule (one rule for every reader): a type with no gold span on the evaluation documents (``support``
0) has no F1: it is *not measured*, never an F1 of 0. ``ModelMetrics.measured_f1`` applies it; routing, the sampling
weights and the agreement panel read F1 through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, JsonValue, PlainSerializer, ValidationError

from ml.errors import ModelError
from ml.scores import PRF, TypeScore

if TYPE_CHECKING:  # spaCy, scikit-learn: reading a meta or stored metrics loads neither (the CLI's light commands)
    from ml.calibration import PlattCalibrator
    from ml.evaluation import EvaluationReport

# written as ``datetime.isoformat()`` (``+00:00``), as versions always were
Timestamp = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str)]


@dataclass(frozen=True)
class Initialisation:
    """How a training starts, why, and for how many steps (``ml.training.warm_start.plan_initialisation``).

    Attributes:
        mode: ``"warm"`` (the source version's weights) or ``"cold"`` (fresh weights).
        reason: Why, in one sentence (logged and stored in the version's meta).
        max_steps: The step budget of this training, in optimizer steps (cold: ``step_budget``).
        source_version: The version the weights come from (warm), or the serving version a cold start ignored.
        new_docs: Training docs the source version was not trained on (``None``: no source).
        warm_chain: Warm starts in a row up to and including this one (0 for a cold start).
        added_labels: Types the source's NER head lacks; the head is resized for them (warm CNN only).
    """

    mode: Literal["cold", "warm"]
    reason: str
    max_steps: int
    source_version: str | None = None
    new_docs: int | None = None
    warm_chain: int = 0
    added_labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the run's details hold it too)."""
        out = asdict(self)
        out["added_labels"] = list(self.added_labels)
        return out


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def replace(self, **changes: object) -> Self:
        """A copy with ``changes``, validated again (``model_copy`` would not validate them)."""
        return self.model_validate({**self.model_dump(exclude_unset=True), **changes})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields that were read or set (an old file keeps its shape)."""
        return self.model_dump(mode="json", exclude_unset=True)


R = TypeVar("R", bound=_Record)


class GuideRef(_Record):
    """The guide a version was trained under: its project, hash and target F1."""

    project: str
    sha256: str
    target_f1: float


class DataSummary(_Record):
    """What a version was trained and evaluated on (counts are documents, entities are gold spans)."""

    train_fingerprint: str
    dev_fingerprint: str
    train_docs: int
    dev_docs: int
    train_entities: int
    # gold spans per type in the training docs (absent before the dashboard's learning curves)
    train_entities_per_type: dict[str, int] | None = None
    # None: no test documents were given (absent before the held-out test half)
    test_docs: int | None = None


class CalibrationMeta(_Record):
    """The stored calibration: ``method`` "platt" (fitted on ``fitted_on`` dev spans) or a prior (the identity)."""

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    fitted_on: int = 0  # absent before the prior existed: every calibration was then a fit

    @classmethod
    def of(cls, calibrator: PlattCalibrator) -> CalibrationMeta:
        """The record of a calibrator."""
        return cls.model_validate(calibrator.to_dict())

    def calibrator(self) -> PlattCalibrator | None:
        """The Platt curve to apply to raw scores (None: the prior, raw scores as they are)."""
        if self.method != "platt":
            return None
        from ml.calibration import PlattCalibrator  # only where a model is loaded anyway

        return PlattCalibrator(self.slope, self.intercept)


class ModelMetrics(_Record):
    """One evaluation of a version (``EvaluationReport.to_dict()``), as stored in ``meta.json`` and the database.

    In the database it is the ``model_version.metrics`` column.

    ``evaluated_on``: the documents the figures come from ("test", the held-out half untouched by the training;
    "dev" when there were none, and in versions older than the held-out half). ``train_labels``: gold spans per type
    the version was trained on, stored beside the metrics in the database only (the learning curves' x).
    """

    per_type: dict[str, TypeScore]
    micro: PRF
    macro: PRF
    partial_micro_f1: float
    ece: float | None
    n_docs: int
    target_f1: float
    calibration_bins: list[dict[str, float]] = []
    micro_f1_interval: tuple[float, float] | None = None
    bootstrap_samples: int = 0
    min_support: int = 0
    types_meeting_target: tuple[str, ...] = ()
    evaluated_on: Literal["dev", "test"] = "dev"
    train_labels: dict[str, int] | None = None

    @classmethod
    def of(cls, report: EvaluationReport, *, evaluated_on: Literal["dev", "test"] | None = None) -> ModelMetrics:
        """The record of a report (``evaluated_on`` None: left out, as in a version's ``dev_metrics``)."""
        extra = {} if evaluated_on is None else {"evaluated_on": evaluated_on}
        return cls.model_validate({**report.to_dict(), **extra})

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, source: str) -> ModelMetrics:
        """Validate stored metrics.

        Args:
            data: The stored dict.
            source: Where it was read (for the error), e.g. ``"model version 20260101T...Z-cnn-1a2b3c4d"``.

        Raises:
            ModelError: A field is missing or of the wrong type; the message names ``source`` and the field.
        """
        return _validated(cls, data, source=source, what="metrics")

    def measured_f1(self) -> dict[str, float]:
        """Exact F1 per measured type: a type without gold spans on the evaluation documents has no F1 (not 0)."""
        return {label: score.f1 for label, score in self.per_type.items() if score.support > 0}

    def measurable_f1(self, label: str) -> float | None:
        """The exact F1 of one type where it means something to a reader (the dashboard, the agreement panel).

        None when not measured (no gold span) or not yet measurable (fewer gold spans than ``min_support``).
        """
        score = self.per_type.get(label)
        return score.f1 if score is not None and score.measurable and score.support > 0 else None


class ModelMeta(_Record):
    """A version's ``meta.json``: what it is, what it was trained on and how, and how well it does.

    ``settings`` is ``TrainSettings.model_dump(mode="json")`` of its training, kept as JSON: a version trained with
    settings this release no longer has must still load. ``metrics`` are the reported figures (test, else dev);
    ``dev_metrics`` the dev half's (absent before the held-out test half).
    """

    version: str
    architecture: str  # "cnn", "spacy-transformer", "hf-transformer" ("transformer": written before issue #14)
    labels: tuple[str, ...] = ()
    guide: GuideRef | None = None
    data: DataSummary | None = None
    settings: dict[str, JsonValue] = {}
    initialisation: Initialisation | None = None
    spacy_version: str | None = None
    started_at: Timestamp | None = None
    calibration: CalibrationMeta | None = None
    metrics: ModelMetrics | None = None
    dev_metrics: ModelMetrics | None = None
    warnings: tuple[str, ...] = ()
    finished_at: Timestamp | None = None
    training_seconds: float | None = None

    @property
    def beam_width(self) -> int:
        """The beam a spaCy pipeline's NER decodes with (``settings.beam_width``; 16 when the settings lack it)."""
        width = self.settings.get("beam_width", 16)
        if not isinstance(width, int):
            raise ModelError(f"version {self.version}: settings.beam_width is {width!r}, not a whole number")
        return width

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, source: str | Path) -> ModelMeta:
        """Validate a meta read from ``source`` (a ``meta.json``).

        Raises:
            ModelError: A field is missing or of the wrong type; the message names the file and the field.
        """
        return _validated(cls, data, source=str(source), what="meta")


def _validated(cls: type[R], data: Mapping[str, object], *, source: str, what: str) -> R:
    if not isinstance(data, Mapping):
        raise ModelError(f"{source}: the {what} is not a JSON object; retrain the version or restore the file")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ModelError(
            f"{source}: invalid {what} ({problems}); retrain the version or restore the file nerloop wrote"
        ) from None
