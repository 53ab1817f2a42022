"""Label Studio exports hold more than label regions; nothing in them may stop a conversion by itself.

Relations, other control tags' results and (with ``from_name``) other ``<Labels>`` controls are ignored and
counted under every policy. Malformed tasks and annotations are rejected (raising at the end, listing each) under
``strict`` and left out and counted under ``expand`` / ``contract``, while every other task converts.
"""

from __future__ import annotations

from typing import Any

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.converters import CharSpan, ConversionIssue, from_label_studio, to_label_studio, to_results
from ml.converters.label_studio import results_to_spans, spans_to_results
from ml.converters.label_studio_tasks import LSAnnotation, _latest
from ml.errors import ConversionError
from ml.prediction import ScoredSpan

LABELS = ("PER", "ORG")
NLP = spacy.blank("en")
TEXT = "Ann met Bob at Acme"

RELATION = {"from_id": "r1", "to_id": "r2", "type": "relation", "direction": "right", "labels": []}
TEXTAREA = {"id": "t1", "type": "textarea", "from_name": "notes", "to_name": "text", "value": {"text": ["odd"]}}
CHOICES = {"id": "c1", "type": "choices", "from_name": "topic", "to_name": "text", "value": {"choices": ["x"]}}
UNTYPED = {"from_id": "r1", "to_id": "r2"}


def region(start: int, end: int, label: str, *, from_name: str = "label", rid: str = "r1") -> dict[str, Any]:
    return {
        "id": rid,
        "from_name": from_name,
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": TEXT[start:end], "labels": [label]},
    }


def task(task_id: int, result: Any, text: str = TEXT) -> dict[str, Any]:
    return {"id": task_id, "data": {"text": text}, "annotations": [{"id": 1, "result": result}]}


def ents(result: Any) -> list[list[CharSpan]]:
    return [[CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in result.docs]


# --------------------------------------------------------------------------------------------
# Results that are not label regions: ignored and counted, never fatal
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["strict", "expand", "contract"])
@pytest.mark.parametrize(
    "other", [RELATION, TEXTAREA, CHOICES, UNTYPED], ids=["relation", "textarea", "choices", "untyped"]
)
def test_non_label_results_are_ignored_and_counted(policy: str, other: dict[str, Any]) -> None:
    result = from_label_studio(
        [task(1, [region(0, 3, "PER"), region(8, 11, "PER", rid="r2"), other])],
        NLP,
        labels=LABELS,
        policy=policy,  # type: ignore[arg-type]
    )

    assert ents(result) == [[CharSpan(0, 3, "PER"), CharSpan(8, 11, "PER")]]
    assert [(i.task_id, i.kind, i.action) for i in result.issues] == [("1", "unsupported_result", "ignored")]
    assert "result[2]" in result.issues[0].detail


def test_a_relation_no_longer_fails_the_training_conversion() -> None:
    """The reported case: the backend converts with policy 'expand'; a relation used to raise a DataError."""
    tasks = [task(1, [region(0, 3, "PER"), region(15, 19, "ORG", rid="r2"), RELATION]), task(2, [region(8, 11, "PER")])]

    result = from_label_studio(tasks, NLP, labels=LABELS, policy="expand")

    assert ents(result) == [[CharSpan(0, 3, "PER"), CharSpan(15, 19, "ORG")], [CharSpan(8, 11, "PER")]]
    assert [i.kind for i in result.issues] == ["unsupported_result"]


def test_from_name_keeps_only_its_control_and_counts_the_others() -> None:
    results = [region(0, 3, "PER", from_name="ner"), region(8, 11, "PER", from_name="label", rid="r2")]

    only_ner = from_label_studio([task(1, results)], NLP, labels=LABELS, from_name="ner")
    every = from_label_studio([task(1, results)], NLP, labels=LABELS)

    assert ents(only_ner) == [[CharSpan(0, 3, "PER")]]
    assert [(i.kind, i.action) for i in only_ner.issues] == [("unsupported_result", "ignored")]
    assert "'label'" in str(only_ner.issues[0])
    assert "'ner'" in str(only_ner.issues[0])
    assert ents(every) == [[CharSpan(0, 3, "PER"), CharSpan(8, 11, "PER")]]
    assert every.issues == []


