"""Reading an existing Label Studio labeling config: parse, check against a guide, start a guide from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from annotation_guide import (
    Guide,
    GuideError,
    LabelsControl,
    LabelStudioNames,
    TextObject,
    check_label_config,
    guide_skeleton,
    label_studio_config,
    load_guide,
    parse_label_config,
)
from annotation_guide.schema import PLACEHOLDER
from tests.conftest import GUIDES

THEIRS = """\
<View>
  <Header value="Mark the entities"/>
  <labels name="ner" toName="doc">
    <Label value="PER" background="#ff0000" hint="A person"/>
    <View><Label value="ORG" background="blue"/></View>
  </labels>
  <Choices name="topic" toName="doc"><Choice value="news"/></Choices>
  <TextArea name="notes" toName="doc"/>
  <Text name="doc" value="$body"/>
</View>
"""


def guide_for(labels: list[str], names: dict[str, str] | None = None) -> Guide:
    """A valid guide with these labels (every field filled from the software guide's first type)."""
    data = yaml.safe_load((GUIDES / "software.yaml").read_text(encoding="utf-8"))
    template = data["entity_types"][0]
    data["entity_types"] = [{**template, "name": label, "color": None} for label in labels]
    if names is not None:
        data["label_studio"] = names
    return Guide.model_validate(data)


def test_parse_finds_labels_controls_and_text_objects() -> None:
    config = parse_label_config(THEIRS)

    assert config.labels_controls == (
        LabelsControl(
            name="ner", to_names=("doc",), labels=("PER", "ORG"), colors=("#ff0000", "blue"), hints=("A person", None)
        ),
    )
    assert config.texts == (TextObject(name="doc", value_field="body"),)


def test_parse_reads_several_objects_and_fixed_text() -> None:
    xml = '<View><Labels name="a" toName="t1, t2"><Label value="X"/></Labels><Text name="t1" value="hello"/></View>'

    config = parse_label_config(xml)

    assert config.labels_controls[0].to_names == ("t1", "t2")
    assert config.texts == (TextObject(name="t1", value_field=None),)


def test_parse_refuses_what_is_not_xml() -> None:
    with pytest.raises(GuideError, match="not valid XML"):
        parse_label_config("<View><Labels></View>")


@pytest.mark.parametrize("name", ["software.yaml", "conll2003.yaml"])
def test_the_config_nerloop_renders_matches_its_guide(name: str) -> None:
    guide = load_guide(GUIDES / name)

    assert check_label_config(label_studio_config(guide), guide) == []


def test_a_config_with_other_names_gets_advice_for_each_name() -> None:
    problems = check_label_config(THEIRS, guide_for(["PER", "ORG"]))

    assert problems == [
        "the <Labels> control is named 'ner', the guide says 'label': put 'from_name: ner' in the guide's "
        "label_studio section",
        "the <Labels> control 'ner' labels doc, the guide says 'text': put 'to_name: doc' in the guide's "
        "label_studio section",
        "the <Text> object 'doc' shows the task field 'body', the guide says 'text': put 'text_field: body' in the "
        "guide's label_studio section",
    ]


def test_following_the_advice_makes_them_match() -> None:
    guide = guide_for(["PER", "ORG"], {"from_name": "ner", "to_name": "doc", "text_field": "body"})

    assert check_label_config(THEIRS, guide) == []


def test_labels_missing_on_either_side_are_named() -> None:
    guide = guide_for(["PER", "LOC"], {"from_name": "ner", "to_name": "doc", "text_field": "body"})

    problems = check_label_config(THEIRS, guide)

    assert len(problems) == 2
    assert "the guide's label(s) 'LOC' are not in the config's <Labels name='ner'>" in problems[0]
    assert "the config's label(s) 'ORG' are not in the guide" in problems[1]


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ('<View><Text name="text" value="$text"/></View>', "has no <Labels> control"),
        (
            '<View><Labels name="a" toName="text"/><Labels name="b" toName="text"/><Text name="text" value="$text"/>'
            "</View>",
            "no <Labels> control is named 'label' (the config has 'a', 'b')",
        ),
        (
            '<View><Labels name="label" toName="img"><Label value="X"/></Labels><Image name="img" value="$i"/></View>',
            "labels img, which is not a <Text> object",
        ),
        (
            '<View><Labels name="label" toName="text"><Label value="X"/></Labels><Text name="text" value="hi"/></View>',
            "shows fixed text",
        ),
        ("<View>", "not valid XML"),
    ],
)
def test_configs_nerloop_cannot_use_are_explained(xml: str, expected: str) -> None:
    problems = check_label_config(xml, guide_for(["X"]))

    assert problems
    assert expected in problems[0]


# --------------------------------------------------------------------------------------------
# Guide skeleton
# --------------------------------------------------------------------------------------------


