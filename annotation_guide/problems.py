"""Every problem of a guide file in plain words, located by YAML line and entity type name.

pydantic locates an error by a path of keys and list indexes (``entity_types.11.examples``) and words it for
programmers (``Value error, ...``, ``instance of Example``). A newcomer editing YAML needs the line, the entity
type's name and what to write instead; this module turns one into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from annotation_guide.errors import GuideError


class FieldProblem(ValueError):
    """A validator's error about one part of the value it checks (``loc`` is appended to the field's path)."""

    def __init__(self, message: str, *, loc: tuple[int | str, ...]) -> None:
        """Keep the message and where, inside the validated field, the problem is.

        Args:
            message: The problem in plain words.
            loc: Keys and indexes below the validated field (``(3,)``: its fourth item).
        """
        super().__init__(message)
        self.loc = loc


Problem = tuple[int, str]  # (line, the problem in words starting with its place); line 0 when unknown

# List fields whose items are named in words ("entity type 'SERVICE'", "example 3").
_ITEM_WORDS = {
    "entity_types": "entity type",
    "examples": "example",
    "edge_cases": "edge case",
    "non_entities": "non-entity",
    "entities": "entity",
}

# The fields allowed in each section, for "not a field here" messages.
_SECTION_FIELDS = {
    "": "project, description, language, targets, label_studio, entity_types",
    "targets": "f1, usable_labels, good_labels",
    "label_studio": "from_name, to_name, text_field",
    "entity_types": "name, definition, examples, edge_cases, non_entities, color",
    "examples": "text, entity (or entities)",
    "edge_cases": "case, decision",
    "non_entities": "text, reason",
}

_PATTERNS = {
    "name": "must start with a letter and hold only letters, digits, '_' and '-'",
    "color": "must be a colour written as '#' and six hex digits, like '#1f77b4'",
    "from_name": "must be a Label Studio tag name: letters, digits, '_', '.' or '-'",
    "to_name": "must be a Label Studio tag name: letters, digits, '_', '.' or '-'",
    "text_field": "must be the task data field without '$' (value=\"$text\" -> text): letters, digits, '_', '.' or '-'",
}


def read_yaml(text: str, path: Path) -> tuple[Any, yaml.Node | None, list[Problem]]:
    """Parse YAML keeping its node tree (for line numbers); report keys that appear twice in one mapping.

    Args:
        text: The file's content.
        path: The file, for the error message.

    Returns:
        The data, the root node (``None`` for an empty file) and the duplicate-key problems.

    Raises:
        GuideError: the text is not YAML; the message keeps the parser's reason, line and column.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise GuideError(f"{path}: {_yaml_reason(exc)}") from None
    finally:
        loader.dispose()
    return data, node, _duplicate_keys(node) if node is not None else []


def _yaml_reason(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    reason = f"{problem} ({context})" if context else problem
    hint = ""
    if "\\t" in reason or "\t" in reason:
        hint = "; indent with spaces, YAML does not allow tabs"
    elif "mapping values are not allowed" in reason:
        hint = "; put text that holds ': ' in quotes"
    return f"{where}not valid YAML: {reason}{hint}"


def _duplicate_keys(node: yaml.Node) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            name, line = str(key.value), key.start_mark.line + 1
            if name in seen:
                problems.append(
                    (
                        line,
                        _located(
                            line, "", message=f"'{name}' appears twice here (first on line {seen[name]}); merge them"
                        ),
                    )
                )
            seen.setdefault(name, line)
            problems.extend(_duplicate_keys(value))
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            problems.extend(_duplicate_keys(item))
    return problems


def _line(node: yaml.Node | None, loc: Sequence[int | str]) -> int:
    """The line of the deepest node on ``loc`` (a key's own line for a mapping entry); 0 without a tree."""
    if node is None:
        return 0
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            entry = next(((k, v) for k, v in node.value if k.value == part), None)
            if entry is None:
                break
            line, node = entry[0].start_mark.line + 1, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _child(data: Any, part: int | str) -> Any:
    if isinstance(data, dict) and isinstance(part, str):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and part < len(data):
        return data[part]
    return None


def _place(loc: Sequence[int | str], raw: Any) -> str:
    """``loc`` in words: ``entity type 'SERVICE', example 3, entity``."""
    words: list[str] = []
    data, index = raw, 0
    while index < len(loc):
        part = loc[index]
        nxt = loc[index + 1] if index + 1 < len(loc) else None
        if isinstance(part, str) and part in _ITEM_WORDS and isinstance(nxt, int):
            item = _child(_child(data, part), nxt)
            name = item.get("name") if isinstance(item, dict) and part == "entity_types" else None
            words.append(f"{_ITEM_WORDS[part]} {name!r}" if isinstance(name, str) else f"{_ITEM_WORDS[part]} {nxt + 1}")
            data, index = item, index + 2
            continue
        words.append(str(part))
        data, index = _child(data, part), index + 1
    return ", ".join(words)


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a yes/no value)"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    return "a list" if isinstance(value, list) else "a mapping"


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _section(loc: Sequence[int | str]) -> str:
    names = [part for part in loc if isinstance(part, str) and part in _SECTION_FIELDS]
    return names[-1] if names else ""


