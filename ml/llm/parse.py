"""Read an LLM's answer into character spans. Offsets are the platform's, never the LLM's.

The LLM returns entity strings and labels; this module finds them in the text itself, drops what it cannot find,
and says why for every dropped entity. It never raises on model output and never emits a span that is not in the
text, nor two spans that overlap.

How answer items are mapped onto the text:

- Answer shapes: a list of items (``{"text": ..., "label": ...}`` or ``[text, label]``), bare or under
  ``"entities"`` or another single key; or a map from label to mentions (``{"ORG": ["Apple", "IBM"]}``), bare or
  under ``"entities"``. The first JSON value that holds entities is used, inside a code fence or among chatter.
- Labels: a label equal to a guide label is that label. Otherwise it is compared with the guide's labels by
  :func:`annotation_guide.schema.label_key` (case ignored, runs of ``-``, ``_`` and whitespace alike:
  ``work_of_art`` is ``WORK-OF-ART``); it is accepted only when exactly one guide label matches that way
  ("ambiguous label" otherwise; a guide refuses such names, so only labels passed directly can be ambiguous).
  Spans carry the guide's spelling; a label the guide does not define is never emitted.
- Mentions are found ignoring letter case, treating any run of whitespace as any run of whitespace, and through a
  one-character-for-one folding of typographic variants (curly and straight quotes and apostrophes, hyphens and
  dashes, non-breaking and other spaces, full-width ASCII), so ``Macy's`` is found as ``Macy\u2019s`` and offsets
  and ``text[start:end]`` stay the text's own. A surface is searched as written, in NFC and in NFD at once, so a
  text in either normalisation (or mixing them) is matched where it holds the mention.
- Whole words: a mention may not cut a word ("York" is not in "Yorkshire"), but only words of scripts written
  with spaces count: a neighbour in Han, kana, Hangul (whose particles attach to the noun), Thai, Lao, Khmer,
  Myanmar or Tibetan is a boundary, so "東京大学" is in "東京大学の研究者" and "iPhone" in "iPhone発売".
  See :func:`find_mention`.
- Placement: one item labels one occurrence. Items are placed longest surface first (its length as searched, quotes
  stripped and whitespace runs counted once; ties: the one whose first occurrence comes earlier, then the
  normalised surface, then answer order), each on its first occurrence that overlaps no span placed before it. So
  a shorter answer never takes part of a region a longer one covers, repeated identical items take the following
  occurrences, and the result depends on the order of the items only among items with the same surface: when one
  surface comes under two labels, the label given first in the answer takes the first occurrence. An item with no
  free occurrence is dropped: "repeated" when an item with the same surface and label holds one of its
  occurrences, "conflicting labels" when an item with the same surface under another label does, "overlaps"
  otherwise.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from annotation_guide.mentions import on_word_boundaries
from annotation_guide.schema import label_key
from ml.converters.spans import CharSpan
from ml.llm.answer import item_fields, read_items

# Typographic variants an LLM writes for the text's characters, each folded to one ASCII character (never to
# several, so the folded text has the text's offsets).
_FOLD = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2039\u203a\u2032\u00b4\u02bb\u02bc", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63", "-"),
        **dict.fromkeys("\u00a0\u2007\u202f\u3000", " "),
        **{chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)},  # full-width ASCII
    }
)
# Never part of an entity: stripped from both ends of a (folded) surface before searching.
_QUOTES = " \t\r\n\"'`*"
# Stripped only when the surface is not found with them (keeps "C++", "--max-old-space-size", "Inc.").
_PUNCTUATION = _QUOTES + ".,;:!?()[]{}<>"
_MAX_REASON_CHARS = 60


@dataclass(frozen=True)
class ParsedEntities:
    """What was read from one LLM answer.

    Attributes:
        spans: Non-overlapping, sorted; ``text[start:end]`` of each is a mention the LLM returned.
        dropped: How many returned entities were not emitted.
        reasons: One short reason per dropped entity, in answer order (``"not in text: 'Foo'"``,
            ``"unknown label 'X'"``, ``"ambiguous label 'x'"``, ``"overlaps"``, ``"repeated"``,
            ``"conflicting labels"``, ``"malformed item"``, ``"empty text"``); ``["not JSON"]`` or
            ``["no entity list"]`` when nothing could be read (then ``dropped`` is 0).
        valid_json: True when the answer held one JSON entity list (or one entity object), even among chatter or
            in a code fence; False when nothing could be read, or when the entities were pieced together from
            several loose objects (an answer cut off at the token limit).
    """

    spans: list[CharSpan]
    dropped: int
    reasons: list[str]
    valid_json: bool = True


@dataclass(frozen=True)
class _Item:
    """One answer item whose label is the guide's and whose surface occurs in the text."""

    index: int
    surface: str
    label: str
    key: str  # the surface, normalised: items with the same key are repeats of one another
    length: int  # of the surface as searched: longer items are placed first
    occurrences: tuple[tuple[int, int], ...]  # whole-word occurrences, in the order they are tried

    def order(self) -> tuple[int, int, str, int]:
        """Placement order: by content; the answer order only decides among items with the same surface."""
        return (-self.length, self.occurrences[0][0], self.key, self.index)


