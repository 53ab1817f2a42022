"""CoNLL files as public NER datasets ship them.

Comment lines (MultiCoNER, CoNLL-U), BIOES / BILUO tags and lower-case prefixes; the token ``#`` still reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy

from ml.converters import CharSpan, char_spans, from_conll
from ml.errors import DataError

NLP = spacy.blank("en")
LABELS = ("PER", "ORG", "LOC", "CORP", "GRP")


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "gold.conll"
    path.write_text(content, encoding="utf-8")
    return path


def read(path: Path, **options: int) -> tuple[list[str], list[list[CharSpan]]]:
    result = from_conll(path, NLP.vocab, labels=LABELS, **options)  # type: ignore[arg-type]
    return [doc.text for doc in result.docs], [char_spans(doc) for doc in result.docs]


# MultiCoNER (SemEval 2022 task 11): the id line separates the domain with a tab, token lines with spaces.
MULTICONER = (
    "# id bb81b9a7-e73d-4977-b6a8-0f7937123dfe\tdomain=en\n"
    "the _ _ O\n"
    "original _ _ O\n"
    "ferrari _ _ B-CORP\n"
    "daytona _ _ I-CORP\n"
    "\n"
    "# id 4e1f0f7a-8c1c-4b7e-9a52-0c1d1a0e2f11\tdomain=en\n"
    "# _ _ O\n"
    "beatles _ _ B-GRP\n"
)


def test_multiconer_id_lines_are_skipped_and_a_hash_token_still_reads(tmp_path: Path) -> None:
    texts, spans = read(write(tmp_path, MULTICONER), tag_column=-1)

    assert texts == ["the original ferrari daytona", "# beatles"]
    assert spans == [[CharSpan(13, 28, "CORP")], [CharSpan(2, 9, "GRP")]]


@pytest.mark.parametrize(
    "comment",
    ["# id 123 domain=en", "# sent_id = 1", "# text = Ann met Bob", "#", "#\tnewdoc id = x y", "# newdoc"],
)
def test_comment_lines_are_skipped_anywhere(tmp_path: Path, comment: str) -> None:
    path = write(tmp_path, f"{comment}\nAnn\tB-PER\n{comment}\nmet\tO\n\n{comment}\nBob\tB-PER\n{comment}\n")

    texts, spans = read(path)

    assert texts == ["Ann met", "Bob"]
    assert spans == [[CharSpan(0, 3, "PER")], [CharSpan(0, 3, "PER")]]


@pytest.mark.parametrize(
    ("line", "token"), [("#\tO", "#"), ("# O", "#"), ("#hashtag\tO", "#hashtag"), ("#1\tO", "#1"), ("#\tB-PER", "#")]
)
def test_token_lines_starting_with_a_hash_are_tokens(tmp_path: Path, line: str, token: str) -> None:
    texts, _ = read(write(tmp_path, f"Ann\tO\n{line}\n"))

    assert texts == [f"Ann {token}"]


def test_a_hash_line_of_another_width_in_a_tab_file_is_a_comment(tmp_path: Path) -> None:
    texts, _ = read(write(tmp_path, "Ann\tO\n# a note\there\tand\there\nBob\tO\n"))

    assert texts == ["Ann Bob"]


BIOES = "Ann\tS-PER\nmet\tO\nNew\tB-LOC\nYork\tI-LOC\nCity\tE-LOC\nand\tO\nAcme\tB-ORG\nInc\tE-ORG\nBob\tS-PER\n"
EXPECTED_BIOES = [
    CharSpan(0, 3, "PER"),
    CharSpan(8, 21, "LOC"),
    CharSpan(26, 34, "ORG"),
    CharSpan(35, 38, "PER"),
]


@pytest.mark.parametrize(
    "content",
    [
        BIOES,
        BIOES.replace("S-", "U-").replace("E-", "L-"),  # BILUO, spaCy's own
        BIOES.replace("S-", "s-").replace("B-", "b-").replace("I-", "i-").replace("E-", "e-"),
    ],
    ids=["BIOES", "BILUO", "lower case"],
)
def test_bioes_biluo_and_lower_case_prefixes_give_the_entities(tmp_path: Path, content: str) -> None:
    path = write(tmp_path, content)

    result = from_conll(path, NLP.vocab, labels=LABELS, policy="strict")

    assert [char_spans(doc) for doc in result.docs] == [EXPECTED_BIOES]
    assert result.issues == []


def test_single_token_entities_next_to_each_other_stay_apart(tmp_path: Path) -> None:
    _, spans = read(write(tmp_path, "Ann\tS-PER\nBob\tS-PER\nLee\tB-PER\nKim\tE-PER\nJo\tS-PER\n"))

    assert spans == [[CharSpan(0, 3, "PER"), CharSpan(4, 7, "PER"), CharSpan(8, 15, "PER"), CharSpan(16, 18, "PER")]]


def test_lower_case_bio_as_some_exports_write_it(tmp_path: Path) -> None:
    _, spans = read(write(tmp_path, "Ann\tb-PER\nLee\ti-PER\nmet\to\nBob\tb-PER\n"))

    assert spans == [[CharSpan(0, 7, "PER"), CharSpan(12, 15, "PER")]]


def test_an_end_tag_without_a_begin_starts_an_entity_and_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "Ann\tO\nYork\tE-LOC\nmet\tO\n")

    result = from_conll(path, NLP.vocab, labels=LABELS, policy="strict")

    assert [char_spans(doc) for doc in result.docs] == [[CharSpan(4, 8, "LOC")]]
    assert [(i.kind, i.action, i.text) for i in result.issues] == [("orphan_inside", "started_entity", "York")]
    assert "E- tag without a B- tag" in str(result.issues[0])


def test_an_end_tag_of_another_type_closes_nothing_and_opens_its_own(tmp_path: Path) -> None:
    _, spans = read(write(tmp_path, "New\tB-LOC\nYork\tE-ORG\n"))

    assert spans == [[CharSpan(0, 3, "LOC"), CharSpan(4, 8, "ORG")]]


@pytest.mark.parametrize("tag", ["S", "E-", "X-PER", "BE-PER"])
def test_tags_that_are_still_not_tags_name_file_and_line(tmp_path: Path, tag: str) -> None:
    path = write(tmp_path, f"Ann\tB-PER\nmet\t{tag}\n")

    with pytest.raises(DataError, match=f"{path}:2: tag {tag!r}"):
        from_conll(path, NLP.vocab, labels=LABELS)