def test_ignored_result_reads_well() -> None:
    (issue,) = from_label_studio([task(7, [RELATION])], NLP, labels=LABELS).issues

    assert str(issue) == (
        "task 7: tasks[0].annotations[0].result[0] is a 'relation' result, not a labelled span (ignored)"
    )


# --------------------------------------------------------------------------------------------
# Malformed tasks and annotations
# --------------------------------------------------------------------------------------------

MALFORMED_RESULTS: dict[str, Any] = {
    "result is text": "zzz",
    "result is null": None,
    "result is an object": {"start": 0},
    "item is text": ["x"],
    "item is a number": [region(0, 3, "PER"), 3],
    "item is null": [None],
    "value missing": [{"type": "labels", "from_name": "label"}],
    "value is a list": [{"type": "labels", "value": [0, 3]}],
    "start missing": [{"type": "labels", "value": {"end": 3, "labels": ["PER"]}}],
    "end is text": [{"type": "labels", "value": {"start": 0, "end": "3", "labels": ["PER"]}}],
    "start is a float": [{"type": "labels", "value": {"start": 0.5, "end": 3, "labels": ["PER"]}}],
    "labels empty": [region(0, 3, "PER"), {"type": "labels", "value": {"start": 8, "end": 11, "labels": []}}],
    "labels missing": [{"type": "labels", "value": {"start": 8, "end": 11}}],
    "type is a number": [{"type": 3, "value": {"start": 0, "end": 3, "labels": ["PER"]}}],
}


@pytest.mark.parametrize("policy", ["expand", "contract"])
@pytest.mark.parametrize("bad", MALFORMED_RESULTS.values(), ids=MALFORMED_RESULTS.keys())
def test_malformed_annotation_leaves_its_task_out_and_the_others_in(policy: str, bad: Any) -> None:
    tasks = [task(1, [region(0, 3, "PER")]), task(2, bad), task(3, [region(8, 11, "PER")])]

    result = from_label_studio(tasks, NLP, labels=LABELS, policy=policy)  # type: ignore[arg-type]

    assert [doc.user_data["task_id"] for doc in result.docs] == ["1", "3"]
    assert ents(result) == [[CharSpan(0, 3, "PER")], [CharSpan(8, 11, "PER")]]
    assert result.issues
    assert all((i.task_id, i.kind, i.action) == ("2", "malformed", "dropped") for i in result.issues)
    assert all("tasks[1].annotations[0].result" in i.detail for i in result.issues)


@pytest.mark.parametrize("bad", MALFORMED_RESULTS.values(), ids=MALFORMED_RESULTS.keys())
def test_malformed_annotation_is_rejected_under_strict_after_reading_every_task(bad: Any) -> None:
    tasks = [task(1, bad), task(2, [region(0, 3, "PER")]), task(3, bad)]

    with pytest.raises(ConversionError) as info:
        from_label_studio(tasks, NLP, labels=LABELS, policy="strict")

    assert {i.task_id for i in info.value.issues} == {"1", "3"}
    assert all((i.kind, i.action) == ("malformed", "rejected") for i in info.value.issues)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("task 1: tasks[0].annotations[0].result")
    assert "policy 'expand' or 'contract'" in message


