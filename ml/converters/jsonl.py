"""JSON lines of texts with character spans: nerloop's own, doccano's and spaCy-style records <-> spaCy ``Doc``.

One record per line, ``text`` plus the spans under one of these keys (offsets count code points, ``end``
exclusive; see ``ml.converters.offsets`` for UTF-16 offsets):

- ``spans``: ``[{"start", "end", "label", "text"?}]`` (nerloop, Prodigy);
- ``entities``: ``[{"start_offset", "end_offset", "label"}]`` (doccano 1.x; ``start`` / ``end`` are read too);
- ``label`` or ``labels``: ``[[start, end, label], ...]`` (doccano's sequence-labelling export).

A record is ``malformed`` (``rejected`` under ``strict``; else ``dropped`` and counted) when it is not an object,
has no string ``text``, holds its spans in a shape other than those above (offsets that are not whole numbers:
``9.7`` or ``true`` is never truncated nor read as 1), holds spans under two of the keys, or has none of the keys
but another key that looks like annotations (``ner_tags``, ``annotations``, ``mentions``, ...): reading it as a
text without entities would teach ``O`` where the data marks entities. A span that gives its ``text`` must cover
it (edge whitespace aside), as Label Studio's ``value.text``; otherwise its record is reported as ``offsets``.
doccano's ``relations`` are ``ignored`` and counted. A record without any of these keys is a text without
entities.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from ml.converters.issues import Action, ConversionIssue, Policy, UnknownLabels
from ml.converters.offsets import Region, place_regions, short
from ml.converters.spans import ConversionResult, apply_spans, raise_if_strict, set_task_id
from ml.converters.text_files import json_lines, parse_json, read_text

SPAN_KEYS = ("spans", "entities", "label", "labels")
# Keys under which other tools keep annotations nerloop cannot read (HF datasets' "ner_tags", "annotations", ...).
_ANNOTATION_LIKE = re.compile(r"label|span|entit|annotation|mention|^ents?$|(^|_)ner(_|$)|(^|_)tags?$", re.IGNORECASE)
_OFFSET_KEYS = (("start", "end"), ("start_offset", "end_offset"))
_SHAPES = "{'text', 'spans': [{'start', 'end', 'label'}]}, doccano's 'label': [[start, end, label]] or 'entities'"


def to_jsonl(docs: Sequence[Doc]) -> str:
    """Docs as JSON lines: ``{"id", "text", "spans": [{"start", "end", "label", "text"}]}``."""
    lines = []
    for doc in docs:
        spans = [{"start": e.start_char, "end": e.end_char, "label": e.label_, "text": e.text} for e in doc.ents]
        # ASCII escapes keep U+2028 and friends from splitting a record across lines.
        lines.append(json.dumps({"id": doc.user_data.get("task_id"), "text": doc.text, "spans": spans}))
    return "".join(line + "\n" for line in lines)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _offsets(item: Mapping[str, Any], where: str) -> tuple[int, int] | str:
    """The whole-number offsets of a span object, or what is wrong with them."""
    keys = next((pair for pair in _OFFSET_KEYS if pair[0] in item or pair[1] in item), _OFFSET_KEYS[0])
    problems = []
    for key in keys:
        if key not in item:
            problems.append(f"{where}.{key} is missing")
        elif not _is_int(item[key]):
            problems.append(f"{where}.{key} must be a whole number, not {short(item[key])}")
    return "; ".join(problems) if problems else (item[keys[0]], item[keys[1]])


def _region(item: object, where: str) -> Region | str:
    """One span of a record (an object, or a ``[start, end, label]`` list), or what is wrong with it."""
    if isinstance(item, list) and len(item) == 3:
        item = {"start": item[0], "end": item[1], "label": item[2]}
    if not isinstance(item, dict):
        return f"{where} must be {{'start', 'end', 'label'}} or [start, end, label], not {short(item)}"
    offsets = _offsets(item, where)
    label = item.get("label")
    problems = [offsets] if isinstance(offsets, str) else []
    if not isinstance(label, str) or not label:
        problems.append(f"{where}.label must be a label name, not {short(label)}")
    selected = item.get("text")
    if selected is not None and not isinstance(selected, str):
        problems.append(f"{where}.text must be the text the span covers, not {short(selected)}")
    if problems or isinstance(offsets, str) or not isinstance(label, str):
        return "; ".join(problems)
    return Region(offsets[0], offsets[1], (label,), selected)


def _span_items(record: Mapping[str, Any]) -> tuple[str, list[Any]] | str | None:
    """``(key, items)`` of the record's spans, ``None`` when it has none, or what is wrong with it."""
    present = [key for key in SPAN_KEYS if key in record]
    filled = [key for key in present if record[key] not in (None, [])]
    if len(filled) > 1:
        return f"holds spans under both {filled[0]!r} and {filled[1]!r}; keep one"
    if filled:
        key = filled[0]
        items = record[key]
        return (key, items) if isinstance(items, list) else f"{key!r} must be a list of spans, not {short(items)}"
    if present:  # an empty span list says the text has no entities
        return None
    others = [k for k in record if k not in SPAN_KEYS and _ANNOTATION_LIKE.search(str(k)) and record[k]]
    if others:
        return f"has no spans under {', '.join(SPAN_KEYS)} but has {short(others[0])}, which looks like annotations"
    return None


