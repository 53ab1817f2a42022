"""Malformed inputs give ``ml.errors.DataError`` with one line that names the place to fix.

Each test checks the error's type, that its message is a single line, and that it names the file
(and the line, task or field where the converter knows it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import spacy

from ml.converters import detect_format, from_conll, from_label_studio, load_docs, read_tasks, write_docs
from ml.errors import ConversionError, DataError

LABELS = ("PER", "ORG")
NLP = spacy.blank("en")


def data_error(call: Callable[[], object]) -> str:
    """Run ``call``, expect a ``DataError`` and return its (single-line) message."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert message
    assert "\n" not in message
    return message


def load(path: Path) -> Callable[[], object]:
    return lambda: load_docs(path, NLP, labels=LABELS, policy="strict")


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def task(task_id: int = 5, text: Any = "Ann met Bob", value: dict[str, Any] | None = None) -> dict[str, Any]:
    value = {"start": 0, "end": 3, "labels": ["PER"]} if value is None else value
    return {
        "id": task_id,
        "data": {"text": text},
        "annotations": [{"result": [{"from_name": "label", "to_name": "text", "type": "labels", "value": value}]}],
    }


# --------------------------------------------------------------------------------------------
# CoNLL / BIO
# --------------------------------------------------------------------------------------------


def test_conll_line_with_three_columns_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "gold.conll", "Ann\tB-PER\n\nmet\tO\textra\nBob\tB-PER\n")

    message = data_error(lambda: from_conll(path, NLP.vocab, labels=LABELS))

    assert f"{path}:3" in message
    assert "met" in message


@pytest.mark.parametrize("tag", ["X-foo", "B-", "I", "S", "B_PER", "BPER", "O-PER", "NNP"])
def test_conll_bad_tag_names_file_line_and_tag(tmp_path: Path, tag: str) -> None:
    path = write(tmp_path / "gold.conll", f"Ann\tB-PER\nmet\t{tag}\n")

    message = data_error(load(path))

    assert f"{path}:2" in message
    assert repr(tag) in message


@pytest.mark.parametrize("line", ["\tO", "Ann\t", "Ann", "Ann B-PER extra"])
def test_conll_line_without_token_and_tag_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = write(tmp_path / "gold.txt", f"Ann\tB-PER\n{line}\n")

    message = data_error(load(path))

    assert f"{path}:2" in message


@pytest.mark.parametrize("content", ["", "\n\n", "-DOCSTART- -X- O O\n\n"])
def test_conll_file_without_sentences_is_an_error(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "empty.conll", content)

    message = data_error(load(path))

    assert str(path) in message


@pytest.mark.parametrize(
    "name", ["gold.conll", "gold.bio", "gold.json", "gold.tasks.jsonl", "gold.jsonl", "gold.spacy"]
)
def test_missing_file_names_the_path(tmp_path: Path, name: str) -> None:
    path = tmp_path / name

    message = data_error(load(path))

    assert str(path) in message


# --------------------------------------------------------------------------------------------
# Label Studio JSON
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", ['{"id": 1, "data": {"text": "a"}}', '"tasks"', "3", "null"])
def test_label_studio_file_that_is_not_a_list(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "export.json", content)

    message = data_error(load(path))

    assert str(path) in message
    assert "list" in message


def conversion_error(call: Callable[[], object]) -> ConversionError:
    """Run ``call``, expect a ``ConversionError`` with a single-line message and return it."""
    with pytest.raises(ConversionError) as info:
        call()
    assert str(info.value)
    assert "\n" not in str(info.value)
    return info.value


@pytest.mark.parametrize("data", [{}, {"text": None}, {"text": 3}, {"body": "Ann met Bob"}])
def test_task_without_text_is_rejected_naming_task_and_field(data: dict[str, Any]) -> None:
    bad = {**task(task_id=5), "data": data}

    error = conversion_error(lambda: from_label_studio([task(task_id=4), bad], NLP, labels=LABELS))

    assert "tasks[1]" in str(error)
    assert "task 5" in str(error)
    assert "data.text" in str(error)
    assert [(i.task_id, i.kind, i.action) for i in error.issues] == [("5", "malformed", "rejected")]