@pytest.mark.parametrize(
    ("raw", "place"),
    [
        ("not a task", "tasks[1] must be a task object"),
        ({"id": 2, "annotations": [{"result": []}]}, "tasks[1].data is missing"),
        ({"id": 2, "data": {"text": TEXT}, "annotations": "none"}, "tasks[1].annotations must be a list"),
        ({"id": 2, "data": {"text": TEXT}, "annotations": ["x"]}, "tasks[1].annotations[0] must be an object, not 'x'"),
        ({"id": 2, "data": {"text": TEXT}, "annotations": [{"was_cancelled": "maybe"}]}, "was_cancelled"),
    ],
)
def test_malformed_task_is_counted_and_the_others_convert(raw: Any, place: str) -> None:
    result = from_label_studio([task(1, [region(0, 3, "PER")]), raw], NLP, labels=LABELS, policy="expand")

    assert ents(result) == [[CharSpan(0, 3, "PER")]]
    assert [(i.kind, i.action) for i in result.issues] == [("malformed", "dropped")]
    assert place in str(result.issues[0])
    assert "instance of" not in str(result.issues[0])
    assert "LSAnnotation" not in str(result.issues[0])


UNREADABLE_ANNOTATIONS: dict[str, Any] = {
    "was_cancelled is null": {"id": 1002, "was_cancelled": None, "result": []},
    "was_cancelled is text": {"id": 1002, "was_cancelled": "maybe"},
    "id is a list": {"id": [1002], "result": []},
    "not an object": "annotation",
}


@pytest.mark.parametrize("bad", UNREADABLE_ANNOTATIONS.values(), ids=UNREADABLE_ANNOTATIONS.keys())
@pytest.mark.parametrize("first", [True, False], ids=["bad first", "bad second"])
def test_an_unreadable_annotation_leaves_its_whole_task_out(bad: Any, first: bool) -> None:
    """The unreadable annotation may be the latest one.

    Building the task from the others could train on labels the annotator has replaced.
    """
    good = {"id": 1001, "updated_at": "2024-05-01T10:00:00Z", "result": [region(0, 3, "PER")]}
    raw = {"id": 2, "data": {"text": TEXT}, "annotations": [bad, good] if first else [good, bad]}

    result = from_label_studio([task(1, [region(8, 11, "PER")]), raw], NLP, labels=LABELS, policy="expand")

    assert [doc.user_data["task_id"] for doc in result.docs] == ["1"]
    assert [(i.task_id, i.kind, i.action) for i in result.issues] == [("2", "malformed", "dropped")]
    assert f"tasks[1].annotations[{0 if first else 1}]" in result.issues[0].detail
    with pytest.raises(ConversionError) as info:
        from_label_studio([raw], NLP, labels=LABELS, policy="strict")
    assert [(i.kind, i.action) for i in info.value.issues] == [("malformed", "rejected")]


def test_label_studio_before_1_0_completions_are_read() -> None:
    raw = {"id": 2, "data": {"text": TEXT}, "completions": [{"result": [region(0, 3, "PER")]}]}

    assert ents(from_label_studio([raw], NLP, labels=LABELS)) == [[CharSpan(0, 3, "PER")]]


def test_malformed_issue_reads_well() -> None:
    bad = [{"type": "labels", "value": {"start": "zero", "end": 3, "labels": ["PER"]}}]

    (issue,) = from_label_studio([task(9, bad)], NLP, labels=LABELS, policy="expand").issues

    assert (
        str(issue)
        == "task 9: tasks[0].annotations[0].result[0].value.start must be a whole number, not 'zero' (dropped)"
    )


# --------------------------------------------------------------------------------------------
# Junk of any shape among the results never stops an 'expand' conversion
# --------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 30) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["type", "value", "start", "end", "labels", "from_name"]), inner, max_size=4)
    ),
    max_leaves=8,
)


@settings(max_examples=80, deadline=None)
@given(junk=st.lists(json_values, min_size=1, max_size=3))
def test_any_result_items_are_converted_or_counted_never_fatal(junk: list[Any]) -> None:
    tasks = [task(1, [region(0, 3, "PER")]), task(2, [region(8, 11, "PER"), *junk]), task(3, [region(15, 19, "ORG")])]

    result = from_label_studio(tasks, NLP, labels=LABELS, policy="expand")

    ids = [doc.user_data["task_id"] for doc in result.docs]
    assert ids[0] == "1"
    assert ids[-1] == "3"
    assert ents(result)[0] == [CharSpan(0, 3, "PER")]
    assert ents(result)[-1] == [CharSpan(15, 19, "ORG")]
    if "2" not in ids:  # left out only when something in it was malformed, and then said so
        assert any(i.task_id == "2" and i.kind == "malformed" for i in result.issues)
    assert all(i.action in ("ignored", "dropped", "expanded", "contracted", "trimmed") for i in result.issues)


