"""Per-entity-type evaluation: exact and partial-overlap P/R/F1, averages, targets, calibration."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from spacy.tokens import Doc

from ml.prediction import NERModel, ScoredSpan


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1."""

    precision: float
    recall: float
    f1: float

    @classmethod
    def of(cls, tp: float, n_pred: float, n_gold: float) -> PRF:
        """From true positives and the predicted and gold counts (0 when undefined)."""
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_gold if n_gold else 0.0
        return cls(p, r, 2 * p * r / (p + r) if p + r else 0.0)


@dataclass(frozen=True)
class TypeScore:
    """The scores of one entity type."""

    label: str
    precision: float
    recall: float
    f1: float
    partial_f1: float
    support: int
    predicted: int
    meets_target: bool


@dataclass(frozen=True)
class EvaluationReport:
    """Everything measured on one gold set."""

    per_type: dict[str, TypeScore]
    micro: PRF
    macro: PRF
    partial_micro_f1: float
    ece: float | None
    n_docs: int
    target_f1: float
    calibration_bins: list[dict[str, float]] = field(default_factory=list)

    @property
    def types_meeting_target(self) -> list[str]:
        """Labels whose exact F1 is at or above the target."""
        return [label for label, score in self.per_type.items() if score.meets_target]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["types_meeting_target"] = self.types_meeting_target
        return out


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


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
) -> EvaluationReport:
    """Compare predicted spans with the gold entities of each doc (exact match on offsets and label).

    Args:
        gold_docs: Docs with gold ``ents``.
        predictions: Per doc, the predicted spans.
        labels: The label set to report (defaults to every label seen).
        target_f1: The per-type target.

    Returns:
        The report.
    """
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    confidences: list[float] = []
    correct: list[bool] = []
    for doc, predicted in zip(gold_docs, predictions, strict=True):
        gold = {(e.start_char, e.end_char, e.label_) for e in doc.ents}
        for label in {g[2] for g in gold} | {p.label for p in predicted}:
            golds = [(g[0], g[1]) for g in gold if g[2] == label]
            preds = [(p.start, p.end) for p in predicted if p.label == label]
            c = counts[label]
            c["gold"] += len(golds)
            c["pred"] += len(preds)
            c["tp"] += len(set(golds) & set(preds))
            c["partial_pred"] += sum(any(_overlaps(p, g) for g in golds) for p in preds)
            c["partial_gold"] += sum(any(_overlaps(g, p) for p in preds) for g in golds)
        for p in predicted:
            confidences.append(p.score)
            correct.append((p.start, p.end, p.label) in gold)
    report_labels = list(labels) if labels is not None else sorted(counts)
    per_type = {}
    for label in report_labels:
        c = counts[label]
        exact = PRF.of(c["tp"], c["pred"], c["gold"])
        partial_p = c["partial_pred"] / c["pred"] if c["pred"] else 0.0
        partial_r = c["partial_gold"] / c["gold"] if c["gold"] else 0.0
        partial = 2 * partial_p * partial_r / (partial_p + partial_r) if partial_p + partial_r else 0.0
        per_type[label] = TypeScore(
            label, exact.precision, exact.recall, exact.f1, partial, c["gold"], c["pred"], exact.f1 >= target_f1
        )
    totals = {
        k: sum(counts[label][k] for label in report_labels)
        for k in ("tp", "pred", "gold", "partial_pred", "partial_gold")
    }
    micro = PRF.of(totals["tp"], totals["pred"], totals["gold"])
    partial_micro = PRF.of(0, 0, 0).f1
    if totals["pred"] and totals["gold"]:
        pp, pr = totals["partial_pred"] / totals["pred"], totals["partial_gold"] / totals["gold"]
        partial_micro = 2 * pp * pr / (pp + pr) if pp + pr else 0.0
    scored = [s for s in per_type.values() if s.support > 0]
    macro = PRF(
        *(float(np.mean([getattr(s, k) for s in scored])) if scored else 0.0 for k in ("precision", "recall", "f1"))
    )
    ece, bins = expected_calibration_error(confidences, correct)
    return EvaluationReport(per_type, micro, macro, partial_micro, ece, len(gold_docs), target_f1, bins)


def evaluate(
    model: NERModel, gold_docs: Sequence[Doc], *, labels: Sequence[str] | None = None, target_f1: float = 0.85
) -> EvaluationReport:
    """Predict with ``model`` on copies of the gold docs' tokens and score the result."""
    return score_spans(gold_docs, model.predict(gold_docs), labels=labels, target_f1=target_f1)


def format_report(report: EvaluationReport) -> str:
    """A readable table of the report."""
    rows = [f"{'type':<16}{'P':>7}{'R':>7}{'F1':>7}{'partF1':>8}{'support':>9}  target {report.target_f1:.2f}"]
    for s in report.per_type.values():
        mark = "met" if s.meets_target else "below"
        rows.append(
            f"{s.label:<16}{s.precision:>7.3f}{s.recall:>7.3f}{s.f1:>7.3f}{s.partial_f1:>8.3f}{s.support:>9}  {mark}"
        )
    rows.append(
        f"{'micro':<16}{report.micro.precision:>7.3f}{report.micro.recall:>7.3f}{report.micro.f1:>7.3f}{report.partial_micro_f1:>8.3f}"
    )
    rows.append(f"{'macro':<16}{report.macro.precision:>7.3f}{report.macro.recall:>7.3f}{report.macro.f1:>7.3f}")
    ece = "n/a (no predictions)" if report.ece is None else f"{report.ece:.3f}"
    rows.append(f"confidence ECE: {ece}   docs: {report.n_docs}")
    return "\n".join(rows)