@pytest.mark.parametrize("data", [{}, {"text": None}, {"text": 3}, {"body": "Ann met Bob"}])
def test_task_without_text_is_left_out_and_counted_under_expand(data: dict[str, Any]) -> None:
    bad = {**task(task_id=5), "data": data}

    result = from_label_studio([task(task_id=4), bad], NLP, labels=LABELS, policy="expand")

    assert [doc.text for doc in result.docs] == ["Ann met Bob"]
    assert [(i.task_id, i.kind, i.action) for i in result.issues] == [("5", "malformed", "dropped")]
    assert "data.text" in str(result.issues[0])


def test_task_without_text_names_the_fields_it_has() -> None:
    bad = {**task(task_id=5), "data": {"body": "Ann met Bob"}}

    (issue,) = from_label_studio([bad], NLP, labels=LABELS, policy="contract").issues

    assert "body" in issue.detail
    assert "text_field" in issue.detail


def test_task_without_data_names_the_task(tmp_path: Path) -> None:
    labelled = {key: value for key, value in task(task_id=6).items() if key != "data"}
    path = write(tmp_path / "export.json", json.dumps([task(), labelled]))

    error = conversion_error(load(path))

    assert f"{path}[1]" in str(error)
    assert "data" in str(error)


@pytest.mark.parametrize(
    "unlabelled",
    [
        {"id": 6},
        {"id": 6, "data": {"body": "Ann met Bob"}, "annotations": []},
        {"id": 6, "data": {}, "annotations": [{"was_cancelled": True, "result": []}]},
        {"id": 6, "data": None, "predictions": [{"result": []}]},
    ],
    ids=["no data", "other field", "only skipped", "data null"],
)
def test_unlabelled_task_without_text_does_not_fail_a_strict_conversion(unlabelled: dict[str, Any]) -> None:
    """An unlabelled task is not training data.

    Its data is not required (a project's unlabelled tasks may come from anywhere), while the labelled tasks still
    convert.
    """
    result = from_label_studio([task(task_id=5), unlabelled], NLP, labels=LABELS, policy="strict")

    assert [doc.user_data["task_id"] for doc in result.docs] == ["5"]
    assert result.issues == []


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"end": 3, "labels": ["PER"]}, "start"),
        ({"start": 0, "labels": ["PER"]}, "end"),
        ({"start": "zero", "end": 3, "labels": ["PER"]}, "start"),
        ({"start": 0, "end": "3", "labels": ["PER"]}, "end"),
        ({"start": 0.0, "end": 3, "labels": ["PER"]}, "start"),
        ({"start": True, "end": 3, "labels": ["PER"]}, "start"),
        ({"start": 0, "end": 3, "labels": []}, "labels"),
        ({"start": 0, "end": 3, "labels": "PER"}, "labels"),
        ({"start": 0, "end": 3, "labels": [""]}, "labels"),
        ({"start": 0, "end": 3}, "labels"),
    ],
)
def test_result_value_with_missing_or_bad_field_names_task_and_field(
    tmp_path: Path, value: dict[str, Any], field: str
) -> None:
    path = write(tmp_path / "export.json", json.dumps([task(task_id=4), task(task_id=5, value=value)]))

    error = conversion_error(load(path))

    assert f"{path}[1]" in str(error)
    assert "task 5" in str(error)
    assert f"result[0].value.{field}" in str(error)
    assert [(i.task_id, i.kind, i.action) for i in error.issues] == [("5", "malformed", "rejected")]


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "export.json", '[\n  {"id": 1,\n   "data": {"text": "a"},\n')

    message = data_error(load(path))

    assert str(path) in message
    assert "JSON" in message


def test_label_studio_jsonl_line_that_is_not_json_names_its_line(tmp_path: Path) -> None:
    lines = [json.dumps(task(task_id=1)), json.dumps(task(task_id=2)), '{"id": 3, "data": ']
    path = write(tmp_path / "export.tasks.jsonl", "\n".join(lines) + "\n")

    message = data_error(lambda: read_tasks(path))

    assert f"{path}:3" in message  # the third line of the file is the broken one


