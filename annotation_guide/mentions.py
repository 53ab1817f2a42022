"""Where an example's entities lie in its text: whole words, one occurrence each, the LLM parser's rule.

A guide's examples become the LLM's demonstrations and the annotators' reference, so each entity must be
labellable in its text as written: verbatim, as whole words (an entity never cuts a word, except next to scripts
written without spaces), on an occurrence of its own, and without whitespace at its edges.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from collections.abc import Sequence

# Scripts written without spaces between words (and Hangul, whose particles attach to the noun): a neighbour in
# one of them is a word boundary. Sorted, disjoint, inclusive code point ranges: Thai to Myanmar, Hangul Jamo,
# Khmer and its symbols; CJK radicals to Yi (kana, Bopomofo, Hangul Jamo, ideographs); Hangul and Myanmar
# extensions, Hangul syllables, CJK compatibility ideographs, half-width kana, kana supplements, CJK extensions.
# The one owner of the rule: the LLM answer parser (ml.llm.parse) finds mentions only as whole words by it too.
_UNSPACED = (
    *((0x0E00, 0x109F), (0x1100, 0x11FF), (0x1780, 0x17FF), (0x19E0, 0x19FF), (0x2E80, 0xA4CF)),
    *((0xA960, 0xA97F), (0xA9E0, 0xA9FF), (0xAA60, 0xAA7F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF)),
    *((0xFF66, 0xFFDC), (0x1AFF0, 0x1B2FF), (0x20000, 0x3FFFF)),
)
_UNSPACED_STARTS = tuple(start for start, _ in _UNSPACED)


def is_spaced_word(char: str) -> bool:
    """Whether a character belongs to a word that spaces delimit.

    A letter, digit, ``_`` or mark outside the scripts written without spaces (Chinese, Japanese, Korean, Thai, Lao,
    Khmer, Myanmar, Tibetan).
    """
    if not (char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")):
        return False
    at = bisect_right(_UNSPACED_STARTS, ord(char)) - 1
    return at < 0 or ord(char) > _UNSPACED[at][1]


def on_word_boundaries(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` cuts no word: False for 'Kafka' in 'Kafkaesque', True for '東京' in '東京大学の'.

    Args:
        text: The whole text.
        start: Start offset of the occurrence.
        end: End offset (exclusive).

    Returns:
        True when neither edge falls between two characters of one spaced word.
    """
    cuts_left = 0 < start < len(text) and is_spaced_word(text[start - 1]) and is_spaced_word(text[start])
    cuts_right = 0 < end < len(text) and is_spaced_word(text[end - 1]) and is_spaced_word(text[end])
    return not (cuts_left or cuts_right)


def _occurrences(text: str, mention: str) -> list[tuple[int, int]]:
    """Every verbatim occurrence of ``mention`` in ``text``, overlapping ones included."""
    found, at = [], text.find(mention)
    while at >= 0 and mention:
        found.append((at, at + len(mention)))
        at = text.find(mention, at + 1)
    return found


def _word_around(text: str, start: int, end: int) -> str:
    while start > 0 and is_spaced_word(text[start - 1]):
        start -= 1
    while end < len(text) and is_spaced_word(text[end]):
        end += 1
    return text[start:end]


def _why_not_placed(text: str, mention: str, *, listed: int, holders: dict[tuple[int, int], str]) -> str:
    everywhere = _occurrences(text, mention)
    whole = [at for at in everywhere if on_word_boundaries(text, *at)]
    if not whole:
        return (
            f"{mention!r} occurs in the text only inside a longer word ({_word_around(text, *everywhere[0])!r}); "
            "an entity is whole words (the LLM step finds only whole words): write the whole word"
        )
    if all(holders.get(at) == mention for at in whole):
        return (
            f"{mention!r} is listed {listed} times but occurs {len(whole)} time(s) in the text as a whole word; "
            "list each occurrence once"
        )
    other = next(held for at, held in holders.items() if held != mention and any(_overlap(at, w) for w in whole))
    return f"{mention!r} overlaps {other!r} in the text; two entities of one example cannot share characters"


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def mention_problems(text: str, mentions: Sequence[str]) -> list[str]:
    """What keeps an example's entities from being labelled in its text, in plain words (empty when nothing).

    Each entity has no whitespace at its edges and occurs verbatim in the text, as whole words (see
    ``on_word_boundaries``), on an occurrence of its own: listed twice, it occurs twice; two entities never share
    characters. Longer entities are placed first, each on its first free occurrence, as the LLM parser does.

    Args:
        text: The example's text.
        mentions: Its entities, as listed.

    Returns:
        One sentence per problem; the entities missing from the text share one.
    """
    problems = [
        f"{m!r} has whitespace at its start or end; write the entity without it: {m.strip()!r}"
        for m in dict.fromkeys(mentions)
        if m != m.strip()
    ]
    missing = [m for m in dict.fromkeys(mentions) if m not in text]
    if missing:
        listed = ", ".join(repr(m) for m in missing)
        problems.append(f"{listed} must occur verbatim in the example's text {text!r} but does not")
    holders: dict[tuple[int, int], str] = {}
    for mention in sorted((m for m in mentions if m in text), key=len, reverse=True):
        free = [
            at
            for at in _occurrences(text, mention)
            if on_word_boundaries(text, *at) and not any(_overlap(at, held) for held in holders)
        ]
        if free:
            holders[free[0]] = mention
        else:
            problems.append(_why_not_placed(text, mention, listed=mentions.count(mention), holders=holders))
    return list(dict.fromkeys(problems))
