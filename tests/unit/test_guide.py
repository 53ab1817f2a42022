from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from annotation_guide import Guide, GuideError, label_definitions, label_studio_config, load_guide
from tests.conftest import GUIDES


@pytest.mark.parametrize("name", ["software.yaml", "conll2003.yaml"])
def test_shipped_guides_are_complete(name: str) -> None:
    guide = load_guide(GUIDES / name)
    assert guide.targets.f1 == 0.85
    assert (guide.targets.usable_labels, guide.targets.good_labels) == (200, 500)
    for entity_type in guide.entity_types:
        assert 5 <= len(entity_type.examples) <= 10
        assert entity_type.edge_cases
        assert entity_type.non_entities
        assert all(mention in example.text for example in entity_type.examples for mention in example.mentions)


def test_software_guide_has_the_design_types(software_guide: Guide) -> None:
    assert software_guide.labels == ["SERVICE", "INFRA", "TEAM", "CONFIG", "LIBRARY", "ENDPOINT"]


def test_conll_guide_labels_match_the_corpus(conll_guide: Guide, shared_data: Path) -> None:
    lines = (shared_data / "conll2003" / "dev.txt").read_text().splitlines()
    tags = {line.split("\t")[1].strip() for line in lines if "\t" in line}
    assert {tag[2:] for tag in tags if tag != "O"} == set(conll_guide.labels)


@pytest.mark.parametrize("name", ["software.yaml", "conll2003.yaml"])
def test_label_studio_config_has_exactly_the_guide_labels(name: str) -> None:
    guide = load_guide(GUIDES / name)
    root = ET.fromstring(label_studio_config(guide))
    labels = root.find("Labels")
    assert labels is not None
    assert labels.get("name") == "label"
    assert labels.get("toName") == "text"
    assert [label.get("value") for label in labels.findall("Label")] == guide.labels
    text = root.find("Text")
    assert text is not None
    assert text.get("value") == "$text"
    assert list(label_definitions(guide)) == guide.labels


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "guide.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _valid() -> dict[str, object]:
    return yaml.safe_load((GUIDES / "software.yaml").read_text())


def _break(mutate: str) -> object:
    data = _valid()
    types = data["entity_types"]
    assert isinstance(types, list)
    if mutate == "missing definition":
        del types[1]["definition"]
    elif mutate == "too few examples":
        types[0]["examples"] = types[0]["examples"][:2]
    elif mutate == "entity not in text":
        types[2]["examples"][0]["entity"] = "nowhere-to-be-found"
    elif mutate == "duplicate type":
        types.append(types[0])
    elif mutate == "name differing in case":
        types.append({**types[0], "name": types[0]["name"].lower()})
    elif mutate == "name differing in separator":
        types[0]["name"] = "SERVICE_X"
        types[1]["name"] = "service-x"
    elif mutate == "unknown field":
        data["colour_scheme"] = "dark"
    elif mutate == "bad target":
        data["targets"] = {"f1": 1.5}
    return data


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ("missing definition", "entity type 'INFRA': 'definition' is missing"),
        ("too few examples", "entity type 'SERVICE', examples: needs at least 5 items, has 2"),
        ("entity not in text", "entity type 'TEAM', example 1: 'nowhere-to-be-found' must occur verbatim"),
        ("duplicate type", "entity type 'SERVICE': the name 'SERVICE' is taken by entity type 1"),
        ("name differing in case", "the name 'service' differs only in case or '-'/'_' from 'SERVICE'"),
        ("name differing in separator", "the name 'service-x' differs only in case or '-'/'_' from 'SERVICE_X'"),
        ("unknown field", ": 'colour_scheme' is not a field here"),
        ("bad target", "targets, f1: must be at most 1.0, not 1.5"),
    ],
)
def test_bad_guides_name_the_file_line_and_entity_type(tmp_path: Path, mutation: str, expected: str) -> None:
    path = _write(tmp_path, _break(mutation))
    with pytest.raises(GuideError) as caught:
        load_guide(path)
    message = str(caught.value)
    assert re.match(rf"{re.escape(str(path))}: line \d+", message)
    assert expected in message
    assert "\n" not in message
    assert caught.value.problems == (message.removeprefix(f"{path}: "),)


@pytest.mark.parametrize(
    ("content", "expected"),
    [("project: [unclosed\n", "line"), ("- just\n- a list\n", "YAML mapping")],
)
def test_unparseable_guides(tmp_path: Path, content: str, expected: str) -> None:
    with pytest.raises(GuideError, match=expected):
        load_guide(_write(tmp_path, content))


def test_missing_guide_file(tmp_path: Path) -> None:
    with pytest.raises(GuideError, match="cannot read"):
        load_guide(tmp_path / "absent.yaml")


def test_hash_follows_content_not_formatting(tmp_path: Path, software_guide: Guide) -> None:
    data = _valid()
    reformatted = _write(tmp_path, yaml.safe_dump(data, default_flow_style=True))
    assert load_guide(reformatted).sha256 == software_guide.sha256
    data["targets"] = {"f1": 0.9}
    assert Guide.model_validate(data).sha256 != software_guide.sha256
