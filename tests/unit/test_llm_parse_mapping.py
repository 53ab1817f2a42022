"""Mapping an LLM's answer onto the text: order-free, longest answer first, whole words, the guide's labels only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import pairwise, permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.converters.spans import CharSpan
from ml.llm import ParsedEntities, parse_response

SETTINGS = settings(max_examples=200, deadline=None)
# Labels that differ only in case or separators are legal in a guide (its name pattern allows both).
GUIDE = ("ORG", "location", "Person", "person", "work-of-art")
ANSWER_LABELS = (
    *GUIDE,
    *("org", "Org", " ORG ", "LOCATION", "Location", "PERSON", "pErSoN", "work_of_art", "Work Of Art"),
    *("WORK-OF-ART", "workofart", "per son", "BOGUS", "", "organisation"),
)
ENTITIES = ("New York", "New York Times", "Times Square", "Bank of America", "America", "York", "Bob Stone", "Bob")
CASES: tuple[Callable[[str], str], ...] = (str, str.lower, str.upper, str.title)
FILLER = ("the", "quoted", "met", "in", "and", "Yorkshire", "Newark", "Americana", "Bobby", "Stone", "Times")


def _answer(*items: tuple[str, str]) -> str:
    return json.dumps({"entities": [{"text": text, "label": label} for text, label in items]})


def _normalise(value: str) -> str:
    return " ".join(value.split()).casefold()


def _loose(label: str) -> str:
    return re.sub(r"[\s_-]+", "_", label.strip().casefold())


def _label_status(label: str) -> tuple[str, str | None]:
    """The oracle for labels: ``("ok", guide label)``, ``("ambiguous", None)`` or ``("unknown", None)``."""
    if label.strip() in GUIDE:
        return "ok", label.strip()
    matches = [name for name in GUIDE if _loose(name) == _loose(label)]
    if len(matches) == 1:
        return "ok", matches[0]
    return ("ambiguous" if matches else "unknown"), None


def _whole_words(text: str, surface: str) -> list[tuple[int, int]]:
    """Every occurrence of ``surface`` (any case) that cuts no word, overlapping ones included."""
    pattern = re.compile(r"(?=(?<!\w)(" + re.escape(surface) + r")(?!\w))", re.IGNORECASE)
    return [match.span(1) for match in pattern.finditer(text)]


# --------------------------------------------------------------------------------------------
# Property: spans are real, disjoint, order-free, and a longer answer is never beaten by a shorter one
# --------------------------------------------------------------------------------------------


@st.composite
def nested_answers(draw: st.DrawFn) -> tuple[str, list[dict[str, str]], list[dict[str, str]]]:
    """A text of words and entity names, an answer about it, and the same answer shuffled.

    Surfaces are entity names (some absent, some only inside longer words), runs of the text's words (so nested
    and overlapping answers are common), repeats and junk, in any letter case; labels include case and separator
    variants of the guide's, ambiguous ones and unknown ones.
    """
    tokens = draw(st.lists(st.sampled_from(ENTITIES + FILLER), min_size=1, max_size=12))
    text = "".join(token + draw(st.sampled_from([" ", " ", ", ", ". "])) for token in tokens).strip()
    words = [match.span() for match in re.finditer(r"\w+", text)]
    items: list[dict[str, str]] = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["entity", "window", "window", "repeat", "junk"]))
        if kind == "repeat" and items:
            items.append(draw(st.sampled_from(items)))
            continue
        if kind == "window":
            first = draw(st.integers(0, len(words) - 1))
            last = draw(st.integers(first, min(first + 3, len(words) - 1)))
            surface = text[words[first][0] : words[last][1]]
        else:
            surface = draw(st.sampled_from(ENTITIES)) if kind == "entity" else "Gotham City"
        case = draw(st.sampled_from(CASES))
        items.append({"text": case(surface), "label": draw(st.sampled_from(ANSWER_LABELS))})
    return text, items, draw(st.permutations(items))


def _assert_longer_answers_win(text: str, parsed: ParsedEntities, items: list[dict[str, str]]) -> None:
    """An occurrence of a surface is left unlabelled, when an item with that surface was dropped or labels a later
    occurrence, only because a span at least as long as the surface already covers part of it."""
    placeable: dict[str, int] = {}
    for item in items:
        if _label_status(item["label"])[0] == "ok" and _whole_words(text, item["text"]):
            placeable[_normalise(item["text"])] = placeable.get(_normalise(item["text"]), 0) + 1
    for surface, count in placeable.items():
        placed = [s for s in parsed.spans if _normalise(text[s.start : s.end]) == surface]
        assert len(placed) <= count
        last = max((s.start for s in placed), default=-1)
        for start, end in _whole_words(text, surface):
            if (start, end) in {(s.start, s.end) for s in placed} or (len(placed) == count and start > last):
                continue
            blockers = [s for s in parsed.spans if s.start < end and start < s.end]
            assert any(s.end - s.start >= len(surface) for s in blockers), (surface, (start, end), parsed.spans)


@SETTINGS
@given(nested_answers())
def test_mapping_is_exact_disjoint_order_free_and_longest_first(
    case: tuple[str, list[dict[str, str]], list[dict[str, str]]],
) -> None:
    text, items, shuffled = case
    parsed = parse_response(json.dumps({"entities": items}), text, labels=GUIDE)
    assert len(parsed.spans) + parsed.dropped == len(items) == len(parsed.reasons) + len(parsed.spans)
    assert parsed.spans == sorted(parsed.spans)
    assert all(left.end <= right.start for left, right in pairwise(parsed.spans))
    for span in parsed.spans:
        found = _normalise(text[span.start : span.end])
        assert span.label in GUIDE
        assert any(_normalise(i["text"]) == found and _label_status(i["label"])[1] == span.label for i in items)
    statuses = [_label_status(item["label"])[0] for item in items]
    for status in ("ambiguous", "unknown"):
        assert sum(r.startswith(f"{status} label") for r in parsed.reasons) == statuses.count(status)
    absent = [i for i, s in zip(items, statuses, strict=True) if s == "ok" and not _whole_words(text, i["text"])]
    assert sum(r.startswith("not in text") for r in parsed.reasons) == len(absent)
    _assert_longer_answers_win(text, parsed, items)
    again = parse_response(json.dumps({"entities": shuffled}), text, labels=GUIDE)
    assert (again.spans, again.dropped, sorted(again.reasons)) == (parsed.spans, parsed.dropped, sorted(parsed.reasons))


# --------------------------------------------------------------------------------------------
# Nested and overlapping answers
# --------------------------------------------------------------------------------------------

NYT = "The New York Times quoted the New York Times."
NYT_ITEMS = (("New York Times", "organisation"), ("New York", "location"), ("New York Times", "organisation"))


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_both_mentions_of_the_longer_name_win_over_the_nested_one(order: tuple[int, ...]) -> None:
    parsed = parse_response(_answer(*(NYT_ITEMS[i] for i in order)), NYT, labels=["organisation", "location"])
    assert parsed.spans == [CharSpan(4, 18, "organisation"), CharSpan(30, 44, "organisation")]
    assert (parsed.dropped, parsed.reasons) == (1, ["overlaps"])


@pytest.mark.parametrize("reverse", [False, True])
def test_a_shorter_name_takes_a_free_occurrence_outside_the_longer_one(reverse: bool) -> None:
    text = "Bank of America lends in America."
    items = [("America", "LOC"), ("Bank of America", "ORG")]
    parsed = parse_response(_answer(*(items[::-1] if reverse else items)), text, labels=["ORG", "LOC"])
    assert parsed.spans == [CharSpan(0, 15, "ORG"), CharSpan(25, 32, "LOC")]
    assert parsed.dropped == 0


def test_a_longer_answer_listed_after_a_shorter_one_still_wins() -> None:
    parsed = parse_response(_answer(("Stone", "ORG"), ("Bob Stone", "PER")), "Bob Stone left.", labels=["ORG", "PER"])
    assert parsed.spans == [CharSpan(0, 9, "PER")]
    assert parsed.reasons == ["overlaps"]


@pytest.mark.parametrize("reverse", [False, True])
def test_overlapping_answers_longest_wins(reverse: bool) -> None:
    items = [("Times Square", "LOC"), ("New York Times", "ORG")]
    parsed = parse_response(
        _answer(*(items[::-1] if reverse else items)), "New York Times Square", labels=["ORG", "LOC"]
    )
    assert parsed.spans == [CharSpan(0, 14, "ORG")]
    assert parsed.reasons == ["overlaps"]


@pytest.mark.parametrize("reverse", [False, True])
def test_overlapping_answers_of_equal_length_earliest_wins(reverse: bool) -> None:
    items = [("Marie Lee", "PER"), ("Ann Marie", "PER")]
    parsed = parse_response(_answer(*(items[::-1] if reverse else items)), "Ann Marie Lee", labels=["PER"])
    assert parsed.spans == [CharSpan(0, 9, "PER")]
    assert parsed.reasons == ["overlaps"]


def test_repeats_beyond_the_free_occurrences_are_dropped_as_repeated() -> None:
    text = "Bank of America lends in America."
    items = [("America", "LOC"), ("America", "LOC"), ("Bank of America", "ORG")]
    parsed = parse_response(_answer(*items), text, labels=["ORG", "LOC"])
    assert parsed.spans == [CharSpan(0, 15, "ORG"), CharSpan(25, 32, "LOC")]
    assert parsed.reasons == ["repeated"]


def test_one_surface_under_two_labels_maps_the_same_in_any_order() -> None:
    items = [("Bob", "PER"), ("Bob", "ORG")]
    first = parse_response(_answer(*items), "Bob met Bob.", labels=["ORG", "PER"])
    assert first == parse_response(_answer(*items[::-1]), "Bob met Bob.", labels=["ORG", "PER"])
    assert [(s.start, s.end) for s in first.spans] == [(0, 3), (8, 11)]


def test_a_name_inside_a_longer_word_is_not_a_mention() -> None:
    parsed = parse_response(_answer(("York", "LOC"), ("York", "LOC")), "Yorkshire and York.", labels=["LOC"])
    assert parsed.spans == [CharSpan(14, 18, "LOC")]
    assert parsed.reasons == ["repeated"]
    parsed = parse_response(_answer(("York", "LOC"), ("New York", "LOC")), "Yorkshire, New York.", labels=["LOC"])
    assert parsed.spans == [CharSpan(11, 19, "LOC")]
    assert parsed.reasons == ["overlaps"]


# --------------------------------------------------------------------------------------------
# Labels: the guide's, exactly as it spells them
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answered", "expected"),
    [
        ("Person", "Person"),
        ("person", "person"),
        ("PERSON", "ambiguous label 'PERSON'"),
        ("org", "ORG"),
        (" ORG ", "ORG"),
        ("work_of_art", "work-of-art"),
        ("Work Of Art", "work-of-art"),
        ("workofart", "unknown label 'workofart'"),
        ("organisation", "unknown label 'organisation'"),
    ],
)
def test_label_is_the_guides_exact_or_its_only_loose_match(answered: str, expected: str) -> None:
    parsed = parse_response(_answer(("Bob", answered)), "Bob left.", labels=GUIDE)
    assert [s.label for s in parsed.spans] + parsed.reasons == [expected]


def test_labels_differing_only_by_separator_match_only_exactly() -> None:
    labels = ["work-of-art", "work_of_art"]
    answer = _answer(("Dune", "work_of_art"), ("Emma", "WORK-OF-ART"), ("Dune", "work-of-art"))
    parsed = parse_response(answer, "Dune, Emma and Dune.", labels=labels)
    assert parsed.spans == [CharSpan(0, 4, "work-of-art"), CharSpan(15, 19, "work_of_art")]
    assert parsed.reasons == ["ambiguous label 'WORK-OF-ART'"]
