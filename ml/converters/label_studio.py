"""Label Studio tasks JSON (the export format and the ``/predict`` payload) <-> spaCy ``Doc``."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from spacy.language import Language
from spacy.tokens import Doc

from annotation_guide.render import FROM_NAME, TEXT_FIELD, TO_NAME
from ml.converters.issues import ConversionIssue, Policy
from ml.converters.spans import (
    CharSpan,
    ConversionResult,
    apply_spans,
    raise_if_strict,
    set_task_id,
    task_id_of,
)
from ml.converters.text_files import json_lines, parse_json, read_text
from ml.errors import DataError
from ml.prediction import ScoredSpan


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class LSValue(_Loose):
    """The ``value`` of a ``labels`` result."""

    start: int
    end: int
    text: str | None = None
    labels: list[str] = Field(min_length=1)


class LSResult(_Loose):
    """One region of an annotation."""

    type: str = "labels"
    value: dict[str, Any]


class LSAnnotation(_Loose):
    """One annotation (or prediction) of a task."""

    id: int | None = None
    result: list[LSResult] = Field(default_factory=list)
    was_cancelled: bool = False
    updated_at: str | None = None


class LSTask(_Loose):
    """A Label Studio task with the text under ``data``."""

    id: int | str | None = None
    data: dict[str, Any]
    annotations: list[LSAnnotation] = Field(default_factory=list)


def _latest(annotations: Sequence[LSAnnotation]) -> LSAnnotation | None:
    live = [a for a in annotations if not a.was_cancelled]
    if not live:
        return None
    return max(enumerate(live), key=lambda pair: (pair[1].updated_at or "", pair[0]))[1]


def _spans_of(
    annotation: LSAnnotation, task_id: str, text: str, where: str
) -> tuple[list[CharSpan], list[ConversionIssue]]:
    spans: list[CharSpan] = []
    issues: list[ConversionIssue] = []
    for number, item in enumerate(annotation.result):
        if item.type != "labels":
            issues.append(
                ConversionIssue(
                    task_id=task_id,
                    kind="unsupported_result",
                    action="ignored",
                    start=0,
                    end=0,
                    label=item.type,
                    text="",
                )
            )
            continue
        try:
            value = LSValue.model_validate(item.value)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise DataError(f"{where}.result[{number}].value.{field}: {first['msg']}") from None
        spans.extend(CharSpan(value.start, value.end, label) for label in value.labels)
    return spans, issues


def from_label_studio(
    tasks: Sequence[dict[str, Any]],
    nlp: Language,
    *,
    labels: Collection[str],
    policy: Policy = "strict",
    source: str = "tasks",
) -> ConversionResult:
    """Turn Label Studio tasks into docs, taking the latest non-cancelled annotation of each task.

    Tasks without such an annotation are skipped: unreviewed text is missing data, not ``O``.

    Args:
        tasks: Task dicts as Label Studio exports them (``id``, ``data.text``, ``annotations``).
        nlp: The pipeline whose tokenizer splits the texts.
        labels: The guide's label set.
        policy: What to do with spans that do not fit (see ``apply_spans``).
        source: Name of the input, used in error messages.

    Returns:
        The docs (``task_id`` in their user data) and every issue met.

    Raises:
        DataError: a task is malformed (one line naming the task and field).
        ConversionError: under ``strict``, a span could not be kept as it is.
    """
    result = ConversionResult()
    for index, raw in enumerate(tasks):
        task = _parse_task(raw, f"{source}[{index}]")
        text = task.data.get(TEXT_FIELD)
        if not isinstance(text, str):
            raise DataError(f"{source}[{index}] (task {task.id}): data.{TEXT_FIELD} is missing or not a string")
        annotation = _latest(task.annotations)
        if annotation is None:
            continue
        task_id = str(task.id if task.id is not None else _source_id(task, index))
        spans, issues = _spans_of(annotation, task_id, text, f"{source}[{index}] (task {task_id})")
        doc = nlp.make_doc(text)
        set_task_id(doc, task_id)
        result.issues.extend(issues)
        result.issues.extend(apply_spans(doc, spans, labels=labels, policy=policy))
        result.docs.append(doc)
    return raise_if_strict(result, policy)


def _source_id(task: LSTask, index: int) -> object:
    """The id an exported doc carried (``meta.source_id``), else the task's position."""
    meta = getattr(task, "meta", None)
    if isinstance(meta, dict) and meta.get("source_id") is not None:
        return meta["source_id"]
    return index


def _parse_task(raw: object, where: str) -> LSTask:
    try:
        return LSTask.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(task)"
        raise DataError(f"{where}.{field}: {first['msg']}") from None


def read_tasks(path: str | Path) -> list[dict[str, Any]]:
    """Read a Label Studio JSON export (a list of tasks) or a JSONL file of tasks."""
    path = Path(path)
    raw = read_text(path)
    if path.suffix == ".jsonl":
        tasks = [parse_json(line, f"{path}:{number}") for number, line in json_lines(raw)]
    else:
        tasks = parse_json(raw, str(path))
    if not isinstance(tasks, list):
        raise DataError(f"{path}: expected a JSON list of tasks, got {type(tasks).__name__}")
    return tasks


def to_results(doc: Doc, scores: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """The doc's entities as Label Studio ``labels`` results (with ``score`` when given)."""
    if scores is not None and len(scores) != len(doc.ents):
        raise ValueError("one score per entity is needed")
    results: list[dict[str, Any]] = []
    for index, ent in enumerate(doc.ents):
        item: dict[str, Any] = {
            "id": f"{task_id_of(doc)}-{index}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "labels",
            "value": {"start": ent.start_char, "end": ent.end_char, "text": ent.text, "labels": [ent.label_]},
        }
        if scores is not None:
            item["score"] = float(scores[index])
        results.append(item)
    return results


def spans_to_results(spans: Sequence[ScoredSpan]) -> list[dict[str, Any]]:
    """Predicted spans as Label Studio ``labels`` results, each with its ``score``."""
    return [
        {
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "labels",
            "value": {"start": s.start, "end": s.end, "text": s.text, "labels": [s.label]},
            "score": float(s.score),
        }
        for s in spans
    ]


def results_to_spans(results: Sequence[dict[str, Any]]) -> list[ScoredSpan]:
    """The inverse of ``spans_to_results``: scored ``labels`` results back to spans (a missing score is 1.0)."""
    spans = []
    for item in results:
        value = LSValue.model_validate(item["value"])
        spans.append(
            ScoredSpan(value.start, value.end, value.labels[0], value.text or "", float(item.get("score", 1.0)))
        )
    return spans


def to_label_studio(docs: Sequence[Doc]) -> list[dict[str, Any]]:
    """Docs as Label Studio tasks with one annotation each (importable, or an export)."""
    tasks = []
    for doc in docs:
        task: dict[str, Any] = {"data": {TEXT_FIELD: doc.text}, "annotations": [{"result": to_results(doc)}]}
        task_id = doc.user_data.get("task_id")
        if task_id is not None:
            task["meta"] = {"source_id": task_id}
        tasks.append(task)
    return tasks
