"""Read an LLM's answer into character spans. Offsets are the platform's, never the LLM's.

The LLM returns entity strings and labels; this module finds them in the text itself, drops what it cannot find,
and says why for every dropped entity. It never raises on model output and never emits a span that is not in the
text, nor two spans that overlap.

How answer items are mapped onto the text (the result does not depend on the order of the items):

- Labels: a label equal to a guide label is that label. Otherwise it is compared with the guide's labels ignoring
  letter case and treating runs of ``-``, ``_`` and whitespace as one separator (``work_of_art`` is
  ``WORK-OF-ART``); it is accepted only when exactly one guide label matches that way ("ambiguous label"
  otherwise). Spans carry the guide's spelling; a label the guide does not define is never emitted.
- Mentions are found on word boundaries only ("York" is not in "Yorkshire"), ignoring letter case and treating
  any run of whitespace as any run of whitespace; see :func:`find_mention`.
- Placement: one item labels one occurrence. Items are placed longest surface first (its length as searched, quotes
  stripped and whitespace runs counted once; ties: the one whose first occurrence comes earlier, then the surface
  and label as written), each on its first occurrence that overlaps no span placed before it. So a shorter answer
  never takes part of a region a longer one covers, and repeated identical items take the following occurrences.
  An item with no free occurrence is dropped ("repeated" when an item with the same surface was placed,
  "overlaps" otherwise).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

from ml.converters.spans import CharSpan

# Keys an item may use for the mention and for its label (small models do not always follow the schema).
_SURFACE_KEYS = ("text", "entity", "span", "mention")
_LABEL_KEYS = ("label", "type", "entity_type", "category")
# Never part of an entity: stripped from both ends of a surface before searching.
_QUOTES = " \t\r\n\"'`*\u2018\u2019\u201c\u201d\u00ab\u00bb\u201e"
# Stripped only when the surface is not found with them (keeps "C++", "--max-old-space-size", "Inc.").
_PUNCTUATION = _QUOTES + ".,;:!?()[]{}<>"
_JSON_START = re.compile(r"[\[{]")
# Label spellings that name the same guide label when only one guide label is spelt that way.
_LABEL_SEPARATORS = re.compile(r"[\s_-]+")
# Bounds the work spent on long garbage full of brackets: each failed start costs one decode attempt.
_MAX_DECODE_ATTEMPTS = 200
_MAX_REASON_CHARS = 60


@dataclass(frozen=True)
class ParsedEntities:
    """What was read from one LLM answer.

    Attributes:
        spans: Non-overlapping, sorted; ``text[start:end]`` of each is a mention the LLM returned.
        dropped: How many returned entities were not emitted.
        reasons: One short reason per dropped entity, in answer order (``"not in text: 'Foo'"``,
            ``"unknown label 'X'"``, ``"ambiguous label 'x'"``, ``"overlaps"``, ``"repeated"``,
            ``"malformed item"``, ``"empty text"``); ``["not JSON"]`` or ``["no entity list"]`` when nothing could
            be read (then ``dropped`` is 0).
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

    def order(self) -> tuple[int, int, str, str, str]:
        """Placement order; it depends on the item's content only, never on where it was in the answer."""
        return (-self.length, self.occurrences[0][0], self.key, self.surface, self.label)


@dataclass(frozen=True)
class _GuideLabels:
    """The guide's labels, and the spellings of them that an answer may use."""

    exact: frozenset[str]
    loose: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, labels: Collection[str]) -> _GuideLabels:
        loose: dict[str, tuple[str, ...]] = {}
        for label in dict.fromkeys(labels):
            loose[_loose_label(label)] = (*loose.get(_loose_label(label), ()), label)
        return cls(exact=frozenset(labels), loose=loose)

    def resolve(self, label: str) -> str | None:
        """The guide label that ``label`` names, or None (the reason is :meth:`why_not`)."""
        for candidate in (label, label.strip()):
            if candidate in self.exact:
                return candidate
        matches = self.loose.get(_loose_label(label), ())
        return matches[0] if len(matches) == 1 else None

    def why_not(self, label: str) -> str:
        """Why :meth:`resolve` gave None for ``label``."""
        ambiguous = len(self.loose.get(_loose_label(label), ())) > 1
        return f"{'ambiguous' if ambiguous else 'unknown'} label {_short(label)}"