# --------------------------------------------------------------------------------------------
# nerloop JSONL
# --------------------------------------------------------------------------------------------


def test_jsonl_line_that_is_not_json_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"id": "a", "text": "Ann met Bob", "spans": []})
    path = write(tmp_path / "gold.jsonl", f"{good}\n\n{{not json\n")

    message = data_error(load(path))

    assert f"{path}:3" in message
    assert "JSON" in message


WRONG_SHAPES = [
    {"spans": []},
    {"text": 5, "spans": []},
    {"text": "Ann", "spans": [{"end": 3, "label": "PER"}]},
    {"text": "Ann", "spans": [{"start": "x", "end": 3, "label": "PER"}]},
    {"text": "Ann", "spans": "PER"},
    [1, 2],
    None,
]


@pytest.mark.parametrize("record", WRONG_SHAPES)
def test_jsonl_record_of_the_wrong_shape_is_rejected_naming_file_and_line(tmp_path: Path, record: object) -> None:
    good = json.dumps({"text": "Ann met Bob", "spans": []})
    path = write(tmp_path / "gold.jsonl", f"{good}\n{json.dumps(record)}\n")

    error = conversion_error(load(path))

    assert f"{path}:2" in str(error)
    assert [(i.kind, i.action) for i in error.issues] == [("malformed", "rejected")]


@pytest.mark.parametrize("record", WRONG_SHAPES)
def test_jsonl_record_of_the_wrong_shape_is_left_out_and_counted_under_expand(tmp_path: Path, record: object) -> None:
    good = json.dumps({"text": "Ann met Bob", "spans": [{"start": 0, "end": 3, "label": "PER"}]})
    path = write(tmp_path / "gold.jsonl", f"{good}\n{json.dumps(record)}\n{good}\n")

    result = load_docs(path, NLP, labels=LABELS, policy="expand")

    assert [doc.user_data["task_id"] for doc in result.docs] == ["gold.jsonl:1", "gold.jsonl:3"]
    assert [(i.task_id, i.kind, i.action) for i in result.issues] == [("gold.jsonl:2", "malformed", "dropped")]


# --------------------------------------------------------------------------------------------
# Formats and other files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gold.xml", "gold.csv", "gold", "gold.json.bak"])
def test_unknown_suffix_is_an_error_naming_the_file(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "Ann\tB-PER\n")

    message = data_error(load(path))

    assert str(path) in message
    message = data_error(lambda: detect_format(path))
    assert str(path) in message


def test_unknown_output_format_is_an_error(tmp_path: Path) -> None:
    message = data_error(lambda: write_docs([NLP.make_doc("Ann")], tmp_path / "out.jsonl", fmt="xml"))

    assert "xml" in message


def test_corrupt_docbin_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "gold.spacy", b"not a docbin\x00\x01")

    message = data_error(load(path))

    assert str(path) in message


@pytest.mark.parametrize("name", ["gold.conll", "export.json", "gold.jsonl"])
def test_file_that_is_not_utf8_is_a_data_error(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b"\xff\xfe broken \xc3\x28\tO\n")

    message = data_error(load(path))

    assert str(path) in message


# --------------------------------------------------------------------------------------------
# ConversionError (strict policy): also one line, naming the first task, counting the rest
# --------------------------------------------------------------------------------------------


def test_conversion_error_is_one_line_naming_the_task_and_counting_the_rest() -> None:
    tasks = [
        task(task_id=8, text="Ann met Bob", value={"start": 1, "end": 3, "labels": ["PER"]}),
        task(task_id=9, text="Ann met Bob", value={"start": 0, "end": 3, "labels": ["NOPE"]}),
    ]

    with pytest.raises(ConversionError) as info:
        from_label_studio(tasks, NLP, labels=LABELS, policy="strict")

    message = str(info.value)
    assert "\n" not in message
    assert "task 8" in message
    assert "(and 1 more)" in message
    assert [(i.task_id, i.kind) for i in info.value.issues] == [("8", "misaligned"), ("9", "unknown_label")]
