"""Label Studio regions whose offsets do not cover their ``value.text``: UTF-16 offsets (an emoji counted as two,
as JavaScript counts) are realigned and reported, anything else is never guessed."""

from __future__ import annotations

import pytest
import spacy
from hypothesis import given
from hypothesis import strategies as st

from ml.converters import from_label_studio
from ml.errors import ConversionError

NLP = spacy.blank("en")
LABELS = ["org", "person"]


def utf16(text: str, index: int) -> int:
    """JavaScript's offset of a code-point offset."""
    return len(text[:index].encode("utf-16-le")) // 2


def task(text: str, regions: list[tuple[int, int, str, str]]) -> dict[str, object]:
    result = [
        {"type": "labels", "from_name": "label", "value": {"start": s, "end": e, "text": sel, "labels": [label]}}
        for s, e, sel, label in regions
    ]
    return {"id": 1, "data": {"text": text}, "annotations": [{"id": 1, "result": result}]}


def test_utf16_offsets_after_an_emoji_are_realigned_and_reported() -> None:
    text = "💩 Report by Acme Corp and Bob 👍🏽 Lee ."
    acme, bob = text.index("Acme Corp"), text.index("Bob 👍🏽 Lee")
    n = len("Bob 👍🏽 Lee")  # 10 code points: the thumb and its skin tone are two
    regions = [
        (utf16(text, acme), utf16(text, acme + 9), "Acme Corp", "org"),
        (utf16(text, bob), utf16(text, bob + n), "Bob 👍🏽 Lee", "person"),  # an emoji inside the span too
    ]
    result = from_label_studio([task(text, regions)], NLP, labels=LABELS, policy="expand")
    assert [(e.start_char, e.end_char, e.label_) for e in result.docs[0].ents] == [
        (acme, acme + 9, "org"),
        (bob, bob + n, "person"),
    ]
    assert [(i.kind, i.action, i.new_start) for i in result.issues] == [
        ("offsets", "realigned", acme),
        ("offsets", "realigned", bob),
    ]
    assert "UTF-16" in str(result.issues[0])
    with pytest.raises(ConversionError, match="does not cover the text the annotator selected"):
        from_label_studio([task(text, regions)], NLP, labels=LABELS, policy="strict")


def test_offsets_that_cover_the_selection_are_kept_without_an_issue() -> None:
    text = "💩 Report by Acme Corp ."
    acme = text.index("Acme Corp")
    exact = from_label_studio([task(text, [(acme, acme + 9, "Acme Corp", "org")])], NLP, labels=LABELS)
    assert [e.text for e in exact.docs[0].ents] == ["Acme Corp"] and exact.issues == []
    # Label Studio may store the selection without the whitespace its offsets took in: not an offsets issue
    padded = from_label_studio(
        [task(text, [(acme, acme + 10, "Acme Corp", "org")])], NLP, labels=LABELS, policy="expand"
    )
    assert [(i.kind, i.action) for i in padded.issues] == [("whitespace", "trimmed")]


def test_a_selection_found_nowhere_at_the_offsets_leaves_the_task_out() -> None:
    text = "Report by Acme Corp ."
    result = from_label_studio([task(text, [(10, 19, "Globex", "org")])], NLP, labels=LABELS, policy="expand")
    assert result.docs == []
    assert [(i.kind, i.action) for i in result.issues] == [("offsets", "dropped")]
    assert "'Globex'" in str(result.issues[0])


def test_offsets_past_the_end_that_are_not_utf16_stay_out_of_range() -> None:
    result = from_label_studio([task("Acme .", [(40, 44, "Acme", "org")])], NLP, labels=LABELS, policy="expand")
    assert [(i.kind, i.action) for i in result.issues] == [("out_of_range", "dropped")]


WORDS = st.sampled_from(["Acme", "Corp", "Bob", "Lee", "and", "met", "😀", "👍🏽", "🎉🎉", "ß", "café", "東京"])


@given(st.lists(WORDS, min_size=2, max_size=12), st.data())
def test_any_text_labelled_in_javascript_offsets_converts_to_the_same_spans(
    words: list[str], data: st.DataObject
) -> None:
    text = " ".join(words)
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    picked = sorted(data.draw(st.sets(st.integers(0, len(words) - 1), min_size=1, max_size=3)))
    regions = [(utf16(text, starts[i]), utf16(text, starts[i] + len(words[i])), words[i], "org") for i in picked]
    result = from_label_studio([task(text, regions)], NLP, labels=LABELS, policy="expand")
    assert [(e.start_char, e.end_char) for e in result.docs[0].ents] == [
        (starts[i], starts[i] + len(words[i])) for i in picked
    ]
    assert {i.kind for i in result.issues} <= {"offsets"}
