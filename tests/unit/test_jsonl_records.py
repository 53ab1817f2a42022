"""JSON lines as other tools write them.

doccano's exports load with their entities, and a record whose spans cannot be read as given is reported (``malformed``
or ``offsets``), never loaded as a text without entities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import spacy

from ml.converters import CharSpan, char_spans, load_docs
from ml.errors import ConversionError

LABELS = ("ORG", "PER")
NLP = spacy.blank("en")
TEXT = "Acme Corp hired Ann Lee ."


def write(tmp_path: Path, *records: object) -> Path:
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read(path: Path, policy: str = "expand") -> Any:
    return load_docs(path, NLP, labels=LABELS, policy=policy)  # type: ignore[arg-type]


EXPECTED = [CharSpan(0, 9, "ORG"), CharSpan(16, 23, "PER")]


@pytest.mark.parametrize(
    "record",
    [
        {"id": 7, "text": TEXT, "label": [[0, 9, "ORG"], [16, 23, "PER"]]},
        {"id": 7, "text": TEXT, "labels": [[0, 9, "ORG"], [16, 23, "PER"]]},
        {
            "id": 7,
            "text": TEXT,
            "entities": [
                {"id": 1, "label": "ORG", "start_offset": 0, "end_offset": 9},
                {"id": 2, "label": "PER", "start_offset": 16, "end_offset": 23},
            ],
            "relations": [],
            "Comments": [],
        },
        {"id": 7, "text": TEXT, "entities": [[0, 9, "ORG"], [16, 23, "PER"]]},
        {
            "id": 7,
            "text": TEXT,
            "spans": [{"start": 0, "end": 9, "label": "ORG", "text": "Acme Corp"}, [16, 23, "PER"]],
        },
    ],
    ids=["doccano label", "doccano labels", "doccano 1.x entities", "spaCy-style entities", "nerloop spans"],
)
def test_doccano_and_other_shapes_load_with_their_entities(tmp_path: Path, record: dict[str, Any]) -> None:
    result = read(write(tmp_path, record), "strict")

    assert [char_spans(doc) for doc in result.docs] == [EXPECTED]
    assert [doc.user_data["task_id"] for doc in result.docs] == ["7"]
    assert result.issues == []


def test_doccano_relations_are_ignored_and_counted(tmp_path: Path) -> None:
    record = {
        "text": TEXT,
        "entities": [{"id": 1, "label": "ORG", "start_offset": 0, "end_offset": 9}],
        "relations": [{"id": 3, "from_id": 1, "to_id": 2, "type": "employs"}],
    }

    result = read(write(tmp_path, record), "strict")

    assert [char_spans(doc) for doc in result.docs] == [[CharSpan(0, 9, "ORG")]]
    assert [(i.kind, i.action) for i in result.issues] == [("unsupported_result", "ignored")]


MALFORMED = {
    "float end": {"text": TEXT, "label": [[0, 9.7, "ORG"]]},
    "whole float": {"text": TEXT, "spans": [{"start": 0.0, "end": 9, "label": "ORG"}]},
    "bool start": {"text": TEXT, "entities": [{"start_offset": True, "end_offset": 9, "label": "ORG"}]},
    "text offset": {"text": TEXT, "spans": [{"start": "0", "end": 9, "label": "ORG"}]},
    "missing end_offset": {"text": TEXT, "entities": [{"start_offset": 0, "label": "ORG"}]},
    "no label": {"text": TEXT, "label": [[0, 9, None]]},
    "pair": {"text": TEXT, "label": [[0, 9]]},
    "classification label": {"text": TEXT, "label": ["positive"]},
    "label is text": {"text": TEXT, "label": "positive"},
    "two span keys": {"text": TEXT, "spans": [[0, 9, "ORG"]], "entities": [[16, 23, "PER"]]},
    "span text not text": {"text": TEXT, "spans": [{"start": 0, "end": 9, "label": "ORG", "text": 9}]},
    "ner_tags": {"text": TEXT, "ner_tags": ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O"]},
    "annotations": {"text": TEXT, "annotations": [{"start": 0, "end": 9, "tag": "ORG"}]},
    "mentions": {"text": TEXT, "mentions": [{"begin": 0, "end": 9, "type": "ORG"}]},
    "ents": {"text": TEXT, "ents": [{"start": 0, "end": 9, "label": "ORG"}]},
}


@pytest.mark.parametrize("record", MALFORMED.values(), ids=MALFORMED.keys())
def test_unreadable_spans_leave_the_record_out_and_say_where(tmp_path: Path, record: dict[str, Any]) -> None:
    good = {"id": "ok", "text": TEXT, "label": [[0, 9, "ORG"]]}
    path = write(tmp_path, good, record)

    result = read(path)

    assert [doc.user_data["task_id"] for doc in result.docs] == ["ok"]
    assert [(i.task_id, i.kind, i.action) for i in result.issues] == [("gold.jsonl:2", "malformed", "dropped")]
    assert f"{path}:2" in str(result.issues[0])
    with pytest.raises(ConversionError) as info:
        read(path, "strict")
    assert [(i.kind, i.action) for i in info.value.issues] == [("malformed", "rejected")]


def test_a_float_offset_is_named_not_truncated(tmp_path: Path) -> None:
    (issue,) = read(write(tmp_path, MALFORMED["float end"])).issues

    assert "label[0].end must be a whole number, not 9.7" in issue.detail


def test_a_record_without_spans_or_anything_like_them_is_a_text_without_entities(tmp_path: Path) -> None:
    result = read(write(tmp_path, {"id": 1, "text": TEXT, "meta": {"source": "web"}, "label": []}), "strict")

    assert [char_spans(doc) for doc in result.docs] == [[]]
    assert result.issues == []


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        ({"start": 0, "end": 9, "label": "ORG", "text": "Acme Corp"}, CharSpan(0, 9, "ORG")),
        ({"start": 0, "end": 9, "label": "ORG", "text": " Acme Corp\n"}, CharSpan(0, 9, "ORG")),
        ({"start": 0, "end": 10, "label": "ORG", "text": "Acme Corp"}, CharSpan(0, 9, "ORG")),  # trimmed
    ],
)
def test_a_span_covering_its_own_text_is_kept(tmp_path: Path, span: dict[str, Any], expected: CharSpan) -> None:
    result = read(write(tmp_path, {"text": TEXT, "spans": [span]}))

    assert [char_spans(doc) for doc in result.docs] == [[expected]]
    assert {i.kind for i in result.issues} <= {"whitespace"}


@pytest.mark.parametrize(
    "spans",
    [
        [{"start": 0, "end": 9, "label": "ORG", "text": "Globex"}],
        [{"start": 16, "end": 23, "label": "PER", "text": "Acme Corp"}],
        [
            {"start": 0, "end": 9, "label": "ORG", "text": "Acme Corp"},
            {"start": 1, "end": 4, "label": "PER", "text": "Ann"},
        ],
    ],
    ids=["other text", "another span's text", "one of two off"],
)
def test_a_span_missing_its_own_text_leaves_the_record_out_as_offsets(
    tmp_path: Path, spans: list[dict[str, Any]]
) -> None:
    path = write(tmp_path, {"id": "bad", "text": TEXT, "spans": spans}, {"id": "ok", "text": TEXT, "spans": []})

    result = read(path)

    assert [doc.user_data["task_id"] for doc in result.docs] == ["ok"]
    assert [(i.task_id, i.kind, i.action) for i in result.issues] == [("bad", "offsets", "dropped")]
    with pytest.raises(ConversionError, match="does not cover the text the annotator selected"):
        read(path, "strict")


def test_utf16_offsets_in_jsonl_are_realigned_as_in_label_studio(tmp_path: Path) -> None:
    text = "😀 Acme Corp hired Ann ."
    record = {"text": text, "spans": [{"start": 3, "end": 12, "label": "ORG", "text": "Acme Corp"}]}

    result = read(write(tmp_path, record))

    assert [char_spans(doc) for doc in result.docs] == [[CharSpan(2, 11, "ORG")]]
    assert [(i.kind, i.action, i.new_start) for i in result.issues] == [("offsets", "realigned", 2)]


def test_an_empty_span_list_says_no_entities_whatever_else_the_record_holds(tmp_path: Path) -> None:
    result = read(write(tmp_path, {"text": TEXT, "spans": [], "tags": ["O"] * 6}), "strict")

    assert [char_spans(doc) for doc in result.docs] == [[]]
