"""A newcomer's own guide: every problem at once, by line and entity type name, in plain words.

Also the format's additions: several entities per example, the ``label_studio`` names section, and the
skeleton placeholder that never validates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from annotation_guide import Guide, GuideError, LabelStudioNames, label_studio_config, load_guide
from annotation_guide.schema import PLACEHOLDER, Example
from tests.conftest import GUIDES, ROOT

GOOD_TYPE = """\
  - name: algorithm
    definition: The name of a specific algorithm or method, as written.
    examples:
      - {text: "We sort with quicksort.", entity: quicksort}
      - {text: "Dijkstra finds the shortest path.", entity: Dijkstra}
      - {text: "A* beats BFS here.", entities: ["A*", BFS]}
      - {text: "Try gradient descent.", entity: gradient descent}
      - {text: "PageRank ranks pages.", entity: PageRank}
    edge_cases:
      - {case: "An algorithm named after a person", decision: "Label the whole name"}
    non_entities:
      - {text: "the algorithm", reason: "generic"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my-guide.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> tuple[str, list[str]]:
    with pytest.raises(GuideError) as caught:
        load_guide(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    return message, list(caught.value.problems)


def test_a_valid_newcomer_guide_with_a_multi_entity_example(tmp_path: Path) -> None:
    guide = load_guide(write(tmp_path, f"project: algos\nentity_types:\n{GOOD_TYPE}"))

    example = guide.entity_type("algorithm").examples[2]
    assert example.mentions == ("A*", "BFS")
    assert example.entity is None


def test_every_problem_is_listed_by_line_and_entity_type_name(tmp_path: Path) -> None:
    text = f"""\
project: algos
entity_types:
{GOOD_TYPE}  - name: dataset
    definition: too short
    examples:
      - {{text: "We trained on MNIST.", entity: MNIST}}
    edge_cases: []
    non_entities:
      - {{text: "the data"}}
"""
    message, problems = problems_of(write(tmp_path, text))

    assert problems == [
        "line 16, entity type 'dataset', definition: needs at least 20 characters, has 9",
        "line 17, entity type 'dataset', examples: needs at least 5 items, has 1",
        "line 19, entity type 'dataset', edge_cases: needs at least 1 item, has 0",
        "line 21, entity type 'dataset', non-entity 1: 'reason' is missing",
    ]
    assert message.splitlines()[0].endswith(": 4 problems:")
    assert message.splitlines()[1:] == [f"  - {p}" for p in problems]


BROKEN = {
    "wrong type for an example": ("      - just a sentence\n", "example 6: must be a mapping of fields"),
    "a number as entity": ('      - {text: "In 2024 we won.", entity: 2024}\n', "entity: must be text, not the number"),
    "entity not in text": ('      - {text: "Quick.", entity: quicksort}\n', "'quicksort' must occur verbatim"),
    "both entity and entities": (
        '      - {text: "A B", entity: A, entities: [B]}\n',
        "give exactly one of 'entity: <the entity as written in the text>' or 'entities:",
    ),
    "neither": ('      - {text: "A B"}\n', "give exactly one of"),
    "an empty entities list": ('      - {text: "A B", entities: []}\n', "entities: needs at least 1 item, has 0"),
    "one of several missing": ('      - {text: "A B", entities: [A, C]}\n', "'C' must occur verbatim"),
    "a placeholder": (f'      - {{text: "{PLACEHOLDER}: a sentence", entity: x}}\n', "skeleton's placeholder"),
    "an unknown field": ('      - {text: "A B", entity: A, note: x}\n', "'note' is not a field here"),
}


@pytest.mark.parametrize(("line", "expected"), BROKEN.values(), ids=BROKEN.keys())
def test_example_problems_in_plain_words(tmp_path: Path, line: str, expected: str) -> None:
    lines = f"project: algos\nentity_types:\n{GOOD_TYPE}".splitlines(keepends=True)
    at = lines.index("    edge_cases:\n")
    text = "".join([*lines[:at], line, *lines[at:]])

    message, problems = problems_of(write(tmp_path, text))

    assert problems == [problems[0]]
    assert problems[0].startswith(f"line {at + 1}, entity type 'algorithm', example 6")
    assert expected in message
    for internal in (
        "Value error",
        "Example",
        "EdgeCase",
        "NonEntity",
        "EntityType",
        "pydantic",
        "http",
        "instance of",
    ):
        assert internal not in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("project: x\nentity_types:\n\t- name: a\n", "line 3, column 1: not valid YAML: found character '\\t'"),
        ("project: x\nentity_types:\n\t- name: a\n", "indent with spaces"),
        ("project: [unclosed\n", "line 2, column 1: not valid YAML: expected ',' or ']'"),
        ("project: a: b\n", "line 1, column 11: not valid YAML: mapping values are not allowed here"),
        ("project: a: b\n", "put text that holds ': ' in quotes"),
        ("", "the file is empty"),
        ("- a\n", "the file holds a list"),
    ],
)
def test_yaml_errors_keep_their_reason_line_and_column(tmp_path: Path, text: str, expected: str) -> None:
    message, _ = problems_of(write(tmp_path, text))

    assert expected in message


