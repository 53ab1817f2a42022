"""Guide checks that used to pass a guide which failed later.

The language, duplicate names beside other problems, and example entities that cannot be labelled where they are
written.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from annotation_guide import Guide, GuideError, load_guide
from annotation_guide.mentions import mention_problems, on_word_boundaries
from annotation_guide.schema import Example
from tests.unit.test_guide_messages import GOOD_TYPE


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-guide.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(GuideError) as caught:
        load_guide(path)
    return list(caught.value.problems)


def guide(*, language: str = "en", types: str = GOOD_TYPE) -> str:
    return f"project: algos\nlanguage: {language}\nentity_types:\n{types}"


# --------------------------------------------------------------------------------------------
# language
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["en", "de", "xx", "zh", "nl"])
def test_languages_spacy_has_are_accepted(tmp_path: Path, code: str) -> None:
    assert load_guide(write(tmp_path, guide(language=code))).language == code


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("xx-notalang", "line 2, language: must be a spaCy language code such as 'en', 'de', 'fr' or 'zh', or 'xx'"),
        ("en-US", "not 'en-US'"),
        ("EN", "not 'EN'"),
        ("english", "not 'english'"),
        ("'../x'", "not '../x'"),
        ("zz", "line 2, language: spaCy has no language 'zz'; use a spaCy language code"),
        ("qq", "spaCy has no language 'qq'"),
    ],
)
def test_a_language_spacy_cannot_build_is_refused_at_once(tmp_path: Path, code: str, expected: str) -> None:
    (problem,) = problems_of(write(tmp_path, guide(language=code)))

    assert problem.startswith(expected) or expected in problem
    assert "E048" not in problem
    assert "Value error" not in problem


@pytest.mark.skipif(importlib.util.find_spec("sudachipy") is not None, reason="Japanese support is installed here")
def test_a_language_whose_tokenizer_needs_a_missing_package_says_what_to_install(tmp_path: Path) -> None:
    (problem,) = problems_of(write(tmp_path, guide(language="ja")))

    assert problem.startswith("line 2, language: spaCy's 'ja' tokenizer needs a package that is not installed")
    assert "SudachiPy" in problem
    assert "or use 'xx'" in problem


# --------------------------------------------------------------------------------------------
# duplicate names with other problems
# --------------------------------------------------------------------------------------------


def test_a_duplicate_name_is_reported_beside_another_invalid_type(tmp_path: Path) -> None:
    broken = GOOD_TYPE.replace("name: algorithm", "name: metric").replace(
        "The name of a specific algorithm or method, as written.", "too short"
    )
    duplicate = GOOD_TYPE.replace("name: algorithm", "name: Algorithm")

    problems = problems_of(write(tmp_path, guide(types=GOOD_TYPE + broken + duplicate)))

    assert problems == [
        "line 17, entity type 'metric', definition: needs at least 20 characters, has 9",
        "line 28, entity type 'Algorithm': the name 'Algorithm' differs only in case or '-'/'_' from 'algorithm', "
        "taken by entity type 1; merge the two or rename one",
    ]


def test_every_duplicate_is_reported_with_a_bad_language(tmp_path: Path) -> None:
    types = GOOD_TYPE + GOOD_TYPE + GOOD_TYPE.replace("name: algorithm", "name: ALGORITHM")

    problems = problems_of(write(tmp_path, guide(language="zz", types=types)))

    assert [p.split(":")[0] for p in problems] == [
        "line 2, language",
        "line 16, entity type 'algorithm'",
        "line 28, entity type 'ALGORITHM'",
    ]
    assert "the name 'algorithm' is taken by entity type 1" in problems[1]


def test_guide_model_validate_refuses_duplicates_alone_too() -> None:
    data = yaml.safe_load(f"project: algos\nentity_types:\n{GOOD_TYPE}{GOOD_TYPE.replace('algorithm', 'Algorithm')}")

    with pytest.raises(ValidationError) as caught:
        Guide.model_validate(data)

    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(("entity_types", 1), "value_error")]
    assert "differs only in case" in str(caught.value)


# --------------------------------------------------------------------------------------------
# example entities
# --------------------------------------------------------------------------------------------

EXAMPLES = {
    "inside a word": ("Abc is a word.", ["b"], "'b' occurs in the text only inside a longer word ('Abc')"),
    "a word's start": ("Kafkaesque rules.", ["Kafka"], "only inside a longer word ('Kafkaesque')"),
    "listed twice, once in the text": ("a b c", ["b", "b"], "'b' is listed 2 times but occurs 1 time(s)"),
    "listed three times, twice in the text": ("b and b", ["b", "b", "b"], "listed 3 times but occurs 2 time(s)"),
    "once whole, once inside": ("Kafka wrote Kafkaesque", ["Kafka", "Kafka"], "listed 2 times but occurs 1 time"),
    "nested in another": ("New York is big.", ["New York", "York"], "'York' overlaps 'New York'"),
    "space at the end": ("Acme Corp hired Ann.", ["Acme Corp "], "'Acme Corp ' has whitespace at its start or end"),
    "newline at the start": ("Acme\nCorp hired Ann.", ["\nCorp"], "write the entity without it: 'Corp'"),
}


@pytest.mark.parametrize(("text", "mentions", "expected"), EXAMPLES.values(), ids=EXAMPLES.keys())
def test_example_entities_that_cannot_be_labelled_are_refused(text: str, mentions: list[str], expected: str) -> None:
    problems = mention_problems(text, mentions)

    assert any(expected in p for p in problems), problems
    with pytest.raises(ValueError, match=r"Abc|Kafka|listed|overlaps|whitespace"):
        Example(text=text, entities=mentions)


OK = {
    "two of one name": ("Bob met Bob.", ["Bob", "Bob"]),
    "punctuation around": ("(Acme) and C++ won.", ["Acme", "C++"]),
    "apostrophe": ("Dijkstra's algorithm is old.", ["Dijkstra's algorithm"]),
    "Japanese": ("東京大学の研究者が発表した。", ["東京大学"]),
    "Chinese": ("我在北京工作。", ["北京"]),
    "Thai": ("ผมอยู่กรุงเทพมหานคร", ["กรุงเทพ"]),
    "Latin next to kana": ("iPhone発売", ["iPhone"]),
    "accents": ("Café Müller opened.", ["Café Müller"]),
}


@pytest.mark.parametrize(("text", "mentions"), OK.values(), ids=OK.keys())
def test_whole_word_entities_and_unspaced_scripts_are_accepted(text: str, mentions: list[str]) -> None:
    assert mention_problems(text, mentions) == []
    assert Example(text=text, entities=mentions).mentions == tuple(mentions)


def test_a_guide_with_a_part_word_entity_says_where_in_plain_words(tmp_path: Path) -> None:
    types = GOOD_TYPE.replace(
        '{text: "PageRank ranks pages.", entity: PageRank}', '{text: "PageRank ranks pages.", entity: Rank}'
    )

    (problem,) = problems_of(write(tmp_path, guide(types=types)))

    assert problem.startswith("line 11, entity type 'algorithm', example 5: 'Rank' occurs in the text only inside")
    assert "'PageRank'" in problem
    assert "whole word" in problem


def test_the_boundary_rule_matches_the_llm_parsers_examples() -> None:
    text = "Kafka wrote Kafkaesque books in 東京大学の研究者"
    assert on_word_boundaries(text, 0, 5)
    assert not on_word_boundaries(text, 12, 17)
    assert on_word_boundaries(text, text.index("東京"), text.index("東京") + 2)
