"""Reading LLM answers: the platform finds the offsets, drops what it cannot find, and counts every drop."""

from __future__ import annotations

import json
import string
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.converters.spans import CharSpan
from ml.llm import ParsedEntities, find_mention, parse_response

LABELS = ("ORG", "PER", "WORK-OF-ART")
SETTINGS = settings(max_examples=150, deadline=None)

# Characters find_mention may ignore at the ends of a surface; the property allows only these to be cut off.
EDGE_CHARS = set(" \t\n\"'`*.,;:!?()[]{}<>")
TEXT_CHARS = string.ascii_letters[:8] + "ABC" + string.digits[:3] + "  \n\t-.,'\"()éÉЖж"


def _normalise(value: str) -> str:
    return " ".join(value.split()).casefold()


def _answer(*items: tuple[str, str]) -> str:
    return json.dumps({"entities": [{"text": text, "label": label} for text, label in items]})


# --------------------------------------------------------------------------------------------
# Property: whatever the model returns, the spans are real, ordered, disjoint, and accounted for
# --------------------------------------------------------------------------------------------


@st.composite
def answered_text(draw: st.DrawFn) -> tuple[str, list[object]]:
    """A text and what a sloppy model might return for it: substrings in changed case, junk, repeats, bad items."""
    text = draw(st.text(alphabet=TEXT_CHARS, max_size=60))
    items: list[object] = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["substring", "substring", "junk", "repeat", "unknown label", "malformed"]))
        label = draw(st.sampled_from(LABELS)).lower() if draw(st.booleans()) else draw(st.sampled_from(LABELS))
        if kind == "substring" and text:
            start = draw(st.integers(0, len(text) - 1))
            surface = text[start : draw(st.integers(start + 1, len(text)))]
            surface = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in surface)
            items.append({"text": surface, "label": label})
        elif kind == "repeat" and items:
            items.append(draw(st.sampled_from(items)))
        elif kind == "unknown label":
            items.append({"text": text[:5], "label": "BOGUS"})
        elif kind == "malformed":
            items.append(draw(st.sampled_from([None, 3, "ORG", {"label": "ORG"}, {"text": 5, "label": "ORG"}])))
        else:
            items.append({"text": draw(st.text(alphabet=TEXT_CHARS + "xyzé#", max_size=12)), "label": label})
    return text, items


def _matches_a_returned_surface(text: str, span: CharSpan, items: list[object]) -> bool:
    """The span's text, case and whitespace aside, is a returned surface of its label minus edge punctuation."""
    found = _normalise(text[span.start : span.end])
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            continue
        if str(item["label"]).upper() != span.label:
            continue
        surface = _normalise(item["text"])
        at = surface.find(found)
        while at >= 0:
            cut = surface[:at] + surface[at + len(found) :]
            if set(cut) <= EDGE_CHARS:
                return True
            at = surface.find(found, at + 1)
    return False


@SETTINGS
@given(answered_text(), st.sampled_from(["{}", "```json\n{}\n```", "Here you go: {} -- done [1]"]))
def test_every_span_is_in_the_text_and_every_item_is_accounted_for(
    case: tuple[str, list[object]], wrapper: str
) -> None:
    text, items = case
    raw = wrapper.replace("{}", json.dumps({"entities": items}, ensure_ascii=False), 1)
    parsed = parse_response(raw, text, labels=LABELS)
    assert parsed.valid_json
    assert len(parsed.spans) + parsed.dropped == len(items)
    assert len(parsed.reasons) == parsed.dropped
    assert parsed.spans == sorted(parsed.spans)
    for span in parsed.spans:
        assert 0 <= span.start < span.end <= len(text)
        assert span.label in LABELS
        assert _matches_a_returned_surface(text, span, items), (span, text[span.start : span.end])
    for left, right in pairwise(parsed.spans):
        assert left.end <= right.start


@SETTINGS
@given(st.text(max_size=80))
def test_any_answer_at_all_never_raises(raw: str) -> None:
    parsed = parse_response(raw, "ACME Corp hired Bob.", labels=LABELS)
    assert len(parsed.spans) + parsed.dropped >= 0
    assert all(0 <= s.start < s.end <= 20 for s in parsed.spans)


# --------------------------------------------------------------------------------------------
# Answer formats
# --------------------------------------------------------------------------------------------

TEXT = "ACME Corp hired Bob Stone. Later acme corp fired Bob Stone."


