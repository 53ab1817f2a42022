"""Per-entity-type evaluation: exact and partial-overlap P/R/F1, averages, targets, calibration."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from nervaluate import Evaluator
from spacy.tokens import Doc

from ml.prediction import NERModel, ScoredSpan
from ml.scores import PRF as PRF  # re-exported: ``ml.evaluation`` is where callers find the report's parts
from ml.scores import TypeScore as TypeScore

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class EvaluationReport:
    """Everything measured on one gold set.

    ``doc_counts`` (not serialised) holds, per document and type, the counts the scores are sums of (see
    :func:`span_counts`): the promotion gate resamples them, paired, for two models on the same documents.
    """

    per_type: dict[str, TypeScore]
    micro: PRF
    macro: PRF
    partial_micro_f1: float
    ece: float | None
    n_docs: int
    target_f1: float
    calibration_bins: list[dict[str, float]] = field(default_factory=list)
    micro_f1_interval: tuple[float, float] | None = None
    bootstrap_samples: int = 0
    min_support: int = 0
    doc_counts: FloatArray | None = field(default=None, repr=False, compare=False)

    @property
    def labels(self) -> list[str]:
        """The reported types, in the order of ``doc_counts``' second axis."""
        return list(self.per_type)

    @property
    def types_meeting_target(self) -> list[str]:
        """Labels whose exact F1 is at or above the target."""
        return [label for label, score in self.per_type.items() if score.meets_target]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without ``doc_counts``)."""
        out = asdict(replace(self, doc_counts=None))
        del out["doc_counts"]
        out["types_meeting_target"] = self.types_meeting_target
        return out


# The counts of one (document, type): exact matches (nervaluate's "strict"), partial credit (nervaluate's
# "partial": 1 per exact match, 0.5 per overlap), predicted spans (ACT) and gold spans (POS).
COUNTS = ("exact", "partial", "predicted", "gold")
DEFAULT_BOOTSTRAP = 1000
# Fewer gold spans of a type than this on the evaluation documents: its F1 is "not yet measurable" (with 10 spans a
# 95% interval of F1 is still about +-0.25 wide).
MIN_SUPPORT = 10


def _as_entities(spans: Iterable[tuple[int, int, str]]) -> list[dict[str, Any]]:
    # nervaluate's spans end inclusively: a span ending at character 5 (exclusive) ends at 4
    return [{"label": label, "start": start, "end": end - 1} for start, end, label in spans]


def span_counts(
    gold_docs: Sequence[Doc], predictions: Sequence[Sequence[ScoredSpan]], labels: Sequence[str]
) -> FloatArray:
    """Per document and type, the counts of :data:`COUNTS`, from nervaluate.

    nervaluate implements the SemEval-2013 task 9.1 schemas (Segura-Bedmar et al.); its per-type breakdown matches spans
    of one type with each other.

    Returns:
        A float array of shape ``(len(gold_docs), len(labels), 4)``; types outside ``labels`` are ignored.
    """
    counts = np.zeros((len(gold_docs), len(labels), len(COUNTS)))
    index = {label: i for i, label in enumerate(labels)}
    for d, (doc, predicted) in enumerate(zip(gold_docs, predictions, strict=True)):
        gold = [(e.start_char, e.end_char, e.label_) for e in doc.ents if e.label_ in index]
        pred = [(p.start, p.end, p.label) for p in predicted if p.label in index]
        if not gold and not pred:
            continue
        found = Evaluator([_as_entities(gold)], [_as_entities(pred)], tags=list(labels), loader="dict").evaluate()
        for label, schemas in found["entities"].items():
            strict, partial = schemas["strict"], schemas["partial"]
            counts[d, index[label]] = (
                strict.correct,
                partial.correct + 0.5 * partial.partial,
                strict.actual,
                strict.possible,
            )
    return counts


def prf_of(counts: FloatArray, *, partial: bool = False) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Precision, recall and F1 of summed counts (last axis :data:`COUNTS`), elementwise over the other axes.

    0 where undefined.
    """
    hits = counts[..., 1 if partial else 0]
    predicted, gold = counts[..., 2], counts[..., 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(predicted > 0, hits / predicted, 0.0)
        r = np.where(gold > 0, hits / gold, 0.0)
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return p, r, f1


def bootstrap_weights(n_docs: int, *, samples: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> FloatArray:
    """How often each document is drawn in each bootstrap resample: shape ``(samples, n_docs)``.

    Documents are resampled with replacement (Efron & Tibshirani 1993), each row summing to ``n_docs``. The same weights
    applied to two models' counts give a paired bootstrap (Koehn 2004; Berg-Kirkpatrick et al. 2012).
    """
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_docs, np.full(n_docs, 1.0 / n_docs), size=samples).astype(float)


def resample(weights: FloatArray, counts: FloatArray) -> FloatArray:
    """Counts summed over each bootstrap resample.

    ``weights`` ``(samples, n_docs)`` from :func:`bootstrap_weights`, ``counts`` ``(n_docs, n_labels, 4)`` ->
    ``(samples, n_labels, 4)``.
    """
    resampled: FloatArray = np.einsum("bd,dlk->blk", weights, counts)
    return resampled


def percentile_interval(values: FloatArray, *, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (first axis)."""
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return float(low), float(high)


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], *, bins: int = 10
) -> tuple[float | None, list[dict[str, float]]]:
    """ECE over equal-width confidence bins, and the bins (count, mean confidence, accuracy)."""
    if not confidences:
        return None, []
    conf = np.clip(np.asarray(confidences, dtype=float), 0.0, 1.0)
    hits = np.asarray(correct, dtype=float)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        gap = abs(conf[mask].mean() - hits[mask].mean())
        ece += mask.mean() * gap
        table.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": float(mask.sum()),
                "confidence": float(conf[mask].mean()),
                "accuracy": float(hits[mask].mean()),
            }
        )
    return float(ece), table


def score_spans(
    gold_docs: Sequence[Doc],
    predictions: Sequence[Sequence[ScoredSpan]],
    *,
    labels: Sequence[str] | None = None,
    target_f1: float = 0.85,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    min_support: int = MIN_SUPPORT,
) -> EvaluationReport:
    """Compare predicted spans with the gold entities of each doc.

    Exact: offsets and type match (nervaluate's ``strict``). Partial: within a type, an exact match counts 1 and
    an overlap 0.5 (nervaluate's ``partial``, the SemEval-2013 definition); micro sums the types' counts, macro
    averages the types with support. Intervals: 95% percentile bootstrap over documents.

    Args:
        gold_docs: Docs with gold ``ents``.
        predictions: Per doc, the predicted spans.
        labels: The label set to report (defaults to every label seen).
        target_f1: The per-type target.
        bootstrap: Resamples for the intervals (0: no intervals; checkpoint selection needs none).
        seed: The resampling seed (the same seed and documents give the same intervals).
        min_support: Gold spans a type needs on these docs to be ``measurable``.

    Returns:
        The report, with ``doc_counts``.
    """
    if labels is None:
        seen = {e.label_ for doc in gold_docs for e in doc.ents} | {p.label for spans in predictions for p in spans}
        labels = sorted(seen)
    report_labels = list(labels)
    counts = span_counts(gold_docs, predictions, report_labels)
    per_type_counts, total = counts.sum(axis=0), counts.sum(axis=(0, 1))
    p, r, f1 = prf_of(per_type_counts)
    partial = prf_of(per_type_counts, partial=True)[2]
    intervals: list[tuple[float, float] | None] = [None] * len(report_labels)
    micro_interval = None
    if bootstrap and len(gold_docs) > 1:
        resampled = resample(bootstrap_weights(len(gold_docs), samples=bootstrap, seed=seed), counts)
        type_f1 = prf_of(resampled)[2]
        intervals = [percentile_interval(type_f1[:, i]) for i in range(len(report_labels))]
        micro_interval = percentile_interval(prf_of(resampled.sum(axis=1))[2])
    per_type = {}
    for i, label in enumerate(report_labels):
        support = int(per_type_counts[i, 3])
        per_type[label] = TypeScore(
            label,
            float(p[i]),
            float(r[i]),
            float(f1[i]),
            float(partial[i]),
            support,
            int(per_type_counts[i, 2]),
            bool(f1[i] >= target_f1),
            intervals[i],
            support >= min_support,
        )
    micro = PRF(*(float(x) for x in prf_of(total)))
    scored = [s for s in per_type.values() if s.support > 0]
    macro = PRF(
        *(float(np.mean([getattr(s, k) for s in scored])) if scored else 0.0 for k in ("precision", "recall", "f1"))
    )
    confidences: list[float] = []
    correct: list[bool] = []
    for doc, predicted in zip(gold_docs, predictions, strict=True):
        gold = {(e.start_char, e.end_char, e.label_) for e in doc.ents}
        for span in predicted:
            confidences.append(span.score)
            correct.append((span.start, span.end, span.label) in gold)
    ece, bins = expected_calibration_error(confidences, correct)
    return EvaluationReport(
        per_type,
        micro,
        macro,
        float(prf_of(total, partial=True)[2]),
        ece,
        len(gold_docs),
        target_f1,
        bins,
        micro_interval,
        bootstrap if micro_interval is not None else 0,
        min_support,
        counts,
    )


def evaluate(
    model: NERModel, gold_docs: Sequence[Doc], *, labels: Sequence[str] | None = None, target_f1: float = 0.85
) -> EvaluationReport:
    """Predict with ``model`` on copies of the gold docs' tokens and score the result."""
    return score_spans(gold_docs, model.predict(gold_docs), labels=labels, target_f1=target_f1)


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def format_report(report: EvaluationReport) -> str:
    """A readable table of the report: each F1 with its 95% interval and its support (gold spans).

    A type with fewer than ``min_support`` gold spans is marked not yet measurable.
    """
    rows = [
        f"{'type':<16}{'P':>7}{'R':>7}{'F1':>7} {'95% interval':<16}{'partF1':>7}{'support':>9}"
        f"  target {report.target_f1:.2f}"
    ]
    for s in report.per_type.values():
        if not s.measurable:
            mark = f"not yet measurable (< {report.min_support} gold spans)"
        else:
            mark = "met" if s.meets_target else "below"
        rows.append(
            f"{s.label:<16}{s.precision:>7.3f}{s.recall:>7.3f}{s.f1:>7.3f} {_interval(s.f1_interval):<16}"
            f"{s.partial_f1:>7.3f}{s.support:>9}  {mark}"
        )
    micro = report.micro
    rows.append(
        f"{'micro':<16}{micro.precision:>7.3f}{micro.recall:>7.3f}{micro.f1:>7.3f} "
        f"{_interval(report.micro_f1_interval):<16}{report.partial_micro_f1:>7.3f}"
        f"{sum(s.support for s in report.per_type.values()):>9}"
    )
    rows.append(f"{'macro':<16}{report.macro.precision:>7.3f}{report.macro.recall:>7.3f}{report.macro.f1:>7.3f}")
    ece = "n/a (no predictions)" if report.ece is None else f"{report.ece:.3f}"
    resamples = f", intervals from {report.bootstrap_samples} bootstrap resamples" if report.bootstrap_samples else ""
    rows.append(f"confidence ECE: {ece}   docs: {report.n_docs}{resamples}")
    return "\n".join(rows)
