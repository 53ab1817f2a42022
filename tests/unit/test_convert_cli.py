"""``nerloop convert``: CoNLL columns, label mapping, unknown labels and the guide's Label Studio names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ml.cli import app
from tests.conftest import GUIDES

CONLL2003 = (
    "-DOCSTART- -X- -X- O\n\n"
    "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nPeter NNP B-NP B-PER\nin IN O O\nParis NNP B-NP B-LOC\n"
)


@pytest.fixture
def guide(tmp_path: Path) -> Path:
    """A guide with the types person and ORG (fields filled from the software guide's first type)."""
    data = yaml.safe_load((GUIDES / "software.yaml").read_text(encoding="utf-8"))
    template = data["entity_types"][0]
    data["entity_types"] = [{**template, "name": name} for name in ("person", "ORG")]
    path = tmp_path / "guide.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["convert", *map(str, args)])


def test_wide_conll_without_columns_fails_naming_the_options(tmp_path: Path, guide: Path) -> None:
    source = tmp_path / "train.conll"
    source.write_text(CONLL2003, encoding="utf-8")

    result = run(source, tmp_path / "out.jsonl", "--guide", guide)

    assert result.exit_code == 2
    assert f"error: {source}:3: 4 columns" in result.stderr
    assert "--token-column" in result.stderr
    assert "--tag-column" in result.stderr


def test_wide_conll_with_columns_mapping_and_dropping(tmp_path: Path, guide: Path) -> None:
    source = tmp_path / "train.conll"
    source.write_text(CONLL2003, encoding="utf-8")
    target = tmp_path / "out.jsonl"
    report = tmp_path / "issues.jsonl"

    result = run(
        source, target, "--guide", guide, "--tag-column", "-1", "--map-label", "PER=person",
        "--unknown-labels", "drop", "--report", report,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(s["text"], s["label"]) for s in record["spans"]] == [("EU", "ORG"), ("Peter", "person")]
    issues = [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines()]
    assert [(i["kind"], i["action"], i["label"]) for i in issues] == [("unknown_label", "dropped", "LOC")]


@pytest.mark.parametrize("policy", ["strict", "expand"])
def test_unknown_labels_are_refused_by_default_with_advice(tmp_path: Path, guide: Path, policy: str) -> None:
    source = tmp_path / "train.conll"
    source.write_text(CONLL2003, encoding="utf-8")

    result = run(source, tmp_path / "out.jsonl", "--guide", guide, "--tag-column", "4", "--policy", policy)

    assert result.exit_code == 2
    assert "has a label that is not in the guide" in result.stderr
    assert "--map-label OLD=NEW" in result.stderr
    assert "--unknown-labels drop" in result.stderr
    assert "--policy" not in result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--map-label", "PER"], "expected OLD=NEW"),
        (["--map-label", "PER=persn"], "'persn' is not a label of the guide"),
        (["--unknown-labels", "keep"], "--unknown-labels must be one of refuse, drop"),
        (["--tag-column", "9"], "--tag-column 9 is not a column"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, guide: Path, args: list[str], expected: str) -> None:
    source = tmp_path / "train.conll"
    source.write_text(CONLL2003, encoding="utf-8")

    result = run(source, tmp_path / "out.jsonl", "--guide", guide, *args)

    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_label_studio_export_of_a_project_with_other_names(tmp_path: Path, guide: Path) -> None:
    data = yaml.safe_load(guide.read_text(encoding="utf-8"))
    data["label_studio"] = {"from_name": "ner", "to_name": "doc", "text_field": "body"}
    guide.write_text(yaml.safe_dump(data), encoding="utf-8")
    region = {"type": "labels", "value": {"start": 0, "end": 5, "labels": ["person"]}}
    result_items = [
        {**region, "from_name": "ner"},
        {**region, "from_name": "other"},
        {"type": "relation", "from_id": "a", "to_id": "b"},
    ]
    task = {"id": 3, "data": {"body": "Peter says hi"}, "annotations": [{"result": result_items}]}
    source = tmp_path / "export.json"
    source.write_text(json.dumps([task]), encoding="utf-8")
    target = tmp_path / "out.jsonl"

    result = run(source, target, "--guide", guide)

    assert result.exit_code == 0, result.output
    (record,) = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(s["text"], s["label"]) for s in record["spans"]] == [("Peter", "person")]
    assert "(2 issue(s))" in result.stdout
