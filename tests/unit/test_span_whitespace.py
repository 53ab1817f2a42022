r"""Whitespace at span edges, and what editors put in files, in every reader.

A span that starts or ends with whitespace (any ``str.isspace`` character) is trimmed and reported under
``expand`` / ``contract``, rejected under ``strict``; a span that is only whitespace is dropped or rejected. No
offset changes silently. Byte order marks, ``\r\n`` line endings and whitespace-only lines are accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, DocBin

from ml.converters import CharSpan, ConversionIssue, from_label_studio, load_docs
from ml.errors import ConversionError, DataError

LABELS = ("organisation", "PER")
NLP = spacy.blank("en")
TEXT = "Acme Corp\nsays hi"


def ls_task(text: str, start: int, end: int, label: str = "organisation") -> dict[str, Any]:
    value = {"start": start, "end": end, "text": text[start:end], "labels": [label]}
    return {"id": 7, "data": {"text": text}, "annotations": [{"result": [{"type": "labels", "value": value}]}]}


def ents(docs: list[Doc]) -> list[list[CharSpan]]:
    return [[CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs]


def trimmed(task_id: str, start: int, end: int, text: str, new: tuple[int, int]) -> ConversionIssue:
    return ConversionIssue(
        task_id=task_id,
        kind="whitespace",
        action="trimmed",
        start=start,
        end=end,
        label="organisation",
        text=text[start:end],
        new_start=new[0],
        new_end=new[1],
    )


# --------------------------------------------------------------------------------------------
# Label Studio tasks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["expand", "contract"])
def test_label_studio_trailing_newline_is_trimmed_and_reported(policy: str) -> None:
    result = from_label_studio([ls_task(TEXT, 0, 10)], NLP, labels=LABELS, policy=policy)  # type: ignore[arg-type]

    assert ents(result.docs) == [[CharSpan(0, 9, "organisation")]]
    assert result.issues == [trimmed("7", 0, 10, TEXT, (0, 9))]
    assert str(result.issues[0]) == (
        "task 7: span 0-10 'Acme Corp\\n' [organisation] starts or ends with whitespace (trimmed -> 0-9)"
    )


def test_label_studio_trailing_newline_is_rejected_under_strict() -> None:
    with pytest.raises(ConversionError) as info:
        from_label_studio([ls_task(TEXT, 0, 10)], NLP, labels=LABELS, policy="strict")

    assert [(i.kind, i.action, i.start, i.end) for i in info.value.issues] == [("whitespace", "rejected", 0, 10)]
    assert "--policy" in str(info.value)


@pytest.mark.parametrize(
    ("text", "start", "end", "core"),
    [
        ("x  Acme Corp says", 2, 12, (3, 12)),  # a leading space (its own token: strict alignment took it)
        ("x Acme\tCorp\t says", 2, 12, (2, 11)),  # a trailing tab
        ("x\u00a0Acme says", 1, 6, (2, 6)),  # a leading non-breaking space
        ("Acme\u2003 says", 0, 5, (0, 4)),  # a trailing em space
        ("Acme Corp\r\nsays", 0, 11, (0, 9)),  # a trailing CRLF
    ],
)
def test_label_studio_any_unicode_whitespace_is_trimmed(text: str, start: int, end: int, core: tuple[int, int]) -> None:
    result = from_label_studio([ls_task(text, start, end)], NLP, labels=LABELS, policy="expand")

    assert ents(result.docs) == [[CharSpan(*core, "organisation")]]
    assert result.issues == [trimmed("7", start, end, text, core)]


@pytest.mark.parametrize("policy", ["strict", "expand", "contract"])
def test_label_studio_span_of_only_whitespace_is_dropped_or_rejected(policy: str) -> None:
    text = "Acme \n\t Corp"
    if policy == "strict":
        with pytest.raises(ConversionError) as caught:
            from_label_studio([ls_task(text, 4, 8)], NLP, labels=LABELS, policy=policy)  # type: ignore[arg-type]
        assert [(i.kind, i.action) for i in caught.value.issues] == [("whitespace", "rejected")]
        return
    result = from_label_studio([ls_task(text, 4, 8)], NLP, labels=LABELS, policy=policy)  # type: ignore[arg-type]
    assert ents(result.docs) == [[]]
    assert [(i.kind, i.action) for i in result.issues] == [("whitespace", "dropped")]
    assert "is only whitespace" in str(result.issues[0])


def test_label_studio_trimmed_then_misaligned_reports_both_steps() -> None:
    text = "x  Acme says"

    result = from_label_studio([ls_task(text, 2, 5)], NLP, labels=LABELS, policy="expand")

    assert ents(result.docs) == [[CharSpan(3, 7, "organisation")]]
    assert [(i.kind, i.action, i.start, i.end, i.new_start, i.new_end) for i in result.issues] == [
        ("whitespace", "trimmed", 2, 5, 3, 5),
        ("misaligned", "expanded", 3, 5, 3, 7),
    ]


def test_contracting_never_ends_an_entity_on_a_whitespace_token() -> None:
    text = "Acme \n Corpx"  # contracting 0-10 keeps "Acme" and the "\n " token, never the cut "Corpx"

    result = from_label_studio([ls_task(text, 0, 10)], NLP, labels=LABELS, policy="contract")

    assert ents(result.docs) == [[CharSpan(0, 4, "organisation")]]
    assert [(i.kind, i.action, i.new_start, i.new_end) for i in result.issues] == [("misaligned", "contracted", 0, 4)]


whitespace = st.text(st.sampled_from(" \t\n\r\u00a0\u2003\u3000"), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(
    before=st.text("abc ", max_size=6),
    core=st.text("ABC", min_size=1, max_size=5),
    after=st.text("abc ", max_size=6),
    left=st.one_of(st.just(""), whitespace),
    right=st.one_of(st.just(""), whitespace),
)
def test_label_studio_padded_span_becomes_its_core_and_is_reported(
    before: str, core: str, after: str, left: str, right: str
) -> None:
    text = f"{before} {left}{core}{right} {after}"
    start = len(before) + 1
    end = start + len(left) + len(core) + len(right)
    core_span = (start + len(left), start + len(left) + len(core))

    result = from_label_studio([ls_task(text, start, end)], NLP, labels=LABELS, policy="expand")

    assert ents(result.docs) == [[CharSpan(*core_span, "organisation")]]
    expected = [trimmed("7", start, end, text, core_span)] if (left or right) else []
    assert result.issues == expected


# --------------------------------------------------------------------------------------------
# nerloop JSONL
# --------------------------------------------------------------------------------------------


def test_jsonl_whitespace_edges_are_trimmed_and_reported(tmp_path: Path) -> None:
    record = {"id": "a", "text": TEXT, "spans": [{"start": 0, "end": 10, "label": "organisation"}]}
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")

    result = load_docs(path, NLP, labels=LABELS, policy="expand")

    assert ents(result.docs) == [[CharSpan(0, 9, "organisation")]]
    assert result.issues == [trimmed("a", 0, 10, TEXT, (0, 9))]
    with pytest.raises(ConversionError):
        load_docs(path, NLP, labels=LABELS, policy="strict")


def test_jsonl_with_bom_crlf_and_blank_lines_reads_every_record(tmp_path: Path) -> None:
    records = [{"text": "Ann met Bob", "spans": [{"start": 0, "end": 3, "label": "PER"}]}, {"text": "Bob", "spans": []}]
    path = tmp_path / "gold.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n \r\n".join(json.dumps(r) for r in records).encode() + b"\r\n")

    result = load_docs(path, NLP, labels=LABELS, policy="strict")

    assert [doc.text for doc in result.docs] == ["Ann met Bob", "Bob"]
    assert ents(result.docs) == [[CharSpan(0, 3, "PER")], []]
    assert result.issues == []


# --------------------------------------------------------------------------------------------
# Label Studio files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["export.json", "export.tasks.jsonl"])
def test_label_studio_files_with_bom_and_crlf_are_read(tmp_path: Path, name: str) -> None:
    tasks = [ls_task(TEXT, 0, 9), ls_task("Acme", 0, 4)]
    body = json.dumps(tasks, indent=1) if name.endswith(".json") else "\n".join(json.dumps(t) for t in tasks)
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + body.replace("\n", "\r\n").encode("utf-8"))

    result = load_docs(path, NLP, labels=LABELS, policy="strict")

    assert ents(result.docs) == [[CharSpan(0, 9, "organisation")], [CharSpan(0, 4, "organisation")]]


# --------------------------------------------------------------------------------------------
# CoNLL / BIO: tokens hold no whitespace, so spans cannot have it at their edges
# --------------------------------------------------------------------------------------------


def test_conll_with_bom_crlf_trailing_spaces_and_blank_lines(tmp_path: Path) -> None:
    content = "Ann\tB-PER \r\nmet\tO\r\n \t \r\nBob\tB-PER\t\r\n\r\n"
    path = tmp_path / "gold.conll"
    path.write_bytes(b"\xef\xbb\xbf" + content.encode("utf-8"))

    result = load_docs(path, NLP, labels=LABELS, policy="strict")

    assert [doc.text for doc in result.docs] == ["Ann met", "Bob"]
    assert ents(result.docs) == [[CharSpan(0, 3, "PER")], [CharSpan(0, 3, "PER")]]
    assert result.issues == []


def test_conll_token_with_inner_whitespace_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "gold.conll"
    path.write_text("Ann\u00a0Lee\tB-PER\n", encoding="utf-8")

    with pytest.raises(DataError, match=r"gold.conll:1: token .* contains whitespace"):
        load_docs(path, NLP, labels=LABELS, policy="strict")


# --------------------------------------------------------------------------------------------
# spaCy DocBin: an entity can take in a whitespace token
# --------------------------------------------------------------------------------------------


def docbin_with_space_entity(tmp_path: Path) -> Path:
    doc = Doc(NLP.vocab, words=["Acme", "Corp", "\n", "says"], spaces=[True, False, False, False])
    doc.set_ents([doc.char_span(0, 10, label="organisation")])  # "Acme Corp\n"
    doc.user_data["task_id"] = "d1"
    path = tmp_path / "gold.spacy"
    DocBin(docs=[doc], store_user_data=True).to_disk(path)
    return path


def test_docbin_entity_ending_on_a_whitespace_token_is_trimmed_and_reported(tmp_path: Path) -> None:
    path = docbin_with_space_entity(tmp_path)

    result = load_docs(path, NLP, labels=LABELS, policy="expand")

    assert ents(result.docs) == [[CharSpan(0, 9, "organisation")]]
    assert [(i.task_id, i.kind, i.action, i.new_start, i.new_end) for i in result.issues] == [
        ("d1", "whitespace", "trimmed", 0, 9)
    ]
    with pytest.raises(ConversionError):
        load_docs(path, NLP, labels=LABELS, policy="strict")
