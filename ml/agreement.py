"""Inter-annotator agreement per entity type: pairwise span F1 between annotators of the same tasks.

When several annotators label a task (Label Studio's overlap setting), how often they agree on a type bounds what a
model trained on their labels can score on it: a type the annotators agree on at F1 0.80 will not reach a target of
0.85. Agreement here is span F1 between two annotators' labels of the same tasks (Hripcsak & Rothschild 2005: for
spans, where chance agreement is undefined, pairwise F1 is the usual substitute for kappa), exact (offsets and type)
and partial (SemEval-2013's: an overlap of one type counts half), computed with the project's scorer
(:func:`ml.evaluation.span_counts`, nervaluate). Both are symmetric: swapping the two annotators swaps precision and
recall and leaves F1 unchanged. _Intervals are 95% percentile-bootstrap intervals over tasks, as in
:mod:`ml.evaluation`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np
from spacy.tokens import Doc

from ml.evaluation import (
    DEFAULT_BOOTSTRAP,
    MIN_SUPPORT,
    FloatArray,
    bootstrap_weights,
    percentile_interval,
    prf_of,
    resample,
    span_counts,
)
from ml.prediction import ScoredSpan

_Interval = tuple[float, float] | None


@dataclass(frozen=True)
class AnnotatedDoc:
    """One annotator's labels of one task: a doc whose ``ents`` are that annotator's spans."""

    task_id: int
    annotator: str
    doc: Doc


@dataclass(frozen=True)
class TypeAgreement:
    """Agreement on one entity type.

    ``f1`` is exact span F1 (None: no span of the type in any compared pair), ``partial_f1`` SemEval's partial,
    ``f1_interval`` and ``partial_f1_interval`` their 95% bootstrap intervals over tasks (the same resamples; None:
    fewer than two tasks), ``spans`` the spans of the type both annotators of each pair drew together (the support of
    both figures), ``measurable`` whether ``spans`` reaches ``min_support``.
    """

    label: str
    f1: float | None
    partial_f1: float | None
    f1_interval: tuple[float, float] | None
    spans: int
    measurable: bool
    partial_f1_interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class PairAgreement:
    """Agreement of two annotators (``a`` < ``b``) on the tasks both labelled."""

    a: str
    b: str
    tasks: int
    per_type: dict[str, TypeAgreement]
    micro: TypeAgreement


@dataclass(frozen=True)
class AgreementReport:
    """Agreement per type over every pair of annotators, and per pair.

    ``overall`` sums the pairs' counts per task. ``tasks`` counts the tasks with at least two annotators; ``annotators``
    who labelled any of them.
    """

    labels: list[str]
    tasks: int
    annotators: list[str]
    per_type: dict[str, TypeAgreement]
    micro: TypeAgreement
    pairs: list[PairAgreement]
    bootstrap_samples: int
    min_support: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _as_prediction(doc: Doc) -> list[ScoredSpan]:
    return [ScoredSpan(e.start_char, e.end_char, e.label_, e.text, 1.0) for e in doc.ents]


def _summaries(
    counts: FloatArray, labels: Sequence[str], *, bootstrap: int, seed: int, min_support: int
) -> tuple[dict[str, TypeAgreement], TypeAgreement]:
    """Per-type and micro agreement of per-task counts ``(n_tasks, n_labels, 4)``."""
    per_type_counts, total = counts.sum(axis=0), counts.sum(axis=(0, 1))
    exact, partial = prf_of(per_type_counts)[2], prf_of(per_type_counts, partial=True)[2]
    intervals: list[tuple[_Interval, _Interval]] = [(None, None)] * len(labels)
    micro_intervals: tuple[_Interval, _Interval] = (None, None)
    if bootstrap and counts.shape[0] > 1:
        resampled = resample(bootstrap_weights(counts.shape[0], samples=bootstrap, seed=seed), counts)
        type_f1, type_partial = prf_of(resampled)[2], prf_of(resampled, partial=True)[2]
        intervals = [
            (percentile_interval(type_f1[:, i]), percentile_interval(type_partial[:, i])) for i in range(len(labels))
        ]
        pooled = resampled.sum(axis=1)
        micro_intervals = (
            percentile_interval(prf_of(pooled)[2]),
            percentile_interval(prf_of(pooled, partial=True)[2]),
        )

    def summary(
        label: str, row: FloatArray, f1: float, part: float, interval: tuple[_Interval, _Interval]
    ) -> TypeAgreement:
        spans = int(row[2] + row[3])
        seen = spans > 0
        return TypeAgreement(
            label,
            float(f1) if seen else None,
            float(part) if seen else None,
            interval[0] if seen else None,
            spans,
            spans >= min_support,
            interval[1] if seen else None,
        )

    per_type = {
        label: summary(label, per_type_counts[i], exact[i], partial[i], intervals[i]) for i, label in enumerate(labels)
    }
    micro = summary("micro", total, float(prf_of(total)[2]), float(prf_of(total, partial=True)[2]), micro_intervals)
    return per_type, micro


def agreement(
    annotated: Sequence[AnnotatedDoc],
    *,
    labels: Sequence[str],
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    min_support: int = MIN_SUPPORT,
) -> AgreementReport:
    """Pairwise span agreement per type, per annotator pair and over all pairs.

    Each pair of annotators is compared on the tasks both labelled: one's spans as the reference, the other's as
    the response, scored by :func:`ml.evaluation.span_counts` (nervaluate). Overall agreement sums, per task, the
    counts of every pair that labelled it (a task with three annotators contributes three comparisons), and the
    bootstrap resamples tasks. A task labelled by one annotator only, or twice by the same annotator (keep one
    annotation per annotator and task before calling), adds nothing.

    Args:
        annotated: Per (task, annotator), the annotator's labels as a doc's ``ents``.
        labels: The entity types to report (the guide's).
        bootstrap: Resamples for the intervals (0: none).
        seed: The resampling seed.
        min_support: Spans of a type (both annotators' together) for its agreement to be ``measurable``.

    Returns:
        The report; types without any span get ``f1`` None.

    Raises:
        ValueError: one annotator appears twice for a task.
    """
    by_task: dict[int, dict[str, Doc]] = defaultdict(dict)
    for item in annotated:
        if item.annotator in by_task[item.task_id]:
            raise ValueError(f"task {item.task_id} has two annotations by {item.annotator!r}; keep one per annotator")
        by_task[item.task_id][item.annotator] = item.doc
    shared = {task: docs for task, docs in sorted(by_task.items()) if len(docs) > 1}
    report_labels = list(labels)
    task_counts = np.zeros((len(shared), len(report_labels), 4))
    pair_rows: dict[tuple[str, str], list[FloatArray]] = defaultdict(list)
    for t, docs in enumerate(shared.values()):
        for a, b in combinations(sorted(docs), 2):
            counts = span_counts([docs[a]], [_as_prediction(docs[b])], report_labels)[0]
            task_counts[t] += counts
            pair_rows[(a, b)].append(counts)
    per_type, micro = _summaries(task_counts, report_labels, bootstrap=bootstrap, seed=seed, min_support=min_support)
    pairs = []
    for (a, b), rows in sorted(pair_rows.items()):
        pair_types, pair_micro = _summaries(
            np.stack(rows), report_labels, bootstrap=bootstrap, seed=seed, min_support=min_support
        )
        pairs.append(PairAgreement(a, b, len(rows), pair_types, pair_micro))
    annotators = sorted({name for docs in shared.values() for name in docs})
    return AgreementReport(
        report_labels, len(shared), annotators, per_type, micro, pairs, bootstrap if len(shared) > 1 else 0, min_support
    )
