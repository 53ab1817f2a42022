"""Label Studio tasks JSON (the export format and the ``/predict`` payload) <-> spaCy ``Doc``.

Reading is tolerant (see ``ml.converters.label_studio_tasks``): a task or annotation that cannot be read never
stops the conversion of the other tasks; results that are not label regions are ignored and counted.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from annotation_guide.render import FROM_NAME, TEXT_FIELD, TO_NAME
from ml.converters.issues import ConversionIssue, Policy, UnknownLabels
from ml.converters.label_studio_tasks import LSAnnotation, LSResult, LSValue, TaskReader
from ml.converters.spans import ConversionResult, apply_spans, raise_if_strict, set_task_id, task_id_of
from ml.converters.text_files import json_lines, parse_json, read_text
from ml.errors import DataError
from ml.prediction import ScoredSpan

__all__ = [
    "LSAnnotation",
    "LSResult",
    "LSValue",
    "from_label_studio",
    "read_tasks",
    "results_to_spans",
    "spans_to_results",
    "to_label_studio",
    "to_results",
]


def from_label_studio(
    tasks: Sequence[Any],
    nlp: Language,
    *,
    labels: Collection[str],
    policy: Policy = "strict",
    source: str = "tasks",
    from_name: str | None = None,
    text_field: str = TEXT_FIELD,
    label_map: Mapping[str, str] | None = None,
    unknown_labels: UnknownLabels | None = None,
) -> ConversionResult:
    """Turn Label Studio tasks into docs, taking the latest non-cancelled annotation of each task.

    Tasks without such an annotation are skipped: unreviewed text is missing data, not ``O``. What cannot be
    read is reported, never fatal by itself (see ``ml.converters.label_studio_tasks``). A task whose annotation
    has a span reaching past either end of its text (``out_of_range``) is left out too, its issues reported: kept,
    it would teach ``O`` where the annotator marked an entity (as for ``offsets``). An empty span is only dropped.

    Args:
        tasks: Task dicts as Label Studio exports them (``id``, ``data.<text_field>``, ``annotations``).
        nlp: The pipeline whose tokenizer splits the texts.
        labels: The guide's label set.
        policy: What to do with spans that do not fit and with malformed tasks (see ``apply_spans``).
        source: Name of the input, used in the places issues name.
        from_name: Read only ``labels`` results of this control; ``None`` reads those of any control.
        text_field: The key of the text in each task's ``data``.
        label_map: Labels of the export renamed to guide labels (see ``apply_spans``).
        unknown_labels: ``refuse`` or ``drop`` labels outside the guide; ``None`` follows the policy.

    Returns:
        The docs (``task_id`` in their user data) and every issue met.

    Raises:
        ConversionError: something was rejected (under ``strict``, or a label refused); lists every issue.
    """
    reader = TaskReader(source=source, policy=policy, text_field=text_field, from_name=from_name)
    result = ConversionResult()
    for index, raw in enumerate(tasks):
        read = reader.task(raw, index)
        result.issues.extend(reader.issues)
        reader.issues.clear()
        if read is None:
            continue
        task_id, text, spans = read
        doc = nlp.make_doc(text)
        set_task_id(doc, task_id)
        issues = apply_spans(
            doc, spans, labels=labels, policy=policy, label_map=label_map, unknown_labels=unknown_labels
        )
        result.issues.extend(issues)
        if not any(_past_the_text(issue, len(text)) for issue in issues):
            result.docs.append(doc)
    return raise_if_strict(result, policy)


def _past_the_text(issue: ConversionIssue, length: int) -> bool:
    return issue.kind == "out_of_range" and issue.action == "dropped" and (issue.start < 0 or issue.end > length)


def read_tasks(path: str | Path) -> list[Any]:
    """Read a Label Studio JSON export (a list of tasks) or a JSONL file of tasks.

    Args:
        path: A ``.json`` file holding a list, or a ``.jsonl`` file with one task per line.

    Returns:
        The tasks as parsed (each is checked by ``from_label_studio``).

    Raises:
        DataError: the file cannot be read, is not JSON, or is not a list; the message names the file (and line).
    """
    path = Path(path)
    raw = read_text(path)
    if path.suffix == ".jsonl":
        tasks = [parse_json(line, f"{path}:{number}") for number, line in json_lines(raw)]
    else:
        tasks = parse_json(raw, str(path))
    if not isinstance(tasks, list):
        raise DataError(f"{path}: expected a JSON list of tasks, got {type(tasks).__name__}")
    return tasks


def _result(start: int, end: int, *, text: str, label: str, from_name: str, to_name: str) -> dict[str, Any]:
    return {
        "from_name": from_name,
        "to_name": to_name,
        "type": "labels",
        "value": {"start": start, "end": end, "text": text, "labels": [label]},
    }


def to_results(
    doc: Doc,
    scores: Sequence[float] | None = None,
    *,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
) -> list[dict[str, Any]]:
    """The doc's entities as Label Studio ``labels`` results.

    Args:
        doc: A doc with entities (and ``task_id`` in its user data for the result ids).
        scores: One score per entity, added as ``score``; ``None`` adds none.
        from_name: The ``<Labels>`` control's name (the guide's ``label_studio.from_name``).
        to_name: The ``<Text>`` object's name (the guide's ``label_studio.to_name``).

    Returns:
        One result per entity, ids ``<task id>-<n>``.

    Raises:
        ValueError: ``scores`` does not hold one score per entity.
    """
    if scores is not None and len(scores) != len(doc.ents):
        raise ValueError("one score per entity is needed")
    results: list[dict[str, Any]] = []
    for index, ent in enumerate(doc.ents):
        item = {
            "id": f"{task_id_of(doc)}-{index}",
            **_result(
                ent.start_char, ent.end_char, text=ent.text, label=ent.label_, from_name=from_name, to_name=to_name
            ),
        }
        if scores is not None:
            item["score"] = float(scores[index])
        results.append(item)
    return results


def spans_to_results(
    spans: Sequence[ScoredSpan],
    *,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
    label_values: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Predicted spans as Label Studio ``labels`` results, each with its ``score``.

    Args:
        spans: The predicted spans.
        from_name: The ``<Labels>`` control's name.
        to_name: The ``<Text>`` object's name.
        label_values: Guide name -> Label Studio label value, where they differ (``Guide.label_studio.labels``).

    Returns:
        One result per span.
    """
    values = label_values or {}
    return [
        {
            **_result(
                s.start, s.end, text=s.text, label=values.get(s.label, s.label), from_name=from_name, to_name=to_name
            ),
            "score": float(s.score),
        }
        for s in spans
    ]


