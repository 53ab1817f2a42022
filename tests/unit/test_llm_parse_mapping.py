"""Mapping an LLM's answer onto the text: order-free, longest answer first, whole words, the guide's labels only."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict, deque
from collections.abc import Callable
from itertools import pairwise, permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.converters.spans import CharSpan
from ml.llm import ParsedEntities, parse_response

SETTINGS = settings(max_examples=200, deadline=None)
# Labels that differ only in case or separators: a guide refuses them (annotation_guide.schema.label_key), so the
# "ambiguous label" path is reachable only with labels passed to parse_response directly, as here; it stays tested.
GUIDE = ("ORG", "location", "Person", "person", "work-of-art")
ANSWER_LABELS = (
    *GUIDE,
    *("org", "Org", " ORG ", "LOCATION", "Location", "PERSON", "pErSoN", "work_of_art", "Work Of Art"),
    *("WORK-OF-ART", "workofart", "per son", "BOGUS", "", "organisation", "work__of--art", "-org "),
)
ENTITIES = ("New York", "New York Times", "Times Square", "Bank of America", "America", "York", "Bob Stone", "Bob")
CASES: tuple[Callable[[str], str], ...] = (str, str.lower, str.upper, str.title)
FILLER = ("the", "quoted", "met", "in", "and", "Yorkshire", "Newark", "Americana", "Bobby", "Stone", "Times")


def _answer(*items: tuple[str, str]) -> str:
    return json.dumps({"entities": [{"text": text, "label": label} for text, label in items]})


def _normalise(value: str) -> str:
    return " ".join(value.split()).casefold()


def _loose(label: str) -> str:
    """The label rule, written independently of annotation_guide.schema.label_key."""
    return re.sub(r"[\s_-]+", "-", label.lower()).strip("-")


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

    The shuffle keeps the order of the items with one surface (the answer order decides only among them): see
    :func:`_keeping_surface_order`; the test checks what any shuffle changes separately.

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


def _keeping_surface_order(shuffled: list[dict[str, str]], items: list[dict[str, str]]) -> list[dict[str, str]]:
    """``shuffled``, with the items of each surface put back in their order in ``items``."""
    by_surface: defaultdict[str, deque[dict[str, str]]] = defaultdict(deque)
    for item in items:
        by_surface[_normalise(item["text"])].append(item)
    return [by_surface[_normalise(item["text"])].popleft() for item in shuffled]


def _assert_answer_order_decides_labels(text: str, parsed: ParsedEntities, items: list[dict[str, str]]) -> None:
    """The occurrences of a surface, in text order, carry the labels of its placeable items in answer order."""
    for surface in {_normalise(item["text"]) for item in items}:
        labels = [_label_status(i["label"])[1] for i in items if _normalise(i["text"]) == surface]
        placeable = [label for label in labels if label is not None and _whole_words(text, surface)]
        placed = [s.label for s in parsed.spans if _normalise(text[s.start : s.end]) == surface]
        assert placed == placeable[: len(placed)], (surface, placed, placeable)


def _assert_longer_answers_win(text: str, parsed: ParsedEntities, items: list[dict[str, str]]) -> None:
    """An occurrence of a surface is left unlabelled only when a span at least as long covers part of it.

    This holds when an item with that surface was dropped or labels a later occurrence.
    """
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
    _assert_answer_order_decides_labels(text, parsed, items)
    # Any order places the same regions; only which label of one surface goes where, and so "repeated" or
    # "conflicting labels", follows the answer order.
    again = parse_response(json.dumps({"entities": shuffled}), text, labels=GUIDE)
    assert [(s.start, s.end) for s in again.spans] == [(s.start, s.end) for s in parsed.spans]
    assert again.dropped == parsed.dropped
    stable = parse_response(json.dumps({"entities": _keeping_surface_order(shuffled, items)}), text, labels=GUIDE)
    assert (stable.spans, stable.dropped, sorted(stable.reasons)) == (
        parsed.spans,
        parsed.dropped,
        sorted(parsed.reasons),
    )


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


@pytest.mark.parametrize("labels", [("PER", "ORG"), ("ORG", "PER")])
def test_one_surface_under_two_labels_takes_them_in_answer_order(labels: tuple[str, str]) -> None:
    parsed = parse_response(_answer(*(("Bob", label) for label in labels)), "Bob met Bob.", labels=["ORG", "PER"])
    assert parsed.spans == [CharSpan(0, 3, labels[0]), CharSpan(8, 11, labels[1])]
    assert parsed.dropped == 0


@pytest.mark.parametrize("labels", [("ORG", "PER"), ("PER", "ORG")])
def test_one_occurrence_under_two_labels_goes_to_the_first_given_and_the_other_conflicts(
    labels: tuple[str, str],
) -> None:
    text = "Apple hired Tim Cook."
    parsed = parse_response(_answer(*(("Apple", label) for label in labels)), text, labels=["ORG", "PER"])
    assert parsed.spans == [CharSpan(0, 5, labels[0])]
    assert parsed.reasons == ["conflicting labels"]
    # a repeat of the winning item is a repeat; the other label is a conflict, wherever it comes
    items = [("apple", labels[0]), ("APPLE", labels[1]), ("Apple", labels[0])]
    parsed = parse_response(_answer(*items), text, labels=["ORG", "PER"])
    assert parsed.spans == [CharSpan(0, 5, labels[0])]
    assert parsed.reasons == ["conflicting labels", "repeated"]


def test_a_longer_name_over_the_occurrence_is_an_overlap_not_a_conflict() -> None:
    items = [("Apple", "ORG"), ("Apple Music", "PRODUCT"), ("Apple", "PER")]
    parsed = parse_response(_answer(*items), "Apple Music", labels=["ORG", "PER", "PRODUCT"])
    assert parsed.spans == [CharSpan(0, 11, "PRODUCT")]
    assert parsed.reasons == ["overlaps", "overlaps"]


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
        (" work - of _ art ", "work-of-art"),
        ("-ORG-", "ORG"),
        ("workofart", "unknown label 'workofart'"),
        ("organisation", "unknown label 'organisation'"),
    ],
)
def test_label_is_the_guides_exact_or_its_only_loose_match(answered: str, expected: str) -> None:
    parsed = parse_response(_answer(("Bob", answered)), "Bob left.", labels=GUIDE)
    assert [s.label for s in parsed.spans] + parsed.reasons == [expected]


def test_labels_differing_only_by_separator_match_only_exactly() -> None:
    labels = ["work-of-art", "work_of_art"]  # refused by a guide, see GUIDE
    answer = _answer(("Dune", "work_of_art"), ("Emma", "WORK-OF-ART"), ("Dune", "work-of-art"))
    parsed = parse_response(answer, "Dune, Emma and Dune.", labels=labels)
    assert parsed.spans == [CharSpan(0, 4, "work_of_art"), CharSpan(15, 19, "work-of-art")]
    assert parsed.reasons == ["ambiguous label 'WORK-OF-ART'"]


# --------------------------------------------------------------------------------------------
# Whole words only where spaces separate words
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "surface"),
    [
        ("東京大学の研究者が発表した。", "東京大学"),  # Japanese: kanji then kana
        ("研究者が東京大学で発表した。", "東京大学"),
        ("我在北京大学学习。", "北京大学"),  # Chinese
        ("ผมทำงานที่ธนาคารกรุงเทพเมื่อปีที่แล้ว", "ธนาคารกรุงเทพ"),  # Thai
        ("AppleはiPhone発売を発表した。", "iPhone"),  # Latin between kana and kanji
        ("AppleはiPhone発売を発表した。", "Apple"),
        ("삼성전자가 새 휴대폰을 발표했다.", "삼성전자"),  # Korean: a particle follows the noun
        ("ພະແນກສຶກສາວຽງຈັນ", "ວຽງຈັນ"),  # Lao
    ],
)
def test_a_neighbour_in_a_script_without_spaces_is_a_word_boundary(text: str, surface: str) -> None:
    parsed = parse_response(_answer((surface, "ORG")), text, labels=["ORG"])
    start = text.index(surface)
    assert parsed.spans == [CharSpan(start, start + len(surface), "ORG")]


@pytest.mark.parametrize(
    ("text", "surface"),
    [
        ("Yorkshire and Newark.", "York"),
        ("iPhone15発売", "iPhone"),
        ("東京のYorkshire", "York"),
        ("Café", "Caf"),
        ("Cafe\u0301 Roma", "Cafe"),
    ],
)
def test_a_word_of_a_spaced_script_is_still_never_cut(text: str, surface: str) -> None:
    parsed = parse_response(_answer((surface, "LOC")), text, labels=["LOC"])
    assert (parsed.spans, parsed.reasons) == ([], [f"not in text: {surface!r}"])


SPACELESS = "東京大学の発売ไทยภาษา삼성"
LATIN = "iPhoneab12"


@SETTINGS
@given(st.text(alphabet=SPACELESS + LATIN, min_size=1, max_size=20), st.data())
def test_a_mention_is_found_unless_every_occurrence_cuts_a_spaced_word(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text) - 1))
    surface = text[start : data.draw(st.integers(start + 1, len(text)))]

    def cuts(left: int, right: int) -> bool:
        return 0 < left < len(text) and text[left - 1] in LATIN and text[left] in LATIN

    whole = [
        (at, at + len(surface))
        for at in range(len(text))
        if text[at:].lower().startswith(surface.lower()) and not cuts(at, at) and not cuts(at + len(surface), 0)
    ]
    found = parse_response(_answer((surface, "ORG")), text, labels=["ORG"]).spans
    assert [(s.start, s.end) for s in found] == whole[:1]


# --------------------------------------------------------------------------------------------
# Typographic variants and Unicode normalisation: found as the text writes them
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "surface", "found"),
    [
        ("Shares of Macy\u2019s fell.", "Macy's", "Macy\u2019s"),
        ("Shares of Macy's fell.", "Macy\u2019s", "Macy's"),
        ("Dr O\u2019Brien and Dr O\u02bcBrien", "O'Brien", "O\u2019Brien"),
        ("the COVID\u201119 wave", "COVID-19", "COVID\u201119"),  # non-breaking hyphen
        ("the COVID\u201319 wave", "COVID-19", "COVID\u201319"),  # en dash
        ("the COVID-19 wave", "COVID\u201419", "COVID-19"),  # em dash in the answer
        ("The \u201cBig Apple\u201d Bakery opened.", 'The "Big Apple" Bakery', "The \u201cBig Apple\u201d Bakery"),
        ('The "Big Apple" Bakery opened.', "The \u201cBig Apple\u201d Bakery", 'The "Big Apple" Bakery'),
        ("CEO Tim\u00a0Cook spoke.", "Tim Cook", "Tim\u00a0Cook"),
        (
            "\uff49\uff30\uff48\uff4f\uff4e\uff45\u3092\u8cb7\u3063\u305f",
            "iPhone",
            "\uff49\uff30\uff48\uff4f\uff4e\uff45",
        ),
        ("the \u00abLe Monde\u00bb daily", '"Le Monde"', "Le Monde"),
    ],
)
def test_typographic_variants_are_found_as_the_text_writes_them(text: str, surface: str, found: str) -> None:
    parsed = parse_response(_answer((surface, "ORG")), text, labels=["ORG"])
    start = text.index(found)
    assert parsed.spans == [CharSpan(start, start + len(found), "ORG")]


def _nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


def _nfd(value: str) -> str:
    return unicodedata.normalize("NFD", value)


@pytest.mark.parametrize(("in_text", "in_answer"), [(_nfc, _nfd), (_nfd, _nfc)])
def test_a_mention_in_the_other_unicode_normalisation_is_found(
    in_text: Callable[[str], str], in_answer: Callable[[str], str]
) -> None:
    text = in_text("Lunch at Café Müller, Zürich.")
    answer = _answer((in_answer("Café Müller"), "ORG"), (in_answer("Zürich"), "LOC"))
    parsed = parse_response(answer, text, labels=["ORG", "LOC"])
    assert [text[s.start : s.end] for s in parsed.spans] == [in_text("Café Müller"), in_text("Zürich")]
    assert parsed.dropped == 0


FOLDED = {
    "'": "'\u2019\u2018\u02bc",
    '"': '"\u201c\u201d\u201e',
    "-": "-\u2010\u2011\u2013\u2014\u2212",
    " ": " \u00a0",
}
NAMES = ("O'Brien", "Macy's", "COVID-19", 'The "Big" Apple', "Tim Cook", "Jean-Luc Picard", "rock-'n'-roll", "Café")


@st.composite
def typeset(draw: st.DrawFn, name: str) -> str:
    """``name`` as some writer or model might type it: any quote, dash or space variant, NFC or NFD."""
    typed = "".join(draw(st.sampled_from(FOLDED.get(char, char))) for char in name)
    return unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), typed)


@SETTINGS
@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6), st.data())
def test_a_name_is_found_at_its_first_occurrence_however_either_side_typesets_it(
    names: list[str], data: st.DataObject
) -> None:
    typed = [data.draw(typeset(name)) for name in names]
    text = "; ".join(typed)
    name = data.draw(st.sampled_from(names))
    first = names.index(name)
    start = sum(len(part) + 2 for part in typed[:first])
    parsed = parse_response(_answer((data.draw(typeset(name)), "X")), text, labels=["X"])
    assert parsed.spans == [CharSpan(start, start + len(typed[first]), "X")]
