"""spaCy DocBin and nerloop JSONL files, and one loader that reads any supported format."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ml.converters.conll import from_conll, to_conll
from ml.converters.issues import Policy
from ml.converters.label_studio import from_label_studio, read_tasks, to_label_studio
from ml.converters.spans import CharSpan, ConversionResult, apply_spans, raise_if_strict, set_task_id
from ml.converters.text_files import json_lines, parse_json, read_text
from ml.errors import DataError

CONLL_SUFFIXES = (".conll", ".txt", ".bio", ".annotated")
FORMATS = ("conll", "labelstudio", "jsonl", "docbin")


def to_docbin(docs: Sequence[Doc], path: str | Path) -> None:
    """Write docs (with their task ids) as a spaCy DocBin."""
    DocBin(docs=docs, store_user_data=True).to_disk(path)


def to_jsonl(docs: Sequence[Doc]) -> str:
    """Docs as JSON lines: ``{"id", "text", "spans": [{"start", "end", "label", "text"}]}``."""
    lines = []
    for doc in docs:
        spans = [{"start": e.start_char, "end": e.end_char, "label": e.label_, "text": e.text} for e in doc.ents]
        # ASCII escapes keep U+2028 and friends from splitting a record across lines.
        lines.append(json.dumps({"id": doc.user_data.get("task_id"), "text": doc.text, "spans": spans}))
    return "".join(line + "\n" for line in lines)


def _jsonl_record(record: Any, where: str) -> tuple[str, list[CharSpan]]:
    try:
        spans = [CharSpan(int(s["start"]), int(s["end"]), str(s["label"])) for s in record.get("spans", [])]
        text = record["text"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"{where}: expected {{'text', 'spans': [{{'start', 'end', 'label'}}]}} ({exc!r})") from None
    if not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string")
    return text, spans


def from_jsonl(
    path: str | Path, nlp: Language, *, labels: Collection[str], policy: Policy = "strict"
) -> ConversionResult:
    """Read nerloop JSONL (see ``to_jsonl``); ``id`` defaults to ``<file>:<line>``."""
    path = Path(path)
    result = ConversionResult()
    for number, line in json_lines(read_text(path)):
        record = parse_json(line, f"{path}:{number}")
        text, spans = _jsonl_record(record, f"{path}:{number}")
        doc = nlp.make_doc(text)
        record_id = record.get("id")
        set_task_id(doc, record_id if record_id is not None else f"{path.name}:{number}")
        result.issues.extend(apply_spans(doc, spans, labels=labels, policy=policy))
        result.docs.append(doc)
    return raise_if_strict(result, policy)


def detect_format(path: str | Path) -> str:
    """The format of a data file, from its name."""
    name = Path(path).name.lower()
    if name.endswith(".spacy"):
        return "docbin"
    if name.endswith(".jsonl") and not name.endswith(".tasks.jsonl"):
        return "jsonl"
    if name.endswith((".json", ".tasks.jsonl")):
        return "labelstudio"
    if name.endswith(CONLL_SUFFIXES):
        return "conll"
    raise DataError(f"{path}: unknown data format; use .conll/.txt (BIO), .json (Label Studio), .jsonl or .spacy")


def load_docs(
    path: str | Path, nlp: Language, *, labels: Collection[str], policy: Policy = "strict"
) -> ConversionResult:
    """Read gold docs from any supported file.

    Args:
        path: A CoNLL/BIO, Label Studio JSON, nerloop JSONL or DocBin file.
        nlp: The pipeline whose vocab and tokenizer the docs get.
        labels: The guide's label set.
        policy: What to do with spans that do not fit.

    Returns:
        Docs and issues.
    """
    kind = detect_format(path)
    if kind == "conll":
        return from_conll(path, nlp.vocab, labels=labels, policy=policy)
    if kind == "labelstudio":
        return from_label_studio(read_tasks(path), nlp, labels=labels, policy=policy, source=str(path))
    if kind == "jsonl":
        return from_jsonl(path, nlp, labels=labels, policy=policy)
    try:
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable spaCy DocBin ({exc})") from None
    result = ConversionResult(docs=docs)
    for doc in docs:
        unknown = {e.label_ for e in doc.ents} - set(labels)
        if unknown:
            spans = [CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents]
            result.issues.extend(apply_spans(doc, spans, labels=labels, policy=policy))
    return raise_if_strict(result, policy)


def write_docs(docs: Sequence[Doc], path: str | Path, fmt: str | None = None) -> None:
    """Write docs in the format named by ``fmt`` (or the file name)."""
    path = Path(path)
    kind = fmt or detect_format(path)
    if kind == "docbin":
        to_docbin(docs, path)
    elif kind == "jsonl":
        path.write_text(to_jsonl(docs), encoding="utf-8")
    elif kind == "conll":
        path.write_text(to_conll(list(docs)), encoding="utf-8")
    elif kind == "labelstudio" and path.name.lower().endswith(".jsonl"):
        path.write_text("".join(json.dumps(t) + "\n" for t in to_label_studio(docs)), encoding="utf-8")
    elif kind == "labelstudio":
        path.write_text(json.dumps(to_label_studio(docs), ensure_ascii=False, indent=1), encoding="utf-8")
    else:
        raise DataError(f"unknown output format {kind!r}; choose one of {', '.join(FORMATS)}")