def test_plain_answer() -> None:
    parsed = parse_response(_answer(("ACME Corp", "ORG"), ("Bob Stone", "PER")), TEXT, labels=LABELS)
    assert parsed == ParsedEntities(spans=[CharSpan(0, 9, "ORG"), CharSpan(16, 25, "PER")], dropped=0, reasons=[])
    assert parsed.valid_json


def test_fenced_json() -> None:
    raw = '```json\n{"entities": [{"text": "Bob Stone", "label": "PER"}]}\n```'
    assert parse_response(raw, TEXT, labels=LABELS).spans == [CharSpan(16, 25, "PER")]


def test_chatter_around_json() -> None:
    raw = 'Sure! I found [1] entity:\n{"entities": [{"text": "Bob Stone", "label": "PER"}]}\nLet me know {if} more.'
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(16, 25, "PER")]
    assert parsed.valid_json


def test_bare_list() -> None:
    raw = '[{"text": "ACME Corp", "label": "ORG"}]'
    assert parse_response(raw, TEXT, labels=LABELS).spans == [CharSpan(0, 9, "ORG")]


def test_entity_and_type_keys() -> None:
    raw = '{"entities": [{"entity": "ACME Corp", "type": "ORG"}, {"span": "Bob Stone", "label": "PER"}]}'
    assert parse_response(raw, TEXT, labels=LABELS).spans == [CharSpan(0, 9, "ORG"), CharSpan(16, 25, "PER")]


def test_label_case_is_mapped_to_the_guides() -> None:
    parsed = parse_response(_answer(("ACME Corp", "Work-Of-Art"), ("Bob Stone", "per")), TEXT, labels=LABELS)
    assert [s.label for s in parsed.spans] == ["WORK-OF-ART", "PER"]


def test_a_mention_takes_its_first_free_occurrence_whatever_the_answer_order() -> None:
    # The order of the items is no hint: 'ACME Corp' listed after 'Bob Stone' is still the first 'ACME Corp'.
    parsed = parse_response(_answer(("Bob Stone", "PER"), ("ACME Corp", "ORG")), TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(0, 9, "ORG"), CharSpan(16, 25, "PER")]


def test_case_changed_mention_keeps_the_texts_casing() -> None:
    text = "Shares of ACME Corp rose."
    parsed = parse_response(_answer(("acme corp", "ORG")), text, labels=LABELS)
    assert parsed.spans == [CharSpan(10, 19, "ORG")]
    assert text[10:19] == "ACME Corp"


def test_repeated_mention_maps_to_the_next_occurrence() -> None:
    parsed = parse_response(_answer(("Bob Stone", "PER"), ("Bob Stone", "PER")), TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(16, 25, "PER"), CharSpan(49, 58, "PER")]


def test_repeats_beyond_the_occurrences_are_dropped() -> None:
    raw = _answer(("acme corp", "ORG"), ("ACME CORP", "ORG"), ("Acme Corp", "ORG"))
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(0, 9, "ORG"), CharSpan(33, 42, "ORG")]
    assert (parsed.dropped, parsed.reasons) == (1, ["repeated"])


def test_unknown_label_and_missing_mention_are_dropped_with_reasons() -> None:
    raw = _answer(("ACME Corp", "COMPANY"), ("Initech", "ORG"), ("Bob Stone", "PER"))
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(16, 25, "PER")]
    assert parsed.dropped == 2
    assert parsed.reasons == ["unknown label 'COMPANY'", "not in text: 'Initech'"]


def test_overlapping_mention_is_dropped() -> None:
    parsed = parse_response(_answer(("Bob Stone", "PER"), ("Stone", "ORG")), "Bob Stone left.", labels=LABELS)
    assert parsed.spans == [CharSpan(0, 9, "PER")]
    assert parsed.reasons == ["overlaps"]


def test_malformed_items_are_counted() -> None:
    raw = '{"entities": ["ACME Corp", {"label": "ORG"}, {"text": "ACME Corp"}, ["Bob Stone", "PER"]]}'
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(16, 25, "PER")]
    assert parsed.reasons == ["malformed item"] * 3


def test_garbage_is_not_json() -> None:
    for raw in ["I could not find any entities.", "", "{{{{ [[[[", "[" * 5000]:
        parsed = parse_response(raw, TEXT, labels=LABELS)
        assert parsed == ParsedEntities(spans=[], dropped=0, reasons=["not JSON"], valid_json=False)


def test_json_without_an_entity_list() -> None:
    parsed = parse_response('{"answer": "none"}', TEXT, labels=LABELS)
    assert (parsed.spans, parsed.dropped, parsed.reasons, parsed.valid_json) == ([], 0, ["no entity list"], False)


