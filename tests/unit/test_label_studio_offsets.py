"""Label Studio regions whose offsets do not cover their ``value.text``.

UTF-16 offsets (an emoji counted as two, as JavaScript counts) are realigned and reported, anything else is never
guessed.
"""

from __future__ import annotations

import pytest
import spacy
from hypothesis import assume, given
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
    assert [e.text for e in exact.docs[0].ents] == ["Acme Corp"]
    assert exact.issues == []
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


def test_a_region_that_fits_both_units_is_read_as_code_points() -> None:
    """Label Studio >= 1.0 stores code points.

    A region whose offsets cover its text as code points is taken so, even when the same offsets read as UTF-16 would
    cover the same text further on.
    """
    text = "👍🏽 ß ß"
    second = (5, 6)  # the second "ß" as code points; the first "ß" as UTF-16 (the thumb counts four)
    assert utf16(text, 3) == 5

    result = from_label_studio([task(text, [(*second, "ß", "org")])], NLP, labels=LABELS, policy="strict")

    assert [(e.start_char, e.end_char) for e in result.docs[0].ents] == [second]
    assert result.issues == []


def test_one_annotation_is_read_in_one_unit_so_mixed_units_leave_the_task_out() -> None:
    text = "😀 Acme hired Bob ."
    acme, bob = text.index("Acme"), text.index("Bob")
    regions = [
        (acme, acme + 4, "Acme", "org"),  # code points
        (utf16(text, bob), utf16(text, bob + 3), "Bob", "person"),  # UTF-16
    ]

    result = from_label_studio([task(text, regions)], NLP, labels=LABELS, policy="expand")

    assert result.docs == []
    assert [(i.kind, i.action, i.label) for i in result.issues] == [("offsets", "dropped", "person")]
    assert "other regions of the same annotation count code points" in str(result.issues[0])
    with pytest.raises(ConversionError) as info:
        from_label_studio([task(text, regions)], NLP, labels=LABELS, policy="strict")
    assert [(i.kind, i.action) for i in info.value.issues] == [("offsets", "rejected")]


def test_utf16_annotations_move_their_regions_without_a_selection_too() -> None:
    text = "😀 Acme hired Bob ."
    acme, bob = text.index("Acme"), text.index("Bob")
    with_text = task(text, [(utf16(text, acme), utf16(text, acme + 4), "Acme", "org")])
    without = {
        "type": "labels",
        "value": {"start": utf16(text, bob), "end": utf16(text, bob + 3), "labels": ["person"]},
    }
    with_text["annotations"][0]["result"].append(without)  # type: ignore[index]

    result = from_label_studio([with_text], NLP, labels=LABELS, policy="expand")

    assert [(e.start_char, e.end_char, e.label_) for e in result.docs[0].ents] == [
        (acme, acme + 4, "org"),
        (bob, bob + 3, "person"),
    ]
    assert [(i.action, i.new_start) for i in result.issues] == [("realigned", acme), ("realigned", bob)]


def test_each_annotation_chooses_its_own_unit() -> None:
    text = "😀 Acme ."
    acme = text.index("Acme")
    tasks = [
        {**task(text, [(acme, acme + 4, "Acme", "org")]), "id": 1},
        {**task(text, [(utf16(text, acme), utf16(text, acme + 4), "Acme", "org")]), "id": 2},
    ]

    result = from_label_studio(tasks, NLP, labels=LABELS, policy="expand")

    assert [[(e.start_char, e.end_char) for e in doc.ents] for doc in result.docs] == [[(acme, acme + 4)]] * 2
    assert [(i.task_id, i.action) for i in result.issues] == [("2", "realigned")]


WORDS = ["Acme", "Corp", "Bob", "Lee", "and", "met", "😀", "👍🏽", "🎉🎉", "ß", "café", "東京"]


@st.composite
def labelled_text(draw: st.DrawFn) -> tuple[str, list[int], list[int], list[int]]:
    """A text of distinct words, the code-point start of each word, and the words picked as regions.

    The words are distinct so that a word's offsets in one unit never cover it in the other.
    """
    words = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=10, unique=True))
    text = " ".join(words)
    starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
    ends = [start + len(word) for start, word in zip(starts, words, strict=True)]
    picked = sorted(draw(st.sets(st.integers(0, len(words) - 1), min_size=1, max_size=3)))
    return text, starts, ends, picked


@given(labelled_text(), st.sampled_from(["code points", "UTF-16"]))
def test_an_annotation_in_either_unit_converts_to_the_exact_spans(
    case: tuple[str, list[int], list[int], list[int]], unit: str
) -> None:
    text, starts, ends, picked = case
    convert = (lambda i: utf16(text, i)) if unit == "UTF-16" else (lambda i: i)
    regions = [(convert(starts[i]), convert(ends[i]), text[starts[i] : ends[i]], "org") for i in picked]

    result = from_label_studio([task(text, regions)], NLP, labels=LABELS, policy="expand")

    assert [(e.start_char, e.end_char) for e in result.docs[0].ents] == [(starts[i], ends[i]) for i in picked]
    moved = [i for i in picked if (convert(starts[i]), convert(ends[i])) != (starts[i], ends[i])]
    assert [(i.kind, i.action, i.new_start, i.new_end) for i in result.issues] == [
        ("offsets", "realigned", starts[i], ends[i]) for i in moved
    ]


@given(labelled_text(), st.data())
def test_an_annotation_mixing_units_is_left_out(
    case: tuple[str, list[int], list[int], list[int]], data: st.DataObject
) -> None:
    text, starts, ends, _ = case
    # one region in each unit, each where the two units differ; the UTF-16 one without characters that JavaScript
    # counts as two (else its offsets could cover it with trailing whitespace as code points too)
    differs = [i for i in range(len(starts)) if utf16(text, starts[i]) != starts[i]]
    bmp = [i for i in differs if utf16(text, ends[i]) - utf16(text, starts[i]) == ends[i] - starts[i]]
    assume(bmp and len(differs) >= 2)
    in_utf16 = data.draw(st.sampled_from(bmp))
    in_points = data.draw(st.sampled_from([i for i in differs if i != in_utf16]))
    regions = [
        (starts[in_points], ends[in_points], text[starts[in_points] : ends[in_points]], "org"),
        (utf16(text, starts[in_utf16]), utf16(text, ends[in_utf16]), text[starts[in_utf16] : ends[in_utf16]], "org"),
    ]

    result = from_label_studio([task(text, regions)], NLP, labels=LABELS, policy="expand")

    assert result.docs == []
    assert [(i.kind, i.action, i.start) for i in result.issues] == [("offsets", "dropped", regions[1][0])]
