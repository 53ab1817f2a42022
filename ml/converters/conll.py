"""CoNLL / BIO files (one ``token<TAB>tag`` line per token, blank line between sentences) <-> spaCy ``Doc``.

The text of a sentence is its tokens joined with single spaces, so every gold span maps to exact character
offsets. Files with more than two columns (CoNLL-2003: ``token POS chunk tag``) are read when the caller says
which columns hold the token and the tag; column numbers count from 1, and negative ones from the end (-1 is the
last column). Columns are split on tabs when a line has one, else on runs of whitespace. ``\r\n`` line endings,
trailing whitespace, whitespace-only lines (sentence breaks) and a leading byte order mark are accepted; none of
them reaches a token, so no offset depends on them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ml.converters.issues import ConversionIssue, Policy, UnknownLabels
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
_COLUMN_HINT = "say which columns hold the token and the tag, e.g. --token-column 1 --tag-column -1"


@dataclass(frozen=True)
class Sentence:
    """One sentence of a CoNLL file: its tokens, tags and the line it starts on."""

    words: tuple[str, ...]
    tags: tuple[str, ...]
    line: int


@dataclass
class _Columns:
    """Which columns hold the token and the tag; fixed by the first token line of the file."""

    path: Path
    token: int | None
    tag: int | None
    width: int = 0
    first_line: int = 0

    def pick(self, columns: list[str], *, number: int, line: str) -> tuple[str, str]:
        """The token and tag of one line, checking its width against the file's first token line."""
        if not self.width:
            self._fix_width(len(columns), number=number, line=line)
        if len(columns) != self.width:
            raise DataError(
                f"{self.path}:{number}: {len(columns)} column(s) in {line!r}, but line {self.first_line} has "
                f"{self.width}; every token line needs the same columns (a token cannot contain whitespace)"
            )
        return columns[self._index(self.token or 1)].strip(), columns[self._index(self.tag or -1)].strip()

    def _fix_width(self, width: int, *, number: int, line: str) -> None:
        self.width, self.first_line = width, number
        if width < 2:
            raise DataError(f"{self.path}:{number}: expected 'token<TAB>tag', got {line!r}")
        if width > 2 and self.token is None and self.tag is None:
            raise DataError(
                f"{self.path}:{number}: {width} columns in {line!r}; {_COLUMN_HINT} (CoNLL-2003 is token POS chunk tag)"
            )
        for option, value in (("--token-column", self.token), ("--tag-column", self.tag)):
            if value is not None and not (1 <= value <= width or -width <= value <= -1):
                raise DataError(
                    f"{self.path}:{number}: {option} {value} is not a column of {line!r} "
                    f"(1 to {width} from the start, -1 to -{width} from the end)"
                )

    def _index(self, column: int) -> int:
        return column - 1 if column > 0 else column


def read_sentences(path: Path, *, token_column: int | None = None, tag_column: int | None = None) -> Iterator[Sentence]:
    """Parse a CoNLL/BIO file; malformed lines raise ``DataError`` naming ``file:line``.

    Args:
        path: The file.
        token_column: The token's column (from 1; negative from the end). Default: the first.
        tag_column: The tag's column (from 1; negative from the end). Default: the last. With neither given,
            a file must have exactly two columns.

    Yields:
        One sentence per block of token lines.

    Raises:
        DataError: a line has another number of columns than the first, a tag is not BIO, a token is empty.
    """
    columns = _Columns(path, token_column, tag_column)
    words: list[str] = []
    tags: list[str] = []
    start = 0
    for number, raw in enumerate(read_text(path).split("\n"), start=1):
        line = raw.rstrip()
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                yield Sentence(tuple(words), tuple(tags), start)
            words, tags = [], []
            continue
        word, tag = columns.pick(line.split("\t") if "\t" in line else line.split(), number=number, line=line)
        _check(path, number, word=word, tag=tag, line=line, wide=columns.width > 2)
        if not words:
            start = number
        words.append(word)
        tags.append(tag)
    if words:
        yield Sentence(tuple(words), tuple(tags), start)


def _check(path: Path, number: int, *, word: str, tag: str, line: str, wide: bool) -> None:
    if not word:
        raise DataError(f"{path}:{number}: expected 'token<TAB>tag', got {line!r}")
    if not _TAG.match(tag):
        hint = " (is --tag-column the tag's column?)" if wide else ""
        raise DataError(f"{path}:{number}: tag {tag!r} is not O, B-<type> or I-<type>{hint}")
    if any(ch.isspace() for ch in word):
        raise DataError(f"{path}:{number}: token {word!r} contains whitespace")


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
    path: str | Path,
    vocab: Vocab,
    *,
    labels: Collection[str],
    policy: Policy = "strict",
    label_map: Mapping[str, str] | None = None,
    unknown_labels: UnknownLabels | None = None,
    token_column: int | None = None,
    tag_column: int | None = None,
) -> ConversionResult:
    """Read a CoNLL/BIO file into docs (task id ``<file>:<line>``).

    Args:
        path: The file.
        vocab: The vocab of the pipeline the docs are for.
        labels: The guide's label set.
        policy: What to do with spans that do not fit (see ``apply_spans``).
        label_map: Tag types renamed to guide labels (``{"PER": "person"}``).
        unknown_labels: ``refuse`` or ``drop`` types outside the guide; ``None`` follows the policy.
        token_column: The token's column (see ``read_sentences``).
        tag_column: The tag's column (see ``read_sentences``).

    Returns:
        The docs and every issue met.

    Raises:
        DataError: the file is malformed (one line naming ``file:line``).
        ConversionError: something was rejected (see ``apply_spans``).
    """
    path = Path(path)
    result = ConversionResult()
    for sentence in read_sentences(path, token_column=token_column, tag_column=tag_column):
        doc = Doc(vocab, words=list(sentence.words), spaces=[True] * (len(sentence.words) - 1) + [False])
        task_id = f"{path.name}:{sentence.line}"
        set_task_id(doc, task_id)
        spans, issues = bio_to_spans(sentence.words, sentence.tags, task_id)
        result.issues.extend(issues)
        result.issues.extend(
            apply_spans(doc, spans, labels=labels, policy=policy, label_map=label_map, unknown_labels=unknown_labels)
        )
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