# --------------------------------------------------------------------------------------------
# Several live annotations: the latest, deterministically
# --------------------------------------------------------------------------------------------


def annotation(aid: Any, updated: str | None, *, cancelled: bool = False) -> LSAnnotation:
    return LSAnnotation.model_validate({"id": aid, "updated_at": updated, "was_cancelled": cancelled, "result": []})


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ([annotation(1, "2024-05-01T10:00:00Z"), annotation(2, "2024-04-01T10:00:00Z")], 1),
        ([annotation(1, "2024-05-01T10:00:00+02:00"), annotation(2, "2024-05-01T09:00:00Z")], 2),
        ([annotation(1, "2024-05-01T10:00:00.5"), annotation(2, "2024-05-01T10:00:00.25Z")], 1),
        ([annotation(5, "2024-05-01T10:00:00Z"), annotation(4, "2024-05-01T10:00:00Z")], 5),
        ([annotation(4, "2024-05-01T10:00:00Z"), annotation(5, "2024-05-01T10:00:00Z")], 5),
        ([annotation(1, None), annotation(2, "garbage"), annotation(3, "2020-01-01T00:00:00Z")], 3),
        ([annotation(1, "2024-05-01T10:00:00Z"), annotation(2, "2030-01-01T00:00:00Z", cancelled=True)], 1),
        ([annotation("b", None), annotation("a", None)], "a"),
        ([annotation(None, None), annotation(7, None)], 7),
    ],
)
def test_latest_annotation_is_chosen_deterministically(annotations: list[LSAnnotation], expected: object) -> None:
    chosen = _latest(annotations)
    assert chosen is not None
    assert chosen.id == expected
    reversed_choice = _latest(annotations[::-1])
    if len({(a.updated_at, a.id) for a in annotations}) == len(annotations) and isinstance(expected, int):
        assert reversed_choice is not None
        assert reversed_choice.id == expected


def test_all_cancelled_means_no_doc() -> None:
    raw = {"id": 1, "data": {"text": TEXT}, "annotations": [{"was_cancelled": True, "result": [region(0, 3, "PER")]}]}

    result = from_label_studio([raw], NLP, labels=LABELS)

    assert result.docs == []
    assert result.issues == []


def test_issue_fields_default_for_record_kinds() -> None:
    issue = ConversionIssue(task_id="1", kind="malformed", action="dropped", detail="x")
    assert (issue.start, issue.end, issue.label, issue.text) == (0, 0, "", "")


# --------------------------------------------------------------------------------------------
# A project's own tag names, both ways
# --------------------------------------------------------------------------------------------


def test_writers_take_the_projects_names_and_the_reader_reads_them_back() -> None:
    (doc,) = from_label_studio([task(1, [region(0, 3, "PER")])], NLP, labels=LABELS).docs
    names = {"from_name": "ner", "to_name": "doc"}

    (exported,) = to_label_studio([doc], text_field="body", **names)
    results = to_results(doc, [0.5], **names)
    predicted = spans_to_results([ScoredSpan(0, 3, "PER", "Ann", 0.9)], **names)

    assert exported["data"] == {"body": TEXT}
    for item in [*exported["annotations"][0]["result"], *results, *predicted]:
        assert (item["from_name"], item["to_name"]) == ("ner", "doc")
    assert [(s.start, s.end, s.label) for s in results_to_spans(predicted)] == [(0, 3, "PER")]
    back = from_label_studio([exported], NLP, labels=LABELS, from_name="ner", text_field="body")
    assert ents(back) == [[CharSpan(0, 3, "PER")]]
    assert back.issues == []
    assert to_results(doc)[0]["from_name"] == "label"  # the defaults are nerloop's own names
