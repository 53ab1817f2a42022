"""Likely-mislabelled spans on constructed cases with known answers (``ml.review``).

The kinds, their confidences, the ranking, the fold split and the reading shown to a reviewer.
"""

from __future__ import annotations

from collections import Counter

import pytest

from ml.converters import CharSpan
from ml.errors import TrainingError
from ml.prediction import ScoredSpan
from ml.review import ReviewSettings, Suspect, contradictions, corrected, cross_validate, fold_of, rank

TEXT = "Anna Smith works at Acme Corp in Paris ."
#       0         1         2         3
#       0123456789012345678901234567890123456789


def _p(start: int, end: int, label: str, score: float) -> ScoredSpan:
    return ScoredSpan(start, end, label, TEXT[start:end], score)


def test_agreement_gives_no_suspect() -> None:
    gold = [CharSpan(0, 10, "person"), CharSpan(20, 29, "organisation")]
    predicted = [_p(0, 10, "person", 0.99), _p(20, 29, "organisation", 0.97)]
    assert contradictions(1, TEXT, gold, predicted) == []


def test_each_kind_with_its_confidence() -> None:
    gold = [
        CharSpan(0, 4, "person"),  # the model reads "Anna Smith": wrong boundary
        CharSpan(11, 16, "misc"),  # "works": nothing predicted over it, beam mass 0.1: missed at 0.9
        CharSpan(20, 29, "organisation"),  # the model says location on the exact span: wrong type
    ]
    predicted = [
        _p(0, 10, "person", 0.8),
        _p(20, 29, "location", 0.7),
        _p(33, 38, "location", 0.95),  # Paris, unlabelled: spurious
    ]
    found = contradictions(7, TEXT, gold, predicted, span_mass={(11, 16): 0.1}, fold=2)
    by_kind = {s.kind: s for s in found}
    # nervaluate's terms, the labels as the reference (as ml.evaluation): a label the model misses is "missed",
    # a model entity without a label "spurious"
    assert set(by_kind) == {"wrong_boundary", "missed", "wrong_type", "spurious"}
    boundary = by_kind["wrong_boundary"]
    assert (boundary.start, boundary.end, boundary.label) == (0, 4, "person")
    assert (boundary.predicted_start, boundary.predicted_end, boundary.confidence) == (0, 10, 0.8)
    assert by_kind["missed"].confidence == pytest.approx(0.9)
    assert by_kind["missed"].text == "works"
    assert by_kind["missed"].predicted_label is None
    assert by_kind["missed"].label == "misc"
    assert (by_kind["wrong_type"].label, by_kind["wrong_type"].predicted_label) == ("organisation", "location")
    spurious = by_kind["spurious"]
    assert spurious.label is None
    assert spurious.text == "Paris"
    assert spurious.entity_type == "location"
    assert spurious.confidence == 0.95
    assert {s.task_id for s in found} == {7}
    assert {s.fold for s in found} == {2}


def test_a_missed_label_without_any_beam_mass_is_certain() -> None:
    found = contradictions(1, TEXT, [CharSpan(11, 16, "misc")], [])
    assert [(s.kind, s.confidence) for s in found] == [("missed", 1.0)]


def test_a_missed_label_is_discounted_by_the_model_recall() -> None:
    found = contradictions(1, TEXT, [CharSpan(11, 16, "misc")], [], span_mass={(11, 16): 0.2}, recall=0.5)
    assert found[0].confidence == pytest.approx(0.4)  # (1 - 0.2) * 0.5: a model that finds half the labels


def test_a_boundary_takes_the_most_confident_overlapping_prediction() -> None:
    gold = [CharSpan(0, 29, "organisation")]  # one span over two predicted ones
    found = contradictions(1, TEXT, gold, [_p(0, 10, "person", 0.6), _p(20, 29, "organisation", 0.9)])
    assert len(found) == 1
    assert found[0].kind == "wrong_boundary"
    assert found[0].predicted_label == "organisation"


def test_ranking_is_by_confidence_with_a_floor_and_a_limit() -> None:
    def s(task: int, confidence: float) -> Suspect:
        return Suspect(task, "spurious", confidence, None, None, None, 0, 4, "person", "Anna")

    ranked = rank([s(3, 0.6), s(1, 0.9), s(2, 0.4), s(4, 0.9)], min_confidence=0.5)
    assert [(x.task_id, x.confidence) for x in ranked] == [(1, 0.9), (4, 0.9), (3, 0.6)]
    assert [x.task_id for x in rank([s(3, 0.6), s(1, 0.9)], limit=1)] == [1]


def test_corrected_applies_each_reading() -> None:
    gold = [CharSpan(0, 4, "person"), CharSpan(11, 16, "misc"), CharSpan(20, 29, "organisation")]
    found = contradictions(
        1,
        TEXT,
        gold,
        [_p(0, 10, "person", 0.8), _p(20, 29, "location", 0.7), _p(33, 38, "location", 0.95)],
    )
    # the missed label ("works", nothing predicted there) stays, so the reviewer sees the span its note is about
    assert corrected(gold, found) == [
        CharSpan(0, 10, "person"),
        CharSpan(11, 16, "misc"),
        CharSpan(20, 29, "location"),
        CharSpan(33, 38, "location"),
    ]


def test_folds_are_stable_in_range_and_balanced() -> None:
    folds = [fold_of(task, folds=5, key="7") for task in range(2000)]
    assert folds == [fold_of(task, folds=5, key="7") for task in range(2000)]
    counts = Counter(folds)
    # ~400 each
    assert set(counts) == set(range(5))
    assert min(counts.values()) > 330
    assert folds != [fold_of(task, folds=5, key="8") for task in range(2000)]  # another project, another split


def test_too_few_documents_are_refused_before_any_training(tmp_path: object) -> None:
    with pytest.raises(TrainingError, match="at least 20"):
        cross_validate([], [], settings=ReviewSettings(), work_dir=str(tmp_path))
