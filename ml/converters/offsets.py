"""Which unit a record's offsets count, decided once per record from the text each span says it covers.

Label Studio since 1.0, doccano, spaCy and Python count code points; JavaScript counts UTF-16 code units (older
Label Studio front ends and other browser tools), where an emoji or any other character outside the Basic
Multilingual Plane counts as two. A record (a Label Studio annotation, a JSONL line) is written by one tool, so
its offsets are read in one unit, chosen from the spans that carry their own text (Label Studio's ``value.text``,
a JSONL span's ``text``):

- every such span covers its text at its offsets read as code points: code points, nothing reported. This is the
  default reading, so a span that would also fit as UTF-16 offsets (the same word again further on) is read as
  code points;
- else every such span covers its text read as UTF-16 offsets: every span of the record is ``realigned`` to code
  points (``rejected`` under ``strict``);
- else the record is left out (``offsets`` / ``dropped``; ``rejected`` under ``strict``): some spans fit in
  neither unit, or the record mixes units, and guessing where the annotator meant would invent labels.

Whitespace at the edges is not compared (Label Studio may store the selection without the whitespace its offsets
took in), but exact matches win: the units are first tried exactly, then ignoring edge whitespace, so ``"😀 "``
never beats ``"😀"``. A span outside the text in both units does not take part in the choice: ``apply_spans``
reports it as ``out_of_range``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ml.converters.issues import Action, ConversionIssue, Policy
from ml.converters.spans import CharSpan

Unit = Literal["code_points", "utf16"]


@dataclass(frozen=True)
class Region:
    """One labelled region of a record: its offsets as given, its labels, and the text it says it covers.

    Attributes:
        start: Start offset as given (unit not yet known).
        end: End offset as given (exclusive).
        labels: Its labels (one span each, same offsets).
        selected: The text the region says it covers (``None`` when the record does not give it).
    """

    start: int
    end: int
    labels: tuple[str, ...]
    selected: str | None = None

    def spans(self, start: int | None = None, end: int | None = None) -> list[CharSpan]:
        """One span per label, at the given offsets (default: the region's own)."""
        at = (self.start if start is None else start, self.end if end is None else end)
        return [CharSpan(at[0], at[1], label) for label in self.labels]


def from_utf16(text: str, units: int) -> int | None:
    """The code-point offset of a UTF-16 code-unit offset into ``text``.

    Args:
        text: The text.
        units: An offset counting UTF-16 code units.

    Returns:
        The offset counting code points; ``None`` inside a surrogate pair, before 0 or past the end.
    """
    if units < 0:
        return None
    count = 0
    for index, char in enumerate(text):
        if count == units:
            return index
        count += 2 if ord(char) > 0xFFFF else 1
        if count > units:
            return None
    return len(text) if count == units else None


def _in_text(text: str, start: int, end: int) -> bool:
    return 0 <= start < end <= len(text)


def _utf16(text: str, region: Region) -> tuple[int, int] | None:
    start, end = from_utf16(text, region.start), from_utf16(text, region.end)
    return (start, end) if start is not None and end is not None else None


def _covers(text: str, at: tuple[int, int] | None, selected: str, *, exact: bool) -> bool:
    """Whether ``text[at]`` holds ``selected`` (edge whitespace aside unless ``exact``)."""
    if at is None or not _in_text(text, *at):
        return False
    covered = text[at[0] : at[1]]
    return covered == selected if exact else covered.strip() == selected.strip()


def _fits(text: str, region: Region, unit: Unit, *, exact: bool) -> bool:
    if region.selected is None:
        return False
    at = (region.start, region.end) if unit == "code_points" else _utf16(text, region)
    return _covers(text, at, region.selected, exact=exact)


def _takes_part(text: str, region: Region) -> bool:
    """A region with its own text that lies in the text in at least one unit (else it is ``out_of_range``)."""
    if region.selected is None:
        return False
    return _in_text(text, region.start, region.end) or _fits(text, region, "utf16", exact=False)


def offset_unit(text: str, regions: Sequence[Region]) -> Unit | None:
    """The one unit in which every region that gives its text covers it; ``None`` when there is none.

    Args:
        text: The record's text.
        regions: Every region of the record.

    Returns:
        ``code_points`` (also when no region gives its text, or when both units fit), ``utf16``, or ``None``.
    """
    checked = [r for r in regions if _takes_part(text, r)]
    for exact in (True, False):
        for unit in ("code_points", "utf16"):
            if all(_fits(text, r, unit, exact=exact) for r in checked):
                return unit
    return None


def _issue(text: str, region: Region, *, task_id: str, action: Action, detail: str) -> ConversionIssue:
    return ConversionIssue(
        task_id=task_id,
        kind="offsets",
        action=action,
        start=region.start,
        end=region.end,
        label=region.labels[0] if region.labels else "",
        text=text[region.start : region.end] if region.start >= 0 else "",
        detail=detail,
    )


def short(value: object) -> str:
    """``repr(value)``, cut to 40 characters."""
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:37]}..."


