"""Two-column CoNLL / BIO files (``token<TAB>tag``, blank line between sentences) <-> spaCy ``Doc``.

The text of a sentence is its tokens joined with single spaces, so every gold span maps to exact
character offsets.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ml.converters.issues import ConversionIssue, Policy
from ml.converters.spans import (
    CharSpan,
    ConversionResult,
    apply_spans,
    raise_if_strict,
    set_task_id,
    task_id_of,
)
from ml.converters.text_files import read_text
from ml.errors import DataError

_TAG = re.compile(r"^(O|[BI]-\S+)$")


@dataclass(frozen=True)
class Sentence:
    """One sentence of a CoNLL file: its tokens, tags and the line it starts on."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    line: int


def read_sentences(path: Path) -> Iterator[Sentence]:
    """Parse a CoNLL/BIO file; malformed lines raise ``DataError`` naming ``file:line``."""
    words: list[str] = []
    tags: list[str] = []
    start = 0
    for number, raw in enumerate(read_text(path).split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                yield Sentence(tuple(words), tuple(tags), start)
            words, tags = [], []
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        if len(columns) != 2 or not columns[0].strip():
            raise DataError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}")
        word, tag = columns[0].strip(), columns[1].strip()
        if not _TAG.match(tag):
            raise DataError(f"{path}:{number}: tag {tag!r} is not O, B-<type> or I-<type>")
        if any(ch.isspace() for ch in word):
            raise DataError(f"{path}:{number}: token {word!r} contains whitespace")
        if not words:
            start = number
        words.append(word)
        tags.append(tag)
    if words:
        yield Sentence(tuple(words), tuple(tags), start)


def bio_to_spans(
    words: tuple[str, ...], tags: tuple[str, ...], task_id: str
) -> tuple[list[CharSpan], list[ConversionIssue]]:
    """Turn BIO tags into character spans over ``' '.join(words)``; report I- tags that open an entity."""
    offsets: list[int] = []
    position = 0
    for word in words:
        offsets.append(position)
        position += len(word) + 1
    spans: list[CharSpan] = []
    issues: list[ConversionIssue] = []
    current: tuple[int, str] | None = None

    def close(end_token: int) -> None:
        if current is not None:
            first, label = current
            spans.append(CharSpan(offsets[first], offsets[end_token - 1] + len(words[end_token - 1]), label))

    for index, tag in enumerate(tags):
        prefix, _, label = tag.partition("-")
        if prefix == "I" and current is not None and current[1] == label:
            continue
        close(index)
        current = None
        if prefix == "I":
            issues.append(
                ConversionIssue(
                    task_id=task_id,
                    kind="orphan_inside",
                    action="started_entity",
                    start=offsets[index],
                    end=offsets[index] + len(words[index]),
                    label=label,
                    text=words[index],
                )
            )
        if prefix in ("B", "I"):
            current = (index, label)
    close(len(tags))
    return spans, issues


def from_conll(
    path: str | Path, vocab: Vocab, *, labels: Collection[str], policy: Policy = "strict"
) -> ConversionResult:
    """Read a CoNLL/BIO file into docs (task id ``<file>:<line>``).

    Args:
        path: The file.
        vocab: The vocab of the pipeline the docs are for.
        labels: The guide's label set.
        policy: What to do with spans that do not fit (see ``apply_spans``).

    Returns:
        The docs and every issue met.

    Raises:
        DataError: the file is malformed (one line naming ``file:line``).
        ConversionError: under ``strict``, a span could not be kept as it is.
    """
    path = Path(path)
    result = ConversionResult()
    for sentence in read_sentences(path):
        doc = Doc(vocab, words=list(sentence.words), spaces=[True] * (len(sentence.words) - 1) + [False])
        task_id = f"{path.name}:{sentence.line}"
        set_task_id(doc, task_id)
        spans, issues = bio_to_spans(sentence.words, sentence.tags, task_id)
        result.issues.extend(issues)
        result.issues.extend(apply_spans(doc, spans, labels=labels, policy=policy))
        result.docs.append(doc)
    if not result.docs:
        raise DataError(f"{path}: holds no sentence")
    return raise_if_strict(result, policy)


def to_conll(docs: list[Doc]) -> str:
    """Write docs as CoNLL/BIO; whitespace-only tokens (never part of the format) are left out."""
    blocks: list[str] = []
    for doc in docs:
        tags = ["O"] * len(doc)
        for ent in doc.ents:
            inner = [token.i for token in ent if not token.is_space]
            for position, index in enumerate(inner):
                tags[index] = f"{'B' if position == 0 else 'I'}-{ent.label_}"
        lines = [f"{token.text}\t{tags[token.i]}" for token in doc if not token.is_space]
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


__all__ = ["Sentence", "bio_to_spans", "from_conll", "read_sentences", "task_id_of", "to_conll"]
