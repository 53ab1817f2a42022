"""The LLM prompt: a golden rendering, and agreement with the guide (STYLE.md section 7)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from annotation_guide import Guide, label_studio_config, load_guide
from ml.llm import (
    PROMPT_VERSION,
    Demonstration,
    build_messages,
    demonstrations_from_docs,
    prompt_version,
    response_schema,
)
from tests.conftest import GUIDES

GOLDEN = Path(__file__).parent / "golden" / "prompt_software.json"

TEXT = "Data Engineering saw psycopg2 errors from checkout-service while Kafka was down."
DEMONSTRATIONS = (
    Demonstration(
        text="SRE moved Redis off db-replica-07 after payments-api timed out; Redis is stable now.",
        entities=(
            ("SRE", "TEAM"),
            ("Redis", "INFRA"),
            ("db-replica-07", "INFRA"),
            ("payments-api", "SERVICE"),
            ("Redis", "INFRA"),
        ),
    ),
    Demonstration(text="The team restarted the database after lunch.", entities=()),
)


def render_golden() -> dict[str, Any]:
    guide = load_guide(GUIDES / "software.yaml")
    return {"prompt_version": prompt_version(guide), "messages": build_messages(TEXT, guide, DEMONSTRATIONS)}


def write_golden() -> None:
    """Rewrite the golden file after reviewing the new prompt.

    Run from the repository root:

        .venv/bin/python -c "from tests.unit.test_llm_prompt import write_golden; write_golden()"

    It refuses when the messages changed but the prompt version did not: a new template wording needs a new
    PROMPT_VERSION (cached answers of the old prompt must not be reused). A guide change changes the version by itself.
    """
    new = render_golden()
    if GOLDEN.is_file():
        old = json.loads(GOLDEN.read_text(encoding="utf-8"))
        if old["prompt_version"] == new["prompt_version"] and old["messages"] != new["messages"]:
            raise SystemExit(f"the prompt changed: bump PROMPT_VERSION (now {PROMPT_VERSION!r}) in ml/llm/prompt.py")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(new, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def test_prompt_matches_the_golden_file() -> None:
    # On an intended change: review the new prompt, then regenerate with write_golden() (see its docstring).
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    rendered = render_golden()
    assert rendered["prompt_version"] == golden["prompt_version"]
    assert [m["role"] for m in rendered["messages"]] == [m["role"] for m in golden["messages"]]
    for index, (got, want) in enumerate(zip(rendered["messages"], golden["messages"], strict=True)):
        assert got == want, f"message {index} differs from {GOLDEN.name}"


def test_messages_are_deterministic_and_end_with_the_text(software_guide: Guide) -> None:
    first = build_messages(TEXT, software_guide, DEMONSTRATIONS)
    assert first == build_messages(TEXT, software_guide, list(DEMONSTRATIONS))
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert first[-1] == {"role": "user", "content": TEXT}
    answer = json.loads(first[2]["content"])
    assert answer == {"entities": [{"text": s, "label": label} for s, label in DEMONSTRATIONS[0].entities]}
    assert first[4]["content"] == '{"entities":[]}'


def test_zero_shot_has_only_system_and_text(software_guide: Guide) -> None:
    messages = build_messages("Nothing here.", software_guide, [])
    assert [m["role"] for m in messages] == ["system", "user"]


def test_demonstration_answer_keeps_non_ascii(software_guide: Guide) -> None:
    demo = Demonstration(text="Zoë's team moved Straße-api.", entities=(("Straße-api", "SERVICE"),))
    assert "Straße-api" in build_messages("x", software_guide, [demo])[2]["content"]


def _flat(value: str) -> str:
    return " ".join(value.split())


def _section(system: str, label: str) -> str:
    """The part of the system message about one type: from its heading to the next heading."""
    start = system.index(f"\n## {label}\n")
    return system[start : system.index("\n#", start + 1) + 1]


@pytest.mark.parametrize("name", ["software.yaml", "conll2003.yaml"])
def test_system_message_carries_the_whole_guide(name: str) -> None:
    guide = load_guide(GUIDES / name)
    system = build_messages("x", guide, [])[0]["content"]
    for entity_type in guide.entity_types:
        section = _section(system, entity_type.name)
        assert f"Definition: {_flat(entity_type.definition)}" in section
        shown = [ex for ex in entity_type.examples if f'- "{ex.entity}" in: {_flat(ex.text)}\n' in section]
        assert all(ex.entity is not None for ex in shown)
        assert 2 <= len(shown) <= 3
        for edge in entity_type.edge_cases:
            assert f"- {_flat(edge.case)} -> {_flat(edge.decision)}\n" in section
        for non_entity in entity_type.non_entities:
            assert f'- "{non_entity.text}": {_flat(non_entity.reason)}' in section
    assert f"one of {', '.join(guide.labels)}." in system
    # Types appear in the guide's order.
    positions = [system.index(f"## {label}\n") for label in guide.labels]
    assert positions == sorted(positions)


def test_an_example_with_several_entities_shows_each_of_them(software_guide: Guide) -> None:
    data = software_guide.model_dump()
    data["entity_types"][0]["examples"][0] = {
        "text": "checkout-service and payments-api both failed.",
        "entities": ["checkout-service", "payments-api"],
    }
    guide = Guide.model_validate(data)

    section = _section(build_messages("x", guide, [])[0]["content"], "SERVICE")

    assert '- "checkout-service", "payments-api" in: checkout-service and payments-api both failed.\n' in section
    assert prompt_version(guide) != prompt_version(software_guide)


@pytest.mark.parametrize("name", ["software.yaml", "conll2003.yaml"])
def test_schema_prompt_and_label_studio_agree_with_the_guide(name: str) -> None:
    guide = load_guide(GUIDES / name)
    schema_labels = response_schema(guide.labels)["properties"]["entities"]["items"]["properties"]["label"]["enum"]
    root = ET.fromstring(label_studio_config(guide))
    ls_labels = [label.get("value") for label in root.iter("Label")]
    assert schema_labels == ls_labels == guide.labels


def test_response_schema_shape() -> None:
    assert response_schema(["A", "B"]) == {
        "type": "object",
        "properties": {
            "entities": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": ["A", "B"]}},
                    "required": ["text", "label"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["entities"],
        "additionalProperties": False,
    }


def test_prompt_version_follows_the_guide(software_guide: Guide) -> None:
    version = prompt_version(software_guide)
    assert version == f"{PROMPT_VERSION}-{software_guide.sha256[:12]}"
    assert prompt_version(software_guide) == version
    changed = software_guide.model_copy(update={"description": software_guide.description + " Also tickets."})
    assert prompt_version(changed) != version
    assert build_messages("x", changed, [])[0]["content"] != build_messages("x", software_guide, [])[0]["content"]


def test_demonstrations_from_docs_keep_text_order() -> None:
    vocab = Vocab()
    doc = Doc(vocab, words=["Kafka", "lag", "hit", "payments-api", "and", "Kafka", "again"])
    doc.ents = [Span(doc, 0, 1, "INFRA"), Span(doc, 3, 4, "SERVICE"), Span(doc, 5, 6, "INFRA")]
    empty = Doc(vocab, words=["nothing", "to", "see"], spaces=[True, True, False])
    demos = demonstrations_from_docs([doc, empty])
    assert demos == [
        Demonstration(doc.text, (("Kafka", "INFRA"), ("payments-api", "SERVICE"), ("Kafka", "INFRA"))),
        Demonstration("nothing to see", ()),
    ]


def test_demonstration_rejects_an_entity_not_in_its_text() -> None:
    with pytest.raises(ValueError, match="does not occur"):
        Demonstration(text="Kafka is down", entities=(("Redis", "INFRA"),))