def fill(data: dict[str, Any]) -> dict[str, Any]:
    """Replace every placeholder the way a user would: real words, entities that occur in their texts."""
    for entity_type in data["entity_types"]:
        label = entity_type["name"]
        entity_type["definition"] = f"A {label} is what the project means by {label}, nothing else."
        entity_type["examples"] = [
            {"text": f"Here is {label}{n} in a text.", "entity": f"{label}{n}"} for n in range(5)
        ]
        entity_type["edge_cases"] = [{"case": "A hard one", "decision": "Label it"}]
        entity_type["non_entities"] = [{"text": "nothing", "reason": "not a name"}]
    return data


def test_skeleton_does_not_validate_until_filled_and_says_where(tmp_path: Path) -> None:
    path = tmp_path / "guide.yaml"
    path.write_text(guide_skeleton(THEIRS, "Their NER project"), encoding="utf-8")

    with pytest.raises(GuideError) as caught:
        load_guide(path)

    problems = caught.value.problems
    assert len(problems) == 2 * (1 + 5 * 2 + 2 + 2)  # definition, 5 examples x 2, edge case x 2, non-entity x 2
    assert all("skeleton's placeholder" in p for p in problems)
    assert any(p.startswith("line ") and "entity type 'PER', definition" in p for p in problems)
    assert any("entity type 'ORG', example 5, entity" in p for p in problems)


def test_filled_skeleton_is_a_guide_that_matches_the_config() -> None:
    data = yaml.safe_load(guide_skeleton(THEIRS, "Their NER project"))

    guide = Guide.model_validate(fill(data))

    assert guide.project == "Their NER project"
    assert guide.labels == ["PER", "ORG"]
    assert guide.label_studio == LabelStudioNames(from_name="ner", to_name="doc", text_field="body")
    assert guide.entity_type("PER").color == "#ff0000"
    assert guide.entity_type("ORG").color is None  # "blue" is not a colour a guide takes
    assert check_label_config(THEIRS, guide) == []


def test_skeleton_marks_labels_a_guide_cannot_name() -> None:
    xml = '<View><Labels name="l" toName="t"><Label value="Person Name"/></Labels><Text name="t" value="$text"/></View>'

    skeleton = guide_skeleton(xml, "p")

    assert yaml.safe_load(skeleton)["entity_types"][0]["name"] == "Person_Name"
    assert yaml.safe_load(skeleton)["label_studio"]["labels"] == {"Person_Name": "Person Name"}
    assert "(see label_studio.labels)" in skeleton
    assert PLACEHOLDER in skeleton


@pytest.mark.parametrize(
    "xml",
    [
        '<View><Text name="t" value="$text"/></View>',
        '<View><Labels name="l" toName="t"/><Text name="t" value="$text"/></View>',
        "not xml",
    ],
)
def test_skeleton_refuses_a_config_without_text_labels(xml: str) -> None:
    with pytest.raises(GuideError):
        guide_skeleton(xml, "p")


@pytest.mark.parametrize(
    ("value", "xml_value"),
    [
        ("ORG", "ORG"),
        ("work_of-art", "work_of-art"),
        ("A" * 40, "A" * 40),
        ("A" * 41, "A" * 41),
        ("Person Name", "Person Name"),
        ("9lives", "9lives"),
        ("ORG\n", "ORG&#10;"),  # Python's "$" matches before a final newline; the guide's pattern does not
    ],
)
def test_skeleton_names_every_label_so_the_filled_guide_matches_its_config(value: str, xml_value: str) -> None:
    """A label the guide can take keeps its name.

    Any other gets a guide name and a label_studio.labels entry, and the filled skeleton validates and matches the
    config it came from.
    """
    xml = (
        f'<View><Labels name="l" toName="t"><Label value="{xml_value}"/></Labels><Text name="t" value="$text"/></View>'
    )
    guide = Guide.model_validate(fill(yaml.safe_load(guide_skeleton(xml, "p"))))
    name = guide.labels[0]
    assert (name == value) == (value in ("ORG", "work_of-art", "A" * 40))
    assert guide.label_value(name) == value
    assert check_label_config(xml, guide) == []


@pytest.mark.parametrize(
    ("background", "kept"), [("#1f77b4", True), ("#1F77B4", True), ("#1f77b4&#10;", False), ("#1f77b40", False)]
)
def test_skeleton_keeps_exactly_the_colours_the_guide_takes(background: str, kept: bool) -> None:
    xml = (
        f'<View><Labels name="l" toName="t"><Label value="ORG" background="{background}"/></Labels>'
        '<Text name="t" value="$text"/></View>'
    )

    data = fill(yaml.safe_load(guide_skeleton(xml, "p")))

    assert ("color" in data["entity_types"][0]) == kept
    Guide.model_validate(data)
