"""Few-shot NER prompts rendered from the annotation guide, the only place where a label is defined."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from annotation_guide import Guide, label_definitions
from annotation_guide.schema import EntityType

if TYPE_CHECKING:
    from spacy.tokens import Doc

# The version of the template text in this module. Bump it (".v2") on any change of the wording, so that cached
# answers to the old prompt are not reused; prompt_version() adds the guide's content hash.
PROMPT_VERSION = "ner-prompt.v1"

# How many of a type's guide examples go into the prompt. Examples cost tokens on every call, and the few-shot
# demonstrations already show whole answers.
_EXAMPLES_PER_TYPE = 3


@dataclass(frozen=True)
class Demonstration:
    """One labelled example shown to the LLM: a text and its entities.

    Attributes:
        text: The text, exactly as the LLM will see it.
        entities: ``(surface, label)`` pairs in text order; every surface occurs verbatim in ``text``.
    """

    text: str
    entities: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        for surface, label in self.entities:
            if not surface or surface not in self.text:
                raise ValueError(
                    f"demonstration entity {surface!r} ({label}) does not occur in its text {self.text[:80]!r}; "
                    "build demonstrations from gold docs with demonstrations_from_docs()"
                )


def demonstrations_from_docs(docs: Iterable[Doc]) -> list[Demonstration]:
    """Turn annotated docs (gold entities set) into demonstrations.

    Args:
        docs: spaCy docs whose ``ents`` are the gold entities.

    Returns:
        One demonstration per doc, in the same order, entities in text order.
    """
    return [Demonstration(text=doc.text, entities=tuple((ent.text, ent.label_) for ent in doc.ents)) for doc in docs]


def response_schema(labels: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of an answer, for endpoints that constrain output (``response_format``).

    Args:
        labels: The allowed labels, in the guide's order.

    Returns:
        A JSON schema: ``{"entities": [{"text": str, "label": one of labels}]}``, no other properties.
    """
    entity = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "label": {"type": "string", "enum": list(labels)}},
        "required": ["text", "label"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"entities": {"type": "array", "items": entity}},
        "required": ["entities"],
        "additionalProperties": False,
    }


def prompt_version(guide: Guide) -> str:
    """The version of the prompt built for a guide: template version plus the guide's content hash.

    Args:
        guide: The project's guide.

    Returns:
        ``"ner-prompt.v1-<first 12 hex digits of guide.sha256>"``; part of the LLM answer cache key.
    """
    return f"{PROMPT_VERSION}-{guide.sha256[:12]}"


def build_messages(text: str, guide: Guide, demonstrations: Sequence[Demonstration]) -> list[dict[str, str]]:
    """Build the OpenAI chat messages that ask for the entities of one text.

    The system message states the task, every entity type of the guide (definition, examples, edge cases,
    non-entities) and the output rules; each demonstration follows as a user/assistant pair; the last message
    is the text itself. The result depends only on the arguments.

    The system message depends on the guide alone: it is byte-identical on every call of a project and comes first,
    so a server's prefix cache evaluates it once (llama.cpp, vLLM, OpenAI); keep anything that varies per call
    (a date, an id, the demonstrations, the text) after it. ``tests/unit/test_llm_prompt_prefix.py`` checks this on
    the chat template's tokens, ``bench/llm_prompt_cache.py`` measures it.

    Args:
        text: The text to annotate.
        guide: The project's guide.
        demonstrations: Few-shot examples, in the order they are shown (the most similar last).

    Returns:
        ``[{"role": ..., "content": ...}, ...]``.
    """
    messages = [{"role": "system", "content": _system_message(guide)}]
    for demo in demonstrations:
        messages.append({"role": "user", "content": demo.text})
        messages.append({"role": "assistant", "content": _answer(demo.entities)})
    messages.append({"role": "user", "content": text})
    return messages


def _answer(entities: Iterable[tuple[str, str]]) -> str:
    payload = {"entities": [{"text": surface, "label": label} for surface, label in entities]}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _flat(value: str) -> str:
    """One line: YAML block scalars and multi-line strings collapse to single spaces."""
    return " ".join(value.split())


def _system_message(guide: Guide) -> str:
    definitions = label_definitions(guide)
    sections = [_task_statement(guide), "# Entity types"]
    sections += [_type_section(entity_type, definitions[entity_type.name]) for entity_type in guide.entity_types]
    sections.append(_output_rules(guide.labels))
    return "\n\n".join(sections)


def _task_statement(guide: Guide) -> str:
    lines = [f'You are an expert annotator of named entities for the project "{guide.project}".']
    if guide.description.strip():
        lines.append(_flat(guide.description))
    lines.append(
        "Find every mention of the entity types defined below in the text the user sends. Follow each type's "
        "definition, examples, edge cases and non-entities exactly."
    )
    return "\n".join(lines)


def _quoted(mentions: Sequence[str]) -> str:
    """``"A"`` for an example with one entity, ``"A", "B"`` for one with several."""
    return ", ".join(f'"{mention}"' for mention in mentions)


def _type_section(entity_type: EntityType, definition: str) -> str:
    name = entity_type.name
    lines = [f"## {name}", f"Definition: {definition}", "Examples:"]
    lines += [f"- {_quoted(ex.mentions)} in: {_flat(ex.text)}" for ex in entity_type.examples[:_EXAMPLES_PER_TYPE]]
    lines.append("Edge cases:")
    lines += [f"- {_flat(edge.case)} -> {_flat(edge.decision)}" for edge in entity_type.edge_cases]
    lines.append(f"Not {name}:")
    lines += [f'- "{non.text}": {_flat(non.reason)}' for non in entity_type.non_entities]
    return "\n".join(lines)


def _output_rules(labels: Sequence[str]) -> str:
    shape = _answer([("<entity exactly as written>", "<label>")])
    return "\n".join(
        [
            "# Output",
            f"Answer with one JSON object and nothing else: {shape}",
            '- "text": copy the entity exactly as it is written in the text: same spelling, letter case, spacing '
            "and punctuation. Do not correct, expand or translate it.",
            "- List every mention once, in the order it occurs in the text; a name mentioned twice is listed twice.",
            f'- "label": one of {", ".join(labels)}. Use no other label.',
            f"- If the text contains no entity, answer {_answer([])}",
        ]
    )