def _message(error: ErrorDetails) -> str:
    """The error in plain words, without pydantic's prefixes or class names."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    field = next((part for part in reversed(error["loc"]) if isinstance(part, str)), "")
    size = len(value) if isinstance(value, str | list | dict) else 0
    if kind == "missing":
        return f"'{field}' is missing"
    if kind == "extra_forbidden":
        allowed = _SECTION_FIELDS[_section(error["loc"][:-1])]
        return f"'{field}' is not a field here (check its spelling and indentation; allowed: {allowed})"
    if kind == "too_short":
        return f"needs at least {_items(ctx['min_length'])}, has {size}"
    if kind == "too_long":
        return f"takes at most {_items(ctx['max_length'])}, has {size}"
    if kind == "string_too_short":
        return (
            "must not be empty"
            if ctx["min_length"] == 1
            else f"needs at least {ctx['min_length']} characters, has {size}"
        )
    if kind == "string_too_long":
        return f"takes at most {ctx['max_length']} characters, has {size}"
    if kind == "string_pattern_mismatch":
        return f"{_PATTERNS.get(field, 'does not have the expected form')}, not {value!r}"
    if kind == "string_type":
        return f"must be text, not {_kind(value)}; put it in quotes"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of fields ('key: value' lines), not {_kind(value)}"
    if kind == "list_type":
        return f"must be a list (lines starting with '- '), not {_kind(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, not {_kind(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, not {_kind(value)}"
    bounds = {"greater_than": "greater than", "greater_than_equal": "at least", "less_than_equal": "at most"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit}, not {value}"
    return str(error["msg"]).removeprefix("Value error, ")


def _problems(error: ValidationError, *, raw: Any, node: yaml.Node | None) -> list[Problem]:
    problems: list[Problem] = []
    for details in error.errors():
        loc = [part for part in details["loc"] if not (isinstance(part, str) and "[" in part)]
        cause = details.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblem):
            loc += cause.loc
        at = loc[:-1] if details["type"] in ("missing", "extra_forbidden") else loc
        line = _line(node, loc if details["type"] == "extra_forbidden" else at)
        problems.append((line, _located(line, _place(at, raw), message=_message(details))))
    return problems


def _located(line: int, place: str, *, message: str) -> str:
    where = ", ".join(part for part in (f"line {line}" if line else "", place) if part)
    return f"{where}: {message}" if where else message


def guide_error(
    path: Path,
    error: ValidationError | None,
    *,
    raw: Any,
    node: yaml.Node | None,
    earlier: Sequence[Problem] = (),
) -> GuideError:
    """One ``GuideError`` listing every problem of a guide file, in line order.

    Args:
        path: The guide file (the message starts with it).
        error: pydantic's validation error, if validation failed.
        raw: The parsed YAML (to name entity types).
        node: The YAML node tree (for line numbers).
        earlier: Problems found before validation (keys that appear twice).

    Returns:
        The error to raise: one line for one problem, else a count and one indented line per problem.
    """
    found = sorted([*earlier, *(_problems(error, raw=raw, node=node) if error is not None else [])], key=lambda p: p[0])
    texts = [text for _, text in found]
    if len(texts) == 1:
        return GuideError(f"{path}: {texts[0]}", problems=texts)
    return GuideError(f"{path}: {len(texts)} problems:\n" + "\n".join(f"  - {t}" for t in texts), problems=texts)
