"""Reading Label Studio tasks tolerantly: the task models, the latest annotation, and one task at a time.

- Results that are not text spans of the guide's ``<Labels>`` control (relations, ``textarea``, ``choices``, and
  ``labels`` results of another control when ``from_name`` is given) are left out and reported as
  ``unsupported_result`` / ``ignored``; they are never an error.
- A region whose offsets do not cover its ``value.text`` is reported as ``offsets``. When the offsets count UTF-16
  code units (JavaScript's string length: older Label Studio front ends, and other browser tools, count an emoji or
  any character outside the Basic Multilingual Plane as two) and the code-point offsets do cover ``value.text``,
  the region is ``realigned`` to them (``rejected`` under ``strict``); otherwise the task is treated as malformed
  (``rejected`` / ``dropped`` with its task): guessing where the annotator meant would invent labels. Label Studio
  may store ``value.text`` without the whitespace the offsets include, so whitespace at the edges is not compared.
- A malformed task or annotation (not an object, ``data.<text_field>`` missing, ``result`` not a list, a result
  that is not an object, a ``labels`` value without whole-number ``start`` / ``end`` or without labels) is reported
  as ``malformed``: ``rejected`` under ``strict`` and ``dropped`` under ``expand`` / ``contract``, where the whole
  task is left out: keeping its other spans would teach ``O`` where the annotator marked an entity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml.converters.issues import Action, ConversionIssue, Policy
from ml.converters.spans import CharSpan


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class LSValue(_Loose):
    """The ``value`` of a ``labels`` result."""

    start: int
    end: int
    text: str | None = None
    labels: list[str] = Field(min_length=1)


class LSResult(_Loose):
    """One item of an annotation's ``result``: a region of any control, or a relation."""

    type: str | None = None
    from_name: str | None = None
    to_name: str | None = None
    value: Any = None


class LSAnnotation(_Loose):
    """One annotation (or prediction) of a task; ``result`` is checked item by item when it is read."""

    id: int | str | None = None
    result: Any = Field(default_factory=list)
    was_cancelled: bool = False
    updated_at: str | None = None


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _latest(annotations: Sequence[LSAnnotation]) -> LSAnnotation | None:
    """The latest non-cancelled annotation, or ``None``.

    Latest means the greatest ``updated_at`` (ISO 8601, read as UTC when it has no zone; a missing or unreadable
    one counts as older than any readable one). Ties go to the greater integer ``id`` (Label Studio numbers
    annotations as it creates them; other ids count as lowest), then to the later position in the list.
    """
    live = [(position, a) for position, a in enumerate(annotations) if not a.was_cancelled]
    if not live:
        return None

    def key(pair: tuple[int, LSAnnotation]) -> tuple[bool, datetime, bool, int, int]:
        position, annotation = pair
        stamp = _timestamp(annotation.updated_at)
        numeric = isinstance(annotation.id, int)
        return (
            stamp is not None,
            stamp or datetime.min.replace(tzinfo=UTC),
            numeric,
            annotation.id if isinstance(annotation.id, int) else 0,
            position,
        )

    return max(live, key=key)[1]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value_spans(value: object, where: str) -> list[CharSpan] | str:
    """The spans of a ``labels`` result's value, or what is wrong with it."""
    if not isinstance(value, dict):
        return f"{where}.value is missing or not an object"
    problems = []
    for key in ("start", "end"):
        if key not in value:
            problems.append(f"{where}.value.{key} is missing")
        elif not _is_int(value[key]):
            problems.append(f"{where}.value.{key} must be a whole number, not {_short(value[key])}")
    labels = value.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        problems.append(f"{where}.value.labels must be a non-empty list of label names, not {_short(labels)}")
        labels = []
    if problems:
        return "; ".join(problems)
    return [CharSpan(value["start"], value["end"], label) for label in labels]


