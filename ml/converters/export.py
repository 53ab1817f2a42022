"""spaCy DocBin files, and one loader (and one writer) for every supported format."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from annotation_guide.render import TEXT_FIELD
from ml.converters.conll import from_conll, to_conll
from ml.converters.issues import Policy, UnknownLabels
from ml.converters.jsonl import from_jsonl, to_jsonl
from ml.converters.label_studio import from_label_studio, read_tasks, to_label_studio
from ml.converters.spans import CharSpan, ConversionResult, apply_spans, raise_if_strict
from ml.errors import DataError

CONLL_SUFFIXES = (".conll", ".txt", ".bio", ".annotated")
FORMATS = ("conll", "labelstudio", "jsonl", "docbin")

__all__ = [
    "FORMATS",
    "ReadOptions",
    "detect_format",
    "from_docbin",
    "from_jsonl",
    "load_docs",
    "to_docbin",
    "to_jsonl",
    "write_docs",
]


def to_docbin(docs: Sequence[Doc], path: str | Path) -> None:
    """Write docs (with their task ids) as a spaCy DocBin."""
    DocBin(docs=docs, store_user_data=True).to_disk(path)


@dataclass(frozen=True)
class ReadOptions:
    """How ``load_docs`` reads a file beyond the guide's labels and the alignment policy.

    Attributes:
        label_map: Labels of the data renamed to guide labels (``{"PER": "person"}``), in every format.
        unknown_labels: ``refuse`` or ``drop`` labels outside the guide (after mapping); ``None`` follows the
            policy (refuse under ``strict`` only).
        token_column: CoNLL: the token's column (from 1; negative from the end); default the first.
        tag_column: CoNLL: the tag's column; default the last. With neither, a CoNLL file must have two columns.
        from_name: Label Studio: read only ``labels`` results of this control (``None``: of any control).
        text_field: Label Studio: the key of the text in each task's ``data``.
    """

    label_map: Mapping[str, str] = field(default_factory=dict)
    unknown_labels: UnknownLabels | None = None
    token_column: int | None = None
    tag_column: int | None = None
    from_name: str | None = None
    text_field: str = TEXT_FIELD


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
    path: str | Path,
    nlp: Language,
    *,
    labels: Collection[str],
    policy: Policy = "strict",
    options: ReadOptions | None = None,
) -> ConversionResult:
    """Read gold docs from any supported file.

    Args:
        path: A CoNLL/BIO, Label Studio JSON, nerloop JSONL or DocBin file.
        nlp: The pipeline whose vocab and tokenizer the docs get.
        labels: The guide's label set.
        policy: What to do with spans that do not fit.
        options: Label mapping, unknown labels, CoNLL columns and Label Studio names (defaults: none).

    Returns:
        Docs and issues.

    Raises:
        DataError: the file cannot be read or is malformed.
        ConversionError: something was rejected (see ``apply_spans``).
    """
    opts = options or ReadOptions()
    kind = detect_format(path)
    if kind == "conll":
        return from_conll(
            path,
            nlp.vocab,
            labels=labels,
            policy=policy,
            label_map=opts.label_map,
            unknown_labels=opts.unknown_labels,
            token_column=opts.token_column,
            tag_column=opts.tag_column,
        )
    if kind == "labelstudio":
        return from_label_studio(
            read_tasks(path),
            nlp,
            labels=labels,
            policy=policy,
            source=str(path),
            from_name=opts.from_name,
            text_field=opts.text_field,
            label_map=opts.label_map,
            unknown_labels=opts.unknown_labels,
        )
    if kind == "jsonl":
        return from_jsonl(
            path, nlp, labels=labels, policy=policy, label_map=opts.label_map, unknown_labels=opts.unknown_labels
        )
    return from_docbin(path, nlp, labels=labels, policy=policy, options=opts)


def _needs_check(doc: Doc, *, labels: Collection[str], label_map: Mapping[str, str]) -> bool:
    """Whether a stored doc has an entity to map, refuse or trim (else its entities are kept untouched)."""
    return any(e.label_ not in labels or e.label_ in label_map or e[0].is_space or e[-1].is_space for e in doc.ents)


def from_docbin(
    path: str | Path,
    nlp: Language,
    *,
    labels: Collection[str],
    policy: Policy = "strict",
    options: ReadOptions | None = None,
) -> ConversionResult:
    """Read a spaCy DocBin; docs whose entities all fit are kept as stored (missing tokens stay missing).

    A doc with an entity whose label is outside the guide or mapped, or that starts or ends with a whitespace
    token, has its entities put back through ``apply_spans`` (its unlabelled tokens become ``O``).

    Args:
        path: The ``.spacy`` file.
        nlp: The pipeline whose vocab the docs get.
        labels: The guide's label set.
        policy: What to do with entities that do not fit.
        options: Label mapping and unknown labels (other options concern other formats).

    Returns:
        Docs and issues.

    Raises:
        DataError: the file is not a readable DocBin.
        ConversionError: something was rejected (see ``apply_spans``).
    """
    opts = options or ReadOptions()
    try:
        docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable spaCy DocBin ({exc})") from None
    result = ConversionResult(docs=docs)
    for doc in docs:
        if _needs_check(doc, labels=labels, label_map=opts.label_map):
            spans = [CharSpan(e.start_char, e.end_char, e.label_) for e in doc.ents]
            result.issues.extend(
                apply_spans(
                    doc,
                    spans,
                    labels=labels,
                    policy=policy,
                    label_map=opts.label_map,
                    unknown_labels=opts.unknown_labels,
                )
            )
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
