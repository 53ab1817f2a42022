"""The JSON in an LLM's answer: which items it returns, whatever shape a small model gave them.

Shapes read: a list of items (``{"text": ..., "label": ...}`` with the mention and label under any of a few
usual keys, or ``[text, label]``), bare or under ``"entities"`` or another single key; a map from label to
mentions (``{"ORG": ["Apple", "IBM"]}``), bare or under ``"entities"``; one entity object. The first JSON value
that holds entities is used, inside a code fence or among chatter; an answer cut off at the token limit gives its
complete loose objects. ``ml.llm.parse`` places the items on the text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

# Keys an item may use for the mention and for its label (small models do not always follow the schema).
_SURFACE_KEYS = ("text", "entity", "span", "mention")
_LABEL_KEYS = ("label", "type", "entity_type", "category")
_JSON_START = re.compile(r"[\[{]")
# Bounds the work spent on long garbage full of brackets: each failed start costs one decode attempt.
_MAX_DECODE_ATTEMPTS = 200


def item_fields(item: object) -> tuple[str, str] | None:
    """``(surface, label)`` of an item: an object with known keys, or a ``[surface, label]`` pair."""
    if isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item):
        return item[0], item[1]
    if not isinstance(item, dict):
        return None
    keyed = {str(key).lower(): value for key, value in item.items()}
    surface = next((keyed[key] for key in _SURFACE_KEYS if key in keyed), None)
    label = next((keyed[key] for key in _LABEL_KEYS if key in keyed), None)
    if isinstance(surface, str) and isinstance(label, str):
        return surface, label
    return None


def read_items(raw: str) -> tuple[list[object], bool] | str:
    """The returned items and whether they came from one JSON answer; or why nothing could be read."""
    try:
        whole = json.loads(raw)
    except (ValueError, RecursionError):
        return _scan_items(raw)
    items = _entity_list(whole)
    if items is None and _is_entity(whole):
        items = [whole]  # one entity object as the whole answer
    return (items, True) if items is not None else "no entity list"


def _scan_items(raw: str) -> tuple[list[object], bool] | str:
    """Items from JSON among chatter: the first entity list, else loose entity objects (a cut-off answer)."""
    loose: list[object] = []
    found_json = False
    for value in _json_values(raw):
        found_json = True
        items = _entity_list(value)
        if items is not None:
            return items, True
        if _is_entity(value):
            loose.append(value)
    if loose:
        return loose, False
    return "no entity list" if found_json else "not JSON"


def _json_values(raw: str) -> Iterator[object]:
    """Every JSON object or array in the text, left to right, outermost first."""
    decoder = json.JSONDecoder()
    position = 0
    for _ in range(_MAX_DECODE_ATTEMPTS):
        start = _JSON_START.search(raw, position)
        if start is None:
            return
        try:
            value, position = decoder.raw_decode(raw, start.start())
        except (ValueError, RecursionError):
            # Not JSON from here (chatter such as "[as requested]", or an answer cut off): look inside it.
            position = start.start() + 1
            continue
        yield value


def _entity_list(value: object) -> list[object] | None:
    """The items of an entity list: ``{"entities": [...]}``, a label map, a one-list object, or a bare list."""
    if isinstance(value, dict):
        keyed = {str(key).lower(): item for key, item in value.items()}
        if "entities" in keyed:
            inner = keyed["entities"]
            if isinstance(inner, dict):
                mapped = _label_map(inner)
                return [inner] if mapped is None else mapped
            # Under "entities" every element is an item, so strings or numbers count as dropped items.
            return list(inner) if isinstance(inner, list) else None
        mapped = _label_map(value)
        if mapped is not None:
            return mapped
        lists = [item for item in keyed.values() if isinstance(item, list)]
        return _entity_list(lists[0]) if len(lists) == 1 and not _is_entity(value) else None
    # A bare list must hold at least one object or pair: "[1]" in chatter is not an answer.
    if isinstance(value, list) and (not value or any(isinstance(item, dict | list) for item in value)):
        return value
    return None


def _label_map(value: dict[object, object]) -> list[object] | None:
    """The items of a ``{label: [mention, ...]}`` answer (a small model's favourite), or None when not one.

    ``value`` is one when every value is a list of plain values, at least one of them a string unless all lists are
    empty.
    """
    groups = {str(label): group for label, group in value.items() if isinstance(group, list)}
    mentions = [mention for group in groups.values() for mention in group]
    if not groups or len(groups) < len(value) or _is_entity(value) or any(isinstance(m, dict | list) for m in mentions):
        return None
    if mentions and not any(isinstance(mention, str) for mention in mentions):
        return None  # '{"ids": [1, 2]}' in chatter is not an answer
    # A mention that is not a string stays an item, and is counted as malformed.
    return [{"text": mention, "label": label} for label, group in groups.items() for mention in group]


def _is_entity(value: object) -> bool:
    return isinstance(value, dict) and any(str(key).lower() in _SURFACE_KEYS for key in value)