def _realigned(
    text: str, regions: Sequence[Region], *, task_id: str, policy: Policy
) -> tuple[list[CharSpan] | None, list[ConversionIssue]]:
    """Every region read as UTF-16 offsets, each move reported; ``None`` under ``strict`` or when one cannot be."""
    spans: list[CharSpan] = []
    issues: list[ConversionIssue] = []
    moved_any = False
    for region in regions:
        moved = _utf16(text, region)
        if moved is None and not _in_text(text, region.start, region.end):
            spans.extend(region.spans())  # outside the text in both units: apply_spans reports it
            continue
        if moved is None:
            detail = "its offsets fall inside a character when read as UTF-16, as the other regions must be"
            action: Action = "rejected" if policy == "strict" else "dropped"
            return None, [*issues, _issue(text, region, task_id=task_id, action=action, detail=detail)]
        if moved != (region.start, region.end):
            moved_any = True
            action = "rejected" if policy == "strict" else "realigned"
            selected = f"selected {short(region.selected)}; " if region.selected is not None else ""
            issue = _issue(text, region, task_id=task_id, action=action, detail=f"{selected}UTF-16 offsets")
            issues.append(replace(issue, new_start=moved[0], new_end=moved[1]))
        spans.extend(region.spans(*moved))
    return (None if policy == "strict" and moved_any else spans), issues


def _mismatches(text: str, regions: Sequence[Region], *, task_id: str, policy: Policy) -> list[ConversionIssue]:
    """One issue per region that does not cover its text as code points, saying whether UTF-16 would."""
    action: Action = "rejected" if policy == "strict" else "dropped"
    issues = []
    for region in regions:
        if not _takes_part(text, region) or _fits(text, region, "code_points", exact=False):
            continue
        detail = f"selected {short(region.selected)}"
        if _fits(text, region, "utf16", exact=False):
            detail += "; UTF-16 offsets, while other regions of the same annotation count code points"
        issues.append(_issue(text, region, task_id=task_id, action=action, detail=detail))
    return issues


def place_regions(
    text: str, regions: Sequence[Region], *, task_id: str, policy: Policy
) -> tuple[list[CharSpan] | None, list[ConversionIssue]]:
    """The spans of a record's regions in code points, reading all its offsets in one unit (see the module).

    Args:
        text: The record's text.
        regions: Every labelled region of the record.
        task_id: The record, for the issues.
        policy: ``strict`` rejects every move; ``expand`` / ``contract`` realign and report.

    Returns:
        The spans (``None`` when the record must be left out) and the ``offsets`` issues met.
    """
    unit = offset_unit(text, regions)
    if unit == "code_points":
        return [span for region in regions for span in region.spans()], []
    if unit == "utf16":
        return _realigned(text, regions, task_id=task_id, policy=policy)
    return None, _mismatches(text, regions, task_id=task_id, policy=policy)