def results_to_spans(
    results: Sequence[dict[str, Any]], *, label_names: Mapping[str, str] | None = None
) -> list[ScoredSpan]:
    """The inverse of ``spans_to_results``.

    Scored ``labels`` results back to spans (a missing score is 1.0); ``label_names`` maps Label Studio label values
    back to guide names (``Guide.label_names``).
    """
    names = label_names or {}
    spans = []
    for item in results:
        value = LSValue.model_validate(item["value"])
        label = names.get(value.labels[0], value.labels[0])
        spans.append(ScoredSpan(value.start, value.end, label, value.text or "", float(item.get("score", 1.0))))
    return spans


def to_label_studio(
    docs: Sequence[Doc],
    *,
    from_name: str = FROM_NAME,
    to_name: str = TO_NAME,
    text_field: str = TEXT_FIELD,
) -> list[dict[str, Any]]:
    """Docs as Label Studio tasks with one annotation each (importable, or an export).

    Args:
        docs: Docs with entities; a ``task_id`` in their user data becomes ``meta.source_id``.
        from_name: The ``<Labels>`` control's name.
        to_name: The ``<Text>`` object's name.
        text_field: The key of the text in ``data``.

    Returns:
        One task per doc.
    """
    tasks = []
    for doc in docs:
        results = to_results(doc, from_name=from_name, to_name=to_name)
        task: dict[str, Any] = {"data": {text_field: doc.text}, "annotations": [{"result": results}]}
        task_id = doc.user_data.get("task_id")
        if task_id is not None:
            task["meta"] = {"source_id": task_id}
        tasks.append(task)
    return tasks
