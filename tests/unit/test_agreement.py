"""Agreement per type on constructed annotations with known answers (``ml.agreement``)."""

from __future__ import annotations

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc

from ml.agreement import AnnotatedDoc, agreement

LABELS = ["person", "organisation", "location", "misc"]
TEXTS = {
    1: "Anna Meyer joined Acme Corp in New York .",
    2: "Paris is far from Berlin .",
    3: "Bob met Carla at the Louvre .",
    4: "Nothing here at all .",
}


@pytest.fixture(scope="module")
def nlp() -> Language:
    return spacy.blank("en")


def _doc(nlp: Language, task: int, *spans: tuple[str, str]) -> Doc:
    """A doc of task ``task`` whose ents are the given (surface, label) pairs (first occurrence)."""
    doc = nlp.make_doc(TEXTS[task])
    ents = []
    for surface, label in spans:
        start = doc.text.index(surface)
        span = doc.char_span(start, start + len(surface), label=label)
        assert span is not None, surface
        ents.append(span)
    doc.ents = ents
    return doc


def test_identical_annotators_agree_fully_and_unseen_types_have_no_figure(nlp: Language) -> None:
    a = [AnnotatedDoc(1, "ann", _doc(nlp, 1, ("Anna Meyer", "person"), ("Acme Corp", "organisation")))]
    b = [AnnotatedDoc(1, "bob", _doc(nlp, 1, ("Anna Meyer", "person"), ("Acme Corp", "organisation")))]
    report = agreement(a + b, labels=LABELS, bootstrap=0)
    assert report.tasks == 1
    assert report.annotators == ["ann", "bob"]
    assert report.per_type["person"].f1 == 1.0
    assert report.per_type["organisation"].f1 == 1.0
    assert report.per_type["location"].f1 is None
    assert report.per_type["location"].spans == 0
    assert report.micro.f1 == 1.0
    assert report.micro.spans == 4


def test_a_type_swap_costs_both_types_and_half_the_micro_f1(nlp: Language) -> None:
    items = [
        AnnotatedDoc(1, "ann", _doc(nlp, 1, ("Anna Meyer", "person"), ("Acme Corp", "organisation"))),
        AnnotatedDoc(1, "bob", _doc(nlp, 1, ("Anna Meyer", "person"), ("Acme Corp", "location"))),
    ]
    report = agreement(items, labels=LABELS, bootstrap=0)
    assert report.per_type["person"].f1 == 1.0
    assert report.per_type["organisation"].f1 == 0.0
    assert report.per_type["organisation"].spans == 1
    assert report.per_type["location"].f1 == 0.0
    assert report.per_type["location"].spans == 1
    assert report.micro.f1 == pytest.approx(0.5)  # 1 match of 2 spans each


def test_a_boundary_difference_is_half_credit_partially_and_none_exactly(nlp: Language) -> None:
    items = [
        AnnotatedDoc(1, "ann", _doc(nlp, 1, ("New York", "location"))),
        AnnotatedDoc(1, "bob", _doc(nlp, 1, ("York", "location"))),
    ]
    row = agreement(items, labels=LABELS, bootstrap=0).per_type["location"]
    assert row.f1 == 0.0
    assert row.partial_f1 == pytest.approx(0.5)


def test_agreement_is_symmetric_in_the_two_annotators(nlp: Language) -> None:
    one = _doc(nlp, 1, ("Anna Meyer", "person"), ("Acme Corp", "organisation"), ("New York", "location"))
    other = _doc(nlp, 1, ("Anna Meyer", "person"))
    forward = agreement([AnnotatedDoc(1, "a", one), AnnotatedDoc(1, "b", other)], labels=LABELS, bootstrap=0)
    backward = agreement([AnnotatedDoc(1, "b", one), AnnotatedDoc(1, "a", other)], labels=LABELS, bootstrap=0)
    assert forward.micro.f1 == backward.micro.f1 == pytest.approx(0.5)  # P 1/3 R 1 (or the reverse): F1 0.5