@dataclass
class _Reader:
    """Reads records one by one, collecting the issues of those it leaves out."""

    policy: Policy
    issues: list[ConversionIssue] = field(default_factory=list)

    def malformed(self, task_id: str, detail: str) -> None:
        action: Action = "rejected" if self.policy == "strict" else "dropped"
        self.issues.append(ConversionIssue(task_id=task_id, kind="malformed", action=action, detail=detail))

    def regions(self, record: Mapping[str, Any], *, task_id: str, where: str) -> list[Region] | None:
        """Every region of a record; ``None`` (reported) when any part of it cannot be read."""
        found = _span_items(record)
        if isinstance(found, str):
            self.malformed(task_id, f"{where}: {found} (expected {_SHAPES})")
            return None
        regions = []
        for number, item in enumerate(found[1] if found is not None else []):
            region = _region(item, f"{where}: {found[0] if found else ''}[{number}]")
            if isinstance(region, str):
                self.malformed(task_id, region)
                return None
            regions.append(region)
        if record.get("relations"):
            detail = f"{where}: 'relations' are not entity spans"
            self.issues.append(
                ConversionIssue(task_id=task_id, kind="unsupported_result", action="ignored", detail=detail)
            )
        return regions

    def record(self, record: object, *, task_id: str, where: str) -> tuple[str, list[Region]] | None:
        """``(text, regions)`` of a readable record, else ``None`` (reported)."""
        if not isinstance(record, dict):
            self.malformed(task_id, f"{where}: a record must be an object ({_SHAPES}), not {short(record)}")
            return None
        text = record.get("text")
        if not isinstance(text, str):
            self.malformed(task_id, f"{where}: 'text' is missing or not a string, not {short(text)}")
            return None
        regions = self.regions(record, task_id=task_id, where=where)
        return None if regions is None else (text, regions)


def from_jsonl(
    path: str | Path,
    nlp: Language,
    *,
    labels: Collection[str],
    policy: Policy = "strict",
    label_map: Mapping[str, str] | None = None,
    unknown_labels: UnknownLabels | None = None,
) -> ConversionResult:
    r"""Read JSON lines of texts and spans (nerloop, doccano, spaCy-style; see the module).

    ``id`` defaults to ``<file>:<line>``.

    Args:
        path: The file; blank lines, ``\r\n`` endings and a leading byte order mark are accepted.
        nlp: The pipeline whose tokenizer splits the texts.
        labels: The guide's label set.
        policy: What to do with spans that do not fit and with malformed records (see ``apply_spans``).
        label_map: Labels renamed to guide labels.
        unknown_labels: ``refuse`` or ``drop`` labels outside the guide; ``None`` follows the policy.

    Returns:
        The docs and every issue met.

    Raises:
        DataError: the file cannot be read, or a line is not JSON (naming ``file:line``).
        ConversionError: something was rejected, a malformed record included (each names ``file:line``).
    """
    path = Path(path)
    reader = _Reader(policy)
    result = ConversionResult()
    for number, line in json_lines(read_text(path)):
        where = f"{path}:{number}"
        raw = parse_json(line, where)
        given_id = raw.get("id") if isinstance(raw, dict) else None
        task_id = str(given_id) if isinstance(given_id, str | int) else f"{path.name}:{number}"
        read = reader.record(raw, task_id=task_id, where=where)
        spans, issues = place_regions(read[0], read[1], task_id=task_id, policy=policy) if read else (None, [])
        result.issues.extend([*reader.issues, *issues])
        reader.issues.clear()
        if read is None or spans is None:
            continue
        doc = nlp.make_doc(read[0])
        set_task_id(doc, task_id)
        result.issues.extend(
            apply_spans(doc, spans, labels=labels, policy=policy, label_map=label_map, unknown_labels=unknown_labels)
        )
        result.docs.append(doc)
    return raise_if_strict(result, policy)