@dataclass(frozen=True)
class _GuideLabels:
    """The guide's labels, and the spellings of them that an answer may use."""

    exact: frozenset[str]
    loose: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, labels: Collection[str]) -> _GuideLabels:
        loose: dict[str, tuple[str, ...]] = {}
        for label in dict.fromkeys(labels):
            loose[label_key(label)] = (*loose.get(label_key(label), ()), label)
        return cls(exact=frozenset(labels), loose=loose)

    def resolve(self, label: str) -> str | None:
        """The guide label that ``label`` names, or None (the reason is :meth:`why_not`)."""
        for candidate in (label, label.strip()):
            if candidate in self.exact:
                return candidate
        matches = self.loose.get(label_key(label), ())
        return matches[0] if len(matches) == 1 else None

    def why_not(self, label: str) -> str:
        """Why :meth:`resolve` gave None for ``label``."""
        ambiguous = len(self.loose.get(label_key(label), ())) > 1
        return f"{'ambiguous' if ambiguous else 'unknown'} label {_short(label)}"


@dataclass(frozen=True)
class _Text:
    """The annotated text and its folded copy, which has the same length and so the same offsets."""

    original: str
    folded: str

    @classmethod
    def of(cls, text: str) -> _Text:
        return cls(original=text, folded=text.translate(_FOLD))

    def occurrences(self, forms: Sequence[str]) -> list[tuple[int, int]]:
        """Every whole-word occurrence of the folded forms of one search string, in text order.

        Overlapping ones are included (a free one may start inside a taken one).
        """
        found: set[tuple[int, int]] = set()
        for form in forms:
            pattern = re.compile(r"\s+".join(re.escape(part) for part in form.split()), re.IGNORECASE)
            match = pattern.search(self.folded)
            while match is not None:
                # only whole words: "Leicester" is not in "LEICESTERSHIRE" (placing it there would also block the
                # right "Leicestershire" mention)
                if on_word_boundaries(self.original, *match.span()):
                    found.add(match.span())
                match = pattern.search(self.folded, match.start() + 1)
        return sorted(found)


def parse_response(raw: str, text: str, *, labels: Collection[str]) -> ParsedEntities:
    """Read the entities of an LLM answer and find each one in the text.

    Accepts ``{"entities": [...]}``, a bare list, or a ``{label: [mention, ...]}`` map, either inside a code fence
    or surrounded by chatter (the first JSON value that holds entities is used). Items may name the mention
    ``text``/``entity``/``span`` and the label ``label``/``type``. Labels and mentions are mapped as the module
    docstring says: a label must name exactly one guide label and comes out in the guide's spelling; each item
    labels one whole-word occurrence (typographic variants alike), longest surfaces first, each on its first free
    occurrence, so the spans depend on the order of the items only among items with the same surface.

    Args:
        raw: The LLM's answer, as returned.
        text: The text that was annotated.
        labels: The allowed labels (the guide's).

    Returns:
        The spans found, and a count and reason for every returned entity that was dropped. Never raises.
    """
    read = read_items(raw)
    if isinstance(read, str):
        return ParsedEntities(spans=[], dropped=0, reasons=[read], valid_json=False)
    items, valid_json = read
    guide = _GuideLabels.of(labels)
    source = _Text.of(text)
    reasons: dict[int, str] = {}
    pending: list[_Item] = []
    searched: dict[str, tuple[tuple[tuple[int, int], ...], int]] = {}  # a repeated surface is searched once
    for index, item in enumerate(items):
        checked = _check(index, item, source, guide=guide, searched=searched)
        if isinstance(checked, str):
            reasons[index] = checked
        else:
            pending.append(checked)
    spans = _place(pending, text, reasons=reasons)
    ordered = [reasons[index] for index in sorted(reasons)]
    return ParsedEntities(spans=sorted(spans), dropped=len(ordered), reasons=ordered, valid_json=valid_json)