@pytest.mark.parametrize(
    "raw",
    [
        '{"ORG": ["ACME Corp", "acme corp"], "per": ["Bob Stone"]}',
        '{"entities": {"ORG": ["ACME Corp", "acme corp"], "per": ["Bob Stone"]}}',
        'Found these:\n```json\n{"ORG": ["ACME Corp", "acme corp"], "per": ["Bob Stone"]}\n```',
    ],
)
def test_a_map_from_label_to_mentions_is_read_as_its_items(raw: str) -> None:
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(0, 9, "ORG"), CharSpan(16, 25, "PER"), CharSpan(33, 42, "ORG")]
    assert (parsed.dropped, parsed.valid_json) == (0, True)


def test_a_label_map_s_labels_and_mentions_are_checked_as_items_are() -> None:
    raw = '{"ORG": ["ACME Corp", 3], "LOCATION": ["Paris"], "PER": []}'
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(0, 9, "ORG")]
    assert parsed.reasons == ["malformed item", "unknown label 'LOCATION'"]
    assert parse_response('{"ORG": [], "PER": []}', TEXT, labels=LABELS) == ParsedEntities([], 0, [])


@pytest.mark.parametrize("raw", ['{"ids": [1, 2]}', '{"ORG": ["ACME Corp"], "count": 1}', '{"ORG": "ACME Corp"}'])
def test_an_object_that_is_not_a_label_map_is_no_entity_list(raw: str) -> None:
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert (parsed.spans, parsed.reasons, parsed.valid_json) == ([], ["no entity list"], False)


def test_cut_off_answer_keeps_its_complete_items() -> None:
    raw = '{"entities": [{"text": "ACME Corp", "label": "ORG"}, {"text": "Bob Stone", "label": "PER"}, {"text": "Bo'
    parsed = parse_response(raw, TEXT, labels=LABELS)
    assert parsed.spans == [CharSpan(0, 9, "ORG"), CharSpan(16, 25, "PER")]
    assert not parsed.valid_json


def test_empty_answer_and_empty_text() -> None:
    assert parse_response('{"entities": []}', TEXT, labels=LABELS) == ParsedEntities([], 0, [])
    parsed = parse_response(_answer(("Bob", "PER"), ("  ", "PER")), "", labels=LABELS)
    assert parsed.spans == []
    assert parsed.reasons == ["not in text: 'Bob'", "empty text"]


# --------------------------------------------------------------------------------------------
# find_mention
# --------------------------------------------------------------------------------------------


def test_find_mention_normalises_whitespace_quotes_and_punctuation() -> None:
    text = "We paged the\n  Platform   team, then Kafka."
    assert find_mention(text, "platform team", taken=[]) == (15, 30)
    assert find_mention(text, ' "Kafka". ', taken=[]) == (37, 42)
    assert find_mention(text, "Redis", taken=[]) is None


def test_find_mention_keeps_punctuation_that_is_part_of_the_name() -> None:
    text = "Set --max-old-space-size for C++ builds."
    assert find_mention(text, "--max-old-space-size", taken=[]) == (4, 24)
    assert find_mention(text, "C++", taken=[]) == (29, 32)


def test_find_mention_takes_whole_words_only() -> None:
    text = "Kafkaesque lag on Kafka."
    assert find_mention(text, "kafka", taken=[]) == (18, 23)
    assert find_mention("KafkaKafka", "kafka", taken=[]) is None
    # the LLM said "Leicester" and "Leicestershire": the first is not in the text, the second is placed
    parsed = parse_response(
        '{"entities": [{"text": "Leicester", "label": "location"}, {"text": "Leicestershire", "label": "location"}]}',
        "LEICESTERSHIRE won .",
        labels=["location"],
    )
    assert [(s.start, s.end) for s in parsed.spans] == [(0, 14)]
    assert parsed.reasons == ["not in text: 'Leicester'"]


def test_find_mention_prefers_after_then_anywhere_and_skips_taken() -> None:
    text = "Bob met Bob and Bob."
    assert find_mention(text, "Bob", taken=[], after=4) == (8, 11)
    assert find_mention(text, "Bob", taken=[(16, 19)], after=12) == (0, 3)
    assert find_mention(text, "Bob", taken=[(0, 3), (8, 11), (16, 19)]) is None
    assert find_mention("Ann Ann", "Ann", taken=[(0, 3)]) == (4, 7)
