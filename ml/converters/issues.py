"""What a converter reports instead of silently dropping or changing a span, and the error that lists them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ml.errors import ConversionError

Policy = Literal["strict", "expand", "contract"]
POLICIES: tuple[Policy, ...] = ("strict", "expand", "contract")

# What to do with a label that is not in the guide (after any label mapping): refuse the conversion, or drop the
# span and report it. Separate from the policy, which only concerns where a span lies.
UnknownLabels = Literal["refuse", "drop"]
UNKNOWN_LABELS: tuple[UnknownLabels, ...] = ("refuse", "drop")

IssueKind = Literal[
    "misaligned",
    "overlap",
    "unknown_label",
    "out_of_range",
    "orphan_inside",
    "unsupported_result",
    "malformed",
    "whitespace",
    "offsets",
]
Action = Literal["rejected", "expanded", "contracted", "dropped", "started_entity", "ignored", "trimmed", "realigned"]

# Kinds about one input record rather than one span: their ``detail`` says what and where.
_RECORD_KINDS = ("unsupported_result", "malformed")

_WHAT = {
    "misaligned": "does not fall on token boundaries",
    "overlap": "overlaps another span",
    "unknown_label": "has a label that is not in the guide",
    "out_of_range": "lies outside the text",
    "orphan_inside": "starts inside an entity (an I- or E- tag without a B- tag before it)",
    "whitespace": "starts or ends with whitespace",
    "offsets": "does not cover the text the annotator selected",
}


@dataclass(frozen=True)
class ConversionIssue:
    """One span (or input record) that could not be taken over as it was, and what happened to it.

    Attributes:
        task_id: The task, record or ``<file>:<line>`` it came from.
        kind: What was wrong (see ``IssueKind``).
        action: What the converter did: ``rejected`` (raises at the end), ``dropped``, ``ignored`` (not a span
            of the guide's labels, never an error), ``expanded`` / ``contracted`` / ``trimmed`` / ``realigned``
            (moved to ``new_start``-``new_end``) or ``started_entity``.
        start: Start offset of the span as given (0 for record kinds).
        end: End offset of the span as given (0 for record kinds).
        label: The span's label as given ("" for record kinds).
        text: The text the span covered as given.
        new_start: Where the span starts now, when it was moved.
        new_end: Where the span ends now, when it was moved.
        detail: For ``malformed`` and ``unsupported_result``: the place and problem in the input; for a mapped
            label: the label it was mapped to.
    """

    task_id: str
    kind: IssueKind
    action: Action
    start: int = 0
    end: int = 0
    label: str = ""
    text: str = ""
    new_start: int | None = None
    new_end: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind in _RECORD_KINDS:
            return f"task {self.task_id}: {self.detail} ({self.action})"
        what = _WHAT[self.kind]
        if self.kind == "whitespace" and not self.text.strip():
            what = "is only whitespace"
        if self.detail:
            what = f"{what} ({self.detail})"
        moved = ""
        if self.new_start is not None and self.new_end is not None:
            moved = f" -> {self.new_start}-{self.new_end}"
        return (
            f"task {self.task_id}: span {self.start}-{self.end} {self.text!r} "
            f"[{self.label}] {what} ({self.action}{moved})"
        )


def advice(issues: Sequence[ConversionIssue]) -> str:
    """What to do about rejected issues, for each kind of problem among them.

    Args:
        issues: The rejected issues.

    Returns:
        One sentence per remedy, joined with ``"; "``.
    """
    kinds = {issue.kind for issue in issues}
    parts = []
    if "unknown_label" in kinds:
        parts.append(
            "for labels outside the guide: map them to guide labels (label_map; nerloop convert --map-label OLD=NEW), "
            "drop them (unknown_labels='drop'; nerloop convert --unknown-labels drop) or add them to the guide"
        )
    if kinds - {"unknown_label"}:
        parts.append(
            "fix the data, or convert with policy 'expand' or 'contract' (--policy), which snap spans to tokens, "
            "trim whitespace and leave out malformed records, reporting each"
        )
    return "; ".join(parts)


class RejectedSpansError(ConversionError):
    """A ``ConversionError`` whose message gives the remedy for each kind of rejected issue."""

    def __init__(self, issues: Sequence[ConversionIssue]) -> None:
        """Build the one-line message: the first issue, how many more, and what to do.

        Args:
            issues: Every rejected issue (at least one).
        """
        super().__init__(issues)
        more = len(self.issues) - 1
        suffix = f" (and {more} more)" if more else ""
        self.args = (f"{self.issues[0]}{suffix}; {advice(self.issues)}",)