def test_three_annotators_give_three_pairs_pooled_per_task(nlp: Language) -> None:
    items = [
        AnnotatedDoc(2, "a", _doc(nlp, 2, ("Paris", "location"), ("Berlin", "location"))),
        AnnotatedDoc(2, "b", _doc(nlp, 2, ("Paris", "location"), ("Berlin", "location"))),
        AnnotatedDoc(2, "c", _doc(nlp, 2, ("Paris", "location"))),
        AnnotatedDoc(3, "a", _doc(nlp, 3, ("Bob", "person"))),  # alone on task 3: not compared
    ]
    report = agreement(items, labels=LABELS, bootstrap=0)
    assert report.tasks == 1
    assert [(p.a, p.b) for p in report.pairs] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [p.micro.f1 for p in report.pairs] == pytest.approx([1.0, 2 / 3, 2 / 3])
    # pooled: matches 2 + 1 + 1 = 4; spans 4 + 3 + 3 = 10 -> F1 = 2 * 4 / 10
    assert report.per_type["location"].f1 == pytest.approx(0.8)
    assert report.per_type["person"].f1 is None


def test_the_interval_brackets_the_estimate_and_support_decides_measurability(nlp: Language) -> None:
    items = []
    for task in (1, 2, 3):
        doc = {1: ("Anna Meyer", "person"), 2: ("Paris", "location"), 3: ("Bob", "person")}[task]
        other = {1: ("Anna Meyer", "person"), 2: ("Paris", "location"), 3: ("Carla", "person")}[task]
        items += [AnnotatedDoc(task, "a", _doc(nlp, task, doc)), AnnotatedDoc(task, "b", _doc(nlp, task, other))]
    report = agreement(items, labels=LABELS, bootstrap=200, min_support=4)
    person = report.per_type["person"]
    assert person.f1 == pytest.approx(0.5)
    assert person.f1_interval is not None
    assert person.f1_interval[0] <= person.f1 <= person.f1_interval[1]
    # 4 person spans, 2 location
    assert person.measurable
    assert not report.per_type["location"].measurable
    assert report.bootstrap_samples == 200


def test_one_annotator_twice_on_a_task_is_refused(nlp: Language) -> None:
    doc = _doc(nlp, 4)
    with pytest.raises(ValueError, match="two annotations"):
        agreement([AnnotatedDoc(4, "a", doc), AnnotatedDoc(4, "a", doc)], labels=LABELS)


def test_no_overlapping_task_gives_an_empty_report(nlp: Language) -> None:
    report = agreement([AnnotatedDoc(4, "a", _doc(nlp, 4))], labels=LABELS)
    assert report.tasks == 0
    assert report.pairs == []
    assert report.micro.f1 is None


def test_partial_f1_has_its_own_interval_from_the_same_resamples(nlp: Language) -> None:
    items = []
    for task in (1, 2, 3):  # person spans always differ in a boundary (partial credit only); Paris agrees
        span = {1: ("Anna Meyer", "person"), 2: ("Paris", "location"), 3: ("Bob met", "person")}[task]
        other = {1: ("Anna", "person"), 2: ("Paris", "location"), 3: ("Bob", "person")}[task]
        items += [AnnotatedDoc(task, "a", _doc(nlp, task, span)), AnnotatedDoc(task, "b", _doc(nlp, task, other))]
    report = agreement(items, labels=LABELS, bootstrap=300, min_support=2)
    person = report.per_type["person"]
    assert person.f1 == 0.0
    assert person.partial_f1 == pytest.approx(0.5)
    assert person.spans == 4
    # a resample's person spans differ only in boundaries: exact F1 is 0 in every one, partial 0.5 (0 when a
    # resample draws no person task)
    assert person.f1_interval == (0.0, 0.0)
    assert person.partial_f1_interval is not None
    assert person.partial_f1_interval[1] == pytest.approx(0.5)
    micro = report.micro.partial_f1_interval
    assert micro is not None
    assert micro[0] <= report.micro.partial_f1 <= micro[1]  # type: ignore[operator]


def _row(f1: float | None, interval: tuple[float, float] | None, *, measurable: bool = True) -> dict[str, object]:
    return {"f1": f1, "f1_interval": interval, "measurable": measurable}


def test_the_ceiling_verdict_uses_the_interval_not_the_point_estimate() -> None:
    from backend.services.agreement import ceiling_verdict

    assert ceiling_verdict(_row(0.80, (0.70, 0.90)), 0.85) == "uncertain"  # below the target, but not surely
    assert ceiling_verdict(_row(0.70, (0.60, 0.80)), 0.85) == "below"  # the whole interval under it
    assert ceiling_verdict(_row(0.92, (0.86, 0.97)), 0.85) == "allows"
    assert ceiling_verdict(_row(0.90, (0.80, 0.95)), 0.85) == "uncertain"  # above, but not surely
    assert ceiling_verdict(_row(0.50, None), 0.85) == "uncertain"  # one task: no interval, no verdict
    assert ceiling_verdict(_row(0.50, (0.4, 0.6), measurable=False), 0.85) == "not measurable"