@dataclass
class TaskReader:
    """Reads tasks one by one, collecting the issues of the parts it leaves out."""

    source: str
    policy: Policy
    text_field: str
    from_name: str | None
    issues: list[ConversionIssue] = field(default_factory=list)

    def malformed(self, task_id: str, detail: str) -> None:
        """Report a part that cannot be read: ``rejected`` under ``strict``, else ``dropped`` with its task."""
        action: Action = "rejected" if self.policy == "strict" else "dropped"
        self.issues.append(ConversionIssue(task_id=task_id, kind="malformed", action=action, detail=detail))

    def ignored(self, task_id: str, detail: str) -> None:
        """Report a result that is not a labelled span of the guide's control (never an error)."""
        self.issues.append(ConversionIssue(task_id=task_id, kind="unsupported_result", action="ignored", detail=detail))

    def offsets(
        self, spans: list[CharSpan], value: dict[str, Any], *, text: str, task_id: str
    ) -> list[CharSpan] | None:
        """The spans where they cover ``value.text`` (realigned from UTF-16 offsets if need be); ``None`` (reported)
        when they cannot be placed, or under ``strict`` when they had to be moved."""
        selected = value.get("text")
        if not spans or not isinstance(selected, str):
            return spans
        span = spans[0]
        start, end = _from_utf16(text, span.start), _from_utf16(text, span.end)
        converted = CharSpan(start, end, span.label) if start is not None and end is not None else None
        # exact matches first: whitespace-insensitive ones come after, so "😀 " never wins over "😀"
        for exact in (True, False):
            if _covers(text, span, selected, exact=exact):
                return spans
            moved = converted is not None and _covers(text, converted, selected, exact=exact)
            if moved:
                break
        if not moved and not 0 <= span.start < span.end <= len(text):
            return spans  # apply_spans reports it as out of range
        action: Action = "rejected" if self.policy == "strict" else ("realigned" if moved else "dropped")
        issue = ConversionIssue(
            task_id=task_id,
            kind="offsets",
            action=action,
            start=span.start,
            end=span.end,
            label=span.label,
            text=text[span.start : span.end],
            new_start=start if moved else None,
            new_end=end if moved else None,
            detail=f"selected {_short(selected)}" + ("; UTF-16 offsets" if moved else ""),
        )
        self.issues.append(issue)
        if action != "realigned" or start is None or end is None:
            return None
        return [CharSpan(start, end, s.label) for s in spans]

    def region(self, raw: object, *, task_id: str, where: str, text: str = "") -> list[CharSpan] | None:
        """The spans of one result item: ``[]`` when it is ignored, ``None`` when it is malformed."""
        if not isinstance(raw, dict):
            self.malformed(task_id, f"{where} must be an object, not {_short(raw)}")
            return None
        try:
            item = LSResult.model_validate(raw)
        except ValidationError as exc:
            problem = exc.errors()[0]
            self.malformed(task_id, f"{where}.{problem['loc'][0]} must be a string, not {_short(problem['input'])}")
            return None
        kind = item.type or ("labels" if isinstance(item.value, dict) and "labels" in item.value else None)
        if kind != "labels":
            self.ignored(task_id, f"{where} is a {kind or 'untyped'!r} result, not a labelled span")
            return []
        if self.from_name is not None and item.from_name != self.from_name:
            self.ignored(task_id, f"{where} belongs to control {item.from_name!r}, not {self.from_name!r}")
            return []
        spans = _value_spans(item.value, where)
        if isinstance(spans, str):
            self.malformed(task_id, spans)
            return None
        return self.offsets(spans, item.value, text=text, task_id=task_id)

    def annotation_spans(
        self, annotation: LSAnnotation, *, task_id: str, where: str, text: str = ""
    ) -> list[CharSpan] | None:
        """Every span of an annotation, or ``None`` when any part of it is malformed (then the task is left out)."""
        if not isinstance(annotation.result, list):
            self.malformed(task_id, f"{where}.result must be a list of regions, not {_short(annotation.result)}")
            return None
        spans: list[CharSpan] = []
        complete = True
        for number, raw in enumerate(annotation.result):
            found = self.region(raw, task_id=task_id, where=f"{where}.result[{number}]", text=text)
            if found is None:
                complete = False
            else:
                spans.extend(found)
        return spans if complete else None

    def annotations(self, raw: object, *, task_id: str, where: str) -> list[tuple[int, LSAnnotation]]:
        """The readable annotations of a task with their positions; each unreadable one is reported."""
        if not isinstance(raw, list):
            self.malformed(task_id, f"{where}.annotations must be a list, not {_short(raw)}")
            return []
        read = []
        for position, item in enumerate(raw):
            if not isinstance(item, dict):
                self.malformed(task_id, f"{where}.annotations[{position}] must be an object, not {_short(item)}")
                continue
            try:
                read.append((position, LSAnnotation.model_validate(item)))
            except ValidationError as exc:
                problem = exc.errors()[0]
                place = ".".join(str(part) for part in problem["loc"])
                detail = f"{where}.annotations[{position}]{'.' + place if place else ''}: {problem['msg'].lower()}"
                self.malformed(task_id, detail)
        return read

    def text_of(self, data: object, *, task_id: str, where: str) -> str | None:
        """The task's text (``data.<text_field>``), or ``None`` after reporting what the data holds instead."""
        if not isinstance(data, dict):
            self.malformed(task_id, f"{where}.data is missing or not an object")
            return None
        text = data.get(self.text_field)
        if isinstance(text, str):
            return text
        keys = ", ".join(sorted(str(k) for k in data)) or "no fields"
        self.malformed(
            task_id,
            f"{where}.data.{self.text_field} is missing or not a string (data has: {keys}); "
            "if the text is under another field, name it as label_studio.text_field in the guide",
        )
        return None

    def task(self, raw: object, index: int) -> tuple[str, str, list[CharSpan]] | None:
        """``(task id, text, spans)`` of a task with a live, well-formed annotation; else ``None``."""
        where = f"{self.source}[{index}]"
        if not isinstance(raw, dict):
            self.malformed(where, f"{where} must be a task object, not {_short(raw)}")
            return None
        task_id = str(raw["id"] if raw.get("id") is not None else source_id(raw, index))
        text = self.text_of(raw.get("data"), task_id=task_id, where=where)
        # Label Studio before 1.0 exported annotations as "completions".
        annotations = self.annotations(raw.get("annotations", raw.get("completions", [])), task_id=task_id, where=where)
        chosen = _latest([a for _, a in annotations])
        if text is None or chosen is None:
            return None
        position = next(p for p, a in annotations if a is chosen)
        spans = self.annotation_spans(chosen, task_id=task_id, where=f"{where}.annotations[{position}]", text=text)
        return None if spans is None else (task_id, text, spans)


def _covers(text: str, span: CharSpan, selected: str, *, exact: bool) -> bool:
    """Whether the span lies in the text and holds what the annotator selected (edge whitespace aside unless
    ``exact``)."""
    if not 0 <= span.start < span.end <= len(text):
        return False
    covered = text[span.start : span.end]
    return covered == selected if exact else covered.strip() == selected.strip()


def _from_utf16(text: str, units: int) -> int | None:
    """The code-point offset of a UTF-16 code-unit offset into ``text``; ``None`` inside a surrogate pair or past
    the end."""
    count = 0
    for index, char in enumerate(text):
        if count == units:
            return index
        count += 2 if ord(char) > 0xFFFF else 1
        if count > units:
            return None
    return len(text) if count == units else None


def source_id(task: Mapping[str, Any], index: int) -> object:
    """The id an exported doc carried (``meta.source_id``), else the task's position."""
    meta = task.get("meta")
    if isinstance(meta, dict) and meta.get("source_id") is not None:
        return meta["source_id"]
    return index
