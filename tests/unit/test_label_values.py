"""Label Studio labels a guide name cannot hold ("Product Name").

The guide maps them under label_studio.labels, and every path that talks to Label Studio speaks its values while nerloop
keeps the guide's names.
"""

from __future__ import annotations

import pytest
import spacy
import yaml
from pydantic import ValidationError

from annotation_guide import Guide, check_label_config, guide_skeleton, label_studio_config, load_guide
from annotation_guide.label_studio_config import guide_name
from ml.converters import from_label_studio
from ml.converters.label_studio import results_to_spans, spans_to_results
from ml.prediction import ScoredSpan
from tests.conftest import GUIDES

CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="person"/><Label value="location"/><Label value="Company Name"/><Label value="misc"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""


def mapped(conll_guide: Guide) -> Guide:
    names = conll_guide.label_studio.model_copy(update={"labels": {"organisation": "Company Name"}})
    return conll_guide.model_copy(update={"label_studio": names})


def test_the_guide_renders_and_checks_label_studio_values(conll_guide: Guide) -> None:
    guide = mapped(conll_guide)
    assert '<Label value="Company Name"' in label_studio_config(guide)
    assert check_label_config(CONFIG, guide) == []
    problems = check_label_config(CONFIG, conll_guide)
    assert any("'organisation'" in p for p in problems)
    assert any("label_studio.labels" in p for p in problems)
    assert guide.label_value("organisation") == "Company Name"
    assert guide.label_names == {"Company Name": "organisation"}


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"company": "Company Name"}, "'company', which no entity type is called"),
        ({"organisation": "Person", "person": "Person"}, "the same Label Studio label"),
    ],
)
def test_mapping_errors(conll_guide: Guide, labels: dict[str, str], message: str) -> None:
    raw = conll_guide.model_dump(mode="json")
    raw["label_studio"]["labels"] = labels
    with pytest.raises(ValidationError, match=message):
        Guide.model_validate(raw)


def test_reading_and_writing_use_the_values(conll_guide: Guide) -> None:
    guide = mapped(conll_guide)
    text = "Acme Corp hired Ann ."
    region = {"type": "labels", "from_name": "label", "value": {"start": 0, "end": 9, "labels": ["Company Name"]}}
    task = {"id": 1, "data": {"text": text}, "annotations": [{"id": 1, "result": [region]}]}
    docs = from_label_studio(
        [task], spacy.blank("en"), labels=guide.labels, label_map=guide.label_names, policy="strict"
    ).docs
    assert [(e.text, e.label_) for e in docs[0].ents] == [("Acme Corp", "organisation")]
    results = spans_to_results(
        [ScoredSpan(0, 9, "organisation", "Acme Corp", 0.9)], label_values=guide.label_studio.labels
    )
    assert results[0]["value"]["labels"] == ["Company Name"]
    assert results_to_spans(results, label_names=guide.label_names)[0].label == "organisation"


def test_the_skeleton_names_a_label_its_way_and_keeps_label_studios(tmp_path: object) -> None:
    assert guide_name("Company Name") == "Company_Name"
    assert guide_name("person") == "person"
    assert guide_name("2nd place") == "L_2nd_place"
    assert guide_name("人名") == "L_"
    skeleton = yaml.safe_load(guide_skeleton(CONFIG, "team"))
    assert [t["name"] for t in skeleton["entity_types"]] == ["person", "location", "Company_Name", "misc"]
    assert skeleton["label_studio"]["labels"] == {"Company_Name": "Company Name"}
    filled = load_guide(GUIDES / "conll2003.yaml").model_dump(mode="json")
    filled["entity_types"][2]["name"] = "Company_Name"
    filled["label_studio"]["labels"] = skeleton["label_studio"]["labels"]
    assert check_label_config(CONFIG, Guide.model_validate(filled)) == []
