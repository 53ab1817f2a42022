"""What a converter reports instead of silently dropping or changing a span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Policy = Literal["strict", "expand", "contract"]
POLICIES: tuple[Policy, ...] = ("strict", "expand", "contract")

IssueKind = Literal["misaligned", "overlap", "unknown_label", "out_of_range", "orphan_inside", "unsupported_result"]
Action = Literal["rejected", "expanded", "contracted", "dropped", "started_entity", "ignored"]


@dataclass(frozen=True)
class ConversionIssue:
    """One span that could not be taken over as it was, and what happened to it."""

    task_id: str
    kind: IssueKind
    action: Action
    start: int
    end: int
    label: str
    text: str
    new_start: int | None = None
    new_end: int | None = None

    def __str__(self) -> str:
        what = {
            "misaligned": "does not fall on token boundaries",
            "overlap": "overlaps another span",
            "unknown_label": "has a label that is not in the guide",
            "out_of_range": "lies outside the text",
            "orphan_inside": "starts with an I- tag",
            "unsupported_result": "is not a 'labels' result",
        }[self.kind]
        moved = ""
        if self.new_start is not None and self.new_end is not None:
            moved = f" -> {self.new_start}-{self.new_end}"
        return (
            f"task {self.task_id}: span {self.start}-{self.end} {self.text!r} "
            f"[{self.label}] {what} ({self.action}{moved})"
        )