def find_mention(
    text: str, surface: str, *, taken: Sequence[tuple[int, int]], after: int = 0
) -> tuple[int, int] | None:
    """Find where a mention returned by an LLM occurs in the text.

    The search ignores letter case, treats any run of whitespace in ``surface`` as any run of whitespace in
    ``text``, and folds typographic variants (curly and straight quotes, hyphens and dashes, non-breaking spaces,
    full-width ASCII) to one another; the surface is searched in NFC and NFD too, the text as it is. Quotes and
    whitespace around ``surface`` are ignored; surrounding punctuation too, when the surface is not found with it.
    Only occurrences that cut no word and overlap no span in ``taken`` count: a mention found only inside a longer
    word is not in the text, where a neighbour in a script written without spaces (Chinese, Japanese, Thai, ...)
    is always a boundary. The first at or after ``after`` beats the first anywhere.

    Args:
        text: The original text.
        surface: The mention as the LLM wrote it.
        taken: ``(start, end)`` spans already given to other mentions.
        after: Where the previous mention ended (mentions come in text order).

    Returns:
        ``(start, end)`` into the original ``text``, or None when no free occurrence exists.
    """
    source = _Text.of(text)
    for forms in _variants(surface):
        free = [span for span in source.occurrences(forms) if not _overlaps(span, taken)]
        following = [span for span in free if span[0] >= after]
        if following or free:
            return (following or free)[0]
    return None


def _check(
    index: int,
    item: object,
    source: _Text,
    *,
    guide: _GuideLabels,
    searched: dict[str, tuple[tuple[tuple[int, int], ...], int]],
) -> _Item | str:
    """The item ready to be placed, or why it is dropped before placement."""
    fields = item_fields(item)
    if fields is None:
        return "malformed item"
    surface, label = fields
    canonical = guide.resolve(label)
    if canonical is None:
        return guide.why_not(label)
    if not surface.translate(_FOLD).strip(_PUNCTUATION):
        return "empty text"
    if surface not in searched:
        searched[surface] = _search(source, surface)
    occurrences, length = searched[surface]
    if not occurrences:
        return f"not in text: {_short(surface)}"
    return _Item(index, surface, canonical, _normalise(surface), length, occurrences)


def _place(pending: Sequence[_Item], text: str, *, reasons: dict[int, str]) -> list[CharSpan]:
    """Give each item its first free occurrence, longest items first; record why the others are dropped."""
    taken = bytearray(len(text))  # 1 where a placed span covers the character
    holders: dict[tuple[int, int], _Item] = {}
    spans: list[CharSpan] = []
    for item in sorted(pending, key=_Item.order):
        spot = next((span for span in item.occurrences if not any(taken[span[0] : span[1]])), None)
        if spot is None:
            reasons[item.index] = _why_no_room(item, holders)
            continue
        start, end = spot
        taken[start:end] = b"\x01" * (end - start)
        holders[spot] = item
        spans.append(CharSpan(start, end, item.label))
    return spans


def _why_no_room(item: _Item, holders: dict[tuple[int, int], _Item]) -> str:
    """Why an item found none of its occurrences free: who holds them."""
    labels = {holders[span].label for span in item.occurrences if span in holders and holders[span].key == item.key}
    if item.label in labels:
        return "repeated"
    return "conflicting labels" if labels else "overlaps"


def _search(source: _Text, surface: str) -> tuple[tuple[tuple[int, int], ...], int]:
    """Whole-word occurrences of each search variant, in the order :func:`find_mention` tries them.

    Also the length of the first variant found (in NFC, whitespace runs counted as one character): the length the item
    is placed by.
    """
    found: dict[tuple[int, int], None] = {}
    length = 0
    for forms in _variants(surface):
        bounded = source.occurrences(forms)
        if bounded and not found:
            length = len(" ".join(unicodedata.normalize("NFC", forms[0]).split()))
        found.update(dict.fromkeys(bounded))
    return tuple(found), length


def _variants(surface: str) -> list[tuple[str, ...]]:
    """What is searched for a surface, folded, in order: quotes stripped, then punctuation stripped too.

    Each is searched in all its normalisations (as written, NFC, NFD) at once, in text order: the text keeps its own, so
    offsets stay the text's.
    """
    forms = dict.fromkeys(unicodedata.normalize(form, surface) for form in ("NFC", "NFD"))
    variants: list[tuple[str, ...]] = []
    for edge in (_QUOTES, _PUNCTUATION):
        stripped = tuple(filter(None, dict.fromkeys(form.translate(_FOLD).strip(edge) for form in (surface, *forms))))
        if stripped and stripped not in variants:
            variants.append(stripped)
    return variants


def _overlaps(span: tuple[int, int], taken: Sequence[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def _normalise(surface: str) -> str:
    folded = unicodedata.normalize("NFC", surface).translate(_FOLD)
    return " ".join(folded.strip(_PUNCTUATION).split()).casefold()


def _short(value: str) -> str:
    return repr(value if len(value) <= _MAX_REASON_CHARS else value[: _MAX_REASON_CHARS - 3] + "...")