def parse_response(raw: str, text: str, *, labels: Collection[str]) -> ParsedEntities:
    """Read the entities of an LLM answer and find each one in the text.

    Accepts ``{"entities": [...]}``, a bare list, either inside a code fence or surrounded by chatter (the first
    JSON value that holds entities is used). Items may name the mention ``text``/``entity``/``span`` and the label
    ``label``/``type``. Labels and mentions are mapped as the module docstring says: a label must name exactly one
    guide label and comes out in the guide's spelling; each item labels one whole-word occurrence, longest
    surfaces first, each on its first free occurrence, so the spans do not depend on the order of the items.

    Args:
        raw: The LLM's answer, as returned.
        text: The text that was annotated.
        labels: The allowed labels (the guide's).

    Returns:
        The spans found, and a count and reason for every returned entity that was dropped. Never raises.
    """
    read = _read_items(raw)
    if isinstance(read, str):
        return ParsedEntities(spans=[], dropped=0, reasons=[read], valid_json=False)
    items, valid_json = read
    guide = _GuideLabels.of(labels)
    reasons: dict[int, str] = {}
    pending: list[_Item] = []
    searched: dict[str, tuple[tuple[tuple[int, int], ...], int]] = {}  # a repeated surface is searched once
    for index, item in enumerate(items):
        checked = _check(index, item, text, guide=guide, searched=searched)
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

    The search ignores letter case and treats any run of whitespace in ``surface`` as any run of whitespace in
    ``text``. Quotes and whitespace around ``surface`` are ignored; surrounding punctuation too, when the surface
    is not found with it. Only occurrences on word boundaries that overlap no span in ``taken`` count (a mention
    found only inside a longer word is not in the text); the first at or after ``after`` beats the first anywhere.

    Args:
        text: The original text.
        surface: The mention as the LLM wrote it.
        taken: ``(start, end)`` spans already given to other mentions.
        after: Where the previous mention ended (mentions come in text order).

    Returns:
        ``(start, end)`` into the original ``text``, or None when no free occurrence exists.
    """
    for variant in _variants(surface):
        free = [span for span in _occurrences(text, variant) if not _overlaps(span, taken)]
        # only whole-word occurrences: "Leicester" is not in "LEICESTERSHIRE" (placing it there would also
        # block the right "Leicestershire" mention)
        bounded = [span for span in free if _on_word_boundaries(text, *span)]
        following = [span for span in bounded if span[0] >= after]
        if following or bounded:
            return (following or bounded)[0]
    return None


def _check(
    index: int,
    item: object,
    text: str,
    *,
    guide: _GuideLabels,
    searched: dict[str, tuple[tuple[tuple[int, int], ...], int]],
) -> _Item | str:
    """The item ready to be placed, or why it is dropped before placement."""
    fields = _fields(item)
    if fields is None:
        return "malformed item"
    surface, label = fields
    canonical = guide.resolve(label)
    if canonical is None:
        return guide.why_not(label)
    if not surface.strip(_PUNCTUATION):
        return "empty text"
    if surface not in searched:
        searched[surface] = _search(text, surface)
    occurrences, length = searched[surface]
    if not occurrences:
        return f"not in text: {_short(surface)}"
    return _Item(index, surface, canonical, _normalise(surface), length, occurrences)


def _place(pending: Sequence[_Item], text: str, *, reasons: dict[int, str]) -> list[CharSpan]:
    """Give each item its first free occurrence, longest items first; record why the others are dropped."""
    taken = bytearray(len(text))  # 1 where a placed span covers the character
    placed: set[str] = set()
    spans: list[CharSpan] = []
    for item in sorted(pending, key=_Item.order):
        spot = next((span for span in item.occurrences if not any(taken[span[0] : span[1]])), None)
        if spot is None:
            reasons[item.index] = "repeated" if item.key in placed else "overlaps"
            continue
        start, end = spot
        taken[start:end] = b"\x01" * (end - start)
        placed.add(item.key)
        spans.append(CharSpan(start, end, item.label))
    return spans


def _search(text: str, surface: str) -> tuple[tuple[tuple[int, int], ...], int]:
    """Whole-word occurrences of each search variant, in the order :func:`find_mention` tries them, and the length
    of the first variant found (whitespace runs counted as one character): the length the item is placed by."""
    found: dict[tuple[int, int], None] = {}
    length = 0
    for variant in _variants(surface):
        bounded = [span for span in _occurrences(text, variant) if _on_word_boundaries(text, *span)]
        if bounded and not found:
            length = len(" ".join(variant.split()))
        found.update(dict.fromkeys(bounded))
    return tuple(found), length


def _fields(item: object) -> tuple[str, str] | None:
    """``(surface, label)`` of an item: an object with known keys, or a ``[surface, label]`` pair."""
    if isinstance(item, list) and len(item) == 2 and all(isinstance(part, str) for part in item):
        return item[0], item[1]
    if not isinstance(item, dict):
        return None
    keyed = {str(key).lower(): value for key, value in item.items()}
    surface = next((keyed[key] for key in _SURFACE_KEYS if key in keyed), None)
    label = next((keyed[key] for key in _LABEL_KEYS if key in keyed), None)
    if isinstance(surface, str) and isinstance(label, str):
        return surface, label
    return None


def _read_items(raw: str) -> tuple[list[object], bool] | str:
    """The returned items and whether they came from one JSON answer; or why nothing could be read."""
    try:
        whole = json.loads(raw)
    except (ValueError, RecursionError):
        return _scan_items(raw)
    items = _entity_list(whole)
    if items is None and _is_entity(whole):
        items = [whole]  # one entity object as the whole answer
    return (items, True) if items is not None else "no entity list"


def _scan_items(raw: str) -> tuple[list[object], bool] | str:
    """Items from JSON among chatter: the first entity list, else loose entity objects (a cut-off answer)."""
    loose: list[object] = []
    found_json = False
    for value in _json_values(raw):
        found_json = True
        items = _entity_list(value)
        if items is not None:
            return items, True
        if _is_entity(value):
            loose.append(value)
    if loose:
        return loose, False
    return "no entity list" if found_json else "not JSON"


def _json_values(raw: str) -> Iterator[object]:
    """Every JSON object or array in the text, left to right, outermost first."""
    decoder = json.JSONDecoder()
    position = 0
    for _ in range(_MAX_DECODE_ATTEMPTS):
        start = _JSON_START.search(raw, position)
        if start is None:
            return
        try:
            value, position = decoder.raw_decode(raw, start.start())
        except (ValueError, RecursionError):
            # Not JSON from here (chatter such as "[as requested]", or an answer cut off): look inside it.
            position = start.start() + 1
            continue
        yield value


def _entity_list(value: object) -> list[object] | None:
    """The items of an entity list: ``{"entities": [...]}``, a one-list object, or a bare list of items."""
    if isinstance(value, dict):
        keyed = {str(key).lower(): item for key, item in value.items()}
        if "entities" in keyed:
            inner = keyed["entities"]
            if isinstance(inner, dict):
                return [inner]
            # Under "entities" every element is an item, so strings or numbers count as dropped items.
            return list(inner) if isinstance(inner, list) else None
        lists = [item for item in keyed.values() if isinstance(item, list)]
        return _entity_list(lists[0]) if len(lists) == 1 and not _is_entity(value) else None
    # A bare list must hold at least one object or pair: "[1]" in chatter is not an answer.
    if isinstance(value, list) and (not value or any(isinstance(item, dict | list) for item in value)):
        return value
    return None


def _is_entity(value: object) -> bool:
    return isinstance(value, dict) and any(str(key).lower() in _SURFACE_KEYS for key in value)


def _variants(surface: str) -> list[str]:
    quoted = surface.strip(_QUOTES)
    bare = surface.strip(_PUNCTUATION)
    return [variant for variant in dict.fromkeys((quoted, bare)) if variant]


def _occurrences(text: str, surface: str) -> list[tuple[int, int]]:
    """Every occurrence, overlapping ones included (a free one may start inside a taken one)."""
    pattern = re.compile(r"\s+".join(re.escape(part) for part in surface.split()), re.IGNORECASE)
    found: list[tuple[int, int]] = []
    match = pattern.search(text)
    while match is not None:
        found.append(match.span())
        match = pattern.search(text, match.start() + 1)
    return found


def _overlaps(span: tuple[int, int], taken: Sequence[tuple[int, int]]) -> bool:
    return any(span[0] < end and start < span[1] for start, end in taken)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _on_word_boundaries(text: str, start: int, end: int) -> bool:
    """False when the occurrence cuts a word: 'Kafka' inside 'Kafkaesque'."""
    cuts_left = start > 0 and _is_word(text[start - 1]) and _is_word(text[start])
    cuts_right = end < len(text) and _is_word(text[end - 1]) and _is_word(text[end])
    return not (cuts_left or cuts_right)


def _normalise(surface: str) -> str:
    return " ".join(surface.strip(_PUNCTUATION).split()).casefold()


def _loose_label(label: str) -> str:
    """A label spelling with letter case and ``-``/``_``/whitespace differences removed."""
    return _LABEL_SEPARATORS.sub("_", label.strip().casefold())


def _short(value: str) -> str:
    return repr(value if len(value) <= _MAX_REASON_CHARS else value[: _MAX_REASON_CHARS - 3] + "...")
