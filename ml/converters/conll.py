r"""CoNLL / BIO files (one ``token<TAB>tag`` line per token, blank line between sentences) <-> spaCy ``Doc``.

The text of a sentence is its tokens joined with single spaces, so every gold span maps to exact character
offsets. Files with more than two columns (CoNLL-2003: ``token POS chunk tag``; MultiCoNER: ``token _ _ tag``)
are read when the caller says which columns hold the token and the tag; column numbers count from 1, and negative
ones from the end (-1 is the last column). Columns are split on tabs when a line has one, else on runs of
whitespace. ``\r\n`` line endings, trailing whitespace, whitespace-only lines (sentence breaks) and a leading byte
order mark are accepted; none of them reaches a token, so no offset depends on them.

Tags: ``O``, and ``B-`` / ``I-`` (BIO, IOB2), ``E-`` / ``S-`` (BIOES, IOBES: the last token of an entity / an
entity of one token) and their BILUO names ``L-`` / ``U-``, each followed by the type; the prefix may be lower
case (``b-ORG``). An entity opened by ``I-`` or ``E-`` (no ``B-`` before it) is reported as ``orphan_inside``.

Comments: ``-DOCSTART-`` lines, and lines that start with ``#`` followed by a space, a tab or nothing
(MultiCoNER's ``# id <uuid>\tdomain=en``, CoNLL-U's ``# text = ...``) unless they read as a token line, are
skipped. A ``#`` line reads as a token line when it has the columns of the file's token lines (two before the
first one) with a tag in the tag column and a token without whitespace, so the token ``#`` still reads
(``#\tO``, ``# O``), and ``#hashtag\tO`` is always a token.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from spacy.tokens import Doc
from spacy.training import biluo_tags_to_offsets, iob_to_biluo
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

_TAG = re.compile(r"O|[BIESLU]-\S+", re.IGNORECASE)
# BILUO names of the BIOES prefixes
_PREFIXES = {"L": "E", "U": "S"}
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

    def reads_as_token(self, columns: list[str]) -> bool:
        """Whether a line's columns have the file's width (2 before the first token line), a tag and a token."""
        if len(columns) != (self.width or 2):
            return False
        tag, token = columns[self._index(self.tag or -1)].strip(), columns[self._index(self.token or 1)].strip()
        return bool(token) and not any(ch.isspace() for ch in token) and _TAG.fullmatch(tag) is not None


def _split(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


def _is_comment(line: str, columns: _Columns) -> bool:
    """A ``-DOCSTART-`` line, or a ``#`` comment line that does not read as a token line (see the module)."""
    if line.startswith("-DOCSTART-"):
        return True
    hashed = line == "#" or (line.startswith("#") and line[1].isspace())
    return hashed and not columns.reads_as_token(_split(line))


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
        if line.strip() and _is_comment(line, columns):
            if line.startswith("-DOCSTART-") and words:  # a document break ends the sentence; a comment does not
                yield Sentence(tuple(words), tuple(tags), start)
                words, tags = [], []
            continue
        if not line.strip():
            if words:
                yield Sentence(tuple(words), tuple(tags), start)
            words, tags = [], []
            continue
        word, tag = columns.pick(_split(line), number=number, line=line)
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
    if not _TAG.fullmatch(tag):
        hint = " (is --tag-column the tag's column?)" if wide else ""
        raise DataError(
            f"{path}:{number}: tag {tag!r} is not O nor a BIO / BIOES tag (B-, I-, E- or S- and the type, "
            f"like B-ORG){hint}"
        )
    if any(ch.isspace() for ch in word):
        raise DataError(f"{path}:{number}: token {word!r} contains whitespace")


def _orphan(task_id: str, *, start: int, word: str, label: str) -> ConversionIssue:
    return ConversionIssue(
        task_id=task_id,
        kind="orphan_inside",
        action="started_entity",
        start=start,
        end=start + len(word),
        label=label,
        text=word,
    )


def bio_to_spans(doc: Doc, tags: tuple[str, ...], task_id: str) -> tuple[list[CharSpan], list[ConversionIssue]]:
    """Turn a sentence's BIO / BIOES tags into character spans over its doc.

    Report I- and E- tags that open an entity.

    This layer reads what files carry (prefixes in any case, BIOES, BILUO's ``L-`` / ``U-``) and repairs an entity
    opened by ``I-`` or ``E-`` (reported); spaCy's ``iob_to_biluo`` and ``biluo_tags_to_offsets`` then read the
    repaired tags, which are strict IOB2: every entity opened by ``B-``.

    Args:
        doc: The sentence, one token per tag.
        tags: One tag per token (checked by ``read_sentences``).
        task_id: The sentence, for the issues.

    Returns:
        The spans and the ``orphan_inside`` issues.
    """
    iob: list[str] = []
    issues: list[ConversionIssue] = []
    current: str | None = None  # the type of the entity still open
    for token, tag in zip(doc, tags, strict=True):
        prefix, _, label = tag.partition("-")
        prefix = _PREFIXES.get(prefix.upper(), prefix.upper())
        if prefix == "O":
            iob.append("O")
            current = None
            continue
        inside = prefix in ("I", "E") and current == label
        if prefix in ("I", "E") and not inside:
            issues.append(_orphan(task_id, start=token.idx, word=token.text, label=label))
        iob.append(f"{'I' if inside else 'B'}-{label}")
        current = None if prefix in ("E", "S") else label  # an E- or S- tag ends its entity
    spans = [CharSpan(start, end, str(label)) for start, end, label in biluo_tags_to_offsets(doc, iob_to_biluo(iob))]
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
        spans, issues = bio_to_spans(doc, sentence.tags, task_id)
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
