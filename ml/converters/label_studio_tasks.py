"""Reading Label Studio tasks tolerantly: the task models, the latest annotation, and one task at a time.

- Results that are not text spans of the guide's ``<Labels>`` control (relations, ``textarea``, ``choices``, and
  ``labels`` results of another control when ``from_name`` is given) are left out and reported as
  ``unsupported_result`` / ``ignored``; they are never an error.
- Offsets are read in one unit per annotation (see ``ml.converters.offsets``): code points when every region
  covers its ``value.text`` so (Label Studio >= 1.0); else UTF-16 code units when every region covers it so
  (JavaScript's string length: older Label Studio front ends and other browser tools count an emoji as two), and
  then every region is ``realigned`` (``rejected`` under ``strict``); else the task is left out, reported as
  ``offsets`` (``dropped``; ``rejected`` under ``strict``): guessing where the annotator meant would invent labels.
- A malformed task or annotation (not an object, ``result`` not a list, a result that is not an object, a
  ``labels`` value without whole-number ``start`` / ``end`` or without labels, any annotation of the task that
  fails to read, ``data.<text_field>`` missing from a task with a live annotation) is reported as ``malformed``:
  ``rejected`` under ``strict`` and ``dropped`` under ``expand`` / ``contract``, where the whole task is left out:
  keeping its other spans, or its other annotations, would teach ``O`` where the annotator marked an entity. A task
  without a live annotation is unlabelled, not training data: its ``data`` is not checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ml.converters.issues import Action, ConversionIssue, Policy
from ml.converters.offsets import Region, place_regions, short
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


def parse_timestamp(value: str | None) -> datetime | None:
    """Label Studio's ``updated_at`` (ISO 8601) as an aware datetime in UTC, read as UTC without a zone.

    ``None`` when missing, unreadable, or outside years 1-9999 once in UTC (``9999-12-31T23:59:59-14:00``: no database
    can store it).
    """
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


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
        stamp = parse_timestamp(annotation.updated_at)
        numeric = isinstance(annotation.id, int)
        return (
            stamp is not None,
            stamp or datetime.min.replace(tzinfo=UTC),
            numeric,
            annotation.id if isinstance(annotation.id, int) else 0,
            position,
        )

    return max(live, key=key)[1]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value_region(value: object, where: str) -> Region | str:
    """The region of a ``labels`` result's value, or what is wrong with it."""
    if not isinstance(value, dict):
        return f"{where}.value is missing or not an object"
    problems = []
    for key in ("start", "end"):
        if key not in value:
            problems.append(f"{where}.value.{key} is missing")
        elif not _is_int(value[key]):
            problems.append(f"{where}.value.{key} must be a whole number, not {short(value[key])}")
    labels = value.get("labels")
    names: list[str] = labels if isinstance(labels, list) and all(isinstance(x, str) and x for x in labels) else []
    if not names:
        problems.append(f"{where}.value.labels must be a non-empty list of label names, not {short(labels)}")
    if problems:
        return "; ".join(problems)
    selected = value.get("text")
    return Region(value["start"], value["end"], tuple(names), selected if isinstance(selected, str) else None)


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

    def region(self, raw: object, *, task_id: str, where: str) -> list[Region] | None:
        """The region of one result item: ``[]`` when it is ignored, ``None`` when it is malformed."""
        if not isinstance(raw, dict):
            self.malformed(task_id, f"{where} must be an object, not {short(raw)}")
            return None
        try:
            item = LSResult.model_validate(raw)
        except ValidationError as exc:
            problem = exc.errors()[0]
            self.malformed(task_id, f"{where}.{problem['loc'][0]} must be a string, not {short(problem['input'])}")
            return None
        kind = item.type or ("labels" if isinstance(item.value, dict) and "labels" in item.value else None)
        if kind != "labels":
            self.ignored(task_id, f"{where} is a {kind or 'untyped'!r} result, not a labelled span")
            return []
        if self.from_name is not None and item.from_name != self.from_name:
            self.ignored(task_id, f"{where} belongs to control {item.from_name!r}, not {self.from_name!r}")
            return []
        region = _value_region(item.value, where)
        if isinstance(region, str):
            self.malformed(task_id, region)
            return None
        return [region]

    def annotation_spans(
        self, annotation: LSAnnotation, *, task_id: str, where: str, text: str
    ) -> list[CharSpan] | None:
        """Every span of an annotation, its offsets read in one unit (see ``ml.converters.offsets``).

        ``None`` when any part of it is malformed or its offsets cannot be placed (then the task is left out).
        """
        if not isinstance(annotation.result, list):
            self.malformed(task_id, f"{where}.result must be a list of regions, not {short(annotation.result)}")
            return None
        regions: list[Region] = []
        complete = True
        for number, raw in enumerate(annotation.result):
            found = self.region(raw, task_id=task_id, where=f"{where}.result[{number}]")
            if found is None:
                complete = False
            else:
                regions.extend(found)
        if not complete:
            return None
        spans, issues = place_regions(text, regions, task_id=task_id, policy=self.policy)
        self.issues.extend(issues)
        return spans

    def annotations(self, raw: object, *, task_id: str, where: str) -> list[LSAnnotation] | None:
        """The task's annotations; ``None`` when any of them cannot be read (each such one is reported)."""
        if not isinstance(raw, list):
            self.malformed(task_id, f"{where}.annotations must be a list, not {short(raw)}")
            return None
        read = []
        for position, item in enumerate(raw):
            if not isinstance(item, dict):
                self.malformed(task_id, f"{where}.annotations[{position}] must be an object, not {short(item)}")
                continue
            try:
                read.append(LSAnnotation.model_validate(item))
            except ValidationError as exc:
                problem = exc.errors()[0]
                place = ".".join(str(part) for part in problem["loc"])
                detail = f"{where}.annotations[{position}]{'.' + place if place else ''}: {problem['msg'].lower()}"
                self.malformed(task_id, detail)
        return read if len(read) == len(raw) else None

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
        """``(task id, text, spans)`` of a task with a live, well-formed annotation; else ``None``.

        A task without a live annotation is not read further: unlabelled text is not training data, so its
        ``data`` is not checked. A task with an annotation that cannot be read is left out whole, since that
        annotation may be the latest.
        """
        where = f"{self.source}[{index}]"
        if not isinstance(raw, dict):
            self.malformed(where, f"{where} must be a task object, not {short(raw)}")
            return None
        task_id = str(raw["id"] if raw.get("id") is not None else source_id(raw, index))
        # Label Studio before 1.0 exported annotations as "completions".
        annotations = self.annotations(raw.get("annotations", raw.get("completions", [])), task_id=task_id, where=where)
        chosen = _latest(annotations) if annotations is not None else None
        if annotations is not None and chosen is None:
            return None
        text = self.text_of(raw.get("data"), task_id=task_id, where=where)
        if text is None or annotations is None or chosen is None:
            return None
        position = next(p for p, a in enumerate(annotations) if a is chosen)
        spans = self.annotation_spans(chosen, task_id=task_id, where=f"{where}.annotations[{position}]", text=text)
        return None if spans is None else (task_id, text, spans)


def source_id(task: Mapping[str, Any], index: int) -> object:
    """The id an exported doc carried (``meta.source_id``), else the task's position."""
    meta = task.get("meta")
    if isinstance(meta, dict) and meta.get("source_id") is not None:
        return meta["source_id"]
    return index
