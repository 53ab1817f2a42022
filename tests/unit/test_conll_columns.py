"""CoNLL files with more than two columns, and label mapping / unknown labels apart from the alignment policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy

from ml.converters import CharSpan, ReadOptions, from_conll, load_docs, parse_label_map
from ml.errors import ConversionError, DataError

NLP = spacy.blank("en")
LABELS = ("person", "ORG")
CONLL2003 = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nPeter NNP B-NP B-PER\n"


def write(tmp_path: Path, content: str, name: str = "gold.conll") -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def ents(path: Path, **options: object) -> list[list[CharSpan]]:
    result = from_conll(path, NLP.vocab, labels=LABELS, label_map={"PER": "person"}, **options)  # type: ignore[arg-type]
    return [[CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in result.docs]


def test_a_wider_file_without_columns_is_an_error_naming_file_line_and_options(tmp_path: Path) -> None:
    path = write(tmp_path, CONLL2003)

    with pytest.raises(DataError) as info:
        from_conll(path, NLP.vocab, labels=LABELS)

    message = str(info.value)
    assert message.startswith(f"{path}:3: 4 columns")
    assert "--token-column 1 --tag-column -1" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "columns",
    [
        {"token_column": 1, "tag_column": -1},
        {"tag_column": 4},
        {"token_column": -4, "tag_column": 4},
        {"tag_column": -1},
    ],
)
def test_token_and_tag_columns_from_1_or_from_the_end(tmp_path: Path, columns: dict[str, int]) -> None:
    path = write(tmp_path, CONLL2003)

    assert ents(path, **columns) == [[CharSpan(0, 2, "ORG"), CharSpan(11, 16, "person")]]


def test_token_tag_token_tag_files_pick_any_pair(tmp_path: Path) -> None:
    path = write(tmp_path, "EU\tB-ORG\tEU\tO\nPeter\tB-PER\tPeter\tO\n")

    assert ents(path, token_column=3, tag_column=2) == [[CharSpan(0, 2, "ORG"), CharSpan(3, 8, "person")]]
    assert ents(path, token_column=1, tag_column=4) == [[]]


def test_two_column_files_read_as_before_and_take_the_options_too(tmp_path: Path) -> None:
    path = write(tmp_path, "Peter\tB-PER\nsays\tO\n")

    assert ents(path) == ents(path, token_column=1, tag_column=2) == [[CharSpan(0, 5, "person")]]


@pytest.mark.parametrize(("option", "value"), [("tag_column", 5), ("tag_column", -5), ("token_column", 0)])
def test_a_column_outside_the_line_is_an_error(tmp_path: Path, option: str, value: int) -> None:
    path = write(tmp_path, CONLL2003)

    with pytest.raises(DataError, match=rf"{path}:3: --{option.replace('_', '-')} {value} is not a column"):
        from_conll(path, NLP.vocab, labels=LABELS, **{option: value})  # type: ignore[arg-type]


def test_a_line_with_another_column_count_names_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, CONLL2003 + "says VBZ O\n")

    with pytest.raises(DataError) as info:
        from_conll(path, NLP.vocab, labels=LABELS, tag_column=-1)

    assert str(info.value).startswith(f"{path}:6: 3 column(s) in 'says VBZ O', but line 3 has 4")


def test_the_wrong_tag_column_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, CONLL2003)

    with pytest.raises(DataError, match=r"gold.conll:3: tag 'NNP' is not O nor a BIO / BIOES tag .*\(is --tag-column"):
        from_conll(path, NLP.vocab, labels=LABELS, tag_column=2)


def test_load_docs_passes_the_columns(tmp_path: Path) -> None:
    path = write(tmp_path, CONLL2003)

    result = load_docs(
        path, NLP, labels=LABELS, options=ReadOptions(label_map={"PER": "person"}, unknown_labels="drop", tag_column=-1)
    )

    assert [[e.label_ for e in doc.ents] for doc in result.docs] == [["ORG", "person"]]


# --------------------------------------------------------------------------------------------
# Labels outside the guide: their own choice, apart from the policy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["strict", "expand", "contract"])
def test_refused_unknown_labels_advise_mapping_or_dropping_not_the_policy(tmp_path: Path, policy: str) -> None:
    path = write(tmp_path, "Peter\tB-PER\nin\tO\nParis\tB-LOC\n")

    with pytest.raises(ConversionError) as info:
        from_conll(path, NLP.vocab, labels=LABELS, policy=policy, unknown_labels="refuse")  # type: ignore[arg-type]

    message = str(info.value)
    assert [(i.kind, i.label) for i in info.value.issues] == [("unknown_label", "PER"), ("unknown_label", "LOC")]
    assert "--map-label OLD=NEW" in message
    assert "--unknown-labels drop" in message
    assert "policy" not in message


@pytest.mark.parametrize("policy", ["strict", "expand"])
def test_dropped_unknown_labels_are_reported_under_any_policy(tmp_path: Path, policy: str) -> None:
    path = write(tmp_path, "Peter\tB-PER\nin\tO\nParis\tB-LOC\n")

    result = from_conll(
        path,
        NLP.vocab,
        labels=LABELS,
        policy=policy,  # type: ignore[arg-type]
        label_map={"PER": "person"},
        unknown_labels="drop",
    )

    assert [[(e.text, e.label_) for e in doc.ents] for doc in result.docs] == [[("Peter", "person")]]
    assert [(i.kind, i.action, i.label, i.text) for i in result.issues] == [
        ("unknown_label", "dropped", "LOC", "Paris")
    ]


def test_a_label_mapped_outside_the_guide_is_reported_with_its_target(tmp_path: Path) -> None:
    path = write(tmp_path, "Peter\tB-PER\n")

    result = from_conll(
        path, NLP.vocab, labels=LABELS, policy="expand", label_map={"PER": "persn"}, unknown_labels="drop"
    )

    assert [(i.kind, i.label, i.detail) for i in result.issues] == [("unknown_label", "PER", "mapped to 'persn'")]
    assert "has a label that is not in the guide (mapped to 'persn') (dropped)" in str(result.issues[0])


def test_parse_label_map_reads_pairs() -> None:
    assert parse_label_map(["PER=person", " ORG = ORG "], labels=LABELS) == {"PER": "person", "ORG": "ORG"}


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["PER"], "expected OLD=NEW"),
        (["=person"], "expected OLD=NEW"),
        (["PER="], "expected OLD=NEW"),
        (["PER=persn"], "'persn' is not a label of the guide"),
        (["PER=person", "PER=ORG"], "'PER' is already mapped to 'person'"),
    ],
)
def test_parse_label_map_refuses_bad_pairs(pairs: list[str], expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        parse_label_map(pairs, labels=LABELS)