def test_a_key_given_twice_is_a_problem_not_silently_the_last(tmp_path: Path) -> None:
    text = f"project: algos\nproject: other\nentity_types:\n{GOOD_TYPE}"

    _, problems = problems_of(write(tmp_path, text))

    assert problems == ["line 2: 'project' appears twice here (first on line 1); merge them"]


def test_problems_at_the_top_and_in_sections(tmp_path: Path) -> None:
    text = (
        "project: algos\ncolour: red\ntargets: {f1: 0, usable_labels: 900}\n"
        f"label_studio: {{text_field: $body}}\nentity_types:\n{GOOD_TYPE}"
    )

    _, problems = problems_of(write(tmp_path, text))

    assert problems == [
        "line 2: 'colour' is not a field here (check its spelling and indentation; allowed: project, description, "
        "language, targets, label_studio, entity_types)",
        "line 3, targets, f1: must be greater than 0.0, not 0",
        "line 4, label_studio, text_field: must be the task data field without '$' (value=\"$text\" -> text): "
        "letters, digits, '_', '.' or '-', not '$body'",
    ]


def test_an_unreadable_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"project: caf\xe9\n")

    with pytest.raises(GuideError, match=rf"^{path}: not UTF-8"):
        load_guide(path)


# --------------------------------------------------------------------------------------------
# The label_studio section
# --------------------------------------------------------------------------------------------


def test_label_studio_names_default_to_nerloops_own() -> None:
    guide = load_guide(GUIDES / "software.yaml")

    assert guide.label_studio == LabelStudioNames(from_name="label", to_name="text", text_field="text")


def test_label_studio_names_shape_the_rendered_config(tmp_path: Path) -> None:
    text = (
        f"project: algos\nlabel_studio: {{from_name: ner, to_name: doc, text_field: body}}\nentity_types:\n{GOOD_TYPE}"
    )

    config = label_studio_config(load_guide(write(tmp_path, text)))

    assert '<Labels name="ner" toName="doc">' in config
    assert '<Text name="doc" value="$body"/>' in config


def _software() -> dict[str, Any]:
    data = yaml.safe_load((GUIDES / "software.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_hash_is_unchanged_by_the_new_fields_left_at_their_defaults(software_guide: Guide) -> None:
    data = _software()
    data["label_studio"] = {"from_name": "label", "to_name": "text", "text_field": "text"}
    same = Guide.model_validate(data)
    data["label_studio"] = {"from_name": "ner"}
    other = Guide.model_validate(data)

    assert same.sha256 == software_guide.sha256
    assert other.sha256 != software_guide.sha256


def test_an_example_with_several_entities_changes_the_hash(software_guide: Guide) -> None:
    data = _software()
    first = data["entity_types"][0]["examples"][0]
    first["entities"] = [first.pop("entity")]

    assert Guide.model_validate(data).sha256 != software_guide.sha256


def test_example_mentions_keep_the_given_order() -> None:
    assert Example(text="B then A", entities=["A", "B"]).mentions == ("A", "B")
    assert Example(text="B then A", entity="A").mentions == ("A",)


def test_the_readme_example_guide_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The annotation guide format") :]
    example = section[section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", section.index("```yaml"))]

    guide = load_guide(write(tmp_path, example))

    assert guide.labels == ["algorithm"]
    assert guide.label_studio == LabelStudioNames(from_name="ner", to_name="abstract", text_field="body")
    assert guide.entity_type("algorithm").examples[1].mentions == ("ResNet-50", "ViT-B/16")
